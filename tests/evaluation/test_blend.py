"""Blending the lab-frame ensemble with climatology (eval.ensemble_blend): the mixture scores, the
fitted weight and the protocol's use of it."""
import numpy as np
import pytest

from rom_pipeline.evaluation.blend import ClimatologyBlend, check_blend_method, fit_climatology_blend
from rom_pipeline.evaluation.protocol import EvaluationConfig, evaluate_forecaster
from rom_pipeline.evaluation.scores import (
    crps_fair,
    energy_score_fair,
    fit_mixture_weight,
    frame_scores,
    mixture_components,
    mixture_frame_scores,
)
from rom_pipeline.evaluation.track import TrackModel

from tests.evaluation.test_lab_ensemble import (  # noqa: F401  (basis is a fixture)
    SHAPE,
    MeanStateForecaster,
    basis,
    rigid_blob_run,
    track_model,
)


def weighted_mixture_crps(truth, forecast, reference, w):
    """Brute force: the CRPS of the mixture distribution w F + (1 - w) C with each ensemble's
    pair terms over distinct members (the fair estimator), summing every pair explicitly."""
    def pair_mean(a, b, same):
        d = np.abs(a[:, None] - b[None, :])  # (Ma, Mb, ...)
        if same:
            m = a.shape[0]
            return d.sum(axis=(0, 1)) / (m * (m - 1))
        return d.mean(axis=(0, 1))

    absolute = w * np.abs(forecast - truth).mean(axis=0) + (1 - w) * np.abs(reference - truth).mean(axis=0)
    pairs = (w * w * pair_mean(forecast, forecast, True) + 2 * w * (1 - w) * pair_mean(forecast, reference, False)
             + (1 - w) ** 2 * pair_mean(reference, reference, True))
    return (absolute - 0.5 * pairs).mean(axis=(1, 2))


def synthetic(seed=0, n=5, m=6, mc=7):
    rng = np.random.default_rng(seed)
    truth = rng.gamma(2.0, 1.0, size=(n, 3, 4))
    forecast = truth + rng.normal(1.0, 1.5, size=(m, n, 3, 4))  # biased but informative
    reference = rng.gamma(2.0, 1.0, size=(mc, n, 3, 4))  # climatology: same law, no information
    return truth, forecast, reference


def test_mixture_scores_match_brute_force_pairs():
    truth, forecast, reference = synthetic()
    comps = mixture_components(truth, forecast, reference)
    for w in (0.0, 0.3, 0.77, 1.0):
        np.testing.assert_allclose(mixture_frame_scores(comps, w)["crps"],
                                   weighted_mixture_crps(truth, forecast, reference, w), rtol=1e-12)
    # the mean and variance of the mixture distribution
    w = 0.4
    mix = mixture_frame_scores(comps, w)
    mean = w * forecast.mean(0) + (1 - w) * reference.mean(0)
    np.testing.assert_allclose(mix["mse_mean"], ((mean - truth) ** 2).mean(axis=(1, 2)), rtol=1e-12)
    var = (w * forecast.var(0, ddof=1) + (1 - w) * reference.var(0, ddof=1)
           + w * (1 - w) * (forecast.mean(0) - reference.mean(0)) ** 2)
    np.testing.assert_allclose(mix["variance"], var.mean(axis=(1, 2)), rtol=1e-12)


