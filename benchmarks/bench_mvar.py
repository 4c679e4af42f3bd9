"""Speed of the MVAR fit and of the lag scan against scikit-learn and statsmodels.

Thesis-scale problem: 340 runs x 167 latent frames, r = 19, lag w = 5 -> 55,080 windows.

1. MVARForecaster.fit (windowing + ridge with unpenalised intercept + companion eigenvalues +
   training metrics) vs sklearn Ridge on the prebuilt (n, w*r) design, same alpha, both in this
   run; also prints the largest coefficient difference (same objective, so it should be tiny).
2. select_lag(p = 1..20, runs kept separate) vs statsmodels VAR(concatenated series)
   .select_order(20) (which also scores p = 0 and treats the seams between runs as data).

    .venv/bin/python benchmarks/bench_mvar.py
    .venv/bin/python benchmarks/bench_mvar.py --quick
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from sklearn.linear_model import Ridge
from statsmodels.tsa.api import VAR

from rom_pipeline.rom.latent import latent_windows
from rom_pipeline.rom.mvar import MVARForecaster, best_lag, select_lag


def latent_runs(n_runs: int, n_frames: int, r: int, seed: int = 0) -> list[np.ndarray]:
    """Runs of a stable VAR(2) with decaying mode amplitudes, like POD coefficients."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((r, r)))
    a1 = q @ np.diag(rng.uniform(0.5, 1.2, r)) @ q.T
    a2 = -0.3 * np.eye(r)
    scale = 0.8 ** np.arange(r)
    y = np.zeros((n_frames, n_runs, r))
    y[:2] = rng.standard_normal((2, n_runs, r)) * scale
    for k in range(2, n_frames):
        y[k] = y[k - 1] @ a1.T + y[k - 2] @ a2.T + 0.1 * scale * rng.standard_normal((n_runs, r))
    return [np.ascontiguousarray(y[:, i]) for i in range(n_runs)]


def best_time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small problem for a smoke test")
    args = parser.parse_args()
    n_runs, n_frames, r, lag, max_lag = (20, 60, 5, 5, 6) if args.quick else (340, 167, 19, 5, 20)
    alpha = 1e-4
    runs = latent_runs(n_runs, n_frames, r)
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    fit_seconds, model = best_time(lambda: MVARForecaster(lag=lag, ridge_alpha=alpha).fit(runs), 5)
    windows, targets, _ = latent_windows(runs, lag)
    design = windows[:, ::-1, :].reshape(len(targets), lag * r)
    ridge_seconds, ridge = best_time(lambda: Ridge(alpha=alpha).fit(design, targets), 5)
    window_seconds, _ = best_time(lambda: latent_windows(runs, lag), 5)
    difference = np.abs(np.hstack(list(model.coef_)) - ridge.coef_).max()
    print(f"MVAR fit, {model.n_windows_:,} windows, r={r}, w={lag} ({model.solver_}): {fit_seconds * 1e3:.1f} ms "
          f"(incl. windowing {window_seconds * 1e3:.1f} ms, eigenvalues, metrics)")
    print(f"sklearn Ridge on the prebuilt design: {ridge_seconds * 1e3:.1f} ms "
          f"(+ windowing = {(ridge_seconds + window_seconds) * 1e3:.1f} ms from the same runs); "
          f"ratio (sklearn + windowing) / ours = {(ridge_seconds + window_seconds) / fit_seconds:.2f}x; "
          f"max |coef difference| = {difference:.1e}")

    scan_seconds, table = best_time(lambda: select_lag(runs, max_lag=max_lag, criteria=("bic",)), 2)
    t = time.perf_counter()
    reference = VAR(np.concatenate(runs)).select_order(max_lag)
    statsmodels_seconds = time.perf_counter() - t
    print(f"BIC scan p=1..{max_lag}, runs separate: {scan_seconds:.2f} s -> lag {best_lag(table, 'bic')}")
    print(f"statsmodels VAR(concatenated).select_order({max_lag}): {statsmodels_seconds:.2f} s -> "
          f"lag {reference.selected_orders['bic']}; ratio statsmodels / ours = {statsmodels_seconds / scan_seconds:.1f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if difference < 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
