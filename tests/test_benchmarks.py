"""Smoke tests: every benchmark runs in its ``--quick`` mode and prints its figure and ratio."""
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PROJECT

# bench_lstm_regime.py has two steps instead of a --quick mode: check_lstm_regime runs both.
BENCHES = sorted(p.name for p in (PROJECT / "benchmarks").glob("bench_*.py")
                 if p.name != "bench_lstm_regime.py")


@pytest.mark.slow
@pytest.mark.parametrize("bench", BENCHES)
def test_benchmark_quick_mode_runs(bench: str, tmp_path: Path):
    args = [sys.executable, str(PROJECT / "benchmarks" / bench), "--quick"]
    if bench == "bench_thesis_regime.py":  # the tiny environment, end to end
        args += ["test", "--data-root", str(tmp_path)]
    proc = subprocess.run(args, cwd=PROJECT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    # each benchmark prints its ratio against the baseline it measured, e.g. "14.0x" or "23–46×"
    assert re.search(r"\d+(\.\d+)?\s*[x×]", out), out[-2000:]
    if bench == "bench_thesis_regime.py":
        check_regime_analysis(tmp_path)
        check_lstm_variant(tmp_path)
        check_lstm_regime(tmp_path)


def check_lstm_regime(data_root: Path):
    """bench_lstm_regime.py refits the environment's own LSTM from its stored latent set, then
    scores it with the evaluation protocol: on the CPU, seeded, that is the model the lstm
    pipeline trained, so every shift mode's mean pooled R² equals the pipeline's own."""
    script = [sys.executable, str(PROJECT / "benchmarks" / "bench_lstm_regime.py")]
    model, record, report = data_root / "m.pt", data_root / "fit.json", data_root / "report.md"
    fit = subprocess.run(script + ["fit", "test", "--latent",
                                   str(data_root / "test" / "rom_common" / "latent_dataset.npz"),
                                   "--device", "cpu", "--out", str(model), "--record", str(record)],
                         cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert fit.returncode == 0, fit.stdout[-3000:] + fit.stderr[-3000:]
    fitted = json.loads(record.read_text())
    assert fitted["device"] == "cpu" and fitted["epochs_run"] >= fitted["best_epoch"] >= 0
    scored = subprocess.run(script + ["score", "test", "--model", str(model), "--record", str(record),
                                      "--data-root", str(data_root), "--report", str(report)],
                            cwd=PROJECT, capture_output=True, text=True, timeout=600)
    assert scored.returncode == 0, scored.stdout[-3000:] + scored.stderr[-3000:]
    rows = [line.split("|")[1:-1] for line in report.read_text().splitlines()[6:] if line.startswith("|")]
    ours = {mode.strip(): float(r2) for mode, r2, _ in rows}
    pipeline = pd.read_csv(data_root / "test" / "LSTM" / "test_results.csv")
    expected = pipeline.groupby("shift_mode")["r2_pooled"].mean()
    assert set(ours) == set(expected.index)
    for mode, value in expected.items():
        assert abs(ours[mode] - value) < 5e-5, (mode, ours[mode], value)


def check_lstm_variant(data_root: Path):
    """lstm_variant.py trains the configured LSTM with overrides on the stored data and scores it."""
    script = [sys.executable, str(PROJECT / "experiments" / "lstm_variant.py"), "test"]
    proc = subprocess.run(script + ['{"max_epochs": 1, "differences": true}', "--data-root",
                                    str(data_root)], cwd=PROJECT, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"'differences': True\}: best epoch 1, .*pooled R² mean -?\d", proc.stdout)
    bad = subprocess.run(script + ['{"hidden": 4}', "--data-root", str(data_root)], cwd=PROJECT,
                         capture_output=True, text=True, timeout=600)
    assert bad.returncode != 0 and "unknown LSTM keys ['hidden']" in bad.stderr


def check_regime_analysis(data_root: Path):
    """analyse_regime.py on the data the tiny benchmark left: its unrestricted MVAR refit scores
    exactly what the mvar pipeline scored, every variant gets one mean R² per line, and the time
    bands partition each test run's variance and the MVAR's loss."""
    out = data_root / "analysis.txt"
    proc = subprocess.run(
        [sys.executable, str(PROJECT / "experiments" / "analyse_regime.py"), "test", "--data-root",
         str(data_root), "--ranks", "0,levels", "--alphas", "1e-4", "--thresholds", "0.9",
         "--lags", "1,2", "--floor-after", "3", "--out", str(out)],
        cwd=PROJECT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary, bands = out.read_text().split("\n\n")
    means = {line[:38].strip(): float(line[38:].split()[1]) for line in summary.splitlines()[2:]}
    assert set(means) == {"R² bound (fluctuations after 3 s)", "persistence (last state held)",
                          "MVAR loss share before 3 s", "MVAR loss share after 3 s",
                          "coint_rank 0", "coint_rank levels", "levels, ridge_alpha 1e-4",
                          "levels, eigenvalue_threshold 0.9", "levels, lag 1", "levels, lag 2"}
    pipeline = pd.read_csv(data_root / "test" / "MVAR" / "test_results.csv")
    first_mode = pipeline[pipeline["shift_mode"] == pipeline["shift_mode"].iloc[0]]
    assert means["coint_rank levels"] == pytest.approx(first_mode["r2_pooled"].mean(), abs=5e-4)
    assert means["levels, ridge_alpha 1e-4"] == means["coint_rank levels"]
    # the configured (levels) MVAR loses 1 - R² of each run's variance, split at 3 s
    lost = means["MVAR loss share before 3 s"] + means["MVAR loss share after 3 s"]
    assert lost == pytest.approx(1.0 - means["coint_rank levels"], abs=2e-3)
    # per run: the bands' variance shares sum to 1, their MVAR loss shares to before + after 3 s
    split = {line[:38].strip(): line[38:].split("|")[0].split()[2:] for line in summary.splitlines()[2:]}
    per_run = {name: {fam: float(v) for fam, v in zip(values[::2], values[1::2])}
               for name, values in split.items()}
    header, *rows = bands.strip().splitlines()
    assert header.startswith("per time band of the forecast block (s)")
    table = {(row[:14].strip(), row[15:50].strip()): [float(v) for v in row[50:].split()] for row in rows}
    families = sorted(per_run["MVAR loss share before 3 s"])
    assert families == ["gaussian", "uniform"] and len(table) == 5 * len(families)
    for fam in families:
        assert sum(table[fam, "variance share"]) == pytest.approx(1.0, abs=1e-3)
        assert sum(table[fam, "MVAR loss share"]) == pytest.approx(
            per_run["MVAR loss share before 3 s"][fam] + per_run["MVAR loss share after 3 s"][fam],
            abs=2e-3)
        # the tiny environment's agents move at constant speed 1 (speed_mode constant_with_forces)
        assert table[fam, "mean agent speed"] == pytest.approx([1.0] * len(header.split()[8:]))


@pytest.mark.slow
def test_horizon_experiment_trains_on_longer_runs(tmp_path: Path):
    """horizon_experiment.py changes only sim.T: the training runs end at the new horizon, the
    test runs keep theirs, and the table's MVAR numbers are the mvar pipeline's own scores."""
    script = [sys.executable, str(PROJECT / "experiments" / "horizon_experiment.py"), "test"]
    for bad, message in ((["--train-seconds", "0"], "give a positive horizon"),
                         (["--train-seconds", "4.5", "--stages", ""], "holds no earlier run")):
        proc = subprocess.run(script + bad + ["--data-root", str(tmp_path), "--quick"], cwd=PROJECT,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode != 0 and message in proc.stderr, proc.stderr[-2000:]
        assert not (tmp_path / "test").exists()  # refused before any stage ran
    proc = subprocess.run(script + ["--train-seconds", "4.5", "--data-root", str(tmp_path), "--quick"],
                          cwd=PROJECT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    exp = tmp_path / "test"
    train_end = [np.load(p)["times"][-1] for p in sorted((exp / "train").glob("*/density.npz"))]
    test_end = [np.load(p)["times"][-1] for p in sorted((exp / "test").glob("test_*/density.npz"))]
    assert train_end and np.allclose(train_end, 4.5)  # conf/test trains on 3 s runs
    assert test_end and np.allclose(test_end, 6.0)
    scores = pd.read_csv(exp / "MVAR" / "test_results.csv").query("shift_mode == 'oracle'")
    assert "MVAR trained on 4.5 s runs instead of 3 s" in proc.stdout
    mean_row = next(line for line in proc.stdout.splitlines() if line.startswith("| **mean**"))
    assert float(mean_row.split("|")[2].strip(" *")) == pytest.approx(scores.r2_pooled.mean(), abs=5e-4)
    for family, r2 in scores.groupby("family").r2_pooled.mean().items():
        assert f"| {family} | {r2:.3f} |" in proc.stdout
