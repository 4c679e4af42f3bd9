"""Why the lab-frame ensemble loses to climatology at some leads, and what the climatology blend buys, on
HELD-OUT TRAINING runs only (issue 14; eval.ensemble_blend).

For each of ``--folds`` folds of the experiment's training runs the forecaster (the experiment's parameters
block, refitted) and the track model are fitted on the other folds and forecast the fold's runs from
``eval.forecast_start``. Every ``--frame-step``-th forecast frame is scored (pixel-mean fair CRPS, per lead
window of ``eval.lead_windows``, summed over the held-out runs) for four ensembles that separate the two
ingredients:

    forecast      the forecast shape on the sampled tracks (the lab_ensemble mode unblended)
    climatology   the training-mean shape lift(0) at uniformly random positions (the reference)
    shape_only    the forecast shape at the climatology's uniformly random positions (no position information)
    position_only the climatological shape on the sampled tracks (no shape information)

and the blend ``w F + (1 - w) C`` with the weight fitted on those frames (in-sample for the weight, which
:func:`rom_pipeline.evaluation.blend.fit_climatology_blend` fits the same way). Skill = 1 - CRPS / CRPS_climatology.
No test run is read.

    PYTHONPATH=src python experiments/lab_ensemble_blend.py --experiment default --models mvar
    # writes experiments/results/lab_ensemble_blend_<tag or experiment>.csv and prints it
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import pandas as pd
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from rom_pipeline.evaluation.blend import ClimatologyBlend
from rom_pipeline.evaluation.protocol import ForecastBlock, _postprocessor
from rom_pipeline.evaluation.scores import fit_mixture_weight, mixture_frame_scores
from rom_pipeline.evaluation.track import TrackModel, translated_ensemble_scores, translated_mixture_components
from rom_pipeline.pipelines.models import derived_quantities, evaluation_config, runs_for_evaluation
from rom_pipeline.datasets.runs import RunCollection
from rom_pipeline.registry import FORECASTERS
from rom_pipeline.rom.latent import unpack_trajectories
from rom_pipeline.rom.pod import PODBasis

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="base")
    parser.add_argument("--experiment", default="default", help="results file suffix")
    parser.add_argument("--models", nargs="+", default=["mvar"], choices=sorted(FORECASTERS))
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--frame-step", type=int, default=2)
    parser.add_argument("--track-calibration", default=None, choices=["none", "heldout", "empirical"])
    parser.add_argument("--tag", default=None, help="results file suffix (default: the experiment)")
    parser.add_argument("--max-lead", type=float, default=None, help="score leads up to this many s only")
    args = parser.parse_args()
    bootstrap_project(PROJECT)
    with KedroSession.create(project_path=PROJECT, env=None if args.env == "base" else args.env) as session:
        context = session.load_context()
        catalog = context.catalog
        parameters = copy.deepcopy(context.params)
        pod = PODBasis.from_arrays(catalog.load("pod_basis"))
        latent = catalog.load("train_latent")
        train_runs = catalog.load("train.runs")
    parameters["eval"]["shift_modes"] = ["lab_ensemble"]
    parameters["eval"]["order_parameters"] = False
    if args.track_calibration is not None:
        parameters["eval"]["track_calibration"] = args.track_calibration
    rom_grid, setup = derived_quantities(parameters)
    config = evaluation_config(setup)
    latents, tracks = unpack_trajectories(latent), unpack_trajectories(latent, key="shifts")
    ids = list(latents)
    runs = list(runs_for_evaluation(RunCollection(train_runs.path, ids), rom_grid, particles=False))
    k0 = int(round(config.forecast_start / float(latent["dt_rom"])))
    climatology_shape = np.asarray(pod.lift(np.zeros((1, pod.n_modes_)), shifts=None))[0]
    edges = tuple(config.lead_windows)
    rows = []
    for name in args.models:
        entry = FORECASTERS[name]
        tic = time.perf_counter()
        leads, scores, comps = [], {k: [] for k in ("forecast", "climatology", "shape_only", "position_only")}, []
        for fold in np.array_split(np.arange(len(ids)), args.folds):
            rest = [ids[i] for i in range(len(ids)) if i not in set(fold.tolist())]
            forecaster = entry.train(parameters[name], [latents[r] for r in rest])
            track_model = TrackModel(setup["track_order"], setup["track_calibration"]).fit(
                [tracks[r] for r in rest], pod.grid_shape_, start=k0)
            for i in fold:
                block = ForecastBlock.prepare(pod, runs[i], config, int(forecaster.lag), latent=latents[ids[i]],
                                              track_model=track_model, score_climatology=False)
                lag, n_f = int(forecaster.lag), block.n_forecast
                shape = np.asarray(pod.lift(forecaster.rollout(block.latent[k0 - lag:k0], n_f), shifts=None))
                idx = np.arange(0, n_f, args.frame_step)
                if args.max_lead is not None:
                    idx = idx[block.lead_time[idx] <= args.max_lead]
                post = _postprocessor(block, config)
                truth, members, uniform = block.truth[idx], block.member_shifts[:, idx], block.climatology_positions[:, idx]
                for key, (g, s) in {"forecast": (shape[idx], members), "climatology": (climatology_shape, uniform),
                                    "shape_only": (shape[idx], uniform),
                                    "position_only": (climatology_shape, members)}.items():
                    scores[key].append(translated_ensemble_scores(truth, g, s, post)["crps"])
                comps.append(translated_mixture_components(truth, shape[idx], members, climatology_shape, uniform, post))
                leads.append(block.lead_time[idx])
        lead = np.concatenate(leads)
        crps = {k: np.concatenate(v) for k, v in scores.items()}
        comp = {k: np.concatenate([c[k] for c in comps]) for k in comps[0]}
        window = ClimatologyBlend(edges, [1.0] * len(edges)).window_index(lead)
        for k in range(len(edges)):
            inside = window == k
            if not inside.any():
                continue
            ref = crps["climatology"][inside].sum()
            w = fit_mixture_weight({key: v[inside] for key, v in comp.items()})
            blend = mixture_frame_scores({key: v[inside] for key, v in comp.items()}, w)["crps"].sum()
            row = {"model": name, "track_calibration": setup["track_calibration"], "lead_start": edges[k], "lead_end": edges[k + 1] if k + 1 < len(edges) else np.inf,
                   "frames": int(inside.sum()), "weight": w}
            row.update({f"skill_{key}": 1 - crps[key][inside].sum() / ref for key in
                        ("forecast", "shape_only", "position_only")})
            row["skill_blend"] = 1 - blend / ref
            rows.append(row)
        print(f"{name}: {time.perf_counter() - tic:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    out = PROJECT / "experiments" / "results" / f"lab_ensemble_blend_{args.tag or args.experiment}.csv"
    table.to_csv(out, index=False)
    print(table.round(4).to_string(index=False))


if __name__ == "__main__":
    main()
