"""Thin nodes of the comparison report (the science is in :mod:`rom_pipeline.evaluation`).

Every node takes the per-model outputs as a variable number of inputs, and reads the model's name
from the data itself, so a new model needs no change here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rom_pipeline import __version__
from rom_pipeline.config import validate_parameters
from rom_pipeline.datasets.runs import RunCollection
from rom_pipeline.evaluation import plots, plots_skill, protocol, report, report_page
from rom_pipeline.evaluation.protocol import evaluate_many
from rom_pipeline.framework import lineage
from rom_pipeline.pipelines.models import evaluation_config, test_runs_for_evaluation, training_track_model
from rom_pipeline.rom.baselines import ClimatologyForecaster, PersistenceForecaster
from rom_pipeline.rom.latent import unpack_trajectories
from rom_pipeline.rom.pod import PODBasis


def score_baselines(
    train_latent: dict, pod_basis: dict, test_runs: RunCollection, rom_grid: dict[str, Any],
    forecast_setup: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Climatology (fitted on the training runs' latent trajectories) and persistence, scored on
    every test run and shift mode through the same protocol as the models.

    Returns their ``test_results`` and ``r2_vs_time`` tables (model ``climatology`` /
    ``persistence``)."""
    pod = PODBasis.from_arrays(pod_basis)
    config = evaluation_config(forecast_setup)
    climatology = ClimatologyForecaster().fit(list(unpack_trajectories(train_latent).values()))
    track_model = training_track_model(train_latent, pod, forecast_setup)
    runs = list(test_runs_for_evaluation(test_runs, rom_grid, forecast_setup))
    blocks: dict = {}  # each run's truth side, prepared once for both baselines
    results, curves = [], []
    for baseline in (climatology, PersistenceForecaster()):
        table, r2_t, _ = evaluate_many(baseline, pod, runs, config, track_model=track_model,
                                       blocks=blocks)
        results.append(table)
        curves.append(r2_t)
    return pd.concat(results, ignore_index=True), pd.concat(curves, ignore_index=True)


def collect_test_results(baseline_test_results: pd.DataFrame, *test_results: pd.DataFrame) -> pd.DataFrame:
    """All models' and the baselines' per-run results in one table, with the skill of every row
    against each baseline (``skill_vs_climatology``, ``skill_vs_persistence``)."""
    table = pd.concat([*test_results, baseline_test_results], ignore_index=True)
    return report.add_skill_scores(table)


#: Human-facing names of the shift modes (the protocol's keys stay for compatibility).
SHIFT_MODE_LABELS = protocol.SHIFT_MODE_LABELS

_HEADLINE = ("r2_pooled", "skill_vs_climatology", "skill_vs_persistence", "r2_latent", "valid_time")


