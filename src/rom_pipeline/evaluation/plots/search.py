"""Hyper-parameter search figure: held-out score against each searched parameter
(:mod:`rom_pipeline.evaluation.search` builds the table it draws)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

BASELINES = ("climatology", "persistence")  # drawn as levels, not as models


def plot_search_scores(table: pd.DataFrame) -> Figure:
    """Validation score vs each searched parameter: one row of panels per model, one panel per
    parameter that takes more than one value (r' included; a model with a single candidate gets
    one r' panel). The climatology and persistence baselines (their best r') are horizontal lines.
    Every candidate is a dot with a ±1 standard-error bar over its held-out runs;
    the line joins the best score at each value. Positive parameters spanning more than two
    decades get a log axis."""
    summary = {"rank", "model", "config_id", "modes_source", "params", "score_mean", "score_std",
               "latent_r2_mean", "latent_r2_std", "one_step_latent_r2_mean", "pod_ceiling_mean",
               "n_runs", "n_diverged", "fit_seconds_mean", "fit_seconds_total", "score_seconds_total",
               "pod_setting", "n_fits", "wall_seconds", "pod_seconds"}
    parameters = [c for c in table.columns if c not in summary]
    baselines = table[table["model"].isin(BASELINES)]
    models = sorted(set(table["model"]) - set(BASELINES))
    panels = {}
    for model in models:
        rows = table[table["model"] == model]
        # a configured value (None, e.g. coint_rank null) counts as a value of its own
        varied = [c for c in parameters if rows[c].notna().any() and _labels(rows[c]).nunique() > 1]
        panels[model] = varied or ["n_modes"]
    n_cols = max(len(v) for v in panels.values())
    fig = Figure(figsize=(3.6 * n_cols, 3.0 * len(models)), layout="constrained")
    axes = fig.subplots(len(models), n_cols, squeeze=False)
    for i, model in enumerate(models):
        rows = table[table["model"] == model]
        n_ok = (rows["n_runs"] - rows["n_diverged"]).clip(lower=1).to_numpy(float)
        score = rows["score_mean"].to_numpy(float)
        stderr = rows["score_std"].to_numpy(float) / np.sqrt(n_ok)
        for j in range(n_cols):
            ax = axes[i, j]
            if j >= len(panels[model]):
                ax.set_visible(False)
                continue
            col = panels[model][j]
            values = rows[col]
            if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values) \
                    and values.notna().all():
                x = values.to_numpy(float, na_value=np.nan)
                positive = x[np.isfinite(x) & (x > 0)]
                if positive.size == x.size and positive.max() / positive.min() > 100:
                    ax.set_xscale("log")
                elif pd.api.types.is_integer_dtype(values):
                    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            else:
                names = _labels(values)
                labels = sorted(names.unique())
                x = np.array([labels.index(v) for v in names], dtype=float)
                ax.set_xticks(range(len(labels)), labels)
            ax.errorbar(x, score, yerr=stderr, fmt="o", ms=4, alpha=0.6, capsize=2,
                        color="tab:blue", label="candidate (±1 s.e.)")
            best = pd.Series(score, index=x).replace(-np.inf, np.nan).groupby(level=0).max()
            ax.plot(best.index, best.to_numpy(), "-", color="tab:red", lw=1.2, label="best")
            for name, style in zip(BASELINES, (":", "--")):
                level = baselines.loc[baselines["model"] == name, "score_mean"].max()
                if np.isfinite(level):
                    ax.axhline(level, ls=style, color="0.4", lw=1.0, label=f"{name} (best r')")
            ax.set_xlabel(col)
            ax.set_ylabel("held-out pooled density R²")
            ax.set_title(f"{model.upper()}: {col}", fontsize=10)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.legend(fontsize=7, loc="lower left")
    return fig


def _labels(values: pd.Series) -> pd.Series:
    """Category labels of a parameter column, missing values (a null setting) as ``"None"``."""
    return values.astype(object).where(values.notna(), "None").astype(str)
