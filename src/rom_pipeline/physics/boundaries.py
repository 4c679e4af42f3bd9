"""Domain boundaries of the rectangle [0, Lx) x [0, Ly) (science.md §1).

- ``periodic``: positions wrap onto the torus; every distance uses the minimal image.
- ``reflecting``: a position that left the box is mirrored back inside and the normal component
  of its velocity (or heading) is flipped.
"""

from __future__ import annotations

import numpy as np

BOUNDARIES = ("periodic", "reflecting")


def wrap_periodic(x: np.ndarray, Lx: float, Ly: float) -> np.ndarray:
    """Wrap positions onto the torus, x (..., 2) -> (..., 2) with every coordinate in [0, L).

    ``np.mod`` can return exactly L for a tiny negative input (-1e-17 + L rounds to L); such values
    are mapped to 0 so the result is strictly inside the half-open box that ``cKDTree(boxsize=...)``
    requires.
    """
    box = np.array([Lx, Ly], dtype=np.float64)
    wrapped = np.mod(x, box)
    return np.where(wrapped >= box, wrapped - box, wrapped)


def minimal_image(dx: np.ndarray, Lx: float, Ly: float) -> np.ndarray:
    """Minimal-image displacement on the torus: dx - L round(dx / L), dx (..., 2) -> (..., 2)."""
    box = np.array([Lx, Ly], dtype=np.float64)
    return dx - box * np.round(dx / box)


def reflect_into_box(
    x: np.ndarray, directions: np.ndarray, Lx: float, Ly: float
) -> tuple[np.ndarray, np.ndarray]:
    """Mirror positions back into [0, Lx] x [0, Ly] and flip the normal direction components.

    x, directions: (N, 2). Any overshoot is handled (folding with period 2L), so a particle that
    crossed a wall k times ends where k mirror reflections put it, and its normal velocity
    component is multiplied by (-1)^k. Returns new arrays (x_in, directions_in), both (N, 2).
    """
    x_in = np.empty_like(x)
    d_in = np.array(directions, dtype=np.float64, copy=True)
    for axis, length in enumerate((Lx, Ly)):
        folded = np.mod(x[:, axis], 2.0 * length)
        odd = folded > length
        x_in[:, axis] = np.where(odd, 2.0 * length - folded, folded)
        d_in[odd, axis] *= -1.0
    return x_in, d_in


def place_in_box(x: np.ndarray, Lx: float, Ly: float, periodic: bool) -> np.ndarray:
    """Initial positions (N, 2) inside the domain: wrapped on a torus; on a reflecting box they
    must already lie in [0, Lx] x [0, Ly] (ValueError otherwise)."""
    if periodic:
        return wrap_periodic(x, Lx, Ly)
    if np.any(x < 0.0) or np.any(x[:, 0] > Lx) or np.any(x[:, 1] > Ly):
        raise ValueError(
            f"x0 has positions outside the reflecting box [0, {Lx}] x [0, {Ly}]; "
            f"sample them inside the domain."
        )
    return x
