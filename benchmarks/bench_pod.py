"""Speed and exactness of the streaming POD fits against a full numpy.linalg.svd.

Thesis-scale problem: 340 runs x 167 frames of 64 x 64 smooth random fields, i.e. a
56,780 x 4,096 snapshot matrix; keep the top 19 modes. Two fits: ``solver="krylov"`` (the
pipeline's default: leading modes only, block Krylov on the implicit centred operator over the
rows kept in memory by reference) and ``solver="gram"`` (whole spectrum from the dense second
moment streamed over the runs, for data that do not fit in memory). The baseline is
numpy.linalg.svd of the stacked, centred matrix (full_matrices=False); everything is measured in
the same run. Prints each fit's time (median of ``--repeat`` fits, and every fit), its speed-up
over the SVD, the peak-memory growth of the krylov fit relative to the snapshot matrix, the
largest principal angle between each basis and the SVD's (exit status 1 if any exceeds 1e-8), the
measured dgemm rate and read bandwidth and the floor they imply for the krylov fit (passes x the
larger of a pass's flops / rate and its bytes / bandwidth), and the issue's targets (<= 3 s,
>= 25x the SVD) as met / NOT met.

    .venv/bin/python benchmarks/bench_pod.py           # full size (the SVD takes 1-2 minutes)
    .venv/bin/python benchmarks/bench_pod.py --quick   # small smoke test, a few seconds
    .venv/bin/python benchmarks/bench_pod.py --solvers krylov --repeat 3
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time

import numpy as np
from scipy.linalg import subspace_angles

from rom_pipeline.rom.pod import PODBasis


def smooth_random_fields(n_runs: int, n_frames: int, n: int, seed: int = 0) -> np.ndarray:
    """(n_runs * n_frames, n * n) positive fields: white noise through a Gaussian filter
    (periodic, 4-cell bandwidth, anisotropic so the spectrum has no exact degeneracies)."""
    rng = np.random.default_rng(seed)
    ky = 2 * np.pi * np.fft.fftfreq(n)[:, None]
    kx = 2 * np.pi * np.fft.rfftfreq(n)[None, :]
    spectral_filter = np.exp(-0.5 * (16.0 * ky**2 + 9.0 * kx**2))
    snapshots = np.empty((n_runs * n_frames, n * n))
    for i in range(n_runs):
        noise = rng.standard_normal((n_frames, n, n))
        fields = np.fft.irfft2(np.fft.rfft2(noise) * spectral_filter, s=(n, n))
        snapshots[i * n_frames : (i + 1) * n_frames] = 3.0 + fields.reshape(n_frames, n * n)
    return snapshots


class _PassCounter(logging.Handler):
    """Reads block size, Krylov dimension and passes from the solver's convergence log line."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.block = self.dimension = self.passes = None

    def emit(self, record: logging.LogRecord) -> None:
        if "block Krylov" in record.msg:
            self.block, self.dimension, self.passes = (int(a) for a in record.args[:3])


def dgemm_rate(n: int = 2000, repeat: int = 3) -> float:
    """Median float64 GEMM rate (flop/s) of an n^3 product, measured now."""
    a = np.random.default_rng(0).standard_normal((n, n))
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return 2.0 * n**3 / float(np.median(times))


