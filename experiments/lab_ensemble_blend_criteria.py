"""Which score should choose the lab_ensemble blend weights: the held-out fit under several criteria, and
what each does on the TEST runs (issue 14, spread/skill over the first 2 s).

For each model the held-out training frames' mixture components are computed once
(:func:`rom_pipeline.pipelines.models.blend_components`, as the pipeline does), and the per-window weight
``w`` of the mixture ``w F + (1 - w) C`` is chosen by each criterion:

    crps      minimises the summed pixel-mean fair CRPS (the default so far)
    energy    minimises the summed fair energy score (whole-frame distances)
    none      w = 1 wherever held-out frames exist (the forecast ensemble alone)
    capped    minimises the CRPS among the weights whose held-out spread/skill is at most max(1, that of the
              forecast alone): the climatology may widen an under-dispersed ensemble up to calibration, never
              an over-dispersed one (``eval.blend_max_spread_skill: 1.0``,
              :func:`rom_pipeline.evaluation.blend.capped_mixture_weight`)

The held-out columns are in-sample for the weight. The test columns score the same weights on the test runs'
components (first ``--horizon`` s), pooled per lead window like ``report/ensemble_skill_by_lead.csv``. The
choice is made on the held-out columns; the test columns are read after it.

    PYTHONPATH=src python experiments/lab_ensemble_blend_criteria.py --env base --models mvar lstm opinf
    ROM_DATA_ROOT=/tmp/rom_bench_gas PYTHONPATH=src python experiments/lab_ensemble_blend_criteria.py \\
        --env gas --blend-runs 60 --horizon 30 --models mvar lstm opinf
    # writes experiments/results/lab_ensemble_criteria_<tag or env>.csv and prints it
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

from rom_pipeline.evaluation.blend import ClimatologyBlend, capped_mixture_weight
from rom_pipeline.evaluation.protocol import ForecastBlock, _postprocessor
from rom_pipeline.evaluation.scores import fit_mixture_weight, mixture_frame_scores
from rom_pipeline.evaluation.track import translated_mixture_components
from rom_pipeline.pipelines.models import (
    blend_components,
    derived_quantities,
    evaluation_config,
    test_runs_for_evaluation,
    training_track_model,
)
from rom_pipeline.registry import FORECASTERS
from rom_pipeline.rom.latent import pack_trajectories, unpack_trajectories
from rom_pipeline.rom.pod import PODBasis

PROJECT = Path(__file__).resolve().parents[1]
CRITERIA = ("crps", "energy", "none", "capped")


def window_scores(comps: dict, lead: np.ndarray, weights: np.ndarray, blend: ClimatologyBlend, m: int) -> list[dict]:
    """Pooled CRPS / energy skill against the climatology and spread/skill per lead window."""
    scores = mixture_frame_scores(comps, weights[blend.window_index(lead)])
    clim = mixture_frame_scores(comps, np.zeros(lead.size))
    window = blend.window_index(lead)
    out = []
    for k in range(len(weights)):
        inside = window == k
        if not inside.any():
            out.append({"n": 0})
            continue
        mse = scores["mse_mean"][inside].mean()
        out.append({
            "n": int(inside.sum()),
            "crps_skill": 1 - scores["crps"][inside].sum() / clim["crps"][inside].sum(),
            "energy_skill": 1 - scores["energy"][inside].sum() / clim["energy"][inside].sum(),
            "spread_skill": float(np.sqrt((m + 1) / m * scores["variance"][inside].mean() / mse)),
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="base")
    parser.add_argument("--tag", default=None)
    parser.add_argument("--models", nargs="+", default=["mvar"], choices=sorted(FORECASTERS))
    parser.add_argument("--blend-runs", type=int, default=None, help="held-out fit on K evenly spaced training runs")
    parser.add_argument("--horizon", type=float, default=None, help="seconds of each test run to score")
    parser.add_argument("--cache", default=None, help="folder of the held-out components (reused when present)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    bootstrap_project(PROJECT)
    with KedroSession.create(project_path=PROJECT, env=None if args.env == "base" else args.env) as session:
        context = session.load_context()
        catalog = context.catalog
        parameters = copy.deepcopy(context.params)
    parameters["eval"]["shift_modes"] = ["oracle", "lab_ensemble"]
    parameters["eval"]["order_parameters"] = False
    rom_grid, setup = derived_quantities(parameters)
    cfg = evaluation_config(setup)
    m = int(cfg.ensemble_size)
    latent, train_runs = catalog.load("train_latent"), catalog.load("train.runs")
    blend_latent = latent
    if args.blend_runs is not None:
        states, shifts = unpack_trajectories(latent), unpack_trajectories(latent, key="shifts")
        ids = list(states)
        keep = [ids[i] for i in np.linspace(0, len(ids) - 1, args.blend_runs).round().astype(int)]
        blend_latent = {**pack_trajectories({r: states[r] for r in keep}, {r: shifts[r] for r in keep}),
                        "dt_rom": latent["dt_rom"]}
    basis = PODBasis.from_arrays(catalog.load("pod_basis"))
    track_model = training_track_model(latent, basis, setup)
    test_runs = list(test_runs_for_evaluation(catalog.load("test.runs"), rom_grid, setup))
    if args.horizon is not None:
        test_runs = [replace(r, times=r.times[r.times - r.times[0] <= args.horizon + 1e-9],
                             density=r.density[: int(np.sum(r.times - r.times[0] <= args.horizon + 1e-9))])
                     for r in test_runs]
    edges = tuple(cfg.lead_windows)
    frame = ClimatologyBlend(edges, [1.0] * max(len(edges), 1))
    r = int(basis.n_modes_)
    climatology_shape = np.asarray(basis.lift(np.zeros((1, r)), shifts=None), dtype=np.float64)[0]
    rows = []
    for name in args.models:
        start = time.perf_counter()
        cached = Path(args.cache) / f"{args.tag or args.env}_{name}.npz" if args.cache else None
        if cached is not None and cached.exists():
            with np.load(cached) as data:
                lead_h, comps_h = data["lead"], {k: data[k] for k in data.files if k != "lead"}
        else:
            lead_h, comps_h = blend_components(FORECASTERS[name], parameters[name], blend_latent, train_runs,
                                               basis, rom_grid, setup)
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cached, lead=lead_h, **comps_h)
        fit_s = time.perf_counter() - start
        model = FORECASTERS[name].load(catalog.load(f"{name}.model"))
        leads, parts = [], []
        for run in test_runs:
            block = ForecastBlock.prepare(basis, run, cfg, int(model.lag), track_model=track_model,
                                          score_climatology=False)
            with np.errstate(all="ignore"):
                y = np.asarray(model.rollout(block.latent[block.k0 - int(model.lag):block.k0, :r], block.n_forecast))
            shape = np.asarray(basis.lift(y, shifts=None), dtype=np.float64)
            members = block.placement(shape)[2]
            parts.append(translated_mixture_components(block.truth, shape, members, climatology_shape,
                                                       block.climatology_positions, _postprocessor(block, cfg)))
            leads.append(block.lead_time)
        lead_t = np.concatenate(leads)
        comps_t = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
        window_h = frame.window_index(lead_h)
        for criterion in CRITERIA:
            weights = []
            for k in range(max(len(edges), 1)):
                inside = window_h == k
                if not inside.any():
                    weights.append(0.0)
                elif criterion == "none":
                    weights.append(1.0)
                elif criterion == "capped":
                    weights.append(capped_mixture_weight({c: v[inside] for c, v in comps_h.items()}, m, 1.0))
                else:
                    weights.append(fit_mixture_weight({c: v[inside] for c, v in comps_h.items()}, score=criterion))
            weights = np.asarray(weights)
            held = window_scores(comps_h, lead_h, weights, frame, m)
            test = window_scores(comps_t, lead_t, weights, frame, m)
            for k, (h, t) in enumerate(zip(held, test)):
                rows.append({"model": name, "criterion": criterion, "window": k,
                             "lead_start": ([0.0, *edges] if not edges or edges[0] > 0 else list(edges))[k],
                             "w": float(weights[k]),
                             **{f"heldout_{key}": v for key, v in h.items()},
                             **{f"test_{key}": v for key, v in t.items()}})
        print(f"{name}: held-out components {fit_s:.0f} s, total {time.perf_counter() - start:.0f} s", flush=True)
    table = pd.DataFrame(rows)
    out = PROJECT / "experiments" / "results" / f"lab_ensemble_criteria_{args.tag or args.env}.csv"
    table.to_csv(out, index=False)
    pd.set_option("display.width", 250)
    print(table.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
