"""Skill of the lab-frame ensemble against lead time (issue 14): the table and its figure.

Input is the long per-frame table of the evaluation (``r2_vs_time``) whose ``lab_ensemble`` rows
carry the per-frame ensemble scores (``protocol.ENSEMBLE_FRAME_COLUMNS``). Frames are pooled
over test runs inside each lead window ``[e_i, e_{i+1})`` (the last window ``[e_last, end]``):

    CRPS skill vs climatology = 1 − Σ crps / Σ crps_climatology
    CRPS skill vs hold        = 1 − Σ crps / Σ crps_hold
    energy skills             likewise with the energy scores
    spread/skill              sqrt((M+1)/M · mean variance) / sqrt(mean squared error of the mean)
    r2_frame_mean             mean per-frame density R² of the ensemble mean
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

__all__ = ["SKILL_COLUMNS", "plot_skill_vs_lead", "skill_by_lead"]

SKILL_COLUMNS = (
    "crps_skill_climatology", "crps_skill_hold", "energy_skill_climatology", "energy_skill_hold",
    "spread_skill", "r2_frame_mean",
)


def _ratio_skill(num: pd.Series, den: pd.Series) -> float:
    total = float(den.sum())
    return float("nan") if total <= 0 else 1.0 - float(num.sum()) / total


def skill_by_lead(r2_vs_time: pd.DataFrame, edges, n_members: int, shift_mode: str = "lab_ensemble") -> pd.DataFrame:
    """Skill per model and lead window, pooled over test runs.

    Args:
        r2_vs_time: long table of one or more models (columns ``model``, ``shift_mode``,
            ``lead_time``, ``r2`` and the ensemble columns).
        edges: increasing window edges in s after the forecast start (first >= 0).
        n_members: ensemble size M (the spread/skill ratio needs M >= 2; NaN otherwise).
        shift_mode: the rows to use.

    Returns:
        One row per (model, window): ``model``, ``lead_start``, ``lead_end`` (inf for the last),
        ``n_frames`` and ``SKILL_COLUMNS``.
    """
    edges = [float(e) for e in edges]
    if not edges or edges[0] < 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        raise ValueError(f"lead edges {edges} must be non-empty, >= 0 and strictly increasing (seconds)")
    rows = r2_vs_time[r2_vs_time["shift_mode"] == shift_mode]
    if rows.empty:
        raise ValueError(
            f"r2_vs_time has no {shift_mode!r} rows (shift modes: {sorted(pd.unique(r2_vs_time['shift_mode']))}); "
            "add it to eval.shift_modes"
        )
    bounds = [*edges, np.inf]
    m = float(n_members)
    out = []
    for model, of_model in rows.groupby("model", sort=True):
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            w = of_model[(of_model["lead_time"] >= lo) & (of_model["lead_time"] < hi)]
            if w.empty:
                continue
            mse = float(w["ensemble_mean_mse"].mean())
            spread = (np.sqrt((m + 1) / m * float(w["ensemble_variance"].mean())) / np.sqrt(mse)
                      if n_members >= 2 and mse > 0 else float("nan"))
            out.append({
                "model": model, "lead_start": lo, "lead_end": hi, "n_frames": len(w),
                "crps_skill_climatology": _ratio_skill(w["crps"], w["crps_climatology"]),
                "crps_skill_hold": _ratio_skill(w["crps"], w["crps_hold"]),
                "energy_skill_climatology": _ratio_skill(w["energy"], w["energy_climatology"]),
                "energy_skill_hold": _ratio_skill(w["energy"], w["energy_hold"]),
                "spread_skill": float(spread),
                "r2_frame_mean": float(w["r2"].mean()),
            })
    return pd.DataFrame(out, columns=["model", "lead_start", "lead_end", "n_frames", *SKILL_COLUMNS])


def plot_skill_vs_lead(table: pd.DataFrame, title: str = "Lab-frame ensemble skill vs lead time") -> Figure:
    """Figure of :func:`skill_by_lead` output: CRPS skill against climatology and against the held
    track (left), spread/skill ratio (right), one line per model, at each window's midpoint (the
    last, open window is drawn one window width past its start)."""
    fig = Figure(figsize=(11, 4))
    ax_skill, ax_spread = fig.subplots(1, 2)
    for k, (model, rows) in enumerate(table.groupby("model", sort=True)):
        colour = f"C{k}"  # one colour per model in both panels
        start = rows["lead_start"].to_numpy(dtype=float)
        end = rows["lead_end"].to_numpy(dtype=float)
        width = np.diff(start).mean() if len(start) > 1 else 1.0
        mid = np.where(np.isfinite(end), (start + end) / 2, start + width / 2)
        ax_skill.plot(mid, rows["crps_skill_climatology"], "o-", color=colour,
                      label=f"{model}: CRPS vs climatology")
        ax_skill.plot(mid, rows["crps_skill_hold"], "s--", color=colour,
                      label=f"{model}: CRPS vs held track")
        ax_spread.plot(mid, rows["spread_skill"], "o-", color=colour, label=model)
    ax_skill.axhline(0.0, color="k", lw=0.8)
    ax_skill.set_xlabel("lead time after the forecast start [s]")
    ax_skill.set_ylabel("skill 1 − S / S_ref")
    # the models' colours are named in the right panel; here only what each line style scores
    styles = [Line2D([], [], color="0.3", marker="o", ls="-", label="CRPS skill vs climatology"),
              Line2D([], [], color="0.3", marker="s", ls="--", label="CRPS skill vs held track")]
    ax_skill.legend(handles=styles, fontsize=8, loc="center right")
    ax_spread.axhspan(0.7, 1.3, color="0.9", label="target 0.7–1.3")
    ax_spread.axhline(1.0, color="k", lw=0.8)
    ax_spread.set_xlabel("lead time after the forecast start [s]")
    ax_spread.set_ylabel("spread / skill")
    ax_spread.legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
