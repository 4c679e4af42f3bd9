"""Neighbour search and Morse forces against brute-force and analytic oracles."""

import itertools
import math

import numpy as np
import pytest

from rom_pipeline.physics.cell_list import exp_nonpositive
from rom_pipeline.physics.forces import (
    morse_forces,
    morse_forces_and_neighbourhood_sums,
    morse_forces_from_pairs,
    morse_pair_magnitude,
)
from rom_pipeline.physics.neighbours import (
    brute_force_pairs,
    cell_list_pairs,
    neighbour_pairs,
    neighbourhood_sum,
)

MORSE = dict(Ca=3.0, Cr=3.0, la=2.0, lr=0.5)


def _sorted(pairs):
    i, j, dx, r = pairs
    order = np.lexsort((j, i))
    return i[order], j[order], dx[order], r[order]


@pytest.mark.parametrize(
    "n, radius, Lx, Ly",
    [
        (200, 4.0, 25.0, 25.0),
        (150, 1.3, 7.0, 4.0),
        (60, 4.0, 10.0, 9.0),  # L < 3R: naive cell lists double-count here
        (40, 4.0, 5.0, 6.0),  # L < 2R: radius beyond half the box
        (30, 4.0, 3.0, 2.5),  # L < R
    ],
)
@pytest.mark.parametrize("periodic", [True, False])
@pytest.mark.parametrize("find_pairs", [neighbour_pairs, cell_list_pairs])
def test_kdtree_and_cell_list_pairs_equal_brute_force(find_pairs, n, radius, Lx, Ly, periodic):
    rng = np.random.default_rng(n)
    x = rng.uniform(0, 1, (n, 2)) * [Lx, Ly]
    tree = _sorted(find_pairs(x, radius, Lx, Ly, periodic))
    brute = _sorted(brute_force_pairs(x, radius, Lx, Ly, periodic))
    assert tree[0].size > 0
    np.testing.assert_array_equal(tree[0], brute[0])
    np.testing.assert_array_equal(tree[1], brute[1])
    np.testing.assert_array_equal(tree[2], brute[2])
    np.testing.assert_array_equal(tree[3], brute[3])
    assert np.all(tree[0] < tree[1])


@pytest.mark.parametrize("find_pairs", [neighbour_pairs, cell_list_pairs])
def test_pair_straddling_periodic_boundary_is_found_with_minimal_image(find_pairs):
    L = 10.0
    x = np.array([[0.1, 5.0], [L - 0.1, 5.2], [5.0, 5.0]])
    i, j, dx, r = find_pairs(x, 1.0, L, L, periodic=True)
    assert list(zip(i, j)) == [(0, 1)]
    np.testing.assert_allclose(dx[0], [-0.2, 0.2], atol=1e-12)
    np.testing.assert_allclose(r[0], math.hypot(0.2, 0.2), rtol=1e-12)
    i, j, _, _ = find_pairs(x, 1.0, L, L, periodic=False)
    assert i.size == 0


@pytest.mark.parametrize("find_pairs", [neighbour_pairs, cell_list_pairs])
def test_position_equal_to_box_length_is_wrapped_not_rejected(find_pairs):
    L = 10.0
    x = np.array([[L, 3.0], [0.2, 3.0], [-1e-17, 3.0]])
    i, j, dx, r = _sorted(find_pairs(x, 0.5, L, L, periodic=True))
    assert list(zip(i, j)) == [(0, 1), (0, 2), (1, 2)]
    np.testing.assert_allclose(r, [0.2, 0.0, 0.2], atol=1e-12)


def test_cell_list_without_a_box_handles_far_apart_and_coincident_agents():
    # non-periodic cells cover the data's bounding box (capped in number): a cluster, a far
    # outlier and coincident points must still give exactly the brute-force pairs
    rng = np.random.default_rng(5)
    x = np.vstack([rng.normal(0.0, 0.5, (120, 2)), [[1e4, -3e3], [0.0, 0.0], [0.0, 0.0]]])
    cells = _sorted(cell_list_pairs(x, 0.3, 1.0, 1.0, periodic=False))
    brute = _sorted(brute_force_pairs(x, 0.3, 1.0, 1.0, periodic=False))
    for a, b in zip(cells, brute):
        np.testing.assert_array_equal(a, b)
    assert np.any(cells[3] == 0.0)


