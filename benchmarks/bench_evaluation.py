"""Speed of the evaluation protocol: each run's truth side shared by every forecaster vs rebuilt.

Default-experiment size: 4 unseen test runs of 417 frames on a 64 x 64 grid (forecast from frame
5), r = 19 sub-pixel shift-aligned POD modes, every shift mode including ``lab_ensemble`` with 20
members. The runs are drifting, breathing Gaussian blobs (no particles), the basis and the track
model are fitted on 12 such training runs, and four forecasters are scored as the evaluation stage
scores them: an MVAR, a second MVAR of another lag, and the climatology and persistence baselines.

Baseline, in the same run: :func:`~rom_pipeline.evaluation.protocol.evaluate_many` per forecaster
with nothing shared (every forecaster re-estimates the shifts, restricts the truth, samples the
track law and scores the climatological reference ensemble, as before the shared blocks). Fast
path: the same calls with one ``blocks`` dict, so each run's truth side (and its climatology
reference) is prepared once. Both must give bit-identical result tables; the script fails
otherwise. Prints CPU seconds per forecaster of each path (single-threaded BLAS, so the process CPU
time is the cost even on a shared machine) and their ratio.

Then the scoring kernels at thesis size (a 200 s test run: 1,662 forecast frames of 64 x 64, three
shift modes scored against one truth), each against the code it replaced, in the same process:
the metric functions called one by one (each recomputing the residual and the truth's sums, as
the protocol did) vs :func:`~rom_pipeline.evaluation.metrics.density_scores` with the truth's
statistics computed once; and the integer roll as one fancy-index gather (the previous
``shifts._roll``) vs the block copies of the current one. Both pairs must agree bit for bit.

    .venv/bin/python benchmarks/bench_evaluation.py [--quick]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from rom_pipeline.evaluation import metrics  # noqa: E402
from rom_pipeline.evaluation.protocol import EvaluationConfig, TestRun, evaluate_many  # noqa: E402
from rom_pipeline.evaluation.track import TrackModel  # noqa: E402
from rom_pipeline.rom.baselines import ClimatologyForecaster, PersistenceForecaster  # noqa: E402
from rom_pipeline.rom.mvar import MVARForecaster  # noqa: E402
from rom_pipeline.rom.pod import PODBasis  # noqa: E402
from rom_pipeline.rom.shifts import _roll  # noqa: E402

DT = 0.12


def blob_run(seed: int, n_frames: int, grid: int) -> np.ndarray:
    """(n_frames, grid, grid) density of a blob drifting on a noisy track while it breathes, on a
slightly noisy floor (so the POD has many modes)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
    velocity = rng.uniform(-0.4, 0.4, 2)
    centre = rng.uniform(0, grid, 2) + np.cumsum(velocity + 0.1 * rng.standard_normal((n_frames, 2)), axis=0)
    width = grid / 10 * (1 + 0.3 * np.sin(2 * np.pi * np.arange(n_frames) / rng.uniform(20, 40)))
    frames = np.empty((n_frames, grid, grid))
    for k in range(n_frames):
        dy = (yy - centre[k, 0] + grid / 2) % grid - grid / 2
        dx = (xx - centre[k, 1] + grid / 2) % grid - grid / 2
        frames[k] = np.exp(-(dy**2 + dx**2) / (2 * width[k] ** 2)) + 0.01 + 0.002 * rng.random((grid, grid))
    return frames / frames.sum(axis=(1, 2), keepdims=True) * 100.0


def setup(quick: bool):
    grid, n_train, train_frames, test_frames, r = (24, 4, 40, 60, 5) if quick else (64, 12, 167, 417, 19)
    train = [blob_run(seed, train_frames, grid) for seed in range(n_train)]
    pod = PODBasis(fixed_modes=r, shift_align=True, shift_method="subpixel").fit(train)
    shifts = [pod.estimate_shifts(frames) for frames in train]
    latent = [pod.restrict(frames, shifts=s) for frames, s in zip(train, shifts)]
    track_model = TrackModel(order=1).fit(shifts, pod.grid_shape_)
    forecasters = [
        MVARForecaster(lag=5, ridge_alpha=1e-4).fit(latent),
        MVARForecaster(lag=2, ridge_alpha=1e-4).fit(latent),
        ClimatologyForecaster().fit(latent),
        PersistenceForecaster(),
    ]
    for forecaster, name in zip(forecasters[:2], ("mvar_lag5", "mvar_lag2")):
        forecaster.name = name
    runs = [
        TestRun(run_id=f"test_{i:03d}", family="gaussian", times=DT * np.arange(test_frames),
                density=blob_run(1000 + i, test_frames, grid), positions=None, velocities=None,
                Lx=25.0, Ly=25.0, periodic=True, cell_area=(25.0 / grid) ** 2)
        for i in range(4)
    ]
    config = EvaluationConfig(forecast_start=0.6, mass_postprocess="scale",
                              shift_modes=("oracle", "hold", "extrapolate", "lab_ensemble"),
                              ensemble_size=20, lead_windows=(0.0, 2.0))
    return pod, track_model, forecasters, runs, config


