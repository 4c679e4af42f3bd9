"""Where the lab-frame ensemble's spread/skill over the first 2 s comes from, on an environment's TEST runs.

Diagnosis only (one line uses the truth, and says so): the ensemble of the MVAR's forecast shape on the
track law WITHOUT the climatology blend, and the same law carrying the TRUE latent state (no model
error). Compare with the blended ratio in ``report/ensemble_skill_by_lead.csv``. Needs the environment's
pod, latent_dataset and mvar outputs.

    PYTHONPATH=src python experiments/lab_ensemble_spread_diagnosis.py base     # the default experiment
"""
import copy, sys
from pathlib import Path
import numpy as np
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project
from rom_pipeline.pipelines.models import derived_quantities, evaluation_config, test_runs_for_evaluation, training_track_model
from rom_pipeline.registry import FORECASTERS
from rom_pipeline.rom.pod import PODBasis
from rom_pipeline.evaluation.protocol import ForecastBlock, _ensemble_scores
from rom_pipeline.evaluation.scores import spread_skill_ratio
env = sys.argv[1]
bootstrap_project(Path("/work/main"))
with KedroSession.create(project_path=Path("/work/main"), env=None if env == "base" else env) as s:
    ctx = s.load_context(); cat = ctx.catalog; P = copy.deepcopy(ctx.params)
P["eval"]["shift_modes"] = ["oracle", "lab_ensemble"]; P["eval"]["order_parameters"] = False
rom_grid, fs = derived_quantities(P); cfg = evaluation_config(fs)
basis = PODBasis.from_arrays(cat.load("pod_basis")); tm = training_track_model(cat.load("train_latent"), basis, fs)
model = FORECASTERS["mvar"].load(cat.load("mvar.model"))
acc = {"truth": [0, 0], "mvar": [0, 0]}
for run in test_runs_for_evaluation(cat.load("test.runs"), rom_grid, fs):
    blk = ForecastBlock.prepare(basis, run, cfg, model.lag, track_model=tm)
    w = blk.lead_time < 2.0
    y_true = blk.latent[blk.k0:]
    y_mvar = np.asarray(model.rollout(blk.latent[blk.k0 - model.lag:blk.k0], blk.n_forecast))
    for name, y in (("truth", y_true), ("mvar", y_mvar)):
        sc = _ensemble_scores(basis, y, blk, cfg)
        var = sc["ensemble_variance"][w]; mse = sc["ensemble_mean_mse"][w]
        acc[name][0] += var.sum(); acc[name][1] += mse.sum()
        print(run.run_id, name, round(spread_skill_ratio(var, mse, cfg.ensemble_size), 2))
for name, (v, m) in acc.items():
    print("pooled", name, round(float(np.sqrt(21 / 20 * v / m)), 2))
