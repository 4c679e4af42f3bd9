"""Project hooks: validate the whole parameter tree once, before any work starts (nodes read only
their own ``params:<block>``; the tree is remembered for the pipeline registry),
say when a setting the user made cannot take effect, and end a run with its results."""
from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from rom_pipeline.config import ROMConfig, validate_parameters
from rom_pipeline.framework.session_state import _ACTIVE

logger = logging.getLogger(__name__)
def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


class ValidationHooks:
    @hook_impl
    def after_context_created(self, context) -> None:
        # Not ``context.params``: that property loads the pipelines, whose registry needs the
        # parameters stored here first (to include only the enabled models).
        params = _merge(
            dict(context.config_loader["parameters"]), getattr(context, "_runtime_params", None) or {}
        )
        _ACTIVE.pop("config", None)
        _ACTIVE["params"] = params
        _ACTIVE["env"] = context.env
        _ACTIVE["config"] = validate_parameters(params)  # raises ConfigError naming key, value and fix
        logger.info("Parameters of environment '%s' validated", context.env or "local")


# ---------------------------------------------------------------------- ignored intent
def ignored_intents(params: dict[str, Any], runtime_params: dict[str, Any] | None = None) -> list[str]:
    """One message per setting that this run's other settings make ineffective.

    - ``rom.pod_energy`` while ``rom.fixed_modes`` is set (``fixed_modes`` wins): reported when
      ``pod_energy`` differs from its default or was passed on the command line.

    ``params`` are the merged parameters, ``runtime_params`` those given with ``--params``.
    """
    messages = []
    rom = params.get("rom") or {}
    given = ((runtime_params or {}).get("rom") or {})
    energy, modes = rom.get("pod_energy"), rom.get("fixed_modes")
    default_energy = ROMConfig.model_fields["pod_energy"].default
    if modes is not None and energy is not None and ("pod_energy" in given or energy != default_energy):
        messages.append(
            f"rom.pod_energy = {energy} has no effect: rom.fixed_modes = {modes} sets the number "
            "of POD modes and takes priority. To choose the modes by energy, also set "
            f"rom.fixed_modes to null, e.g. --params \"rom.fixed_modes=null,rom.pod_energy={energy}\""
        )
    return messages


class IntentHooks:
    """Warn, once per run, about settings that cannot take effect (:func:`ignored_intents`).

    (``--pipelines=<model>`` for a disabled model is answered by the pipeline registry: it runs
    one node that says the model is skipped.)"""

    def __init__(self) -> None:
        self._params: dict[str, Any] = {}

    @hook_impl
    def after_context_created(self, context) -> None:
        runtime = getattr(context, "_runtime_params", None) or {}
        self._params = _merge(dict(context.config_loader["parameters"]), runtime)
        for message in ignored_intents(self._params, runtime):
            logger.warning(message)


