"""The legacy converter: users' old YAML -> the parameters their authors meant, with a report
that names every key it did not use; and its command line."""
import os
import re
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from rom_pipeline.config import validate_parameters
from rom_pipeline.cli.legacy import (
    LegacyConversionError,
    cli,
    convert_legacy,
    environment_name,
    load_legacy_file,
    report_summary,
)
from tests.conftest import PROJECT

SEED = Path(os.environ.get("ROM_SEED_CONFIGS", PROJECT.parent / "shared" / "seed" / "configs"))
needs_seed = pytest.mark.skipif(not SEED.is_dir(), reason=f"users' legacy configs not found at {SEED}")
SEED_FILES = ["alvarez_style_production", "best_run_extended_test", "high_capacity_production", "thesis_gas"]

# A small old-format file carrying the traps (always available, unlike the seed files).
TINY = {
    "sim": {"N": 20, "T": 2.0, "dt": 0.1, "Lx": 10.0, "Ly": 10.0, "v0": 1.0, "R": 2.0, "eta": 0.3,
            "neighbor_rebuild": 5},
    "density": {"nx": 16, "ny": 16, "bandwidth": 1.5},
    "outputs": {"density_resolution": 64, "density_bandwidth": 2.0, "fps": 20},
    "train_ic": {
        "uniform": {"enabled": True, "n_runs": 3},
        "ring": {"enabled": True, "n_runs": 6, "radii": [2.0, 3.0], "widths": [0.3, 0.6],
                 "n_samples_per_config": 3},
    },
    "test_ic": {"test_T": 4.0, "uniform": {"enabled": True, "n_runs": 1}},
    "rom": {"fixed_modes": 4, "energy_threshold": 0.9,
            "models": {"mvar": {"lag": 2}, "lstm": {"enabled": False, "activation": "tanh"}}},
    "eval": {"metrics": ["r2"], "clamp_mode": "C0"},
    "experiment_name": "tiny_legacy",
}


def _convert(old):
    params, report = convert_legacy(old)
    return validate_parameters(params), report


def _has(report, prefix):
    return [line for line in report if line.startswith(prefix)]


def _leaves(d, prefix=""):
    for key, value in d.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            yield from _leaves(value, path)
        else:
            yield path, value


def _get(d, path):
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _assert_nothing_silently_dropped(old, params, report):
    """Every old leaf either lands unchanged at the same key or is named in the report."""
    text = "\n".join(report)
    for path, value in _leaves(old):
        head, _, last = path.rpartition(".")
        same_key = _get(params, path) == value
        test_spelling = last.startswith("test_") and _get(params, f"{head}.{last[5:]}") == value
        assert same_key or test_spelling or f"{path} = " in text, f"{path} = {value!r} silently dropped"


# ---------------------------------------------------------------------- the users' files
@needs_seed
@pytest.mark.parametrize("stem", SEED_FILES)
def test_seed_files_convert_and_nothing_is_silently_dropped(stem):
    old = load_legacy_file(SEED / f"{stem}.yaml")
    params, report = convert_legacy(old)
    validate_parameters(params)
    _assert_nothing_silently_dropped(old, params, report)


