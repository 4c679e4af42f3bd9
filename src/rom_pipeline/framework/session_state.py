"""The running session's parameters, as :class:`~rom_pipeline.framework.hooks.ValidationHooks`
validated them once when the context was created.

Kedro 1.7's ``register_pipelines()`` receives no parameters, yet the pipeline registry must include
only the enabled forecasters; the validation hook stores the tree here and the registry reads it.
This module holds only that state (no Kedro, no project imports), so the hooks and the pipelines
both import it without importing each other.
"""
from __future__ import annotations

from typing import Any

_ACTIVE: dict[str, Any] = {}


def active_parameters() -> dict[str, Any]:
    """Parameters of the running session (set when its context is created), else ``{}``.

    The pipeline registry uses them to include only the enabled models; with no session (e.g. a
    bare import) every model counts as enabled.
    """
    return _ACTIVE.get("params", {})


def active_config():
    """The running session's parameter tree as validated ONCE by the validation hook (an
    ``ExperimentConfig``), else None. Hooks that need the whole tree read it here; nodes never do
    (they take ``params:<block>``)."""
    return _ACTIVE.get("config")