class MissingInputsHooks:
    """Stop at once, before any node runs, when a pipeline's inputs were never built."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        import importlib

        missing = [
            name for name in sorted(pipeline.inputs())
            if not name.startswith("params:") and name != "parameters" and not catalog.exists(name)
        ]
        if not missing:
            return
        from rom_pipeline.pipelines.models import model_pipeline
        from rom_pipeline.registry import FORECASTERS

        stages = {name: importlib.import_module(f"rom_pipeline.pipelines.{name}").create_pipeline
                  for name in ("simulation", "pod", "latent_dataset")}
        stages.update({name: (lambda e=entry: model_pipeline(e)) for name, entry in FORECASTERS.items()})
        stages["evaluation"] = importlib.import_module("rom_pipeline.pipelines.evaluation").create_pipeline
        producers = []
        for pipe_name, create in stages.items():
            outputs = create().all_outputs()
            if any(name in outputs for name in missing):
                producers.append(pipe_name)
        env = run_params.get("env")
        env_flag = f" --env {env}" if env else ""
        raise RuntimeError(
            f"Missing inputs {', '.join(missing)}: they are built by the "
            f"{', '.join(producers) or 'upstream'} pipeline(s). Build them first with "
            f"`kedro run --pipelines={','.join(producers) or 'simulation,pod,latent_dataset'}{env_flag}`, "
            "then rerun this command."
        )


def shared_artifacts() -> tuple[str, ...]:
    """The versioned artifacts whose versions ``summary.json`` records (one model per forecaster)."""
    from rom_pipeline.registry import FORECASTERS

    return ("pod_basis", "train_latent", "latent_dataset", *(f"{m}.model" for m in FORECASTERS))


class ProvenanceHooks:
    """Record in ``summary.json`` which version of each versioned artifact the run used.

    A loaded artifact is recorded with the version it was loaded at; an artifact saved in this run
    with its save version; any other shared artifact with the latest version on disk.
    """

    def __init__(self) -> None:
        self._catalog = None
        self._versions: dict[str, str] = {}

    @hook_impl
    def after_catalog_created(self, catalog) -> None:
        self._catalog = catalog
        self._versions = {}

    def _version(self, name: str, loaded: bool) -> str | None:
        try:
            dataset = self._catalog[name]
        except Exception:  # not in this project's catalog
            return None
        if not hasattr(dataset, "resolve_load_version"):
            return None
        try:
            return dataset.resolve_load_version() if loaded else dataset.resolve_save_version()
        except Exception:  # no version on disk yet
            return None

    def _record(self, dataset_name: str, loaded: bool) -> None:
        if dataset_name in shared_artifacts() and self._catalog is not None:
            version = self._version(dataset_name, loaded=loaded)
            if version:
                self._versions[dataset_name] = version

    @hook_impl
    def after_dataset_loaded(self, dataset_name: str, data: Any) -> None:
        self._record(dataset_name, loaded=True)

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        self._record(dataset_name, loaded=False)

    @hook_impl
    def before_dataset_saved(self, dataset_name: str, data: Any) -> None:
        if dataset_name != "summary" or not isinstance(data, dict) or self._catalog is None:
            return
        versions = dict(self._versions)
        from rom_pipeline.pipelines.models import enabled_models
        from rom_pipeline.registry import FORECASTERS

        disabled = {f"{m}.model" for m in set(FORECASTERS) - set(enabled_models())}
        for name in shared_artifacts():
            if name not in versions and name not in disabled:  # a disabled model's old artifact
                version = self._version(name, loaded=True)
                if version:
                    versions[name] = version
        data["artifact_versions"] = versions


# ---------------------------------------------------------------------- end-of-run summary
def _filepath(catalog, name: str) -> str | None:
    """Where catalog entry ``name`` is stored, or None (not a file dataset, or not in the catalog)."""
    try:
        described = catalog[name]._describe()
    except Exception:  # not in this catalog, or a dataset that does not describe itself
        return None
    path = described.get("filepath") or described.get("path")
    return None if path is None else str(path)


def run_summary_lines(test_results: dict[str, Any], paths: dict[str, str | None],
                      report: str | None) -> list[str]:
    """The lines that end a run: per model, its mean pooled R² per shift mode over the test runs,
    its diverged runs and where its results are; then where the comparison report is.

    ``test_results`` maps a model's namespace (``mvar``) to its ``test_results`` table,
    ``paths`` maps it to that table's file.
    """
    from pathlib import Path

    from rom_pipeline.evaluation.protocol import SHIFT_MODE_SHORT
    from rom_pipeline.evaluation.report import summary_dict

    lines = []
    for name, table in test_results.items():
        for model, block in summary_dict(table, None)["models"].items():
            r2 = ", ".join(
                f"{SHIFT_MODE_SHORT.get(mode, mode)} "
                + (f"{value:.4f}" if value is not None else "n/a")
                for mode, value in block["r2_pooled_mean"].items()
            )
            diverged = sum(block["n_diverged"].values())
            folder = Path(paths[name]).parent if paths.get(name) else "?"
            lines.append(f"{model}: mean pooled R² {r2} over {block['n_runs']} test runs"
                         f"{f', {diverged} diverged' if diverged else ''}; results in {folder}/")
    if report:
        lines.append(f"Comparison report: {report}")
    return lines


BASELINE_RESULTS = "baseline_test_results"


class RunSummaryHooks:
    """End a run with its results: each model evaluated in this run (headline scores, folder), the
    baselines scored beside them when the evaluation ran, and the comparison report. Nothing is printed for a run that evaluated
    nothing (e.g. ``--pipelines=simulation``)."""

    def __init__(self) -> None:
        self._results: dict[str, Any] = {}
        self._report_saved = False

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        self._results, self._report_saved = {}, False

    @hook_impl
    def after_dataset_saved(self, dataset_name: str, data: Any) -> None:
        namespace, _, stem = dataset_name.rpartition(".")
        if stem == "test_results" and namespace:
            self._results[namespace] = data
        elif dataset_name == BASELINE_RESULTS:  # climatology and persistence, scored alike
            self._results[dataset_name] = data
        elif dataset_name == "comparison_markdown":
            self._report_saved = True

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        paths = {name: _filepath(catalog, name if name == BASELINE_RESULTS else f"{name}.test_results")
                 for name in self._results}
        report = _filepath(catalog, "comparison_markdown") if self._report_saved else None
        from rom_pipeline.registry import FORECASTERS

        order = list(FORECASTERS)  # the registry's order (the reports'), whatever finished first
        models_first = sorted(self._results, key=lambda name: (
            name == BASELINE_RESULTS, order.index(name) if name in order else len(order)))
        results = {name: self._results[name] for name in models_first}
        for line in run_summary_lines(results, paths, report):
            logger.info(line)
