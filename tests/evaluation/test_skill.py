"""Skill against baselines and lead-window R² (issue 14): brute force on small arrays, and the
baselines scored by the same forecast block as any model."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rom_pipeline.config import ConfigError, validate_parameters
from rom_pipeline.evaluation.metrics import mse, skill_score
from rom_pipeline.evaluation.protocol import (
    EvaluationConfig,
    TestRun,
    evaluate_many,
    lead_window_names,
    lead_window_r2,
)
from rom_pipeline.evaluation.report import add_skill_scores, summary_dict
from rom_pipeline.evaluation import search
from rom_pipeline.rom.baselines import ClimatologyForecaster, PersistenceForecaster
from rom_pipeline.rom.pod import PODBasis


def _brute_r2(t, p):
    t, p = np.ravel(t), np.ravel(p)
    return 1 - sum((a - b) ** 2 for a, b in zip(t, p)) / sum((a - t.mean()) ** 2 for a in t)


def test_mse_and_skill_score_equal_brute_force():
    rng = np.random.default_rng(0)
    truth, a, b = rng.normal(size=(3, 4, 3, 2))
    m_a = sum(float(x) ** 2 for x in np.ravel(truth - a)) / truth.size
    m_b = sum(float(x) ** 2 for x in np.ravel(truth - b)) / truth.size
    assert mse(truth, a) == pytest.approx(m_a, rel=1e-12)
    assert skill_score(mse(truth, a), mse(truth, b)) == pytest.approx(1 - m_a / m_b, rel=1e-12)
    assert skill_score(m_b, m_b) == 0.0
    assert np.isnan(skill_score(1.0, 0.0))
    np.testing.assert_allclose(skill_score(np.array([1.0, 3.0]), np.array([2.0, 2.0])), [0.5, -0.5])


def test_lead_window_r2_equals_brute_force_per_window():
    rng = np.random.default_rng(1)
    lead = 0.5 * np.arange(12)  # 0 .. 5.5 s
    truth = rng.normal(size=(12, 3, 3))
    pred = truth + rng.normal(scale=0.7, size=truth.shape)
    edges = (0.0, 1.0, 2.5)
    got = lead_window_r2(truth, pred, lead, edges)
    assert list(got) == lead_window_names(edges) == ["r2_lead_0_1", "r2_lead_1_2.5", "r2_lead_2.5_end"]
    for name, frames in zip(got, [[0, 1], [2, 3, 4], list(range(5, 12))]):
        assert got[name] == pytest.approx(_brute_r2(truth[frames], pred[frames]), rel=1e-12)
    # a window past the last frame is NaN (config validation keeps it from happening in runs)
    assert np.isnan(lead_window_r2(truth, pred, lead, (0.0, 9.0))["r2_lead_9_end"])


def test_add_skill_scores_matches_the_formula_row_by_row():
    rows = []
    for run, base in (("a", 1.0), ("b", 4.0)):
        for mode, f in (("oracle", 1.0), ("hold", 2.0)):
            rows += [
                {"model": "MVAR", "run_id": run, "shift_mode": mode, "mse": 0.5 * base * f},
                {"model": "climatology", "run_id": run, "shift_mode": mode, "mse": base * f},
                {"model": "persistence", "run_id": run, "shift_mode": mode, "mse": 2 * base},
            ]
    out = add_skill_scores(pd.DataFrame(rows))
    for _, row in out.iterrows():
        base = 1.0 if row["run_id"] == "a" else 4.0
        f = 1.0 if row["shift_mode"] == "oracle" else 2.0
        assert row["skill_vs_climatology"] == pytest.approx(1 - row["mse"] / (base * f), rel=1e-15)
        assert row["skill_vs_persistence"] == pytest.approx(1 - row["mse"] / (2 * base), rel=1e-15)
    with pytest.raises(ValueError, match="no rows of the baseline 'persistence'"):
        add_skill_scores(pd.DataFrame(rows[:2]))


def _drifting_blob_runs(n_runs=4, T=30, n=16, dt=0.1):
    rng = np.random.default_rng(5)
    g = np.arange(n)
    runs = []
    for i in range(n_runs):
        c, v = rng.uniform(0, n, 2), rng.uniform(-0.8, 0.8, 2)
        frames = []
        for k in range(T):
            dy = (g[:, None] - c[0] - v[0] * k + n / 2) % n - n / 2
            dx = (g[None, :] - c[1] - v[1] * k + n / 2) % n - n / 2
            w = 2.0 + 0.4 * np.sin(0.4 * k + i)
            frames.append(np.exp(-(dx**2 + dy**2) / (2 * w**2)) + 0.02)
        runs.append(TestRun(run_id=f"r{i}", family="gaussian", times=dt * np.arange(T),
                            density=np.array(frames), positions=None, velocities=None,
                            Lx=float(n), Ly=float(n), periodic=True, cell_area=1.0))
    return runs


class _Renamed:
    """A model that forecasts exactly what another forecaster does, under its own name."""

    def __init__(self, inner, name, lag):
        self.inner, self.name, self.lag = inner, name, lag

    def predict_next(self, windows):
        return self.inner.predict_next(windows[:, -1:])

    def rollout(self, seed, n_steps):
        return self.inner.rollout(seed[-1:], n_steps)


def test_baselines_are_scored_exactly_like_a_model():
    runs = _drifting_blob_runs()
    train, test = runs[:3], runs[3:]
    pod = PODBasis(fixed_modes=5, transform="sqrt", shift_align=True).fit(
        [lambda r=r: r.density for r in train])
    climatology = ClimatologyForecaster().fit([pod.restrict(r.density) for r in train])
    stacked = np.concatenate([pod.restrict(r.density) for r in train])
    np.testing.assert_allclose(climatology.mean_, stacked.mean(axis=0), rtol=0, atol=1e-12)
    config = EvaluationConfig(forecast_start=0.5, clamp_mode="clamp", mass_postprocess="scale",
                              shift_modes=("oracle", "hold", "extrapolate"), lead_windows=(0, 1))
    tables = [evaluate_many(f, pod, test, config)[0] for f in (
        climatology, PersistenceForecaster(),
        _Renamed(climatology, "is_climatology", lag=3), _Renamed(PersistenceForecaster(), "holds", lag=2),
    )]
    results = add_skill_scores(pd.concat(tables, ignore_index=True))
    assert len(results) == 4 * 3
    # a model that IS a baseline scores exactly 0 against it, in every shift mode
    assert (results.loc[results["model"].isin(["climatology", "is_climatology"]),
                        "skill_vs_climatology"] == 0.0).all()
    assert (results.loc[results["model"].isin(["persistence", "holds"]),
                        "skill_vs_persistence"] == 0.0).all()
    # climatology has no latent skill: its R² is that of the training mean, close to 0 or below
    assert (results.loc[results["model"] == "climatology", "r2_latent"] < 0.05).all()
    # skill from the reported MSEs equals the formula on the densities themselves
    (_, _, per_run_c) = evaluate_many(climatology, pod, test, config)
    (_, _, per_run_p) = evaluate_many(PersistenceForecaster(), pod, test, config)
    res_c, res_p = per_run_c["r3"], per_run_p["r3"]
    truth = res_c.truth_forecast.astype(np.float64)
    expected = 1 - np.mean((truth - res_p.prediction) ** 2) / np.mean((truth - res_c.prediction) ** 2)
    got = results.query("model == 'persistence' and shift_mode == 'oracle'")["skill_vs_climatology"]
    assert float(got.iloc[0]) == pytest.approx(expected, rel=1e-5)  # predictions stored as float32
    summary = summary_dict(results, None)["models"]["persistence"]
    assert summary["skill_vs_persistence_mean"] == {"oracle": 0.0, "hold": 0.0, "extrapolate": 0.0}
    assert set(summary["r2_lead_mean"]["hold"]) == {"0_1", "1_end"}


def test_search_start_rule_agrees_with_the_evaluation():
    # eval.forecast_start set: the same start as on the test runs (raised to the largest lag)
    assert search.search_forecast_start(None, 0.6, 0.12, [2, 5])[0] == pytest.approx(0.6)
    assert search.search_forecast_start(None, 0.24, 0.12, [2, 5])[0] == pytest.approx(0.6)
    # search.forecast_start wins; null eval start: the seed is the largest lag
    assert search.search_forecast_start(1.2, 0.6, 0.12, [2, 5])[0] == pytest.approx(1.2)
    start, rule = search.search_forecast_start(None, None, 0.12, [2, 5])
    assert start == pytest.approx(0.6) and "largest lag" in rule


@pytest.mark.parametrize(
    "windows,message",
    [([0, 5, 2], "strictly increasing"), ([-1, 2], "strictly increasing"),
     ([0, 2, 60], "covers only 30 s")],
)
def test_bad_lead_windows_are_refused_with_the_key(windows, message):
    # base defaults: test_sim.T = 50, eval.forecast_start null -> sim.T = 20: a 30 s horizon
    with pytest.raises(ConfigError, match=rf"eval.lead_windows.*{message}"):
        validate_parameters({"eval": {"lead_windows": windows}})
    with pytest.raises(ValueError, match="eval.lead_windows"):
        EvaluationConfig(forecast_start=1.0, lead_windows=(2.0, 1.0))


def test_default_lead_windows_are_the_standard_ones_inside_the_horizon():
    assert validate_parameters({}).lead_windows == (0.0, 2.0, 5.0, 10.0, 20.0)
    short = validate_parameters({"test_sim": {"T": 26.0}})  # horizon 6 s
    assert short.lead_windows == (0.0, 2.0, 5.0)
    assert validate_parameters({"eval": {"lead_windows": [0, 1]}}).lead_windows == (0.0, 1.0)
