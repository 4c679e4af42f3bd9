"""Vicsek-Morse simulator against a per-particle reference, analytic cases and known phases."""

import math

import numpy as np
import pytest

from rom_pipeline.physics.order_parameters import polarisation
from rom_pipeline.physics.vicsek import simulate_vicsek
from tests.physics.naive_reference import naive_vicsek_step

FORCES = dict(Ca=3.0, Cr=3.0, la=2.0, lr=0.5, mu_t=0.3, rcut_factor=1.5)


def _run(x0, theta0, rng_seed=0, **overrides):
    kwargs = dict(
        n_steps=20, dt=0.04, v0=2.0, R=1.5, Lx=6.0, Ly=5.0, boundary="periodic",
        noise_kind="gaussian", eta=0.5, match_variance=True, speed_mode="constant_with_forces",
        forces=FORCES, rng=np.random.default_rng(rng_seed),
    )
    kwargs.update(overrides)
    return simulate_vicsek(x0, theta0, **kwargs)


def _random_ic(n, Lx, Ly, seed=1):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, 2)) * [Lx, Ly], rng.uniform(0, 2 * np.pi, n)


def _naive_run(x0, theta0, *, n_steps, dt, v0, R, Lx, Ly, boundary, eta, speed_mode, forces, seed):
    """Drive the per-particle reference with the same noise stream as the simulator."""
    rng = np.random.default_rng(seed)
    sigma = eta / math.sqrt(12.0)
    f = None
    if forces is not None:
        f = dict(forces, rcut=forces["rcut_factor"] * max(forces["la"], forces["lr"]))
    x = [list(p) for p in x0]
    headings = [[math.cos(t), math.sin(t)] for t in theta0]
    speeds = [v0] * len(x0)
    for _ in range(n_steps):
        dtheta = rng.normal(0.0, sigma, size=len(x0))
        x, headings, speeds = naive_vicsek_step(
            x, headings, speeds, dtheta, dt=dt, R=R, Lx=Lx, Ly=Ly,
            periodic=boundary == "periodic", speed_mode=speed_mode, forces=f,
        )
    return np.array(x), np.array(speeds)[:, None] * np.array(headings)


@pytest.mark.parametrize("neighbour_method", ["cell_list", "kdtree"])
@pytest.mark.parametrize("speed_mode", ["constant", "constant_with_forces", "variable"])
@pytest.mark.parametrize("boundary", ["periodic", "reflecting"])
def test_matches_per_particle_reference(speed_mode, boundary, neighbour_method):
    # a small box (L < 3R for the force cut-off 3.0) exercises wrap-around pairs
    x0, theta0 = _random_ic(25, 6.0, 5.0)
    params = dict(n_steps=15, dt=0.04, v0=2.0, R=1.5, Lx=6.0, Ly=5.0, boundary=boundary,
                  eta=0.5, speed_mode=speed_mode, forces=FORCES)
    out = _run(x0, theta0, rng_seed=5, neighbour_method=neighbour_method, **params)
    x_ref, v_ref = _naive_run(x0, theta0, seed=5, **params)
    np.testing.assert_allclose(out["positions"][-1], x_ref, atol=1e-9)
    np.testing.assert_allclose(out["velocities"][-1], v_ref, atol=1e-9)
    # one step has no chaotic amplification: it matches the reference to round-off
    one = _run(x0, theta0, rng_seed=5, neighbour_method=neighbour_method, **dict(params, n_steps=1))
    x_ref, v_ref = _naive_run(x0, theta0, seed=5, **dict(params, n_steps=1))
    np.testing.assert_allclose(one["positions"][-1], x_ref, rtol=0, atol=1e-12)
    np.testing.assert_allclose(one["velocities"][-1], v_ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("speed_mode", ["constant_with_forces", "variable"])
def test_result_independent_of_neighbour_method(speed_mode):
    x0, theta0 = _random_ic(40, 6.0, 5.0, seed=2)
    cells = _run(x0, theta0, n_steps=40, speed_mode=speed_mode)
    for method in ("kdtree", "brute_force"):
        other = _run(x0, theta0, n_steps=40, speed_mode=speed_mode, neighbour_method=method)
        np.testing.assert_allclose(cells["positions"], other["positions"], atol=1e-9)
        np.testing.assert_allclose(cells["velocities"], other["velocities"], atol=1e-9)


def _crystal_run(seed):
    """A few hundred steps of a dense N = 300 crystal-like run (every pair inside the cut-off)."""
    rng = np.random.default_rng(seed)
    x0 = 12.5 + rng.normal(0.0, 2.0, (300, 2))
    return simulate_vicsek(
        x0, rng.uniform(0, 2 * np.pi, 300), n_steps=60, dt=0.04, v0=2.0, R=4.0, Lx=25.0, Ly=25.0,
        boundary="periodic", noise_kind="gaussian", eta=0.1, match_variance=True,
        speed_mode="constant_with_forces",
        forces=dict(Ca=3.0, Cr=3.0, la=2.0, lr=0.5, mu_t=0.3), rng=rng, save_every=20,
    )


def test_runs_are_bit_identical_in_parallel_worker_processes():
    # the compiled kernel has no threads and a fixed summation order: a run computed in another
    # process, next to other runs, equals the one computed here bit for bit
    import concurrent.futures
    import multiprocessing

    seeds = [11, 12, 13]
    here = [_crystal_run(seed) for seed in seeds]
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=2, mp_context=context) as pool:
        there = list(pool.map(_crystal_run, seeds))
    for a, b in zip(here, there):
        np.testing.assert_array_equal(a["positions"], b["positions"])
        np.testing.assert_array_equal(a["velocities"], b["velocities"])
    assert not np.array_equal(here[0]["positions"][-1], here[1]["positions"][-1])


