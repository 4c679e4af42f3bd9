"""Initial-condition families (science.md §2).

Headings are always theta_i ~ U(0, 2 pi). Positions, all wrapped into [0, Lx) x [0, Ly):

- ``uniform`` (no parameters): U([0, Lx) x [0, Ly)).
- ``gaussian`` (variance; optional center_x, center_y, default the domain centre):
  N(mu, variance I), wrapped.
- ``ring`` (radius, width): angle phi ~ U(0, 2 pi), distance |N(radius, width^2)| from the domain
  centre, wrapped.
- ``two_clusters`` (separation, sigma): floor(n/2) agents from N((Lx/2 - d/2, Ly/2), sigma^2 I) and
  the rest from N((Lx/2 + d/2, Ly/2), sigma^2 I), wrapped.
"""

from __future__ import annotations

import numpy as np

from rom_pipeline.physics import _checks
from rom_pipeline.physics.boundaries import wrap_periodic

# family -> (required parameters, optional parameters)
FAMILY_PARAMETERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "uniform": ((), ()),
    "gaussian": (("variance",), ("center_x", "center_y")),
    "ring": (("radius", "width"), ()),
    "two_clusters": (("separation", "sigma"), ()),
}


def _check_parameters(family: str, params: dict) -> None:
    if family not in FAMILY_PARAMETERS:
        raise ValueError(
            f"family must be one of {list(FAMILY_PARAMETERS)}, got {family!r}."
        )
    required, optional = FAMILY_PARAMETERS[family]
    unknown = sorted(set(params) - set(required) - set(optional))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for IC family {family!r}; "
            f"allowed: {list(required + optional)}."
        )
    missing = [name for name in required if name not in params]
    if missing:
        raise ValueError(
            f"IC family {family!r} needs parameter(s) {missing}; add them to its config."
        )


def sample_positions(
    family: str, n: int, Lx: float, Ly: float, rng: np.random.Generator, **params
) -> np.ndarray:
    """Draw n initial positions from an IC family (see module docstring).

    Returns (n, 2) positions in [0, Lx) x [0, Ly). Unknown families or parameters, and missing
    ones, raise ValueError naming them.
    """
    _check_parameters(family, params)
    n = _checks.positive_int("n", n)
    Lx = _checks.positive_float("Lx", Lx)
    Ly = _checks.positive_float("Ly", Ly)
    rng = _checks.generator("rng", rng)
    centre = np.array([Lx / 2.0, Ly / 2.0])

    if family == "uniform":
        positions = rng.uniform(0.0, 1.0, size=(n, 2)) * np.array([Lx, Ly])
    elif family == "gaussian":
        variance = _checks.positive_float("variance", params["variance"])
        mean = np.array(
            [
                _checks.finite_float("center_x", params.get("center_x", Lx / 2.0)),
                _checks.finite_float("center_y", params.get("center_y", Ly / 2.0)),
            ]
        )
        positions = mean + np.sqrt(variance) * rng.standard_normal((n, 2))
    elif family == "ring":
        radius = _checks.nonnegative_float("radius", params["radius"])
        width = _checks.nonnegative_float("width", params["width"])
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
        distance = np.abs(radius + width * rng.standard_normal(n))
        positions = centre + distance[:, None] * np.column_stack((np.cos(angle), np.sin(angle)))
    else:
        separation = _checks.nonnegative_float("separation", params["separation"])
        sigma = _checks.positive_float("sigma", params["sigma"])
        n_left = n // 2
        means = np.repeat(
            [[centre[0] - separation / 2.0, centre[1]], [centre[0] + separation / 2.0, centre[1]]],
            [n_left, n - n_left],
            axis=0,
        )
        positions = means + sigma * rng.standard_normal((n, 2))
    return wrap_periodic(positions, Lx, Ly)


def sample_headings(n: int, rng: np.random.Generator) -> np.ndarray:
    """Initial heading angles theta_i ~ U(0, 2 pi), shape (n,)."""
    n = _checks.positive_int("n", n)
    rng = _checks.generator("rng", rng)
    return rng.uniform(0.0, 2.0 * np.pi, size=n)
