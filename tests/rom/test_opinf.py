"""Quadratic operator-inference forecaster: exact recovery, an independent lstsq oracle,
held-out regularisation selection, the stability guard and persistence."""
from __future__ import annotations

import math

import numpy as np
import pytest

from rom_pipeline.rom.forecaster import LatentForecaster
from rom_pipeline.rom.opinf import OpInfForecaster, held_out_runs

R = 3
THETA = 0.4
A_TRUE = 0.95 * np.array([[np.cos(THETA), -np.sin(THETA), 0.0],
                          [np.sin(THETA), np.cos(THETA), 0.0],
                          [0.0, 0.0, 0.7 / 0.95]])
C_TRUE = np.array([0.05, -0.02, 0.01])
H_TENSOR = np.zeros((R, R, R))  # H_TENSOR[i, j, k] multiplies y_j y_k in equation i (symmetric in j, k)
H_TENSOR[2, 0, 0] = H_TENSOR[2, 1, 1] = 0.4
H_TENSOR[0, 0, 2] = H_TENSOR[0, 2, 0] = -0.2
H_TENSOR[1, 1, 2] = H_TENSOR[1, 2, 1] = -0.2


def _step(y, c=C_TRUE, a=A_TRUE, h=H_TENSOR):
    return c + a @ y + np.einsum("ijk,j,k->i", h, y, y)


def _trajectory(y0, n_frames, **operators):
    ys = [np.asarray(y0, dtype=np.float64)]
    for _ in range(n_frames - 1):
        ys.append(_step(ys[-1], **operators))
    return np.array(ys)


def _runs(n_runs, n_frames, seed, noise=0.0):
    rng = np.random.default_rng(seed)
    runs = [_trajectory(rng.uniform(-1, 1, size=R), n_frames) for _ in range(n_runs)]
    return [y + noise * rng.normal(size=y.shape) for y in runs]


def _features(states):
    """Independent data rows [1, y, y_j y_k (j <= k)] for states (n, r)."""
    r = states.shape[1]
    products = [states[:, j] * states[:, k] for j in range(r) for k in range(j, r)]
    return np.column_stack([np.ones(len(states)), states, *products])


def _oracle(runs, linear, quadratic, pairs=None):
    """numpy.linalg.lstsq of the stacked Tikhonov problem; returns (c, A, full H (r, r*r))."""
    r = runs[0].shape[1]
    if pairs is None:
        pairs = (np.concatenate([y[:-1] for y in runs]), np.concatenate([y[1:] for y in runs]))
    data = _features(pairs[0])
    n_quadratic = r * (r + 1) // 2
    gamma = np.diag(np.sqrt(np.r_[0.0, np.full(r, linear), np.full(n_quadratic, quadratic)]))
    stacked = np.vstack([data, gamma])
    target = np.vstack([pairs[1], np.zeros((len(gamma), r))])
    solution = np.linalg.lstsq(stacked, target, rcond=None)[0].T        # (r, d)
    h_full = np.zeros((r, r, r))
    column = 1 + r
    for j in range(r):
        for k in range(j, r):
            if j == k:
                h_full[:, j, j] = solution[:, column]
            else:
                h_full[:, j, k] = h_full[:, k, j] = solution[:, column] / 2
            column += 1
    return solution[:, 0], solution[:, 1:1 + r], h_full.reshape(r, r * r)


def _single(linear=0.0, quadratic=0.0, **kwargs):
    return OpInfForecaster(linear_regularisation=[linear], quadratic_regularisation=[quadratic], **kwargs)


# ---------------------------------------------------------------------------- least squares
def test_recovers_known_quadratic_map_from_noise_free_runs():
    runs = _runs(n_runs=20, n_frames=10, seed=0)
    model = _single().fit(runs)
    np.testing.assert_allclose(model.constant_, C_TRUE, rtol=0, atol=1e-8)
    np.testing.assert_allclose(model.linear_, A_TRUE, rtol=0, atol=1e-8)
    np.testing.assert_allclose(model.quadratic_full(), H_TENSOR.reshape(R, R * R), rtol=0, atol=1e-8)
    assert model.train_r2_ == pytest.approx(1.0, abs=1e-12)
    assert model.n_pairs_ == 20 * 9
    assert isinstance(model, LatentForecaster) and model.lag == 1 and model.name == "OPINF"


