"""Compiled cell-list kernels for fixed-radius pair interactions (science.md §1, §1.3).

The box is cut into ``nx x ny`` cells of side >= the search radius, so every pair within the
radius lies in the same or an adjacent cell (a 3 x 3 block, wrapped on a torus). Along an axis
with fewer than 3 cells the adjacent offsets are de-duplicated ({0} for one cell, {0, +1} for two),
which is where naive cell lists double-count when L < 3R; each unordered pair i < j is then
visited exactly once (from its lower index in :func:`cell_list_pair_arrays`, from the lower cell
of each adjacent cell pair in :func:`neighbourhood_sums_and_forces`).

Distances are computed exactly as in :mod:`rom_pipeline.physics.neighbours`: ``d = x_j - x_i``
with i < j, minimal image ``d - L rint(d (1/L))`` on a torus, ``r = sqrt(dx^2 + dy^2)``, and a pair
is kept when ``r <= radius``. The pair *set* and the geometry ``(dx, r)`` therefore equal the
brute-force oracle bit for bit; only the order in which pair contributions are summed differs.

Kernels are single-threaded ``numba.njit(cache=True)`` loops without fast-math: every sum is
accumulated in a fixed order determined by the positions alone, so a run is bit-reproducible from
its seed and independent of how many runs execute in parallel.
"""

from __future__ import annotations

import math

import numba
import numpy as np

# Cells are made slightly wider than the radius so that rounding in the cell index never puts a
# pair at distance <= radius two cells apart (same role as the KD-tree's query inflation).
_CELL_INFLATION = 1.0 + 1e-9
# Without a periodic box the cells cover the data's bounding box; cap their number so that a few
# far-away agents cannot make the grid huge (wider cells stay correct, only slower).
_MAX_CELLS_PER_AXIS = 1024
# |s| or |F| below this has no direction (vicsek._TINY)
_TINY_NORM = 1e-12


@numba.njit(cache=True)
def _axis_cells(extent, radius):
    count = int(extent / (radius * _CELL_INFLATION))
    return max(1, min(count, _MAX_CELLS_PER_AXIS))


@numba.njit(cache=True)
def _axis_offsets(n_cells):
    # distinct neighbouring cell offsets along one axis (see the module docstring)
    if n_cells == 1:
        return np.array([0], dtype=np.int64)
    if n_cells == 2:
        return np.array([0, 1], dtype=np.int64)
    return np.array([-1, 0, 1], dtype=np.int64)


@numba.njit(cache=True)
def _bin_agents(x, radius, Lx, Ly, periodic):
    """Counting sort of agents into cells.

    Returns (nx, ny, cell_of (N,), start (nx*ny + 1,), order (N,)): the agents of cell c are
    ``order[start[c]:start[c+1]]``, in increasing index order.
    """
    n = x.shape[0]
    if periodic:
        x0, y0, ex, ey = 0.0, 0.0, Lx, Ly
    else:
        x0, y0 = x[0, 0], x[0, 1]
        x1, y1 = x0, y0
        for k in range(n):
            x0 = min(x0, x[k, 0])
            x1 = max(x1, x[k, 0])
            y0 = min(y0, x[k, 1])
            y1 = max(y1, x[k, 1])
        ex, ey = x1 - x0, y1 - y0
    nx = _axis_cells(ex, radius)
    ny = _axis_cells(ey, radius)
    scale_x = nx / ex if ex > 0.0 else 0.0
    scale_y = ny / ey if ey > 0.0 else 0.0
    cell_of = np.empty(n, dtype=np.int64)
    start = np.zeros(nx * ny + 1, dtype=np.int64)
    for k in range(n):
        cx = min(max(int((x[k, 0] - x0) * scale_x), 0), nx - 1)
        cy = min(max(int((x[k, 1] - y0) * scale_y), 0), ny - 1)
        cell_of[k] = cx * ny + cy
        start[cell_of[k] + 1] += 1
    for c in range(nx * ny):
        start[c + 1] += start[c]
    fill = start[:-1].copy()
    order = np.empty(n, dtype=np.int64)
    for k in range(n):
        order[fill[cell_of[k]]] = k
        fill[cell_of[k]] += 1
    return nx, ny, cell_of, start, order


