"""The spread-capped climatology blend (eval.blend_max_spread_skill): the mixture's spread/skill ratio as
a function of the weight, and the CRPS-optimal weight under the cap, against brute force."""
import numpy as np
import pytest

from rom_pipeline.evaluation.blend import (
    blend_from_components,
    capped_mixture_weight,
    fit_climatology_blend,
    mixture_spread_skill,
)
from rom_pipeline.evaluation.scores import fit_mixture_weight, mixture_components, mixture_frame_scores

from tests.evaluation.test_blend import weighted_mixture_crps


def brute_ratio(truth, forecast, reference, w):
    """Spread/skill of the mixture distribution w F + (1 - w) C, its moments summed member by member."""
    m = forecast.shape[0]
    mean = w * forecast.mean(0) + (1 - w) * reference.mean(0)
    var = (w * forecast.var(0, ddof=1) + (1 - w) * reference.var(0, ddof=1)
           + w * (1 - w) * (forecast.mean(0) - reference.mean(0)) ** 2)
    return np.sqrt((m + 1) / m * var.mean() / ((mean - truth) ** 2).mean())


def blobs(centres, n=16, width=1.5):
    """(..., n, n) periodic Gaussian blobs centred at (c, c) for every c in ``centres``."""
    x = np.arange(n)
    d = np.abs(x[None, :] - np.asarray(centres)[..., None])
    g = np.exp(-0.5 * (np.minimum(d, n - d) / width) ** 2)
    return g[..., :, None] * g[..., None, :]


def narrow_and_wide(seed=0, n=12, m=8, mc=9, spread=0.5, bias=1.0):
    """Like the lab-frame ensemble: the truth a blob per frame, the forecast members the blob displaced
    by ``bias`` cells (either way) plus N(0, spread) (too narrow for that error), the climatology the
    blob at uniformly random positions."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(0, 16, n)
    truth = blobs(centre)
    forecast = blobs(centre[None] + bias * rng.choice([-1.0, 1.0], n)[None] + rng.normal(0.0, spread, (m, n)))
    reference = blobs(rng.uniform(0, 16, (mc, n)))
    return truth, forecast, reference


@pytest.mark.parametrize("w", [0.0, 0.25, 0.6, 0.93, 1.0])
def test_mixture_spread_skill_matches_the_mixture_moments(w):
    truth, forecast, reference = narrow_and_wide()
    comps = mixture_components(truth, forecast, reference)
    got = mixture_spread_skill(comps, np.array([w]), forecast.shape[0])[0]
    assert got == pytest.approx(brute_ratio(truth, forecast, reference, w), rel=1e-12)
    frames = mixture_frame_scores(comps, w)
    assert got == pytest.approx(np.sqrt(9 / 8 * frames["variance"].mean() / frames["mse_mean"].mean()), rel=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_capped_weight_is_the_brute_force_constrained_optimum(seed):
    truth, forecast, reference = narrow_and_wide(seed)
    comps = mixture_components(truth, forecast, reference)
    m = forecast.shape[0]
    w_free = fit_mixture_weight(comps)
    r_free, r_one = (brute_ratio(truth, forecast, reference, w) for w in (w_free, 1.0))
    assert r_one < 1.0 < r_free  # the case the cap is for: the forecast alone is under-dispersed and
    # the free CRPS weight widens it past calibration
    w_cap = capped_mixture_weight(comps, m, 1.0)
    grid = np.linspace(0.0, 1.0, 501)
    feasible = [w for w in grid if brute_ratio(truth, forecast, reference, w) <= 1.0]
    best = min(feasible, key=lambda w: weighted_mixture_crps(truth, forecast, reference, w).sum())
    assert w_free < w_cap < 1.0
    assert brute_ratio(truth, forecast, reference, w_cap) <= 1.0 + 1e-9
    assert w_cap == pytest.approx(best, abs=2.5e-3)
    # it is where the constraint binds: the ratio is 1 there
    assert brute_ratio(truth, forecast, reference, w_cap) == pytest.approx(1.0, abs=2e-3)


def test_capped_weight_is_the_free_weight_when_the_cap_does_not_bind():
    truth, forecast, reference = narrow_and_wide()
    comps = mixture_components(truth, forecast, reference)
    w_free = fit_mixture_weight(comps)
    loose = brute_ratio(truth, forecast, reference, w_free) + 0.01
    assert capped_mixture_weight(comps, forecast.shape[0], loose) == w_free


def test_an_over_dispersed_forecast_is_never_widened():
    truth, forecast, reference = narrow_and_wide(spread=5.0, bias=0.0)  # far too wide for its error
    comps = mixture_components(truth, forecast, reference)
    m = forecast.shape[0]
    r_one = brute_ratio(truth, forecast, reference, 1.0)
    assert r_one > 1.0
    w_cap = capped_mixture_weight(comps, m, 1.0)
    assert brute_ratio(truth, forecast, reference, w_cap) <= r_one * (1 + 1e-9)


def test_blend_from_components_caps_per_window_and_needs_members():
    truth, forecast, reference = narrow_and_wide(n=12)
    comps = mixture_components(truth, forecast, reference)
    comps["sxy"], comps["sxx"] = np.ones(12), np.ones(12)
    lead = np.repeat([0.5, 3.0], 6)
    free = blend_from_components(lead, comps, (0.0, 2.0))
    capped = blend_from_components(lead, comps, (0.0, 2.0), max_spread_skill=1.0, n_members=8)
    for k, half in enumerate((slice(0, 6), slice(6, 12))):
        frames = {key: v[half] for key, v in comps.items()}
        assert free.weights[k] == fit_mixture_weight(frames)
        assert capped.weights[k] == capped_mixture_weight(frames, 8, 1.0)
    assert capped.mean_weights == free.mean_weights
    with pytest.raises(ValueError, match=">= 2 members"):
        blend_from_components(lead, comps, (0.0, 2.0), max_spread_skill=1.0, n_members=1)
    assert callable(fit_climatology_blend)


def test_energy_weight_is_the_brute_force_optimum_and_unknown_scores_are_refused():
    truth, forecast, reference = narrow_and_wide(3)
    comps = mixture_components(truth, forecast, reference)
    grid = np.linspace(0.0, 1.0, 2001)
    total = [mixture_frame_scores(comps, w)["energy"].sum() for w in grid]
    assert fit_mixture_weight(comps, score="energy") == pytest.approx(grid[int(np.argmin(total))], abs=1e-3)
    with pytest.raises(ValueError, match="'crps' or the 'energy'"):
        fit_mixture_weight(comps, score="brier")

