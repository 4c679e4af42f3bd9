"""Figures and animations comparing forecasters (plain matplotlib, no Kedro, no pyplot state).

Every ``plot_*`` function builds a fresh :class:`matplotlib.figure.Figure` and returns it; the
caller (a Kedro ``MatplotlibDataset``) saves it. Nothing goes through ``pyplot``, so figures
never leak between calls or need closing.

Density fields are arrays (T, ny, nx) with row index y, drawn with ``origin="lower"``;
``extent`` is matplotlib's ``(x_min, x_max, y_min, y_max)`` of the domain. POD modes are
columns of a (ny*nx, r) matrix, each reshaped in C order to (ny, nx) — the same order as
``density.reshape(T, -1)``.

Colour scales of density comparisons are shared per row type: truth and predictions use the
truth's range (a diverging forecast is clipped rather than washing out the truth), and
``|error|`` runs from 0 to the largest finite error capped at the truth's range.
"""
from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib as mpl
import numpy as np
import pandas as pd
from matplotlib.animation import PillowWriter
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rom_pipeline.evaluation.report import (
    ALL_FAMILIES,
    _require_columns,
    comparison_table,
    select_shift_mode,
)

logger = logging.getLogger(__name__)

DENSITY_CMAP = "viridis"
ERROR_CMAP = "magma"
MODE_CMAP = "RdBu_r"
POD_CEILING_LABEL = "POD ceiling"


# --------------------------------------------------------------------------- helpers
def _as_density_movie(array, argname: str) -> np.ndarray:
    movie = np.asarray(array, dtype=float)
    if movie.ndim != 3:
        raise ValueError(f"{argname} must have shape (T, ny, nx), got {movie.shape}")
    return movie


def _check_movies(truth, predictions: Mapping, times) -> tuple[np.ndarray, dict, np.ndarray]:
    truth = _as_density_movie(truth, "truth")
    if not isinstance(predictions, Mapping) or len(predictions) == 0:
        raise ValueError(
            "predictions must be a non-empty dict {model name: (T, ny, nx) array}, got "
            f"{type(predictions).__name__} of length {len(predictions) if hasattr(predictions, '__len__') else '?'}"
        )
    checked = {}
    for name, movie in predictions.items():
        movie = _as_density_movie(movie, f"predictions[{name!r}]")
        if movie.shape != truth.shape:
            raise ValueError(
                f"predictions[{name!r}] has shape {movie.shape} but truth has {truth.shape}; "
                "score forecasts on the truth's frames and grid"
            )
        checked[str(name)] = movie
    times = np.asarray(times, dtype=float)
    if times.shape != (truth.shape[0],):
        raise ValueError(
            f"times has shape {times.shape}; it needs one time per truth frame, i.e. ({truth.shape[0]},)"
        )
    return truth, checked, times


def _colour_limits(truth: np.ndarray, errors: Sequence[np.ndarray]) -> tuple[tuple, tuple]:
    finite_truth = truth[np.isfinite(truth)]
    if finite_truth.size == 0:
        raise ValueError("truth has no finite values to set a colour scale")
    lo, hi = float(finite_truth.min()), float(finite_truth.max())
    if hi <= lo:
        hi = lo + 1.0
    err_max = 0.0
    for err in errors:
        finite = err[np.isfinite(err)]
        if finite.size:
            err_max = max(err_max, float(finite.max()))
    err_max = min(err_max, hi - lo)
    if err_max <= 0:
        err_max = hi - lo
    return (lo, hi), (0.0, err_max)


def _image(ax: Axes, field: np.ndarray, extent, cmap: str, limits: tuple):
    ax.set_xticks([])
    ax.set_yticks([])
    return ax.imshow(
        field, origin="lower", extent=extent, cmap=cmap, vmin=limits[0], vmax=limits[1],
        aspect="equal" if extent is None else "auto", interpolation="nearest",
    )


def _grid_shape(n: int, max_cols: int = 3) -> tuple[int, int]:
    ncols = min(max_cols, n)
    return math.ceil(n / ncols), ncols


