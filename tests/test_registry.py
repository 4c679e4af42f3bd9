"""The forecaster registry, the parameter contract and the model template.

- every forecaster's config defaults equal its constructor's, and the base YAML repeats none;
- no node of any registered pipeline takes the whole ``parameters`` tree;
- the old places of the forecaster blocks and the shared lag give an error naming the new one;
- MVAR lag selection inside ``fit`` agrees with statsmodels' ``VAR.select_order``;
- a tiny forecaster added to the registry alone gets a pipeline, catalog entries, a parameters
  block and a row in the evaluation.
"""
from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from rom_pipeline import registry
from rom_pipeline.config import ConfigError, ExperimentConfig, validate_parameters
from rom_pipeline.registry import FORECASTERS, Forecaster, forecaster_config
from rom_pipeline.rom.mvar import MVARForecaster, best_lag, select_lag

PROJECT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------- defaults in one place
@pytest.mark.parametrize("name", list(FORECASTERS))
def test_config_defaults_are_the_constructor_defaults(name):
    entry = FORECASTERS[name]
    signature = inspect.signature(entry.estimator).parameters
    config = {k: f.default for k, f in entry.config.model_fields.items() if k != "enabled"}
    assert config == {k: p.default for k, p in signature.items()}
    # The base parameters block repeats none of them (it only departs from them), so the
    # defaults cannot drift apart again.
    base = yaml.safe_load((PROJECT / f"conf/base/parameters_{name}.yml").read_text())
    block = dict(base[name])
    assert block.pop("enabled") is True
    assert set(block) <= set(signature)
    assert all(value != signature[key].default for key, value in block.items()), block


@pytest.mark.parametrize("name", list(FORECASTERS))
def test_each_entry_labels_its_model_as_its_class_does(name):
    entry = FORECASTERS[name]
    assert entry.label == entry.estimator.name and entry.folder == entry.estimator.name.upper()


