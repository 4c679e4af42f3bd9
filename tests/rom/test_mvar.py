"""MVAR against statsmodels, closed forms and analytic recursions (science.md §6)."""
from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from sklearn.linear_model import Ridge
from statsmodels.tsa.api import VAR

from rom_pipeline.rom.forecaster import LatentForecaster
from rom_pipeline.rom.latent import latent_windows
from rom_pipeline.rom.mvar import MVARForecaster, best_lag, select_lag

A1 = np.array([[0.5, 0.1, 0.0], [0.0, 0.4, 0.1], [0.1, 0.0, 0.3]])
A2 = np.array([[0.2, 0.0, 0.0], [0.0, -0.2, 0.0], [0.0, 0.1, 0.1]])
C0 = np.array([0.3, -0.1, 0.05])


def simulate_var(rng, coefs, intercept, n_steps, noise=0.1, burn_in=100):
    """y_k = c + sum_j A_j y_{k-j} + noise * e_k, returns (n_steps, r)."""
    lag, r = len(coefs), len(intercept)
    y = np.zeros((n_steps + burn_in, r))
    for k in range(lag, n_steps + burn_in):
        y[k] = intercept + sum(a @ y[k - j - 1] for j, a in enumerate(coefs)) + noise * rng.standard_normal(r)
    return y[burn_in:]


def design(trajectories, lag):
    """Independent oracle design: [1, y_{k-1}, ..., y_{k-lag}] rows and targets, per run."""
    rows, targets = [], []
    for y in trajectories:
        for k in range(lag, len(y)):
            rows.append(np.concatenate([[1.0], *[y[k - j] for j in range(1, lag + 1)]]))
            targets.append(y[k])
    return np.array(rows), np.array(targets)


def test_ols_matches_statsmodels_var_and_its_roots():
    rng = np.random.default_rng(0)
    y = simulate_var(rng, [A1, A2], C0, 800)
    model = MVARForecaster(lag=3, ridge_alpha=0.0).fit([y])
    result = VAR(y).fit(3, trend="c")
    # statsmodels params: row 0 = constant, then rows 1 + (j-1) r .. j r hold A_j^T
    r = 3
    np.testing.assert_allclose(model.intercept_, result.params[0], atol=1e-8)
    for j in range(1, 4):
        np.testing.assert_allclose(model.coef_[j - 1], result.params[1 + (j - 1) * r : 1 + j * r].T, atol=1e-8)
    np.testing.assert_allclose(model.coef_, result.coefs, atol=1e-8)
    assert model.spectral_radius_ == pytest.approx(np.max(1.0 / np.abs(result.roots)), abs=1e-10)
    np.testing.assert_allclose(
        np.sort_complex(model.eigenvalues_), np.sort_complex(np.linalg.eigvals(model.companion_matrix())), atol=1e-12
    )
    np.testing.assert_allclose(model.predict_next(latent_windows([y], 3)[0]), result.fittedvalues, atol=1e-8)


def test_companion_matrix_layout():
    rng = np.random.default_rng(1)
    model = MVARForecaster(lag=3, ridge_alpha=0.0).fit([rng.standard_normal((200, 2))])
    comp = model.companion_matrix()
    np.testing.assert_array_equal(comp[:2], np.hstack(list(model.coef_)))
    np.testing.assert_array_equal(comp[2:, :4], np.eye(4))
    np.testing.assert_array_equal(comp[2:, 4:], np.zeros((4, 2)))


def test_known_var2_is_recovered_and_bic_picks_two():
    rng = np.random.default_rng(2)
    runs = [simulate_var(rng, [A1, A2], C0, 4000) for _ in range(3)]
    model = MVARForecaster(lag=2, ridge_alpha=0.0).fit(runs)
    np.testing.assert_allclose(model.coef_[0], A1, atol=0.03)
    np.testing.assert_allclose(model.coef_[1], A2, atol=0.03)
    np.testing.assert_allclose(model.intercept_, C0, atol=0.03)
    table = select_lag(runs, max_lag=6)
    assert best_lag(table, "bic") == 2
    assert best_lag(table, "hqic") == 2


