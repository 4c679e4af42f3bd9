"""Order parameters on analytic configurations and against per-agent loops."""

import math

import numpy as np
import pytest

from rom_pipeline.physics.order_parameters import (
    milling,
    nematic_order,
    polarisation,
    swarm_centroid,
)


def _ring(centre, radius, n, L, omega_sign=1.0):
    phi = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pos = np.mod(centre + radius * np.column_stack((np.cos(phi), np.sin(phi))), L)
    vel = omega_sign * 1.7 * np.column_stack((-np.sin(phi), np.cos(phi)))
    return pos, vel


def test_polarisation_aligned_opposed_and_loop_oracle():
    aligned = np.tile([2.0, 1.0], (50, 1))
    opposed = np.vstack((np.tile([1.0, 0.0], (25, 1)), np.tile([-3.0, 0.0], (25, 1))))
    rng = np.random.default_rng(0)
    random = rng.normal(size=(2, 50, 2))
    result = polarisation(np.stack((aligned, opposed, random[0])))
    expected = [
        math.hypot(*sum(v / math.hypot(*v) for v in frame) / len(frame))
        for frame in (aligned, opposed, random[0])
    ]
    np.testing.assert_allclose(result, expected, atol=1e-14)
    np.testing.assert_allclose(result[:2], [1.0, 0.0], atol=1e-14)
    assert polarisation(random[1]).shape == (1,)


def test_milling_is_one_for_rotating_ring_straddling_torus_corner():
    L = 10.0
    pos, vel = _ring(np.array([0.5, 9.7]), 2.0, 64, L)
    np.testing.assert_allclose(milling(pos, vel, L, L, periodic=True), [1.0], atol=1e-12)
    np.testing.assert_allclose(milling(pos, -vel, L, L, periodic=True), [1.0], atol=1e-12)
    np.testing.assert_allclose(polarisation(vel), [0.0], atol=1e-12)
    # the arithmetic centroid of the wrapped ring is wrong, and so is its milling
    assert milling(pos, vel, L, L, periodic=False)[0] < 0.9


def test_milling_matches_loop_oracle_without_wrap():
    rng = np.random.default_rng(1)
    pos = rng.uniform(0, 10, (60, 2))
    vel = rng.normal(size=(60, 2))
    c = pos.mean(axis=0)
    total = 0.0
    for x, v in zip(pos, vel):
        r = x - c
        total += (r[0] * v[1] - r[1] * v[0]) / (math.hypot(*r) * math.hypot(*v))
    np.testing.assert_allclose(milling(pos, vel, 10, 10, periodic=False), [abs(total) / 60],
                               rtol=1e-12)


def test_polarised_translating_flock_has_low_milling():
    L = 10.0
    pos, _ = _ring(np.array([5.0, 5.0]), 2.0, 64, L)
    vel = np.tile([1.0, 0.0], (64, 1))
    np.testing.assert_allclose(milling(pos, vel, L, L, True), [0.0], atol=1e-12)


def test_torus_centroid_of_cluster_across_boundary():
    pos = np.array([[9.5, 5.0], [0.5, 5.0], [9.8, 4.0], [0.2, 6.0]])
    centroid = swarm_centroid(pos, 10, 10, True)[0]
    assert min(centroid[0], 10 - centroid[0]) < 1e-12  # x wraps to 0 (== 10), not 5
    np.testing.assert_allclose(centroid[1], 5.0, atol=1e-12)


def test_nematic_order_for_counter_propagating_lanes():
    theta = np.where(np.arange(100) % 2 == 0, 0.3, 0.3 + np.pi)
    vel = np.column_stack((np.cos(theta), np.sin(theta)))
    np.testing.assert_allclose(nematic_order(vel), [1.0], atol=1e-12)
    np.testing.assert_allclose(polarisation(vel), [0.0], atol=1e-12)
    rng = np.random.default_rng(2)
    phi = rng.uniform(0, 2 * np.pi, 200)
    vel = 3.0 * np.column_stack((np.cos(phi), np.sin(phi)))
    np.testing.assert_allclose(nematic_order(vel), [abs(np.exp(2j * phi).mean())], rtol=1e-12)


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="velocities"):
        milling(np.zeros((2, 5, 2)), np.zeros((3, 5, 2)), 1, 1, True)
    with pytest.raises(ValueError, match="velocities"):
        polarisation(np.zeros((5, 3)))
