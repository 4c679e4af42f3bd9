"""The lab_ensemble shift mode of an experiment's trained forecasters on its TEST runs (issue 14 targets).

Loads the experiment's POD basis, training shifts and trained models through the Kedro catalog of ``--env``
(run ``kedro run --env ENV --pipelines=mvar`` etc. first) and scores them with the evaluation protocol in the
shift modes ``oracle`` and ``lab_ensemble`` (whatever ``eval.shift_modes`` of the environment says), with the
track model of ``eval.track_order`` / ``eval.track_calibration`` (overridable here). Writes
``experiments/results/lab_ensemble_<tag>.csv`` (one row per model, run and mode) and
``lab_ensemble_<tag>_skill_by_lead.csv``, and prints both as markdown. ``--horizon S`` scores only the first
S seconds of each test run (the pooled R² is then over that window, not the whole run). With
``eval.ensemble_blend: heldout`` (or ``--blend heldout``) each model's climatology blend is fitted on held-out
TRAINING runs first (``rom_pipeline.pipelines.models.forecaster_blend``; ``--blend-runs K``: on K evenly spaced
training runs only, for speed; ``--cache DIR``: from the held-out components that
``lab_ensemble_blend_criteria.py --cache DIR`` stored under the same tag) and its weights are printed.

    PYTHONPATH=src python experiments/lab_ensemble_env.py --env gas --models mvar lstm [--horizon 20]
"""
from __future__ import annotations

