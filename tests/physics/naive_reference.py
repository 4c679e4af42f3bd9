"""Pure-Python, per-particle reference implementation of one Vicsek-Morse step (science.md §1.1).

Written independently of the vectorised code (explicit double loops, math module, no KD-tree, no
sparse matrices) so it can serve as the oracle in tests and as the slow baseline in
``benchmarks/bench_simulation.py``. It consumes the step's noise angles from the caller, so a run
driven by the same generator draws (one array of N per step) reproduces the vectorised simulator.
"""

from __future__ import annotations

import math


def _min_image(d: float, length: float, periodic: bool) -> float:
    if periodic:
        return d - length * round(d / length)
    return d


def naive_vicsek_step(x, headings, speeds, dtheta, *, dt, R, Lx, Ly, periodic, speed_mode,
                      forces):
    """One step for lists x [[x, y]...], headings [[cos, sin]...], speeds [s...].

    dtheta: the N noise angles of this step. forces: dict with Ca, Cr, la, lr, mu_t, rcut
    (absolute cut-off) or None. Returns new (x, headings, speeds) as lists.
    """
    n = len(x)
    use_forces = speed_mode != "constant" and forces is not None
    new_x, new_headings, new_speeds = [], [], []
    for i in range(n):
        sx = sy = 0.0
        fx = fy = 0.0
        for j in range(n):
            dx = _min_image(x[j][0] - x[i][0], Lx, periodic)
            dy = _min_image(x[j][1] - x[i][1], Ly, periodic)
            r = math.sqrt(dx * dx + dy * dy)
            if r <= R:
                sx += headings[j][0]
                sy += headings[j][1]
            if use_forces and j != i and 0.0 < r <= forces["rcut"]:
                f = (forces["Cr"] / forces["lr"]) * math.exp(-r / forces["lr"]) - (
                    forces["Ca"] / forces["la"]
                ) * math.exp(-r / forces["la"])
                fx -= f * dx / r
                fy -= f * dy / r
        norm = math.hypot(sx, sy)
        if norm > 1e-12:
            px, py = sx / norm, sy / norm
        else:
            px, py = headings[i]
        speed = speeds[i]
        if use_forces and speed_mode == "constant_with_forces":
            fn = math.hypot(fx, fy)
            if fn > 1e-12:
                qx = px + forces["mu_t"] * fx / fn
                qy = py + forces["mu_t"] * fy / fn
                qn = math.hypot(qx, qy)
                if qn > 1e-12:
                    px, py = qx / qn, qy / qn
        elif use_forces and speed_mode == "variable":
            vx = speed * headings[i][0] + dt * forces["mu_t"] * fx
            vy = speed * headings[i][1] + dt * forces["mu_t"] * fy
            speed = math.hypot(vx, vy)
        angle = math.atan2(py, px) + dtheta[i]
        hx, hy = math.cos(angle), math.sin(angle)
        xn = x[i][0] + dt * speed * hx
        yn = x[i][1] + dt * speed * hy
        if periodic:
            xn %= Lx
            yn %= Ly
        else:
            if xn < 0:
                xn, hx = -xn, -hx
            elif xn > Lx:
                xn, hx = 2 * Lx - xn, -hx
            if yn < 0:
                yn, hy = -yn, -hy
            elif yn > Ly:
                yn, hy = 2 * Ly - yn, -hy
        new_x.append([xn, yn])
        new_headings.append([hx, hy])
        new_speeds.append(speed)
    return new_x, new_headings, new_speeds
