"""Forecast-skill metrics for density movies and latent trajectories (science.md §8).

Density arrays are (T, ny, nx) with frames along axis 0 ("frame" = one time t); every metric
treats all axes after the first as space, so (T, n) arrays work too. ``truth`` is ρ, ``pred``
is ρ̂. Undefined quantities (a reference with zero variance or zero norm) come back as NaN
rather than raising: a uniform truth frame has no R², and the caller decides how to report it.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "latent_r2",
    "mass_violation",
    "mse",
    "negativity_fraction",
    "r2_cumulative",
    "r2_per_snapshot",
    "r2_pooled",
    "relative_errors",
    "rmse",
    "skill_score",
    "valid_prediction_time",
]


def _paired(truth: np.ndarray, pred: np.ndarray, min_ndim: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (truth, pred) pair and return them as float64 arrays of shape (T, n_space)."""
    truth = np.asarray(truth, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64)
    if truth.shape != pred.shape:
        raise ValueError(
            f"truth has shape {truth.shape} but pred has shape {pred.shape}; "
            "pass the prediction on the same (T, ny, nx) grid and time frames as the truth"
        )
    if truth.ndim < min_ndim or truth.shape[0] == 0:
        raise ValueError(
            f"truth/pred have shape {truth.shape}; expected at least one frame with frames on "
            "axis 0, e.g. (T, ny, nx)"
        )
    return truth.reshape(truth.shape[0], -1), pred.reshape(pred.shape[0], -1)


def _safe_ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with NaN wherever den == 0 (an undefined normalisation)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = num / np.where(den == 0.0, np.nan, den)
    return out


def r2_pooled(truth: np.ndarray, pred: np.ndarray) -> float:
    """Pooled coefficient of determination over a whole forecast block.

    R² = 1 − Σ_t Σ_x (ρ − ρ̂)² / Σ_t Σ_x (ρ − ρ̄)², with ρ̄ the single mean of ``truth`` over all
    frames and cells (the earlier code's table metric).

    Args:
        truth, pred: arrays of the same shape (T, ny, nx) (any shape with T >= 1 frames works).

    Returns:
        R² as a float; NaN if the truth block is constant (zero total variance).
    """
    t, p = _paired(truth, pred, min_ndim=1)
    ss_res = np.sum((t - p) ** 2)
    ss_tot = np.sum((t - t.mean()) ** 2)
    return float(1.0 - _safe_ratio(ss_res, ss_tot))


