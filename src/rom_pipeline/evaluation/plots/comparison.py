"""Figures comparing forecasters on the test runs: R²(t), snapshots, metric bars, order parameters."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rom_pipeline.evaluation.plots._common import (
    DENSITY_CMAP,
    ERROR_CMAP,
    POD_CEILING_LABEL,
    _check_movies,
    _colour_limits,
    _grid_shape,
    _image,
)
from rom_pipeline.evaluation.protocol import SHIFT_MODE_SHORT
from rom_pipeline.evaluation.report import (
    ALL_FAMILIES,
    _require_columns,
    comparison_table,
    select_shift_mode,
)

_R2_CURVE_COLUMNS = ("model", "run_id", "family", "shift_mode", "time")
FORECAST_START_LABEL = "forecast start"
OFF_SCALE_LABEL = "below the axis"
R2_FLOOR = -1.0
METRIC_LABELS = {
    "r2_pooled": "pooled R²",
    "r2": "R²(t)",
    "r2_cumulative": "cumulative R²(0..t)",
    "r2_pod_ceiling": "POD ceiling R²(t)",
    "rel_l2": "relative L2 error",
}



def _mode_name(mode: str) -> str:
    """A shift mode's honest short name with its key, e.g. ``true track (oracle)``."""
    return f"{SHIFT_MODE_SHORT.get(mode, mode)} ({mode})"

def forecast_start_time(rows: pd.DataFrame) -> float:
    """The time [s] of the first forecast frame: ``min(time - lead_time)`` when the table has
    ``lead_time`` (lead 0 is the forecast start), else the earliest ``time``."""
    times = rows["time"].to_numpy(float)
    if "lead_time" in rows.columns:
        starts = times - rows["lead_time"].to_numpy(float)
        if np.isfinite(starts).any():
            return float(np.nanmin(starts))
    return float(np.nanmin(times))


