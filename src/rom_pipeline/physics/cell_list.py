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
its seed and independent of how many runs execute in parallel. The pair loop of
:func:`neighbourhood_sums_and_forces` compiles to SIMD code; without fast-math (no reassociation,
no fused multiply-add) each SIMD lane computes what the scalar code computes, so its results do
not depend on the vector width either. Its exp (:func:`_exp_nonpositive`) is within about 1 ulp
of NumPy's, not bit-equal to it.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

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


# e^t = e^s 2^k with t = k ln 2 + s, |s| <= ln2 / 2 (Cody-Waite: ln 2 split so that k ln2_hi is
# exact for |k| < 2^11) and e^s by its degree-13 Taylor polynomial (truncation < 1e-17 relative)
_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# below this e^t < 3.4e-308, about the smallest normal double: t is clamped here
_EXP_MIN = -708.0


@intrinsic
def _float_from_bits(typingctx, bits):
    """The float64 whose IEEE-754 bit pattern is the int64 ``bits`` (an LLVM bitcast)."""

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return types.float64(types.int64), codegen


@numba.njit(cache=True)
def _exp_nonpositive(t):
    """e^t for t <= 0 (e^-708 for t < -708), accurate to about 1 ulp.

    Plain arithmetic, so a loop calling it compiles to SIMD code (numba's ``math.exp`` is a
    scalar libm call that stops the loop vectorizer). Without fast-math every lane computes
    exactly what the scalar code computes: results do not depend on the vector width.
    """
    t = t if t >= _EXP_MIN else _EXP_MIN
    k = np.rint(t * _LOG2E)
    s = (t - k * _LN2_HI) - k * _LN2_LO
    p = 1.6059043836821613e-10  # 1/13!
    p = p * s + 2.08767569878681e-09
    p = p * s + 2.505210838544172e-08
    p = p * s + 2.755731922398589e-07
    p = p * s + 2.7557319223985893e-06
    p = p * s + 2.48015873015873e-05
    p = p * s + 0.0001984126984126984
    p = p * s + 0.001388888888888889
    p = p * s + 0.008333333333333333
    p = p * s + 0.041666666666666664
    p = p * s + 0.16666666666666666
    p = p * s + 0.5
    p = p * s + 1.0
    p = p * s + 1.0
    # 2^k built from its exponent bits (k >= -1021, so a normal number)
    return p * _float_from_bits((np.int64(k) + 1023) << 52)


@numba.njit(cache=True)
def exp_nonpositive(t):
    """:func:`_exp_nonpositive` (the kernels' exp) elementwise over t (m,); returns (m,)."""
    out = np.empty(t.shape[0], dtype=np.float64)
    for k in range(t.shape[0]):
        out[k] = _exp_nonpositive(t[k])
    return out


@numba.njit(cache=True)
def _ordered_sum(buf):
    # sum of buf (m,) in a fixed order: four interleaved partial sums, then the tail
    m = buf.shape[0]
    s0 = s1 = s2 = s3 = 0.0
    k = 0
    while k + 4 <= m:
        s0 += buf[k]
        s1 += buf[k + 1]
        s2 += buf[k + 2]
        s3 += buf[k + 3]
        k += 4
    tail = 0.0
    while k < m:
        tail += buf[k]
        k += 1
    return ((s0 + s1) + (s2 + s3)) + tail


@numba.njit(cache=True, inline="always")
def _minimal_image(dx, dy, Lx, Ly, inv_Lx, inv_Ly, periodic):
    """(dx, dy, r) of a displacement d = x_b - x_a, minimal image when ``periodic``.

    Taking x_b - x_a whichever index is lower gives the oracle's x_j - x_i up to the sign, bit for
    bit: fl(u - w) = -fl(w - u) and the minimal image is odd (rint rounds half to even).
    """
    if periodic:
        dx -= Lx * np.rint(dx * inv_Lx)
        dy -= Ly * np.rint(dy * inv_Ly)
    return dx, dy, math.sqrt(dx * dx + dy * dy)


@numba.njit(cache=True, inline="always")
def _integer_power(e, power):
    # e^power for 1 <= power <= 15 by squaring; the conditions are the same for a whole loop
    e2 = e * e
    e4 = e2 * e2
    low = (e if power & 1 else 1.0) * (e2 if power & 2 else 1.0)
    return low * ((e4 if power & 4 else 1.0) * (e4 * e4 if power & 8 else 1.0))


@numba.njit(cache=True, error_model="numpy", inline="always")
def _weight_over_r(r, f, force_radius):
    # f / r inside the cut-off, 0 outside it and for coincident agents (no direction); the numpy
    # error model leaves the division unchecked (no branch in the vectorized loop)
    return f / r if (r > 0.0 and r <= force_radius) else 0.0


