"""Proper scores of ensemble density forecasts (issue 14).

For a forecast frame with truth ``y`` (ny, nx) and ensemble members ``x_1..x_M`` (M, ny, nx):

CRPS per pixel, fair ensemble estimator (Ferro 2014), averaged over the pixels ``p``::

    CRPS_p = (1/M) sum_i |x_i,p - y_p| - 1 / (2 M (M-1)) sum_{i,j} |x_i,p - x_j,p|

Energy score per frame, fair estimator, ``||.||`` the Euclidean norm over all pixels::

    ES = (1/M) sum_i ||x_i - y|| - 1 / (2 M (M-1)) sum_{i,j} ||x_i - x_j||

A single member (M = 1) is a point forecast: its CRPS is the absolute error and its energy score
the Euclidean error (the spread terms vanish); this is how a deterministic reference such as the
held track is scored. Skill against a reference ``1 - S_model / S_reference`` (> 0: better).

Spread/skill ratio (Fortin et al. 2014) over a set of frames and pixels::

    sqrt((M+1)/M * mean(s^2)) / sqrt(mean((xbar - y)^2))

with ``s^2`` the unbiased ensemble variance and ``xbar`` the ensemble mean; 1 for a calibrated
ensemble, < 1 over-confident, > 1 under-confident.

The ensemble sums use :mod:`scoringrules` (``crps_ensemble``, ``es_ensemble``, ``estimator="fair"``)
with its compiled numba backend: without ``backend=`` scoringrules takes its NumPy path, whose
(M, M, ...) pairwise temporaries made these scores about 90 % of the evaluation time; the numba
gufuncs agree with it to ~1e-16 relative (summation order only).
"""
from __future__ import annotations

import numpy as np
import scoringrules as sr

__all__ = ["crps_fair", "energy_score_fair", "frame_scores", "skill", "spread_skill_ratio"]

_BACKEND = "numba"  # scoringrules' compiled gufuncs (see the module docstring)


def _members(truth: np.ndarray, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    truth = np.asarray(truth, dtype=np.float64)
    members = np.asarray(members, dtype=np.float64)
    if members.ndim != truth.ndim + 1 or members.shape[1:] != truth.shape:
        raise ValueError(
            f"members must have shape (M,) + truth.shape = (M,) + {truth.shape}, got {members.shape}"
        )
    if members.shape[0] < 1:
        raise ValueError("an ensemble needs at least one member (eval.ensemble_size >= 1)")
    return truth, members


def crps_fair(truth: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Fair-estimator CRPS of every element.

    Args:
        truth: (...) observed values.
        members: (M, ...) ensemble.

    Returns:
        (...) CRPS; the absolute error when M = 1.
    """
    truth, members = _members(truth, members)
    if members.shape[0] == 1:
        return np.abs(members[0] - truth)
    # members last and contiguous: the gufunc's inner loop then reads one cache line per element
    ensemble = np.ascontiguousarray(np.moveaxis(members, 0, -1))
    return np.asarray(sr.crps_ensemble(truth, ensemble, estimator="fair", backend=_BACKEND),
                      dtype=np.float64)


def energy_score_fair(truth: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Fair-estimator energy score of every frame.

    Args:
        truth: (n, ny, nx) observed frames.
        members: (M, n, ny, nx) ensemble.

    Returns:
        (n,) energy scores (Euclidean norm over the ny*nx pixels); the Euclidean error when M = 1.
    """
    truth, members = _members(truth, members)
    if truth.ndim != 3:
        raise ValueError(f"truth must have shape (n, ny, nx), got {truth.shape}")
    M, n = members.shape[:2]
    flat = members.reshape(M, n, -1)
    obs = truth.reshape(n, -1)
    if M == 1:
        return np.linalg.norm(flat[0] - obs, axis=1)
    return np.asarray(sr.es_ensemble(obs, np.moveaxis(flat, 0, 1), estimator="fair", backend=_BACKEND), dtype=np.float64)


def frame_scores(truth: np.ndarray, members: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame ingredients of the ensemble scores.

    Args:
        truth: (n, ny, nx).
        members: (M, n, ny, nx).

    Returns:
        ``crps`` (n,) pixel-mean fair CRPS, ``energy`` (n,) fair energy score, ``mse_mean`` (n,)
        pixel-mean squared error of the ensemble mean, ``variance`` (n,) pixel-mean unbiased
        ensemble variance (0 when M = 1).
    """
    truth, members = _members(truth, members)
    M = members.shape[0]
    mean = members.mean(axis=0)
    variance = members.var(axis=0, ddof=1).mean(axis=(1, 2)) if M > 1 else np.zeros(truth.shape[0])
    return {
        "crps": crps_fair(truth, members).mean(axis=(1, 2)),
        "energy": energy_score_fair(truth, members),
        "mse_mean": ((mean - truth) ** 2).mean(axis=(1, 2)),
        "variance": variance,
    }


def spread_skill_ratio(variance: np.ndarray, mse_mean: np.ndarray, n_members: int) -> float:
    """``sqrt((M+1)/M * mean(variance)) / sqrt(mean(mse_mean))`` over the given frames (NaN if the
    ensemble mean is exact)."""
    if int(n_members) < 2:
        raise ValueError(f"the spread/skill ratio needs at least 2 members, got {n_members}")
    m = float(n_members)
    skill_rmse = float(np.sqrt(np.mean(mse_mean)))
    if skill_rmse == 0.0:
        return float("nan")
    return float(np.sqrt((m + 1.0) / m * np.mean(variance)) / skill_rmse)


def skill(score: np.ndarray | float, reference: np.ndarray | float) -> np.ndarray | float:
    """Skill ``1 - score / reference`` of a negatively oriented score (NaN where reference is 0)."""
    score = np.asarray(score, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(reference > 0, 1.0 - score / np.where(reference > 0, reference, 1.0), np.nan)
    return float(out) if out.ndim == 0 else out