def test_reading_the_registry_and_checking_parameters_imports_no_model_library(base_params):
    """A `kedro run` of a stage that builds no model (the catalog, the pipelines, the parameter
    checks) must not pay for PyTorch or opinf: both load only when a model is built or loaded."""
    code = ("import sys, yaml, pathlib\n"
            "from rom_pipeline.pipeline_registry import register_pipelines\n"
            "from rom_pipeline.config import validate_parameters, SEARCH_KEYS\n"
            "from rom_pipeline.registry import FORECASTERS\n"
            "register_pipelines(); SEARCH_KEYS\n"
            f"validate_parameters({base_params!r})\n"
            "print([FORECASTERS[n].label for n in FORECASTERS])\n"
            "print(sorted(m for m in ('torch', 'opinf') if m in sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT,
                          env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    labels, loaded = proc.stdout.strip().splitlines()[-2:]
    assert labels == "['MVAR', 'LSTM', 'OPINF']" and loaded == "[]", proc.stdout


def test_each_forecaster_block_is_a_top_level_block_of_the_tree(base_params):
    cfg = validate_parameters(base_params)
    assert set(FORECASTERS) <= set(ExperimentConfig.model_fields)
    assert cfg.enabled_models() == list(FORECASTERS)
    assert cfg.mvar.lag == 5 and cfg.mvar.max_lag == 12
    assert (cfg.lstm.linear_skip, cfg.lstm.noise_std, cfg.lstm.learning_rate) == (True, 0.1, 3.0e-4)
    assert cfg.shared_lag() == 5  # latent_dataset.lag null: the MVAR lag


def test_forecaster_config_from_a_signature_refuses_unknown_keys_and_booleans():
    class Tiny:
        name = "TINY"

        def __init__(self, lag: int = 2, damping: float = 0.5):
            self.lag, self.damping = lag, damping

    model = forecaster_config(Tiny)
    assert model().model_dump() == {"enabled": True, "lag": 2, "damping": 0.5}
    with pytest.raises(ValueError, match="extra"):
        model.model_validate({"dampin": 0.1})
    with pytest.raises(ValueError, match="boolean"):
        model.model_validate({"damping": True})


# ---------------------------------------------------------------------- old places, clear errors
@pytest.mark.parametrize("dotted,value,expected", [
    ("rom.models.mvar.lag", 3, ("rom.models.mvar", "`mvar:`", "parameters_mvar.yml", "mvar.lag")),
    ("rom.models.lstm.enabled", False, ("rom.models.lstm", "--params lstm.enabled=false")),
    ("rom.lag", 2, ("rom.lag = 2", "latent_dataset.lag", "parameters_latent_dataset.yml")),
])
def test_old_locations_say_where_the_key_moved(base_params, dotted, value, expected):
    from tests.conftest import with_overrides

    with pytest.raises(ConfigError) as info:
        validate_parameters(with_overrides(base_params, **{dotted: value}))
    for text in expected:
        assert text in str(info.value)


# ---------------------------------------------------------------------- params:<block> only
def _registered_pipelines(monkeypatch, params=None):
    from rom_pipeline.framework import session_state
    from rom_pipeline.pipeline_registry import register_pipelines

    monkeypatch.setitem(session_state._ACTIVE, "params", params or {})

    monkeypatch.delitem(session_state._ACTIVE, "config", raising=False)  # validated from "params"
    return register_pipelines()


def test_no_node_takes_the_whole_parameter_tree(monkeypatch, base_params):
    pipelines = _registered_pipelines(monkeypatch, base_params)
    blocks = set(ExperimentConfig.model_fields)
    assert {"simulation", "pod", "latent_dataset", *FORECASTERS, "evaluation",
            "hyperparameter_search", "__default__"} <= set(pipelines)
    for name, pipeline in pipelines.items():
        for node in pipeline.nodes:
            assert "parameters" not in node.inputs, (name, node.name)
            for dataset in node.inputs:
                if dataset.startswith("params:"):
                    assert dataset.removeprefix("params:") in blocks, (node.name, dataset)
    # each model's nodes read only their own block (and the shared derived quantities)
    default = pipelines["__default__"]
    for model in FORECASTERS:
        train = next(n for n in default.nodes if n.name == f"{model}.train_forecaster")
        assert train.inputs == ["latent_dataset", f"params:{model}"]
        evaluate = next(n for n in default.nodes if n.name == f"{model}.evaluate_on_test_runs")
        assert not [i for i in evaluate.inputs if i.startswith("params:")]
    # the derived quantities are computed by one node each
    producers = [n.name for n in default.nodes if {"rom_grid", "forecast_setup"} & set(n.outputs)]
    assert sorted(producers) == ["describe_forecast", "describe_rom_grid"]


def test_a_disabled_model_pipeline_reads_only_its_block(monkeypatch, base_params):
    params = {**base_params, "lstm": {**base_params["lstm"], "enabled": False}}
    pipelines = _registered_pipelines(monkeypatch, params)
    (node,) = pipelines["lstm"].nodes
    assert node.inputs == ["params:lstm"]
    assert not any(n.name.startswith("lstm.") for n in pipelines["__default__"].nodes)


# ---------------------------------------------------------------------- MVAR lag selection in fit
def test_mvar_criterion_lag_is_chosen_in_fit_as_statsmodels_does():
    from statsmodels.tsa.api import VAR

    rng = np.random.default_rng(3)
    a1 = np.array([[0.5, 0.1], [-0.2, 0.3]])
    a2 = np.array([[-0.3, 0.0], [0.1, -0.25]])
    y = np.zeros((600, 2))
    for k in range(2, len(y)):
        y[k] = a1 @ y[k - 1] + a2 @ y[k - 2] + 0.1 * rng.standard_normal(2)
    expected = VAR(y).select_order(6).selected_orders
    for criterion in ("aic", "bic", "hqic", "fpe"):
        model = MVARForecaster(lag=criterion, max_lag=6).fit([y])
        assert model.lag == expected[criterion] == 2, criterion
        assert model.lag_rule_ == criterion
        assert model.lag == best_lag(model.lag_scan_, criterion)
        fixed = MVARForecaster(lag=model.lag).fit([y])
        np.testing.assert_array_equal(model.coef_, fixed.coef_)
    pd.testing.assert_frame_equal(MVARForecaster(lag=2, max_lag=6).fit([y]).lag_scan_, select_lag([y], 6))
    assert MVARForecaster(lag=2).fit([y]).lag_scan_.empty  # no max_lag: no scan


# ---------------------------------------------------------------------- a forecaster added alone
class DampedPersistence:
    """A tiny test forecaster, lag 1: y_k = m + a (y_{k-1} - m), with m the training mean and
    a the least-squares scalar over every mode and run."""

    name = "DAMPED"
    lag = 1

    def __init__(self, shrink: float = 1.0):
        self.shrink = shrink

    def fit(self, trajectories):
        y = [np.asarray(t, dtype=np.float64) for t in trajectories]
        self.mean_ = np.concatenate(y).mean(axis=0)
        prev = np.concatenate([t[:-1] - self.mean_ for t in y]).ravel()
        nxt = np.concatenate([t[1:] - self.mean_ for t in y]).ravel()
        self.a_ = self.shrink * float(prev @ nxt / (prev @ prev))
        return self

    def predict_next(self, windows):
        return self.mean_ + self.a_ * (np.asarray(windows)[:, -1] - self.mean_)

    def rollout(self, seed_window, n_steps):
        out, state = [], np.asarray(seed_window)[-1]
        for _ in range(n_steps):
            state = self.mean_ + self.a_ * (state - self.mean_)
            out.append(state)
        return np.array(out).reshape(n_steps, -1)

    def to_arrays(self):
        return {"mean": self.mean_, "a": np.array(self.a_), "shrink": np.array(self.shrink)}

    @classmethod
    def from_arrays(cls, arrays):
        model = cls(float(arrays["shrink"]))
        model.mean_, model.a_ = np.asarray(arrays["mean"]), float(arrays["a"])
        return model


def _add_damped(monkeypatch) -> Forecaster:
    entry = Forecaster("damped", DampedPersistence, forecaster_config(DampedPersistence))
    monkeypatch.setitem(registry.FORECASTERS, "damped", entry)
    return entry


def test_a_registered_forecaster_gets_a_block_a_pipeline_and_catalog_entries(monkeypatch, base_params):
    from rom_pipeline.settings import expand_forecaster_entries

    _add_damped(monkeypatch)
    cfg = validate_parameters({**base_params, "damped": {"shrink": 0.5}})
    assert cfg.damped.shrink == 0.5 and "damped" in cfg.enabled_models()
    with pytest.raises(ConfigError, match="damped.shrnk"):
        validate_parameters({**base_params, "damped": {"shrnk": 0.5}})
    pipelines = _registered_pipelines(monkeypatch, {**base_params, "damped": {"shrink": 0.5}})
    names = {n.name for n in pipelines["damped"].nodes}
    assert {"damped.train_forecaster", "damped.evaluate_on_test_runs"} <= names
    evaluation = {n.name: n for n in pipelines["__default__"].nodes}["evaluation.collect_test_results"]
    assert "damped.test_results" in evaluation.inputs
    catalog = yaml.safe_load((PROJECT / "conf/base/catalog_models.yml").read_text())
    expanded = expand_forecaster_entries(catalog)
    assert expanded["damped.model"]["type"] == "rom_pipeline.datasets.NpzDataset"
    assert expanded["damped.model"]["filepath"].endswith("/DAMPED/damped_model.npz")
    assert expanded["damped.test_results"]["filepath"].endswith("/DAMPED/test_results.csv")
    assert expanded["damped.training_log"]["filepath"].endswith("/DAMPED/training_log.csv")
    assert expanded["damped.{plot}_plot"]["filepath"].endswith("/DAMPED/{plot}.png")
    assert expanded["mvar.model"]["type"] == "rom_pipeline.datasets.NpzDataset"
    assert expanded["lstm.model"]["type"] == "rom_pipeline.datasets.TorchPayloadDataset"
    assert expanded["lstm.model"]["filepath"].endswith("/LSTM/lstm_state_dict.pt")
    assert expanded["mvar.lag_scan"]["filepath"].endswith("/MVAR/lag_scan.csv")


@pytest.mark.slow
def test_a_registered_forecaster_is_trained_and_scored_beside_the_others(monkeypatch, tmp_path):
    """The test environment run in-process with the tiny forecaster registered (the LSTM and
    OpInf off, for time): it has its folder, its fit is the closed-form least-squares one, and it is
    scored in the comparison and summary like every model."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    # framework.lineage tabulates the registry when first imported: imported here, before the
    # damped forecaster is added, it keeps no table entry for it after this test, whichever tests
    # this process runs next (else the next in-process run fails: "no lineage ... 'damped.model'")
    import rom_pipeline.framework.lineage  # noqa: F401

    _add_damped(monkeypatch)
    monkeypatch.setenv("ROM_DATA_ROOT", str(tmp_path))
    bootstrap_project(PROJECT)
    params = {"lstm": {"enabled": False}, "opinf": {"enabled": False}, "damped": {"shrink": 0.5}}
    with KedroSession.create(project_path=PROJECT, env="test", runtime_params=params) as session:
        session.run()
    out = tmp_path / "test"
    results = pd.read_csv(out / "DAMPED/test_results.csv")
    assert set(results["model"]) == {"DAMPED"}
    assert len(results) == 2 * 4  # 2 test runs x 4 shift modes
    assert np.isfinite(results["r2_pooled"]).all() and (results["r2_pooled"] <= 1).all()
    # the stored fit is the least-squares scalar (an independent recomputation)
    stored = dict(np.load(_latest(out / "DAMPED", "damped_model")))
    latent = dict(np.load(_latest(out / "rom_common", "latent_dataset")))
    from rom_pipeline.rom.latent import unpack_trajectories

    runs = list(unpack_trajectories(latent).values())
    mean = np.concatenate(runs).mean(axis=0)
    prev = np.concatenate([t[:-1] - mean for t in runs]).ravel()
    nxt = np.concatenate([t[1:] - mean for t in runs]).ravel()
    assert float(stored["a"]) == pytest.approx(0.5 * np.linalg.lstsq(prev[:, None], nxt, rcond=None)[0][0],
                                               rel=1e-12)
    every = pd.read_csv(out / "report/all_test_results.csv")
    assert {"MVAR", "DAMPED", "climatology", "persistence"} == set(every["model"])
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) >= {"MVAR", "DAMPED"}
    assert summary["models"]["DAMPED"]["training"]["hyperparameters"] == {"shrink": 0.5}


def _latest(folder: Path, stem: str) -> Path:
    """The newest stored version of a versioned ``stem.npz`` under ``folder``."""
    candidates = sorted(folder.rglob(f"{stem}.npz"), key=os.path.getmtime)
    files = [c for c in candidates if c.is_file()]
    return files[-1]
