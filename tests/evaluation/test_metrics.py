"""Metrics against hand-computed values on 2 frames of 2x2 and against scikit-learn's r2_score."""
import numpy as np
import pytest
from sklearn.metrics import r2_score

from rom_pipeline.evaluation.metrics import (
    TruthStatistics,
    density_scores,
    latent_r2,
    mass_violation,
    mse,
    negativity_fraction,
    r2_cumulative,
    r2_per_snapshot,
    r2_pooled,
    relative_errors,
    rmse,
    valid_prediction_time,
)

# Frame 0 differs in one cell by -1, frame 1 in one cell by +1.
TRUTH = np.array([[[1.0, 2.0], [3.0, 4.0]], [[2.0, 2.0], [2.0, 6.0]]])
PRED = np.array([[[1.0, 2.0], [3.0, 5.0]], [[2.0, 1.0], [2.0, 6.0]]])


def test_r2_pooled_by_hand():
    # block mean 22/8 = 2.75; SS_tot = 5.25 + 12.25 = 17.5; SS_res = 2
    assert r2_pooled(TRUTH, PRED) == pytest.approx(1 - 2 / 17.5, abs=1e-15)
    assert r2_pooled(TRUTH, TRUTH) == 1.0


def test_r2_per_snapshot_by_hand():
    # frame 0: mean 2.5, SS_tot 5, SS_res 1; frame 1: mean 3, SS_tot 12, SS_res 1
    np.testing.assert_allclose(r2_per_snapshot(TRUTH, PRED), [0.8, 11 / 12], rtol=0, atol=1e-15)


def test_r2_cumulative_by_hand():
    np.testing.assert_allclose(r2_cumulative(TRUTH, PRED), [0.8, 1 - 2 / 17.5], atol=1e-15)


def test_r2_variants_match_sklearn_on_random_blocks():
    rng = np.random.default_rng(0)
    truth = rng.gamma(2.0, 1.0, size=(9, 5, 4)) + 3.0
    pred = truth + 0.4 * rng.standard_normal(truth.shape)
    assert r2_pooled(truth, pred) == pytest.approx(r2_score(truth.ravel(), pred.ravel()), rel=1e-12)
    per = [r2_score(truth[t].ravel(), pred[t].ravel()) for t in range(9)]
    np.testing.assert_allclose(r2_per_snapshot(truth, pred), per, rtol=1e-12)
    cum = [r2_score(truth[: t + 1].ravel(), pred[: t + 1].ravel()) for t in range(9)]
    np.testing.assert_allclose(r2_cumulative(truth, pred), cum, rtol=1e-10)
    assert r2_cumulative(truth, pred)[-1] == pytest.approx(r2_pooled(truth, pred), rel=1e-12)


def test_r2_undefined_for_constant_truth_is_nan():
    flat = np.ones((2, 2, 2))
    assert np.isnan(r2_pooled(flat, flat + 1))
    assert np.isnan(r2_per_snapshot(flat, flat)).all()


def test_relative_errors_by_hand():
    rel = relative_errors(TRUTH, PRED)
    np.testing.assert_allclose(rel["l1"], [1 / 10, 1 / 12], atol=1e-15)
    np.testing.assert_allclose(rel["l2"], [1 / np.sqrt(30), 1 / np.sqrt(48)], atol=1e-15)
    np.testing.assert_allclose(rel["linf"], [1 / 4, 1 / 6], atol=1e-15)


def test_rmse_mass_violation_negativity_by_hand():
    assert rmse(TRUTH, PRED) == pytest.approx(0.5, abs=1e-15)  # sqrt(2 / 8)
    # masses: truth 10, 12; pred 11, 11 -> max(1/10, 1/12); the cell area cancels
    assert mass_violation(TRUTH, PRED) == pytest.approx(0.1, abs=1e-15)
    assert mass_violation(TRUTH, PRED, cell_area=0.37) == pytest.approx(0.1, abs=1e-15)
    assert negativity_fraction(np.array([[[-1.0, 0.0], [2.0, -3.0]]])) == 0.5


