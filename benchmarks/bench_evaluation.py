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

from rom_pipeline.evaluation.protocol import EvaluationConfig, TestRun, evaluate_many  # noqa: E402
from rom_pipeline.evaluation.track import TrackModel  # noqa: E402
from rom_pipeline.rom.baselines import ClimatologyForecaster, PersistenceForecaster  # noqa: E402
from rom_pipeline.rom.mvar import MVARForecaster  # noqa: E402
from rom_pipeline.rom.pod import PODBasis  # noqa: E402

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
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