def build_comparison(all_test_results: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Every metric by model × IC family (mean and spread) for each shift mode, as CSV and
    Markdown: one labelled section per shift mode with a headline table (pooled density R²,
    skill against climatology and persistence, latent R², valid time) and a table of the pooled
    R² in each lead-time window."""
    tables, sections = [], []
    leads = [c for c in all_test_results.columns if str(c).startswith(report.LEAD_PREFIX)]
    for mode in dict.fromkeys(all_test_results["shift_mode"]):
        table = report.comparison_table(all_test_results, shift_mode=mode)
        tables.append(table.assign(shift_mode=mode))
        label = SHIFT_MODE_LABELS.get(mode, mode)
        text = f"## {label.split(':')[0]} (shift mode `{mode}`)\n\n{label}.\n\n"
        text += report.comparison_markdown(table, metrics=_HEADLINE)
        if leads:
            text += ("\nPooled density R² by lead time after the forecast start (s):\n\n"
                     + report.comparison_markdown(table, metrics=leads))
        sections.append(text)
    intro = ("# Model comparison\n\nskill_vs_<baseline> = 1 − MSE_model / MSE_baseline on the same "
             "test run and shift mode (0: no better than the baseline); the baselines are scored "
             "by the same forecast block as the models.\n\n")
    return pd.concat(tables, ignore_index=True), intro + "\n\n".join(sections) + "\n"


def _primary_shift_mode(frame: pd.DataFrame) -> str:
    """The shift mode figures show: ``oracle`` when present (or ``none`` without alignment)."""
    modes = list(dict.fromkeys(frame["shift_mode"]))
    return "oracle" if "oracle" in modes else modes[0]


def plot_r2_curves(*r2_vs_time: pd.DataFrame) -> Figure:
    """R²(t) of every model and baseline on the same axes, one panel per IC family, with the POD
    ceiling."""
    curves = pd.concat(r2_vs_time, ignore_index=True)
    return plots.plot_r2_curves(curves, shift_mode=_primary_shift_mode(curves))


def ensemble_skill(forecast_setup: dict[str, Any], *r2_vs_time: pd.DataFrame) -> tuple[pd.DataFrame, Figure]:
    """Skill of the lab-frame ensemble per lead window (``eval.lead_windows``) and its figure;
    an empty table and a figure saying so when ``lab_ensemble`` was not scored."""
    settings = forecast_setup["evaluation"]
    curves = pd.concat(r2_vs_time, ignore_index=True)
    if "lab_ensemble" not in set(curves["shift_mode"]):
        fig = Figure(figsize=(6, 2))
        fig.text(0.5, 0.5, "lab_ensemble not scored (eval.shift_modes / rom.shift_align)", ha="center")
        return pd.DataFrame(columns=["model", "lead_start", "lead_end", "n_frames",
                                     *plots_skill.SKILL_COLUMNS]), fig
    edges = tuple(settings["lead_windows"]) or (0.0,)
    table = plots_skill.skill_by_lead(curves, edges, n_members=settings["ensemble_size"])
    return table, plots_skill.plot_skill_vs_lead(table)


def plot_metric_bars(all_test_results: pd.DataFrame) -> Figure:
    return plots.plot_metric_bars(
        all_test_results, metric="r2_pooled", shift_mode=_primary_shift_mode(all_test_results)
    )


def _model_name(summary: dict) -> str:
    return str(summary["model"])


def _movies(test_runs: RunCollection, summaries, predictions):
    """Per test run: truth on the forecast frames and forecast times (as the protocol returned
    them with the first model's predictions), and each model's prediction."""
    for run_id in test_runs:
        preds = {_model_name(s): p[run_id] for s, p in zip(summaries, predictions)}
        times = predictions[0][f"{run_id}__times"]
        truth = np.asarray(predictions[0][f"{run_id}__truth"], dtype=np.float64)
        yield run_id, test_runs[run_id]["family"], truth, preds, times


def snapshot_figures(
    test_runs: RunCollection, rom_grid: dict[str, Any], forecast_setup: dict[str, Any],
    *summaries_and_predictions,
) -> tuple[Figure, dict[str, bytes]]:
    """Truth / each model / |error| snapshot grid for the first test run, and one side-by-side
    animation per IC family (``{"<run_id>_<family>": GIF bytes}``, rendered here; the
    animation dataset writes them)."""
    n = len(summaries_and_predictions) // 2
    summaries, predictions = summaries_and_predictions[:n], summaries_and_predictions[n:]
    extent = (0.0, rom_grid["Lx"], 0.0, rom_grid["Ly"])
    figure = None
    animations: dict[str, bytes] = {}
    animated: set[str] = set()
    for run_id, family, truth, preds, times in _movies(test_runs, summaries, predictions):
        if figure is None:
            snaps = forecast_setup["snapshot_times"] or list(np.linspace(times[0], times[-1], 4))
            snaps = [t for t in snaps if times[0] <= t <= times[-1]] or [times[0], times[-1]]
            figure = plots.plot_snapshot_grid(truth, preds, times, snaps, extent=extent,
                                              run_label=f"{run_id} ({family})")
        if family not in animated:
            animated.add(family)
            animations[f"{run_id}_{family}"] = plots.comparison_animation_gif(
                truth, preds, times, max_frames=forecast_setup["animation_max_frames"],
                title=f"{run_id} ({family})",
            )
    return figure, animations


def record_parameters(**blocks: dict[str, Any]) -> dict[str, Any]:
    """``config_used.yaml``: the validated parameter tree (every block, defaults filled in)."""
    return validate_parameters(blocks).model_dump(mode="json")


def summarise_experiment(
    all_test_results: pd.DataFrame, pod_summary: dict, forecast_setup: dict[str, Any],
    config_used: dict[str, Any], ensemble_skill_by_lead: pd.DataFrame, *training_summaries: dict,
) -> dict:
    """``summary.json``: models, r, lags, mean R² per model, the lab-frame ensemble's skills per
    lead window, training times, and the lineage of its numbers (from the parameters recorded in
    ``config_used``)."""
    cfg = validate_parameters(config_used)
    extra = {
        "rom_pipeline_version": __version__,
        "pod": pod_summary,
        "forecast_start": forecast_setup["evaluation"]["forecast_start"],
        "test_horizon": forecast_setup["test_horizon"],
        "lead_windows": list(forecast_setup["evaluation"]["lead_windows"]),
        "baselines": list(report.BASELINES),
        "shift_mode_labels": {m: SHIFT_MODE_LABELS[m] for m in
                              dict.fromkeys(all_test_results["shift_mode"])
                              if m in SHIFT_MODE_LABELS},
        "n_train_runs": cfg.train_ic.run_count("train_ic"),
        "n_test_runs": cfg.test_ic.run_count("test_ic"),
    }
    summary = report.summary_dict(all_test_results, extra, skill_by_lead=ensemble_skill_by_lead)
    for training in training_summaries:
        summary["models"].setdefault(training["model"], {})["training"] = training
    summary["lineage"] = _summary_lineage(cfg, [t["model"] for t in training_summaries])
    return summary


def _summary_lineage(cfg, models: list[str]) -> dict[str, str]:
    """What ``summary.json`` was built from: the fingerprint of the validated parameters and the
    lineage fingerprint (:mod:`rom_pipeline.framework.lineage`) of each artifact behind its numbers, equal to
    the one stamped inside that artifact."""
    records = lineage.expected_records(cfg)
    names = ["pod_basis", "latent_dataset"]
    for model in models:
        names += [f"{model.lower()}.model", f"{model.lower()}.predictions"]
    return {"parameters": lineage.fingerprint(cfg.model_dump(mode="json")),
            **{name: lineage.fingerprint(records[name]) for name in names if name in records}}


# Figures on the report page, linked relative to data/<experiment>/report/index.html; the files
# are where conf/base/catalog_*.yml writes the matching "*_plot" datasets.
REPORT_FIGURES = (
    report_page.PageFigure(
        "R²(t) curves", "../figures/r2_curves.png",
        "Forecast R²(t) of every model against the truth, mean over the test runs of each "
        "initial-condition family; dashed: the POD ceiling (the truth projected on the basis).",
    ),
    report_page.PageFigure(
        "Snapshot grid", "../figures/snapshot_grid.png",
        "Truth, each model's forecast and its |error| at the snapshot times (first test run).",
    ),
    report_page.PageFigure(
        "Pooled R² by family", "../figures/metric_bars.png",
        "Pooled R² of each model per initial-condition family, mean ± std over test runs.",
    ),
)
# The skill-versus-lead figure of the lab-frame ensemble ("ensemble_skill_plot"), shown when the
# results hold that shift mode, i.e. when the figure has data.
SKILL_FIGURE_SHIFT_MODE = "lab_ensemble"
SKILL_FIGURE = report_page.PageFigure(
    "Skill versus lead time", "../figures/ensemble_skill.png",
    "Skill of the lab-frame ensemble against the lead time since the forecast start, per model "
    "(CRPS and energy-score skill against climatology and the held track).",
)


def build_report_page(
    comparison_markdown: str, all_test_results: pd.DataFrame, comparison_animations: list, summary: dict
) -> str:
    """``report/index.html``: headline facts, the comparison table, the lead-window R² (when
    scored), the R²(t) curves, the skill-versus-lead figure (when the results hold the
    lab-frame ensemble), the snapshot grid and links to the animations (the files the
    animation dataset lists)."""
    mode = _primary_shift_mode(all_test_results)
    lead_windows = report_page.lead_window_table(all_test_results, shift_mode=mode)
    figures = list(REPORT_FIGURES)
    if SKILL_FIGURE_SHIFT_MODE in set(all_test_results["shift_mode"]):
        figures.insert(1, SKILL_FIGURE)
    facts = {
        "models": ", ".join(summary["models"]),
        "POD modes r": f"{summary['pod']['n_modes']} ({summary['pod']['energy_captured']:.4f} of the energy)",
        "forecast start": f"{summary['forecast_start']:g} s of {summary['test_horizon']:g} s",
        "runs": f"{summary['n_train_runs']} training, {summary['n_test_runs']} test",
        "figures' shift mode": protocol.SHIFT_MODE_LABELS.get(mode, mode),
    }
    for model, entry in summary["models"].items():
        # pooled density R² and skill against the climatology in every scored shift mode
        facts[f"{model} pooled R² (skill vs climatology)"] = "; ".join(
            f"{protocol.SHIFT_MODE_SHORT.get(m, m)} "
            + ("n/a" if r2 is None else f"{r2:.3f}")
            + ("" if entry.get("skill_vs_climatology_mean", {}).get(m) is None
               else f" ({entry['skill_vs_climatology_mean'][m]:.3f})")
            for m, r2 in entry.get("r2_pooled_mean", {}).items()
        ) or "n/a"
    animations = [(f"{path.stem} (GIF)", f"animations/{path.name}") for path in map(Path, comparison_animations)]
    return report_page.report_page_html(
        "Forecast comparison report", comparison_markdown, figures, animations, facts, lead_windows
    )