@numba.njit(cache=True)
def _neighbour_cells(nx, ny, periodic):
    """(nx*ny, 9) ids of the distinct cells adjacent to each cell (itself included), -1 padded."""
    ox = _axis_offsets(nx) if periodic else np.array([-1, 0, 1], dtype=np.int64)
    oy = _axis_offsets(ny) if periodic else np.array([-1, 0, 1], dtype=np.int64)
    table = np.full((nx * ny, 9), -1, dtype=np.int64)
    for cx in range(nx):
        for cy in range(ny):
            k = 0
            for a in ox:
                for b in oy:
                    qx, qy = cx + a, cy + b
                    if periodic:
                        qx %= nx
                        qy %= ny
                    elif qx < 0 or qx >= nx or qy < 0 or qy >= ny:
                        continue
                    table[cx * ny + cy, k] = qx * ny + qy
                    k += 1
    return table


@numba.njit(cache=True)
def _displacement(x, i, j, Lx, Ly, inv_Lx, inv_Ly, periodic):
    # identical arithmetic to neighbours._pair_geometry: d = x_j - x_i, then minimal image
    dx = x[j, 0] - x[i, 0]
    dy = x[j, 1] - x[i, 1]
    if periodic:
        dx -= Lx * np.rint(dx * inv_Lx)
        dy -= Ly * np.rint(dy * inv_Ly)
    return dx, dy, math.sqrt(dx * dx + dy * dy)


@numba.njit(cache=True)
def _count_pairs(x, radius, Lx, Ly, periodic, nx, ny, cell_of, start, order, table):
    count = 0
    inv_Lx, inv_Ly = 1.0 / Lx, 1.0 / Ly
    for i in range(x.shape[0]):
        for q in table[cell_of[i]]:
            if q < 0:
                break
            for p in range(start[q], start[q + 1]):
                j = order[p]
                if j > i:
                    r = _displacement(x, i, j, Lx, Ly, inv_Lx, inv_Ly, periodic)[2]
                    if r <= radius:
                        count += 1
    return count


@numba.njit(cache=True)
def cell_list_pair_arrays(x, radius, Lx, Ly, periodic):
    """Pairs i < j with r_ij <= radius: (i (m,), j (m,), dx (m, 2), r (m,)).

    x : (N, 2) C-contiguous float64, already wrapped onto [0, Lx) x [0, Ly) when ``periodic``.
    Pairs come grouped by i ascending. Inputs are assumed validated.
    """
    nx, ny, cell_of, start, order = _bin_agents(x, radius, Lx, Ly, periodic)
    table = _neighbour_cells(nx, ny, periodic)
    m = _count_pairs(x, radius, Lx, Ly, periodic, nx, ny, cell_of, start, order, table)
    pi = np.empty(m, dtype=np.int64)
    pj = np.empty(m, dtype=np.int64)
    pdx = np.empty((m, 2), dtype=np.float64)
    pr = np.empty(m, dtype=np.float64)
    inv_Lx, inv_Ly = 1.0 / Lx, 1.0 / Ly
    k = 0
    for i in range(x.shape[0]):
        for q in table[cell_of[i]]:
            if q < 0:
                break
            for p in range(start[q], start[q + 1]):
                j = order[p]
                if j > i:
                    dx, dy, r = _displacement(x, i, j, Lx, Ly, inv_Lx, inv_Ly, periodic)
                    if r <= radius:
                        pi[k], pj[k] = i, j
                        pdx[k, 0], pdx[k, 1] = dx, dy
                        pr[k] = r
                        k += 1
    return pi, pj, pdx, pr