@needs_seed
def test_alvarez_style_intended_values_land():
    cfg, report = _convert(load_legacy_file(SEED / "alvarez_style_production.yaml"))
    # the old loader ignored sim.v0/R/eta and used 0.5, 1.0, uniform 0.5
    assert (cfg.model.speed, cfg.params.R, cfg.noise.eta, cfg.noise.kind) == (1.0, 2.0, 0.3, "uniform")
    assert "mapped: sim.v0 = 1.0 -> model.speed (the old loader ignored it; the written value is meant)" in report
    assert (cfg.density.nx, cfg.density.bandwidth) == (64, 3.0)
    assert cfg.rom.fixed_modes == 35
    assert cfg.mvar.eigenvalue_threshold == 0.999
    assert cfg.forecast_start == 8.0  # absent: sim.T, as the old loader
    # ring / two-cluster lists pair element-wise: the authors' n_runs 100 = 4 x 25
    assert cfg.train_ic.ring.pairing == "zip" and cfg.train_ic.ring.run_count() == 100
    assert cfg.train_ic.two_clusters.run_count() == 100
    assert cfg.train_ic.gaussian.run_count() == 3 * 3 * 4 * 3 == 108
    assert cfg.train_ic.run_count("train_ic") == 408
    assert any("train_ic.ring pairing zip" in line and "Cartesian product gave 400" in line
               for line in report)
    for ignored in (
        'ignored: eval.metrics = ["mse", "mae", "r2", "mass_conservation"]',
        "ignored: rom.models.lstm.activation = tanh",
        "ignored: rom.models.lstm.loss = mse",
        "ignored: mvar.train_fraction = 0.8",
        "ignored: train_ic.gaussian.n_runs = 100",
        "ignored: eval.save_time_resolved = true",
    ):
        assert any(line.startswith(ignored + " (") for line in report), ignored
    assert "agrees: mvar.order = 5 (same as rom.models.mvar.lag)" in report
    assert any(line.startswith("mapped: mvar.enforce_stability = true") for line in report)


@needs_seed
def test_high_capacity_density_block_and_energy():
    cfg, report = _convert(load_legacy_file(SEED / "high_capacity_production.yaml"))
    assert (cfg.density.nx, cfg.density.ny, cfg.density.bandwidth) == (32, 32, 4.0)
    assert (cfg.rom.fixed_modes, cfg.rom.pod_energy) == (None, 0.99)
    assert "mapped: rom.energy_threshold = 0.99 -> rom.pod_energy" in report
    assert (cfg.sim.N, cfg.sim.T, cfg.test_sim.T, cfg.mvar.lag) == (100, 10.0, 25.0, 4)


@needs_seed
def test_best_run_fixed_modes_beat_energy_and_extrapolation_is_unsupported():
    cfg, report = _convert(load_legacy_file(SEED / "best_run_extended_test.yaml"))
    assert (cfg.rom.fixed_modes, cfg.mvar.lag, cfg.mvar.ridge_alpha) == (25, 20, 1e-6)
    assert "inactive: rom.pod_energy = 0.995 (rom.fixed_modes = 25 takes priority)" in report
    assert (cfg.test_sim.T, cfg.eval.forecast_start) == (10.0, 2.0)
    assert "mapped: test_ic.test_T = 10.0 -> test_sim.T" in report
    assert "mapped: evaluation.forecast_start = 2.0 -> eval.forecast_start" in report
    assert (cfg.density.nx, cfg.density.bandwidth) == (64, 2.0)
    assert cfg.forces.enabled is False and (cfg.forces.params.Cr, cfg.forces.params.la) == (0.3, 2.0)
    assert len(_has(report, "unsupported: test_ic.gaussian.extrapolation_")) == 2
    assert len(_has(report, "unsupported: test_ic.two_clusters.extrapolation_")) == 2
    assert any("test_ic.gaussian.n_runs = 20" in line and "4 extrapolation runs" in line for line in report)
    assert cfg.train_ic.run_count("train_ic") == 200 + 100 + 50 + 50
    assert cfg.test_ic.run_count("test_ic") == 16 + 5 + 8 + 4
    for key in ("sim.integrator = euler", "sim.neighbor_rebuild = 5", "outputs.fps = 20",
                "outputs.density_resolution = 64", "evaluation.forecast_end = 10.0",
                "rom.models.lstm.loss = mse", "train_ic.type = mixed_comprehensive"):
        assert _has(report, f"ignored: {key} ("), key


@needs_seed
def test_thesis_gas():
    old = load_legacy_file(SEED / "thesis_gas.yaml")
    cfg, report = _convert(old)
    assert environment_name(old, SEED / "thesis_gas.yaml") == "NDYN04_gas_thesis_final"
    assert cfg.eval.clamp_mode == "none" and cfg.eval.mass_postprocess == "scale"
    assert ("mapped: eval.clamp_mode = C0 -> eval.clamp_mode = none "
            "(legacy C0 = no clamping of the lifted density)") in report
    assert "mapped: rom.mass_postprocess = scale -> eval.mass_postprocess" in report
    assert cfg.train_ic.run_count("train_ic") == 340 and cfg.test_ic.run_count("test_ic") == 4
    assert (cfg.lstm.hidden_units, cfg.lstm.residual) == (128, True)


