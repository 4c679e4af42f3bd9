"""Discrete Vicsek model with Morse steering (science.md §1.1), the production particle model.

One step of size dt, for every agent i at once:

1. Alignment: s_i = sum_{j: d(x_i, x_j) <= R} p_j (self included), p̄_i = s_i / |s_i|
   (p_i kept where |s_i| ~ 0). d is the minimal-image distance on a periodic domain.
2. Morse force (when ``forces`` is given and the speed mode uses it):
   F_i = -sum_{j != i, r_ij <= rcut} f(r_ij) (x_j - x_i)/r_ij, rcut = rcut_factor max(lr, la).
3. Speed mode:
   - ``constant``: pure Vicsek, forces ignored, speed v0.
   - ``constant_with_forces`` (CS): p̃_i = p̄_i + mu_t F_i/|F_i| (0 where |F_i| ~ 0),
     renormalised; speed v0.
   - ``variable`` (VS): v_i <- v_i + dt mu_t F_i, speed s_i = |v_i|, direction = the noisy
     aligned heading p̄_i. There is no speed relaxation: speeds drift freely with the forces
     (an agent pushed to high speed can then move more than R/2 per step; a warning is logged).
4. Angular noise: rotate by dtheta_i ~ U(-eta/2, eta/2) (``uniform``) or N(0, sigma^2)
   (``gaussian``, sigma = eta/sqrt(12) when ``match_variance`` else sigma = eta).
5. Move: x_i <- x_i + dt s_i p_i, then apply the boundary (``periodic`` wrap, or ``reflecting``:
   mirror back inside and flip the normal heading component).

All agents update synchronously from the state at the start of the step. Random numbers come only
from the ``rng`` passed in (one generator per run), one draw of N noise values per step.
"""

from __future__ import annotations

import logging
import math

import numpy as np

from rom_pipeline.physics import _checks
from rom_pipeline.physics.boundaries import BOUNDARIES, place_in_box, reflect_into_box, wrap_periodic
from rom_pipeline.physics.cell_list import vicsek_steps
from rom_pipeline.physics.forces import morse_forces_from_pairs
from rom_pipeline.physics.neighbours import brute_force_pairs, neighbour_pairs, neighbourhood_sum

logger = logging.getLogger(__name__)

SPEED_MODES = ("constant", "constant_with_forces", "variable")
NOISE_KINDS = ("uniform", "gaussian")
# "cell_list" (default) fuses pair search, alignment sums and forces in one compiled pass; the
# others build a pair list first ("kdtree" is the previous default, kept as the speed baseline)
NEIGHBOUR_METHODS = {"cell_list": None, "kdtree": neighbour_pairs, "brute_force": brute_force_pairs}
FORCE_KEYS = ("Ca", "Cr", "la", "lr", "mu_t", "rcut_factor")
DEFAULT_RCUT_FACTOR = 5.0

# |s| or |F| below this is treated as zero (no defined direction); cell_list.vicsek_step uses the same
_TINY = 1e-12


def _validate_forces(forces) -> dict | None:
    if forces is None:
        return None
    if not isinstance(forces, dict):
        raise ValueError(
            f"forces must be a dict with keys {list(FORCE_KEYS)} or None, "
            f"got {type(forces).__name__}."
        )
    unknown = sorted(set(forces) - set(FORCE_KEYS))
    if unknown:
        raise ValueError(
            f"forces has unknown key(s) {unknown}; allowed keys are {list(FORCE_KEYS)}."
        )
    missing = [key for key in FORCE_KEYS if key not in forces and key != "rcut_factor"]
    if missing:
        raise ValueError(f"forces is missing key(s) {missing}; give all of {list(FORCE_KEYS[:5])}.")
    params = {
        "Ca": _checks.nonnegative_float("forces['Ca']", forces["Ca"]),
        "Cr": _checks.nonnegative_float("forces['Cr']", forces["Cr"]),
        "la": _checks.positive_float("forces['la']", forces["la"]),
        "lr": _checks.positive_float("forces['lr']", forces["lr"]),
        "mu_t": _checks.nonnegative_float("forces['mu_t']", forces["mu_t"]),
        "rcut_factor": _checks.positive_float(
            "forces['rcut_factor']", forces.get("rcut_factor", DEFAULT_RCUT_FACTOR)
        ),
    }
    params["rcut"] = params["rcut_factor"] * max(params["la"], params["lr"])
    return params


