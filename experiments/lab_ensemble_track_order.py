"""Track model of the lab_ensemble mode chosen on HELD-OUT TRAINING runs (issue 14): eval.track_method,
eval.track_order and eval.track_calibration.

The training runs are split into ``--folds`` folds; for each fold the track model (VAR order p, with or
without the held-out calibration, whose own inner folds use only the remaining runs) is fitted on the other
folds' shifts and scored on the fold's runs from the experiment's ``forecast_start``. The scored co-moving
shape is the run's own (true) latent state lifted by the POD basis, so the table measures the track law
alone: the ensemble mean ``E[S_{-s} g_h]`` (pooled lab R² per run, R² per lead window) and the ensemble of
``--members`` sampled tracks (fair CRPS skill against the POD mean shape at uniformly random positions, and
the spread/skill ratio, per lead window; every ``--frame-step``-th frame). No test run is read.
``--methods``: the track forecast (``alignment``: the alignment shifts; ``phase``: the phase track of the
reconstruction, the shape placed on it, as ``ForecastBlock.placement`` does).

    PYTHONPATH=src python experiments/lab_ensemble_track_order.py --env base --experiment default
    # writes experiments/results/lab_ensemble_selection_<experiment>.csv / .txt
    PYTHONPATH=src python experiments/lab_ensemble_track_order.py --env gas --experiment gas \
        --data-root /tmp/rom_bench_gas --methods alignment phase --orders 1 4 --runs 120
"""
from __future__ import annotations

import argparse
import time
import glob
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from rom_pipeline.config import validate_parameters
from rom_pipeline.datasets.runs import RunCollection
from rom_pipeline.evaluation.metrics import r2_pooled
from rom_pipeline.evaluation.scores import crps_fair, skill, spread_skill_ratio
from rom_pipeline.evaluation.track import (
    TrackModel,
    lab_frame_mean,
    lab_frame_members,
    phase_concentration,
    phase_positions,
    phase_track,
)
from rom_pipeline.rom.latent import unpack_trajectories
from rom_pipeline.rom.pod import PODBasis

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "benchmarks"))
from shift_method_heldout import load_parameters  # noqa: E402

EDGES = (0.0, 2.0, 5.0, 10.0, 20.0)


def npz(pattern: str) -> dict:
    return dict(np.load(sorted(glob.glob(pattern))[-1], allow_pickle=False))


