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
