"""Hyper-parameter search: nested POD truncation, run folds, closed-loop scoring on held-out runs.

The synthetic case has a known answer: latent data from a noisy VAR(2) (six damped oscillators,
y_k = 2ρ cos θ y_{k−1} − ρ² y_{k−2} + noise) embedded in 8×8 "densities" through six orthonormal
modes. The search must prefer lag 2 over lag 1 (which cannot oscillate) and over lags 3, 4 (extra
parameters fitted to noise), and a huge ridge penalty must score worse than a small one.
"""
from __future__ import annotations

import inspect
import json
import logging

import numpy as np
import pandas as pd
import pytest

from rom_pipeline.config import SEARCH_KEYS, ConfigError, SearchConfig, validate_parameters
from rom_pipeline.config_blocks import LSTMConfig
from rom_pipeline.evaluation.protocol import EvaluationConfig, TestRun
from rom_pipeline.evaluation import plots, search
from rom_pipeline.rom.lstm import LSTMForecaster
from rom_pipeline.rom.mvar import MVARForecaster
from rom_pipeline.rom.pod import PODBasis

NY = NX = 8
DT = 0.1


def var2_runs(n_runs: int = 6, K: int = 30, r: int = 6, noise: float = 0.1, seed: int = 0):
    rng = np.random.default_rng(seed)
    theta = np.linspace(0.25, 0.9, r)
    rho = 0.98
    a1, a2 = 2 * rho * np.cos(theta), -rho**2
    runs = []
    for _ in range(n_runs):
        y = np.zeros((K, r))
        y[:2] = rng.normal(size=(2, r))
        for k in range(2, K):
            y[k] = a1 * y[k - 1] + a2 * y[k - 2] + noise * rng.normal(size=r)
        runs.append(y)
    return runs


@pytest.fixture(scope="module")
def synthetic():
    """Densities rho = mu + Phi y (raw transform, no shifts), their POD and latent runs."""
    r = 6
    rng = np.random.default_rng(100)
    modes, _ = np.linalg.qr(rng.normal(size=(NY * NX, r)))
    densities = {
        f"run_{i}": (y @ modes.T + 5.0).reshape(-1, NY, NX) for i, y in enumerate(var2_runs(r=r))
    }
    pod = PODBasis(fixed_modes=r).fit([lambda d=d: d for d in densities.values()])
    latent = {k: pod.restrict(d) for k, d in densities.items()}
    return densities, pod, latent


def loader(densities):
    def load(run_id):
        d = densities[run_id]
        return TestRun(run_id, "synthetic", np.arange(len(d)) * DT, d, None, None, 1.0, 1.0,
                       True, 1.0)
    return load


CONFIG = EvaluationConfig(forecast_start=0.6, order_parameters=False)


# ---------------------------------------------------------------------- POD modes
def test_truncated_basis_restricts_to_the_first_columns_and_lifts_with_them(synthetic):
    densities, pod, latent = synthetic
    frames = densities["run_3"]
    small = search.truncate_basis(pod, 2)
    assert small.n_modes_ == 2 and pod.n_modes_ == 6  # the stored basis is untouched
    np.testing.assert_allclose(small.restrict(frames), latent["run_3"][:, :2], atol=1e-12)
    y = latent["run_3"][:, :2]
    np.testing.assert_allclose(
        small.lift(y).reshape(len(y), -1), y @ pod.modes_[:, :2].T + pod.mean_, atol=1e-12
    )


def test_more_modes_than_stored_are_rejected_with_the_fix(synthetic):
    _, pod, _ = synthetic
    with pytest.raises(ValueError, match=r"r' = 7 POD modes .* only r = 6.*rerun the pod pipeline"):
        search.truncate_basis(pod, 7)
    with pytest.raises(ValueError, match="only r = 6"):
        search.mode_counts(pod, fixed_modes=[3, 7])


