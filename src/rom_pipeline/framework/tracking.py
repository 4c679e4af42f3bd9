"""Experiment tracking with MLflow (optional extra ``mlflow``: ``pip install -e ".[mlflow]"``).

Who does what:

- **kedro-mlflow** (installed by the extra, configured in ``conf/base/mlflow.yml``) owns the MLflow
  run: it reads the tracking URI and experiment name (= the Kedro experiment), starts one run
  per ``kedro run`` and ends it, marking it failed when the pipeline fails. It also gives
  ``kedro mlflow ui``.
- :class:`TrackingHooks` (this module, in ``settings.HOOKS``) adds, while that run is active, the
  parameters flattened to one MLflow parameter per leaf (``parameters.rom.fixed_modes``, ...,
  one batch per run: kedro-mlflow's own flattening would write every leaf again at every node
  that reads ``parameters``, seconds per run), the headline metrics from ``summary.json`` (each
  model's mean pooled R² per shift mode, diverged runs, training time), the POD's r and
  captured energy, the hyper-parameter search's best scores, every figure and the key tables.

No catalog entry depends on kedro-mlflow, so the project runs unchanged without the extra: with
MLflow absent, or no MLflow run active, the hooks do nothing.

Why a hook and not kedro-mlflow's ``MlflowArtifactDataset`` / ``MlflowMetricsHistoryDataset``:
those wrap catalog entries, so every figure and table entry would name a kedro-mlflow class and
the catalog would fail to load without the optional extra; the metrics here are derived from
``summary.json`` (one entry) rather than being datasets of their own; and the one-batch parameter
logging above has no kedro-mlflow equivalent. The hook keeps the extra optional in ~40 lines.

The command line that reads the tracked runs back (``python -m rom_pipeline.cli.tracking table``
and ``ui``) lives in :mod:`rom_pipeline.cli.tracking`.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.framework.hooks import hook_impl

logger = logging.getLogger(__name__)

# Tables and reports logged as run artifacts (figures are logged whatever their name).
TABLE_ARTIFACTS = ("comparison_table", "all_test_results", "search.results")
TEXT_ARTIFACTS = ("comparison_markdown",)
DICT_ARTIFACTS = ("summary", "pod_summary", "config_used", "search.best")
# Columns of the headline table, matched against metric keys.
HEADLINE = re.compile(r"(\.r2_pooled_mean\.|\.skill_vs_\w+_mean\.|\.n_diverged\.|\.fit_seconds$|^pod\.(n_modes|energy_captured)$"
                      r"|^search\..*\.score_mean$)")


def mlflow_available() -> bool:
    """True when the ``mlflow`` package can be imported (the optional extra is installed)."""
    return importlib.util.find_spec("mlflow") is not None


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(float(value)):
        return float(value)
    return None


def _key(*parts: Any) -> str:
    """MLflow metric key from parts; characters MLflow rejects become underscores."""
    return ".".join(re.sub(r"[^\w\-. /]", "_", str(p)) for p in parts)


def summary_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """Headline metrics of ``summary.json``.

    ``<MODEL>.<metric>_mean.<shift_mode>`` for every per-shift-mode mean of the summary
    (``r2_pooled``, ``skill_vs_climatology``, ``skill_vs_persistence``, ``r2_latent``),
    ``<MODEL>.r2_lead_mean.<shift_mode>.<window>`` and ``<MODEL>.n_diverged.<shift_mode>`` (test runs),
    ``<MODEL>.n_runs``, ``<MODEL>.fit_seconds`` and the other numbers of the model's training
    summary as ``<MODEL>.training.<key>``, and ``pod.<key>`` for the POD summary's numbers
    (``pod.n_modes``, ``pod.energy_captured``, ``pod.fit_seconds``, ...). Missing or non-finite
    values are left out.
    """
    out: dict[str, float] = {}
    for model, block in (summary.get("models") or {}).items():
        for name, by_mode in block.items():
            if not (name.endswith("_mean") and isinstance(by_mode, Mapping)):
                continue
            for mode, value in by_mode.items():
                if isinstance(value, Mapping):  # r2_lead_mean: {mode: {window: value}}
                    for window, v in value.items():
                        if _number(v) is not None:
                            out[_key(model, name, mode, window)] = _number(v)
                elif _number(value) is not None:
                    out[_key(model, name, mode)] = _number(value)
        for mode, value in (block.get("n_diverged") or {}).items():
            if _number(value) is not None:
                out[_key(model, "n_diverged", mode)] = _number(value)
        if _number(block.get("n_runs")) is not None:
            out[_key(model, "n_runs")] = _number(block["n_runs"])
        training = block.get("training") or {}
        for key, value in training.items():
            if key != "fit_seconds" and _number(value) is not None:
                out[_key(model, "training", key)] = _number(value)
        if _number(training.get("fit_seconds")) is not None:
            out[_key(model, "fit_seconds")] = _number(training["fit_seconds"])
    for key, value in (summary.get("pod") or {}).items():
        if _number(value) is not None:
            out[_key("pod", key)] = _number(value)
    return out


def search_metrics(best: Mapping[str, Any]) -> dict[str, float]:
    """``search.<model>.{score_mean, score_std, latent_r2_mean, n_modes, n_diverged}`` of the best
    configuration of every searched model (``search.best``)."""
    out: dict[str, float] = {}
    for model, block in best.items():
        if model == "scored_on" or not isinstance(block, Mapping):
            continue
        for key in ("score_mean", "score_std", "latent_r2_mean", "n_modes", "n_diverged"):
            if _number(block.get(key)) is not None:
                out[_key("search", model, key)] = _number(block[key])
    return out


def flatten_parameters(params: Mapping[str, Any], prefix: str = "parameters") -> dict[str, str]:
    """``{"rom": {"lag": 5}}`` -> ``{"parameters.rom.lag": "5"}``: one entry per leaf (lists and
    ``None`` are leaves, written as ``str``), truncated to MLflow's parameter length limit."""
    out: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten_parameters(value, name))
        else:
            out[name] = str(value)[:6000]
    return out


