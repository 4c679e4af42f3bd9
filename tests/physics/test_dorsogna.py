"""D'Orsogna model: analytic speed relaxation, convergence orders, conservation laws."""

import math

import numpy as np
import pytest

from rom_pipeline.physics.dorsogna import simulate_dorsogna

BASE = dict(alpha=1.5, beta=0.5, Ca=0.5, Cr=1.0, la=2.0, lr=0.5, Lx=20.0, Ly=20.0,
            boundary="periodic", rng=None)


def _ic(n, L, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, L, (n, 2)), rng.uniform(0, 2 * np.pi, n)


def test_initial_speed_is_sqrt_alpha_over_beta():
    x0, theta0 = _ic(10, 20.0)
    out = simulate_dorsogna(x0, theta0, n_steps=0, dt=0.01, **BASE)
    np.testing.assert_allclose(np.linalg.norm(out["velocities"][0], axis=1), math.sqrt(3.0))
    np.testing.assert_allclose(np.arctan2(out["velocities"][0, :, 1], out["velocities"][0, :, 0]),
                               np.angle(np.exp(1j * theta0)), atol=1e-12)


@pytest.mark.parametrize("integrator, tol", [("rk4", 1e-8), ("semi_implicit_euler", 2e-2)])
def test_speeds_relax_to_sqrt_alpha_over_beta_without_forces(integrator, tol):
    # with Ca = Cr = 0, u = |v|^2 obeys du/dt = 2u(alpha - beta u): logistic growth/decay
    alpha, beta = 1.5, 0.5
    x0, theta0 = _ic(6, 20.0)
    speeds0 = np.array([0.2, 0.5, 1.0, 2.0, 3.0, 4.0])
    v0 = speeds0[:, None] * np.column_stack((np.cos(theta0), np.sin(theta0)))
    params = dict(BASE, Ca=0.0, Cr=0.0)
    out = simulate_dorsogna(x0, theta0, n_steps=1000, dt=0.01, integrator=integrator,
                            velocities0=v0, save_every=100, **params)
    t = out["times"][:, None]
    u0 = speeds0**2
    u_exact = (alpha / beta) / (1 + (alpha / (beta * u0) - 1) * np.exp(-2 * alpha * t))
    speeds = np.linalg.norm(out["velocities"], axis=-1)
    np.testing.assert_allclose(speeds, np.sqrt(u_exact), rtol=tol)
    np.testing.assert_allclose(speeds[-1], math.sqrt(alpha / beta), rtol=max(tol, 1e-6))
    # without forces the heading never turns
    headings = out["velocities"] / speeds[..., None]
    np.testing.assert_allclose(headings[-1], headings[0], atol=1e-12)


def _converge(integrator, dts):
    # reflecting walls far away and a cut-off beyond every distance: the vector field is smooth
    rng = np.random.default_rng(4)
    x0 = 50.0 + rng.uniform(-3.0, 3.0, (5, 2))
    theta0 = rng.uniform(0, 2 * np.pi, 5)
    params = dict(BASE, lr=1.0, Lx=100.0, Ly=100.0, boundary="reflecting", rcut_factor=100.0)
    finals = []
    for dt in dts:
        n = int(round(1.0 / dt))
        out = simulate_dorsogna(x0, theta0, n_steps=n, dt=dt, integrator=integrator, **params)
        finals.append(np.concatenate((out["positions"][-1], out["velocities"][-1])))
    return finals


def test_rk4_converges_at_fourth_order():
    *coarse, reference = _converge("rk4", [0.05, 0.025, 0.0125, 0.0125 / 16])
    errors = [np.abs(c - reference).max() for c in coarse]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 3.7) & (orders < 4.3)), orders


def test_semi_implicit_euler_converges_at_first_order():
    *coarse, reference = _converge("semi_implicit_euler", [0.02, 0.01, 0.005, 0.02 / 64])
    errors = [np.abs(c - reference).max() for c in coarse]
    orders = np.log2(np.array(errors[:-1]) / np.array(errors[1:]))
    assert np.all((orders > 0.85) & (orders < 1.2)), orders


