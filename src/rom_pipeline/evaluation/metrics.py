"""Forecast-skill metrics for density movies and latent trajectories (science.md §8).

Density arrays are (T, ny, nx) with frames along axis 0 ("frame" = one time t); every metric
treats all axes after the first as space, so (T, n) arrays work too. ``truth`` is ρ, ``pred``
is ρ̂. Undefined quantities (a reference with zero variance or zero norm) come back as NaN
rather than raising: a uniform truth frame has no R², and the caller decides how to report it.
"""
from __future__ import annotations

import numpy as np

__all__ = [
    "TruthStatistics",
    "density_scores",
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


class TruthStatistics:
    """The truth side of every density metric above, computed once for a truth block and reused
    for every prediction scored against it (each shift mode of each forecaster).

    With t the (T, n) truth (frames × cells, float64): ``ss_tot`` = Σ(t − t̄)² (t̄ the block mean,
    :func:`r2_pooled`), ``ss_tot_frame`` (T,) = Σ_x (t_k − ⟨t_k⟩_x)² (:func:`r2_per_snapshot`),
    ``ss_tot_cumulative`` (T,) (:func:`r2_cumulative`), ``abs_sum``, ``l2_norm``, ``abs_max`` (T,)
    (:func:`relative_errors`), ``mass_sum`` (T,) = Σ_x t_k (:func:`mass_violation`, before the
    cell area), and per frame range ``[start, stop)`` the pooled Σ(t − t̄_range)² of that range
    (:meth:`window_ss_tot`, cached). Each is the very expression of the function it stands for, so
    :func:`density_scores` returns what those functions return, bit for bit.
    """

    def __init__(self, truth: np.ndarray):
        truth = np.asarray(truth, dtype=np.float64)
        if truth.ndim < 2 or truth.shape[0] == 0:
            raise ValueError(
                f"truth has shape {truth.shape}; expected at least one frame with frames on axis 0, "
                "e.g. (T, ny, nx)"
            )
        self.shape = truth.shape
        t = truth.reshape(truth.shape[0], -1)
        self.truth = t
        c = t - t.mean()
        c2 = c * c
        self.ss_tot = np.sum(c2)
        self.ss_tot_frame = np.sum((t - t.mean(axis=1, keepdims=True)) ** 2, axis=1)
        s1 = np.cumsum(c.sum(axis=1))
        s2 = np.cumsum(c2.sum(axis=1))
        n = t.shape[1] * np.arange(1, t.shape[0] + 1, dtype=np.float64)
        self.ss_tot_cumulative = np.maximum(s2 - s1 * s1 / n, 0.0)
        self.abs_sum = np.abs(t).sum(axis=1)
        self.l2_norm = np.sqrt((t * t).sum(axis=1))
        self.abs_max = np.abs(t).max(axis=1)
        self.mass_sum = t.sum(axis=1)
        self._windows: dict[tuple[int, int], float] = {}

    def r2(self, pred: np.ndarray) -> tuple[float, np.ndarray]:
        """(:func:`r2_pooled`, :func:`r2_per_snapshot`) of ``pred`` (T, ny, nx) against this truth."""
        sq = self._residual(pred) ** 2
        return float(1.0 - _safe_ratio(np.sum(sq), self.ss_tot)), 1.0 - _safe_ratio(sq.sum(axis=1), self.ss_tot_frame)

    def _residual(self, pred: np.ndarray) -> np.ndarray:
        """(T, n) t − p of a prediction of the truth's shape."""
        pred = np.asarray(pred, dtype=np.float64)
        if pred.shape != self.shape:
            raise ValueError(
                f"truth has shape {self.shape} but pred has shape {pred.shape}; "
                "pass the prediction on the same (T, ny, nx) grid and time frames as the truth"
            )
        return self.truth - pred.reshape(pred.shape[0], -1)

    def window_ss_tot(self, start: int, stop: int) -> float:
        """Σ(t − t̄)² over frames ``start..stop−1`` (t̄ their mean), as :func:`r2_pooled` of them."""
        key = (int(start), int(stop))
        if key not in self._windows:
            t = self.truth[start:stop]
            self._windows[key] = np.sum((t - t.mean()) ** 2)
        return self._windows[key]


def density_scores(
    stats: TruthStatistics, pred: np.ndarray, cell_area: float = 1.0,
    windows: dict[str, tuple[int, int]] | None = None,
) -> dict:
    """Every density metric of ``pred`` against the truth of ``stats`` in one pass over the
    residual ρ − ρ̂ (the functions above each recompute it; a forecast block scores several
    (T, ny, nx) movies of thousands of frames, where those passes dominate).

    Args:
        stats: the truth's :class:`TruthStatistics` (T frames).
        pred: (T, ny, nx) prediction on the truth's grid.
        cell_area: ΔxΔy > 0 (:func:`mass_violation`).
        windows: ``{name: (start, stop)}`` frame ranges scored by pooled R² (an empty range: NaN).

    Returns:
        ``r2_pooled``, ``rmse``, ``mse``, ``mass_violation_max``, ``negativity_fraction`` (floats),
        ``r2_t`` and ``r2_cumulative`` (T,), ``rel`` ({``l1``, ``l2``, ``linf``}: (T,)) and
        ``windows`` ({name: pooled R²}): equal to :func:`r2_pooled`, :func:`rmse`, :func:`mse`,
        :func:`mass_violation`, :func:`negativity_fraction`, :func:`r2_per_snapshot`,
        :func:`r2_cumulative`, :func:`relative_errors` and :func:`r2_pooled` of each range.
    """
    if not np.isfinite(cell_area) or cell_area <= 0:
        raise ValueError(f"cell_area must be a positive finite number, got {cell_area!r}")
    err = stats._residual(pred)
    p = np.asarray(pred, dtype=np.float64).reshape(err.shape)
    sq = err * err  # == (t - p) ** 2, the residual of every R² above
    ss_res_frame = sq.sum(axis=1)
    mean_sq = np.mean(sq)
    scores = {
        "r2_pooled": float(1.0 - _safe_ratio(np.sum(sq), stats.ss_tot)),
        "rmse": float(np.sqrt(mean_sq)),
        "mse": float(mean_sq),
        "mass_violation_max": float(np.max(_safe_ratio(
            np.abs(cell_area * p.sum(axis=1) - cell_area * stats.mass_sum), cell_area * stats.mass_sum))),
        "negativity_fraction": float(np.mean(p < 0.0)),
        "r2_t": 1.0 - _safe_ratio(ss_res_frame, stats.ss_tot_frame),
        "r2_cumulative": 1.0 - _safe_ratio(np.cumsum(ss_res_frame), stats.ss_tot_cumulative),
    }
    np.abs(err, out=err)
    scores["rel"] = {
        "l1": _safe_ratio(err.sum(axis=1), stats.abs_sum),
        "l2": _safe_ratio(np.sqrt(ss_res_frame), stats.l2_norm),
        "linf": _safe_ratio(err.max(axis=1), stats.abs_max),
    }
    scores["windows"] = {
        name: (float(1.0 - _safe_ratio(np.sum(sq[start:stop]), stats.window_ss_tot(start, stop)))
               if stop > start else float("nan"))
        for name, (start, stop) in (windows or {}).items()
    }
    return scores