def test_valid_prediction_time_cases():
    times = np.array([0.5, 0.62, 0.74, 0.86])
    assert valid_prediction_time(times, [0.9, 0.7, 0.4, 0.8], 0.5) == pytest.approx(0.24)
    assert valid_prediction_time(times, [0.9, 0.7, 0.6, 0.8], 0.5) == pytest.approx(0.36)
    assert valid_prediction_time(times, [0.1, 0.7, 0.6, 0.8], 0.5) == 0.0
    assert valid_prediction_time(times, [0.9, np.nan, 0.6, 0.8], 0.5) == pytest.approx(0.12)


def test_latent_r2_by_hand():
    # mean of all entries 1.5 -> SS_tot 5; one entry off by 1 -> SS_res 1
    assert latent_r2([[1.0, 0.0], [3.0, 2.0]], [[1.0, 1.0], [3.0, 2.0]]) == pytest.approx(0.8)


def test_shape_mismatch_and_bad_arguments_raise():
    with pytest.raises(ValueError, match="pred has shape"):
        r2_pooled(TRUTH, PRED[:1])
    with pytest.raises(ValueError, match="cell_area"):
        mass_violation(TRUTH, PRED, cell_area=0.0)
    with pytest.raises(ValueError, match="r2_t has shape"):
        valid_prediction_time([0.0, 1.0], [0.5], 0.5)
    with pytest.raises(ValueError, match="y_true has shape"):
        latent_r2(np.ones(3), np.ones(3))


def test_density_scores_equal_the_separate_metrics_bit_for_bit():
    """The one-pass scores of a forecast block against the metric functions (their oracle): equal
    bit for bit, also on a second prediction against the same (cached) truth statistics, with lead
    windows (one empty) and a frame of zero truth (NaN per-frame ratios)."""
    rng = np.random.default_rng(3)
    truth = rng.random((37, 5, 6)) + 0.1
    truth[4] = 0.0
    stats = TruthStatistics(truth)
    windows = {"a": (0, 10), "b": (10, 37), "empty": (12, 12)}
    for pred in (truth + 0.2 * rng.standard_normal(truth.shape), rng.random(truth.shape) - 0.3):
        got = density_scores(stats, pred, cell_area=0.7, windows=windows)
        with np.errstate(all="ignore"):
            assert got["r2_pooled"] == r2_pooled(truth, pred)
            assert got["rmse"] == rmse(truth, pred) and got["mse"] == mse(truth, pred)
            assert np.isnan(got["mass_violation_max"]) and np.isnan(mass_violation(truth, pred, 0.7))
            assert got["negativity_fraction"] == negativity_fraction(pred)
            np.testing.assert_array_equal(got["r2_t"], r2_per_snapshot(truth, pred))
            np.testing.assert_array_equal(got["r2_cumulative"], r2_cumulative(truth, pred))
            for norm, values in relative_errors(truth, pred).items():
                np.testing.assert_array_equal(got["rel"][norm], values)
            assert got["windows"]["a"] == r2_pooled(truth[:10], pred[:10])
            assert got["windows"]["b"] == r2_pooled(truth[10:], pred[10:])
            assert np.isnan(got["windows"]["empty"])
            pooled, per_frame = stats.r2(pred)
            assert pooled == r2_pooled(truth, pred)
            np.testing.assert_array_equal(per_frame, r2_per_snapshot(truth, pred))
    # without the zero frame the mass violation is defined and equal
    stats = TruthStatistics(truth[5:])
    assert density_scores(stats, pred[5:], 0.7)["mass_violation_max"] == mass_violation(truth[5:], pred[5:], 0.7)
    with pytest.raises(ValueError, match="pred has shape"):
        density_scores(stats, pred, 0.7)
    with pytest.raises(ValueError, match="cell_area"):
        density_scores(stats, pred[5:], 0.0)
