"""Pairwise Morse interaction (science.md §1.1 step 2 and §1.2).

Pair magnitude, positive = repulsive::

    f(r) = (Cr/lr) exp(-r/lr) - (Ca/la) exp(-r/la)

Force on agent i (minus the gradient of the Morse potential U(r) = Cr e^{-r/lr} - Ca e^{-r/la})::

    F_i = - sum_{j != i, r_ij <= rcut} f(r_ij) (x_j - x_i) / r_ij

Each pair adds equal and opposite contributions to i and j, so sum_i F_i = 0 (Newton's third
law) up to round-off. Coincident agents (r_ij = 0) have no defined direction and exert no force
on each other.
"""

from __future__ import annotations

import numpy as np

from rom_pipeline.physics import _checks
from rom_pipeline.physics.cell_list import neighbourhood_sums_and_forces
from rom_pipeline.physics.neighbours import neighbour_pairs


def _validate_morse(Ca, Cr, la, lr) -> tuple[float, float, float, float]:
    return (
        _checks.nonnegative_float("Ca", Ca),
        _checks.nonnegative_float("Cr", Cr),
        _checks.positive_float("la", la),
        _checks.positive_float("lr", lr),
    )


def _morse_f(r: np.ndarray, Ca: float, Cr: float, la: float, lr: float) -> np.ndarray:
    # in-place form of f(r): this runs on every pair of every step
    repulsion = np.multiply(r, -1.0 / lr)
    np.exp(repulsion, out=repulsion)
    repulsion *= Cr / lr
    attraction = np.multiply(r, -1.0 / la)
    np.exp(attraction, out=attraction)
    attraction *= Ca / la
    repulsion -= attraction
    return repulsion


def morse_pair_magnitude(r, Ca: float, Cr: float, la: float, lr: float) -> np.ndarray:
    """f(r) = (Cr/lr) e^{-r/lr} - (Ca/la) e^{-r/la}; r any shape, result the same shape.

    Ca, Cr >= 0 are the attraction and repulsion strengths, la, lr > 0 their length scales.
    """
    Ca, Cr, la, lr = _validate_morse(Ca, Cr, la, lr)
    r = np.asarray(r, dtype=np.float64)
    return _morse_f(r.reshape(-1), Ca, Cr, la, lr).reshape(r.shape)


def morse_forces_from_pairs(
    n: int,
    i: np.ndarray,
    j: np.ndarray,
    dx: np.ndarray,
    r: np.ndarray,
    Ca: float,
    Cr: float,
    la: float,
    lr: float,
    rcut: float | None = None,
) -> np.ndarray:
    """Morse forces F (n, 2) from a precomputed pair list (i, j, dx = x_j - x_i, r), all (m,)
    or (m, 2), as returned by :func:`~rom_pipeline.physics.neighbours.neighbour_pairs`.

    Pairs with r > rcut (when given) or r == 0 exert no force; with rcut None every listed pair
    interacts. Parameters are assumed validated (see :func:`morse_pair_magnitude`).
    """
    weight = _morse_f(r, Ca, Cr, la, lr)
    with np.errstate(divide="ignore", invalid="ignore"):
        weight /= r
    if rcut is not None and r.shape[0] and r.max() > rcut:
        weight[r > rcut] = 0.0
    if r.shape[0] and r.min() <= 0.0:
        weight[r <= 0.0] = 0.0
    forces = np.empty((n, 2), dtype=np.float64)
    for axis in range(2):
        contribution = weight * dx[:, axis]
        # pair (i, j): F_i -= f (x_j - x_i)/r and F_j += f (x_j - x_i)/r
        forces[:, axis] = np.bincount(j, contribution, minlength=n)
        forces[:, axis] -= np.bincount(i, contribution, minlength=n)
    return forces


def morse_forces(
    x: np.ndarray,
    Lx: float,
    Ly: float,
    periodic: bool,
    Ca: float,
    Cr: float,
    la: float,
    lr: float,
    rcut: float,
) -> np.ndarray:
    """Morse force on every agent, F_i = -sum_{j != i, r_ij <= rcut} f(r_ij) (x_j - x_i)/r_ij.

    x : (N, 2) positions; distances are minimal-image when ``periodic``.
    Returns F : (N, 2), with sum_i F_i = 0.
    """
    Ca, Cr, la, lr = _validate_morse(Ca, Cr, la, lr)
    rcut = _checks.positive_float("rcut", rcut)
    i, j, dx, r = neighbour_pairs(x, rcut, Lx, Ly, periodic)
    return morse_forces_from_pairs(np.shape(x)[0], i, j, dx, r, Ca, Cr, la, lr)


def morse_forces_and_neighbourhood_sums(
    x: np.ndarray,
    values: np.ndarray,
    align_radius: float,
    force_radius: float,
    Lx: float,
    Ly: float,
    periodic: bool,
    Ca: float,
    Cr: float,
    la: float,
    lr: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Neighbourhood sums and Morse forces from one compiled cell-list pass (the simulators' step).

    summed_i = v_i + sum_{j != i, r_ij <= align_radius} v_j, as
    :func:`~rom_pipeline.physics.neighbours.neighbourhood_sum` with 0/1 weights;
    F_i = -sum_{j != i, 0 < r_ij <= force_radius} f(r_ij) (x_j - x_i)/r_ij, as
    :func:`morse_forces_from_pairs`. Distances are minimal-image when ``periodic``.

    x : (N, 2) positions, wrapped onto [0, Lx) x [0, Ly) when ``periodic``; values : (N, c).
    align_radius <= 0 skips the sums (summed = values), force_radius <= 0 the forces (F = 0).
    Returns (summed (N, c), F (N, 2)). Parameters are assumed validated.
    """
    return neighbourhood_sums_and_forces(
        np.ascontiguousarray(x, dtype=np.float64), np.ascontiguousarray(values, dtype=np.float64),
        float(align_radius), float(force_radius), float(Lx), float(Ly), bool(periodic),
        float(Ca), float(Cr), float(la), float(lr),
    )