def test_energy_to_modes_matches_a_pod_fitted_with_that_energy():
    rng = np.random.default_rng(5)
    # a spectrum spread over many modes so every threshold picks a different r
    frames = (rng.normal(size=(60, 24)) * np.geomspace(1, 0.05, 24)) @ rng.normal(size=(24, 36))
    frames = frames.reshape(60, 6, 6)
    full = PODBasis(fixed_modes=20).fit([lambda: frames])
    for energy in (0.5, 0.8, 0.9, 0.95, 0.99):
        refit = PODBasis(pod_energy=energy).fit([lambda: frames])
        assert search.modes_for_energy(full, energy) == refit.n_modes_


def test_mode_counts_merge_duplicates_and_default_to_the_stored_r(synthetic):
    _, pod, _ = synthetic
    assert search.mode_counts(pod) == {6: "stored r=6"}
    e_full = float(pod.cumulative_energy_[5])
    counts = search.mode_counts(pod, fixed_modes=[6, 2], pod_energy=[e_full])
    assert counts == {6: f"fixed_modes=6,pod_energy={e_full:g}", 2: "fixed_modes=2"}


# ---------------------------------------------------------------------- folds
def test_kfold_holds_every_run_out_exactly_once_and_never_trains_on_it():
    runs = [f"r{i}" for i in range(10)]
    folds = search.run_folds(runs, "kfold", n_folds=3, seed=4)
    assert len(folds) == 3
    held = [r for _, out in folds for r in out]
    assert sorted(held) == sorted(runs)  # each run held out once
    assert sorted(len(out) for _, out in folds) == [3, 3, 4]
    for train, out in folds:
        assert not set(train) & set(out) and sorted(train + out) == sorted(runs)
    assert folds == search.run_folds(runs, "kfold", n_folds=3, seed=4)  # seeded
    assert folds != search.run_folds(runs, "kfold", n_folds=3, seed=5)


def test_holdout_keeps_the_ceiling_of_the_fraction():
    runs = [f"r{i}" for i in range(10)]
    (train, out), = search.run_folds(runs, "holdout", holdout_fraction=0.25, seed=0)
    assert len(out) == 3 and len(train) == 7 and not set(train) & set(out)


@pytest.mark.parametrize("kwargs, message", [
    ({"scheme": "loo"}, "search.validation"),
    ({"scheme": "kfold", "n_folds": 5}, "n_folds = 5 must be between 2 and the 4"),
    ({"scheme": "holdout", "holdout_fraction": 0.9}, "leaves at least one training run"),
])
def test_impossible_splits_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        search.run_folds(["a", "b", "c", "d"], **kwargs)


def test_common_forecast_start_is_raised_to_the_largest_lag():
    assert search.common_forecast_start(0.6, 0.12, [2, 3, 5]) == pytest.approx(0.6)
    assert search.common_forecast_start(0.6, 0.12, [2, 8]) == pytest.approx(8 * 0.12)
    assert search.common_forecast_start(0.0, 0.1, [3]) == pytest.approx(0.3)


# ---------------------------------------------------------------------- the known answer
def _mvar(grid, r=6):
    base = {"lag": 2, "ridge_alpha": 1e-6, "eigenvalue_threshold": None}
    return search.build_candidates("mvar", base, grid, {r: f"fixed_modes={r}"})


