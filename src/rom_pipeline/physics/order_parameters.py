"""Swarm order parameters computed from particles (science.md §8).

With unit headings p_i = v_i / |v_i| (agents with |v_i| = 0 contribute a zero vector):

- polarisation   P = | (1/N) sum_i p_i |                              in [0, 1]
- milling        M = | (1/N) sum_i (r_i x p_i) / |r_i| |, r_i = x_i - c  in [0, 1]
  with c the swarm centroid; on a torus c is the circular mean per axis,
  c = L/(2 pi) atan2(<sin(2 pi x/L)>, <cos(2 pi x/L)>), and r_i the minimal image of x_i - c.
  Agents at the centroid (|r_i| = 0) contribute 0.
- nematic order  Q = | (1/N) sum_i exp(2 i theta_i) |                 in [0, 1]

Every function takes (T, N, 2) arrays (or one (N, 2) frame) and returns (T,).
"""

from __future__ import annotations

import numpy as np

from rom_pipeline.physics import _checks
from rom_pipeline.physics.boundaries import minimal_image


def _unit_headings(velocities: np.ndarray) -> np.ndarray:
    speed = np.linalg.norm(velocities, axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(speed > 0.0, velocities / speed, 0.0)


def polarisation(velocities: np.ndarray) -> np.ndarray:
    """|mean unit heading| per frame; velocities (T, N, 2) or (N, 2) -> (T,)."""
    p = _unit_headings(_checks.frames_of_points("velocities", velocities))
    return np.linalg.norm(p.mean(axis=1), axis=-1)


def swarm_centroid(positions: np.ndarray, Lx: float, Ly: float, periodic: bool) -> np.ndarray:
    """Centroid per frame, (T, N, 2) or (N, 2) -> (T, 2); circular mean per axis when periodic."""
    pos = _checks.frames_of_points("positions", positions)
    if not periodic:
        return pos.mean(axis=1)
    box = np.array([_checks.positive_float("Lx", Lx), _checks.positive_float("Ly", Ly)])
    phase = pos * (2.0 * np.pi / box)
    angle = np.arctan2(np.sin(phase).mean(axis=1), np.cos(phase).mean(axis=1))
    return np.mod(angle, 2.0 * np.pi) * (box / (2.0 * np.pi))


def milling(
    positions: np.ndarray, velocities: np.ndarray, Lx: float, Ly: float, periodic: bool
) -> np.ndarray:
    """Normalised angular momentum about the centroid per frame, (T, N, 2) -> (T,).

    See the module docstring; minimal-image offsets from the circular-mean centroid on a torus.
    """
    pos = _checks.frames_of_points("positions", positions)
    vel = _checks.frames_of_points("velocities", velocities)
    if pos.shape != vel.shape:
        raise ValueError(
            f"positions {pos.shape} and velocities {vel.shape} must have the same shape."
        )
    Lx = _checks.positive_float("Lx", Lx)
    Ly = _checks.positive_float("Ly", Ly)
    offset = pos - swarm_centroid(pos, Lx, Ly, periodic)[:, None, :]
    if periodic:
        offset = minimal_image(offset, Lx, Ly)
    radial = _unit_headings(offset)
    p = _unit_headings(vel)
    cross = radial[..., 0] * p[..., 1] - radial[..., 1] * p[..., 0]
    return np.abs(cross.mean(axis=1))


def nematic_order(velocities: np.ndarray) -> np.ndarray:
    """|mean of exp(2 i theta_i)| per frame, theta_i = heading angle; (T, N, 2) -> (T,).

    Agents with zero speed contribute 0.
    """
    vel = _checks.frames_of_points("velocities", velocities)
    p = _unit_headings(vel)
    # exp(2 i theta) = (cos^2 - sin^2) + i (2 sin cos) for the unit heading (cos, sin)
    real = p[..., 0] ** 2 - p[..., 1] ** 2
    imag = 2.0 * p[..., 0] * p[..., 1]
    return np.hypot(real.mean(axis=1), imag.mean(axis=1))
