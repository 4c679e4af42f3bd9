"""IC families: distributions checked with SciPy tests and moments."""

import numpy as np
import pytest
from scipy import stats

from rom_pipeline.physics.initial_conditions import sample_headings, sample_positions

L = 25.0


def test_uniform_positions_fill_the_box():
    x = sample_positions("uniform", 5000, 25.0, 10.0, np.random.default_rng(0))
    assert x.shape == (5000, 2)
    assert stats.kstest(x[:, 0], stats.uniform(0, 25.0).cdf).pvalue > 1e-3
    assert stats.kstest(x[:, 1], stats.uniform(0, 10.0).cdf).pvalue > 1e-3


def test_gaussian_positions_have_requested_mean_and_variance():
    x = sample_positions("gaussian", 20000, L, L, np.random.default_rng(1),
                         center_x=10.0, center_y=15.0, variance=3.0)
    np.testing.assert_allclose(x.mean(axis=0), [10.0, 15.0], atol=0.05)
    np.testing.assert_allclose(x.var(axis=0), [3.0, 3.0], rtol=0.05)
    assert abs(np.corrcoef(x.T)[0, 1]) < 0.03
    assert stats.kstest((x[:, 0] - 10.0) / np.sqrt(3.0), "norm").pvalue > 1e-3


def test_gaussian_near_corner_is_wrapped_into_box():
    x = sample_positions("gaussian", 2000, L, L, np.random.default_rng(2),
                         center_x=0.0, center_y=0.0, variance=4.0)
    assert np.all((x >= 0) & (x < L))
    # about three quarters of the samples wrapped to the far side in at least one axis
    assert 0.7 < np.mean(np.any(x > L / 2, axis=1)) < 0.8


def test_ring_radius_distribution_is_folded_normal():
    x = sample_positions("ring", 20000, L, L, np.random.default_rng(3), radius=5.0, width=0.8)
    offset = x - L / 2
    radius = np.hypot(offset[:, 0], offset[:, 1])
    assert stats.kstest(radius, stats.foldnorm(5.0 / 0.8, scale=0.8).cdf).pvalue > 1e-3
    angle = np.mod(np.arctan2(offset[:, 1], offset[:, 0]), 2 * np.pi)
    assert stats.kstest(angle, stats.uniform(0, 2 * np.pi).cdf).pvalue > 1e-3


def test_two_clusters_split_floor_half_and_rest():
    n = 2001
    x = sample_positions("two_clusters", n, L, L, np.random.default_rng(4), separation=7.0,
                         sigma=2.0)
    left, right = x[: n // 2], x[n // 2 :]
    assert len(left) == 1000 and len(right) == 1001
    np.testing.assert_allclose(left.mean(axis=0), [L / 2 - 3.5, L / 2], atol=0.2)
    np.testing.assert_allclose(right.mean(axis=0), [L / 2 + 3.5, L / 2], atol=0.2)
    np.testing.assert_allclose(left.std(axis=0), [2.0, 2.0], rtol=0.08)


def test_headings_uniform_on_circle():
    theta = sample_headings(5000, np.random.default_rng(5))
    assert theta.shape == (5000,) and np.all((theta >= 0) & (theta < 2 * np.pi))
    assert stats.kstest(theta, stats.uniform(0, 2 * np.pi).cdf).pvalue > 1e-3


def test_same_seed_reproduces_positions():
    a = sample_positions("ring", 50, L, L, np.random.default_rng(9), radius=3.0, width=1.0)
    b = sample_positions("ring", 50, L, L, np.random.default_rng(9), radius=3.0, width=1.0)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "family, params, name",
    [
        ("spiral", {}, "spiral"),
        ("uniform", {"variance": 1.0}, "variance"),
        ("gaussian", {"variance": 1.0, "centre_x": 3.0}, "centre_x"),
        ("gaussian", {}, "variance"),
        ("ring", {"radius": 2.0}, "width"),
        ("two_clusters", {"separation": 3.0, "sigma": 0.0}, "sigma"),
        ("gaussian", {"variance": -1.0}, "variance"),
    ],
)
def test_bad_family_or_parameters_raise_naming_them(family, params, name):
    with pytest.raises(ValueError, match=name):
        sample_positions(family, 10, L, L, np.random.default_rng(0), **params)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match="n"):
        sample_positions("uniform", 0, L, L, np.random.default_rng(0))
    with pytest.raises(ValueError, match="rng"):
        sample_headings(10, 0)