@pytest.mark.parametrize(("linear", "quadratic"), [(0.0, 0.0), (0.3, 0.7), (5.0, 1e-3)])
def test_regularised_fit_equals_numpy_lstsq_oracle(linear, quadratic):
    runs = _runs(n_runs=6, n_frames=12, seed=1, noise=0.05)
    model = _single(linear, quadratic).fit(runs)
    c, a, h = _oracle(runs, linear, quadratic)
    np.testing.assert_allclose(model.constant_, c, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(model.linear_, a, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(model.quadratic_full(), h, rtol=1e-9, atol=1e-11)
    # one-step R^2 against the oracle's residuals
    states, nxt = np.concatenate([y[:-1] for y in runs]), np.concatenate([y[1:] for y in runs])
    residual = nxt - (c + states @ a.T + np.einsum("ijk,nj,nk->ni", h.reshape(R, R, R), states, states))
    r2 = 1 - np.sum(residual**2) / np.sum((nxt - nxt.mean(axis=0)) ** 2)
    assert model.train_r2_ == pytest.approx(r2, rel=1e-10)


def test_no_seams_fit_uses_within_run_pairs_only():
    runs = _runs(n_runs=2, n_frames=15, seed=2, noise=0.05)
    model = _single(0.1, 0.1).fit(runs)
    within = _oracle(runs, 0.1, 0.1)
    both = np.concatenate(runs)  # the same frames as one run: adds the seam pair (y^0_14, y^1_0)
    seamed = _oracle([both], 0.1, 0.1)
    np.testing.assert_allclose(model.linear_, within[1], rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(model.quadratic_full(), within[2], rtol=1e-9, atol=1e-11)
    assert model.n_pairs_ == 28
    assert np.max(np.abs(model.linear_ - seamed[1])) > 1e-3  # the seam would visibly change the fit


# ---------------------------------------------------------------------------- selection
def test_heldout_runs_are_seeded_and_sized():
    assert held_out_runs(10, 0.2, 0) == held_out_runs(10, 0.2, 0)
    assert len(held_out_runs(10, 0.25, 0)) == math.ceil(2.5)
    assert held_out_runs(10, 0.2, 0) == sorted(np.random.default_rng(0).permutation(10)[:2].tolist())
    with pytest.raises(ValueError, match="validation_fraction"):
        held_out_runs(1, 0.2, 0)


def test_selection_picks_the_right_order_of_magnitude():
    """r = 5 (21 coefficients per equation), 12 short noisy runs: a small lambda_H fits the noise
    (held-out rollouts diverge), a large one loses the true H (biased rollouts)."""
    r = 5
    rng = np.random.default_rng(123)
    a = 0.9 * np.linalg.qr(rng.normal(size=(r, r)))[0]
    h = 0.08 * rng.normal(size=(r, r, r))
    h = (h + h.transpose(0, 2, 1)) / 2
    operators = {"c": np.zeros(r), "a": a, "h": h}

    def runs_of(n_runs, generator, noise):
        clean = [_trajectory(generator.uniform(-1, 1, size=r), 6, **operators) for _ in range(n_runs)]
        return [y + noise * generator.normal(size=y.shape) for y in clean]

    grid = np.logspace(4, -4, 9)  # descending: the first candidate that stays finite is not the best
    runs = runs_of(12, np.random.default_rng(3), 0.1)
    model = OpInfForecaster(linear_regularisation=[1e-8], quadratic_regularisation=grid,
                            validation_fraction=0.5, seed=0).fit(runs)
    skill = model.regularisation_scan_["heldout_skill"].to_numpy()
    chosen = model.quadratic_regularisation_
    assert skill.argmax() == int(np.flatnonzero(grid == chosen)[0])
    assert skill[-1] == -np.inf and skill.max() - skill[0] > 0.05   # both ends are worse
    # oracle: the penalty that forecasts 50 fresh noise-free runs best, fitted on all the data
    fresh = runs_of(50, np.random.default_rng(99), 0.0)
    errors = []
    for q in grid:
        fitted = _single(1e-8, q).fit(runs)
        error = sum(np.sum((fitted.rollout(y[:1], 5) - y[1:]) ** 2) for y in fresh)
        errors.append(error if np.isfinite(error) else np.inf)
    best = grid[int(np.argmin(errors))]
    assert abs(math.log10(chosen) - math.log10(best)) <= 1.0, (chosen, best, errors)
    assert 1e-4 < best < 1e4                                          # an interior optimum

    # the chosen entry against an independent computation (oracle fit, plain rollout, skill)
    heldout = held_out_runs(12, 0.5, 0)
    assert model.heldout_runs_ == heldout
    fitting = [y for i, y in enumerate(runs) if i not in heldout]
    c_fit, a_fit, h_fit = _oracle(fitting, 1e-8, chosen)
    truth = [runs[i][1:] for i in heldout]
    predicted = [_trajectory(runs[i][0], 6, c=c_fit, a=a_fit, h=h_fit.reshape(r, r, r))[1:] for i in heldout]
    mean_state = np.concatenate(fitting).mean(axis=0)
    error = sum(np.sum((p - t) ** 2) for p, t in zip(predicted, truth))
    reference = sum(np.sum((t - mean_state) ** 2) for t in truth)
    assert model.heldout_skill_ == pytest.approx(1 - error / reference, rel=1e-8)


def test_single_candidate_skips_the_scan():
    model = _single(0.1, 0.2).fit(_runs(n_runs=1, n_frames=30, seed=3, noise=0.01))
    assert model.heldout_runs_ == [] and np.isnan(model.heldout_skill_)
    assert len(model.regularisation_scan_) == 1
    assert (model.linear_regularisation_, model.quadratic_regularisation_) == (0.1, 0.2)


# ---------------------------------------------------------------------------- forecasting
def test_rollout_matches_plain_iteration_and_predict_next_matches_one_step():
    runs = _runs(n_runs=6, n_frames=12, seed=4, noise=0.02)
    model = _single(0.01, 0.01).fit(runs)
    seed = runs[0][:1]
    forecast = model.rollout(seed, 10)
    expected = _trajectory(seed[0], 11, c=model.constant_, a=model.linear_,
                           h=model.quadratic_full().reshape(R, R, R))[1:]
    assert forecast.shape == (10, R)
    np.testing.assert_allclose(forecast, expected, rtol=1e-12, atol=1e-14)
    windows = np.stack([y[:1] for y in runs])                       # (6, 1, r)
    one_step = model.predict_next(windows)
    assert one_step.shape == (6, R)
    np.testing.assert_allclose(one_step[0], forecast[0], rtol=1e-13)  # batched BLAS: last bit
    np.testing.assert_array_equal(model.predict_next(windows[:1])[0], forecast[0])
    np.testing.assert_array_equal(model.rollout(seed, 0), np.empty((0, R)))
    with pytest.raises(ValueError, match=r"windows must have shape \(n, 1, 3\)"):
        model.predict_next(np.zeros((6, 2, R)))
    with pytest.raises(ValueError, match=r"seed_window must have shape \(1, 3\)"):
        model.rollout(np.zeros(R), 5)
    with pytest.raises(ValueError, match="n_steps"):
        model.rollout(seed, -1)


def test_diverging_rollout_turns_non_finite_at_the_box_and_does_not_raise():
    runs = _runs(n_runs=6, n_frames=12, seed=5, noise=0.02)
    arrays = _single(0.01, 0.01, bound_factor=2.0).fit(runs).to_arrays()
    arrays["quadratic"] = arrays["quadratic"] * 40.0                 # an exploding quadratic map
    model = OpInfForecaster.from_arrays(arrays)
    seed = runs[0][:1]
    forecast = model.rollout(seed, 50)
    finite = np.all(np.isfinite(forecast), axis=1)
    first_bad = int(np.argmin(finite))
    assert not finite.all() and finite[:first_bad].all() and not finite[first_bad:].any()
    # independent: the unguarded iteration leaves the box 2x the training range at that step
    lo, hi = np.concatenate(runs).min(axis=0), np.concatenate(runs).max(axis=0)
    with np.errstate(over="ignore", invalid="ignore"):
        plain = _trajectory(seed[0], 51, c=model.constant_, a=model.linear_,
                            h=model.quadratic_full().reshape(R, R, R))[1:]
        inside = np.all(np.abs(plain - (lo + hi) / 2) <= 2.0 * (hi - lo) / 2, axis=1)
    assert first_bad == int(np.argmin(inside))
    np.testing.assert_allclose(forecast[:first_bad], plain[:first_bad], rtol=1e-12)
    # a one-step prediction from outside the box is NaN too (same guard)
    assert np.isnan(model.predict_next(plain[first_bad][None, None, :])).all()


# ---------------------------------------------------------------------------- persistence
def test_round_trip_gives_bit_identical_rollouts(tmp_path):
    runs = _runs(n_runs=8, n_frames=10, seed=6, noise=0.05)
    model = OpInfForecaster(linear_regularisation=[1e-3, 1e-1], quadratic_regularisation=[1e-2, 1.0]).fit(runs)
    path = tmp_path / "opinf.npz"
    np.savez(path, **model.to_arrays(), allow_pickle=False)
    with np.load(path, allow_pickle=False) as stored:
        restored = OpInfForecaster.from_arrays(dict(stored))
    seed = runs[3][:1]
    np.testing.assert_array_equal(restored.rollout(seed, 40), model.rollout(seed, 40))
    windows = np.stack([y[4:5] for y in runs])
    np.testing.assert_array_equal(restored.predict_next(windows), model.predict_next(windows))
    assert restored.regularisation_scan_.equals(model.regularisation_scan_)
    assert (restored.linear_regularisation_, restored.quadratic_regularisation_, restored.train_r2_,
            restored.heldout_runs_) == (model.linear_regularisation_, model.quadratic_regularisation_,
                                        model.train_r2_, model.heldout_runs_)
    refit = OpInfForecaster(linear_regularisation=[1e-3, 1e-1], quadratic_regularisation=[1e-2, 1.0]).fit(runs)
    for key, value in model.to_arrays().items():                     # fits are deterministic
        np.testing.assert_array_equal(refit.to_arrays()[key], value, err_msg=key)


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(("kwargs", "message"), [
    ({"linear_regularisation": [-1.0]}, "opinf.linear_regularisation"),
    ({"quadratic_regularisation": []}, "opinf.quadratic_regularisation"),
    ({"validation_fraction": 1.0}, "opinf.validation_fraction"),
    ({"bound_factor": 0.5}, "opinf.bound_factor"),
    ({"seed": 1.5}, "opinf.seed"),
])
def test_bad_hyperparameters_are_refused_before_fitting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        OpInfForecaster(**kwargs).fit(_runs(n_runs=4, n_frames=5, seed=7))


def test_bad_trajectories_are_refused():
    runs = _runs(n_runs=4, n_frames=5, seed=8)
    runs[2] = runs[2].copy()
    runs[2][1, 0] = np.nan
    with pytest.raises(ValueError, match="trajectory 2 contains non-finite"):
        _single().fit(runs)
    with pytest.raises(ValueError, match="wrap a single run in a list"):
        _single().fit(runs[0])
    with pytest.raises(ValueError, match="holds out 1 of 1 runs"):
        OpInfForecaster().fit(runs[:1])
    with pytest.raises(RuntimeError, match="not fitted"):
        OpInfForecaster().rollout(np.zeros((1, R)), 3)
    with pytest.raises(ValueError, match="lack"):
        OpInfForecaster.from_arrays({"constant": np.zeros(R)})
