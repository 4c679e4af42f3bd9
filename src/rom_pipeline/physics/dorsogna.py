"""Continuous D'Orsogna self-propelled particle model (science.md §1.2).

    dx_i/dt = v_i
    dv_i/dt = (alpha - beta |v_i|^2) v_i + F_i + A_i

F_i = -sum_{j != i, r_ij <= rcut} f(r_ij) (x_j - x_i)/r_ij is the Morse force of
:mod:`rom_pipeline.physics.forces` (rcut = rcut_factor max(lr, la)); self-propulsion drives every
speed towards sqrt(alpha/beta). The optional alignment term relaxes each velocity towards the mean
velocity of its neighbourhood (self included, radius R):

    A_i = alignment_strength ( (1/|N_i|) sum_{j in N_i} v_j - v_i )

Integrators (fixed step dt):
- ``rk4``: classical 4th-order Runge-Kutta on (x, v); forces are re-evaluated at each stage.
- ``semi_implicit_euler``: first order, the cubic friction taken implicitly and the position
  updated with the new velocity (symplectic Euler):
      v_{n+1} = (v_n + dt (alpha v_n + F(x_n) + A(x_n, v_n))) / (1 + dt beta |v_n|^2)
      x_{n+1} = x_n + dt v_{n+1}
  Its fixed points keep |v| = sqrt(alpha/beta) exactly and it stays stable for large speeds.

Optional angular noise (``noise_eta`` > 0), applied after each deterministic step by operator
splitting: every velocity is rotated by dtheta ~ N(0, noise_eta^2 dt) (rotational diffusion with
coefficient noise_eta^2 / 2; speeds unchanged).

Boundaries: ``periodic`` wraps positions after each step (minimal-image distances at every stage);
``reflecting`` mirrors positions back inside after each step and flips the normal velocity.
Without self-propulsion or alignment (alpha = beta = 0, alignment_strength = 0) the pairwise
forces conserve the total momentum sum_i v_i.
"""

from __future__ import annotations

import math

import numpy as np

from rom_pipeline.physics import _checks
from rom_pipeline.physics.boundaries import BOUNDARIES, place_in_box, reflect_into_box, wrap_periodic
from rom_pipeline.physics.forces import morse_forces_and_neighbourhood_sums, morse_forces_from_pairs
from rom_pipeline.physics.neighbours import brute_force_pairs, neighbour_pairs, neighbourhood_sum

INTEGRATORS = ("rk4", "semi_implicit_euler")
# "cell_list" (default): one compiled pass for forces and alignment sums; see vicsek.py
NEIGHBOUR_METHODS = {"cell_list": None, "kdtree": neighbour_pairs, "brute_force": brute_force_pairs}