def test_search_prefers_the_true_lag_and_a_small_ridge(synthetic):
    densities, pod, latent = synthetic
    candidates = _mvar([{"lag": w, "ridge_alpha": a} for w in (1, 2, 3, 4) for a in (1e-6, 1e6)])
    folds = search.run_folds(list(latent), "kfold", n_folds=3, seed=0)
    result = search.grid_search(latent, pod, loader(densities), candidates, folds, CONFIG)
    table = result.table.set_index("config_id")
    score = {(int(row.lag), row.ridge_alpha): row.score_mean for row in result.table.itertuples()}
    # lag 2 is best; lag 1 cannot represent an oscillator, lags 3 and 4 fit noise
    best = result.table.iloc[0]
    assert (best["lag"], best["ridge_alpha"], best["rank"]) == (2, 1e-6, 1)
    assert score[(2, 1e-6)] > 0.7
    assert score[(1, 1e-6)] < score[(2, 1e-6)] - 0.5
    assert max(score[(3, 1e-6)], score[(4, 1e-6)]) < score[(2, 1e-6)] - 0.005
    # alpha = 1e6 shrinks A_j to ~0: the forecast is the mean, R² ~ 0 whatever the lag
    for w in (1, 2, 3, 4):
        assert score[(w, 1e6)] < 0.1 < score[(2, 1e-6)] - 0.6
    assert (table["n_runs"] == 6).all() and (table["n_diverged"] == 0).all()
    # the teacher-forced one-step skill is high for every small-ridge lag >= 2 and barely
    # separates them: it would not pick the lag the closed loop picks
    one_step = {int(row.lag): row.one_step_latent_r2_mean for row in result.table.itertuples()
                if row.ridge_alpha == 1e-6}
    assert min(one_step[2], one_step[3], one_step[4]) > 0.9
    assert max(one_step[2], one_step[3], one_step[4]) - min(one_step.values()) < 0.5


def test_table_numbers_equal_a_direct_recomputation(synthetic):
    densities, pod, latent = synthetic
    lag, alpha, r = 2, 1e-3, 4
    candidates = _mvar([{"lag": lag, "ridge_alpha": alpha}, {"lag": 3, "ridge_alpha": alpha}], r=r)
    folds = search.run_folds(list(latent), "kfold", n_folds=3, seed=1)
    result = search.grid_search(latent, pod, loader(densities), candidates, folds, CONFIG)
    k0 = int(round(CONFIG.forecast_start / DT))
    density_r2, latent_r2 = {}, {}
    for train, held in folds:
        model = MVARForecaster(lag=lag, ridge_alpha=alpha).fit([latent[i][:, :r] for i in train])
        for run_id in held:
            y = latent[run_id][:, :r]
            y_hat = model.rollout(y[k0 - lag:k0], len(y) - k0)
            rho = densities[run_id][k0:].reshape(len(y) - k0, -1)
            rho_hat = y_hat @ pod.modes_[:, :r].T + pod.mean_  # raw transform, no shifts
            density_r2[run_id] = 1 - np.sum((rho - rho_hat) ** 2) / np.sum((rho - rho.mean()) ** 2)
            yt = y[k0:]
            latent_r2[run_id] = 1 - np.sum((yt - y_hat) ** 2) / np.sum((yt - yt.mean()) ** 2)
    row = result.table.set_index("config_id").loc[candidates[0].config_id]
    values = np.array(list(density_r2.values()))
    assert row["score_mean"] == pytest.approx(values.mean(), rel=1e-10)
    assert row["score_std"] == pytest.approx(values.std(), rel=1e-8)
    assert row["latent_r2_mean"] == pytest.approx(np.mean(list(latent_r2.values())), rel=1e-10)
    per_run = result.run_scores[result.run_scores["config_id"] == candidates[0].config_id]
    assert dict(zip(per_run["run_id"], per_run["r2_pooled"])) == pytest.approx(density_r2)
    assert row["fit_seconds_mean"] > 0 and row["n_modes"] == r


class RecordingMVAR(MVARForecaster):
    """MVAR that remembers the runs it was fitted on."""

    fitted_on: list[list[np.ndarray]] = []

    def fit(self, trajectories):
        RecordingMVAR.fitted_on.append([np.array(t) for t in trajectories])
        return super().fit(trajectories)


def test_held_out_runs_never_reach_the_fit(synthetic):
    densities, pod, latent = synthetic
    RecordingMVAR.fitted_on = []
    candidates = _mvar([{"lag": 2}], r=3)
    folds = search.run_folds(list(latent), "kfold", n_folds=3, seed=2)
    search.grid_search(latent, pod, loader(densities), candidates, folds, CONFIG,
                       forecasters={"mvar": RecordingMVAR})
    assert len(RecordingMVAR.fitted_on) == 3
    for (train, held), seen in zip(folds, RecordingMVAR.fitted_on):
        assert len(seen) == len(train)
        for run in seen:
            assert not any(np.array_equal(run, latent[h][:, :3]) for h in held)
        for run_id, run in zip(train, seen):
            np.testing.assert_array_equal(run, latent[run_id][:, :3])


