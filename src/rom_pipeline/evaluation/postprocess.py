"""Positivity and mass post-processing of lifted density forecasts (science.md §4).

A raw POD lift conserves mass but can go negative; clamping restores positivity but adds mass.
``clamp`` handles positivity, ``mass_postprocess`` restores a target mass M0 (the true mass of the
last conditioning frame in the evaluation protocol). Arrays are (T, ny, nx), frames on axis 0;
mass is M_t = ΔxΔy Σ_x ρ_t.
"""
from __future__ import annotations

import logging

import numpy as np

__all__ = ["CLAMP_MODES", "MASS_MODES", "clamp", "mass_postprocess", "project_simplex"]

logger = logging.getLogger(__name__)

CLAMP_MODES = ("none", "clamp", "clamp_renormalise")
MASS_MODES = ("none", "scale", "simplex")


def _frames(rho: np.ndarray, name: str = "rho") -> np.ndarray:
    rho = np.asarray(rho, dtype=np.float64)
    if rho.ndim < 2 or rho.shape[0] == 0:
        raise ValueError(
            f"{name} has shape {rho.shape}; expected frames on axis 0, e.g. (T, ny, nx)"
        )
    return rho


def clamp(rho: np.ndarray, mode: str) -> np.ndarray:
    """Enforce positivity of density frames.

    Modes:
        ``"none"``: return ρ unchanged (as a float64 copy).
        ``"clamp"``: ρ⁺ = max(ρ, 0).
        ``"clamp_renormalise"``: ρ⁺ rescaled per frame to its pre-clamp mass,
            ρ⁺_t · Σρ_t / Σρ⁺_t. A frame whose pre-clamp mass is ≤ 0 or whose clamped mass is 0
            cannot be rescaled to a non-negative field of that mass and is left clamped.

    Args:
        rho: (T, ny, nx) densities.
        mode: one of ``CLAMP_MODES``.

    Returns:
        (T, ny, nx) float64 array.
    """
    if mode not in CLAMP_MODES:
        raise ValueError(f"clamp mode {mode!r} is unknown; use one of {CLAMP_MODES}")
    rho = _frames(rho)
    if mode == "none":
        return rho.copy()
    clamped = np.maximum(rho, 0.0)
    if mode == "clamp":
        return clamped
    axes = tuple(range(1, rho.ndim))
    mass_before = rho.sum(axis=axes)
    mass_after = clamped.sum(axis=axes)
    ok = (mass_before > 0) & (mass_after > 0)
    if not ok.all():
        logger.warning(
            "clamp_renormalise: %d of %d frames have non-positive mass and were only clamped",
            int((~ok).sum()), ok.size,
        )
    factor = np.ones_like(mass_before)
    factor[ok] = mass_before[ok] / mass_after[ok]
    return clamped * factor.reshape((-1,) + (1,) * (rho.ndim - 1))


