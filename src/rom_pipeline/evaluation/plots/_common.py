"""What every figure module shares: colour maps, input checks, colour limits, image axes."""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes

DENSITY_CMAP = "viridis"
ERROR_CMAP = "magma"
MODE_CMAP = "RdBu_r"
POD_CEILING_LABEL = "POD ceiling"


def _as_density_movie(array, argname: str) -> np.ndarray:
    movie = np.asarray(array, dtype=float)
    if movie.ndim != 3:
        raise ValueError(f"{argname} must have shape (T, ny, nx), got {movie.shape}")
    return movie


def _check_movies(truth, predictions: Mapping, times) -> tuple[np.ndarray, dict, np.ndarray]:
    truth = _as_density_movie(truth, "truth")
    if not isinstance(predictions, Mapping) or len(predictions) == 0:
        raise ValueError(
            "predictions must be a non-empty dict {model name: (T, ny, nx) array}, got "
            f"{type(predictions).__name__} of length {len(predictions) if hasattr(predictions, '__len__') else '?'}"
        )
    checked = {}
    for name, movie in predictions.items():
        movie = _as_density_movie(movie, f"predictions[{name!r}]")
        if movie.shape != truth.shape:
            raise ValueError(
                f"predictions[{name!r}] has shape {movie.shape} but truth has {truth.shape}; "
                "score forecasts on the truth's frames and grid"
            )
        checked[str(name)] = movie
    times = np.asarray(times, dtype=float)
    if times.shape != (truth.shape[0],):
        raise ValueError(
            f"times has shape {times.shape}; it needs one time per truth frame, i.e. ({truth.shape[0]},)"
        )
    return truth, checked, times


def _colour_limits(
    truth: np.ndarray, errors: Sequence[np.ndarray], error_percentile: float = 100.0
) -> tuple[tuple, tuple]:
    """``(density limits, |error| limits)``: the truth's [min, max], and [0, q] with q the
    ``error_percentile``-th percentile of all finite errors (100: the largest), capped at the
    truth's range."""
    finite_truth = truth[np.isfinite(truth)]
    if finite_truth.size == 0:
        raise ValueError("truth has no finite values to set a colour scale")
    lo, hi = float(finite_truth.min()), float(finite_truth.max())
    if hi <= lo:
        hi = lo + 1.0
    finite_errors = [err[np.isfinite(err)] for err in errors]
    finite_errors = np.concatenate([e.ravel() for e in finite_errors]) if finite_errors else np.zeros(0)
    err_max = float(np.percentile(finite_errors, error_percentile)) if finite_errors.size else 0.0
    err_max = min(err_max, hi - lo)
    if err_max <= 0:
        err_max = hi - lo
    return (lo, hi), (0.0, err_max)


def _image(ax: Axes, field: np.ndarray, extent, cmap, limits: tuple):
    ax.set_xticks([])
    ax.set_yticks([])
    return ax.imshow(
        field, origin="lower", extent=extent, cmap=cmap, vmin=limits[0], vmax=limits[1],
        aspect="equal" if extent is None else "auto", interpolation="nearest",
    )


def _grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    ncols = min(max_cols, n)
    return math.ceil(n / ncols), ncols