class DivergingForecaster:
    """A model whose rollout blows up: the search must rank it last, not crash."""

    name = "BLOWUP"

    def __init__(self, lag=2, **_):
        self.lag = lag

    def fit(self, trajectories):
        self.r = trajectories[0].shape[1]
        return self

    def predict_next(self, windows):
        return windows[:, -1] * 1e9

    def rollout(self, seed_window, n_steps):
        return np.full((n_steps, self.r), np.inf)


def test_diverged_candidates_rank_last(synthetic):
    densities, pod, latent = synthetic
    candidates = _mvar([{"lag": 1}, {"lag": 2}], r=6)
    bad = search.Candidate("mvar", 6, {"lag": 2}, {"lag": 99}, "fixed_modes=6")
    folds = search.run_folds(list(latent), "holdout", holdout_fraction=0.5, seed=0)

    def factory(**hyper):
        return DivergingForecaster(**hyper) if hyper == {"lag": 2} else MVARForecaster(**hyper)

    logging.disable(logging.WARNING)
    try:
        result = search.grid_search(latent, pod, loader(densities), [*candidates, bad], folds,
                                    CONFIG, forecasters={"mvar": factory})
    finally:
        logging.disable(logging.NOTSET)
    last = result.table.iloc[-1]
    assert last["config_id"] == bad.config_id and last["n_diverged"] == 3
    assert np.isnan(last["score_mean"])
    assert result.table.iloc[0]["lag"] == 2  # lag 1 scores below lag 2, but above the blow-up


def test_best_configurations_and_figure(synthetic):
    densities, pod, latent = synthetic
    candidates = _mvar([{"lag": w, "ridge_alpha": a} for w in (1, 2) for a in (1e-6, 1.0)])
    candidates += _mvar([{"lag": 2, "ridge_alpha": 1e-6}], r=3)
    folds = search.run_folds(list(latent), "kfold", n_folds=2, seed=0)
    result = search.grid_search(latent, pod, loader(densities), candidates, folds, CONFIG)
    best = search.best_configurations(result.table, candidates, {"validation": "kfold"})
    json.dumps(best)  # JSON-ready
    top = result.table.loc[result.table["score_mean"].idxmax()]
    assert best["mvar"]["config_id"] == top["config_id"]
    assert best["mvar"]["score_mean"] == pytest.approx(top["score_mean"])
    assert best["mvar"]["parameters"] == {"rom": {"fixed_modes": int(top["n_modes"])},
                                          "mvar": json.loads(top["params"])}
    assert best["scored_on"] == {"validation": "kfold"}
    assert result.table["lag"].dtype == "Int64"
    fig = plots.plot_search_scores(result.table)
    titles = sorted(ax.get_title() for ax in fig.axes if ax.get_visible())
    assert titles == ["MVAR: lag", "MVAR: n_modes", "MVAR: ridge_alpha"]
    nulls = ([None, 2] * len(result.table))[:len(result.table)]
    with_null = result.table.assign(coint_rank=pd.array(nulls, dtype="Int64"))  # as summarise
    panels = {ax.get_title(): ax for ax in plots.plot_search_scores(with_null).axes}
    assert [t.get_text() for t in panels["MVAR: coint_rank"].get_xticklabels()] == ["2", "None"]


def test_latent_data_out_of_sync_with_the_runs_is_refused(synthetic):
    densities, pod, latent = synthetic
    stale = {k: v + (1.0 if k == "run_0" else 0.0) for k, v in latent.items()}
    folds = [([k for k in latent if k != "run_0"], ["run_0"])]
    with pytest.raises(ValueError, match="run 'run_0'.*rerun the pod pipeline"):
        search.grid_search(stale, pod, loader(densities), _mvar([{}]), folds, CONFIG)