def score_all(pod, track_model, forecasters, runs, config, shared: bool):
    """CPU seconds per forecaster (this single-threaded process: robust when other processes
    share the cores) and the test_results table, with or without shared blocks."""
    blocks = {} if shared else None
    seconds, tables = [], []
    for forecaster in forecasters:
        start = time.process_time()
        table, _, _ = evaluate_many(forecaster, pod, runs, config, track_model=track_model, blocks=blocks)
        seconds.append(time.process_time() - start)
        tables.append(table.drop(columns="forecast_seconds"))  # wall time of the rollout
    return seconds, pd.concat(tables, ignore_index=True)


def _separate_metrics(truth, pred, cell_area, windows):
    """The protocol's scores before issue 19: every metric function on its own."""
    out = {"r2_pooled": metrics.r2_pooled(truth, pred), "rmse": metrics.rmse(truth, pred),
           "mse": metrics.mse(truth, pred), "mass_violation_max": metrics.mass_violation(truth, pred, cell_area),
           "negativity_fraction": metrics.negativity_fraction(pred),
           "r2_t": metrics.r2_per_snapshot(truth, pred), "r2_cumulative": metrics.r2_cumulative(truth, pred),
           "rel": metrics.relative_errors(truth, pred)}
    out["windows"] = {name: metrics.r2_pooled(truth[a:b], pred[a:b]) for name, (a, b) in windows.items()}
    return out


def _gather_roll(frames, shifts):
    """The integer roll before issue 19: one fancy-index gather of every element."""
    T, ny, nx = frames.shape
    rows = (np.arange(ny)[None, :] - shifts[:, :1]) % ny
    cols = (np.arange(nx)[None, :] - shifts[:, 1:]) % nx
    return frames[np.arange(T)[:, None, None], rows[:, :, None], cols[:, None, :]]


def _best_cpu(function, repeats: int = 3):
    best, value = np.inf, None
    for _ in range(repeats):
        start = time.process_time()
        value = function()
        best = min(best, time.process_time() - start)
    return best, value


def scoring_kernels(quick: bool) -> bool:
    """CPU seconds of the thesis-size scoring kernels, previous vs current code; True if equal."""
    n_f, grid = (200, 24) if quick else (1662, 64)
    rng = np.random.default_rng(0)
    truth = blob_run(7, n_f, grid)
    preds = [truth * (1 + 0.1 * rng.standard_normal(truth.shape)) for _ in range(3)]  # 3 shift modes
    windows = {"a": (0, 17), "b": (17, 42), "c": (42, 84), "d": (84, n_f)}
    before, old = _best_cpu(lambda: [_separate_metrics(truth, p, 0.15, windows) for p in preds])

    def fused():
        stats = metrics.TruthStatistics(truth)
        return [metrics.density_scores(stats, p, 0.15, windows) for p in preds]

    after, new = _best_cpu(fused)
    same = all(np.array_equal(np.asarray(a[k], dtype=float), np.asarray(b[k], dtype=float), equal_nan=True)
               for a, b in zip(old, new) for k in ("r2_pooled", "rmse", "mse", "mass_violation_max",
                                                   "negativity_fraction", "r2_t", "r2_cumulative"))
    same &= all(np.array_equal(a["rel"][k], b["rel"][k], equal_nan=True) and a["windows"] == b["windows"]
                for a, b in zip(old, new) for k in ("l1", "l2", "linf"))
    print(f"scores of 3 shift modes, {n_f} frames of {grid}x{grid}: separate metrics {before:.3f} CPU s, "
          f"one pass {after:.3f} CPU s -> {before / after:.2f}x; bit-identical: {same}")
    shifts = rng.integers(-grid // 2 + 1, grid // 2 + 1, size=(n_f, 2))
    before, old_roll = _best_cpu(lambda: _gather_roll(truth, shifts))
    after, new_roll = _best_cpu(lambda: _roll(truth, shifts))
    rolled = np.array_equal(old_roll, new_roll)
    print(f"integer roll of {n_f} frames: gather {before:.3f} CPU s, block copies {after:.3f} CPU s -> "
          f"{before / after:.2f}x; bit-identical: {rolled}")
    return same and rolled


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    pod, track_model, forecasters, runs, config = setup(args.quick)
    score_all(pod, track_model, forecasters[:1], runs[:1], config, shared=True)  # warm caches/JIT
    rebuilt, reference = score_all(pod, track_model, forecasters, runs, config, shared=False)
    shared, table = score_all(pod, track_model, forecasters, runs, config, shared=True)
    identical = reference.equals(table)
    n_f = runs[0].times.size - 5
    print(f"{len(runs)} test runs x {n_f} forecast frames of {pod.grid_shape_}, r = {pod.n_modes_}, "
          f"shift modes {list(config.shift_modes)}, {config.ensemble_size} members")
    print(f"{'forecaster':<12} {'rebuilt CPU s':>13} {'shared CPU s':>12} {'ratio':>7}")
    for forecaster, before, after in zip(forecasters, rebuilt, shared):
        print(f"{forecaster.name:<12} {before:>13.2f} {after:>12.2f} {before / after:>6.2f}x")
    print(f"{'all':<12} {sum(rebuilt):>13.2f} {sum(shared):>12.2f} {sum(rebuilt) / sum(shared):>6.2f}x")
    print(f"result tables bit-identical: {identical}")
    kernels_equal = scoring_kernels(args.quick)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if identical and kernels_equal else 1


if __name__ == "__main__":
    sys.exit(main())