def plot_r2_curves(
    r2_vs_time: pd.DataFrame, shift_mode: str | None = "oracle", metric: str = "r2", by: str = "family"
) -> Figure:
    """Forecast quality against time, every model on the same axes.

    For each panel (an IC family, or a single run when ``by="run_id"``) and each model the
    line is the mean over that panel's runs of ``metric`` at each time. For ``metric="r2"``
    the POD ceiling (R²(t) of the projected-and-lifted truth, model-independent) is drawn
    dashed, averaged over the same runs. A vertical line marks the forecast start
    (:func:`forecast_start_time`). R² axes stop at R² = −1 so one diverging model does not
    flatten the others; the line data are not clipped, and the times where a curve lies
    below the axis are marked by downward triangles on the axis floor, so no curve leaves
    the panel silently.

    Args:
        r2_vs_time: long table with columns model, run_id, family, shift_mode, time, and
            ``metric`` (plus ``r2_pod_ceiling`` for the ceiling, ``lead_time`` for the
            forecast start).
        shift_mode: the shift mode to plot; ``None`` if the table holds only one.
        metric: the column to plot (``"r2"``, ``"r2_cumulative"``, ``"rel_l2"``, ...).
        by: ``"family"`` (one panel per IC family) or ``"run_id"`` (one panel per run).

    Returns:
        Figure with one axes per panel value in sorted order; each axes has one line per
        model labelled with the model name (xdata: sorted times, ydata: mean ``metric``),
        for ``"r2"`` a dashed line labelled ``"POD ceiling"``, a vertical line labelled
        ``"forecast start"`` at the forecast start time, and, when a curve dips below the
        floor, a marker line labelled ``"<model> below the axis"``.
    """
    _require_columns(r2_vs_time, [*_R2_CURVE_COLUMNS, metric], "r2_vs_time")
    if by not in ("family", "run_id"):
        raise ValueError(f"by must be 'family' or 'run_id', got {by!r}")
    rows = select_shift_mode(r2_vs_time, shift_mode, "r2_vs_time")
    if rows.empty:
        raise ValueError(f"r2_vs_time has no rows for shift_mode={shift_mode!r}")
    draw_ceiling = metric == "r2" and "r2_pod_ceiling" in rows.columns
    panels = sorted(pd.unique(rows[by]), key=str)
    models = list(pd.unique(rows["model"]))
    label = METRIC_LABELS.get(metric, metric)
    t_start = forecast_start_time(rows)
    t_end = float(np.nanmax(rows["time"].to_numpy(float)))
    margin = 0.02 * max(t_end - t_start, 1e-9)
    nrows, ncols = _grid_shape(len(panels), max_cols=2)
    fig = Figure(figsize=(6.5 * ncols, 4.0 * nrows + 0.5), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, panel in zip(axes, panels):
        of_panel = rows[rows[by] == panel]
        curves = {}
        for i, model in enumerate(models):
            of_model = of_panel[of_panel["model"] == model]
            if of_model.empty:
                continue
            curve = of_model.groupby("time", sort=True)[metric].mean()
            curves[model] = (i, curve.index.to_numpy(float), curve.to_numpy(float))
            ax.plot(curves[model][1], curves[model][2], color=f"C{i}", label=str(model))
        if draw_ceiling:
            per_run = of_panel.drop_duplicates(subset=["run_id", "time"])
            ceiling = per_run.groupby("time", sort=True)["r2_pod_ceiling"].mean()
            if ceiling.notna().any():
                ax.plot(
                    ceiling.index.to_numpy(float), ceiling.to_numpy(float), "k--", linewidth=1.2,
                    label=POD_CEILING_LABEL,
                )
        ax.axvline(t_start, color="0.3", linestyle=":", linewidth=1.5,
                   label=f"{FORECAST_START_LABEL} (t = {t_start:.2f} s)")
        if metric.startswith("r2"):
            lows = [np.nanmin(y) for _, _, y in curves.values() if np.isfinite(y).any()]
            bottom = max(R2_FLOOR, min(lows, default=0.0) - 0.05)
            ax.set_ylim(bottom, 1.02)
            for model, (i, t, y) in curves.items():
                below = y < bottom
                if below.any():
                    ax.plot(t[below], np.full(below.sum(), bottom), "v", color=f"C{i}", markersize=4,
                            clip_on=False, label=f"{model} {OFF_SCALE_LABEL}")
        ax.set_xlim(t_start - margin, t_end + margin)
        n_runs = of_panel["run_id"].nunique()
        runs_text = f"{n_runs} run" if n_runs == 1 else f"mean of {n_runs} runs"
        ax.set_title(f"{by} = {panel}" + (f" ({runs_text})" if by == "family" else ""))
        ax.set_xlabel("time since run start [s]")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    fig.suptitle(
        f"Forecast {label} on the unseen test runs, closed loop from the forecast start "
        f"({_mode_name(rows['shift_mode'].iloc[0])})"
    )
    return fig


def _nearest_frames(times: np.ndarray, snapshot_times: Sequence[float]) -> np.ndarray:
    if len(snapshot_times) == 0:
        raise ValueError("snapshot_times is empty; pass the times [s] to show (eval.snapshot_times)")
    step = float(np.median(np.diff(times))) if times.size > 1 else 0.0
    lo, hi = times.min() - 0.5 * abs(step), times.max() + 0.5 * abs(step)
    frames = []
    for t in snapshot_times:
        if not lo <= float(t) <= hi:
            raise ValueError(
                f"snapshot time {t} lies outside the forecast times [{times.min()}, {times.max()}]; "
                "choose snapshot_times inside the forecast window"
            )
        frames.append(int(np.argmin(np.abs(times - float(t)))))
    return np.asarray(frames, dtype=int)


def plot_snapshot_grid(
    truth, predictions: Mapping[str, np.ndarray], times, snapshot_times: Sequence[float], extent=None,
    run_label: str | None = None,
) -> Figure:
    """Truth, each model's forecast and each model's |error| at chosen times.

    Args:
        truth: (T, ny, nx) true density.
        predictions: {model: (T, ny, nx)} forecasts on the same frames.
        times: (T,) times [s] of the frames.
        snapshot_times: times [s] to show; each column shows the frame nearest to it.
        extent: optional ``(x_min, x_max, y_min, y_max)``.
        run_label: the test run shown (e.g. ``"test_000 (gaussian)"``), named in the title.

    Returns:
        Figure with a (1 + 2M) × S grid of image axes (M models, S snapshot times): row 0 the
        truth, rows 1..M the forecasts, rows M+1..2M the |forecast − truth| in model order.
        ``fig.axes[:(1 + 2M) * S]`` are those axes in row-major order; colour bars follow.
    """
    truth, predictions, times = _check_movies(truth, predictions, times)
    frames = _nearest_frames(times, snapshot_times)
    names = list(predictions)
    errors = {name: np.abs(predictions[name][frames] - truth[frames]) for name in names}
    density_limits, error_limits = _colour_limits(truth[frames], list(errors.values()))

    n_rows, n_cols = 1 + 2 * len(names), len(frames)
    fig = Figure(figsize=(2.6 * n_cols + 1.2, 2.4 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    row_fields = [("truth", truth[frames], DENSITY_CMAP, density_limits)]
    row_fields += [(name, predictions[name][frames], DENSITY_CMAP, density_limits) for name in names]
    row_fields += [(f"|error| {name}", errors[name], ERROR_CMAP, error_limits) for name in names]
    density_image = error_image = None
    for row, (label, fields, cmap, limits) in enumerate(row_fields):
        for col in range(n_cols):
            ax = axes[row, col]
            image = _image(ax, fields[col], extent, cmap, limits)
            if row == 0:
                ax.set_title(f"t = {times[frames[col]]:.2f} s")
            if col == 0:
                ax.set_ylabel(label)
            if cmap == DENSITY_CMAP:
                density_image = image
            else:
                error_image = image
    fig.colorbar(density_image, ax=axes[: 1 + len(names), :].ravel().tolist(), label="density", shrink=0.9)
    fig.colorbar(error_image, ax=axes[1 + len(names):, :].ravel().tolist(), label="|error|", shrink=0.9)
    fig.suptitle(
        "Truth, closed-loop forecasts and |forecast − truth|"
        + (f"\ntest run {run_label}" if run_label else "")
        + f", forecast from t = {times[0]:.2f} s"
    )
    return fig


def plot_metric_bars(
    test_results: pd.DataFrame, metric: str = "r2_pooled", shift_mode: str | None = "oracle"
) -> Figure:
    """Grouped bars of one metric: groups are IC families (plus ``"all"`` when there are
    several), one bar per model, height the mean over runs and error bar the std
    (statistics from :func:`~rom_pipeline.evaluation.report.comparison_table`).

    Returns:
        Figure with one axes; ``ax.containers`` holds one BarContainer per model (label = the
        model name) whose bar heights follow the family order on the x tick labels. Bars for a
        family a model was not tested on have height NaN.
    """
    _require_columns(test_results, [metric], "test_results")
    table = comparison_table(test_results, shift_mode=shift_mode)
    families = [f for f in pd.unique(table["family"]) if f != ALL_FAMILIES]
    families = sorted(set(families), key=str)
    if len(families) > 1:
        families.append(ALL_FAMILIES)
    models = list(pd.unique(table["model"]))
    runs_per_family = table.groupby("family")["n_runs"].max().reindex(families)
    x = np.arange(len(families), dtype=float)
    width = 0.8 / len(models)
    fig = Figure(figsize=(max(5.0, 1.6 * len(families) * max(1, len(models) / 2)), 4.0), layout="constrained")
    ax = fig.subplots()
    for i, model in enumerate(models):
        of_model = table[table["model"] == model].set_index("family")
        means = of_model[f"{metric}_mean"].reindex(families).to_numpy(float)
        # A single run has no measured spread: no error bar rather than a bar of height 0.
        single = of_model["n_runs"].reindex(families).to_numpy(float) <= 1
        stds = np.where(single, np.nan, of_model[f"{metric}_std"].reindex(families).to_numpy(float))
        ax.bar(
            x + (i - (len(models) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
            label=str(model), color=f"C{i}",
        )
    ax.set_xticks(x, [
        f"{f}\n({int(n)} run{'' if n == 1 else 's'})" if np.isfinite(n) else str(f)
        for f, n in zip(families, runs_per_family.to_numpy(float))
    ])
    ax.set_xlabel("initial-condition family")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_title(f"{METRIC_LABELS.get(metric, metric)} per family, {_mode_name(shift_mode)}\n"
                 "mean ± std over test runs (no error bar: one run)")
    ax.legend()
    ax.grid(True, axis="y", alpha=0.3)
    return fig


ORDER_PARAMETERS = ("polarisation", "milling", "nematic")


def plot_order_parameters(r2_vs_time: pd.DataFrame, run_id, shift_mode: str | None = "oracle") -> Figure:
    """Order parameters of one test run above each model's R²(t), on a shared time axis.

    The order parameters come from the true particles, so they are the same for every model;
    showing them above R²(t) tells whether forecasts fail at a change of collective state.

    Returns:
        Figure with four axes (shared x): polarisation, milling, nematic (truth, one line each,
        mean over the rows at each time) and R²(t) with one line per model.
    """
    _require_columns(r2_vs_time, ["model", "run_id", "shift_mode", "time", "r2", *ORDER_PARAMETERS], "r2_vs_time")
    of_run = r2_vs_time[r2_vs_time["run_id"] == run_id]
    if of_run.empty:
        raise ValueError(
            f"run_id={run_id!r} not in r2_vs_time; it holds {sorted(pd.unique(r2_vs_time['run_id']), key=str)}"
        )
    of_run = select_shift_mode(of_run, shift_mode, "r2_vs_time")
    fig = Figure(figsize=(9, 8), layout="constrained")
    axes = fig.subplots(len(ORDER_PARAMETERS) + 1, 1, sharex=True)
    for ax, name in zip(axes, ORDER_PARAMETERS):
        series = of_run.groupby("time", sort=True)[name].mean()
        if series.notna().any():
            ax.plot(series.index.to_numpy(float), series.to_numpy(float), color="k", label=name)
        else:
            ax.text(0.5, 0.5, f"{name} not computed", transform=ax.transAxes, ha="center", va="center")
        ax.set_ylabel(name)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(True, alpha=0.3)
    ax_r2 = axes[-1]
    for i, model in enumerate(pd.unique(of_run["model"])):
        curve = of_run[of_run["model"] == model].groupby("time", sort=True)["r2"].mean()
        ax_r2.plot(curve.index.to_numpy(float), curve.to_numpy(float), color=f"C{i}", label=str(model))
    finite = of_run["r2"].to_numpy(float)
    finite = finite[np.isfinite(finite)]
    ax_r2.set_ylim(max(-1.0, (finite.min() if finite.size else 0.0) - 0.05), 1.02)
    ax_r2.set_ylabel("R²(t)")
    ax_r2.set_xlabel("time [s]")
    ax_r2.grid(True, alpha=0.3)
    ax_r2.legend(fontsize="small")
    axes[0].set_title(f"Order parameters and forecast R², run {run_id}")
    return fig