def r2_per_snapshot(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """R²(t) of each frame against its own spatial mean.

    R²(t) = 1 − Σ_x (ρ_t − ρ̂_t)² / Σ_x (ρ_t − ⟨ρ_t⟩_x)².

    Args:
        truth, pred: (T, ny, nx).

    Returns:
        (T,) array; NaN for a spatially uniform truth frame.
    """
    t, p = _paired(truth, pred)
    ss_res = np.sum((t - p) ** 2, axis=1)
    ss_tot = np.sum((t - t.mean(axis=1, keepdims=True)) ** 2, axis=1)
    return 1.0 - _safe_ratio(ss_res, ss_tot)


def r2_cumulative(truth: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Cumulative pooled R² from the first frame to each t.

    R²_cum(t) = 1 − Σ_{s≤t} Σ_x (ρ_s − ρ̂_s)² / Σ_{s≤t} Σ_x (ρ_s − ρ̄_{0:t})², where ρ̄_{0:t} is the
    mean of the truth over frames 0..t and all cells, so R²_cum(T−1) equals :func:`r2_pooled`.

    Args:
        truth, pred: (T, ny, nx).

    Returns:
        (T,) array; NaN where frames 0..t of the truth are constant.
    """
    t, p = _paired(truth, pred)
    n_cells = t.shape[1]
    # Σ(x − x̄_t)² = Σx² − n_t x̄_t²; centring on the block mean first keeps that difference
    # well conditioned (the variance is shift invariant).
    c = t - t.mean()
    s1 = np.cumsum(c.sum(axis=1))
    s2 = np.cumsum((c * c).sum(axis=1))
    n = n_cells * np.arange(1, t.shape[0] + 1, dtype=np.float64)
    ss_tot = np.maximum(s2 - s1 * s1 / n, 0.0)
    ss_res = np.cumsum(((t - p) ** 2).sum(axis=1))
    return 1.0 - _safe_ratio(ss_res, ss_tot)


def relative_errors(truth: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame relative errors ‖ρ_t − ρ̂_t‖_p / ‖ρ_t‖_p for p = 1, 2, ∞ over the grid.

    Args:
        truth, pred: (T, ny, nx).

    Returns:
        ``{"l1": (T,), "l2": (T,), "linf": (T,)}``; NaN for an all-zero truth frame.
    """
    t, p = _paired(truth, pred)
    err = t - p
    return {
        "l1": _safe_ratio(np.abs(err).sum(axis=1), np.abs(t).sum(axis=1)),
        "l2": _safe_ratio(np.sqrt((err * err).sum(axis=1)), np.sqrt((t * t).sum(axis=1))),
        "linf": _safe_ratio(np.abs(err).max(axis=1), np.abs(t).max(axis=1)),
    }


def mse(truth: np.ndarray, pred: np.ndarray) -> float:
    """Mean squared error over all frames and cells: mean((ρ − ρ̂)²), in density units squared."""
    t, p = _paired(truth, pred, min_ndim=1)
    return float(np.mean((t - p) ** 2))


def skill_score(mse_model, mse_baseline):
    """Skill against a baseline: S = 1 − MSE_model / MSE_baseline.

    1 is a perfect forecast, 0 no better than the baseline, < 0 worse. Works elementwise on
    arrays; NaN where the baseline is perfect (MSE_baseline = 0) or either input is NaN.
    """
    out = 1.0 - _safe_ratio(mse_model, mse_baseline)
    return float(out) if np.ndim(out) == 0 else out


def rmse(truth: np.ndarray, pred: np.ndarray) -> float:
    """Root-mean-square error over all frames and cells: sqrt(mean((ρ − ρ̂)²)), in density units."""
    t, p = _paired(truth, pred, min_ndim=1)
    return float(np.sqrt(np.mean((t - p) ** 2)))


def mass_violation(truth: np.ndarray, pred: np.ndarray, cell_area: float = 1.0) -> float:
    """Worst relative mass error over frames: max_t |M̂_t − M_t| / M_t.

    M_t = ΔxΔy Σ_x ρ_t. The cell area cancels in the ratio; it is accepted (and checked) so
    callers can pass the grid they have without thinking about it.

    Args:
        truth, pred: (T, ny, nx) densities.
        cell_area: ΔxΔy > 0.

    Returns:
        The maximum relative mass error (float); NaN if any truth frame has zero mass.
    """
    if not np.isfinite(cell_area) or cell_area <= 0:
        raise ValueError(f"cell_area must be a positive finite number, got {cell_area!r}")
    t, p = _paired(truth, pred)
    m_true = cell_area * t.sum(axis=1)
    m_pred = cell_area * p.sum(axis=1)
    return float(np.max(_safe_ratio(np.abs(m_pred - m_true), m_true)))


def negativity_fraction(pred: np.ndarray) -> float:
    """Fraction of grid values (over all frames and cells) that are strictly negative."""
    pred = np.asarray(pred, dtype=np.float64)
    if pred.size == 0:
        raise ValueError("pred is empty; negativity_fraction needs at least one grid value")
    return float(np.mean(pred < 0.0))


def valid_prediction_time(times: np.ndarray, r2_t: np.ndarray, threshold: float) -> float:
    """How long a forecast stays skilful: the lead time of the first frame with R²(t) < threshold.

    With forecast frames k = 0..T−1 at ``times``: returns times[k*] − times[0] for the first k*
    with r2_t[k*] < threshold or r2_t[k*] not finite (a diverged or undefined frame counts as a
    failure); times[−1] − times[0] if no frame fails; hence 0.0 if the first frame fails.

    Args:
        times: (T,) increasing times of the forecast frames (seconds).
        r2_t: (T,) per-frame R² (e.g. :func:`r2_per_snapshot`).
        threshold: R² level below which the forecast is no longer valid (e.g. 0.5).

    Returns:
        Valid prediction time in the units of ``times``.
    """
    times = np.asarray(times, dtype=np.float64)
    r2_t = np.asarray(r2_t, dtype=np.float64)
    if times.ndim != 1 or times.shape != r2_t.shape or times.size == 0:
        raise ValueError(
            f"times has shape {times.shape} and r2_t has shape {r2_t.shape}; "
            "pass two 1-D arrays of the same non-zero length (one R² per forecast frame)"
        )
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}")
    failed = ~(r2_t >= threshold)  # NaN compares False, so it counts as failed
    if not failed.any():
        return float(times[-1] - times[0])
    return float(times[int(np.argmax(failed))] - times[0])


def latent_r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pooled R² in latent space: 1 − ΣΣ(y − ŷ)² / ΣΣ(y − ȳ)², ȳ the mean of all entries.

    Same pooled definition as :func:`r2_pooled`, applied to latent trajectories.

    Args:
        y_true, y_pred: (T, r) latent coordinates.

    Returns:
        R² as a float; NaN if ``y_true`` is constant.
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.ndim != 2:
        raise ValueError(f"y_true has shape {y_true.shape}; expected latent coordinates (T, r)")
    return r2_pooled(y_true, y_pred)
