"""Project hooks: validate parameters before any work starts, and remember them for the registry."""
from __future__ import annotations

import logging
from typing import Any

from kedro.framework.hooks import hook_impl

from rom_pipeline.config import validate_parameters

logger = logging.getLogger(__name__)
_ACTIVE: dict[str, Any] = {}


def active_parameters() -> dict[str, Any]:
    """Parameters of the running session (set when its context is created), else ``{}``.

    The pipeline registry uses them to include only the enabled models; with no session (e.g. a
    bare import) every model counts as enabled.
    """
    return _ACTIVE.get("params", {})


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
        _ACTIVE["params"] = params
        _ACTIVE["env"] = context.env
        validate_parameters(params)  # raises ConfigError naming key, value and fix
        logger.info("Parameters of environment '%s' validated", context.env or "local")


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
        producers = []
        for pipe_name in ("simulation", "pod", "latent_dataset", "mvar", "lstm", "evaluation"):
            module = importlib.import_module(f"rom_pipeline.pipelines.{pipe_name}")
            outputs = module.create_pipeline().all_outputs()
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


SHARED_ARTIFACTS = ("pod_basis", "train_latent", "latent_dataset", "mvar.model", "lstm.model")


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
        if dataset_name in SHARED_ARTIFACTS and self._catalog is not None:
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
        for name in SHARED_ARTIFACTS:
            if name not in versions:
                version = self._version(name, loaded=True)
                if version:
                    versions[name] = version
        data["artifact_versions"] = versions
