"""Statistical comparison of forecasters over unseen test runs (science.md §8).

Input is the ``test_results`` table of the evaluation stage: one row per
(model, run_id, shift_mode) with the metric columns listed in :data:`METRIC_COLUMNS`, a
``family`` (the initial-condition family of the test run) and a boolean ``diverged``.

Every summary here is a mean and a standard deviation over test runs:

    mean_m = (1/n) Σ_i x_i,    std_m = sqrt( Σ_i (x_i − mean_m)² / (n − 1) )   (n ≥ 2)

with ``n`` the number of runs whose value is not NaN; a single run has std 0 (ddof = 0 when
n = 1). Diverged runs stay in the statistics with whatever values the evaluation recorded
(NaN values are skipped) and are counted in ``n_diverged`` so a reader sees why a mean moved.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

#: The baseline forecasters every model is scored against (``rom.baselines``), by model name.
BASELINES: tuple[str, ...] = ("climatology", "persistence")
#: Prefix of the lead-window R² columns (``r2_lead_<a>_<b>``; their names follow eval.lead_windows).
LEAD_PREFIX = "r2_lead_"

#: Numeric metric columns of ``test_results`` in report order; the lead-window columns present
#: in a table follow them (see :func:`metric_columns`).
METRIC_COLUMNS: list[str] = [
    "r2_pooled",
    "skill_vs_climatology",
    "skill_vs_persistence",
    "r2_snapshot_mean",
    "r2_latent",
    "r2_pod_ceiling",
    "r2_one_step",
    "rel_l1_mean",
    "rel_l2_mean",
    "rel_linf_mean",
    "rel_l1_end",
    "rel_l2_end",
    "rel_linf_end",
    "mse",
    "rmse",
    "mass_violation_max",
    "negativity_fraction",
    "valid_time",
    "forecast_seconds",
    "polarisation_mean",
    "milling_mean",
    "nematic_mean",
]

#: Metrics where a larger value is a better forecast.
HIGHER_IS_BETTER: frozenset[str] = frozenset(
    {"r2_pooled", "skill_vs_climatology", "skill_vs_persistence", "r2_snapshot_mean", "r2_latent",
     "r2_one_step", "valid_time"}
)
#: Metrics where a smaller value is a better forecast. The POD ceiling and the order
#: parameters describe the data, not the forecaster, so they have no preferred direction.
LOWER_IS_BETTER: frozenset[str] = frozenset(
    {
        "rel_l1_mean",
        "rel_l2_mean",
        "rel_linf_mean",
        "rel_l1_end",
        "rel_l2_end",
        "rel_linf_end",
        "mse",
        "rmse",
        "mass_violation_max",
        "negativity_fraction",
        "forecast_seconds",
    }
)

ALL_FAMILIES = "all"
_KEY_COLUMNS = ("model", "run_id", "family", "shift_mode", "diverged")


def metric_columns(frame: pd.DataFrame) -> list[str]:
    """:data:`METRIC_COLUMNS` followed by the lead-window columns ``r2_lead_*`` of ``frame``."""
    return METRIC_COLUMNS + [c for c in frame.columns if str(c).startswith(LEAD_PREFIX)]


def _higher_is_better(metric: str) -> bool:
    return metric in HIGHER_IS_BETTER or metric.startswith(LEAD_PREFIX)


def add_skill_scores(test_results: pd.DataFrame, baselines: Iterable[str] = BASELINES) -> pd.DataFrame:
    """``test_results`` with a column ``skill_vs_<baseline>`` per baseline:

        S = 1 − MSE_model / MSE_baseline

    where both MSEs are the ``mse`` of the same test run and shift mode (the baseline scored by
    the same forecast block, see :func:`rom_pipeline.evaluation.metrics.skill_score`). A
    baseline's own row scores exactly 0 against itself. NaN where the baseline has no row for
    that (run, shift mode) or either MSE is NaN (a diverged forecast).

    Raises:
        ValueError: missing columns, or a baseline with no row at all (it was not scored).
    """
    from rom_pipeline.evaluation.metrics import skill_score

    _require_columns(test_results, ["model", "run_id", "shift_mode", "mse"], "test_results")
    out = test_results.copy()
    for baseline in baselines:
        ref = out.loc[out["model"] == baseline, ["run_id", "shift_mode", "mse"]]
        if ref.empty:
            raise ValueError(
                f"test_results has no rows of the baseline {baseline!r} (models: "
                f"{list(pd.unique(out['model']))}); score the baselines with the models"
            )
        if ref.duplicated(["run_id", "shift_mode"]).any():
            raise ValueError(f"baseline {baseline!r} has several rows for one run and shift mode")
        merged = out[["run_id", "shift_mode"]].merge(
            ref.rename(columns={"mse": "_ref"}), on=["run_id", "shift_mode"], how="left")
        out[f"skill_vs_{baseline}"] = skill_score(
            out["mse"].to_numpy(float), merged["_ref"].to_numpy(float))
    return out


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], argname: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"{argname} must be a pandas DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{argname} lacks column(s) {missing}; it has {list(frame.columns)}. "
            "Pass the table written by the evaluation stage (one row per model, run_id, shift_mode)."
        )


def select_shift_mode(frame: pd.DataFrame, shift_mode: str | None, argname: str) -> pd.DataFrame:
    """Rows of ``frame`` scored with ``shift_mode``.

    ``None`` accepts the table only if it holds a single shift mode, so runs are never counted
    twice by mixing oracle and predicted shifts.
    """
    _require_columns(frame, ["shift_mode"], argname)
    present = list(pd.unique(frame["shift_mode"]))
    if shift_mode is None:
        if len(present) > 1:
            raise ValueError(
                f"shift_mode=None but {argname} holds several shift modes {present}; "
                "pass one of them, e.g. shift_mode='oracle'"
            )
        return frame
    if shift_mode not in present:
        raise ValueError(
            f"shift_mode={shift_mode!r} not found in {argname}; it holds {present}. "
            "Pass one of those (eval.shift_modes in parameters)."
        )
    return frame[frame["shift_mode"] == shift_mode]


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """NaN-aware mean and std over runs: ddof=1 for n >= 2, 0 for a single run."""
    values = np.asarray(values, dtype=float)
    kept = values[~np.isnan(values)]
    n = kept.size
    if n == 0:
        return math.nan, math.nan
    mean = float(np.mean(kept))
    if n == 1:
        return mean, 0.0
    return mean, float(np.std(kept, ddof=1))


def comparison_table(test_results: pd.DataFrame, shift_mode: str | None = None) -> pd.DataFrame:
    """Mean and standard deviation over test runs of every metric, per model and IC family.

    Args:
        test_results: one row per (model, run_id, shift_mode) with columns ``model``,
            ``run_id``, ``family``, ``shift_mode``, ``diverged`` (bool) and the metric columns of
            :data:`METRIC_COLUMNS`. A metric column that is absent is reported as NaN.
        shift_mode: the shift mode to summarise (``"oracle"``, ``"hold"``, ...). ``None`` is
            allowed only when the table holds a single shift mode.

    Returns:
        DataFrame with columns ``model``, ``family``, ``n_runs``, ``n_diverged`` and then
        ``f"{metric}_mean"``, ``f"{metric}_std"`` for each metric of :func:`metric_columns`
        (:data:`METRIC_COLUMNS`, then the table's lead-window columns ``r2_lead_*``).
        One row per (model, family) in sorted family order, followed by a row with
        ``family == "all"`` pooling every run of that model. Models keep their order of first
        appearance. ``n_runs`` counts rows (test runs); ``n_diverged`` counts ``diverged`` rows.

    Raises:
        ValueError: missing key columns, an unknown ``shift_mode``, a family literally named
            ``"all"``, or no rows left after selecting the shift mode.
    """
    _require_columns(test_results, _KEY_COLUMNS, "test_results")
    rows = select_shift_mode(test_results, shift_mode, "test_results")
    if rows.empty:
        raise ValueError(f"test_results has no rows for shift_mode={shift_mode!r}")
    if (rows["family"].astype(str) == ALL_FAMILIES).any():
        raise ValueError(
            f"test_results has a family named {ALL_FAMILIES!r}, which the table reserves for the "
            "pooled row; rename that IC family"
        )
    metrics = metric_columns(rows)
    absent = [m for m in metrics if m not in rows.columns]
    if absent:
        logger.info("comparison_table: metric column(s) %s absent, reported as NaN", absent)
    duplicated = rows.duplicated(subset=["model", "run_id"])
    if duplicated.any():
        raise ValueError(
            "test_results has several rows for the same (model, run_id) within one shift mode, "
            f"e.g. {rows.loc[duplicated, ['model', 'run_id']].iloc[0].to_dict()}; "
            "each test run must be scored once per model and shift mode"
        )

    def summarise(model: str, family: str, group: pd.DataFrame) -> dict:
        record: dict = {
            "model": model,
            "family": family,
            "n_runs": int(len(group)),
            "n_diverged": int(group["diverged"].eq(True).sum()),
        }
        for metric in metrics:
            if metric in group.columns:
                values = pd.to_numeric(group[metric], errors="coerce").to_numpy(dtype=float)
                mean, std = _mean_std(values)
            else:
                mean, std = math.nan, math.nan
            record[f"{metric}_mean"] = mean
            record[f"{metric}_std"] = std
        return record

    records = []
    for model in pd.unique(rows["model"]):
        of_model = rows[rows["model"] == model]
        for family in sorted(pd.unique(of_model["family"]), key=str):
            records.append(summarise(model, family, of_model[of_model["family"] == family]))
        records.append(summarise(model, ALL_FAMILIES, of_model))
    return pd.DataFrame.from_records(records)


def _format_cell(mean: float, std: float, digits: int, n_runs: int = 2) -> str:
    """``"mean ± std"``; just the value for a single run, whose spread is not measured."""
    if not np.isfinite(mean):
        return "n/a" if np.isnan(mean) else f"{mean}"
    if n_runs <= 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def comparison_markdown(
    table: pd.DataFrame,
    metrics: Iterable[str] = (
        "r2_pooled",
        "r2_snapshot_mean",
        "rel_l2_mean",
        "valid_time",
        "mass_violation_max",
    ),
    digits: int = 3,
) -> str:
    """GitHub Markdown of a :func:`comparison_table`, one line per (model, family).

    Each metric cell reads ``"mean ± std"`` with ``digits`` decimals (just the value when the
    row holds a single run, ``n/a`` when no run has a value). Below the table a line names, for every metric with a preferred direction (see
    :data:`HIGHER_IS_BETTER`, :data:`LOWER_IS_BETTER`), the best model on the ``"all"`` rows.

    Args:
        table: output of :func:`comparison_table`.
        metrics: metric names (without ``_mean``/``_std``) to show, in column order.
        digits: decimals of every number, >= 0.

    Returns:
        The Markdown text, ending in a newline.
    """
    metrics = list(metrics)
    if int(digits) != digits or digits < 0:
        raise ValueError(f"digits must be a non-negative integer, got {digits!r}")
    if not metrics:
        raise ValueError("metrics is empty; name at least one metric, e.g. ('r2_pooled',)")
    _require_columns(table, ["model", "family", "n_runs", "n_diverged"], "table")
    unknown = [m for m in metrics if f"{m}_mean" not in table.columns or f"{m}_std" not in table.columns]
    if unknown:
        raise ValueError(
            f"metrics {unknown} have no '<metric>_mean'/'<metric>_std' columns in table; "
            f"choose from {METRIC_COLUMNS} or the table's r2_lead_* columns"
        )
    digits = int(digits)
    header = ["model", "family", "n_runs", "n_diverged", *metrics]
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join([" --- ", " --- ", " ---: ", " ---: "] + [" ---: "] * len(metrics)) + "|",
    ]
    for _, row in table.iterrows():
        cells = [
            str(row["model"]),
            str(row["family"]),
            str(int(row["n_runs"])),
            str(int(row["n_diverged"])),
        ]
        cells += [_format_cell(row[f"{m}_mean"], row[f"{m}_std"], digits, int(row["n_runs"])) for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")

    pooled = table[table["family"] == ALL_FAMILIES]
    best_parts = []
    for metric in metrics:
        if _higher_is_better(metric):
            pick = np.nanargmax
        elif metric in LOWER_IS_BETTER:
            pick = np.nanargmin
        else:
            continue
        values = pooled[f"{metric}_mean"].to_numpy(dtype=float)
        if pooled.empty or np.all(np.isnan(values)):
            best_parts.append(f"{metric}: n/a")
            continue
        best = pooled.iloc[int(pick(values))]
        best_parts.append(f"{metric}: {best['model']} ({best[f'{metric}_mean']:.{digits}f})")
    text = "\n".join(lines) + "\n"
    if best_parts:
        text += "\nBest model over all families — " + "; ".join(best_parts) + "\n"
    return text


def _json_number(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


#: Per-model, per-shift-mode means in ``summary.json`` (and MLflow), besides ``r2_pooled``; the
#: ensemble scores exist for the ``lab_ensemble`` mode only (None in the other modes).
SUMMARY_METRICS: tuple[str, ...] = (
    "r2_pooled", "skill_vs_climatology", "skill_vs_persistence", "r2_latent",
    "crps_skill_climatology", "energy_skill_climatology", "crps_skill_hold", "energy_skill_hold",
    "spread_skill",
)

#: Columns of the ensemble skill-by-lead table that ``summary.json`` gives per lead window.
ENSEMBLE_LEAD_METRICS: tuple[str, ...] = (
    "crps_skill_climatology", "energy_skill_climatology", "crps_skill_hold", "energy_skill_hold",
    "spread_skill",
)


def summary_dict(
    test_results: pd.DataFrame, extra: Mapping | None, skill_by_lead: pd.DataFrame | None = None,
    shift_mode: str = "lab_ensemble",
) -> dict:
    """JSON-ready headline numbers per model, merged with ``extra``.

    Args:
        test_results: the long results table (one row per model, run and shift mode).
        extra: further top-level entries.
        skill_by_lead: the ensemble skill per model and lead window
            (:func:`rom_pipeline.evaluation.plots_skill.skill_by_lead`, pooled over test runs);
            None or empty for none.
        shift_mode: the shift mode ``skill_by_lead`` was computed for.

    Returns:
        ``{"models": {model: {"<metric>_mean": {shift_mode: float | None} for every metric of
        :data:`SUMMARY_METRICS` present in the table, "r2_lead_mean": {shift_mode: {window:
        float | None}} (when the table has ``r2_lead_*`` columns), "<metric>_lead_mean":
        {shift_mode: {window: float | None}} for every :data:`ENSEMBLE_LEAD_METRICS` (when
        ``skill_by_lead`` has rows of the model; windows named like the ``r2_lead_*`` ones,
        e.g. ``"0_2"``, ``"20_end"``), "n_diverged": {shift_mode: int}, "n_runs": int}},
        **extra}`` where ``n_runs`` is the number of distinct test runs of the model and every
        ``_mean`` of the results table is NaN-aware over its test runs (a per-run mean: the
        whole-run ensemble skills are means of per-run skills, the lead-window ones pooled).
        Non-finite values become ``None`` (JSON has no NaN).

    Raises:
        ValueError: if ``extra`` has a ``"models"`` key (it would overwrite the summary).
    """
    _require_columns(test_results, ["model", "run_id", "shift_mode", "diverged", "r2_pooled"], "test_results")
    extra = {} if extra is None else dict(extra)
    if "models" in extra:
        raise ValueError(
            "extra has a 'models' key, which summary_dict reserves for the per-model summary; "
            "rename that entry"
        )
    metrics = [m for m in SUMMARY_METRICS if m in test_results.columns]
    leads = [c for c in test_results.columns if str(c).startswith(LEAD_PREFIX)]

    def mean_of(rows: pd.DataFrame, column: str) -> float | None:
        mean, _ = _mean_std(pd.to_numeric(rows[column], errors="coerce").to_numpy(float))
        return _json_number(mean)

    models: dict = {}
    for model in pd.unique(test_results["model"]):
        of_model = test_results[test_results["model"] == model]
        block: dict = {f"{m}_mean": {} for m in metrics}
        if leads:
            block["r2_lead_mean"] = {}
        block["n_diverged"] = {}
        for mode in pd.unique(of_model["shift_mode"]):
            of_mode = of_model[of_model["shift_mode"] == mode]
            for metric in metrics:
                block[f"{metric}_mean"][str(mode)] = mean_of(of_mode, metric)
            if leads:
                block["r2_lead_mean"][str(mode)] = {
                    c.removeprefix(LEAD_PREFIX): mean_of(of_mode, c) for c in leads
                }
            block["n_diverged"][str(mode)] = int(of_mode["diverged"].eq(True).sum())
        if skill_by_lead is not None and len(skill_by_lead):
            of_lead = skill_by_lead[skill_by_lead["model"] == model]
            windows = [f"{lo:g}_{'end' if not np.isfinite(hi) else f'{hi:g}'}"
                       for lo, hi in zip(of_lead["lead_start"], of_lead["lead_end"])]
            for metric in ENSEMBLE_LEAD_METRICS if len(of_lead) else ():
                block[f"{metric}_lead_mean"] = {shift_mode: {
                    w: _json_number(v) for w, v in zip(windows, of_lead[metric].to_numpy(float))
                }}
        block["n_runs"] = int(of_model["run_id"].nunique())
        models[str(model)] = block
    return {"models": models, **extra}