# ---------------------------------------------------------------------- parameters
def test_search_keys_are_exactly_the_forecaster_arguments():
    lstm = [p for p in inspect.signature(LSTMForecaster).parameters]
    mvar = [p for p in inspect.signature(MVARForecaster).parameters if p != "max_lag"]  # the lag scan's table only
    # the same keys, in the order of the parameters block (read without importing the classes)
    assert sorted(SEARCH_KEYS["lstm"]) == sorted(lstm) and list(SEARCH_KEYS["mvar"]) == mvar
    assert list(SEARCH_KEYS["lstm"]) == [k for k in LSTMConfig.model_fields if k != "enabled"]


def test_base_search_block_builds_the_documented_grid(base_params):
    cfg = validate_parameters(base_params).search
    assert len(cfg.mvar.configurations("search.mvar")) == 9
    assert [c["hidden_units"] for c in cfg.lstm.configurations("search.lstm")] == [16, 32]
    assert cfg.modes.fixed_modes == [10, 19] and cfg.lstm.modes.fixed_modes == []
    # the class imported at the top: config caches the classes per registry, so a test that
    # registered (and removed) a forecaster earlier in this process leaves it unchanged
    assert cfg == SearchConfig(modes={"fixed_modes": [10, 19]})  # base = the documented defaults


@pytest.mark.parametrize("block, message", [
    ({"mvar": {"grid": {"lags": [2]}}}, r"unknown hyper-parameters \['lags'\]"),
    ({"mvar": {"grid": {"lag": ["aic"]}}}, "search lags must be integers"),
    ({"mvar": {"grid": {"ridge_alpha": [-1.0]}}}, "ridge_alpha"),
    ({"lstm": {"grid": {"dropout": [1.5]}}}, "dropout"),
    ({"lstm": {"pairing": "zip", "grid": {"hidden_units": [8, 16], "num_layers": [1, 2, 3]}}},
     "pairing 'zip' needs lists of equal length"),
    ({"mvar": {"grid": {"lag": []}}}, "empty list"),
    ({"mvar": {"grid": {}}}, r"search.mvar.grid is empty: .*search.mvar.enabled: false"),
    ({"pod": {"transform": ["cube"]}}, "pod.transform"),
    ({"pod": {"r": [3]}}, "pod.r"),
    ({"modes": {"pod_energy": [1.5]}}, r"pod_energy entry must be in \(0, 1\]"),
])
def test_invalid_search_blocks_name_the_key(base_params, block, message):
    with pytest.raises(ConfigError, match=message):
        validate_parameters({**base_params, "search": block})
    SearchConfig()  # the defaults are valid


def test_results_table_round_trips_through_csv(synthetic, tmp_path):
    densities, pod, latent = synthetic
    candidates = _mvar([{"lag": 2, "ridge_alpha": 1e-6}])
    folds = search.run_folds(list(latent), "kfold", n_folds=2, seed=0)
    table = search.grid_search(latent, pod, loader(densities), candidates, folds, CONFIG).table
    table.to_csv(tmp_path / "t.csv", index=False)
    back = pd.read_csv(tmp_path / "t.csv")
    assert back.loc[0, "score_mean"] == pytest.approx(table.loc[0, "score_mean"])
    assert back.loc[0, "lag"] == 2


# ---------------------------------------------------------------------- protocol agreement
def _drifting_blobs(n_runs=5, K=40, n=16, seed=3):
    """Positive periodic densities: two Gaussian blobs drifting and breathing, per run."""
    rng = np.random.default_rng(seed)
    grid = np.arange(n)
    runs = {}
    for i in range(n_runs):
        c0, v = rng.uniform(0, n, size=(2, 2)), rng.uniform(-0.6, 0.6, size=(2, 2))
        w0, phase = rng.uniform(1.5, 2.5, size=2), rng.uniform(0, 2 * np.pi)
        frames = []
        for k in range(K):
            rho = np.full((n, n), 0.05)
            for b in range(2):
                cy, cx = c0[b] + v[b] * k
                dy = (grid[:, None] - cy + n / 2) % n - n / 2
                dx = (grid[None, :] - cx + n / 2) % n - n / 2
                width = w0[b] * (1 + 0.2 * np.sin(0.3 * k + phase + b))
                rho = rho + np.exp(-(dy**2 + dx**2) / (2 * width**2))
            frames.append(rho / rho.sum() * 100.0)
        runs[f"blob_{i}"] = np.array(frames)
    return runs