class TrackingHooks:
    """Log parameters, headline metrics, figures and key tables into the active MLflow run (see
    the module doc); do nothing without MLflow or without an active run."""

    _catalog: Any = None

    @hook_impl(trylast=True)  # after kedro-mlflow's before_pipeline_run has started the run
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline: Any, catalog: Any) -> None:
        self._catalog = catalog  # to find the files its figure datasets write
        if not mlflow_available():
            return
        import mlflow

        if mlflow.active_run() is None:
            return
        try:
            mlflow.log_params(flatten_parameters(catalog.load("parameters")))
        except Exception as exc:  # tracking must never fail a science run
            logger.warning("MLflow: could not log the parameters (%s: %s)", type(exc).__name__, exc)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any, node: Any) -> None:
        if not mlflow_available():
            return
        import mlflow

        if mlflow.active_run() is None:
            return
        try:
            self._log(mlflow, dataset_name, data)
        except Exception as exc:  # tracking must never fail a science run
            logger.warning("MLflow: could not log %s (%s: %s)", dataset_name, type(exc).__name__, exc)

    def _saved_png(self, name: str) -> Path | None:
        """The local PNG file that the (unversioned) catalog dataset ``name`` has just written,
        or None when there is none to reuse."""
        try:
            dataset = self._catalog.get(name)
            path = Path(str(dataset._filepath))
            reusable = dataset._protocol == "file" and dataset._version is None
        except Exception:  # another dataset type or catalog: render the figure instead
            return None
        return path if reusable and path.suffix == ".png" and path.is_file() else None

    def _log(self, mlflow, name: str, data: Any) -> None:
        from matplotlib.figure import Figure

        if name == "summary":
            mlflow.log_metrics(summary_metrics(data))
        elif name == "search.best":
            mlflow.log_metrics(search_metrics(data))
        if isinstance(data, Figure):
            folder, _, stem = name.rpartition(".")  # mvar.eigenvalues_plot -> figures/mvar/eigenvalues.png
            directory, file = f"figures{'/' + folder if folder else ''}", f"{stem.removesuffix('_plot')}.png"
            saved = self._saved_png(name)
            if saved is None:
                mlflow.log_figure(data, f"{directory}/{file}")
            else:  # the PNG the catalog wrote: rendering the figure again costs seconds per figure
                with tempfile.TemporaryDirectory() as tmp:
                    shutil.copyfile(saved, Path(tmp) / file)
                    mlflow.log_artifact(str(Path(tmp) / file), artifact_path=directory)
        elif name in TABLE_ARTIFACTS and isinstance(data, pd.DataFrame):
            mlflow.log_text(data.to_csv(index=False), f"tables/{name}.csv")
        elif name in TEXT_ARTIFACTS and isinstance(data, str):
            mlflow.log_text(data, f"tables/{name}.md")
        elif name in DICT_ARTIFACTS and isinstance(data, Mapping):
            suffix = "yaml" if name == "config_used" else "json"
            mlflow.log_dict(dict(data), f"{name}.{suffix}")