@pytest.mark.parametrize(
    "n, align_radius, force_radius, L",
    [
        (300, 4.0, 10.0, 25.0),  # crystal-like: force cut-off beyond the alignment radius, L < 3 rcut
        (200, 4.0, 2.5, 25.0),  # alignment radius beyond the force cut-off
        (80, 1.5, 3.0, 6.0),
        (40, 4.0, 0.0, 7.0),  # alignment only
        (40, 0.0, 3.0, 7.0),  # forces only
    ],
)
@pytest.mark.parametrize("periodic", [True, False])
def test_cell_list_sums_and_forces_match_brute_force_oracle(
    n, align_radius, force_radius, L, periodic
):
    # the oracle: brute-force pairs, the sparse neighbourhood sum and the bincount force sum
    rng = np.random.default_rng(n)
    x = rng.uniform(0, L, (n, 2))
    x[1] = x[0]  # coincident agents align but exert no force
    values = rng.normal(size=(n, 3))
    summed, F = morse_forces_and_neighbourhood_sums(
        x, values, align_radius, force_radius, L, L, periodic, **MORSE
    )
    i, j, dx, r = brute_force_pairs(x, max(align_radius, force_radius), L, L, periodic)
    # align_radius <= 0 skips the sums (the documented contract; r <= 0 alone would keep the
    # coincident pair)
    weights = (r <= align_radius) * float(align_radius > 0)
    expected_sum = neighbourhood_sum(values, i, j, weights=weights)
    expected_F = np.zeros((n, 2))
    if force_radius > 0:
        expected_F = morse_forces_from_pairs(n, i, j, dx, r, rcut=force_radius, **MORSE)
    np.testing.assert_allclose(summed, expected_sum, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(F, expected_F, rtol=1e-12, atol=1e-12 * np.abs(expected_F).max())
    assert np.all(np.isfinite(F))
    if force_radius > 0:
        assert np.abs(F).max() > 0
        np.testing.assert_allclose(F.sum(axis=0), 0.0, atol=1e-11 * np.abs(F).max())


@pytest.mark.parametrize(
    "la, lr",
    [(2.0, 0.5), (1.5, 0.5), (0.5, 2.0), (1.0, 1.0), (2.5, 0.5), (4.0, 0.5), (2.0, 0.7)],
    ids=["la/lr=4", "3", "lr/la=4", "1", "5", "8", "not an integer"],
)
def test_cell_list_forces_in_a_dense_cluster_match_brute_force_oracle(la, lr):
    # a settled crystal: every pair inside the cut-off, long contiguous ranges per cell; each
    # length ratio takes another branch of the kernel's e^{-r/l_short} = (e^{-r/l_long})^k
    rng = np.random.default_rng(17)
    n, L = 300, 25.0
    angle = rng.uniform(0, 2 * np.pi, n)
    x = 12.0 + 3.0 * np.sqrt(rng.uniform(size=n))[:, None] * np.column_stack(
        (np.cos(angle), np.sin(angle))
    )
    values = rng.normal(size=(n, 2))
    morse = dict(Ca=3.0, Cr=3.0, la=la, lr=lr)
    rcut = 5.0 * max(la, lr)
    summed, F = morse_forces_and_neighbourhood_sums(x, values, 4.0, rcut, L, L, True, **morse)
    i, j, dx, r = brute_force_pairs(x, rcut, L, L, True)
    expected_F = morse_forces_from_pairs(n, i, j, dx, r, rcut=rcut, **morse)
    expected_sum = neighbourhood_sum(values, i, j, weights=(r <= 4.0).astype(float))
    np.testing.assert_allclose(F, expected_F, rtol=1e-12, atol=1e-12 * np.abs(expected_F).max())
    np.testing.assert_allclose(summed, expected_sum, rtol=1e-12, atol=1e-12)


def test_kernel_exp_matches_numpy_to_an_ulp_and_is_the_same_in_every_simd_lane():
    rng = np.random.default_rng(0)
    t = np.concatenate([-np.linspace(0.0, 708.0, 200_001), -rng.uniform(0.0, 40.0, 100_000),
                        [0.0, -0.0, -1e-300, -np.log(2.0), -0.5 * np.log(2.0)]])
    got, expected = exp_nonpositive(t), np.exp(t)
    np.testing.assert_allclose(got, expected, rtol=2.3e-16, atol=0)
    assert got[-5] == 1.0 and got[-3] == 1.0 and got[-2] == 0.5
    # below -708 (e^t < 3.4e-308) the kernels use e^-708: an absolute error below 3.4e-308
    np.testing.assert_allclose(exp_nonpositive(np.array([-708.5, -800.0, -1e6])), 0.0,
                               atol=3.4e-308)
    # one call per element runs the scalar code; the long array runs the SIMD loop
    one_by_one = np.array([exp_nonpositive(t[k:k + 1])[0] for k in range(0, t.size, 997)])
    np.testing.assert_array_equal(one_by_one, got[::997])


def test_neighbourhood_sum_matches_dense_adjacency():
    rng = np.random.default_rng(3)
    x = rng.uniform(0, 6, (80, 2))
    values = rng.normal(size=(80, 3))
    i, j, _, r = neighbour_pairs(x, 1.5, 6.0, 6.0, True)
    weights = (r <= 1.0).astype(float)
    summed = neighbourhood_sum(values, i, j, weights=weights)
    dense = np.eye(80)
    for a in range(80):
        for b in range(80):
            d = x[b] - x[a]
            d -= 6.0 * np.round(d / 6.0)
            if a != b and np.hypot(*d) <= 1.0:
                dense[a, b] = 1.0
    np.testing.assert_allclose(summed, dense @ values, rtol=1e-12, atol=1e-12)


def test_morse_pair_magnitude_analytic_values():
    r = np.array([0.0, 0.5, 2.0])
    expected = [(3 / 0.5) * math.exp(-x / 0.5) - (3 / 2.0) * math.exp(-x / 2.0) for x in r]
    np.testing.assert_allclose(morse_pair_magnitude(r, **MORSE), expected, rtol=1e-14)
    # repulsive at short range, attractive at long range for these parameters
    assert morse_pair_magnitude(0.1, **MORSE) > 0 > morse_pair_magnitude(3.0, **MORSE)


def _potential(x, L, periodic):
    total = 0.0
    for a, b in itertools.combinations(range(len(x)), 2):
        d = x[b] - x[a]
        if periodic:
            d = d - L * np.round(d / L)
        r = math.hypot(*d)
        total += MORSE["Cr"] * math.exp(-r / MORSE["lr"]) - MORSE["Ca"] * math.exp(-r / MORSE["la"])
    return total


@pytest.mark.parametrize("periodic", [True, False])
def test_forces_are_minus_gradient_of_morse_potential(periodic):
    # rcut larger than any minimal-image distance, so the force is the exact gradient
    L = 6.0
    rng = np.random.default_rng(7)
    x = rng.uniform(0, L, (12, 2))
    F = morse_forces(x, L, L, periodic, rcut=100.0, **MORSE)
    h = 1e-6
    grad = np.zeros_like(x)
    for a in range(len(x)):
        for axis in range(2):
            plus, minus = x.copy(), x.copy()
            plus[a, axis] += h
            minus[a, axis] -= h
            difference = _potential(plus, L, periodic) - _potential(minus, L, periodic)
            grad[a, axis] = difference / (2 * h)
    np.testing.assert_allclose(F, -grad, rtol=1e-6, atol=1e-7)


def test_forces_antisymmetric_and_sum_to_zero():
    rng = np.random.default_rng(11)
    L = 8.0
    x = rng.uniform(0, L, (150, 2))
    F = morse_forces(x, L, L, True, rcut=2.5, **MORSE)
    np.testing.assert_allclose(F.sum(axis=0), 0.0, atol=1e-11 * np.abs(F).max())
    pair = morse_forces(np.array([[1.0, 1.0], [1.7, 1.4]]), L, L, False, rcut=2.5, **MORSE)
    np.testing.assert_array_equal(pair[0], -pair[1])
    # repulsive at r = 0.806: agent 0 is pushed away from agent 1
    assert np.dot(pair[0], [0.7, 0.4]) < 0


def test_force_acts_across_periodic_boundary():
    L = 10.0
    x = np.array([[0.1, 5.0], [L - 0.2, 5.0]])
    F = morse_forces(x, L, L, True, rcut=2.5, **MORSE)
    f = morse_pair_magnitude(0.3, **MORSE)
    # agent 1 sits at -0.3 along x from agent 0 (minimal image): repulsion pushes agent 0 to +x
    np.testing.assert_allclose(F, [[f, 0.0], [-f, 0.0]], rtol=1e-12, atol=1e-12)
    assert f > 0
    np.testing.assert_array_equal(morse_forces(x, L, L, False, rcut=2.5, **MORSE), 0.0)


def test_cutoff_removes_distant_pairs():
    x = np.array([[0.0, 0.0], [2.0, 0.0]])
    assert np.all(morse_forces(x, 10, 10, False, rcut=1.9, **MORSE) == 0.0)
    f = morse_pair_magnitude(2.0, **MORSE)
    assert f < 0  # attractive: agent 0 is pulled towards agent 1 at +x
    np.testing.assert_allclose(
        morse_forces(x, 10, 10, False, rcut=2.0, **MORSE), [[-f, 0.0], [f, 0.0]], rtol=1e-12
    )


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(radius=-1.0), "radius"),
        (dict(Lx=0.0), "Lx"),
        (dict(x=np.zeros((3, 3))), "x"),
        (dict(x=np.array([[np.nan, 0.0]])), "x"),
    ],
)
def test_bad_neighbour_inputs_raise(kwargs, name):
    args = dict(x=np.zeros((3, 2)), radius=1.0, Lx=5.0, Ly=5.0, periodic=True) | kwargs
    with pytest.raises(ValueError, match=name):
        neighbour_pairs(**args)


def test_bad_morse_parameters_raise():
    with pytest.raises(ValueError, match="la"):
        morse_pair_magnitude(1.0, Ca=1, Cr=1, la=0.0, lr=1)
    with pytest.raises(ValueError, match="Cr"):
        morse_forces(np.zeros((2, 2)), 5, 5, True, Ca=1, Cr=-1, la=1, lr=1, rcut=2)
    with pytest.raises(ValueError, match="rcut"):
        morse_forces(np.zeros((2, 2)), 5, 5, True, Ca=1, Cr=1, la=1, lr=1, rcut=0)
