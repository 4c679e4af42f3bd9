"""The report-page node: which figures it links, from what data (no Kedro run needed)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from rom_pipeline.pipelines.evaluation import nodes

SUMMARY = {
    "models": {"MVAR": {"r2_pooled_mean": {"oracle": 0.8421, "hold": -0.5},
                        "skill_vs_climatology_mean": {"oracle": 0.3125, "hold": None}},
               "LSTM": {"r2_pooled_mean": {"oracle": None}}},
    "pod": {"n_modes": 19, "energy_captured": 0.99},
    "forecast_start": 0.6, "test_horizon": 50.0, "n_train_runs": 40, "n_test_runs": 8,
}


def _results(modes) -> pd.DataFrame:
    return pd.DataFrame([
        {"model": m, "run_id": "test_000", "family": "gaussian", "shift_mode": mode, "r2_pooled": 0.5}
        for m in ("MVAR", "LSTM") for mode in modes
    ])


def test_report_node_links_figures_animations_and_skill_only_with_its_data():
    gifs = [Path("/data/x/report/animations/test_000_gaussian.gif"), Path("/elsewhere/test_001_ring.gif")]
    page = nodes.build_report_page("| a |\n| --- |\n| 1 |\n", _results(["oracle", "hold"]), gifs, SUMMARY)
    assert 'href="animations/test_000_gaussian.gif"' in page and 'href="animations/test_001_ring.gif"' in page
    for figure in nodes.REPORT_FIGURES:
        assert f'<img src="{figure.href}"' in page
    assert nodes.SKILL_FIGURE.href not in page  # no lab-frame ensemble rows: no empty figure
    # every shift mode under its honest short name, with the skill against the climatology
    assert "<dd>true track 0.842 (0.312); track held -0.500</dd>" in page
    assert "LSTM pooled R² (skill vs climatology)</dt><dd>true track n/a</dd>" in page
    assert "<dd>19 (0.9900 of the energy)</dd>" in page
    with_ensemble = nodes.build_report_page("", _results(["oracle", nodes.SKILL_FIGURE_SHIFT_MODE]), gifs, SUMMARY)
    assert f'<img src="{nodes.SKILL_FIGURE.href}"' in with_ensemble
    # the figures' shift mode is oracle whenever present
    assert "figures&#x27; shift mode</dt><dd>co-moving shape (true track)" in with_ensemble
