"""The catalogue command: tiny environments run as real jobs on a real LocalCluster, resumed, and
tabulated with the numbers of each regime's summary.json."""
from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rom_pipeline.cli import catalogue
from rom_pipeline.cli.catalogue import (
    REFERENCE_R2, THESIS_REGIMES, catalogue_execution, catalogue_table, config_fingerprint,
    expand_envs, main, plan_regime, table_markdown,
)

PROJECT = Path(__file__).resolve().parents[1]


def _write_env(conf: Path, name: str, params: dict, catalog: dict | None = None) -> None:
    (conf / name).mkdir(parents=True)
    (conf / name / "globals.yml").write_text(yaml.safe_dump({"experiment": name}))
    (conf / name / "parameters.yml").write_text(yaml.safe_dump(params))
    if catalog:
        (conf / name / "catalog.yml").write_text(yaml.safe_dump(catalog))


@pytest.fixture()
def tiny_conf(tmp_path, monkeypatch):
    """conf/base plus three variants of conf/test: ``cat_a``, ``cat_b`` (4 POD modes, MVAR lag 2,
    no LSTM) and ``cat_bad``, whose simulation output has a dataset type that does not exist (its job fails
    at run time, after its parameters validated). Outputs go to ``tmp_path/data``."""
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT / "conf" / "base", conf / "base")
    params = yaml.safe_load((PROJECT / "conf" / "test" / "parameters.yml").read_text())
    params["eval"].update(order_parameters=False, animation_max_frames=4, shift_modes=["oracle", "hold"])
    params.setdefault("opinf", {})["enabled"] = False  # two models keep the table's columns short
    _write_env(conf, "cat_a", params)
    variant = json.loads(json.dumps(params))
    variant["rom"]["fixed_modes"] = 4
    variant["mvar"]["lag"] = 2
    variant["lstm"]["enabled"] = False
    _write_env(conf, "cat_b", variant)
    _write_env(conf, "cat_bad", params, catalog={
        "{split}.runs": {"type": "rom_pipeline.datasets.NoSuchDataset", "path": "nowhere"}})
    monkeypatch.setenv("ROM_DATA_ROOT", str(tmp_path / "data"))
    return conf


def _summary_scores(summary: dict) -> dict[str, float]:
    return {f"{model} {mode}": value for model, block in summary["models"].items()
            for mode, value in block["r2_pooled_mean"].items()}


@pytest.mark.slow
def test_catalogue_runs_resumes_and_reports_failures(tiny_conf, tmp_path, capsys):
    data = tmp_path / "data"
    argv = ["run", "cat_a", "cat_b", "--workers", "2", "--conf-source", str(tiny_conf), "--name", "tiny"]
    assert main(argv) == 0
    first_stdout = capsys.readouterr().out
    md, csv = data / "catalogue" / "tiny.md", data / "catalogue" / "tiny.csv"
    assert first_stdout == md.read_text()  # stdout holds the table and nothing else
    table = pd.read_csv(csv)
    assert list(table["regime"]) == ["cat_a", "cat_b"] and set(table["status"]) == {"ok"}
    for _, row in table.iterrows():
        summary = json.loads((data / row["regime"] / "summary.json").read_text())
        scores = _summary_scores(summary)
        # models and the two baselines, each in both shift modes (cat_b has no LSTM)
        assert {"MVAR oracle", "MVAR hold", "persistence oracle", "climatology hold"} <= set(scores)
        assert len(scores) == (8 if row["regime"] == "cat_a" else 6)
        for column, value in scores.items():
            assert row[column] == pytest.approx(value, abs=0, rel=1e-15), column
            assert f"{value:.3f}" in md.read_text()
        # no reference for these environments, no LSTM in cat_b
        assert math.isnan(row["LSTM hold"]) == (row["regime"] == "cat_b")
        assert math.isnan(row["reference MVAR"])
        record = json.loads((data / row["regime"] / "catalogue_run.json").read_text())
        assert row["wall_s"] == pytest.approx(record["wall_seconds"]) and row["wall_s"] > 0
        # the run's closing summary (rich may wrap the console line anywhere)
        assert "Comparisonreport:" in "".join(Path(row["log"]).read_text().split())
    # the two variants really are different regimes
    a, b = (json.loads((data / e / "summary.json").read_text()) for e in ("cat_a", "cat_b"))
    assert a["pod"]["n_modes"] == 6 and b["pod"]["n_modes"] == 4

    # second run: both regimes are finished with their current configuration -> skipped
    mtimes = {e: (data / e / "summary.json").stat().st_mtime_ns for e in ("cat_a", "cat_b")}
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out == first_stdout and md.read_text() == first_stdout
    assert pd.read_csv(csv).equals(table)
    assert captured.err.count("skipped (resumed)") == 2
    assert {e: (data / e / "summary.json").stat().st_mtime_ns for e in mtimes} == mtimes

    # a failing regime is listed as failed with its log, the others resume, the exit status is 1
    assert main(["run", "cat_a", "cat_bad", "--conf-source", str(tiny_conf), "--name", "mixed"]) == 1
    out = capsys.readouterr().out
    mixed = pd.read_csv(data / "catalogue" / "mixed.csv")
    bad = mixed.set_index("regime").loc["cat_bad"]
    assert bad["status"] == "failed" and math.isnan(bad["MVAR oracle"])
    assert "NoSuchDataset" in Path(bad["log"]).read_text()
    assert f"| cat_bad | failed |" in out and bad["log"] in out
    assert mixed.set_index("regime").loc["cat_a", "MVAR oracle"] == table.loc[0, "MVAR oracle"]


