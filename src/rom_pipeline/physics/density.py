"""Density movies from particle positions: a cell-averaged Gaussian KDE (science.md §3).

Per frame: bin the positions into an ny x nx histogram (rows = y, columns = x), divide by the cell
area dx dy, then smooth with ``scipy.ndimage`` Gaussian filtering of ``bandwidth`` cells along y
and x (never along time). ``periodic`` filters with ``mode='wrap'``; ``reflecting`` with
``mode='reflect'`` (half-sample symmetric), which folds the kernel tail back at the wall so no
mass leaks. The result is a number density: sum(rho) dx dy = N for every frame. It approximates
the Gaussian KDE  rho(x) = sum_i N(x; x_i, h^2 I)  (summed over periodic images on a torus) with
physical bandwidth h = bandwidth * dx.

The 1-D Gaussian filter along an axis is a fixed linear map of length n, so it is built once as an
(n, n) matrix by filtering the identity with ``scipy.ndimage.gaussian_filter1d`` (same kernel,
truncation and boundary mode as ``scipy.ndimage.gaussian_filter``), and every frame is smoothed
as K_y @ H @ K_x^T in one batched matrix product; histograms of all frames come from one
``np.bincount``.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter1d

from rom_pipeline.physics import _checks
from rom_pipeline.physics.boundaries import BOUNDARIES, wrap_periodic

_FILTER_MODES = {"periodic": "wrap", "reflecting": "reflect"}


def density_grid(Lx: float, Ly: float, nx: int, ny: int) -> tuple[np.ndarray, np.ndarray]:
    """Cell centres of the KDE grid: xc (nx,) = (k + 1/2) Lx/nx, yc (ny,) = (k + 1/2) Ly/ny."""
    Lx = _checks.positive_float("Lx", Lx)
    Ly = _checks.positive_float("Ly", Ly)
    nx = _checks.positive_int("nx", nx)
    ny = _checks.positive_int("ny", ny)
    xc = (np.arange(nx, dtype=np.float64) + 0.5) * (Lx / nx)
    yc = (np.arange(ny, dtype=np.float64) + 0.5) * (Ly / ny)
    return xc, yc


@lru_cache(maxsize=32)
def _smoothing_matrix(n: int, bandwidth: float, mode: str) -> np.ndarray:
    """(n, n) matrix K with K @ u == gaussian_filter1d(u, bandwidth, mode=mode) for any u (n,),
    and a C-contiguous copy of its transpose (BLAS is faster with it as the right operand)."""
    matrix = gaussian_filter1d(np.eye(n), bandwidth, axis=0, mode=mode)
    transpose = np.ascontiguousarray(matrix.T)
    matrix.setflags(write=False)
    transpose.setflags(write=False)
    return matrix, transpose


def kde_density(
    positions: np.ndarray,
    Lx: float,
    Ly: float,
    nx: int,
    ny: int,
    bandwidth: float,
    boundary: str,
) -> np.ndarray:
    """Number-density movie from agent positions.

    Parameters
    ----------
    positions : (T, N, 2) or (N, 2) agent positions (x, y). Periodic positions are wrapped onto
        the torus; reflecting ones are clipped into the box (x == L falls in the last cell).
    Lx, Ly : domain size; nx, ny : grid cells along x and y.
    bandwidth : Gaussian filter standard deviation in cells (>= 0; 0 gives the raw histogram).
    boundary : "periodic" | "reflecting".

    Returns
    -------
    rho : (T, ny, nx) float64 number density (agents per unit area), T = 1 for (N, 2) input;
        sum(rho[t]) * (Lx/nx) * (Ly/ny) == N.
    """
    pos = _checks.frames_of_points("positions", positions)
    Lx = _checks.positive_float("Lx", Lx)
    Ly = _checks.positive_float("Ly", Ly)
    nx = _checks.positive_int("nx", nx)
    ny = _checks.positive_int("ny", ny)
    bandwidth = _checks.nonnegative_float("bandwidth", bandwidth)
    boundary = _checks.choice("boundary", boundary, BOUNDARIES)

    n_frames = pos.shape[0]
    if boundary == "periodic":
        pos = wrap_periodic(pos, Lx, Ly)
    inv_area = 1.0 / ((Lx / nx) * (Ly / ny))
    flat = np.clip((pos[..., 1] * (ny / Ly)).astype(np.int64), 0, ny - 1)  # row = y cell
    flat *= nx
    flat += np.clip((pos[..., 0] * (nx / Lx)).astype(np.int64), 0, nx - 1)
    flat += np.arange(n_frames, dtype=np.int64)[:, None] * (ny * nx)
    # weighted bincount returns the float density directly: one pass over the (T, ny, nx) output
    hist = np.bincount(
        flat.ravel(), weights=np.full(flat.size, inv_area), minlength=n_frames * ny * nx
    ).reshape(n_frames, ny, nx)
    if bandwidth == 0:
        return hist

    mode = _FILTER_MODES[boundary]
    smooth_y, _ = _smoothing_matrix(ny, bandwidth, mode)
    _, smooth_x_transposed = _smoothing_matrix(nx, bandwidth, mode)
    # rho_t = K_y @ H_t @ K_x^T, batched over frames; the result overwrites the histogram buffer
    along_x = np.matmul(hist, smooth_x_transposed)
    return np.matmul(smooth_y, along_x, out=hist)
