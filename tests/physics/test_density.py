"""KDE density movies against scipy.stats.gaussian_kde, np.histogram2d and ndimage filters."""

import itertools

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.stats import gaussian_kde

from rom_pipeline.physics.density import density_grid, kde_density


class _FixedBandwidthKDE(gaussian_kde):
    """gaussian_kde with the fixed kernel covariance diag(hx^2, hy^2), not a data-scaled one."""

    def __init__(self, dataset, hx, hy):
        self._widths = np.array([hx, hy])
        super().__init__(dataset)

    def _compute_covariance(self):
        self._data_covariance = np.diag(self._widths**2)
        self._data_cho_cov = np.diag(self._widths)
        self.covariance_factor = lambda: 1.0
        super()._compute_covariance()


def _oracle_density(points, Lx, Ly, nx, ny, sigma, images):
    """Sum over agents and their image copies of N(x; copy, diag(hx^2, hy^2)) at the cell centres,
    with the physical bandwidths hx = sigma Lx/nx, hy = sigma Ly/ny.

    gaussian_kde averages its kernels, so its pdf is scaled by the number of kernels summed.
    """
    hx, hy = sigma * Lx / nx, sigma * Ly / ny
    copies = np.concatenate([transform(points) for transform in images])
    kde = _FixedBandwidthKDE(copies.T, hx, hy)
    np.testing.assert_allclose(kde.covariance, np.diag([hx**2, hy**2]), rtol=1e-14)
    xc, yc = density_grid(Lx, Ly, nx, ny)
    gx, gy = np.meshgrid(xc, yc)  # rows = y
    return len(copies) * kde(np.vstack((gx.ravel(), gy.ravel()))).reshape(ny, nx)


def _periodic_images(Lx, Ly, k):
    return [
        (lambda p, a=a, b=b: p + [a * Lx, b * Ly])
        for a, b in itertools.product(range(-k, k + 1), repeat=2)
    ]


def _mirror_images(Lx, Ly):
    def mirror(value, L, s):
        return {-1: -value, 0: value, 1: 2 * L - value}[s]

    return [
        (lambda p, a=a, b=b: np.column_stack((mirror(p[:, 0], Lx, a), mirror(p[:, 1], Ly, b))))
        for a, b in itertools.product((-1, 0, 1), repeat=2)
    ]