def read_bandwidth(x: np.ndarray, repeat: int = 3) -> float:
    """Median bytes/s of one read of x (a row-sum pass), measured now."""
    ones = np.ones(x.shape[0])
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        ones @ x
        times.append(time.perf_counter() - t)
    return x.nbytes / float(np.median(times))


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small problem for a smoke test")
    parser.add_argument("--modes", type=int, default=19)
    parser.add_argument("--repeat", type=int, default=3, help="POD fits to time (the median is reported)")
    parser.add_argument("--solvers", default="krylov,gram", help="comma-separated POD solvers to time")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="  [%(name)s] %(message)s")  # fit phase timings
    logging.getLogger("rom_pipeline.execution.parallel").setLevel(logging.WARNING)  # per-run progress lines
    n_runs, n_frames, n = (30, 60, 32) if args.quick else (340, 167, 64)

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    t = time.perf_counter()
    snapshots = smooth_random_fields(n_runs, n_frames, n)
    print(f"data: {n_runs} runs x {n_frames} frames of {n}x{n} -> {snapshots.shape[0]:,} x {snapshots.shape[1]:,} "
          f"snapshot matrix ({snapshots.nbytes / 2**30:.2f} GiB, built in {time.perf_counter() - t:.1f} s)")
    runs = [
        (lambda i=i: snapshots[i * n_frames : (i + 1) * n_frames].reshape(n_frames, n, n)) for i in range(n_runs)
    ]

    fits, fit_seconds, passes = {}, {}, {}
    solvers = sorted(args.solvers.split(","), key=lambda name: name != "krylov")  # krylov first: peak RSS
    krylov_log = _PassCounter()
    logging.getLogger("rom_pipeline.rom.eigensolvers").addHandler(krylov_log)
    for solver in solvers:
        rss_before = peak_rss_mb()
        fit_times = []
        for _ in range(max(1, args.repeat)):
            t = time.perf_counter()
            fits[solver] = PODBasis(fixed_modes=args.modes, solver=solver).fit(runs)
            fit_times.append(time.perf_counter() - t)
        fit_seconds[solver] = float(np.median(fit_times))
        rss_growth = peak_rss_mb() - rss_before
        print(f"PODBasis.fit(solver={solver!r}, {fits[solver].route_} route, streaming over runs): "
              f"median {fit_seconds[solver]:.2f} s of {', '.join(f'{x:.2f}' for x in fit_times)}; "
              f"peak RSS growth {rss_growth:.0f} MB = {rss_growth * 2**20 / snapshots.nbytes:.2f}x "
              f"the snapshot matrix")

    t = time.perf_counter()
    snapshots -= snapshots.mean(axis=0)
    _, s, vt = np.linalg.svd(snapshots, full_matrices=False)
    svd_seconds = time.perf_counter() - t
    print(f"numpy.linalg.svd of the stacked centred matrix: {svd_seconds:.2f} s; "
          f"peak RSS of the process {peak_rss_mb():.0f} MB")

    r = args.modes
    ok = True
    for solver, basis in fits.items():
        angle = float(np.max(subspace_angles(basis.modes_, vt[:r].T)))
        top_error = float(np.max(np.abs(basis.singular_values_[:r] - s[:r]) / s[:r]))
        ratio = svd_seconds / fit_seconds[solver]
        print(f"[{solver}] fit {fit_seconds[solver]:.2f} s, speed-up vs full SVD: {ratio:.1f}x; "
              f"max principal angle of the top-{r} basis vs SVD: {angle:.2e} rad (must be < 1e-8); "
              f"max relative error of the top-{r} singular values: {top_error:.2e}")
        if solver == "gram":
            spectrum_error = float(np.max(np.abs(basis.singular_values_ - s)) / s[0])
            print(f"[gram] whole spectrum max |ds|/s_1: {spectrum_error:.2e}")
        ok = ok and angle < 1e-8 and top_error < 1e-8
    if "gram" in fit_seconds and "krylov" in fit_seconds:
        print(f"krylov vs gram fit (same run): {fit_seconds['gram'] / fit_seconds['krylov']:.1f}x faster")
    if "krylov" in fit_seconds:
        # flop floor: every Krylov pass is X^T (X V) with V (n, b): 4 m n b flops, at the dgemm rate
        m, n_grid = snapshots.shape
        rate, bandwidth = dgemm_rate(), read_bandwidth(snapshots)
        dimension = krylov_log.dimension or 0
        pass_flops = 4.0 * m * n_grid * krylov_log.block if krylov_log.block else float("nan")
        print(f"dgemm rate now: {rate / 1e9:.1f} GFLOP/s (2000^3, median of 3); krylov: block {krylov_log.block}, "
              f"dimension {dimension} = {krylov_log.passes} passes of {pass_flops / 1e9:.1f} GFLOP each "
              f"-> {krylov_log.passes * pass_flops / 1e9:.0f} GFLOP, >= {krylov_log.passes * pass_flops / rate:.2f} s "
              f"at that rate; one pass with b = r = {r}: {4.0 * m * n_grid * r / 1e9:.1f} GFLOP; "
              f"the gram route's dsyrk m n^2 = {m * n_grid**2 / 1e9:.0f} GFLOP")
        pass_seconds = max(pass_flops / rate, snapshots.nbytes / bandwidth)
        print(f"read bandwidth now: {bandwidth / 1e9:.1f} GB/s ({snapshots.nbytes / 1e9:.2f} GB per pass); "
              f"krylov floor: {krylov_log.passes} passes x {pass_seconds:.2f} s = "
              f"{krylov_log.passes * pass_seconds:.2f} s (the fit took {fit_seconds['krylov']:.2f} s)")
        if not args.quick:
            print("targets for the krylov fit: <= 3 s "
                  f"({'met' if fit_seconds['krylov'] <= 3.0 else 'NOT met'}), >= 25x full SVD "
                  f"({'met' if svd_seconds / fit_seconds['krylov'] >= 25 else 'NOT met'})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