# ---------------------------------------------------------------------- rules, on small inputs
def test_tiny_file_traps():
    cfg, report = _convert(TINY)
    assert (cfg.model.speed, cfg.params.R, cfg.noise.eta) == (1.0, 2.0, 0.3)
    assert (cfg.density.nx, cfg.density.bandwidth) == (16, 1.5)  # density block wins over outputs
    assert "ignored: outputs.density_resolution = 64 (the density block wins: density.nx = 16, density.ny = 16)" in report
    assert (cfg.rom.fixed_modes, cfg.rom.pod_energy) == (4, 0.9)
    assert "inactive: rom.energy_threshold = 0.9 (rom.fixed_modes = 4 takes priority)" in report
    assert cfg.test_sim.T == 4.0 and cfg.eval.clamp_mode == "none"
    # radii/widths of equal length 2, n_runs 6 = 2 x 3 -> zip (product would give 12)
    assert cfg.train_ic.ring.pairing == "zip" and cfg.train_ic.ring.run_count() == 6
    assert cfg.train_ic.uniform.run_count() == 3
    _assert_nothing_silently_dropped(TINY, cfg.model_dump(), report)


def test_unknown_keys_are_reported_never_dropped():
    old = {**TINY, "bogus": 1, "sim": {**TINY["sim"], "typo_N": 7},
           "rom": {**TINY["rom"], "models": {**TINY["rom"]["models"], "gru": {"enabled": True}}}}
    cfg, report = _convert(old)
    assert "ignored: bogus = 1 (not understood by rom_pipeline)" in report
    assert "ignored: sim.typo_N = 7 (not understood by rom_pipeline)" in report
    assert 'ignored: rom.models.gru = {"enabled": true} (not understood by rom_pipeline)' in report


def test_outputs_density_used_without_density_block():
    old = {k: v for k, v in TINY.items() if k != "density"}
    cfg, report = _convert(old)
    assert (cfg.density.nx, cfg.density.ny, cfg.density.bandwidth) == (64, 64, 2.0)
    assert any(line.startswith("mapped: outputs.density_resolution = 64 -> density.nx, density.ny")
               for line in report)


@pytest.mark.parametrize(
    ("radii", "widths", "n_runs", "pairing", "count"),
    [
        ([2.0, 3.0, 4.0], [0.3, 0.5, 0.7], 3, "zip", 3),        # authors counted the pairs
        ([2.0, 3.0, 4.0], [0.3, 0.5, 0.7], 9, "product", 9),    # authors counted the product
        ([2.0, 3.0, 4.0], [0.3, 0.5, 0.7], 50, "product", 9),   # nothing says zip
        ([2.0, 3.0, 4.0], [0.4, 0.4, 0.4], 50, "zip", 3),       # product would repeat configs
        ([2.0, 3.0], [0.3, 0.5, 0.7], 2, "product", 6),         # unequal lengths
    ],
)
def test_pairing_detection(radii, widths, n_runs, pairing, count):
    old = {**TINY, "train_ic": {"ring": {"radii": radii, "widths": widths, "n_runs": n_runs}}}
    cfg, report = _convert(old)
    assert (cfg.train_ic.ring.pairing, cfg.train_ic.ring.run_count()) == (pairing, count)
    assert any(line.startswith("ignored: train_ic.ring.n_runs = ") for line in report)
    if len(radii) == len(widths):
        assert any(line.startswith(f"chosen: train_ic.ring pairing {pairing}") for line in report)


