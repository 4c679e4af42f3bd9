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

The CRPS sums use :mod:`scoringrules` (``crps_ensemble``, compiled numba backend) with its
probability-weighted-moment estimator on members sorted by NumPy: for a sorted ensemble it equals
the fair estimator exactly (Zamo & Naveau 2018: ``sum_{i<j} |x_i - x_j| = sum_k (2k - M - 1) x_(k)``)
at O(M log M) per pixel instead of the fair gufunc's O(M^2) pair loop, about 3x faster for the
40-member pooled ensembles of the blend. The energy score's pair distances come from one centred
Gram matrix per frame (BLAS): ``||x_i - x_j||^2 = G_ii + G_jj - 2 G_ij`` with ``G = X X^T`` of the
members less their mean, about 5x faster than scoringrules' pair loop. Both agree with
scoringrules' ``estimator="fair"`` to ~1e-15 relative (tests/evaluation/test_scores.py).

Mixture with climatology (forecast post-processing, ``eval.ensemble_blend``). The mixture
``w F + (1 - w) C`` of a forecast ensemble ``F`` (M members) and a reference ensemble ``C``
(M_c members) is scored without building it: with the pixel means (per frame)

    A_F = mean_i |x_i - y|,  B_FF = mean_{i != j} |x_i - x_j|,  B_FC = mean_{i, j} |x_i - c_j|

(and ``A_C``, ``B_CC`` alike), the fair CRPS of the mixture is

    CRPS(w) = w A_F + (1 - w) A_C - 1/2 [w^2 B_FF + 2 w (1 - w) B_FC + (1 - w)^2 B_CC],

a convex quadratic in ``w`` (its w^2 coefficient is half the energy distance of F and C), equal to
the fair CRPS of ``F`` at ``w = 1`` and of ``C`` at ``w = 0``. The energy score has the same form
with Euclidean norms over the pixels. ``B_FC`` comes from the fair CRPS of the pooled ensemble
``F u C``: its ordered pair sum is the pair sums of ``F`` and ``C`` plus twice the cross sum; the
energy score's ``B`` terms are the blocks of the pooled ensemble's pair-distance matrix.
The mixture's mean is ``w xbar_F + (1 - w) xbar_C`` and its (per pixel) variance
``w s_F^2 + (1 - w) s_C^2 + w (1 - w) (xbar_F - xbar_C)^2``.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["crps_fair", "energy_score_fair", "fit_mixture_weight", "frame_scores", "mixture_components",
           "mixture_frame_scores", "skill", "spread_skill_ratio"]

_BACKEND = "numba"  # scoringrules' compiled gufuncs (see the module docstring)


# The first import of scoringrules writes numba's on-disk cache of its gufuncs. Two processes
# doing that at once (the Dask workers of a first run on a fresh install) can leave the cache
# inconsistent, after which every process that loads it segfaults (numba issue #10128; seen here
# in CI). The import is therefore serialised across the processes of one machine by this lock.
SCORINGRULES_IMPORT_LOCK = Path(tempfile.gettempdir()) / "rom_pipeline_scoringrules_import.lock"


def _scoringrules():
    """:mod:`scoringrules`, imported on first use: its import compiles every numba gufunc it
    ships (2-5 s per process), and only the ``lab_ensemble`` shift mode scores ensembles, while
    every ``kedro run`` imports this module through the pipeline registry. The first import in a
    process holds :data:`SCORINGRULES_IMPORT_LOCK` (see there)."""
    if "scoringrules" not in sys.modules:
        from filelock import FileLock

        with FileLock(SCORINGRULES_IMPORT_LOCK):
            import scoringrules  # noqa: F401
    return sys.modules["scoringrules"]


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
    return _crps_sorted(truth, _sorted_members_last(members))


def _sorted_members_last(members: np.ndarray) -> np.ndarray:
    """(M, ...) -> (..., M) contiguous, ascending along the last axis (members last: the gufunc's
    inner loop then reads one cache line per element)."""
    ensemble = np.ascontiguousarray(np.moveaxis(members, 0, -1))
    ensemble.sort(axis=-1)
    return ensemble


def _crps_sorted(truth: np.ndarray, ensemble: np.ndarray) -> np.ndarray:
    """Fair CRPS of a sorted members-last ensemble: scoringrules' PWM estimator, which equals the
    fair one for a sorted ensemble (module docstring); the absolute error for one member."""
    if ensemble.shape[-1] == 1:
        return np.abs(ensemble[..., 0] - truth)
    return np.asarray(_scoringrules().crps_ensemble(truth, ensemble, estimator="pwm", sorted_ensemble=True,
                                                    backend=_BACKEND), dtype=np.float64)


