"""Command-line tools. Nothing in the package imports from here.

- ``kedro_cli``: the project's ``kedro run`` (short errors). Kedro looks the project's commands up
  as ``rom_pipeline.cli.cli`` (and ``find_run_command`` as ``rom_pipeline.cli.run``), so this
  package hands those two names over on first use; every other tool is imported by its own path.
- ``catalogue`` (``python -m rom_pipeline.cli.catalogue``), ``prune``, ``hpc``, ``legacy``
  (``rom-legacy``) and ``tracking`` (``table`` / ``ui`` over the MLflow store).
"""
from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m rom_pipeline.cli.prune` does not load Kedro's CLI machinery.
    if name in ("cli", "run"):
        from rom_pipeline.cli import kedro_cli

        return getattr(kedro_cli, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