# error_model="numpy": a float division by zero gives inf/nan instead of raising, which keeps the
# pair loops free of checks (the r = 0 lanes are masked out explicitly). The pair loops' helpers
# are inlined in numba's IR (inline="always"), about 8 % faster than leaving it to LLVM.
@numba.njit(cache=True, error_model="numpy")
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

    Written for the loop vectorizer (SIMD): agents are copied in cell order into per-coordinate
    arrays, so agent a meets each adjacent cell's agents b as one contiguous index range. Over a
    range every pair is evaluated without branches (geometry, e^{-r/l} by
    :func:`_exp_nonpositive`, weight 0 outside the radius), the partners' accumulators are updated
    in place (Newton's third law: each pair once) and a's own share is summed from a buffer in a
    fixed order (:func:`_ordered_sum`). At N = 300 with rcut = 10 in L = 25 (the crystal regime)
    most pairs interact, so the pair arithmetic, not the search, is the cost.
    """
    n, c = values.shape
    summed = values.copy()
    forces = np.zeros((n, 2), dtype=np.float64)
    radius = max(align_radius, force_radius)
    if radius <= 0.0 or n == 0:
        return summed, forces
    use_forces = force_radius > 0.0
    use_align = align_radius > 0.0
    nx, ny, cell_of, start, order = _bin_agents(x, radius, Lx, Ly, periodic)
    table = _neighbour_cells(nx, ny, periodic)
    inv_Lx, inv_Ly = 1.0 / Lx, 1.0 / Ly
    # e^{-r/l_short} = (e^{-r/l_long})^k when l_long / l_short is an integer k <= 8 (3, 4 in the
    # thesis regimes): one exp per pair instead of two, equal to the second exp to about
    # (r / l_short + k) eps relative; the power is taken by squaring
    l_long, l_short = max(la, lr), min(la, lr)
    power = int(round(l_long / l_short))
    if not (1 <= power <= 8 and abs(l_long / l_short - power) <= 1e-12 * power):
        power = 0
    neg_inv_long, neg_inv_short = -1.0 / l_long, -1.0 / l_short
    # f = c_long e_long + c_short e_short
    c_long, c_short = (-Ca / la, Cr / lr) if la >= lr else (Cr / lr, -Ca / la)
    # per-agent arrays in cell order (index p = position in ``order``)
    xs = np.empty(n, dtype=np.float64)
    ys = np.empty(n, dtype=np.float64)
    vs = np.empty((c, n), dtype=np.float64)
    for p in range(n):
        xs[p], ys[p] = x[order[p], 0], x[order[p], 1]
        for ch in range(c):
            vs[ch, p] = values[order[p], ch]
    sums = vs.copy()
    fx = np.zeros(n, dtype=np.float64)
    fy = np.zeros(n, dtype=np.float64)
    # per-range buffers (a range holds fewer than n agents)
    dist = np.empty(n, dtype=np.float64)
    share_x = np.empty(n, dtype=np.float64)
    share_y = np.empty(n, dtype=np.float64)
    share_v = np.empty(n, dtype=np.float64)
    for cell in range(nx * ny):
        for p in range(start[cell], start[cell + 1]):
            xa, ya = xs[p], ys[p]
            for q in table[cell]:
                if q < 0:
                    break
                if q < cell:
                    continue  # this cell pair is visited from q
                lo, hi = (p + 1 if q == cell else start[q]), start[q + 1]
                m = hi - lo
                if m <= 0:
                    continue
                # slices indexed from 0: the vectorizer sees unit-stride, non-negative indices
                xb, yb, d = xs[lo:hi], ys[lo:hi], dist[:m]
                if use_forces:
                    fxb, fyb, sx, sy = fx[lo:hi], fy[lo:hi], share_x[:m], share_y[:m]
                    # two copies of the pair loop so that the vectorized one has no branch on
                    # ``power`` (an if-converted branch would compute the second exp always)
                    if power:
                        for k in range(m):
                            dx, dy, r = _minimal_image(xb[k] - xa, yb[k] - ya, Lx, Ly, inv_Lx,
                                                       inv_Ly, periodic)
                            d[k] = r
                            e_long = _exp_nonpositive(r * neg_inv_long)
                            e_short = _integer_power(e_long, power)
                            w = _weight_over_r(r, c_long * e_long + c_short * e_short, force_radius)
                            # pair (a, b): F_a += f (x_a - x_b)/r, F_b -= the same
                            fxb[k] += w * dx
                            fyb[k] += w * dy
                            sx[k] = w * dx
                            sy[k] = w * dy
                    else:
                        for k in range(m):
                            dx, dy, r = _minimal_image(xb[k] - xa, yb[k] - ya, Lx, Ly, inv_Lx,
                                                       inv_Ly, periodic)
                            d[k] = r
                            e_long = _exp_nonpositive(r * neg_inv_long)
                            e_short = _exp_nonpositive(r * neg_inv_short)
                            w = _weight_over_r(r, c_long * e_long + c_short * e_short, force_radius)
                            fxb[k] += w * dx
                            fyb[k] += w * dy
                            sx[k] = w * dx
                            sy[k] = w * dy
                    fx[p] -= _ordered_sum(sx)
                    fy[p] -= _ordered_sum(sy)
                else:
                    for k in range(m):
                        d[k] = _minimal_image(xb[k] - xa, yb[k] - ya, Lx, Ly, inv_Lx, inv_Ly,
                                              periodic)[2]
                if use_align:
                    sv = share_v[:m]
                    for ch in range(c):
                        va, vb, sb = vs[ch, p], vs[ch, lo:hi], sums[ch, lo:hi]
                        for k in range(m):
                            near = d[k] <= align_radius
                            sb[k] += va if near else 0.0
                            sv[k] = vb[k] if near else 0.0
                        sums[ch, p] += _ordered_sum(sv)
    for p in range(n):
        a = order[p]
        forces[a, 0], forces[a, 1] = fx[p], fy[p]
        for ch in range(c):
            summed[a, ch] = sums[ch, p]
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