def crps_scores(truth: np.ndarray, shape: np.ndarray, member_shifts: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame pixel-mean fair CRPS, ensemble variance and ensemble-mean MSE of the members
    ``S_{-s_m} g`` (the ingredients of :func:`rom_pipeline.evaluation.scores.frame_scores`, no energy score)."""
    members = lab_frame_members(np.ascontiguousarray(shape), member_shifts)
    return {"crps": crps_fair(truth, members).mean(axis=(1, 2)),
            "variance": members.var(axis=0, ddof=1).mean(axis=(1, 2)),
            "mse_mean": ((members.mean(axis=0) - truth) ** 2).mean(axis=(1, 2))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="base")
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--folds", type=int, default=6)
    parser.add_argument("--members", type=int, default=20)
    parser.add_argument("--orders", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--frame-step", type=int, default=2, help="score every n-th forecast frame (speed)")
    parser.add_argument("--methods", nargs="+", default=["alignment"], choices=["alignment", "phase"])
    parser.add_argument("--calibrations", nargs="+", default=["none", "heldout"],
                        choices=["none", "heldout", "empirical"])
    parser.add_argument("--conditionings", nargs="+", default=["none"], choices=["none", "analogs", "scale"],
                        help="empirical law conditioned on the seed's concentration (eval.track_conditioning)")
    parser.add_argument("--runs", type=int, default=None, help="use K evenly spaced training runs (speed)")
    parser.add_argument("--data-root", default=str(PROJECT / "data"))
    parser.add_argument("--tag", default=None, help="results file suffix (default: the experiment)")
    args = parser.parse_args()
    cfg = validate_parameters(load_parameters(args.env))
    data = Path(args.data_root) / args.experiment
    pod = PODBasis.from_arrays(npz(f"{data}/rom_common/pod_basis.npz/*/*.npz"))
    latent = npz(f"{data}/rom_common/latent_trajectories.npz/*/*.npz")
    tracks = unpack_trajectories(latent, key="shifts")
    states = unpack_trajectories(latent)
    ids = sorted(tracks)
    if args.runs is not None:
        ids = [ids[i] for i in np.linspace(0, len(ids) - 1, args.runs).round().astype(int)]
    phases = {r: phase_track(pod, states[r], tracks[r]) for r in ids}
    dt = float(latent["dt_rom"])
    k0 = int(round(cfg.forecast_start / dt))
    concentration = {r: float(phase_concentration(pod.lift(states[r][k0 - 1:k0], shifts=None))[0]) for r in ids}
    runs = RunCollection(data / "train", ids)
    grid = tuple(int(g) for g in pod.grid_shape_)
    n = np.asarray(grid, dtype=np.float64)
    rng = np.random.default_rng([0, 1])
    climatology_shape = np.asarray(pod.lift(np.zeros((1, pod.n_modes_)), shifts=None))[0]
    folds = np.array_split(np.arange(len(ids)), args.folds)
    truth, shape, clim = {}, {}, {}
    step = args.frame_step
    for r in ids:
        truth[r] = runs.density(r)["density"][:: cfg.rom.subsample][k0:].astype(np.float64)
        shape[r] = np.asarray(pod.lift(states[r][k0:], shifts=None), dtype=np.float64)
        positions = rng.uniform(-n / 2, n / 2, size=(args.members, len(truth[r][::step]), 2))
        clim[r] = crps_scores(truth[r][::step], np.broadcast_to(climatology_shape, truth[r][::step].shape), positions)
    print("truth and climatology scored", time.strftime("%X"), flush=True)
    rows = []
    centre = {r: phase_positions(shape[r]) for r in ids}
    settings = [(m, o, c, a) for m in args.methods for o in args.orders for c in args.calibrations
                for a in args.conditionings]
    for method, order, calibration, conditioning in settings:
            source = tracks if method == "alignment" else phases
            for fold in folds:
                fit_ids = [ids[i] for i in range(len(ids)) if i not in set(fold.tolist())]
                covariates = [concentration[r] for r in fit_ids] if conditioning != "none" else None
                model = TrackModel(order, calibration, conditioning=conditioning).fit(
                    [source[r] for r in fit_ids], grid, start=k0, covariates=covariates)
                for i in fold:
                    r = ids[i]
                    s = source[r]
                    nf = len(truth[r])
                    covariate = concentration[r] if conditioning != "none" else None
                    mean, cov = model.displacement_law(s[:k0], nf, covariate)
                    last = s[k0 - 1]
                    members = last + model.sample_displacements(s[:k0], nf, args.members, seed=0, covariate=covariate)
                    mean = last + mean
                    if method == "phase":  # place the shape's centre on the track (ForecastBlock.placement)
                        mean, members = centre[r] - mean, centre[r][None] - members
                    pred = lab_frame_mean(shape[r], mean, cov)
                    sc = crps_scores(truth[r][::step], shape[r][::step], members[:, ::step])
                    lead = np.arange(nf) * dt
                    row = {"method": method, "order": order, "calibration": calibration, "conditioning": conditioning, "run": r,
                           "r2_pooled": r2_pooled(truth[r], pred)}
                    bounds = (*EDGES, np.inf)
                    for lo, hi in zip(bounds[:-1], bounds[1:]):
                        w = (lead >= lo) & (lead < hi)
                        tag = f"{lo:g}_{hi:g}"
                        row[f"r2_{tag}"] = r2_pooled(truth[r][w], pred[w]) if w.any() else np.nan
                        w = w[::step]
                        row[f"crps_{tag}"] = sc["crps"][w].sum()
                        row[f"crpsclim_{tag}"] = clim[r]["crps"][w].sum()
                        row[f"var_{tag}"] = sc["variance"][w].sum()
                        row[f"mse_{tag}"] = sc["mse_mean"][w].sum()
                        row[f"nf_{tag}"] = int(w.sum())
                    rows.append(row)
            print(method, order, calibration, conditioning, time.strftime("%X"), flush=True)
    table = pd.DataFrame(rows)
    out = PROJECT / "experiments" / "results" / f"lab_ensemble_selection_{args.tag or args.experiment}"
    table.to_csv(f"{out}.csv", index=False)
    summary = []
    for (method, order, calibration, conditioning), g in table.groupby(
            ["method", "order", "calibration", "conditioning"], sort=False):
        row = {"method": method, "order": order, "calibration": calibration, "conditioning": conditioning,
               "r2_pooled_mean": g.r2_pooled.mean(),
               "r2_pooled_min": g.r2_pooled.min(), "runs_r2_ge_0": f"{(g.r2_pooled >= 0).sum()}/{len(g)}"}
        bounds = (*EDGES, np.inf)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            tag = f"{lo:g}_{hi:g}"
            row[f"r2_{tag}"] = g[f"r2_{tag}"].mean()
            row[f"crps_skill_{tag}"] = skill(g[f"crps_{tag}"].sum(), g[f"crpsclim_{tag}"].sum())
            row[f"spread_skill_{tag}"] = spread_skill_ratio(
                g[f"var_{tag}"].sum() / g[f"nf_{tag}"].sum(), g[f"mse_{tag}"].sum() / g[f"nf_{tag}"].sum(),
                args.members)
        summary.append(row)
    summary = pd.DataFrame(summary)
    pd.set_option("display.width", 250)
    print(summary.round(4).to_string(index=False))
    Path(f"{out}.txt").write_text(summary.round(4).to_string(index=False) + "\n")


if __name__ == "__main__":
    main()