@numba.njit(cache=True)
def neighbourhood_sums_and_forces(
    x, values, align_radius, force_radius, Lx, Ly, periodic, Ca, Cr, la, lr
):
    """Neighbourhood sums and Morse forces in one pass over the cell-list pairs.

    summed_i = v_i + sum_{j != i, r_ij <= align_radius} v_j            (values v: (N, c))
    F_i = -sum_{j != i, 0 < r_ij <= force_radius} f(r_ij) (x_j - x_i) / r_ij,
    f(r) = (Cr/lr) e^{-r/lr} - (Ca/la) e^{-r/la}.

    x : (N, 2) C-contiguous float64 (wrapped onto the box when ``periodic``).
    align_radius <= 0 skips the sums (summed = values); force_radius <= 0 skips the forces (F = 0).
    Returns (summed (N, c), F (N, 2)). Parameters are assumed validated.

    The pair weight uses a scalar ``exp`` inside the kernel: on the shared 2-core machine this
    was about twice as fast at N = 300 as collecting the pairs and calling NumPy's vectorised
    ``exp`` (the pair arrays' memory traffic cost more than the ``exp``).
    """
    n, c = values.shape
    summed = values.copy()
    forces = np.zeros((n, 2), dtype=np.float64)
    radius = max(align_radius, force_radius)
    if radius <= 0.0:
        return summed, forces
    nx, ny, cell_of, start, order = _bin_agents(x, radius, Lx, Ly, periodic)
    table = _neighbour_cells(nx, ny, periodic)
    inv_Lx, inv_Ly = 1.0 / Lx, 1.0 / Ly
    # e^{-r/l_short} = (e^{-r/l_long})^k when l_long / l_short is an integer k <= 8 (3, 4, 5 in
    # the thesis regimes): one exp per pair instead of two, equal to the second exp to about
    # (r / l_short + k) eps relative
    l_long, l_short = max(la, lr), min(la, lr)
    power = int(round(l_long / l_short))
    if not (1 <= power <= 8 and abs(l_long / l_short - power) <= 1e-12 * power):
        power = 0
    neg_inv_long, neg_inv_short = -1.0 / l_long, -1.0 / l_short
    long_is_attraction = la >= lr
    repulsion, attraction = Cr / lr, Ca / la
    # sqrt is correctly rounded, so r <= radius implies d2 <= radius^2 (1 + 2^-51)
    reject_sq = radius * radius * (1.0 + 1e-12)
    # a's force pairs are gathered first and weighted in a separate, branch-free loop: the
    # exp's then overlap instead of waiting on mispredicted "inside the cut-off?" branches
    partner = np.empty(n, dtype=np.int64)
    away = np.empty((n, 2), dtype=np.float64)  # x_b - x_a (minimal image)
    distance = np.empty(n, dtype=np.float64)
    # positions in cell order, so the inner loop reads them sequentially (no gather via order)
    x_sorted = np.empty((n, 2), dtype=np.float64)
    for p in range(n):
        x_sorted[p, 0] = x[order[p], 0]
        x_sorted[p, 1] = x[order[p], 1]
    for cell in range(nx * ny):
        for p in range(start[cell], start[cell + 1]):
            a = order[p]
            xa, ya = x_sorted[p, 0], x_sorted[p, 1]
            m = 0
            for q in table[cell]:
                if q < 0:
                    break
                if q < cell:
                    continue  # this cell pair is visited from q
                for p2 in range(p + 1 if q == cell else start[q], start[q + 1]):
                    b = order[p2]
                    # x_b - x_a directly, with no i < j swap: fl(u - w) = -fl(w - u) and the
                    # minimal image is odd (rint rounds half to even), so (dx, dy, r) equal the
                    # oracle's x_j - x_i up to the sign, bit for bit, without a branch
                    dx = x_sorted[p2, 0] - xa
                    dy = x_sorted[p2, 1] - ya
                    if periodic:
                        dx -= Lx * np.rint(dx * inv_Lx)
                        dy -= Ly * np.rint(dy * inv_Ly)
                    d2 = dx * dx + dy * dy
                    if d2 > reject_sq:
                        continue  # certainly beyond the radius: skip the square root
                    r = math.sqrt(d2)
                    if r <= align_radius:
                        for k in range(c):
                            summed[a, k] += values[b, k]
                            summed[b, k] += values[a, k]
                    # kept only if 0 < r <= force_radius (the slot is reused otherwise)
                    partner[m] = b
                    away[m, 0], away[m, 1] = dx, dy
                    distance[m] = r
                    if 0.0 < r <= force_radius:
                        m += 1
            # pair (a, b) at distance r: F_a += f(r) (x_a - x_b)/r, F_b -= the same
            fax = 0.0
            fay = 0.0
            for k in range(m):
                r = distance[k]
                e_long = math.exp(r * neg_inv_long)
                if power:
                    e_short = e_long
                    for _ in range(power - 1):
                        e_short *= e_long
                else:
                    e_short = math.exp(r * neg_inv_short)
                if long_is_attraction:
                    f = repulsion * e_short - attraction * e_long
                else:
                    f = repulsion * e_long - attraction * e_short
                w = f / r
                wdx = w * away[k, 0]
                wdy = w * away[k, 1]
                fax -= wdx
                fay -= wdy
                forces[partner[k], 0] += wdx
                forces[partner[k], 1] += wdy
            forces[a, 0] += fax
            forces[a, 1] += fay
    return summed, forces