def test_ridge_equals_closed_form_with_unpenalised_intercept_across_runs():
    rng = np.random.default_rng(3)
    runs = [simulate_var(rng, [A1, A2], C0, n) for n in (60, 45, 80)]
    alpha, lag = 2.5, 2
    model = MVARForecaster(lag=lag, ridge_alpha=alpha).fit(runs)
    X, Y = design(runs, lag)
    penalty = alpha * np.eye(X.shape[1])
    penalty[0, 0] = 0.0
    theta = np.linalg.solve(X.T @ X + penalty, X.T @ Y)
    np.testing.assert_allclose(model.intercept_, theta[0], atol=1e-12)
    for j in range(lag):
        np.testing.assert_allclose(model.coef_[j], theta[1 + 3 * j : 1 + 3 * (j + 1)].T, atol=1e-12)
    sk = Ridge(alpha=alpha, fit_intercept=True, solver="cholesky").fit(X[:, 1:], Y)
    np.testing.assert_allclose(model.intercept_, sk.intercept_, atol=1e-10)
    np.testing.assert_allclose(np.hstack(list(model.coef_)), sk.coef_, atol=1e-10)
    assert model.n_windows_ == len(Y) == sum(len(y) - lag for y in runs)
    residual = Y - X @ theta
    assert model.train_rmse_ == pytest.approx(np.sqrt(np.mean(residual**2)), rel=1e-10)
    assert model.train_r2_ == pytest.approx(1 - np.sum(residual**2) / np.sum((Y - Y.mean(0)) ** 2), rel=1e-10)


def test_collinear_latents_fall_back_to_least_squares():
    rng = np.random.default_rng(4)
    base = simulate_var(rng, [A1], C0, 300)
    y = np.column_stack([base, base[:, 0]])  # fourth coordinate duplicates the first
    model = MVARForecaster(lag=1, ridge_alpha=0.0).fit([y])
    assert model.solver_ == "lstsq"
    X, Y = design([y], 1)
    Xc, Yc = X[:, 1:] - X[:, 1:].mean(0), Y - Y.mean(0)
    b = np.linalg.lstsq(Xc, Yc, rcond=None)[0]  # minimum-norm solution
    np.testing.assert_allclose(model.coef_[0], b.T, atol=1e-8)
    np.testing.assert_allclose(model.predict_next(y[:-1, None, :]), X @ np.vstack([Y.mean(0) - X[:, 1:].mean(0) @ b, b]), atol=1e-8)


def test_rollout_reproduces_a_deterministic_linear_recursion():
    r, lag = 3, 2
    coef = np.stack([A1, A2])
    model = MVARForecaster.from_arrays(
        {
            "lag": np.array(lag), "ridge_alpha": np.array(0.0), "eigenvalue_threshold": np.array(np.nan),
            "intercept": C0, "coef": coef, "eigenvalues": np.zeros(lag * r, complex),
            "spectral_radius": np.array(0.0), "spectral_radius_before": np.array(np.nan),
            "stability_scale": np.array(1.0), "train_r2": np.array(1.0), "train_rmse": np.array(0.0),
            "n_windows": np.array(0), "solver": np.array("cholesky"),
        }
    )
    seed = np.array([[1.0, -2.0, 0.5], [0.3, 0.7, -1.1]])
    expected = list(seed)
    for _ in range(50):
        expected.append(C0 + A1 @ expected[-1] + A2 @ expected[-2])
    np.testing.assert_allclose(model.rollout(seed, 50), np.array(expected[2:]), rtol=1e-14, atol=1e-14)
    assert model.rollout(seed, 0).shape == (0, r)

    # fitted on the noise-free trajectory, the model reproduces it closed-loop
    trajectory = np.concatenate([seed, model.rollout(seed, 200)])
    fitted = MVARForecaster(lag=lag, ridge_alpha=0.0).fit([trajectory[:120]])
    np.testing.assert_allclose(fitted.coef_, coef, atol=1e-8)
    np.testing.assert_allclose(fitted.rollout(trajectory[:lag], 200), trajectory[lag:], atol=1e-8)