# --------------------------------------------------------------------------- POD
def plot_pod_spectrum(
    singular_values, cumulative_energy, n_modes: int, energy_threshold: float | None = None
) -> Figure:
    """Singular values σ_k (log scale) and cumulative energy E_k = Σ_{j≤k} σ_j² / Σ_j σ_j².

    Args:
        singular_values: (n,) σ_1 ≥ σ_2 ≥ ... of the training snapshot matrix.
        cumulative_energy: (n,) E_k, in [0, 1].
        n_modes: the selected rank r (1 ≤ r ≤ n), drawn as a vertical dashed line at k = r
            in both panels (label ``"r = {r}"``).
        energy_threshold: the energy target that chose r, drawn as a horizontal line.

    Returns:
        Figure with two axes: ``[σ_k, E_k]`` against the mode index k = 1..n.
    """
    sigma = np.asarray(singular_values, dtype=float)
    energy = np.asarray(cumulative_energy, dtype=float)
    if sigma.ndim != 1 or sigma.size == 0:
        raise ValueError(f"singular_values must be a non-empty 1-D array, got shape {sigma.shape}")
    if energy.shape != sigma.shape:
        raise ValueError(
            f"cumulative_energy has shape {energy.shape} but singular_values has {sigma.shape}; "
            "pass both from the same POD fit"
        )
    if int(n_modes) != n_modes or not 1 <= n_modes <= sigma.size:
        raise ValueError(f"n_modes must be an integer in [1, {sigma.size}], got {n_modes!r}")
    n_modes = int(n_modes)
    k = np.arange(1, sigma.size + 1)

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_sigma, ax_energy = fig.subplots(1, 2)
    ax_sigma.semilogy(k, sigma, "o-", markersize=3, label=r"$\sigma_k$")
    ax_sigma.set_xlabel("mode k")
    ax_sigma.set_ylabel(r"singular value $\sigma_k$")
    ax_sigma.set_title("POD spectrum")
    ax_energy.plot(k, energy, "o-", markersize=3, label="cumulative energy")
    ax_energy.set_xlabel("mode k")
    ax_energy.set_ylabel("cumulative energy")
    ax_energy.set_title(f"r = {n_modes} modes capture {energy[n_modes - 1]:.4f}")
    for ax in (ax_sigma, ax_energy):
        ax.axvline(n_modes, color="C3", linestyle="--", label=f"r = {n_modes}")
        ax.grid(True, alpha=0.3)
    if energy_threshold is not None:
        ax_energy.axhline(
            float(energy_threshold), color="0.4", linestyle=":", label=f"threshold {energy_threshold:g}"
        )
    ax_sigma.legend()
    ax_energy.legend(loc="lower right")
    return fig


