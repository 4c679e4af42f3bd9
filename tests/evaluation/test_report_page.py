"""The one-page report: the table's numbers, the figures and animations it links, lead windows."""
from __future__ import annotations

from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from rom_pipeline.evaluation.report import comparison_markdown, comparison_table
from rom_pipeline.evaluation.report_page import PageFigure, lead_window_table, report_page_html


class _Collector(HTMLParser):
    """Table cells, image sources, link targets and headings of a page."""

    def __init__(self):
        super().__init__()
        self.cells, self.images, self.links, self.h2 = [], [], [], []
        self._cell = self._h2 = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("td", "th"):
            self._cell = ""
        elif tag == "h2":
            self._h2 = ""
        elif tag == "img":
            self.images.append(attrs["src"])
        elif tag == "a" and not attrs["href"].startswith("#"):
            self.links.append(attrs["href"])

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._h2 is not None:
            self._h2 += data

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.cells.append(self._cell.strip())
            self._cell = None
        elif tag == "h2":
            self.h2.append(self._h2)
            self._h2 = None


def _results() -> pd.DataFrame:
    rows = []
    for model, values in (("MVAR", (0.9, 0.7, 0.5)), ("LSTM", (0.8, 0.6, 0.4))):
        for run, value in enumerate(values):
            rows.append(dict(
                model=model, run_id=f"test_{run:03d}", family="gaussian" if run < 2 else "uniform",
                shift_mode="oracle", r2_pooled=value, rel_l2_mean=1 - value, valid_time=float(run),
                mass_violation_max=0.0, r2_snapshot_mean=value, diverged=False,
                r2_lead_0_2=value + 0.05, r2_lead_2_end=value - 0.1 * run,
            ))
    return pd.DataFrame(rows)


def _parse(page: str) -> _Collector:
    collector = _Collector()
    collector.feed(page)
    return collector


def test_page_holds_the_comparison_table_numbers_figures_and_animations():
    results = _results()
    markdown = comparison_markdown(comparison_table(results, shift_mode="oracle"), metrics=("r2_pooled",))
    figures = [PageFigure("R²(t) curves", "../figures/r2_curves.png", "curves"),
               PageFigure("Snapshot grid", "../figures/snapshot_grid.png", "grid & <more>")]
    page = report_page_html("Experiment <gas>", "# Model comparison\n\n" + markdown, figures,
                            animations=[("test_000 (GIF)", "animations/test_000_gaussian.gif")],
                            facts={"POD modes r": "19"})
    parsed = _parse(page)
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Experiment &lt;gas&gt;</title>" in page  # escaped
    # the Markdown table became an HTML table with the same cells: MVAR gaussian 0.8 ± 0.141
    assert ["model", "family", "n_runs", "n_diverged", "r2_pooled"] == parsed.cells[:5]
    row = parsed.cells.index("MVAR")
    assert parsed.cells[row: row + 5] == ["MVAR", "gaussian", "2", "0", f"0.800 ± {np.std([0.9, 0.7], ddof=1):.3f}"]
    assert "MVAR uniform" not in page and ["MVAR", "uniform", "1", "0", "0.500"] in [
        parsed.cells[i: i + 5] for i in range(len(parsed.cells))
    ]
    assert parsed.images == ["../figures/r2_curves.png", "../figures/snapshot_grid.png"]
    assert "animations/test_000_gaussian.gif" in parsed.links
    assert parsed.h2 == ["Comparison table", "R²(t) curves", "Snapshot grid", "Animations"]
    assert "grid &amp; &lt;more&gt;" in page
    assert "<h3>Model comparison</h3>" in page  # the Markdown's heading sits under the section
    with pytest.raises(ValueError, match="title"):
        report_page_html(" ", markdown, figures)


def test_lead_window_table_means_per_model_and_is_empty_without_windows():
    table = lead_window_table(_results(), shift_mode="oracle")
    assert list(table.columns) == ["0–2 s", "2 s–end"]
    assert list(table.index) == ["MVAR", "LSTM"]
    assert table.loc["MVAR", "0–2 s"] == pytest.approx(np.mean([0.95, 0.75, 0.55]))
    assert table.loc["LSTM", "2 s–end"] == pytest.approx(np.mean([0.8, 0.5, 0.2]))
    assert lead_window_table(_results(), shift_mode="hold").dropna().empty
    no_windows = _results().drop(columns=["r2_lead_0_2", "r2_lead_2_end"])
    assert lead_window_table(no_windows).empty
    page = report_page_html("x", "| a |\n| --- |\n| 1 |\n", [], lead_windows=table)
    parsed = _parse(page)
    assert "Skill by lead time" in parsed.h2
    row = parsed.cells.index("LSTM")
    assert parsed.cells[row: row + 3] == ["LSTM", f"{np.mean([0.85, 0.65, 0.45]):.3f}", "0.500"]
    assert "Skill by lead time" not in _parse(report_page_html("x", "", [], lead_windows=pd.DataFrame())).h2