def test_predict_next_equals_explicit_sum():
    rng = np.random.default_rng(5)
    model = MVARForecaster(lag=4, ridge_alpha=1e-3).fit([rng.standard_normal((120, 3)) for _ in range(2)])
    windows = rng.standard_normal((7, 4, 3))
    expected = model.intercept_ + sum(windows[:, 4 - j] @ model.coef_[j - 1].T for j in range(1, 5))
    np.testing.assert_allclose(model.predict_next(windows), expected, atol=1e-13)
    assert isinstance(model, LatentForecaster) and model.name == "MVAR" and model.lag == 4


def test_stability_enforcement_scales_eigenvalues_to_threshold():
    rng = np.random.default_rng(6)
    explosive = [1.1 * np.eye(2), -0.05 * np.eye(2)]  # companion radius 1.0525
    runs = [simulate_var(rng, explosive, np.array([0.1, 0.0]), 150, noise=0.05, burn_in=0) for _ in range(2)]
    free = MVARForecaster(lag=2, ridge_alpha=1e-6).fit(runs)
    assert free.spectral_radius_ > 1.01 and free.spectral_radius_before_ is None
    threshold = 0.9
    model = MVARForecaster(lag=2, ridge_alpha=1e-6, eigenvalue_threshold=threshold).fit(runs)
    assert model.spectral_radius_before_ == pytest.approx(free.spectral_radius_, rel=1e-12)
    assert model.spectral_radius_ <= threshold + 1e-10
    assert model.spectral_radius_ == pytest.approx(threshold, rel=1e-10)
    c = threshold / free.spectral_radius_
    assert model.stability_scale_ == pytest.approx(c)
    np.testing.assert_allclose(
        np.sort_complex(np.linalg.eigvals(model.companion_matrix())), np.sort_complex(c * free.eigenvalues_), atol=1e-10
    )
    np.testing.assert_allclose(model.coef_[1], c**2 * free.coef_[1], rtol=1e-12)
    X, Y = design(runs, 2)  # the intercept is the least-squares optimum for the scaled A_j
    slopes = np.vstack([a.T for a in model.coef_])
    np.testing.assert_allclose(model.intercept_, (Y - X[:, 1:] @ slopes).mean(axis=0), atol=1e-12)
    path = model.rollout(runs[0][-2:], 5000)
    assert np.all(np.isfinite(path)) and np.abs(path).max() < 10 * np.abs(runs[0]).max()
    # a threshold above the radius changes nothing
    loose = MVARForecaster(lag=2, ridge_alpha=1e-6, eigenvalue_threshold=5.0).fit(runs)
    np.testing.assert_array_equal(loose.coef_, free.coef_)
    assert loose.stability_scale_ == 1.0


def test_diverging_rollout_returns_non_finite_without_raising():
    model = MVARForecaster(lag=1, ridge_alpha=0.0)
    y = np.array([[1.0], [3.0], [9.0], [27.0], [81.0]])  # y_k = 3 y_{k-1}
    model.fit([y])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        path = model.rollout(np.array([[1.0]]), 2000)
    assert not np.all(np.isfinite(path))
    assert path[10, 0] == pytest.approx(3.0**11, rel=1e-9)