@pytest.mark.parametrize("mode", ["oracle", "hold", "extrapolate"])
def test_scores_equal_the_evaluation_protocol(mode):
    from rom_pipeline.evaluation.protocol import evaluate_forecaster

    densities = _drifting_blobs()
    pod = PODBasis(fixed_modes=8, transform="sqrt", shift_align=True).fit(
        [lambda d=d: d for d in densities.values()])
    latent = {k: pod.restrict(d) for k, d in densities.items()}
    config = EvaluationConfig(forecast_start=0.5, clamp_mode="clamp", mass_postprocess="scale",
                              shift_modes=(mode,), order_parameters=False)
    load = loader(densities)
    train = [k for k in latent if k != "blob_0"]
    small = search.truncate_basis(pod, 5)
    model = MVARForecaster(lag=3, ridge_alpha=1e-3).fit([latent[k][:, :5] for k in train])
    run = search.held_out_block(pod, load("blob_0"), latent["blob_0"], config, max_lag=3)
    ours = search.score_forecast(model, small, run, config)
    theirs = evaluate_forecaster(model, small, load("blob_0"), config).metrics[0]
    assert theirs["shift_mode"] == mode and not theirs["diverged"] and not ours["diverged"]
    for key in ("r2_pooled", "r2_latent", "r2_pod_ceiling"):  # one function: identical numbers
        assert ours[key] == theirs[key], key
    assert ours["n_forecast_frames"] == theirs["n_forecast_frames"] == 35
    assert -1 < ours["r2_pooled"] < 1


def test_a_criterion_lag_needs_a_searched_lag():
    with pytest.raises(ValueError, match=r"mvar lag = 'aic'.*give search.mvar.grid.lag .* "
                                         r"mvar.lag is a criterion"):
        search.build_candidates("mvar", {"lag": "aic", "ridge_alpha": 1e-4}, [{}], {3: "x"})
    (cand,) = search.build_candidates("mvar", {"lag": "aic", "ridge_alpha": 1e-4}, [{"lag": 4}],
                                      {3: "fixed_modes=3"})
    assert cand.hyperparameters == {"lag": 4, "ridge_alpha": 1e-4}
    assert cand.config_id == "mvar[r=3,lag=4]"


# ---------------------------------------------------------------------- widened grid
def test_pod_settings_are_the_product_and_refuse_unknown_keys():
    assert search.pod_settings({}) == [{}]
    assert search.pod_settings({"shift_method": ["integer", "subpixel"], "transform": ["log"]}) == [
        {"transform": "log", "shift_method": "integer"},
        {"transform": "log", "shift_method": "subpixel"}]
    with pytest.raises(ValueError, match=r"search.pod has unknown keys \['subsample'\]"):
        search.pod_settings({"subsample": [2]})
    with pytest.raises(ValueError, match="search.pod.transform is an empty list"):
        search.pod_settings({"transform": []})


def test_an_empty_grid_is_refused_before_any_fit():
    with pytest.raises(ValueError, match="search.mvar: the grid has no configuration"):
        search.build_candidates("mvar", {"lag": 2}, [], {3: "fixed_modes=3"})


def test_a_lag_longer_than_the_test_seed_is_refused_with_the_fix():
    cands = search.build_candidates("mvar", {"lag": 2}, [{"lag": 3}, {"lag": 9}], {4: "x"})
    search.check_protocol_fit(cands, 9, "eval.forecast_start = 0.6 s")  # 9 frames fit
    with pytest.raises(ValueError, match=r"search.mvar.grid.lag \(or mvar.lag\) = 9: longer than "
                                         r"the test protocol's seed window of 6 frames .*lags <= 6"):
        search.check_protocol_fit(cands, 6, "eval.forecast_start = 0.6 s")
    search.check_protocol_fit(cands, None, "eval.forecast_start null")  # seed = sim.T