def plot_pod_modes(modes, grid_shape: tuple[int, int], n_show: int = 6, extent=None) -> Figure:
    """The leading POD modes φ_1 .. φ_{n_show} as images on the density grid.

    Args:
        modes: (ny*nx, r) orthonormal columns.
        grid_shape: (ny, nx) of the density grid.
        n_show: how many leading modes to draw (capped at r).
        extent: optional ``(x_min, x_max, y_min, y_max)``.

    Returns:
        Figure whose first ``min(n_show, r)`` axes hold one image each, mode k reshaped to
        (ny, nx) and drawn on a symmetric diverging scale ±max|φ_k|.
    """
    modes = np.asarray(modes, dtype=float)
    if modes.ndim != 2:
        raise ValueError(f"modes must have shape (ny*nx, r), got {modes.shape}")
    ny, nx = (int(s) for s in grid_shape)
    if ny * nx != modes.shape[0]:
        raise ValueError(
            f"grid_shape={tuple(grid_shape)} has {ny * nx} cells but modes has {modes.shape[0]} rows; "
            "pass the (ny, nx) of the density grid the POD was fitted on"
        )
    if int(n_show) != n_show or n_show < 1:
        raise ValueError(f"n_show must be a positive integer, got {n_show!r}")
    n = min(int(n_show), modes.shape[1])
    nrows, ncols = _grid_shape(n)
    fig = Figure(figsize=(3.2 * ncols, 3.0 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        field = modes[:, i].reshape(ny, nx)
        scale = float(np.nanmax(np.abs(field))) or 1.0
        image = _image(ax, field, extent, MODE_CMAP, (-scale, scale))
        ax.set_title(f"mode {i + 1}")
        fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def plot_latent_trajectories(
    trajectories: Sequence[np.ndarray], times=None, n_modes: int = 4, n_runs: int = 3
) -> Figure:
    """POD coefficients y_k(t) of the first runs, one panel per mode.

    Args:
        trajectories: one (K_i, r) array per run.
        times: ``None`` (x axis = frame index), one (K,) array shared by every run, or one
            (K_i,) array per run.
        n_modes: panels to draw, the first ``min(n_modes, r)`` modes.
        n_runs: runs to draw, the first ``min(n_runs, len(trajectories))``.

    Returns:
        Figure with one axes per mode (shared x); axes j holds one line per run, labelled
        ``"run {i}"``, with ydata ``trajectories[i][:, j]``.
    """
    if len(trajectories) == 0:
        raise ValueError("trajectories is empty; pass one (K, r) latent array per run")
    trajs = [np.asarray(y, dtype=float) for y in trajectories]
    r = trajs[0].shape[1] if trajs[0].ndim == 2 else None
    for i, y in enumerate(trajs):
        if y.ndim != 2 or y.shape[1] != r:
            raise ValueError(f"trajectories[{i}] has shape {y.shape}; expected (K, r) with r = {r}")
    for name, value in (("n_modes", n_modes), ("n_runs", n_runs)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    n_show_runs = min(int(n_runs), len(trajs))
    n_show_modes = min(int(n_modes), r)

    if times is None:
        run_times = [np.arange(trajs[i].shape[0], dtype=float) for i in range(n_show_runs)]
        xlabel = "frame"
    else:
        if isinstance(times, np.ndarray) and times.ndim == 1:
            run_times = [times] * n_show_runs
        elif isinstance(times, Sequence) and len(times) > 0 and np.ndim(times[0]) == 1:
            if len(times) < n_show_runs:
                raise ValueError(
                    f"times has {len(times)} per-run arrays but {n_show_runs} runs are drawn; "
                    "pass one time array per run or a single shared one"
                )
            run_times = [np.asarray(t, dtype=float) for t in times[:n_show_runs]]
        else:
            run_times = [np.asarray(times, dtype=float)] * n_show_runs
        xlabel = "time [s]"
        for i in range(n_show_runs):
            if run_times[i].shape != (trajs[i].shape[0],):
                raise ValueError(
                    f"times for run {i} has shape {run_times[i].shape} but the run has "
                    f"{trajs[i].shape[0]} frames"
                )

    fig = Figure(figsize=(9, 2.0 * n_show_modes + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n_show_modes, 1, sharex=True))
    for j, ax in enumerate(axes):
        for i in range(n_show_runs):
            ax.plot(run_times[i], trajs[i][:, j], label=f"run {i}", linewidth=1.0)
        ax.set_ylabel(f"$y_{{{j + 1}}}$")
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="upper right", fontsize="small")
    axes[0].set_title("Latent (POD) trajectories")
    axes[-1].set_xlabel(xlabel)
    return fig


# --------------------------------------------------------------------------- forecasts
_R2_CURVE_COLUMNS = ("model", "run_id", "family", "shift_mode", "time")


def plot_r2_curves(
    r2_vs_time: pd.DataFrame, shift_mode: str | None = "oracle", metric: str = "r2", by: str = "family"
) -> Figure:
    """Forecast quality against time, every model on the same axes.

    For each panel (an IC family, or a single run when ``by="run_id"``) and each model the
    line is the mean over that panel's runs of ``metric`` at each time. For ``metric="r2"``
    the POD ceiling (R²(t) of the projected-and-lifted truth, model-independent) is drawn
    dashed, averaged over the same runs. R² axes are clipped to [-1, 1.02] so one diverging
    model does not flatten the others; the line data are not clipped.

    Args:
        r2_vs_time: long table with columns model, run_id, family, shift_mode, time, and
            ``metric`` (plus ``r2_pod_ceiling`` for the ceiling).
        shift_mode: the shift mode to plot; ``None`` if the table holds only one.
        metric: the column to plot (``"r2"``, ``"r2_cumulative"``, ``"rel_l2"``, ...).
        by: ``"family"`` (one panel per IC family) or ``"run_id"`` (one panel per run).

    Returns:
        Figure with one axes per panel value in sorted order; each axes has one line per
        model labelled with the model name (xdata: sorted times, ydata: mean ``metric``)
        and, for ``"r2"``, a dashed line labelled ``"POD ceiling"``.
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
    nrows, ncols = _grid_shape(len(panels), max_cols=2)
    fig = Figure(figsize=(6.5 * ncols, 4.0 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, panel in zip(axes, panels):
        of_panel = rows[rows[by] == panel]
        lows = []
        for i, model in enumerate(models):
            of_model = of_panel[of_panel["model"] == model]
            if of_model.empty:
                continue
            curve = of_model.groupby("time", sort=True)[metric].mean()
            ax.plot(curve.index.to_numpy(float), curve.to_numpy(float), color=f"C{i}", label=str(model))
            lows.append(np.nanmin(curve.to_numpy(float)) if curve.notna().any() else np.nan)
        if draw_ceiling:
            per_run = of_panel.drop_duplicates(subset=["run_id", "time"])
            ceiling = per_run.groupby("time", sort=True)["r2_pod_ceiling"].mean()
            if ceiling.notna().any():
                ax.plot(
                    ceiling.index.to_numpy(float), ceiling.to_numpy(float), "k--", linewidth=1.2,
                    label=POD_CEILING_LABEL,
                )
        if metric.startswith("r2"):
            finite_lows = [v for v in lows if np.isfinite(v)]
            bottom = max(-1.0, min(finite_lows, default=0.0) - 0.05)
            ax.set_ylim(bottom, 1.02)
        n_runs = of_panel["run_id"].nunique()
        ax.set_title(f"{by} = {panel}" + (f" (mean of {n_runs} runs)" if by == "family" else ""))
        ax.set_xlabel("time [s]")
        ax.set_ylabel(metric)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(panels):]:
        ax.set_axis_off()
    fig.suptitle(f"{metric} vs time, shift mode {rows['shift_mode'].iloc[0]}")
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
    truth, predictions: Mapping[str, np.ndarray], times, snapshot_times: Sequence[float], extent=None
) -> Figure:
    """Truth, each model's forecast and each model's |error| at chosen times.

    Args:
        truth: (T, ny, nx) true density.
        predictions: {model: (T, ny, nx)} forecasts on the same frames.
        times: (T,) times [s] of the frames.
        snapshot_times: times [s] to show; each column shows the frame nearest to it.
        extent: optional ``(x_min, x_max, y_min, y_max)``.

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
    x = np.arange(len(families), dtype=float)
    width = 0.8 / len(models)
    fig = Figure(figsize=(max(5.0, 1.6 * len(families) * max(1, len(models) / 2)), 4.0), layout="constrained")
    ax = fig.subplots()
    for i, model in enumerate(models):
        of_model = table[table["model"] == model].set_index("family")
        means = of_model[f"{metric}_mean"].reindex(families).to_numpy(float)
        stds = of_model[f"{metric}_std"].reindex(families).to_numpy(float)
        ax.bar(
            x + (i - (len(models) - 1) / 2) * width, means, width, yerr=stds, capsize=3,
            label=str(model), color=f"C{i}",
        )
    ax.set_xticks(x, [str(f) for f in families])
    ax.set_xlabel("initial-condition family")
    ax.set_ylabel(metric)
    ax.axhline(0.0, color="0.3", linewidth=0.8)
    ax.set_title(f"{metric} (mean ± std over test runs), shift mode {shift_mode}")
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


# --------------------------------------------------------------------------- model diagnostics
def plot_eigenvalues(eigenvalues, threshold: float | None = None) -> Figure:
    """Eigenvalues λ of the MVAR companion matrix in the complex plane with the unit circle.

    The closed-loop rollout is stable iff the spectral radius max|λ| < 1.

    Args:
        eigenvalues: (n,) complex eigenvalues.
        threshold: optional radius drawn as a dashed circle (e.g. the stability limit used to
            flag an MVAR model).

    Returns:
        Figure with one axes: a scatter (``ax.collections[0]``) of (Re λ, Im λ), the unit
        circle (line labelled ``"|λ| = 1"``) and, if given, the threshold circle.
    """
    lam = np.asarray(eigenvalues).astype(complex).ravel()
    if lam.size == 0:
        raise ValueError("eigenvalues is empty; pass the companion-matrix eigenvalues of a fitted MVAR")
    radius = float(np.max(np.abs(lam)))
    fig = Figure(figsize=(5.5, 5.5), layout="constrained")
    ax = fig.subplots()
    ax.scatter(lam.real, lam.imag, s=14, color="C0", zorder=3, label="eigenvalues")
    theta = np.linspace(0.0, 2.0 * np.pi, 361)
    ax.plot(np.cos(theta), np.sin(theta), "k-", linewidth=1.0, label="|λ| = 1")
    if threshold is not None:
        ax.plot(
            threshold * np.cos(theta), threshold * np.sin(theta), "C3--", linewidth=1.0,
            label=f"|λ| = {threshold:g}",
        )
    ax.axhline(0.0, color="0.6", linewidth=0.6)
    ax.axvline(0.0, color="0.6", linewidth=0.6)
    lim = max(1.05, radius * 1.05, (threshold or 0.0) * 1.05)
    ax.set_xlim(-lim, lim)
    ax.set_ylim(-lim, lim)
    ax.set_aspect("equal")
    ax.set_xlabel("Re λ")
    ax.set_ylabel("Im λ")
    ax.set_title(f"MVAR companion eigenvalues, spectral radius {radius:.4f}")
    ax.legend(loc="upper right", fontsize="small")
    return fig


def plot_training_log(training_log: pd.DataFrame) -> Figure:
    """LSTM training history: losses (log y), validation rollout R² and learning rate.

    Args:
        training_log: one row per epoch with ``epoch``, ``train_loss`` and optionally
            ``val_loss``, ``val_rollout_r2``, ``lr`` (NaN where not evaluated that epoch).

    Returns:
        Figure with three axes (shared x): [losses, val_rollout_r2, lr]. Lines are labelled
        with their column name; NaN epochs are dropped from each line.
    """
    _require_columns(training_log, ["epoch", "train_loss"], "training_log")
    log = training_log.sort_values("epoch")
    fig = Figure(figsize=(8, 8), layout="constrained")
    ax_loss, ax_r2, ax_lr = fig.subplots(3, 1, sharex=True)

    def line(ax: Axes, column: str, **style) -> None:
        if column not in log.columns:
            ax.text(0.5, 0.5, f"no {column} logged", transform=ax.transAxes, ha="center", va="center")
            return
        kept = log[["epoch", column]].dropna()
        if kept.empty:
            ax.text(0.5, 0.5, f"no {column} logged", transform=ax.transAxes, ha="center", va="center")
            return
        ax.plot(kept["epoch"].to_numpy(float), kept[column].to_numpy(float), label=column, **style)

    line(ax_loss, "train_loss", color="C0")
    line(ax_loss, "val_loss", color="C1")
    if any(np.all(line_.get_ydata() > 0) for line_ in ax_loss.get_lines()):
        ax_loss.set_yscale("log")
    ax_loss.set_ylabel("loss (MSE)")
    ax_loss.legend()
    line(ax_r2, "val_rollout_r2", color="C2", marker="o", markersize=3)
    ax_r2.set_ylabel("validation rollout R²")
    line(ax_lr, "lr", color="C4")
    if ax_lr.get_lines():
        ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("epoch")
    for ax in (ax_loss, ax_r2, ax_lr):
        ax.grid(True, alpha=0.3)
    ax_loss.set_title("LSTM training log")
    return fig


LAG_CRITERIA = ("aic", "bic", "hqic", "fpe")


def plot_lag_scan(table: pd.DataFrame) -> Figure:
    """Information criteria of an MVAR lag scan, one panel per criterion.

    Args:
        table: one row per lag with columns ``lag`` and any of ``aic``, ``bic``, ``hqic``,
            ``fpe`` (at least one).

    Returns:
        Figure with one axes per present criterion (in the order aic, bic, hqic, fpe): the
        criterion against the lag (line labelled with its name) and a star (line labelled
        ``"min at lag {p}"``) at the minimising lag.
    """
    _require_columns(table, ["lag"], "table")
    criteria = [c for c in LAG_CRITERIA if c in table.columns]
    if not criteria:
        raise ValueError(f"table has none of the criteria {list(LAG_CRITERIA)}; columns are {list(table.columns)}")
    scan = table.sort_values("lag")
    nrows, ncols = _grid_shape(len(criteria), max_cols=2)
    fig = Figure(figsize=(5.0 * ncols, 3.5 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, criterion in zip(axes, criteria):
        kept = scan[["lag", criterion]].dropna()
        lags = kept["lag"].to_numpy(float)
        values = kept[criterion].to_numpy(float)
        ax.plot(lags, values, "o-", markersize=3, label=criterion.upper())
        if values.size:
            best = int(np.argmin(values))
            ax.plot([lags[best]], [values[best]], "r*", markersize=12, label=f"min at lag {lags[best]:g}")
        if criterion == "fpe" and values.size and np.all(values > 0):
            ax.set_yscale("log")
        ax.set_xlabel("lag")
        ax.set_ylabel(criterion.upper())
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(criteria):]:
        ax.set_axis_off()
    fig.suptitle("MVAR lag selection")
    return fig


# --------------------------------------------------------------------------- animation
def animation_frames(n_frames: int, max_frames: int) -> np.ndarray:
    """Indices of ``min(n_frames, max_frames)`` frames evenly spread over 0..n_frames-1,
    always including the first and last."""
    if int(max_frames) != max_frames or max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer, got {max_frames!r}")
    n = min(int(n_frames), int(max_frames))
    # For n <= n_frames consecutive targets are >= 1 apart, so the rounded indices are distinct.
    return np.round(np.linspace(0, n_frames - 1, n)).astype(int)


def write_comparison_animation(
    truth,
    predictions: Mapping[str, np.ndarray],
    times,
    path: str | os.PathLike,
    fps: float = 10,
    max_frames: int = 120,
    title: str = "",
    dpi: int = 80,
    panel_inches: float = 2.5,
) -> Path:
    """GIF of truth beside each model's forecast, with each model's |error| underneath.

    Layout: a 2 × (1 + M) grid; top row truth then the M forecasts, bottom row |error| of each
    model under its forecast (bottom-left empty). Frames are :func:`animation_frames`
    (at most ``max_frames``, evenly spaced); each frame's title shows its time. The GIF is
    written by :class:`matplotlib.animation.PillowWriter` to a temporary file in the target
    folder and moved into place with :func:`os.replace`, so ``path`` never holds a partial file.

    Args:
        truth: (T, ny, nx); predictions: {model: (T, ny, nx)}; times: (T,) seconds.
        path: output ``.gif`` file; its folder is created if needed.
        fps: frames per second of the GIF.
        max_frames: upper bound on the number of frames.
        title: text before the time in each frame's title.
        dpi, panel_inches: each frame is ``(1 + M) * panel_inches * dpi`` by
            ``2 * panel_inches * dpi`` pixels (rounded down).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    truth, predictions, times = _check_movies(truth, predictions, times)
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"path must end in .gif (PillowWriter writes GIF), got {str(path)!r}")
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    frames = animation_frames(truth.shape[0], max_frames)
    names = list(predictions)
    errors = {name: np.abs(predictions[name][frames] - truth[frames]) for name in names}
    density_limits, error_limits = _colour_limits(truth[frames], list(errors.values()))

    n_cols = 1 + len(names)
    fig = Figure(figsize=(panel_inches * n_cols, panel_inches * 2), dpi=dpi, layout="constrained")
    axes = fig.subplots(2, n_cols, squeeze=False)
    first = frames[0]
    truth_image = _image(axes[0, 0], truth[first], None, DENSITY_CMAP, density_limits)
    axes[0, 0].set_title("truth", fontsize="small")
    axes[1, 0].set_axis_off()
    model_images, error_images = [], []
    for j, name in enumerate(names, start=1):
        model_images.append(_image(axes[0, j], predictions[name][first], None, DENSITY_CMAP, density_limits))
        axes[0, j].set_title(name, fontsize="small")
        error_images.append(_image(axes[1, j], errors[name][0], None, ERROR_CMAP, error_limits))
        axes[1, j].set_title(f"|error| {name}", fontsize="small")
    fig.colorbar(truth_image, ax=axes[0, :].tolist(), shrink=0.8)
    fig.colorbar(error_images[0], ax=axes[1, 1:].tolist(), shrink=0.8)
    heading = fig.suptitle("")
    # Lay out once and freeze it, so panels do not jitter as the title text changes.
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh unique name, not mkstemp: mkstemp's file is mode 0600 and would keep it after the move.
    temp_name = str(path.parent / f".{path.stem}.{uuid.uuid4().hex}.tmp.gif")
    writer = PillowWriter(fps=fps)
    try:
        # setup/finish by hand rather than writer.saving(): that context calls finish() even
        # after an error, which then fails on the empty frame list and hides the real cause.
        with mpl.rc_context({"savefig.bbox": None}):
            writer.setup(fig, temp_name, dpi)
            for k, frame in enumerate(frames):
                truth_image.set_data(truth[frame])
                for name, model_image, error_image in zip(names, model_images, error_images):
                    model_image.set_data(predictions[name][frame])
                    error_image.set_data(errors[name][k])
                # The frame number keeps consecutive GIF frames distinct (Pillow merges equal ones).
                heading.set_text(
                    f"{title}  t = {times[frame]:.2f} s  (frame {frame + 1}/{truth.shape[0]})".strip()
                )
                writer.grab_frame()
            writer.finish()
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    logger.info("wrote %d-frame comparison animation of %s to %s", len(frames), names, path)
    return path