def test_changed_configuration_is_not_resumed(tiny_conf, tmp_path):
    regime = plan_regime("cat_a", tiny_conf)
    regime.summary_path.parent.mkdir(parents=True)
    regime.summary_path.write_text(json.dumps(
        {"models": {"MVAR": {"r2_pooled_mean": {"oracle": 0.5}}, "LSTM": {"r2_pooled_mean": {"oracle": 0.4}}}}))
    from rom_pipeline.config import validate_parameters

    used = validate_parameters(catalogue.load_parameters("cat_a", tiny_conf)).model_dump(mode="json")
    regime.config_used_path.write_text(yaml.safe_dump(used))
    assert catalogue.is_finished(regime)
    used["rom"]["fixed_modes"] = 5
    regime.config_used_path.write_text(yaml.safe_dump(used))
    assert not catalogue.is_finished(regime)
    used["rom"]["fixed_modes"] = 6
    used["execution"]["workers"] = 7  # where it ran does not change the results
    regime.config_used_path.write_text(yaml.safe_dump(used))
    assert catalogue.is_finished(regime)
    regime.summary_path.write_text(json.dumps({"models": {"MVAR": {"r2_pooled_mean": {"oracle": 0.5}}}}))
    assert not catalogue.is_finished(regime)  # LSTM is enabled but not scored


def test_table_command_runs_nothing_and_lists_unfinished_regimes(tiny_conf, tmp_path, capsys):
    from rom_pipeline.config import validate_parameters

    regime = plan_regime("cat_a", tiny_conf)
    regime.summary_path.parent.mkdir(parents=True)
    summary = {"models": {"MVAR": {"r2_pooled_mean": {"oracle": 0.25, "hold": 0.125}},
                          "LSTM": {"r2_pooled_mean": {"oracle": -0.5, "hold": 0.0625}}}}
    regime.summary_path.write_text(json.dumps(summary))
    used = validate_parameters(catalogue.load_parameters("cat_a", tiny_conf)).model_dump(mode="json")
    regime.config_used_path.write_text(yaml.safe_dump(used))
    assert main(["table", "cat_a", "cat_b", "--conf-source", str(tiny_conf), "--name", "now"]) == 0
    out = capsys.readouterr().out
    assert "| cat_a | ok | 0.250 | 0.125 | -0.500 | 0.062 |" in out
    assert "| cat_b | not run | – |" in out
    assert not (tmp_path / "data" / "catalogue" / "logs").exists() and not (tmp_path / "data" / "cat_b").exists()