@numba.njit(cache=True)
def vicsek_step(x, headings, speeds, dtheta, dt, R, force_radius, Lx, Ly, periodic, steering,
                    kicking, mu_t, Ca, Cr, la, lr):
    """One Vicsek-Morse step (steps 1-5 of :mod:`rom_pipeline.physics.vicsek`) in one call.

    The per-agent arithmetic is that of the NumPy loop in
    :func:`~rom_pipeline.physics.vicsek.simulate_vicsek` (kept for its "kdtree" and "brute_force"
    methods), written per agent so a step costs one call instead of a few dozen array operations.
    It lives here, next to the kernels it calls, because numba's cache is invalidated per source
    file: a cached caller in another file would keep running a stale copy of an edited kernel. x, headings (N, 2), speeds, dtheta (N,); steering/kicking select
    the "constant_with_forces"/"variable" force use. Returns new (x, headings, speeds).
    """
    aligned, F = neighbourhood_sums_and_forces(
        x, headings, R, force_radius, Lx, Ly, periodic, Ca, Cr, la, lr
    )
    n = x.shape[0]
    x_new = np.empty_like(x)
    headings_new = np.empty_like(headings)
    speeds_new = speeds.copy()
    for i in range(n):
        px, py = aligned[i, 0], aligned[i, 1]
        norm = math.hypot(px, py)
        if norm <= _TINY_NORM:
            px, py = headings[i, 0], headings[i, 1]
        else:
            px, py = px / norm, py / norm
        if steering:
            fx, fy = F[i, 0], F[i, 1]
            f_norm = math.hypot(fx, fy)
            if f_norm <= _TINY_NORM:
                fx, fy = 0.0, 0.0
            else:
                fx, fy = fx / f_norm, fy / f_norm
            qx, qy = px + mu_t * fx, py + mu_t * fy
            q_norm = math.hypot(qx, qy)
            if q_norm > _TINY_NORM:
                px, py = qx / q_norm, qy / q_norm
        elif kicking:
            kx = speeds[i] * headings[i, 0] + (dt * mu_t) * F[i, 0]
            ky = speeds[i] * headings[i, 1] + (dt * mu_t) * F[i, 1]
            speeds_new[i] = math.hypot(kx, ky)
        angle = math.atan2(py, px) + dtheta[i]
        hx, hy = math.cos(angle), math.sin(angle)
        step = dt * speeds_new[i]
        xn, yn = x[i, 0] + step * hx, x[i, 1] + step * hy
        if periodic:  # as boundaries.wrap_periodic
            xn, yn = xn % Lx, yn % Ly
            if xn >= Lx:
                xn -= Lx
            if yn >= Ly:
                yn -= Ly
        else:  # as boundaries.reflect_into_box
            xn, yn = xn % (2.0 * Lx), yn % (2.0 * Ly)
            if xn > Lx:
                xn, hx = 2.0 * Lx - xn, -hx
            if yn > Ly:
                yn, hy = 2.0 * Ly - yn, -hy
        x_new[i, 0], x_new[i, 1] = xn, yn
        headings_new[i, 0], headings_new[i, 1] = hx, hy
    return x_new, headings_new, speeds_new


@numba.njit(cache=True)
def vicsek_steps(x, headings, speeds, noise, first_step, save_every, positions, velocities, dt, R,
                 force_radius, Lx, Ly, periodic, steering, kicking, mu_t, Ca, Cr, la, lr):
    """``noise.shape[0]`` consecutive :func:`vicsek_step` s in one call (no per-step Python).

    noise : (S, N) the angles of steps first_step + 1 ... first_step + S (drawn by the caller in
    one call, which gives the generator's same stream as S draws of N). A step k that is a
    multiple of ``save_every`` is written to positions[k // save_every] and
    velocities[k // save_every] (arrays (T, N, 2), velocity = speed * heading).
    Returns (x, headings, speeds, fast_step, fast_speed): the first step whose largest speed
    exceeds R / (2 dt) with ``kicking`` (variable speed), and that speed; -1 and 0 if none.
    """
    fast_step = -1
    fast_speed = 0.0
    n = x.shape[0]
    for s in range(noise.shape[0]):
        x, headings, speeds = vicsek_step(x, headings, speeds, noise[s], dt, R, force_radius, Lx,
                                          Ly, periodic, steering, kicking, mu_t, Ca, Cr, la, lr)
        step = first_step + s + 1
        if kicking and fast_step < 0:
            top = speeds.max()
            if top * dt > R / 2:
                fast_step, fast_speed = step, top
        if step % save_every == 0:
            frame = step // save_every
            for i in range(n):
                for axis in range(2):
                    positions[frame, i, axis] = x[i, axis]
                    velocities[frame, i, axis] = speeds[i] * headings[i, axis]
    return x, headings, speeds, fast_step, fast_speed