def test_transform_and_shift_settings_refit_pod_on_the_fitting_runs_only():
    """Each POD setting is scored on a POD fitted, per fold, on that fold's fitting runs alone:
    the numbers equal an independent recomputation (PODBasis fitted by hand, the evaluation's
    own evaluate_forecaster), and the baselines are scored at the same r' and POD."""
    from rom_pipeline.evaluation.protocol import evaluate_forecaster
    from rom_pipeline.rom.baselines import ClimatologyForecaster, PersistenceForecaster

    densities = _drifting_blobs(n_runs=4, K=30)
    stored = PODBasis(fixed_modes=8, transform="sqrt", shift_align=True,
                      shift_method="subpixel").fit([lambda d=d: d for d in densities.values()])
    latent = {k: stored.restrict(d, shifts=stored.estimate_shifts(d)) for k, d in densities.items()}
    config = EvaluationConfig(forecast_start=0.5, clamp_mode="clamp", mass_postprocess="scale",
                              shift_modes=("oracle",), order_parameters=False)
    settings = search.pod_settings({"transform": ["raw", "log"], "shift_method": ["integer"]})
    models = search.build_candidates("mvar", {"lag": 2, "ridge_alpha": 1e-3}, [{}, {"lag": 3}],
                                     {5: "fixed_modes=5", 3: "fixed_modes=3"}, settings)
    candidates = models + search.baseline_candidates(models)
    assert len(candidates) == 8 + 2 * 4  # baselines at each (r', POD) only
    folds = search.run_folds(list(densities), "kfold", n_folds=2, seed=0)
    result = search.grid_search(latent, stored, loader(densities), candidates, folds, config)

    def by_hand(model_factory, setting, r):
        scores = {}
        for train, held in folds:
            pod = PODBasis(fixed_modes=5, transform=setting["transform"], shift_align=True,
                           shift_method="integer").fit([lambda k=k: densities[k] for k in train])
            ys = [pod.restrict(densities[k], shifts=pod.estimate_shifts(densities[k]))[:, :r]
                  for k in train]
            model = model_factory().fit(ys)
            for k in held:
                metrics = evaluate_forecaster(model, search.truncate_basis(pod, r),
                                              loader(densities)(k), config).metrics[0]
                scores[k] = metrics["r2_pooled"]
        return scores

    table = result.table.set_index("config_id")
    runs = result.run_scores
    for cand in [models[1], models[6]]:  # (raw, r' = 3, lag 2) and (log, r' = 5, lag 3)
        expected = by_hand(lambda c=cand: MVARForecaster(**c.hyperparameters), cand.pod,
                           cand.n_modes)
        mine = runs[runs["config_id"] == cand.config_id]
        assert dict(zip(mine["run_id"], mine["r2_pooled"])) == pytest.approx(expected, rel=1e-9)
        assert table.loc[cand.config_id, "transform"] == cand.pod["transform"]
    log5 = {"transform": "log", "shift_method": "integer"}
    for name, factory in (("climatology", ClimatologyForecaster), ("persistence",
                                                                    PersistenceForecaster)):
        cid = search.Candidate(name, 5, {}, {}, "", log5).config_id
        expected = by_hand(lambda f=factory: f() if f is ClimatologyForecaster else
                           type("P", (f,), {"fit": lambda self, y: self})(), log5, 5)
        assert table.loc[cid, "score_mean"] == pytest.approx(np.mean(list(expected.values())),
                                                            rel=1e-9)
    # the raw and log bases differ, so their scores do too
    raw, log = (table.loc[search.Candidate("mvar", 5, models[0].hyperparameters, {}, "", p)
                          .config_id, "score_mean"] for p in settings)
    assert abs(raw - log) > 1e-6
    # budget: 2 POD fits per fold, one forecaster fit per candidate and fold
    assert result.budget["n_pod_fits"] == 4 and result.budget["n_fits"] == 2 * len(candidates)
    assert result.budget["pod_seconds"] > 0
    assert (result.table["n_fits"] == 2).all() and (result.table["pod_seconds"] > 0).all()
    assert (result.table["wall_seconds"] >= result.table["fit_seconds_total"]).all()
    assert result.budget["wall_seconds"] >= result.budget["pod_seconds"] + result.budget["fit_seconds"]
    best = search.best_configurations(result.table, candidates, {})
    assert set(best) == {"scored_on", "mvar"}  # baselines are never selected
    chosen = best["mvar"]
    for name in ("climatology", "persistence"):
        cid = search.Candidate(name, chosen["n_modes"], {}, {}, "", chosen["pod"]).config_id
        assert chosen["baselines"][name]["score_mean"] == pytest.approx(
            table.loc[cid, "score_mean"])
    assert chosen["parameters"]["rom"]["density_transform"] == chosen["pod"]["transform"]
    fig = plots.plot_search_scores(result.table)  # baselines are levels, not rows of panels
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert sorted(ax.get_title() for ax in visible) == ["MVAR: lag", "MVAR: n_modes",
                                                          "MVAR: transform"]
    level = table[table.index.str.startswith("persistence")]["score_mean"].max()
    assert any(line.get_label() == "persistence (best r')" and line.get_ydata()[0] == level
               for line in visible[0].get_lines())