def test_fingerprint_ignores_spelling_and_execution_but_not_science():
    params = yaml.safe_load((PROJECT / "conf" / "test" / "parameters.yml").read_text())
    fp = config_fingerprint(params)
    from rom_pipeline.config import validate_parameters

    assert config_fingerprint(validate_parameters(params).model_dump(mode="json")) == fp
    assert config_fingerprint({**params, "execution": {"workers": 3}}) == fp
    assert config_fingerprint({**params, "density": {**params["density"], "bandwidth": 1.6}}) != fp


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "no_such_env"], "environment 'no_such_env': no folder"),
        (["run"], "no environments given"),
        (["run", "cat_a", "--workers", "0"], "--workers 0: must be an integer >= 1"),
        (["run", "cat_a", "--envs", "theses"], "--envs 'theses': unknown group"),
        (["run", "cat_a", "--cluster", "pbs"], "--cluster 'pbs': must be 'local' or 'slurm'"),
    ],
)
def test_bad_input_is_refused_before_any_job(tiny_conf, tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--conf-source", str(tiny_conf)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "data").exists()  # no job started, nothing written


def test_thesis_group_and_references():
    import importlib.util

    spec = importlib.util.spec_from_file_location("generate", PROJECT / "conf" / "thesis" / "generate.py")
    generate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generate)
    # the nine regimes of the thesis table, all written by the generator (which adds pure_vicsek_vs)
    assert set(THESIS_REGIMES) == set(REFERENCE_R2) and set(THESIS_REGIMES) <= set(generate.REGIMES)
    assert expand_envs([], ["thesis"]) == list(THESIS_REGIMES)
    assert expand_envs(["gas", "crystal"], ["thesis"])[:2] == ["gas", "crystal"]
    assert len(expand_envs(["gas"], ["thesis"])) == 9
    for env in THESIS_REGIMES:
        plan_regime(env, PROJECT / "conf")  # every thesis environment exists and validates
    # the reference numbers are those of reference_results.md's headline table
    assert REFERENCE_R2["crystal_vs"] == {"MVAR": 0.292, "LSTM": -0.779}
    assert REFERENCE_R2["pure_vicsek"] == {"MVAR": 0.654, "LSTM": 0.229}


def test_table_reads_baselines_in_either_layout():
    models = {"MVAR": {"r2_pooled_mean": {"oracle": 0.9, "hold": 0.8}},
              "LSTM": {"r2_pooled_mean": {"oracle": 0.7, "hold": None}}}
    rows = [
        {"env": "gas", "status": "ok", "wall_seconds": 90.0, "log": "gas.log",
         "summary": {"models": {**models, "persistence": {"r2_pooled_mean": {"oracle": 0.5}}},
                     "baselines": ["climatology", "persistence"]}},
        {"env": "crystal", "status": "ok", "wall_seconds": None, "log": None,
         "summary": {"models": models, "baselines": {"Climatology": {"r2_pooled_mean": {"hold": 0.1}}}}},
        {"env": "blackhole", "status": "failed", "wall_seconds": 3.0, "log": "bh.log", "summary": None},
    ]
    table = catalogue_table(rows).set_index("regime")
    assert list(table.columns[:5]) == ["status", "MVAR oracle", "MVAR hold", "LSTM oracle", "LSTM hold"]
    assert table.loc["gas", "persistence oracle"] == 0.5 and math.isnan(table.loc["gas", "climatology hold"])
    assert table.loc["crystal", "climatology hold"] == 0.1 and math.isnan(table.loc["crystal", "persistence oracle"])
    assert math.isnan(table.loc["gas", "LSTM hold"]) and table.loc["gas", "MVAR hold"] == 0.8
    assert table.loc["crystal", "reference LSTM"] == 0.585 and table.loc["gas", "reference MVAR"] == 0.996
    assert math.isnan(table.loc["blackhole", "MVAR oracle"])
    md = table_markdown(table.reset_index(), "t")
    assert "| gas | ok | 0.900 | 0.800 | 0.700 | – | 0.500 | – | – | – | 0.996 | 0.996 | 1.5 min | gas.log |" in md
    assert "| blackhole | failed | – |" in md and md.rstrip().endswith("| bh.log |")


def test_slurm_runs_one_job_per_regime(monkeypatch):
    pytest.importorskip("dask_jobqueue")
    from rom_pipeline.execution.parallel import slurm_cluster_kwargs

    monkeypatch.setattr(catalogue.shutil, "which", lambda name: None)
    with pytest.raises(ValueError, match="no `sbatch` on this machine's PATH"):
        catalogue_execution(9, None, "slurm")
    monkeypatch.setattr(catalogue.shutil, "which", lambda name: f"/usr/bin/{name}")

    execution = catalogue_execution(9, None, "slurm", {"memory": "8GB", "queue": "normal"})
    assert (execution.cluster, execution.workers) == ("slurm", 9)
    assert catalogue_execution(9, 3, "slurm").workers == 3
    kwargs = slurm_cluster_kwargs(execution)
    assert kwargs["memory"] == "8GB" and kwargs["cores"] == 1 and kwargs["queue"] == "normal"
    assert catalogue_execution(5, None, "local").workers == 2  # LocalCluster by default
    assert catalogue_execution(1, 4, "local").workers == 1      # never more workers than jobs