def test_to_arrays_round_trip_through_npz():
    rng = np.random.default_rng(7)
    runs = [simulate_var(rng, [A1, A2], C0, 100) for _ in range(2)]
    model = MVARForecaster(lag=3, ridge_alpha=1e-2, eigenvalue_threshold=0.5).fit(runs)
    buffer = io.BytesIO()
    np.savez(buffer, **model.to_arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        rebuilt = MVARForecaster.from_arrays(dict(stored))
    assert (rebuilt.lag, rebuilt.ridge_alpha, rebuilt.eigenvalue_threshold) == (3, 1e-2, 0.5)
    for attribute in ("intercept_", "coef_", "eigenvalues_"):
        np.testing.assert_array_equal(getattr(rebuilt, attribute), getattr(model, attribute))
    for attribute in ("spectral_radius_", "spectral_radius_before_", "stability_scale_", "train_r2_",
                      "train_rmse_", "n_windows_", "solver_"):
        assert getattr(rebuilt, attribute) == getattr(model, attribute)
    assert "fit_seconds" not in model.to_arrays()  # wall times stay out of the stored model
    np.testing.assert_array_equal(rebuilt.rollout(runs[0][:3], 20), model.rollout(runs[0][:3], 20))


def test_select_lag_matches_statsmodels_select_order_on_one_run():
    rng = np.random.default_rng(8)
    y = simulate_var(rng, [A1, A2], C0, 600)
    max_lag = 7
    table = select_lag([y], max_lag=max_lag)
    reference = VAR(y).select_order(max_lag, trend="c")
    assert list(table.columns) == ["lag", "aic", "bic", "hqic", "fpe", "n_obs"]
    np.testing.assert_array_equal(table["lag"], np.arange(1, max_lag + 1))
    assert (table["n_obs"] == len(y) - max_lag).all()
    for criterion in ("aic", "bic", "hqic", "fpe"):
        # statsmodels also scores p = 0; rows 1.. are p = 1..max_lag on the same common sample
        np.testing.assert_allclose(table[criterion], reference.ics[criterion][1:], rtol=1e-10)
        assert best_lag(table, criterion) == reference.selected_orders[criterion]


def test_select_lag_treats_runs_separately():
    rng = np.random.default_rng(9)
    runs = [simulate_var(rng, [A1, A2], C0, n) for n in (90, 70, 120)]
    max_lag = 4
    table = select_lag(runs, max_lag=max_lag, criteria=("bic", "fpe"))
    assert list(table.columns) == ["lag", "bic", "fpe", "n_obs"]
    n = sum(len(y) - max_lag for y in runs)
    assert (table["n_obs"] == n).all()
    for p in range(1, max_lag + 1):
        # common sample: drop the first max_lag targets of every run, regress on p lags
        X, Y = design([y[max_lag - p :] for y in runs], p)
        residual = Y - X @ np.linalg.lstsq(X, Y, rcond=None)[0]
        logdet = np.linalg.slogdet(residual.T @ residual / n)[1]
        m = 1 + 3 * p
        assert table["bic"][p - 1] == pytest.approx(logdet + np.log(n) * (p * 9 + 3) / n, rel=1e-10)
        assert table["fpe"][p - 1] == pytest.approx(((n + m) / (n - m)) ** 3 * np.exp(logdet), rel=1e-10)
    with pytest.raises(ValueError, match="criterion"):
        best_lag(table, "aic")


def test_invalid_arguments_are_rejected():
    y = np.random.default_rng(10).standard_normal((30, 2))
    with pytest.raises(ValueError, match="mvar.ridge_alpha"):
        MVARForecaster(ridge_alpha=-1.0).fit([y])
    with pytest.raises(ValueError, match="mvar.lag"):
        MVARForecaster(lag=0).fit([y])
    with pytest.raises(ValueError, match="mvar.eigenvalue_threshold"):
        MVARForecaster(eigenvalue_threshold=0.0).fit([y])
    with pytest.raises(ValueError, match="lag"):
        MVARForecaster(lag=40).fit([y])
    with pytest.raises(ValueError, match="lower max_lag"):
        select_lag([y], max_lag=30)
    with pytest.raises(ValueError, match="criteria"):
        select_lag([y], max_lag=2, criteria=("sic",))
    broken = y.copy()
    broken[7, 1] = np.nan
    with pytest.raises(ValueError, match="trajectory 1 contains non-finite"):
        MVARForecaster(lag=2).fit([y, broken])
    model = MVARForecaster(lag=2).fit([y])
    with pytest.raises(ValueError, match="seed_window"):
        model.rollout(y[:3], 5)
    with pytest.raises(ValueError, match="windows"):
        model.predict_next(y[:2])


def cointegrated_series(rng, n_steps=3000):
    """3 random walks with one stationary relation y0 - y1 = 1 and momentum in the differences."""
    y = np.zeros((n_steps, 3))
    load = np.array([-0.1, 0.05, 0.0])
    for t in range(2, n_steps):
        error = y[t - 1, 0] - y[t - 1, 1] - 1.0
        y[t] = y[t - 1] + 0.3 * (y[t - 1] - y[t - 2]) + load * error + 0.1 * rng.standard_normal(3)
    return y


@pytest.mark.parametrize("lag", [1, 2, 4])
@pytest.mark.parametrize("rank", [0, 1, 2, 3])
def test_error_correction_form_matches_statsmodels_vecm(lag, rank):
    from statsmodels.tsa.vector_ar.vecm import VECM

    y = cointegrated_series(np.random.default_rng(1))
    oracle = VECM(y, k_ar_diff=lag - 1, coint_rank=rank, deterministic="ci").fit()
    model = MVARForecaster(lag=lag, ridge_alpha=0.0, coint_rank=rank).fit([y])
    np.testing.assert_allclose(model.rollout(y[-lag:], 25), oracle.predict(steps=25), atol=1e-10)


def test_error_correction_form_has_exactly_r_minus_k_unit_roots_and_full_rank_is_levels():
    runs = [cointegrated_series(np.random.default_rng(s), 800) for s in (2, 3)]
    for rank in (0, 1, 2):
        model = MVARForecaster(lag=3, ridge_alpha=0.0, coint_rank=rank).fit(runs)
        unit = np.sum(np.abs(model.eigenvalues_ - 1.0) < 1e-9)
        assert unit == 3 - rank
    levels = MVARForecaster(lag=3, ridge_alpha=0.0).fit(runs)
    full = MVARForecaster(lag=3, ridge_alpha=0.0, coint_rank=3).fit(runs)
    np.testing.assert_allclose(full.coef_, levels.coef_, atol=1e-9)
    np.testing.assert_allclose(full.intercept_, levels.intercept_, atol=1e-9)
    assert full.train_r2_ == pytest.approx(levels.train_r2_, abs=1e-12)


def test_rank_zero_keeps_any_constant_state_forever():
    """k = 0 (VAR in differences, no drift): every constant trajectory is a fixed point."""
    runs = [cointegrated_series(np.random.default_rng(4), 600)]
    model = MVARForecaster(lag=2, coint_rank=0).fit(runs)
    state = np.array([[3.0, -7.0, 0.5]] * 2)
    np.testing.assert_allclose(model.rollout(state, 50), np.repeat(state[:1], 50, axis=0), atol=1e-12)


def test_coint_rank_round_trips_and_is_validated():
    y = cointegrated_series(np.random.default_rng(5), 300)
    model = MVARForecaster(lag=2, coint_rank=1).fit([y])
    buffer = io.BytesIO()
    np.savez(buffer, **model.to_arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        assert MVARForecaster.from_arrays(dict(stored)).coint_rank == 1
    with pytest.raises(ValueError, match="mvar.coint_rank = 4 exceeds the r = 3"):
        MVARForecaster(lag=2, coint_rank=4).fit([y])
    with pytest.raises(ValueError, match="mvar.coint_rank must be null"):
        MVARForecaster(lag=2, coint_rank=-1).fit([y])


def test_error_correction_form_on_degenerate_states_names_the_key():
    y = cointegrated_series(np.random.default_rng(6), 200)
    y[:, 2] = 1.0  # a constant mode is collinear with the restricted constant
    with pytest.raises(ValueError, match="mvar.coint_rank = 1: the reduced-rank fit"):
        MVARForecaster(lag=2, coint_rank=1).fit([y])
