"""Fixed-radius neighbour pairs with minimal-image distances (science.md §1, §1.3).

Every unordered pair i < j is reported once, whatever the box size: the distance is the
minimal-image distance on a torus, so a pair straddling a periodic boundary counts, and a box
smaller than the search radius (L < 3R, where naive cell lists double-count) is handled.

``neighbour_pairs`` uses ``scipy.spatial.cKDTree`` (periodic via ``boxsize``);
``cell_list_pairs`` a compiled cell list (:mod:`rom_pipeline.physics.cell_list`);
``brute_force_pairs`` is the O(N^2) oracle used by the tests. All three keep a pair exactly when
the distance computed from the minimal-image displacement x_j - x_i (i < j) satisfies
r <= radius, so they agree bit for bit on the pair set and its geometry.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse
from scipy.spatial import cKDTree

from rom_pipeline.physics import _checks
from rom_pipeline.physics.boundaries import wrap_periodic
from rom_pipeline.physics.cell_list import cell_list_pair_arrays

# The KD-tree is queried with a slightly larger radius, then pairs are filtered with the distance
# computed below, so floating-point differences between the tree's and our distance never change
# the pair set near r == radius.
_QUERY_INFLATION = 1.0 + 1e-9


def _validate(x, radius, Lx, Ly) -> tuple[np.ndarray, float, float, float]:
    x = _checks.points_2d("x", x)
    radius = _checks.positive_float("radius", radius)
    Lx = _checks.positive_float("Lx", Lx)
    Ly = _checks.positive_float("Ly", Ly)
    return x, radius, Lx, Ly


def _pair_geometry(x, i, j, Lx, Ly, periodic):
    # per-coordinate 1-D gathers from contiguous copies are several times faster than
    # gathering (m, 2) rows
    dx = np.empty((i.shape[0], 2), dtype=np.float64)
    for axis, length in enumerate((Lx, Ly)):
        coord = np.ascontiguousarray(x[:, axis])
        d = coord.take(j)
        d -= coord.take(i)
        if periodic:
            d -= length * np.rint(d * (1.0 / length))
        dx[:, axis] = d
    r = np.sqrt(dx[:, 0] * dx[:, 0] + dx[:, 1] * dx[:, 1])
    return dx, r


def _within(i, j, dx, r, radius):
    keep = r <= radius
    if keep.all():
        return i, j, dx, r
    idx = np.flatnonzero(keep)
    return i.take(idx), j.take(idx), dx.take(idx, axis=0), r.take(idx)


def neighbour_pairs(
    x: np.ndarray, radius: float, Lx: float, Ly: float, periodic: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All unordered pairs i < j with (minimal-image) distance r_ij <= radius, via a KD-tree.

    Parameters
    ----------
    x : (N, 2) positions. With ``periodic`` they are wrapped onto [0, Lx) x [0, Ly) first (a
        coordinate equal to L becomes 0); without it they are used as given.
    radius : search radius (> 0), same length unit as x.
    Lx, Ly : box side lengths (> 0).
    periodic : minimal-image distances on the torus when True, plain Euclidean otherwise.

    Returns
    -------
    i, j : (m,) int64 with i < j.
    dx : (m, 2) displacement x_j - x_i (minimal image when periodic).
    r : (m,) distance |dx|.
    The pair order is unspecified but deterministic for a given input.
    """
    x, radius, Lx, Ly = _validate(x, radius, Lx, Ly)
    if periodic:
        x = wrap_periodic(x, Lx, Ly)
        tree = cKDTree(x, boxsize=(Lx, Ly))
    else:
        tree = cKDTree(x)
    pairs = tree.query_pairs(radius * _QUERY_INFLATION, output_type="ndarray")
    i = np.ascontiguousarray(pairs[:, 0], dtype=np.int64)
    j = np.ascontiguousarray(pairs[:, 1], dtype=np.int64)
    swap = i > j
    if np.any(swap):
        i, j = np.where(swap, j, i), np.where(swap, i, j)
    dx, r = _pair_geometry(x, i, j, Lx, Ly, periodic)
    return _within(i, j, dx, r, radius)


def cell_list_pairs(
    x: np.ndarray, radius: float, Lx: float, Ly: float, periodic: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """:func:`neighbour_pairs` (same contract) through the compiled cell list of
    :mod:`rom_pipeline.physics.cell_list`; pairs come grouped by i ascending."""
    x, radius, Lx, Ly = _validate(x, radius, Lx, Ly)
    if periodic:
        x = wrap_periodic(x, Lx, Ly)
    return cell_list_pair_arrays(np.ascontiguousarray(x), radius, Lx, Ly, bool(periodic))


def brute_force_pairs(
    x: np.ndarray, radius: float, Lx: float, Ly: float, periodic: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """O(N^2) all-pairs version of :func:`neighbour_pairs` (same contract, pairs in row-major
    order of (i, j)); the oracle the tests and the method-independence check compare against."""
    x, radius, Lx, Ly = _validate(x, radius, Lx, Ly)
    if periodic:
        x = wrap_periodic(x, Lx, Ly)
    i, j = np.triu_indices(x.shape[0], k=1)
    i = i.astype(np.int64)
    j = j.astype(np.int64)
    dx, r = _pair_geometry(x, i, j, Lx, Ly, periodic)
    return _within(i, j, dx, r, radius)


def neighbourhood_sum(
    values: np.ndarray, i: np.ndarray, j: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """Sum of ``values`` over each agent's neighbourhood, self included.

    s_k = v_k + sum_{pairs (k, l) or (l, k)} w_kl v_l, i.e. (I + W + W^T) @ values with W the
    sparse upper-triangular matrix holding one entry per listed pair.

    values : (N, c) per-agent quantities (unit headings, velocities, ones).
    i, j : (m,) unordered neighbour pairs, each listed once, as from :func:`neighbour_pairs`.
    weights : (m,) pair weights, default 1; a 0 weight drops the pair (cheaper than filtering).
    Returns (N, c).
    """
    values = np.asarray(values, dtype=np.float64)
    n = values.shape[0]
    if weights is None:
        weights = np.ones(i.shape[0], dtype=np.float64)
    # COO @ dense multiplies directly (no CSR conversion or index sort), and the transpose is free
    upper = sparse.coo_array((weights, (i, j)), shape=(n, n))
    return values + upper @ values + upper.T @ values
