"""Argument checks shared by the physics modules.

Each check raises ``ValueError`` naming the argument, the value received and the fix, so a bad
configuration fails before any simulation time is spent.
"""

from __future__ import annotations

import numbers

import numpy as np


def positive_float(name: str, value) -> float:
    """Return ``value`` as a float, requiring a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    if value <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}; pass a positive value.")
    return float(value)


def nonnegative_float(name: str, value) -> float:
    """Return ``value`` as a float, requiring a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}.")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}; pass a non-negative value.")
    return float(value)


def finite_float(name: str, value) -> float:
    """Return ``value`` as a float, requiring a finite real number."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}.")
    return float(value)


def positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an int, requiring an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value!r}.")
    return int(value)


def choice(name: str, value, allowed: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}.")
    return value


def generator(name: str, value) -> np.random.Generator:
    """Require a ``numpy.random.Generator`` (one per run, seeded from the run's seed)."""
    if not isinstance(value, np.random.Generator):
        raise ValueError(
            f"{name} must be a numpy.random.Generator, got {type(value).__name__}; "
            f"create one per run with np.random.default_rng(seed)."
        )
    return value


def points_2d(name: str, value) -> np.ndarray:
    """Return ``value`` as a finite float64 array of shape (N, 2) with N >= 1."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2 or arr.shape[0] < 1:
        raise ValueError(f"{name} must have shape (N, 2) with N >= 1, got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf); check the input.")
    return arr


def frames_of_points(name: str, value) -> np.ndarray:
    """Return ``value`` as float64 (T, N, 2); an (N, 2) array becomes one frame."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[2] != 2 or arr.shape[1] < 1:
        raise ValueError(
            f"{name} must have shape (T, N, 2) or (N, 2) with N >= 1, got shape {np.shape(value)}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values (NaN or inf); check the input.")
    return arr


def initial_state(x0, theta0, n_steps, save_every, dt):
    """Validated (positions (N,2), headings (N,), n_steps, save_every, dt) of a simulator call."""
    x = points_2d("x0", x0)
    n = x.shape[0]
    theta = np.asarray(theta0, dtype=np.float64)
    if theta.shape != (n,) or not np.all(np.isfinite(theta)):
        raise ValueError(
            f"theta0 must be a finite array of shape ({n},) to match x0, got shape {theta.shape}."
        )
    return (
        x, theta, positive_int("n_steps", n_steps, minimum=0),
        positive_int("save_every", save_every), positive_float("dt", dt),
    )
