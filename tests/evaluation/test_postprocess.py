"""Positivity and mass post-processing: hand values, a brute-force QP for the simplex projection,
and exact mass conservation."""
import numpy as np
import pytest
from scipy.optimize import minimize

from rom_pipeline.evaluation.postprocess import clamp, mass_postprocess, project_simplex


def test_clamp_modes_by_hand():
    rho = np.array([[[1.0, -1.0], [2.0, 0.0]], [[3.0, 1.0], [0.0, 0.0]]])
    np.testing.assert_array_equal(clamp(rho, "none"), rho)
    np.testing.assert_array_equal(clamp(rho, "clamp")[0], [[1.0, 0.0], [2.0, 0.0]])
    out = clamp(rho, "clamp_renormalise")
    # frame 0: pre-clamp mass 2, clamped mass 3 -> factor 2/3; frame 1 untouched
    np.testing.assert_allclose(out[0], [[2 / 3, 0.0], [4 / 3, 0.0]], atol=1e-15)
    np.testing.assert_array_equal(out[1], rho[1])


def test_clamp_renormalise_leaves_nonpositive_mass_frames_clamped():
    rho = np.array([[[1.0, -3.0]]])  # pre-clamp mass -2: no non-negative field has that mass
    np.testing.assert_array_equal(clamp(rho, "clamp_renormalise"), [[[1.0, 0.0]]])


def test_project_simplex_hand_cases():
    np.testing.assert_allclose(project_simplex([0.5, 0.5], 1.0), [0.5, 0.5])
    np.testing.assert_allclose(project_simplex([2.0, 0.0], 1.0), [1.0, 0.0])
    # u = (1, .2, -1): support {1, 2}, theta = (1.2 - 1)/2 = 0.1
    np.testing.assert_allclose(project_simplex([1.0, 0.2, -1.0], 1.0), [0.9, 0.1, 0.0], atol=1e-15)


def _exhaustive_simplex_projection(v, total):
    """Exact oracle: for every support S the KKT point is w_S = v_S - θ, θ = (Σv_S - total)/|S|;
    the projection is the feasible (w >= 0) candidate closest to v."""
    best, best_cost = None, np.inf
    n = len(v)
    for mask in range(1, 2**n):
        support = np.array([(mask >> i) & 1 for i in range(n)], dtype=bool)
        theta = (v[support].sum() - total) / support.sum()
        w = np.where(support, v - theta, 0.0)
        if w.min() >= 0 and np.sum((w - v) ** 2) < best_cost:
            best, best_cost = w, np.sum((w - v) ** 2)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_project_simplex_matches_exhaustive_and_slsqp(seed):
    rng = np.random.default_rng(seed)
    v = rng.normal(size=7) * 2.0
    total = float(rng.uniform(0.5, 5.0))
    w = project_simplex(v, total)
    assert w.min() >= 0.0
    assert w.sum() == pytest.approx(total, abs=1e-12)
    np.testing.assert_allclose(w, _exhaustive_simplex_projection(v, total), atol=1e-12)
    qp = minimize(
        lambda x: np.sum((x - v) ** 2),
        x0=np.full(7, total / 7),
        jac=lambda x: 2 * (x - v),
        bounds=[(0.0, None)] * 7,
        constraints=[{"type": "eq", "fun": lambda x: x.sum() - total, "jac": lambda x: np.ones(7)}],
        method="SLSQP",
        options={"ftol": 1e-10, "maxiter": 500},
    )
    np.testing.assert_allclose(w, qp.x, atol=1e-5)
    assert np.sum((w - v) ** 2) <= qp.fun + 1e-10


def test_project_simplex_vectorised_equals_row_by_row():
    rng = np.random.default_rng(7)
    v = rng.normal(size=(5, 3, 11))
    totals = rng.uniform(0.5, 3.0, size=(5, 3))
    batch = project_simplex(v, totals)
    for i in range(5):
        for j in range(3):
            np.testing.assert_allclose(batch[i, j], project_simplex(v[i, j], totals[i, j]), atol=0)
    np.testing.assert_allclose(batch.sum(axis=-1), totals, atol=1e-12)


def test_project_simplex_rejects_bad_input():
    with pytest.raises(ValueError, match="total"):
        project_simplex([1.0, 2.0], 0.0)
    with pytest.raises(ValueError, match="non-finite"):
        project_simplex([1.0, np.nan], 1.0)


def test_mass_scale_by_hand():
    rho = np.array([[[1.0, 3.0]]])
    # mass = 0.5 * 4 = 2, target 8 -> factor 4
    np.testing.assert_allclose(mass_postprocess(rho, "scale", 8.0, cell_area=0.5), [[[4.0, 12.0]]])


@pytest.mark.parametrize("mode", ["scale", "simplex"])
def test_mass_postprocess_conserves_mass(mode):
    rng = np.random.default_rng(3)
    rho = rng.normal(1.0, 0.8, size=(6, 8, 9))  # some negative cells
    rho[:, 0, 0] += 5.0  # keep every frame's mass positive for "scale"
    cell_area = 0.39
    targets = rng.uniform(10.0, 40.0, size=6)
    out = mass_postprocess(rho, mode, targets, cell_area=cell_area)
    np.testing.assert_allclose(cell_area * out.sum(axis=(1, 2)), targets, rtol=1e-12, atol=0)
    if mode == "simplex":
        assert out.min() >= 0.0
    scalar = mass_postprocess(rho, mode, 25.0, cell_area=cell_area)
    np.testing.assert_allclose(cell_area * scalar.sum(axis=(1, 2)), 25.0, rtol=1e-12)


def test_mass_scale_marks_nonpositive_mass_frames_nan():
    rho = np.array([[[1.0, 1.0]], [[-1.0, 0.5]]])
    out = mass_postprocess(rho, "scale", 4.0)
    np.testing.assert_allclose(out[0], [[2.0, 2.0]])
    assert np.isnan(out[1]).all()


def test_mass_postprocess_rejects_bad_arguments():
    rho = np.ones((2, 2, 2))
    with pytest.raises(ValueError, match="'rescale' is unknown"):
        mass_postprocess(rho, "rescale", 1.0)
    with pytest.raises(ValueError, match="target_mass"):
        mass_postprocess(rho, "scale", -1.0)
    with pytest.raises(ValueError, match="clamp mode 'relu'"):
        clamp(rho, "relu")