def test_alignment_across_periodic_boundary():
    L = 10.0
    x0 = np.array([[0.2, 5.0], [L - 0.2, 5.0]])
    theta0 = np.array([0.0, np.pi / 2])
    common = dict(n_steps=1, dt=0.01, v0=1.0, R=1.0, Lx=L, Ly=L, noise_kind="uniform", eta=0.0,
                  match_variance=False, speed_mode="constant", forces=None,
                  rng=np.random.default_rng(0))
    out = simulate_vicsek(x0, theta0, boundary="periodic", **common)
    v = out["velocities"][1]
    np.testing.assert_allclose(v, [[math.sqrt(0.5)] * 2] * 2, atol=1e-12)
    # without the wrap they are 9.6 apart and keep their own headings
    out = simulate_vicsek(x0, theta0, boundary="reflecting", **common)
    np.testing.assert_allclose(out["velocities"][1], [[1.0, 0.0], [0.0, 1.0]], atol=1e-12)


def test_force_steering_across_periodic_boundary():
    # two agents 0.3 apart through the x-wall, both heading +y; repulsion steers them apart in x
    L = 10.0
    x0 = np.array([[0.1, 5.0], [L - 0.2, 5.0]])
    theta0 = np.array([np.pi / 2, np.pi / 2])
    out = simulate_vicsek(
        x0, theta0, n_steps=1, dt=0.01, v0=1.0, R=1.0, Lx=L, Ly=L, boundary="periodic",
        noise_kind="uniform", eta=0.0, match_variance=False, speed_mode="constant_with_forces",
        forces=dict(Ca=0.0, Cr=1.0, la=1.0, lr=0.5, mu_t=0.5), rng=np.random.default_rng(0),
    )
    expected = np.array([0.5, 1.0]) / math.hypot(0.5, 1.0)
    np.testing.assert_allclose(out["velocities"][1, 0], expected, atol=1e-12)
    np.testing.assert_allclose(out["velocities"][1, 1], expected * [-1, 1], atol=1e-12)


def _pure_vicsek_polarisation(eta, seed=0):
    x0, theta0 = _random_ic(100, 5.0, 5.0, seed=seed)
    out = simulate_vicsek(
        x0, theta0, n_steps=400, dt=0.1, v0=0.5, R=1.0, Lx=5.0, Ly=5.0, boundary="periodic",
        noise_kind="uniform", eta=eta, match_variance=False, speed_mode="constant", forces=None,
        rng=np.random.default_rng(seed), save_every=50,
    )
    return polarisation(out["velocities"])


def test_pure_vicsek_orders_at_low_noise_and_not_at_high_noise():
    low = _pure_vicsek_polarisation(eta=0.3)
    high = _pure_vicsek_polarisation(eta=5.5)
    assert low[0] < 0.3  # random start
    assert low[-1] > 0.9
    assert np.all(high[2:] < 0.3)