def _pair_distances(members: np.ndarray) -> np.ndarray:
    """(M, n, ...) members -> (n, M, M) Euclidean distances between every two members of each
    frame, from the Gram matrix of the centred members (module docstring); 0 on the diagonal."""
    M, n = members.shape[:2]
    x = np.ascontiguousarray(np.moveaxis(members.reshape(M, n, -1), 0, 1))  # (n, M, P)
    x -= x.mean(axis=1, keepdims=True)  # centring keeps the cancellation in G_ii + G_jj - 2 G_ij small
    gram = x @ np.swapaxes(x, 1, 2)
    sq = np.einsum("nii->ni", gram)
    d2 = sq[:, :, None] + sq[:, None, :] - 2.0 * gram
    d2[:, np.arange(M), np.arange(M)] = 0.0
    return np.sqrt(np.maximum(d2, 0.0))


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
    absolute = np.linalg.norm(flat - obs, axis=2).mean(axis=0)
    if M == 1:
        return absolute
    return absolute - _pair_distances(members).sum(axis=(1, 2)) / (2.0 * M * (M - 1))


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


#: Per-frame columns of :func:`mixture_components` (each (n,)).
MIXTURE_COMPONENTS = (
    "crps_abs_f", "crps_abs_c", "crps_pair_ff", "crps_pair_cc", "crps_pair_fc",
    "energy_abs_f", "energy_abs_c", "energy_pair_ff", "energy_pair_cc", "energy_pair_fc",
    "mse_f", "mse_c", "cross_fc", "variance_f", "variance_c", "mean_gap",
)


def _abs_and_pairs(fair: np.ndarray, absolute: np.ndarray, m: int) -> np.ndarray:
    """Mean over ordered pairs i != j of the distance, from a fair score and its absolute term:
    ``fair = absolute - pairs / 2`` (0 for a single member)."""
    return 2.0 * (absolute - fair) if m > 1 else np.zeros_like(fair)


def mixture_components(truth: np.ndarray, forecast: np.ndarray, reference: np.ndarray) -> dict[str, np.ndarray]:
    """Per-frame ingredients of the scores of every mixture ``w F + (1 - w) C`` (module docstring).

    Args:
        truth: (n, ny, nx) observed frames.
        forecast: (M, n, ny, nx) ensemble ``F``.
        reference: (M_c, n, ny, nx) ensemble ``C`` (e.g. the climatology).

    Returns:
        ``MIXTURE_COMPONENTS``, each (n,): pixel means of ``A`` and ``B`` of the CRPS
        (``crps_abs_*``, ``crps_pair_*``), the same Euclidean terms of the energy score
        (``energy_*``), the pixel-mean squared errors of the two ensemble means (``mse_f``,
        ``mse_c``) and their cross term mean((xbar_F - y)(xbar_C - y)) (``cross_fc``), the
        pixel-mean unbiased variances (``variance_*``, 0 for one member) and the pixel mean of
        (xbar_F - xbar_C)^2 (``mean_gap``).
    """
    truth, forecast = _members(truth, forecast)
    _, reference = _members(truth, reference)
    if truth.ndim != 3:
        raise ValueError(f"truth must have shape (n, ny, nx), got {truth.shape}")
    m, mc = forecast.shape[0], reference.shape[0]
    pooled = np.concatenate([forecast, reference], axis=0)
    n = truth.shape[0]
    out: dict[str, np.ndarray] = {}
    # CRPS: pixel means of the absolute terms and of the pair means
    abs_f = np.abs(forecast - truth).mean(axis=0)
    abs_c = np.abs(reference - truth).mean(axis=0)
    sorted_f, sorted_c = _sorted_members_last(forecast), _sorted_members_last(reference)
    sorted_u = np.concatenate([sorted_f, sorted_c], axis=-1)
    sorted_u.sort(axis=-1)
    pair_ff = _abs_and_pairs(_crps_sorted(truth, sorted_f), abs_f, m)
    pair_cc = _abs_and_pairs(_crps_sorted(truth, sorted_c), abs_c, mc)
    abs_u = (m * abs_f + mc * abs_c) / (m + mc)
    pair_uu = _abs_and_pairs(_crps_sorted(truth, sorted_u), abs_u, m + mc)  # mean over (m+mc)(m+mc-1) pairs
    total = pair_uu * (m + mc) * (m + mc - 1) - pair_ff * m * (m - 1) - pair_cc * mc * (mc - 1)
    pair_fc = total / (2.0 * m * mc)
    for key, value in (("crps_abs_f", abs_f), ("crps_abs_c", abs_c), ("crps_pair_ff", pair_ff),
                       ("crps_pair_cc", pair_cc), ("crps_pair_fc", pair_fc)):
        out[key] = value.mean(axis=(1, 2))
    # energy score: the same with Euclidean norms over the pixels
    obs = truth.reshape(n, -1)
    e_abs_f = np.linalg.norm(forecast.reshape(m, n, -1) - obs, axis=2).mean(axis=0)
    e_abs_c = np.linalg.norm(reference.reshape(mc, n, -1) - obs, axis=2).mean(axis=0)
    dist = _pair_distances(pooled)  # (n, m + mc, m + mc): the FF, CC and FC blocks
    e_ff = dist[:, :m, :m].sum(axis=(1, 2)) / (m * (m - 1)) if m > 1 else np.zeros(n)
    e_cc = dist[:, m:, m:].sum(axis=(1, 2)) / (mc * (mc - 1)) if mc > 1 else np.zeros(n)
    e_fc = dist[:, :m, m:].mean(axis=(1, 2))
    out.update(energy_abs_f=e_abs_f, energy_abs_c=e_abs_c, energy_pair_ff=e_ff, energy_pair_cc=e_cc,
               energy_pair_fc=e_fc)
    # ensemble means and variances
    mean_f, mean_c = forecast.mean(axis=0), reference.mean(axis=0)
    out["mse_f"] = ((mean_f - truth) ** 2).mean(axis=(1, 2))
    out["mse_c"] = ((mean_c - truth) ** 2).mean(axis=(1, 2))
    out["cross_fc"] = ((mean_f - truth) * (mean_c - truth)).mean(axis=(1, 2))
    out["variance_f"] = forecast.var(axis=0, ddof=1).mean(axis=(1, 2)) if m > 1 else np.zeros(n)
    out["variance_c"] = reference.var(axis=0, ddof=1).mean(axis=(1, 2)) if mc > 1 else np.zeros(n)
    out["mean_gap"] = ((mean_f - mean_c) ** 2).mean(axis=(1, 2))
    return out


