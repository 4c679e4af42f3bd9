"""lab_ensemble of the default MVAR with track orders 1 and 3, from the integer-track artifacts of data/default
(after `kedro run --pipelines=pod,latent_dataset,mvar,lstm,evaluation`); scored on the 4 TEST runs, so it
informs, it does not select a default.

    PYTHONPATH=src:benchmarks python experiments/lab_ensemble_track_order.py
"""
import glob, numpy as np, pandas as pd
from rom_pipeline.config import validate_parameters
from rom_pipeline.datasets.runs import RunCollection
from rom_pipeline.evaluation.protocol import EvaluationConfig, TestRun, evaluate_forecaster
from rom_pipeline.evaluation.track import TrackModel
from rom_pipeline.rom.latent import unpack_trajectories
from rom_pipeline.rom.mvar import MVARForecaster
from rom_pipeline.rom.pod import PODBasis
from pathlib import Path
import sys
sys.path.insert(0, "experiments")
from shift_method_heldout import load_parameters
cfg = validate_parameters(load_parameters("base"))
def npz(pattern):
    f = glob.glob(pattern)[0]; return dict(np.load(f, allow_pickle=False))
pod = PODBasis.from_arrays(npz("data/default/rom_common/pod_basis.npz/*/*.npz"))
model = MVARForecaster.from_arrays(npz("data/default/MVAR/mvar_model.npz/*/*.npz"))
latent = npz("data/default/rom_common/latent_trajectories.npz/*/*.npz")
tracks = list(unpack_trajectories(latent, key="shifts").values())
ids = sorted(p.name for p in Path("data/default/test").iterdir() if p.is_dir())
runs = RunCollection(Path("data/default/test"), ids)
k = cfg.rom.subsample
cell = (cfg.sim.Lx / cfg.density.nx) * (cfg.sim.Ly / cfg.density.ny)
config = EvaluationConfig(forecast_start=cfg.forecast_start, mass_postprocess=cfg.eval.mass_postprocess,
                          shift_modes=("lab_ensemble",), order_parameters=False, lead_windows=(0.0, 2.0, 5.0, 10.0))
rows = []
for order in (1, 3):
    track = TrackModel(order).fit(tracks, pod.grid_shape_)
    for r in ids:
        d = runs.density(r)
        run = TestRun(run_id=r, family=runs[r]["family"], times=d["times"][::k], density=d["density"][::k].astype(float),
                      positions=None, velocities=None, Lx=cfg.sim.Lx, Ly=cfg.sim.Ly, periodic=True, cell_area=cell)
        res = evaluate_forecaster(model, pod, run, config, track_model=track)
        m = res.metrics[0]
        c = res.r2_vs_time
        w = c[(c.lead_time >= 2) & (c.lead_time < 10)]
        rows.append({"order": order, "run": r, "r2_pooled": m["r2_pooled"], "r2_0_2": m["r2_lead_0_2"],
                     "crps_skill_clim": m["crps_skill_climatology"], "spread_skill": m["spread_skill"],
                     "crps_2_10": w.crps.sum(), "crps_clim_2_10": w.crps_climatology.sum()})
        print(rows[-1], flush=True)
t = pd.DataFrame(rows)
g = t.groupby("order").agg(r2_pooled=("r2_pooled", "mean"), r2_0_2=("r2_0_2", "mean"), spread_skill=("spread_skill", "mean"),
                           crps_2_10=("crps_2_10", "sum"), clim_2_10=("crps_clim_2_10", "sum"))
g["crps_skill_clim_2_10"] = 1 - g.crps_2_10 / g.clim_2_10
print(g)
