"""Comparison tables: means/stds against hand-computed values, counts, Markdown, JSON summary."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from rom_pipeline.evaluation.report import (
    METRIC_COLUMNS,
    comparison_markdown,
    comparison_table,
    summary_dict,
)


def _results() -> pd.DataFrame:
    """MVAR on 3 runs (2 gaussian, 1 uniform), LSTM on the same runs; oracle and hold modes."""
    rows = []
    r2 = {
        ("MVAR", 0): 0.9, ("MVAR", 1): 0.7, ("MVAR", 2): 0.5,
        ("LSTM", 0): 0.8, ("LSTM", 1): np.nan, ("LSTM", 2): 0.6,
    }
    rel = {
        ("MVAR", 0): 0.1, ("MVAR", 1): 0.3, ("MVAR", 2): 0.2,
        ("LSTM", 0): 0.4, ("LSTM", 1): 5.0, ("LSTM", 2): 0.25,
    }
    family = {0: "gaussian", 1: "gaussian", 2: "uniform"}
    for mode, offset in (("oracle", 0.0), ("hold", -0.1)):
        for model in ("MVAR", "LSTM"):
            for run in range(3):
                row = {m: 1.0 for m in METRIC_COLUMNS}
                row.update(
                    model=model, run_id=run, family=family[run], shift_mode=mode,
                    r2_pooled=r2[model, run] + offset, rel_l2_mean=rel[model, run],
                    valid_time=float(run + 1), mass_violation_max=0.01 * (run + 1),
                    diverged=(model == "LSTM" and run == 1),
                )
                rows.append(row)
    return pd.DataFrame(rows)


def test_metric_columns_cover_the_evaluation_metrics():
    assert METRIC_COLUMNS[0] == "r2_pooled"
    assert len(METRIC_COLUMNS) == len(set(METRIC_COLUMNS))
    assert "diverged" not in METRIC_COLUMNS and "valid_time" in METRIC_COLUMNS


def test_comparison_table_means_stds_and_counts():
    table = comparison_table(_results(), shift_mode="oracle")
    assert list(table[["model", "family"]].itertuples(index=False, name=None)) == [
        ("MVAR", "gaussian"), ("MVAR", "uniform"), ("MVAR", "all"),
        ("LSTM", "gaussian"), ("LSTM", "uniform"), ("LSTM", "all"),
    ]
    t = table.set_index(["model", "family"])
    # MVAR gaussian: runs 0, 1 -> mean 0.8, sample std sqrt(((0.1)^2 + (0.1)^2) / 1)
    assert t.loc[("MVAR", "gaussian"), "r2_pooled_mean"] == pytest.approx(0.8)
    assert t.loc[("MVAR", "gaussian"), "r2_pooled_std"] == pytest.approx(math.sqrt(0.02))
    # single run -> std 0
    assert t.loc[("MVAR", "uniform"), "r2_pooled_mean"] == pytest.approx(0.5)
    assert t.loc[("MVAR", "uniform"), "r2_pooled_std"] == 0.0
    # all: 0.9, 0.7, 0.5 -> mean 0.7, std 0.2
    assert t.loc[("MVAR", "all"), "r2_pooled_mean"] == pytest.approx(0.7)
    assert t.loc[("MVAR", "all"), "r2_pooled_std"] == pytest.approx(0.2)
    # LSTM: NaN in run 1 is skipped; gaussian keeps only 0.8 (std 0), all = {0.8, 0.6}
    assert t.loc[("LSTM", "gaussian"), "r2_pooled_mean"] == pytest.approx(0.8)
    assert t.loc[("LSTM", "gaussian"), "r2_pooled_std"] == 0.0
    assert t.loc[("LSTM", "all"), "r2_pooled_mean"] == pytest.approx(0.7)
    assert t.loc[("LSTM", "all"), "r2_pooled_std"] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    # rel_l2 of the diverged run is not NaN, so it stays in the mean
    assert t.loc[("LSTM", "all"), "rel_l2_mean_mean"] == pytest.approx((0.4 + 5.0 + 0.25) / 3)
    # counts: NaN and diverged rows are still runs
    assert t.loc[("LSTM", "gaussian"), "n_runs"] == 2
    assert t.loc[("LSTM", "gaussian"), "n_diverged"] == 1
    assert t.loc[("LSTM", "all"), "n_diverged"] == 1
    assert t.loc[("MVAR", "all"), "n_runs"] == 3 and t.loc[("MVAR", "all"), "n_diverged"] == 0
    for metric in METRIC_COLUMNS:
        assert f"{metric}_mean" in table.columns and f"{metric}_std" in table.columns


def test_comparison_table_selects_shift_mode_and_handles_missing_metric():
    results = _results().drop(columns=["nematic_mean"])
    hold = comparison_table(results, shift_mode="hold").set_index(["model", "family"])
    assert hold.loc[("MVAR", "all"), "r2_pooled_mean"] == pytest.approx(0.6)
    assert hold.loc[("MVAR", "all"), "n_runs"] == 3
    assert np.isnan(hold.loc[("MVAR", "all"), "nematic_mean_mean"])
    # all-NaN metric -> NaN mean and std
    results["milling_mean"] = np.nan
    t = comparison_table(results, shift_mode="oracle")
    assert t["milling_mean_mean"].isna().all() and t["milling_mean_std"].isna().all()


def test_comparison_table_rejects_ambiguous_or_unknown_shift_mode():
    with pytest.raises(ValueError, match="several shift modes"):
        comparison_table(_results())
    with pytest.raises(ValueError, match="extrapolate"):
        comparison_table(_results(), shift_mode="extrapolate")
    one_mode = _results().query("shift_mode == 'oracle'")
    assert len(comparison_table(one_mode)) == 6
    with pytest.raises(ValueError, match="family"):
        comparison_table(_results().drop(columns=["family"]), shift_mode="oracle")


def test_comparison_markdown_formats_mean_pm_std_and_best_model():
    table = comparison_table(_results(), shift_mode="oracle")
    text = comparison_markdown(table, metrics=("r2_pooled", "rel_l2_mean", "polarisation_mean"), digits=3)
    lines = text.strip().splitlines()
    assert lines[0] == "| model | family | n_runs | n_diverged | r2_pooled | rel_l2_mean | polarisation_mean |"
    assert set(lines[1].replace("|", "").split()) <= {"---", "---:"}
    assert "| MVAR | all | 3 | 0 | 0.700 ± 0.200 | 0.200 ± 0.100 | 1.000 ± 0.000 |" in lines
    assert "| LSTM | gaussian | 2 | 1 | 0.800 ± 0.000 | 2.700 ± 3.253 |" in " ".join(lines)
    best = [line for line in lines if line.startswith("Best")]
    assert len(best) == 1
    # r2 ties at 0.7 -> the first model wins; lower rel_l2 wins (MVAR 0.2 vs LSTM 1.883)
    assert "r2_pooled: MVAR (0.700)" in best[0]
    assert "rel_l2_mean: MVAR (0.200)" in best[0]
    assert "polarisation_mean" not in best[0]  # no preferred direction
    assert len([line for line in lines if line.startswith("| ")]) == 2 + len(table)  # header, rule, rows


def test_comparison_markdown_nan_cells_and_bad_metric():
    results = _results()
    results["valid_time"] = np.nan
    table = comparison_table(results, shift_mode="oracle")
    text = comparison_markdown(table, metrics=("valid_time",), digits=2)
    assert "| MVAR | all | 3 | 0 | n/a |" in text
    assert "valid_time: n/a" in text
    with pytest.raises(ValueError, match="r2_bogus"):
        comparison_markdown(table, metrics=("r2_bogus",))


def test_comparison_markdown_single_run_family_shows_the_value_without_spread():
    table = comparison_table(_results(), shift_mode="oracle")
    text = comparison_markdown(table, metrics=("r2_pooled", "rel_l2_mean"), digits=3)
    # uniform has one run per model: no "± 0.000" pretending a measured spread
    assert "| MVAR | uniform | 1 | 0 | 0.500 | 0.200 |" in text
    assert "| LSTM | uniform | 1 | 0 | 0.600 | 0.250 |" in text
    assert "| MVAR | gaussian | 2 | 0 | 0.800 ± 0.141 | 0.200 ± 0.141 |" in text


def test_summary_dict_is_json_ready_and_merges_extra():
    results = _results()
    results.loc[(results["model"] == "LSTM") & (results["shift_mode"] == "hold"), "r2_pooled"] = np.nan
    summary = summary_dict(results, {"experiment": "tiny", "n_modes": 7})
    assert summary["experiment"] == "tiny" and summary["n_modes"] == 7
    mvar = summary["models"]["MVAR"]
    assert mvar["r2_pooled_mean"]["oracle"] == pytest.approx(0.7)
    assert mvar["r2_pooled_mean"]["hold"] == pytest.approx(0.6)
    assert mvar["n_runs"] == 3
    lstm = summary["models"]["LSTM"]
    assert lstm["r2_pooled_mean"]["hold"] is None
    assert lstm["n_diverged"] == {"oracle": 1, "hold": 1}
    json.loads(json.dumps(summary, allow_nan=False))
    with pytest.raises(ValueError, match="models"):
        summary_dict(results, {"models": 1})
