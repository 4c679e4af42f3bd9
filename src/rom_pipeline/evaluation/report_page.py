"""The one-page report of an experiment: one self-describing HTML file (no Kedro, no I/O).

The page gathers what a reader opens first: the headline facts, the comparison table (the same
Markdown as ``comparison_table.md``, rendered), the R²(t) curves, the skill-versus-lead curve
and its numbers when the results hold lead-window scores, the snapshot grid, the metric bars
and links to the truth-versus-forecast animations. Figures and animations are linked by
relative paths, so the page opens from ``data/<experiment>/report/index.html`` in any browser
and stays valid when the experiment folder is moved or copied as a whole.
"""
from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from markdown_it import MarkdownIt

LEAD_WINDOW_PREFIX = "r2_lead_"

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; max-width: 1200px;
       margin: 1.5em auto; padding: 0 1em; color: #222; line-height: 1.4; }
h1 { margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; }
th { background: #f3f3f3; } td { font-variant-numeric: tabular-nums; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 0.15em 1em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
ul.animations li { margin: 0.2em 0; }
nav a { margin-right: 1em; }
"""


@dataclass(frozen=True)
class PageFigure:
    """One figure of the page: a section heading, the image's relative link and a caption."""

    heading: str
    href: str
    caption: str


def lead_window_table(test_results: pd.DataFrame, shift_mode: str | None = None) -> pd.DataFrame:
    """Mean pooled R² per model in each lead-time window (columns ``r2_lead_<a>_<b>``).

    Args:
        test_results: one row per (model, run, shift mode) with ``model`` and any number of
            ``r2_lead_*`` columns.
        shift_mode: keep only these rows (when the table has a ``shift_mode`` column).

    Returns:
        One row per model (first-appearance order) and one column per lead window, renamed
        ``"<a>–<b> s"`` (``"<a> s–end"``), each the NaN-aware mean over runs; an empty frame
        when the results hold no lead-window column.
    """
    columns = [c for c in test_results.columns if str(c).startswith(LEAD_WINDOW_PREFIX)]
    if not columns:
        return pd.DataFrame()
    rows = test_results
    if shift_mode is not None and "shift_mode" in rows.columns:
        rows = rows[rows["shift_mode"] == shift_mode]
    table = rows.groupby("model", sort=False)[columns].mean()

    def label(column: str) -> str:
        a, b = column[len(LEAD_WINDOW_PREFIX):].split("_", 1)
        return f"{a} s–end" if b == "end" else f"{a}–{b} s"

    return table.rename(columns={c: label(c) for c in columns})


def _table_html(table: pd.DataFrame, digits: int = 3) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in [table.index.name or "", *table.columns])
    body = []
    for index, row in table.iterrows():
        cells = [f"<td>{html.escape(str(index))}</td>"]
        cells += [f"<td>{'n/a' if not np.isfinite(v) else f'{v:.{digits}f}'}</td>" for v in row.to_numpy(float)]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def report_page_html(
    title: str,
    comparison_markdown: str,
    figures: Sequence[PageFigure],
    animations: Sequence[tuple[str, str]] = (),
    facts: Mapping[str, str] | None = None,
    lead_windows: pd.DataFrame | None = None,
) -> str:
    """The report page as a complete HTML5 document.

    Args:
        title: the page title (the experiment's name).
        comparison_markdown: the comparison table(s) in GitHub Markdown, rendered as HTML
            tables (Markdown headings become sub-headings of the table section).
        figures: the figures, in page order; each gets a section, an ``<img>`` and a caption.
        animations: ``(label, href)`` of each animation, listed as links.
        facts: headline facts (``{"POD modes r": "19", ...}``) shown as a list under the title.
        lead_windows: :func:`lead_window_table` output, shown as a table when not empty.

    Returns:
        The document text. Every text value is HTML-escaped; links are used as given.
    """
    if not str(title).strip():
        raise ValueError("title is empty; pass the experiment's name")
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    # Demote the Markdown's headings by two levels: they sit under the page's own <h2> section.
    table_html = md.render(re.sub(r"^(#{1,4}) ", r"##\1 ", comparison_markdown, flags=re.MULTILINE))
    sections = [("Comparison table", table_html)]
    if lead_windows is not None and not lead_windows.empty:
        sections.append((
            "Skill by lead time",
            "<p>Mean pooled R² of the forecast frames in each lead-time window (time since the "
            "forecast start), over the test runs.</p>" + _table_html(lead_windows.rename_axis("model")),
        ))
    for figure in figures:
        sections.append((
            figure.heading,
            f'<figure><a href="{html.escape(figure.href, quote=True)}">'
            f'<img src="{html.escape(figure.href, quote=True)}" alt="{html.escape(figure.heading, quote=True)}">'
            f"</a><figcaption>{html.escape(figure.caption)}</figcaption></figure>",
        ))
    if animations:
        items = "".join(
            f'<li><a href="{html.escape(href, quote=True)}">{html.escape(label)}</a></li>'
            for label, href in animations
        )
        sections.append((
            "Animations",
            "<p>Truth beside each model's forecast with the |error| underneath, one GIF per "
            f'initial-condition family.</p><ul class="animations">{items}</ul>',
        ))
    facts_html = ""
    if facts:
        facts_html = '<dl class="facts">' + "".join(
            f"<dt>{html.escape(str(k))}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts.items()
        ) + "</dl>"
    nav = "<nav>" + "".join(f'<a href="#{_slug(h)}">{html.escape(h)}</a>' for h, _ in sections) + "</nav>"
    body = "".join(f'<section id="{_slug(h)}"><h2>{html.escape(h)}</h2>{content}</section>'
                   for h, content in sections)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>{facts_html}{nav}{body}</body></html>\n"
    )