@pytest.mark.parametrize("integrator", ["rk4", "semi_implicit_euler"])
def test_pairwise_forces_conserve_momentum(integrator):
    # no self-propulsion: only the antisymmetric pair forces act (pairs straddle the torus)
    x0, theta0 = _ic(40, 6.0, seed=2)
    v0 = np.random.default_rng(3).normal(size=(40, 2))
    out = simulate_dorsogna(
        x0, theta0, n_steps=100, dt=0.01, integrator=integrator, velocities0=v0,
        **dict(BASE, alpha=0.0, beta=0.0, Lx=6.0, Ly=6.0),
    )
    momentum = out["velocities"].sum(axis=1)
    np.testing.assert_allclose(momentum, np.broadcast_to(v0.sum(axis=0), momentum.shape),
                               atol=1e-11)
    assert np.abs(out["velocities"][-1] - v0).max() > 0.1  # the forces did act


def test_alignment_term_relaxes_velocity_difference_exponentially():
    # two agents within R, no forces or propulsion: d(v1 - v2)/dt = -gamma (v1 - v2)
    gamma = 2.0
    v0 = np.array([[0.3, 0.0], [0.0, -0.2]])
    out = simulate_dorsogna(
        np.array([[50.0, 50.0], [51.0, 50.0]]), np.zeros(2), n_steps=100, dt=0.01,
        alignment_strength=gamma, R=10.0, velocities0=v0,
        **dict(BASE, alpha=0.0, beta=0.0, Ca=0.0, Cr=0.0, Lx=100.0, Ly=100.0),
    )
    v = out["velocities"]
    diff = v[:, 0] - v[:, 1]
    expected = (v0[0] - v0[1]) * np.exp(-gamma * out["times"])[:, None]
    np.testing.assert_allclose(diff, expected, rtol=1e-8)
    np.testing.assert_allclose(v.sum(axis=1), np.broadcast_to(v0.sum(axis=0), (101, 2)),
                               atol=1e-14)


@pytest.mark.parametrize("integrator", ["rk4", "semi_implicit_euler"])
def test_result_independent_of_neighbour_method(integrator):
    x0, theta0 = _ic(30, 5.0, seed=6)
    params = dict(BASE, Lx=5.0, Ly=5.0, alignment_strength=0.5, R=1.0)
    cells = simulate_dorsogna(x0, theta0, n_steps=50, dt=0.01, integrator=integrator, **params)
    for method in ("kdtree", "brute_force"):
        other = simulate_dorsogna(x0, theta0, n_steps=50, dt=0.01, integrator=integrator,
                                  neighbour_method=method, **params)
        np.testing.assert_allclose(cells["positions"], other["positions"], atol=1e-10)
        np.testing.assert_allclose(cells["velocities"], other["velocities"], atol=1e-10)


def test_noise_rotates_velocity_keeps_speed_and_is_reproducible():
    x0, theta0 = _ic(20, 20.0)
    params = dict(BASE, Ca=0.0, Cr=0.0, alpha=0.0, beta=0.0, noise_eta=0.5)
    v0 = np.tile([1.0, 0.0], (20, 1))
    runs = [simulate_dorsogna(x0, theta0, n_steps=400, dt=0.01, velocities0=v0,
                              **dict(params, rng=np.random.default_rng(9)))
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0]["positions"], runs[1]["positions"])
    v = runs[0]["velocities"]
    np.testing.assert_allclose(np.linalg.norm(v, axis=-1), 1.0, rtol=1e-12)
    # rotational diffusion: heading variance after t is noise_eta^2 t = 0.25 * 4 = 1
    angles = np.arctan2(v[-1, :, 1], v[-1, :, 0])
    assert 0.3 < angles.var() < 2.0


def test_reflecting_boundary_keeps_agents_inside():
    x0, theta0 = _ic(40, 6.0, seed=8)
    out = simulate_dorsogna(x0, theta0, n_steps=300, dt=0.02,
                            **dict(BASE, Ca=0.0, Cr=5.0, Lx=6.0, Ly=6.0, boundary="reflecting"))
    assert np.all(out["positions"] >= 0.0) and np.all(out["positions"] <= 6.0)


@pytest.mark.parametrize(
    "overrides, name",
    [
        (dict(integrator="euler"), "integrator"),
        (dict(beta=0.0), "beta"),
        (dict(alignment_strength=1.0), "R"),
        (dict(noise_eta=0.1), "rng"),
        (dict(dt=0.0), "dt"),
        (dict(lr=-1.0), "lr"),
        (dict(boundary="open"), "boundary"),
        (dict(velocities0=np.zeros((3, 2))), "velocities0"),
    ],
)
def test_bad_inputs_raise_naming_the_argument(overrides, name):
    x0, theta0 = _ic(5, 20.0)
    with pytest.raises(ValueError, match=name):
        simulate_dorsogna(x0, theta0, n_steps=1, **dict(dict(BASE, dt=0.01), **overrides))