class _Acceleration:
    """dv/dt of the D'Orsogna model for positions x (N, 2) and velocities v (N, 2)."""

    def __init__(self, *, alpha, beta, morse, rcut, alignment_strength, R, Lx, Ly, periodic,
                 find_pairs):
        self.alpha = alpha
        self.beta = beta
        self.morse = morse
        self.rcut = rcut
        self.alignment_strength = alignment_strength
        self.R = R
        self.Lx, self.Ly, self.periodic = Lx, Ly, periodic
        self.find_pairs = find_pairs
        self.query_radius = max(rcut, R) if alignment_strength > 0 else rcut

    def interaction(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """F_i + A_i: Morse force plus the optional alignment term, (N, 2)."""
        n = x.shape[0]
        if self.periodic:
            x = wrap_periodic(x, self.Lx, self.Ly)
        if self.find_pairs is None:
            align_radius = self.R if self.alignment_strength > 0 else 0.0
            summed, total = morse_forces_and_neighbourhood_sums(
                x, np.column_stack((v, np.ones(n))), align_radius, self.rcut,
                self.Lx, self.Ly, self.periodic, *self.morse,
            )
        else:
            i, j, dx, r = self.find_pairs(x, self.query_radius, self.Lx, self.Ly, self.periodic)
            total = morse_forces_from_pairs(n, i, j, dx, r, *self.morse, rcut=self.rcut)
            if self.alignment_strength > 0:
                weights = (r <= self.R).astype(np.float64)
                summed = neighbourhood_sum(np.column_stack((v, np.ones(n))), i, j, weights=weights)
        if self.alignment_strength > 0:
            mean_v = summed[:, :2] / summed[:, 2:]
            total += self.alignment_strength * (mean_v - v)
        return total

    def __call__(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        speed_sq = np.einsum("ij,ij->i", v, v)
        return (self.alpha - self.beta * speed_sq)[:, None] * v + self.interaction(x, v)


def _rk4_step(x, v, dt, accel):
    a1 = accel(x, v)
    x2, v2 = x + 0.5 * dt * v, v + 0.5 * dt * a1
    a2 = accel(x2, v2)
    x3, v3 = x + 0.5 * dt * v2, v + 0.5 * dt * a2
    a3 = accel(x3, v3)
    x4, v4 = x + dt * v3, v + dt * a3
    a4 = accel(x4, v4)
    x_new = x + (dt / 6.0) * (v + 2.0 * v2 + 2.0 * v3 + v4)
    v_new = v + (dt / 6.0) * (a1 + 2.0 * a2 + 2.0 * a3 + a4)
    return x_new, v_new


def _semi_implicit_euler_step(x, v, dt, accel):
    speed_sq = np.einsum("ij,ij->i", v, v)
    explicit = v + dt * (accel.alpha * v + accel.interaction(x, v))
    v_new = explicit / (1.0 + dt * accel.beta * speed_sq)[:, None]
    return x + dt * v_new, v_new


_STEPPERS = {"rk4": _rk4_step, "semi_implicit_euler": _semi_implicit_euler_step}


def simulate_dorsogna(
    x0: np.ndarray,
    theta0: np.ndarray,
    *,
    n_steps: int,
    dt: float,
    alpha: float,
    beta: float,
    Ca: float,
    Cr: float,
    la: float,
    lr: float,
    rcut_factor: float = 3.0,
    Lx: float,
    Ly: float,
    boundary: str,
    integrator: str = "rk4",
    alignment_strength: float = 0.0,
    R: float | None = None,
    noise_eta: float = 0.0,
    rng: np.random.Generator | None,
    save_every: int = 1,
    velocities0: np.ndarray | None = None,
    neighbour_method: str = "cell_list",
) -> dict:
    """Simulate the D'Orsogna model (see the module docstring for the equations).

    Parameters
    ----------
    x0 : (N, 2) initial positions (periodic ones are wrapped; reflecting ones must be inside).
    theta0 : (N,) initial heading angles; the initial velocity is sqrt(alpha/beta) (cos, sin).
    n_steps >= 0, dt > 0; alpha, beta >= 0 (beta = 0 needs alpha = 0 or ``velocities0``).
    Ca, Cr >= 0, la, lr > 0: Morse parameters; rcut_factor > 0.
    boundary : "periodic" | "reflecting"; integrator : "rk4" | "semi_implicit_euler".
    alignment_strength >= 0 (needs R > 0 when positive); noise_eta >= 0 (needs ``rng``).
    save_every : keep every k-th step (frame 0 is the IC).
    velocities0 : optional (N, 2) initial velocities overriding sqrt(alpha/beta) along theta0.
    neighbour_method : "cell_list" (default, compiled), "kdtree" or "brute_force" (O(N^2) oracle,
        for tests); they agree up to the summation order of pair contributions.

    Returns
    -------
    {"times": (T,), "positions": (T, N, 2), "velocities": (T, N, 2)}, T = n_steps//save_every + 1.
    """
    x, theta, n_steps, save_every, dt = _checks.initial_state(x0, theta0, n_steps, save_every, dt)
    n = x.shape[0]
    alpha = _checks.nonnegative_float("alpha", alpha)
    beta = _checks.nonnegative_float("beta", beta)
    morse = (
        _checks.nonnegative_float("Ca", Ca),
        _checks.nonnegative_float("Cr", Cr),
        _checks.positive_float("la", la),
        _checks.positive_float("lr", lr),
    )
    rcut = _checks.positive_float("rcut_factor", rcut_factor) * max(morse[2], morse[3])
    Lx = _checks.positive_float("Lx", Lx)
    Ly = _checks.positive_float("Ly", Ly)
    boundary = _checks.choice("boundary", boundary, BOUNDARIES)
    integrator = _checks.choice("integrator", integrator, INTEGRATORS)
    neighbour_method = _checks.choice(
        "neighbour_method", neighbour_method, tuple(NEIGHBOUR_METHODS)
    )
    alignment_strength = _checks.nonnegative_float("alignment_strength", alignment_strength)
    if alignment_strength > 0:
        if R is None:
            raise ValueError(
                f"alignment_strength={alignment_strength} needs the alignment radius R; pass R > 0."
            )
        R = _checks.positive_float("R", R)
    else:
        R = 0.0
    noise_eta = _checks.nonnegative_float("noise_eta", noise_eta)
    if noise_eta > 0:
        rng = _checks.generator("rng", rng)

    if velocities0 is None:
        if beta == 0 and alpha > 0:
            raise ValueError(
                f"beta=0 with alpha={alpha} has no cruising speed sqrt(alpha/beta); "
                f"use beta > 0 or pass velocities0."
            )
        speed0 = math.sqrt(alpha / beta) if beta > 0 else 0.0
        v = speed0 * np.column_stack((np.cos(theta), np.sin(theta)))
    else:
        v = _checks.points_2d("velocities0", velocities0)
        if v.shape != (n, 2):
            raise ValueError(f"velocities0 must have shape ({n}, 2) to match x0, got {v.shape}.")
        v = v.copy()

    periodic = boundary == "periodic"
    x = place_in_box(x, Lx, Ly, periodic)

    accel = _Acceleration(
        alpha=alpha, beta=beta, morse=morse, rcut=rcut, alignment_strength=alignment_strength,
        R=R, Lx=Lx, Ly=Ly, periodic=periodic, find_pairs=NEIGHBOUR_METHODS[neighbour_method],
    )
    step_fn = _STEPPERS[integrator]
    noise_sigma = noise_eta * math.sqrt(dt)

    n_frames = n_steps // save_every + 1
    positions = np.empty((n_frames, n, 2))
    velocities = np.empty((n_frames, n, 2))
    positions[0], velocities[0] = x, v

    for step in range(1, n_steps + 1):
        x, v = step_fn(x, v, dt, accel)
        if noise_eta > 0:
            dtheta = rng.normal(0.0, noise_sigma, size=n)
            cos_d, sin_d = np.cos(dtheta), np.sin(dtheta)
            v = np.column_stack(
                (cos_d * v[:, 0] - sin_d * v[:, 1], sin_d * v[:, 0] + cos_d * v[:, 1])
            )
        if periodic:
            x = wrap_periodic(x, Lx, Ly)
        else:
            x, v = reflect_into_box(x, v, Lx, Ly)
        if step % save_every == 0:
            frame = step // save_every
            positions[frame], velocities[frame] = x, v

    times = np.arange(n_frames, dtype=np.float64) * (save_every * dt)
    return {"times": times, "positions": positions, "velocities": velocities}