def project_simplex(v: np.ndarray, total: float | np.ndarray) -> np.ndarray:
    """Euclidean projection onto the scaled simplex {w ≥ 0, Σw = total}, along the last axis.

    Solves min_w ‖w − v‖² s.t. w ≥ 0, Σ_i w_i = total with the sort-based algorithm of Duchi,
    Shalev-Shwartz, Singer & Chandra (ICML 2008): with u = sort(v) descending and
    ρ = max{j : u_j − (Σ_{i≤j} u_i − total)/j > 0}, θ = (Σ_{i≤ρ} u_i − total)/ρ and
    w = max(v − θ, 0). O(n log n) per vector, vectorised over leading axes.

    Args:
        v: (..., n) vectors (e.g. (T, ny·nx) flattened frames); must be finite.
        total: positive target sum, a scalar or an array of shape v.shape[:-1].

    Returns:
        w with the shape of v (float64).
    """
    v = np.asarray(v, dtype=np.float64)
    if v.ndim < 1 or v.shape[-1] == 0:
        raise ValueError(f"v has shape {v.shape}; expected (..., n) with n >= 1")
    if not np.all(np.isfinite(v)):
        raise ValueError(
            "v contains non-finite values; a diverged forecast cannot be projected "
            "(check for divergence before post-processing)"
        )
    total = np.asarray(total, dtype=np.float64)
    try:
        total = np.broadcast_to(total, v.shape[:-1])
    except ValueError:
        raise ValueError(
            f"total has shape {total.shape}; expected a scalar or shape {v.shape[:-1]} "
            "(one target per vector)"
        ) from None
    if not np.all(np.isfinite(total)) or np.any(total <= 0):
        raise ValueError(f"total must be positive and finite, got {total!r}")

    n = v.shape[-1]
    u = -np.sort(-v, axis=-1)
    css = np.cumsum(u, axis=-1) - total[..., None]
    j = np.arange(1, n + 1, dtype=np.float64)
    positive = u - css / j > 0  # true on a prefix; j = 1 always qualifies since total > 0
    rho = n - 1 - np.argmax(positive[..., ::-1], axis=-1)
    theta = np.take_along_axis(css, rho[..., None], axis=-1) / (rho[..., None] + 1.0)
    return np.maximum(v - theta, 0.0)


def mass_postprocess(
    rho: np.ndarray,
    mode: str,
    target_mass: float | np.ndarray,
    cell_area: float = 1.0,
) -> np.ndarray:
    """Restore each frame's mass M_t = ΔxΔy Σ_x ρ_t to ``target_mass``.

    Modes:
        ``"none"``: return ρ unchanged (float64 copy).
        ``"scale"``: ρ_t · M0 / M_t. A frame with M_t ≤ 0 (or non-finite) cannot be scaled to a
            positive mass; it becomes NaN (logged), so the evaluation reports it instead of
            silently flipping its sign.
        ``"simplex"``: Euclidean projection of each frame onto {ρ ≥ 0, ΔxΔy Σρ = M0}
            (:func:`project_simplex` on the flattened frame with total M0/ΔxΔy); the closest
            non-negative field of the right mass.

    Args:
        rho: (T, ny, nx) densities.
        mode: one of ``MASS_MODES``.
        target_mass: M0 > 0, a scalar or (T,) (same units as ΔxΔy·ρ, e.g. number of agents).
        cell_area: ΔxΔy > 0.

    Returns:
        (T, ny, nx) float64 array.
    """
    if mode not in MASS_MODES:
        raise ValueError(f"mass post-processing mode {mode!r} is unknown; use one of {MASS_MODES}")
    rho = _frames(rho)
    if mode == "none":
        return rho.copy()
    if not np.isfinite(cell_area) or cell_area <= 0:
        raise ValueError(f"cell_area must be a positive finite number, got {cell_area!r}")
    target = np.asarray(target_mass, dtype=np.float64)
    if target.ndim not in (0, 1) or (target.ndim == 1 and target.shape[0] != rho.shape[0]):
        raise ValueError(
            f"target_mass has shape {target.shape}; expected a scalar or ({rho.shape[0]},)"
        )
    if not np.all(np.isfinite(target)) or np.any(target <= 0):
        raise ValueError(f"target_mass must be positive and finite, got {target_mass!r}")
    target = np.broadcast_to(target, (rho.shape[0],))
    flat = rho.reshape(rho.shape[0], -1)

    if mode == "scale":
        mass = cell_area * flat.sum(axis=1)
        ok = np.isfinite(mass) & (mass > 0)
        if not ok.all():
            logger.warning(
                "mass scale: %d of %d frames have non-positive or non-finite mass; set to NaN",
                int((~ok).sum()), ok.size,
            )
        factor = np.full(rho.shape[0], np.nan)
        factor[ok] = target[ok] / mass[ok]
        return (flat * factor[:, None]).reshape(rho.shape)

    return project_simplex(flat, target / cell_area).reshape(rho.shape)