def test_end_weights_reproduce_each_ensemble_exactly():
    truth, forecast, reference = synthetic(1)
    comps = mixture_components(truth, forecast, reference)
    alone_c, alone_f = frame_scores(truth, reference), frame_scores(truth, forecast)
    at_0, at_1 = mixture_frame_scores(comps, 0.0), mixture_frame_scores(comps, 1.0)
    for key in ("crps", "energy", "mse_mean", "variance"):
        np.testing.assert_allclose(at_0[key], alone_c[key], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(at_1[key], alone_f[key], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(at_0["crps"], crps_fair(truth, reference).mean(axis=(1, 2)), rtol=1e-12)
    np.testing.assert_allclose(at_1["energy"], energy_score_fair(truth, forecast), rtol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fitted_weight_is_the_brute_force_optimum(seed):
    truth, forecast, reference = synthetic(seed, n=8)
    comps = mixture_components(truth, forecast, reference)
    grid = np.linspace(0.0, 1.0, 10001)
    total = [weighted_mixture_crps(truth, forecast, reference, w).sum() for w in grid]
    w_star = fit_mixture_weight(comps)
    assert 0.0 < w_star < 1.0  # an interior optimum: the forecast informs but is biased
    assert w_star == pytest.approx(grid[int(np.argmin(total))], abs=2e-4)
    assert mixture_frame_scores(comps, w_star)["crps"].sum() <= min(total) + 1e-12


def test_fitted_weight_ends():
    truth, forecast, reference = synthetic(3)
    # the truth itself as a sharp forecast: w = 1
    perfect = np.repeat(truth[None], 4, axis=0) + 1e-9 * np.arange(4)[:, None, None, None]
    assert fit_mixture_weight(mixture_components(truth, perfect, reference)) == 1.0
    # components whose quadratic a w^2 + b w has its vertex below 0 (a = 1, b = 0.5): w = 0
    zeros = np.zeros(2)
    comps = {"crps_abs_f": zeros + 2.0, "crps_abs_c": zeros + 1.0, "crps_pair_ff": zeros,
             "crps_pair_cc": zeros + 1.0, "crps_pair_fc": zeros + 1.0}
    # per frame: a = 1 - 0.5 = 0.5, b = 2 - 1 - 1 + 1 = 1 -> vertex -1 -> clipped to 0
    assert fit_mixture_weight(comps) == 0.0
    comps["crps_abs_f"] = zeros + 0.2  # b = -0.8 per frame -> vertex 0.8
    assert fit_mixture_weight(comps) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="at least one scored frame"):
        fit_mixture_weight({k: np.zeros(0) for k in comps})


@pytest.mark.parametrize("weights", [[1.2], [-0.1], [np.nan]])
def test_weights_outside_the_unit_interval_are_refused(weights):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ClimatologyBlend((), weights)
    truth, forecast, reference = synthetic()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        mixture_frame_scores(mixture_components(truth, forecast, reference), weights[0])


def test_unknown_method_and_folds_are_refused():
    with pytest.raises(ValueError, match="eval.ensemble_blend is 'median'"):
        check_blend_method("median")
    with pytest.raises(ValueError, match="eval.blend_folds"):
        check_blend_method("heldout", 1)
    with pytest.raises(ValueError, match="one weight per lead window"):
        ClimatologyBlend((0.0, 2.0), (0.5,))


def test_weights_per_lead_window():
    blend = ClimatologyBlend((0.0, 2.0, 5.0), (0.9, 0.5, 0.1))
    np.testing.assert_array_equal(blend.weights_at(np.array([0.0, 1.99, 2.0, 4.9, 5.0, 40.0])),
                                  [0.9, 0.9, 0.5, 0.5, 0.1, 0.1])


def config(**kw):
    return EvaluationConfig(forecast_start=0.6, shift_modes=("oracle", "lab_ensemble"),
                            mass_postprocess="scale", ensemble_size=6, **kw)


def test_protocol_blend_zero_scores_the_climatology_and_one_the_forecast(basis):  # noqa: F811
    run = rigid_blob_run()
    model = track_model(np.diag([0.3, 0.5]))
    plain = {r["shift_mode"]: r for r in evaluate_forecaster(
        MeanStateForecaster(), basis, run, config(), track_model=model).metrics}["lab_ensemble"]
    one = {r["shift_mode"]: r for r in evaluate_forecaster(
        MeanStateForecaster(), basis, run, config(), track_model=model,
        blend=ClimatologyBlend((), (1.0,))).metrics}["lab_ensemble"]
    zero_result = evaluate_forecaster(MeanStateForecaster(), basis, run, config(), track_model=model,
                                      blend=ClimatologyBlend((), (0.0,)))
    zero = {r["shift_mode"]: r for r in zero_result.metrics}["lab_ensemble"]
    for key in ("r2_pooled", "crps", "energy_score", "crps_skill_climatology", "spread_skill"):
        assert one[key] == pytest.approx(plain[key], rel=1e-10, abs=1e-12)
    assert zero["crps_skill_climatology"] == pytest.approx(0.0, abs=1e-12)
    assert zero["energy_skill_climatology"] == pytest.approx(0.0, abs=1e-12)
    # the mixture mean at w = 0: the climatology's uniform field of the restored mass: R² <= 0,
    # and exactly the R² of that constant field
    frames = zero_result.r2_vs_time
    assert frames.loc[frames.shift_mode == "lab_ensemble", "crps"].to_numpy() == pytest.approx(
        frames.loc[frames.shift_mode == "lab_ensemble", "crps_climatology"].to_numpy(), rel=1e-10)
    truth = run.density[5:]
    level = run.density[4].sum() / truth[0].size  # scale: the mass of the last seed frame (k0 - 1 = 4), uniform
    const_r2 = 1 - ((truth - level) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    assert zero["r2_pooled"] == pytest.approx(const_r2, rel=1e-9)


class RefittedForecaster(MeanStateForecaster):
    """Records how many runs it was (re)fitted on."""

    def __init__(self, n_train):
        self.n_train = n_train


def test_heldout_fit_uses_other_folds_only_and_recovers_a_perfect_forecast(basis):  # noqa: F811
    runs = [rigid_blob_run(T=30) for _ in range(4)]
    latents = [basis.restrict(r.density, shifts=basis.estimate_shifts(r.density)) for r in runs]
    tracks = [np.asarray(basis.estimate_shifts(r.density), dtype=float) for r in runs]
    seen = []

    def train(trajectories):
        seen.append(len(trajectories))
        return RefittedForecaster(len(trajectories))

    def fit_track(shifts, covariates):
        assert covariates is None
        return TrackModel(order=1).fit(shifts, SHAPE)

    blend = fit_climatology_blend(train, fit_track, basis, runs, latents, tracks,
                                  config(lead_windows=(0.0, 1.0, 2.0)), n_folds=2, frame_step=1)
    assert seen == [2, 2]
    # the rigid blob is forecast exactly on an almost noise-free track: the forecast ensemble
    # beats climatology by far, so w = 1 in the fitted windows
    assert min(blend.weights[:2]) > 0.999
    assert blend.n_frames[0] == 4 * 9  # 4 held-out runs x leads 0..0.96 s (frames 5..13)
    assert blend.n_frames[1:] == (4 * 8, 4 * 8)  # leads 1.08..1.92 s and 2.04..2.88 s
    assert min(blend.mean_weights) > 0.999
    # a window past the training runs' horizon (3 s) has no held-out frame: the climatology
    late = fit_climatology_blend(train, fit_track, basis, runs, latents, tracks,
                                 config(lead_windows=(0.0, 1.0, 5.0)), n_folds=2, frame_step=1)
    assert late.n_frames[2] == 0 and late.weights[2] == 0.0 and late.mean_weights[2] == 0.0


def test_least_squares_mean_weight_is_the_brute_force_optimum():
    from rom_pipeline.evaluation.blend import least_squares_weight

    rng = np.random.default_rng(4)
    truth = rng.random((6, 5, 7))
    a = truth + rng.normal(0, 0.4, (6, 5, 7))  # informative but noisy forecast mean
    b = np.full_like(truth, truth.mean())  # the climatology's uniform mean
    sxy, sxx = least_squares_weight(truth, a, b)
    v = float(np.clip(sxy.sum() / sxx.sum(), 0, 1))
    grid = np.linspace(0, 1, 10001)
    sse = [((g * a + (1 - g) * b - truth) ** 2).sum() for g in grid]
    assert 0 < v < 1
    assert v == pytest.approx(grid[int(np.argmin(sse))], abs=1e-4)


def test_blend_mean_weights_default_to_the_ensemble_weights_and_round_trip():
    blend = ClimatologyBlend((0.0, 2.0), (0.9, 0.4), (10, 20), (1.0, 0.2))
    np.testing.assert_array_equal(blend.weights_at(np.array([1.0, 3.0]), mean=True), [1.0, 0.2])
    again = ClimatologyBlend.from_dict(blend.to_dict())
    assert again == blend
    assert ClimatologyBlend((), (0.3,)).mean_weights == (0.3,)
    assert ClimatologyBlend.from_dict({"method": "none"}) is None
    with pytest.raises(ValueError, match="eval.ensemble_blend"):
        ClimatologyBlend.from_dict({"method": "mixture"})
