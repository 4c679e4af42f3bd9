"""The everyday console: clean stdout, named runs, warnings where intent is ignored, the run summary,
progress bars."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from rom_pipeline.config import ConfigError, validate_experiment_name, validate_parameters
from rom_pipeline.framework.hooks import ignored_intents, run_summary_lines
from tests.conftest import PROJECT, with_overrides

PYTHON = sys.executable


def _run(*args: str, env: dict | None = None, cwd: Path = PROJECT) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(PROJECT / "src"), "KEDRO_DISABLE_TELEMETRY": "1",
               **(env or {})}
    return subprocess.run(list(args), cwd=cwd, env=environ, capture_output=True, text=True,
                          timeout=300)


# ---------------------------------------------------------------------- clean streams
def test_project_logging_writes_to_stderr_only(tmp_path: Path):
    """Kedro configures logging from conf/logging.yml; every record, the project's and Kedro's,
    must leave stdout untouched."""
    code = (
        "import logging; import kedro.framework.project\n"
        "logging.getLogger('rom_pipeline.x').info('project info line')\n"
        "logging.getLogger('rom_pipeline.x').warning('project warning line')\n"
        "logging.getLogger('kedro.x').warning('kedro warning line')\n"
        "logging.getLogger('some_library').warning('library warning line')\n"
        "import warnings; warnings.warn('a user warning')\n"
    )
    proc = _run(PYTHON, "-c", code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""
    err = " ".join(proc.stderr.split())
    for text in ("project info line", "project warning line", "kedro warning line",
                 "library warning line", "a user warning"):
        assert text in err


def test_known_harmless_warnings_are_dropped_but_others_kept():
    code = (
        "import kedro.framework.project, warnings\n"
        "from mlflow.utils.warnings_utils import color_warning\n"
        "color_warning('Add type hints to the `predict` method to enable', 1, 'yellow')\n"
        "with warnings.catch_warnings():\n"  # MLflow re-enables UserWarnings this way
        "    warnings.simplefilter('once', UserWarning)\n"
        "    color_warning('Add type hints to the `predict` method again', 1, 'yellow')\n"
        "warnings.warn('register_new_resolver() is deprecated and will be removed')\n"
        "warnings.warn(\"One or more dataset names contain '.' characters, which is not\")\n"
        "warnings.warn('Port 8787 is already in use. Perhaps you already have a cluster running?')\n"
        "warnings.warn('a warning worth reading')\n"
    )
    proc = _run(PYTHON, "-c", code)
    assert proc.returncode == 0, proc.stderr
    err = " ".join(proc.stderr.split())
    assert "a warning worth reading" in err
    assert "Add type hints" not in err and "register_new_resolver" not in err
    assert "dataset names contain" not in err and "already in use" not in err


def test_driver_script_on_stdout_is_exactly_the_script():
    proc = _run(PYTHON, "-m", "rom_pipeline.cli.hpc", "driver-script", "--env", "hpc",
                env={"ROM_DATA_ROOT": "/shared/rom"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "#!/usr/bin/env bash"
    assert all(line.startswith(("#", "set ", "cd ", "export ", "/", "'")) or not line.strip()
               for line in lines), lines
    assert lines[-1].endswith('run --env hpc --runner=rom_pipeline.framework.runner.DaskRunner "$@"')


@pytest.mark.skipif(__import__("importlib").util.find_spec("mlflow") is None, reason="mlflow extra")
def test_tracking_table_csv_on_stdout_parses(tmp_path: Path):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = "sqlite:///" + str(tmp_path / "mlflow.db")
    client = MlflowClient(tracking_uri=uri)
    exp = client.create_experiment("gas", artifact_location=str(tmp_path / "art"))
    run = client.create_run(exp, run_name="mvar_only")
    client.log_metric(run.info.run_id, "MVAR.r2_pooled_mean.oracle", 0.978)
    client.log_metric(run.info.run_id, "pod.n_modes", 19)
    client.set_terminated(run.info.run_id)
    del mlflow
    proc = _run(PYTHON, "-m", "rom_pipeline.cli.tracking", "table", "--format", "csv",
                "--tracking-uri", uri)
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(io.StringIO(proc.stdout))
    assert list(table.columns) == ["experiment", "run_name", "start", "status", "run_id",
                                   "MVAR.r2_pooled_mean.oracle", "pod.n_modes"]
    assert table.shape == (1, 7)
    row = table.iloc[0]
    assert (row["experiment"], row["run_name"], row["run_id"]) == ("gas", "mvar_only", run.info.run_id)
    assert row["MVAR.r2_pooled_mean.oracle"] == pytest.approx(0.978)
    assert row["pod.n_modes"] == 19


# ---------------------------------------------------------------------- named runs
@pytest.mark.parametrize("name", ["mvar_only", "gas-2", "run.3", "42"])
def test_experiment_name_accepts_plain_folder_names(name):
    assert validate_experiment_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "../up", ".hidden", "-x", "two words", "a\\b", None, 1.5])
def test_experiment_name_rejects_paths_and_empty(name):
    with pytest.raises(ConfigError, match="experiment = .*plain folder name"):
        validate_experiment_name(name)


def _loader(env: str, runtime_params: dict | None):
    from rom_pipeline.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    return CONFIG_LOADER_CLASS(
        conf_source=str(PROJECT / "conf"), env=env, runtime_params=runtime_params,
        **CONFIG_LOADER_ARGS,
        config_patterns={"mlflow": ["mlflow*", "mlflow*/**", "**/mlflow*"]},
    )


def test_named_run_moves_every_output_and_names_the_mlflow_run(monkeypatch):
    monkeypatch.delenv("ROM_DATA_ROOT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    def paths(loader):
        return {k: v.get("filepath") or v.get("path") for k, v in loader["catalog"].items()
                if isinstance(v, dict) and not k.startswith("_")}

    # one loader at a time: Kedro registers the globals resolver process-wide, per loader
    named = _loader("test", {"experiment": "mvar_only"})
    named_paths, named_mlflow = paths(named), named["mlflow"]
    plain = _loader("test", None)
    plain_paths, plain_mlflow = paths(plain), plain["mlflow"]
    assert named_paths.keys() == plain_paths.keys() and len(named_paths) > 20
    for key, path in plain_paths.items():
        assert path.startswith("data/test/"), (key, path)
        assert named_paths[key] == "data/mvar_only/" + path.removeprefix("data/test/")
    assert named_mlflow["tracking"]["run"]["name"] == "mvar_only"
    assert named_mlflow["tracking"]["experiment"]["name"] == "test"  # the environment's
    assert plain_mlflow["tracking"]["run"]["name"] is None  # kedro-mlflow: pipeline names
    assert plain_mlflow["tracking"]["experiment"]["name"] == "test"
    # the parameter itself is accepted by validation, and kept in config_used.yaml
    assert validate_parameters(dict(_loader("test", {"experiment": "mvar_only"})["parameters"])
                               ).experiment == "mvar_only"


def test_bad_run_name_stops_before_any_config_is_used():
    with pytest.raises(ConfigError, match=r"experiment = '\.\./x'"):
        _loader("test", {"experiment": "../x"})


# ---------------------------------------------------------------------- ignored intent
def test_pod_energy_ignored_under_fixed_modes_is_reported(test_params):
    assert ignored_intents(test_params) == []  # test env: fixed_modes 6, pod_energy at its default
    changed = with_overrides(test_params, **{"rom.pod_energy": 0.95})
    (message,) = ignored_intents(changed)
    assert "rom.pod_energy = 0.95 has no effect" in message
    assert "rom.fixed_modes = 6" in message
    assert 'rom.fixed_modes=null,rom.pod_energy=0.95' in message
    # given on the command line, even at the default value, it is the user's intent
    assert len(ignored_intents(test_params, {"rom": {"pod_energy": 0.99}})) == 1
    # with fixed_modes null the energy rule is in force: nothing to say
    assert ignored_intents(with_overrides(changed, **{"rom.fixed_modes": None})) == []


def test_disabled_model_pipeline_only_says_it_is_skipped(test_params, monkeypatch, caplog):
    from kedro.framework.project import configure_project

    from rom_pipeline.framework import session_state
    from rom_pipeline.pipeline_registry import register_pipelines

    configure_project("rom_pipeline")
    off = with_overrides(test_params, **{"lstm.enabled": False})
    monkeypatch.setitem(session_state._ACTIVE, "params", off)
    monkeypatch.delitem(session_state._ACTIVE, "config", raising=False)  # validated from "params"
    pipelines = register_pipelines()
    (node,) = pipelines["lstm"].nodes
    assert node.name == "lstm_disabled" and node.inputs == ["params:lstm"] and node.outputs == []
    with caplog.at_level("WARNING", logger="rom_pipeline"):
        assert node.run({"params:lstm": off["lstm"]}) == {}
    assert "The lstm pipeline is skipped: lstm.enabled is false" in caplog.text
    assert len(pipelines["mvar"].nodes) > 1
    assert not any((n.namespace or "").startswith("lstm") for n in pipelines["__default__"].nodes)


# ---------------------------------------------------------------------- run summary
def test_run_summary_lines_report_means_per_shift_mode():
    rng = np.random.default_rng(0)
    r2 = rng.uniform(0.5, 1.0, size=6)
    table = pd.DataFrame({
        "model": "MVAR", "run_id": ["t0", "t0", "t1", "t1", "t2", "t2"],
        "shift_mode": ["oracle", "hold"] * 3, "diverged": [False, False, False, True, False, False],
        "r2_pooled": r2,
    })
    lines = run_summary_lines({"mvar": table}, {"mvar": "data/x/MVAR/test_results.csv"},
                              "data/x/report/comparison_table.md")
    assert lines[0] == (f"MVAR: mean pooled R² true track {r2[0::2].mean():.4f}, track held {r2[1::2].mean():.4f}"
                        " over 3 test runs, 1 diverged; results in data/x/MVAR/")
    assert lines[1] == "Comparison report: data/x/report/comparison_table.md"
    assert run_summary_lines({}, {}, None) == []


# ---------------------------------------------------------------------- progress
def test_track_yields_every_item_and_fills_the_bar(monkeypatch):
    from rich.console import Console

    from rom_pipeline.execution import progress

    out = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=out, width=120, force_terminal=False))
    assert list(progress.track(iter(range(7)), "counting", total=7)) == list(range(7))
    text = out.getvalue()
    assert "counting" in text and "7/7" in text and "left" in text
    out.truncate(0)
    with progress.progress_bar("epochs", total=10) as advance:
        for _ in range(4):  # stopped early
            advance()
    assert "4/10" in out.getvalue()


def test_lstm_reports_one_progress_call_per_epoch():
    from rom_pipeline.rom.lstm import LSTMForecaster

    rng = np.random.default_rng(1)
    runs = [np.cumsum(rng.normal(size=(30, 2)), axis=0) * 0.1 for _ in range(4)]
    calls = []
    model = LSTMForecaster(lag=2, hidden_units=4, num_layers=1, max_epochs=3, patience=10,
                           batch_size=16, seed=0).fit(runs, progress=lambda: calls.append(1))
    assert len(calls) == len(model.training_log_) == 3


# ---------------------------------------------------------------------- housekeeping
def test_mlflow_store_is_anchored_at_the_project_root(monkeypatch, tmp_path):
    monkeypatch.delenv("ROM_DATA_ROOT", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ARTIFACT_LOCATION", raising=False)
    monkeypatch.chdir(PROJECT / "notebooks")  # where a notebook runs
    server = _loader("test", None)["mlflow"]
    assert server["server"]["mlflow_tracking_uri"] == f"sqlite:///{PROJECT}/data/mlflow.db"
    assert server["tracking"]["experiment"]["create_experiment_kwargs"]["artifact_location"] == \
        f"{PROJECT}/data/mlartifacts"
    monkeypatch.setenv("ROM_DATA_ROOT", str(tmp_path))  # an absolute root is kept as given
    assert _loader("test", None)["mlflow"]["server"]["mlflow_tracking_uri"] == \
        f"sqlite:///{tmp_path}/mlflow.db"


def test_notebook_outputs_are_ignored_by_git():
    proc = subprocess.run(["git", "check-ignore", "notebooks/data/mlflow.db"], cwd=PROJECT,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "notebooks/data/mlflow.db"


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def test_animations_and_generated_configs_get_normal_permissions(tmp_path):
    import stat

    from rom_pipeline.evaluation import plots
    from rom_pipeline.cli.legacy import write_environment

    expected = 0o666 & ~_umask()
    truth = np.random.default_rng(0).random((3, 6, 6))
    gif = plots.write_comparison_animation(truth, {"MVAR": truth}, np.arange(3.0),
                                           tmp_path / "a.gif", dpi=30, panel_inches=1.0)
    assert stat.S_IMODE(gif.stat().st_mode) == expected
    written = write_environment(tmp_path / "conf", "perm", {"globals.yml": "experiment: perm\n"})
    assert [stat.S_IMODE(Path(p).stat().st_mode) for p in written] == [expected]
    assert sorted(os.listdir(tmp_path / "conf" / "perm")) == ["globals.yml"]  # no temp file left


def _fake_versions(root: Path, experiment: str, name: str, folder: str, versions: list[str]) -> None:
    for v in versions:
        path = root / experiment / folder / name / v / name
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x" * 1000)


def test_prune_keeps_the_newest_and_the_referenced_versions(tmp_path, monkeypatch):
    import json

    from rom_pipeline.cli.prune import main, prune

    monkeypatch.setenv("ROM_DATA_ROOT", str(tmp_path))
    stamps = [f"2026-11-{d:02d}T10.00.00.000Z" for d in range(1, 6)]
    _fake_versions(tmp_path, "test", "pod_basis.npz", "rom_common", stamps)
    _fake_versions(tmp_path, "test", "latent_dataset.npz", "rom_common", stamps[:2])
    _fake_versions(tmp_path, "test", "mvar_model.npz", "MVAR", stamps[1:4])
    (tmp_path / "test" / "summary.json").write_text(json.dumps(
        {"models": {}, "artifact_versions": {"pod_basis": stamps[0], "mvar.model": stamps[1]}}))

    planned = prune("test", keep=2, dry_run=True)
    assert {(v.dataset, v.version) for v in planned} == {
        ("pod_basis", stamps[1]), ("pod_basis", stamps[2]),  # stamps[0] is referenced
    }  # latent_dataset has only 2; mvar.model: stamps[1] referenced, 2 newest kept
    assert all(v.size_bytes == 1000 for v in planned)
    assert all(v.path.is_dir() for v in planned)  # dry run: nothing deleted

    removed = prune("test", keep=2)
    assert removed == planned
    left = sorted(p.name for p in (tmp_path / "test/rom_common/pod_basis.npz").iterdir())
    assert left == [stamps[0], stamps[3], stamps[4]]
    assert len(list((tmp_path / "test/MVAR/mvar_model.npz").iterdir())) == 3
    assert prune("test", keep=2) == []  # idempotent

    with pytest.raises(ValueError, match="keep = 0"):
        prune("test", keep=0)
    assert main(["--env", "test", "--keep", "0"]) == 2


def test_prune_command_prints_only_its_report(tmp_path):
    stamps = [f"2026-11-{d:02d}T10.00.00.000Z" for d in range(1, 4)]
    _fake_versions(tmp_path, "named", "latent_dataset.npz", "rom_common", stamps)
    proc = _run(PYTHON, "-m", "rom_pipeline.cli.prune", "--env", "test", "--experiment", "named",
                "--keep", "1", "--dry-run", env={"ROM_DATA_ROOT": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:2] == [f"would remove {tmp_path}/named/rom_common/latent_dataset.npz/{s} (0.0 MB)"
                         for s in stamps[:2]]
    assert lines[2].startswith("would remove 2 old version(s)") and len(lines) == 3
    assert len(list((tmp_path / "named/rom_common/latent_dataset.npz").iterdir())) == 3



@pytest.mark.skipif(__import__("importlib").util.find_spec("mlflow") is None, reason="mlflow extra")
def test_mlflow_ui_command_needs_no_activated_venv():
    from rom_pipeline.cli.tracking import ui_command

    command = ui_command("sqlite:////x/mlflow.db", port=5001)
    assert command[:4] == [sys.executable, "-m", "mlflow", "ui"]
    assert command[4:] == ["--backend-store-uri", "sqlite:////x/mlflow.db", "--host", "127.0.0.1",
                           "--port", "5001"]
    # the interpreter finds MLflow's CLI with a PATH that has no venv on it
    proc = subprocess.run([*command[:3], "--version"], env={"PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "version" in proc.stdout


def test_closing_lines_follow_the_registry_order_whatever_finished_first(caplog):
    import logging

    import pandas as pd
    from kedro.io import DataCatalog

    from rom_pipeline.framework.hooks import BASELINE_RESULTS, RunSummaryHooks

    def table(model: str) -> pd.DataFrame:
        return pd.DataFrame({"run_id": ["a"], "model": [model], "shift_mode": ["oracle"],
                             "r2_pooled": [0.5], "diverged": [False]})

    hooks = RunSummaryHooks()
    hooks.before_pipeline_run({}, None, None)
    for name, model in (("opinf", "OPINF"), (BASELINE_RESULTS, "climatology"), ("lstm", "LSTM"),
                        ("mvar", "MVAR")):  # completion order, not report order
        hooks.after_dataset_saved(f"{name}.test_results" if name != BASELINE_RESULTS else name, table(model))
    with caplog.at_level(logging.INFO, logger="rom_pipeline.framework.hooks"):
        hooks.after_pipeline_run({}, None, DataCatalog())
    firsts = [record.getMessage().split(":")[0] for record in caplog.records]
    assert firsts == ["MVAR", "LSTM", "OPINF", "climatology"]