def _rel_l2(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def test_agent_at_cell_centre_gives_sampled_gaussian_kernel():
    # no binning error here: only the discrete, truncated filter differs from the continuous kernel
    L, n, sigma = 25.0, 64, 5.0
    point = np.array([[(20 + 0.5) * L / n, (41 + 0.5) * L / n]])
    rho = kde_density(point, L, L, n, n, sigma, "periodic")[0]
    oracle = _oracle_density(point, L, L, n, n, sigma, _periodic_images(L, L, 1))
    assert _rel_l2(rho, oracle) < 1e-3


# Binning positions to cells displaces each kernel by up to half a cell; this error is random with
# zero mean, so relative to the summed density it shrinks like 1/sqrt(N) (about 2% at N = 100
# uniform agents, 1% at N = 400 on the production 64^2 grid with sigma = 5 cells).
@pytest.mark.parametrize(
    "ic, n_agents, Lx, Ly, nx, ny, sigma, k",
    [
        ("uniform", 400, 25.0, 25.0, 64, 64, 5.0, 1),  # production grid and bandwidth
        ("cluster", 100, 25.0, 25.0, 64, 64, 5.0, 1),
        ("uniform", 1000, 20.0, 12.0, 48, 30, 3.0, 1),  # non-square cells, narrower kernel
        ("uniform", 100, 25.0, 25.0, 16, 16, 5.0, 3),  # kernel wider than the grid: wraps 3 times
    ],
)
def test_periodic_kde_matches_gaussian_kde_summed_over_images(
    ic, n_agents, Lx, Ly, nx, ny, sigma, k
):
    rng = np.random.default_rng(0)
    if ic == "uniform":
        points = rng.uniform(0, 1, (n_agents, 2)) * [Lx, Ly]
    else:  # a cluster straddling the corner of the torus
        points = np.mod(rng.normal(0.0, 2.0, (n_agents, 2)), [Lx, Ly])
    rho = kde_density(points, Lx, Ly, nx, ny, sigma, "periodic")[0]
    oracle = _oracle_density(points, Lx, Ly, nx, ny, sigma, _periodic_images(Lx, Ly, k))
    assert _rel_l2(rho, oracle) < 0.02


def test_reflecting_kde_matches_gaussian_kde_with_mirror_images():
    rng = np.random.default_rng(1)
    L, n = 25.0, 64
    points = np.vstack((rng.uniform(0, L, (300, 2)), rng.uniform(0, 1.5, (100, 2))))  # near walls
    rho = kde_density(points, L, L, n, n, 5.0, "reflecting")[0]
    oracle = _oracle_density(points, L, L, n, n, 5.0, _mirror_images(L, L))
    assert _rel_l2(rho, oracle) < 0.02


@pytest.mark.parametrize("boundary", ["periodic", "reflecting"])
@pytest.mark.parametrize("nx, ny, sigma", [(64, 64, 5.0), (16, 12, 5.0), (40, 30, 0.7)])
def test_mass_equals_number_of_agents(boundary, nx, ny, sigma):
    rng = np.random.default_rng(2)
    Lx, Ly = 25.0, 18.0
    pos = rng.uniform(0, 1, (7, 123, 2)) * [Lx, Ly]
    pos[:, :10] = [[0.0, 0.0], [Lx, Ly]] * 5  # agents exactly on the walls/corners
    rho = kde_density(pos, Lx, Ly, nx, ny, sigma, boundary)
    assert rho.shape == (7, ny, nx)
    mass = rho.sum(axis=(1, 2)) * (Lx / nx) * (Ly / ny)
    np.testing.assert_allclose(mass, 123.0, rtol=1e-10, atol=0)
    assert rho.min() >= -1e-12


@pytest.mark.parametrize("boundary, mode", [("periodic", "wrap"), ("reflecting", "reflect")])
def test_equals_histogram2d_then_ndimage_gaussian_filter(boundary, mode):
    rng = np.random.default_rng(3)
    Lx, Ly, nx, ny = 10.0, 6.0, 20, 15
    pos = rng.uniform(0, 1, (4, 50, 2)) * [Lx, Ly]
    rho = kde_density(pos, Lx, Ly, nx, ny, 2.5, boundary)
    raw = kde_density(pos, Lx, Ly, nx, ny, 0.0, boundary)
    area = (Lx / nx) * (Ly / ny)
    for t in range(4):
        hist, _, _ = np.histogram2d(pos[t, :, 1], pos[t, :, 0], bins=(ny, nx),
                                    range=((0, Ly), (0, Lx)))
        np.testing.assert_array_equal(raw[t], hist / area)
        np.testing.assert_allclose(rho[t], gaussian_filter(hist / area, 2.5, mode=mode),
                                   rtol=1e-12, atol=1e-12)


def test_single_frame_input_and_periodic_wrapping():
    L = 10.0
    single = kde_density(np.array([[1.0, 2.0], [3.0, 4.0]]), L, L, 10, 10, 1.0, "periodic")
    assert single.shape == (1, 10, 10)
    shifted = kde_density(np.array([[1.0 + L, 2.0 - L], [3.0, 4.0 + 2 * L]]), L, L, 10, 10, 1.0,
                          "periodic")
    np.testing.assert_allclose(shifted, single, atol=1e-14)
    # rows are y: the agent at (x=1.0, y=2.0) falls in row 2, column 1
    raw = kde_density(np.array([[1.5, 2.5]]), L, L, 10, 10, 0.0, "periodic")[0]
    assert raw[2, 1] == 1.0 and raw.sum() == 1.0


def test_density_grid_cell_centres():
    xc, yc = density_grid(25.0, 10.0, 5, 4)
    np.testing.assert_allclose(xc, [2.5, 7.5, 12.5, 17.5, 22.5])
    np.testing.assert_allclose(yc, [1.25, 3.75, 6.25, 8.75])


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(bandwidth=-1.0), "bandwidth"),
        (dict(nx=0), "nx"),
        (dict(boundary="open"), "boundary"),
        (dict(positions=np.zeros((2, 3))), "positions"),
        (dict(Ly=-2.0), "Ly"),
    ],
)
def test_bad_inputs_raise(kwargs, name):
    args = dict(positions=np.zeros((3, 2)), Lx=5.0, Ly=5.0, nx=8, ny=8, bandwidth=1.0,
                boundary="periodic") | kwargs
    with pytest.raises(ValueError, match=name):
        kde_density(**args)
