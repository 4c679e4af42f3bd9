"""Project hooks: validate parameters before any work starts, and remember them for the registry."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from rom_pipeline.config import validate_parameters

logger = logging.getLogger(__name__)
_ACTIVE: dict[str, Any] = {}


def active_parameters() -> dict[str, Any]:
    """Parameters of the running session's environment (or of ``KEDRO_ENV`` / local + base).

    The pipeline registry uses them to include only the enabled models.
    """
    if "params" in _ACTIVE:
        return _ACTIVE["params"]
    from kedro.config import OmegaConfigLoader

    conf = Path(os.environ.get("ROM_PIPELINE_PROJECT", Path.cwd())) / "conf"
    if not conf.is_dir():
        return {}
    loader = OmegaConfigLoader(
        conf_source=str(conf), base_env="base",
        default_run_env=os.environ.get("KEDRO_ENV", "local"),
    )
    try:
        return dict(loader["parameters"])
    except Exception:  # an unreadable config is reported by the validation hook at run time
        return {}


class ValidationHooks:
    @hook_impl
    def after_context_created(self, context) -> None:
        params = context.params
        _ACTIVE["params"] = params
        _ACTIVE["env"] = context.env
        validate_parameters(params)  # raises ConfigError naming key, value and fix
        logger.info("Parameters of environment '%s' validated", context.env or "local")
