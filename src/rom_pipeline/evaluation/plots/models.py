"""Diagnostics of the fitted forecasters: MVAR eigenvalues and lag scan, LSTM training log."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from rom_pipeline.evaluation.plots._common import _grid_shape
from rom_pipeline.evaluation.report import _require_columns

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


def plot_training_log(training_log: pd.DataFrame, chosen_epoch: int | None = None) -> Figure:
    """LSTM training history: losses (log y), validation rollout R² and learning rate.

    Args:
        training_log: one row per epoch with ``epoch``, ``train_loss`` and optionally
            ``val_loss``, ``val_rollout_r2``, ``lr`` (NaN where not evaluated that epoch).
        chosen_epoch: the epoch whose weights were kept (the checkpoint selection), drawn as a
            vertical line labelled ``"chosen epoch {e}"`` in every panel.

    Returns:
        Figure with three axes (shared x): [losses, val_rollout_r2, lr]. Lines are labelled
        with their column name; NaN epochs are dropped from each line.
    """
    _require_columns(training_log, ["epoch", "train_loss"], "training_log")
    log = training_log.sort_values("epoch")
    if chosen_epoch is not None and int(chosen_epoch) not in set(log["epoch"].astype(int)):
        raise ValueError(
            f"chosen_epoch={chosen_epoch!r} is not an epoch of training_log (epochs "
            f"{int(log['epoch'].min())}..{int(log['epoch'].max())}); pass the summary's best_epoch"
        )
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
    line(ax_r2, "val_rollout_r2", color="C2", marker="o", markersize=3)
    ax_r2.set_ylabel("validation rollout R²")
    line(ax_lr, "lr", color="C4")
    if ax_lr.get_lines():
        ax_lr.set_yscale("log")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("epoch")
    for ax in (ax_loss, ax_r2, ax_lr):
        if chosen_epoch is not None:
            ax.axvline(int(chosen_epoch), color="C3", linestyle="--", linewidth=1.2,
                       label=f"chosen epoch {int(chosen_epoch)}")
        ax.grid(True, alpha=0.3)
        if ax.get_lines():
            ax.legend(fontsize="small")
    ax_loss.set_title("LSTM training log" + (
        f" (weights kept from epoch {int(chosen_epoch)})" if chosen_epoch is not None else ""))
    return fig


LAG_CRITERIA = ("aic", "bic", "hqic", "fpe")


def plot_lag_scan(table: pd.DataFrame, chosen_lag: int | None = None, rule: str | None = None) -> Figure:
    """Information criteria of an MVAR lag scan, one panel per criterion.

    Args:
        table: one row per lag with columns ``lag`` and any of ``aic``, ``bic``, ``hqic``,
            ``fpe`` (at least one).
        chosen_lag: the lag the fitted MVAR uses, drawn as a vertical line labelled
            ``"chosen lag {p}"`` (plus `` ({rule})``) in every panel.
        rule: how the lag was chosen (``"fixed"``, ``"aic"``, ...), shown in the label.

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
        if chosen_lag is not None:
            ax.axvline(int(chosen_lag), color="C2", linestyle="--", linewidth=1.2,
                       label=f"chosen lag {int(chosen_lag)}" + (f" ({rule})" if rule else ""))
        ax.set_xlabel("lag")
        ax.set_ylabel(criterion.upper())
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(criteria):]:
        ax.set_axis_off()
    fig.suptitle("MVAR lag selection" + (f": lag {int(chosen_lag)} used" if chosen_lag is not None else ""))
    return fig