import argparse
import copy
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from rom_pipeline.config import validate_parameters
from rom_pipeline.evaluation.blend import blend_from_components
from rom_pipeline.evaluation.plots_skill import skill_by_lead
from rom_pipeline.evaluation.protocol import evaluate_many
from rom_pipeline.pipelines.models import (
    derived_quantities,
    evaluation_config,
    forecaster_blend,
    test_runs_for_evaluation,
    training_track_model,
)
from rom_pipeline.registry import FORECASTERS
from rom_pipeline.rom.pod import PODBasis

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="base")
    parser.add_argument("--tag", default=None, help="results file suffix (default: the env)")
    parser.add_argument("--models", nargs="+", default=["mvar"], choices=sorted(FORECASTERS))
    parser.add_argument("--track-calibration", default=None, choices=["none", "heldout", "empirical"])
    parser.add_argument("--track-order", type=int, default=None)
    parser.add_argument("--blend", default=None, choices=["none", "heldout"])
    parser.add_argument("--track-method", default=None, choices=["alignment", "phase"])
    parser.add_argument("--track-conditioning", default=None, choices=["none", "analogs", "scale"])
    parser.add_argument("--blend-runs", type=int, default=None, help="fit the blend on K training runs only")
    parser.add_argument("--horizon", type=float, default=None, help="seconds of each test run to score")
    parser.add_argument("--cache", default=None, help="folder of held-out blend components written by "
                        "lab_ensemble_blend_criteria.py (<cache-tag>_<model>.npz): reused instead of refitting")
    parser.add_argument("--cache-tag", default=None, help="the criteria run's tag (default: --tag or --env)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bootstrap_project(PROJECT)
    with KedroSession.create(project_path=PROJECT, env=None if args.env == "base" else args.env) as session:
        context = session.load_context()
        catalog = context.catalog
        parameters = copy.deepcopy(context.params)
    ev = parameters["eval"]
    ev["shift_modes"] = ["oracle", "lab_ensemble"]
    ev["order_parameters"] = False
    if args.track_calibration is not None:
        ev["track_calibration"] = args.track_calibration
    if args.track_order is not None:
        ev["track_order"] = args.track_order
    if args.blend is not None:
        ev["ensemble_blend"] = args.blend
    if args.track_method is not None:
        ev["track_method"] = args.track_method
    if args.track_conditioning is not None:
        ev["track_conditioning"] = args.track_conditioning
    cfg = validate_parameters(parameters)
    rom_grid, forecast_setup = derived_quantities(parameters)
    pod, latent, runs = catalog.load("pod_basis"), catalog.load("train_latent"), catalog.load("test.runs")
    train_runs = catalog.load("train.runs")
    blend_latent = latent
    if args.blend_runs is not None:  # a subset of the training runs for the blend fit
        from rom_pipeline.rom.latent import pack_trajectories, unpack_trajectories
        states, shifts = unpack_trajectories(latent), unpack_trajectories(latent, key="shifts")
        ids = list(states)
        keep = [ids[i] for i in np.linspace(0, len(ids) - 1, args.blend_runs).round().astype(int)]
        blend_latent = {**pack_trajectories({r: states[r] for r in keep}, {r: shifts[r] for r in keep}),
                        "dt_rom": latent["dt_rom"]}
    basis = PODBasis.from_arrays(pod)
    track_model = training_track_model(latent, basis, forecast_setup)
    test_runs = list(test_runs_for_evaluation(runs, rom_grid, forecast_setup))
    if args.horizon is not None:
        test_runs = [replace(r, times=r.times[r.times - r.times[0] <= args.horizon + 1e-9],
                             density=r.density[: int(np.sum(r.times - r.times[0] <= args.horizon + 1e-9))])
                     for r in test_runs]
    results, curves = [], []
    for name in args.models:
        start = time.perf_counter()
        cached = Path(args.cache) / f"{args.cache_tag or args.tag or args.env}_{name}.npz" if args.cache else None
        if cached is not None and cached.exists() and forecast_setup["ensemble_blend"] == "heldout":
            with np.load(cached) as data:
                config = evaluation_config(forecast_setup)
                blend = blend_from_components(data["lead"], {k: data[k] for k in data.files if k != "lead"},
                                              tuple(config.lead_windows), forecast_setup["blend_max_spread_skill"],
                                              int(config.ensemble_size))
        else:
            blend = forecaster_blend(FORECASTERS[name], parameters[name], blend_latent, train_runs, basis, rom_grid,
                                     forecast_setup)
        if blend is not None:
            print(f"{name}: blend weights per lead window {list(blend.edges)}: "
                  f"ensemble {[round(w, 3) for w in blend.weights]}, mean {[round(w, 3) for w in blend.mean_weights]} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
        table, r2_t, _ = evaluate_many(FORECASTERS[name].load(catalog.load(f"{name}.model")), basis, test_runs,
                                       evaluation_config(forecast_setup), track_model=track_model, blend=blend)
        results.append(table)
        curves.append(r2_t)
        print(f"{name}: {time.perf_counter() - start:.0f} s", flush=True)
    results = pd.concat(results, ignore_index=True)
    curves = pd.concat(curves, ignore_index=True)
    by_lead = skill_by_lead(curves, cfg.lead_windows or (0.0,), n_members=cfg.eval.ensemble_size)
    tag = args.tag or args.env
    out = PROJECT / "experiments" / "results" / f"lab_ensemble_{tag}"
    keep = [c for c in ["model", "run_id", "family", "shift_mode", "r2_pooled", *[c for c in results if
                        str(c).startswith("r2_lead_")], "crps_skill_climatology", "crps_skill_hold",
                        "energy_skill_climatology", "spread_skill"] if c in results]
    results[keep].to_csv(f"{out}.csv", index=False)
    by_lead.to_csv(f"{out}_skill_by_lead.csv", index=False)
    pd.set_option("display.width", 250)
    print(f"track_method {cfg.eval.track_method}, track_order {cfg.eval.track_order}, track_calibration "
          f"{cfg.eval.track_calibration}, track_conditioning {cfg.eval.track_conditioning}, "
          f"{cfg.eval.ensemble_size} members, forecast_start {cfg.forecast_start} s, horizon {args.horizon} s")
    print(results[keep].round(4).to_string(index=False))
    print(by_lead.round(4).to_string(index=False))
    lab = results[results.shift_mode == "lab_ensemble"]
    print("min lab R2 per model:", lab.groupby("model").r2_pooled.min().round(4).to_dict(), flush=True)


if __name__ == "__main__":
    main()