def test_same_seed_is_bit_identical_and_seed_matters():
    x0, theta0 = _random_ic(60, 6.0, 5.0)
    a = _run(x0, theta0, n_steps=30, speed_mode="variable")
    b = _run(x0, theta0, n_steps=30, speed_mode="variable")
    c = _run(x0, theta0, n_steps=30, speed_mode="variable", rng_seed=1)
    for key in ("times", "positions", "velocities"):
        np.testing.assert_array_equal(a[key], b[key])
    assert not np.allclose(a["positions"][-1], c["positions"][-1])


def test_gaussian_noise_variance_matches_eta_over_sqrt12():
    # a lone agent's heading changes only by the noise
    eta = 0.6
    out = simulate_vicsek(
        np.array([[5.0, 5.0]]), np.array([0.3]), n_steps=4000, dt=0.01, v0=1.0, R=1.0,
        Lx=10.0, Ly=10.0, boundary="periodic", noise_kind="gaussian", eta=eta,
        match_variance=True, speed_mode="constant", forces=None, rng=np.random.default_rng(3),
    )
    v = out["velocities"][:, 0]
    steps = np.angle(np.exp(1j * np.diff(np.arctan2(v[:, 1], v[:, 0]))))
    assert abs(steps.std() / (eta / math.sqrt(12)) - 1) < 0.05
    assert abs(steps.mean()) < 0.01


def test_reflecting_wall_mirrors_position_and_heading():
    L = 10.0
    out = simulate_vicsek(
        np.array([[L - 0.05, 4.0]]), np.array([0.0]), n_steps=1, dt=0.1, v0=1.0, R=1.0, Lx=L,
        Ly=L, boundary="reflecting", noise_kind="uniform", eta=0.0, match_variance=False,
        speed_mode="constant", forces=None, rng=np.random.default_rng(0),
    )
    np.testing.assert_allclose(out["positions"][1, 0], [L - 0.05, 4.0], atol=1e-12)
    np.testing.assert_allclose(out["velocities"][1, 0], [-1.0, 0.0], atol=1e-12)


@pytest.mark.parametrize("speed_mode", ["constant_with_forces", "variable"])
def test_reflecting_boundary_keeps_agents_inside(speed_mode):
    x0, theta0 = _random_ic(80, 6.0, 5.0, seed=4)
    forces = dict(Ca=0.05, Cr=15.0, la=1.5, lr=0.5, mu_t=0.3)  # explosive repulsion
    out = _run(x0, theta0, n_steps=200, boundary="reflecting", speed_mode=speed_mode,
               forces=forces)
    pos = out["positions"]
    assert np.all(pos >= 0.0)
    assert np.all(pos[..., 0] <= 6.0) and np.all(pos[..., 1] <= 5.0)


def test_constant_speed_modes_keep_speed_and_output_contract():
    x0, theta0 = _random_ic(30, 6.0, 5.0)
    out = _run(x0, theta0, n_steps=21, save_every=5)
    assert out["positions"].shape == (5, 30, 2) and out["velocities"].shape == (5, 30, 2)
    np.testing.assert_allclose(out["times"], [0.0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_array_equal(out["positions"][0], x0)
    np.testing.assert_allclose(np.linalg.norm(out["velocities"], axis=-1), 2.0, rtol=1e-12)


@pytest.mark.parametrize(
    "overrides, name",
    [
        (dict(dt=1.0), "v0\\*dt"),
        (dict(boundary="open"), "boundary"),
        (dict(noise_kind="cauchy"), "noise_kind"),
        (dict(speed_mode="fast"), "speed_mode"),
        (dict(eta=-0.1), "eta"),
        (dict(n_steps=-1), "n_steps"),
        (dict(forces=dict(Ca=1, Cr=1, la=1, lr=1)), "mu_t"),
        (dict(forces=dict(FORCES, gamma=1.0)), "gamma"),
        (dict(rng=42), "rng"),
        (dict(theta0=np.zeros(3)), "theta0"),
        (dict(match_variance="yes"), "match_variance"),
        (dict(neighbour_method="cells"), "neighbour_method"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(overrides, name):
    x0, theta0 = _random_ic(5, 6.0, 5.0)
    if "theta0" in overrides:
        theta0 = overrides.pop("theta0")
    with pytest.raises(ValueError, match=name):
        _run(x0, theta0, **overrides)


def test_reflecting_start_outside_box_raises():
    with pytest.raises(ValueError, match="x0"):
        _run(np.array([[7.0, 1.0]]), np.zeros(1), boundary="reflecting")