def test_top_level_mvar_block_fills_only_unset_keys():
    old = {**TINY, "rom": {"models": {"mvar": {"lag": 2}}},
           "mvar": {"order": 3, "ridge_alpha": 0.01, "enforce_stability": False, "train_fraction": 0.8}}
    cfg, report = _convert(old)
    assert cfg.mvar.lag == 2 and cfg.mvar.ridge_alpha == 0.01
    assert "ignored: mvar.order = 3 (rom.models.mvar.lag = 2 takes priority)" in report
    assert any(line.startswith("mapped: mvar.ridge_alpha = 0.01 -> mvar.ridge_alpha") for line in report)
    old["mvar"] = {"eigenvalue_threshold": 0.99, "enforce_stability": False}
    cfg, report = _convert(old)
    assert cfg.mvar.eigenvalue_threshold is None
    old["mvar"] = {"eigenvalue_threshold": 0.99, "enforce_stability": True}
    cfg, _ = _convert(old)
    assert cfg.mvar.eigenvalue_threshold == 0.99


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": {"speed": 2.0}}, "model.speed = 2.0 and sim.v0 = 1.0 both set model.speed"),
        ({"train_ic": {"uniform": {"n_runs": 3, "n_samples": 4}}}, "train_ic.uniform.n_samples = 4"),
        ({"eval": {"forecast_start": 1.0}, "evaluation": {"forecast_start": 1.5}}, "eval.forecast_start"),
        ({"sim": {**TINY["sim"], "dt": 0.0}}, "sim.dt"),
        ({"sim": {**TINY["sim"], "v0": 30.0}}, "params.R / 2"),
        ({"eval": {"clamp_mode": "C7"}}, "eval.clamp_mode"),
        ({"sim": "fast"}, "sim = fast: expected a mapping"),
    ],
)
def test_contradictions_and_invalid_values_are_errors(change, message):
    with pytest.raises(LegacyConversionError, match=re.escape(message)):
        convert_legacy({**TINY, **change})


def test_not_a_mapping():
    with pytest.raises(LegacyConversionError):
        convert_legacy(["sim", "N"])