class _RefusingRuns:
    """A training-run collection whose density must not be read (no work before the checks)."""

    def density(self, run_id):
        raise AssertionError(f"the search read run {run_id} before checking its input")

    def __getitem__(self, run_id):
        raise AssertionError("the search read a run before checking its input")


@pytest.mark.parametrize("override, n_runs, message", [
    ({"search": {"mvar": {"grid": {"lag": [2, 9]}}, "lstm": {"enabled": False},
                 "modes": {"fixed_modes": [3]}}}, 6,
     r"search.mvar.grid.lag \(or mvar.lag\) = 9: longer than the test protocol's seed window "
     r"of 6 frames \(eval.forecast_start = 0.6 s at dt = 0.1 s\)"),
    ({"search": {"lstm": {"enabled": False}, "modes": {"fixed_modes": [3]}}}, 1,
     "the search needs at least 2 training runs to hold one out, got 1"),
    ({"search": {"pod": {"transform": ["log"]}, "lstm": {"enabled": False},
                 "modes": {"pod_energy": [0.9]}}}, 6,
     "give search.modes.fixed_modes instead of pod_energy"),
])
def test_the_node_refuses_bad_input_before_reading_a_run(synthetic, base_params, override,
                                                         n_runs, message):
    from rom_pipeline.pipelines.hyperparameter_search.nodes import search_hyperparameters
    from rom_pipeline.pipelines.models import derived_quantities
    from rom_pipeline.registry import FORECASTERS
    from rom_pipeline.rom.latent import pack_trajectories

    _, pod, latent = synthetic
    kept = dict(list(latent.items())[:n_runs])
    train_latent = {**pack_trajectories(kept, {k: np.zeros((len(v), 2)) for k, v in kept.items()}),
                    "dt_rom": np.array(DT)}
    params = {**base_params, **override,
              "eval": {**base_params["eval"], "forecast_start": 0.6}}
    rom_grid, forecast_setup = derived_quantities(params)
    blocks = {name: params.get(name, {}) for name in FORECASTERS}
    with pytest.raises(ValueError, match=message):
        search_hyperparameters(train_latent, pod.to_arrays(), _RefusingRuns(), rom_grid,
                               forecast_setup, params["search"], **blocks)


def test_refitted_pods_take_fixed_mode_counts_beyond_the_stored_r(synthetic):
    _, pod, _ = synthetic  # stored r = 6
    assert search.mode_counts(pod, [4, 9, 4], refit=True) == {4: "fixed_modes=4",
                                                               9: "fixed_modes=9"}
    assert search.mode_counts(pod, refit=True) == {6: "fixed_modes=6"}
    with pytest.raises(ValueError, match="r' = 9 POD modes requested but the stored pod_basis"):
        search.mode_counts(pod, [9])