def _unit(vectors: np.ndarray, fallback: np.ndarray | None) -> np.ndarray:
    """Rows of ``vectors`` normalised; rows with norm ~ 0 become ``fallback`` (or 0)."""
    norm = np.hypot(vectors[:, 0], vectors[:, 1])
    small = norm <= _TINY
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = vectors / norm[:, None]
    if np.any(small):
        unit[small] = 0.0 if fallback is None else fallback[small]
    return unit


def simulate_vicsek(
    x0: np.ndarray,
    theta0: np.ndarray,
    *,
    n_steps: int,
    dt: float,
    v0: float,
    R: float,
    Lx: float,
    Ly: float,
    boundary: str,
    noise_kind: str,
    eta: float,
    match_variance: bool,
    speed_mode: str,
    forces: dict | None,
    rng: np.random.Generator,
    save_every: int = 1,
    neighbour_method: str = "cell_list",
) -> dict:
    """Simulate the Vicsek-Morse model of science.md §1.1.

    Parameters
    ----------
    x0 : (N, 2) initial positions in [0, Lx) x [0, Ly) (periodic positions are wrapped; reflecting
        positions must lie inside the closed box).
    theta0 : (N,) initial heading angles (radians).
    n_steps : number of steps (>= 0); dt : step (> 0); v0 : speed (> 0); R : alignment radius.
    boundary : "periodic" | "reflecting".
    noise_kind : "uniform" | "gaussian"; eta >= 0 noise strength; match_variance as in step 4.
    speed_mode : "constant" | "constant_with_forces" | "variable".
    forces : {"Ca", "Cr", "la", "lr", "mu_t", "rcut_factor" (optional, default 5)} or None (off).
    rng : the run's generator. save_every : keep every k-th step (frame 0 is the IC).
    neighbour_method : "cell_list" (default, compiled), "kdtree" (SciPy KD-tree + sparse sums) or
        "brute_force" (O(N^2) oracle, for tests). All three find the same pairs; they differ
        only in the order pair contributions are summed (round-off).

    Returns
    -------
    {"times": (T,), "positions": (T, N, 2), "velocities": (T, N, 2)}, T = n_steps//save_every + 1;
    velocities are s_i p_i.
    """
    x, theta, n_steps, save_every, dt = _checks.initial_state(x0, theta0, n_steps, save_every, dt)
    n = x.shape[0]
    v0 = _checks.positive_float("v0", v0)
    R = _checks.positive_float("R", R)
    Lx = _checks.positive_float("Lx", Lx)
    Ly = _checks.positive_float("Ly", Ly)
    boundary = _checks.choice("boundary", boundary, BOUNDARIES)
    noise_kind = _checks.choice("noise_kind", noise_kind, NOISE_KINDS)
    eta = _checks.nonnegative_float("eta", eta)
    if not isinstance(match_variance, (bool, np.bool_)):
        raise ValueError(f"match_variance must be true or false, got {match_variance!r}.")
    speed_mode = _checks.choice("speed_mode", speed_mode, SPEED_MODES)
    neighbour_method = _checks.choice(
        "neighbour_method", neighbour_method, tuple(NEIGHBOUR_METHODS)
    )
    force_params = _validate_forces(forces)
    rng = _checks.generator("rng", rng)
    if v0 * dt > R / 2:
        raise ValueError(
            f"v0*dt = {v0 * dt:g} exceeds R/2 = {R / 2:g} (v0={v0}, dt={dt}, R={R}): agents would "
            f"jump past their neighbours; reduce dt or v0."
        )

    periodic = boundary == "periodic"
    x = place_in_box(x, Lx, Ly, periodic)

    if speed_mode == "constant" and force_params is not None:
        logger.info("speed_mode 'constant' is pure Vicsek: the given forces are ignored.")
    use_forces = speed_mode != "constant" and force_params is not None
    query_radius = max(R, force_params["rcut"]) if use_forces else R
    find_pairs = NEIGHBOUR_METHODS[neighbour_method]
    sigma = eta / math.sqrt(12.0) if match_variance else eta  # gaussian noise std

    headings = np.column_stack((np.cos(theta), np.sin(theta)))
    speeds = np.full(n, v0)

    n_frames = n_steps // save_every + 1
    positions = np.empty((n_frames, n, 2))
    velocities = np.empty((n_frames, n, 2))
    positions[0] = x
    velocities[0] = speeds[:, None] * headings
    warned_fast = False

    def draw_noise(*steps: int) -> np.ndarray:
        # the run's only random numbers: N angles per step; (S, N) at once is the same stream
        if noise_kind == "uniform":
            return rng.uniform(-eta / 2.0, eta / 2.0, size=(*steps, n))
        return rng.normal(0.0, sigma, size=(*steps, n))

    if find_pairs is None:
        x = np.ascontiguousarray(x)
        morse = (
            tuple(force_params[key] for key in ("Ca", "Cr", "la", "lr")) if use_forces
            else (0.0, 0.0, 1.0, 1.0)
        )
        compiled = (
            float(R), force_params["rcut"] if use_forces else 0.0, Lx, Ly, periodic,
            use_forces and speed_mode == "constant_with_forces",
            use_forces and speed_mode == "variable",
            force_params["mu_t"] if use_forces else 0.0, *morse,
        )

        # compiled blocks of steps, each with its noise drawn in one call (a few MB at most)
        block = max(1, min(256, 2**18 // n))
        for first in range(0, n_steps, block):
            noise = draw_noise(min(block, n_steps - first))
            x, headings, speeds, fast_step, fast_speed = vicsek_steps(
                x, headings, speeds, noise, first, save_every, positions, velocities, dt, *compiled
            )
            if fast_step > 0 and not warned_fast:
                logger.warning(
                    "variable speed: max speed %.3g gives speed*dt > R/2 = %.3g at step %d; "
                    "agents may skip neighbours (speeds are not relaxed in this mode).",
                    fast_speed, R / 2, fast_step,
                )
                warned_fast = True

    # the NumPy step of the "kdtree" and "brute_force" methods (the cell list ran above)
    for step in range(1, n_steps + 1) if find_pairs is not None else ():
        i, j, dx, r = find_pairs(x, query_radius, Lx, Ly, periodic)
        # pairs beyond R (found for the force cut-off) get weight 0 instead of being filtered
        aligned = (r <= R).astype(np.float64) if query_radius > R else None
        aligned_sum = neighbourhood_sum(headings, i, j, weights=aligned)
        new_headings = _unit(aligned_sum, fallback=headings)

        if use_forces:
            F = morse_forces_from_pairs(
                n, i, j, dx, r,
                force_params["Ca"], force_params["Cr"], force_params["la"], force_params["lr"],
                rcut=force_params["rcut"],
            )
            if speed_mode == "constant_with_forces":
                steered = new_headings + force_params["mu_t"] * _unit(F, fallback=None)
                new_headings = _unit(steered, fallback=new_headings)
            else:
                kicked = speeds[:, None] * headings + (dt * force_params["mu_t"]) * F
                speeds = np.hypot(kicked[:, 0], kicked[:, 1])

        angle = np.arctan2(new_headings[:, 1], new_headings[:, 0]) + draw_noise()
        headings = np.column_stack((np.cos(angle), np.sin(angle)))

        x = x + (dt * speeds)[:, None] * headings
        if periodic:
            x = wrap_periodic(x, Lx, Ly)
        else:
            x, headings = reflect_into_box(x, headings, Lx, Ly)

        if not warned_fast and speed_mode == "variable" and speeds.max() * dt > R / 2:
            logger.warning(
                "variable speed: max speed %.3g gives speed*dt > R/2 = %.3g at step %d; "
                "agents may skip neighbours (speeds are not relaxed in this mode).",
                speeds.max(), R / 2, step,
            )
            warned_fast = True

        if step % save_every == 0:
            frame = step // save_every
            positions[frame] = x
            velocities[frame] = speeds[:, None] * headings

    times = np.arange(n_frames, dtype=np.float64) * (save_every * dt)
    return {"times": times, "positions": positions, "velocities": velocities}