# ---------------------------------------------------------------------- command line
def _old_file(tmp_path, data=TINY, name="old.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_convert_writes_environment_and_refuses_overwrite(tmp_path):
    old = _old_file(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["convert", str(old), "--env", "mine", "--project-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "ignored: outputs.fps = 20" in result.output
    env = tmp_path / "conf" / "mine"
    assert sorted(p.name for p in env.iterdir()) == ["globals.yml", "parameters.yml"]  # no temp files
    assert yaml.safe_load((env / "globals.yml").read_text()) == {"experiment": "mine"}
    text = (env / "parameters.yml").read_text()
    assert "#   ignored: outputs.fps = 20 (" in text and "#   ignored: eval.metrics" in text
    written = yaml.safe_load(text)
    assert validate_parameters(written).model_dump() == written  # complete
    assert written["model"]["speed"] == 1.0

    again = runner.invoke(cli, ["convert", str(old), "--env", "mine", "--project-dir", str(tmp_path)])
    assert again.exit_code != 0 and "--force" in again.output
    (env / "parameters.yml").write_text("# hand edited\n")
    still = runner.invoke(cli, ["convert", str(old), "--env", "mine", "--project-dir", str(tmp_path)])
    assert still.exit_code != 0 and (env / "parameters.yml").read_text() == "# hand edited\n"
    forced = runner.invoke(cli, ["convert", str(old), "--env", "mine", "--force", "--project-dir", str(tmp_path)])
    assert forced.exit_code == 0 and (env / "parameters.yml").read_text() == text


def test_cli_default_env_name(tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["convert", str(_old_file(tmp_path)), "--project-dir", str(tmp_path)])
    assert result.exit_code == 0 and (tmp_path / "conf/tiny_legacy/globals.yml").is_file()
    no_name = {k: v for k, v in TINY.items() if k != "experiment_name"}
    result = runner.invoke(cli, ["convert", str(_old_file(tmp_path, no_name, "my_study.yaml")),
                                 "--project-dir", str(tmp_path)])
    assert result.exit_code == 0 and (tmp_path / "conf/my_study/parameters.yml").is_file()


@pytest.mark.parametrize(
    "content",
    [
        yaml.safe_dump({**TINY, "sim": {**TINY["sim"], "T": -2.0}}),    # invalid value
        yaml.safe_dump({**TINY, "model": {"speed": 5.0}}),              # contradiction
        "sim: {N: 20\n",                                                # not YAML
        "- just\n- a list\n",                                           # not a mapping
    ],
)
def test_cli_bad_old_file_writes_nothing(tmp_path, content):
    old = tmp_path / "bad.yaml"
    old.write_text(content)
    result = CliRunner().invoke(cli, ["convert", str(old), "--env", "bad", "--project-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "Error:" in result.output
    assert not (tmp_path / "conf").exists()


def test_cli_rejects_unusable_env_name(tmp_path):
    result = CliRunner().invoke(cli, ["convert", str(_old_file(tmp_path)), "--env", "base",
                                      "--project-dir", str(tmp_path)])
    assert result.exit_code != 0 and not (tmp_path / "conf").exists()


def test_cli_run_converts_then_runs_kedro(tmp_path, monkeypatch):
    calls = []

    class Done:
        returncode = 3

    def fake_run(command, cwd, env, check):
        calls.append((command, cwd, env["KEDRO_ENV"]))
        return Done()

    monkeypatch.setattr("rom_pipeline.cli.legacy.subprocess.run", fake_run)
    old = _old_file(tmp_path)
    runner = CliRunner()
    args = ["run", str(old), "--project-dir", str(tmp_path), "--pipelines=mvar", "--runner", "SequentialRunner"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 3, result.output  # kedro's exit status is passed on
    assert calls == [([sys.executable, "-m", "kedro", "run", "--env", "tiny_legacy", "--pipelines=mvar",
                       "--runner", "SequentialRunner"], Path(tmp_path), "tiny_legacy")]
    assert (tmp_path / "conf/tiny_legacy/parameters.yml").is_file()
    again = runner.invoke(cli, args)  # identical environment: reused
    assert "is up to date" in again.output and len(calls) == 2
    changed = _old_file(tmp_path, {**TINY, "density": {"nx": 20, "ny": 20, "bandwidth": 1.5}})
    refused = runner.invoke(cli, ["run", str(changed), "--project-dir", str(tmp_path)])
    assert refused.exit_code != 0 and "--force" in refused.output and len(calls) == 2


def test_report_summary_counts_every_kind_and_names_the_unsupported():
    report = ["mapped: a = 1 -> b", "ignored: c = 2 (why)", "mapped: d = 3 -> e",
              "unsupported: test_ic.gaussian.extrapolation_variance = [1.5] (not supported)"]
    text, unsupported = report_summary(report)
    assert text == ("Summary: 1 ignored, 2 mapped, 1 unsupported (cannot be honoured: "
                    "test_ic.gaussian.extrapolation_variance)")
    assert unsupported == ["test_ic.gaussian.extrapolation_variance"]
    assert report_summary(report[:2]) == ("Summary: 1 ignored, 1 mapped", [])


def test_cli_convert_ends_with_the_summary_line(tmp_path):
    result = CliRunner().invoke(cli, ["convert", str(_old_file(tmp_path)), "--env", "mine",
                                      "--project-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    summary = [line for line in result.stdout.splitlines() if line.startswith("Summary: ")]
    assert summary == [report_summary(convert_legacy(TINY)[1])[0]]
    assert "unsupported" not in summary[0]


@needs_seed
@pytest.mark.parametrize("command", ["convert", "run"])
def test_cli_stops_when_settings_cannot_be_honoured_unless_allow_partial(tmp_path, monkeypatch, command):
    calls = []

    class Done:
        returncode = 0

    monkeypatch.setattr("rom_pipeline.cli.legacy.subprocess.run", lambda *a, **k: calls.append(a) or Done())
    old = str(SEED / "best_run_extended_test.yaml")
    args = [command, old, "--env", "partial", "--project-dir", str(tmp_path)]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1
    assert "4 setting(s) of the old file cannot be honoured" in refused.output
    assert "--allow-partial" in refused.output
    assert "4 unsupported (cannot be honoured: test_ic.gaussian.extrapolation_" in refused.stdout
    assert not (tmp_path / "conf").exists() and calls == []
    allowed = CliRunner().invoke(cli, [*args, "--allow-partial"])
    assert allowed.exit_code == 0, allowed.output
    assert (tmp_path / "conf" / "partial" / "parameters.yml").is_file()
    assert len(calls) == (1 if command == "run" else 0)
