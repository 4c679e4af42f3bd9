"""Speed of the batched KDE density movie against scipy.stats.gaussian_kde.

N = 100 agents on the production 64 x 64 grid (L = 25, sigma = 5 cells, periodic), 1000 frames of
uniform random positions through ``kde_density``; baselines measured in the same run on fewer
frames and compared per frame:
- ``gaussian_kde``: one scipy.stats.gaussian_kde per frame (kernel covariance h^2 I,
  h = sigma dx) evaluated at the 64^2 cell centres, the earlier code's approach;
- ``gaussian_kde + images``: the same over the 3 x 3 periodic images, the field ``kde_density``
  approximates on a torus (also reported: its relative L2 difference from ``kde_density``).
Single-threaded BLAS, one process.

    .venv/bin/python benchmarks/bench_kde.py [--quick]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import itertools  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.stats import gaussian_kde  # noqa: E402

from rom_pipeline.physics.density import density_grid, kde_density  # noqa: E402

L, N_GRID, SIGMA, N_AGENTS = 25.0, 64, 5.0, 100


class _FixedBandwidthKDE(gaussian_kde):
    """gaussian_kde with kernel covariance h^2 I."""

    def __init__(self, dataset, h):
        self._h = h
        super().__init__(dataset)

    def _compute_covariance(self):
        self._data_covariance = np.eye(2)
        self._data_cho_cov = np.eye(2)
        self.covariance_factor = lambda: self._h
        super()._compute_covariance()


def _scipy_frames(positions, images):
    h = SIGMA * L / N_GRID
    xc, yc = density_grid(L, L, N_GRID, N_GRID)
    gx, gy = np.meshgrid(xc, yc)
    grid = np.vstack((gx.ravel(), gy.ravel()))
    offsets = list(itertools.product((-L, 0.0, L), repeat=2)) if images else [(0.0, 0.0)]
    frames = []
    for frame in positions:
        copies = np.concatenate([frame + offset for offset in offsets])
        kde = _FixedBandwidthKDE(copies.T, h)
        frames.append(len(copies) * kde(grid).reshape(N_GRID, N_GRID))
    return np.array(frames)


def _best_time(fn, repeats):
    best, result = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    args = parser.parse_args()
    n_frames, n_baseline, repeats = (100, 3, 1) if args.quick else (1000, 20, 5)

    positions = np.random.default_rng(0).uniform(0, L, (n_frames, N_AGENTS, 2))
    ours, rho = _best_time(
        lambda: kde_density(positions, L, L, N_GRID, N_GRID, SIGMA, "periodic"), repeats
    )
    per_frame = ours / n_frames
    print(f"kde_density: {n_frames} frames, N={N_AGENTS}, {N_GRID}^2, sigma={SIGMA} cells: "
          f"{ours * 1e3:.1f} ms total, {per_frame * 1e3:.4f} ms/frame")
    for label, images in (("gaussian_kde", False), ("gaussian_kde + images", True)):
        base, reference = _best_time(lambda: _scipy_frames(positions[:n_baseline], images), 1)
        base_per_frame = base / n_baseline
        line = (f"{label:<22} ({n_baseline} frames): {base_per_frame * 1e3:.2f} ms/frame, "
                f"speed-up {base_per_frame / per_frame:,.0f}x")
        if images:
            diff = np.linalg.norm(rho[:n_baseline] - reference) / np.linalg.norm(reference)
            line += f", relative L2 difference {diff:.4f}"
        print(line)


if __name__ == "__main__":
    main()
