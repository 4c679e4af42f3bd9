"""MLflow tracking (optional extra): a tiny run logs parameters, headline metrics and figures to
a temporary store, and ``python -m rom_pipeline.cli.tracking table`` lists it with the mean R² of
``summary.json``."""
from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import PROJECT

mlflow = pytest.importorskip("mlflow", reason="the optional 'mlflow' extra is not installed")
pytest.importorskip("kedro_mlflow", reason="the optional 'mlflow' extra (kedro-mlflow) is not installed")

from rom_pipeline.cli import tracking as tracking_cli  # noqa: E402
from rom_pipeline.framework import tracking  # noqa: E402


def test_summary_metrics_flatten_models_modes_and_pod():
    summary = {
        "models": {"MVAR": {"r2_pooled_mean": {"oracle": 0.8, "hold": None},
                            "skill_vs_climatology_mean": {"oracle": 0.25, "hold": -0.5},
                            "r2_lead_mean": {"oracle": {"0_2": 0.9, "2_end": None}},
                            "n_diverged": {"oracle": 0, "hold": 1}, "n_runs": 2,
                            "training": {"fit_seconds": 0.5, "lag": 3, "model": "MVAR",
                                         "train_r2": float("nan")}}},
        "pod": {"n_modes": 6, "energy_captured": 0.97, "transform": "sqrt"},
    }
    assert tracking.summary_metrics(summary) == {
        "MVAR.r2_pooled_mean.oracle": 0.8, "MVAR.n_diverged.oracle": 0.0,
        "MVAR.skill_vs_climatology_mean.oracle": 0.25, "MVAR.skill_vs_climatology_mean.hold": -0.5,
        "MVAR.r2_lead_mean.oracle.0_2": 0.9,
        "MVAR.n_diverged.hold": 1.0, "MVAR.n_runs": 2.0, "MVAR.training.lag": 3.0,
        "MVAR.fit_seconds": 0.5, "pod.n_modes": 6.0, "pod.energy_captured": 0.97,
    }
    best = {"scored_on": {"seed": 0}, "mvar": {"score_mean": 0.9, "n_modes": 10, "score_std": None}}
    assert tracking.search_metrics(best) == {"search.mvar.score_mean": 0.9, "search.mvar.n_modes": 10.0}


def test_default_tracking_uri_follows_mlflow_yml(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("ROM_DATA_ROOT", str(tmp_path))
    assert tracking_cli.default_tracking_uri("test") == f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("ROM_DATA_ROOT", "data")
    assert tracking_cli.default_tracking_uri("test") == f"sqlite:///{PROJECT}/data/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://tracking.example:5000")
    assert tracking_cli.default_tracking_uri("test") == "http://tracking.example:5000"


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory):
    """An in-process `kedro run --env test --pipelines=__default__,hyperparameter_search` (MVAR
    only) tracked in a temporary SQLite store."""
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    root = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{root}/mlflow.db"
    patch = pytest.MonkeyPatch()
    patch.setenv("ROM_DATA_ROOT", str(root))
    patch.setenv("MLFLOW_TRACKING_URI", uri)
    previous_uri = mlflow.get_tracking_uri()
    try:
        bootstrap_project(PROJECT)
        from rom_pipeline import settings

        with KedroSession.create(project_path=PROJECT, env="test",
                                 runtime_params={"lstm": {"enabled": False}, "opinf": {"enabled": False},
                                                 "search": {"lstm": {"enabled": False}}},
                                 ) as session:
            if not any(isinstance(h, tracking.TrackingHooks) for h in settings.HOOKS):
                session._hook_manager.register(tracking.TrackingHooks())
            session.run(pipeline_names=["__default__", "hyperparameter_search"])
    finally:
        if mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(previous_uri)
        patch.undo()
    return uri, root / "test"


def test_run_is_logged_with_flattened_parameters_metrics_and_figures(tracked_run):
    uri, exp = tracked_run
    client = mlflow.tracking.MlflowClient(tracking_uri=uri)
    (experiment,) = [e for e in client.search_experiments() if e.name == "test"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["parameters.rom.fixed_modes"] == "6"
    assert run.data.params["parameters.lstm.enabled"] == "False"
    summary = json.loads((exp / "summary.json").read_text())
    assert run.data.metrics["pod.n_modes"] == summary["pod"]["n_modes"] == 6
    assert run.data.metrics["MVAR.fit_seconds"] == summary["models"]["MVAR"]["training"]["fit_seconds"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/r2_curves.png", "figures/pod_spectrum.png", "figures/mvar"} <= artifacts
    logged = json.loads(Path(client.download_artifacts(run.info.run_id, "summary.json",
                                                       str(exp.parent))).read_text())
    assert logged == summary
    best = json.loads((exp / "search" / "best_configurations.json").read_text())
    assert run.data.metrics["search.mvar.score_mean"] == best["mvar"]["score_mean"]
    assert "search.lstm.score_mean" not in run.data.metrics
    assert {"figures/search/scores.png"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "figures/search")}
    assert {"tables/search.results.csv", "tables/comparison_table.csv"} <= {
        a.path for a in client.list_artifacts(run.info.run_id, "tables")}


def test_table_command_lists_the_run_with_the_summary_r2(tracked_run, capsys):
    uri, exp = tracked_run
    summary = json.loads((exp / "summary.json").read_text())
    r2 = summary["models"]["MVAR"]["r2_pooled_mean"]
    assert set(r2) == {"oracle", "hold", "extrapolate", "lab_ensemble"} and all(math.isfinite(v) for v in r2.values())
    table = tracking_cli.headline_table(uri)
    assert list(table["experiment"]) == ["test"] and list(table["status"]) == ["FINISHED"]
    for mode, value in r2.items():
        assert table.loc[0, f"MVAR.r2_pooled_mean.{mode}"] == value
    assert tracking_cli.main(["table", "--tracking-uri", uri, "--format", "csv"]) == 0
    back = pd.read_csv(io.StringIO(capsys.readouterr().out))
    assert back.loc[0, "MVAR.r2_pooled_mean.oracle"] == pytest.approx(r2["oracle"], rel=1e-15)
    assert tracking_cli.main(["table", "--tracking-uri", uri]) == 0
    markdown = capsys.readouterr().out
    assert markdown.startswith("| experiment | run_name |")
    assert "| test | __default__+hyperparameter_search |" in markdown
    with pytest.raises(ValueError, match="no MLflow experiment named"):
        tracking_cli.headline_table(uri, ["nope"])


def test_flatten_parameters_gives_one_leaf_per_key():
    params = {"rom": {"lag": None, "models": {"mvar": {"lag": 5}}, "empty": {}},
              "eval": {"shift_modes": ["oracle", "hold"]}}
    assert tracking.flatten_parameters(params) == {
        "parameters.rom.lag": "None", "parameters.rom.models.mvar.lag": "5",
        "parameters.rom.empty": "{}", "parameters.eval.shift_modes": "['oracle', 'hold']",
    }