def _check_weight(weight) -> np.ndarray:
    w = np.asarray(weight, dtype=np.float64)
    if not np.all(np.isfinite(w)) or np.any(w < 0) or np.any(w > 1):
        raise ValueError(
            f"a climatology blend weight must lie in [0, 1] (1: the forecast alone, 0: the "
            f"climatology alone), got {weight!r}"
        )
    return w


def mixture_frame_scores(components: dict[str, np.ndarray], weight) -> dict[str, np.ndarray]:
    """Per-frame scores of the mixture ``w F + (1 - w) C`` from :func:`mixture_components`.

    Args:
        components: ``MIXTURE_COMPONENTS``, each (n,).
        weight: w in [0, 1], a scalar or (n,) one per frame.

    Returns:
        ``crps``, ``energy``, ``mse_mean`` (of the mixture mean) and ``variance`` (pixel-mean
        mixture variance), each (n,), like :func:`frame_scores`.
    """
    w = _check_weight(weight)
    c = components
    v = 1.0 - w

    def fair(prefix: str) -> np.ndarray:
        return (w * c[f"{prefix}_abs_f"] + v * c[f"{prefix}_abs_c"]
                - 0.5 * (w * w * c[f"{prefix}_pair_ff"] + 2.0 * w * v * c[f"{prefix}_pair_fc"]
                         + v * v * c[f"{prefix}_pair_cc"]))

    return {
        "crps": fair("crps"),
        "energy": fair("energy"),
        "mse_mean": w * w * c["mse_f"] + v * v * c["mse_c"] + 2.0 * w * v * c["cross_fc"],
        "variance": w * c["variance_f"] + v * c["variance_c"] + w * v * c["mean_gap"],
    }


def fit_mixture_weight(components: dict[str, np.ndarray], score: str = "crps") -> float:
    """The w in [0, 1] minimising the summed mixture score ``sum_frames S(w)`` (module
    docstring): the vertex of the convex quadratic ``a w^2 + b w + const``, clipped to [0, 1].

    Args:
        components: ``MIXTURE_COMPONENTS`` of the frames to fit (each (n,), n >= 1).
        score: ``crps`` (the pixel-mean fair CRPS) or ``energy`` (the fair energy score).

    Returns:
        the optimal weight (1 when the forecast and reference ensembles coincide: a = 0, b >= 0).
    """
    if score not in ("crps", "energy"):
        raise ValueError(f"a mixture weight is fitted on the 'crps' or the 'energy' score, got {score!r}")
    c = {k: np.asarray(components[f"{score}_{k}"], dtype=np.float64)
         for k in ("abs_f", "abs_c", "pair_ff", "pair_cc", "pair_fc")}
    if c["abs_f"].size == 0:
        raise ValueError("fitting a climatology blend weight needs at least one scored frame")
    a = float(np.sum(c["pair_fc"] - 0.5 * (c["pair_ff"] + c["pair_cc"])))
    b = float(np.sum(c["abs_f"] - c["abs_c"] - c["pair_fc"] + c["pair_cc"]))
    if a <= 0.0:  # flat or (by sampling noise) concave: the better end point
        return 1.0 if a + b <= 0.0 else 0.0
    return float(np.clip(-b / (2.0 * a), 0.0, 1.0))
