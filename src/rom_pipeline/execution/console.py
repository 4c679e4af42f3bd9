"""The terminal: one rich console on **stderr**, and the known harmless library warnings silenced.

stdout belongs to a command's product (an sbatch script, a CSV table), so every log line and
progress bar goes to :data:`console`, which writes to stderr. ``conf/logging.yml`` hands this
console to Kedro's rich handlers (``console: ext://rom_pipeline.execution.console.console``); Kedro reads
that file as it is imported, before it loads plugins such as kedro-mlflow, so importing this
module is also the earliest point at which the project can quiet the libraries:

- Dask (``distributed``) logs at WARNING (``DASK_LOGGING__DISTRIBUTED``, inherited by worker
  processes); MLflow leaves its loggers to ours (``MLFLOW_CONFIGURE_LOGGING=false``) instead of
  printing its own INFO lines. ``conf/logging.yml`` sends library records to ``info.log`` and
  only warnings to the console. A variable the user set wins.
- :func:`silence_known_warnings` drops four warnings that carry no information for a user:
  OmegaConf's ``register_new_resolver()`` deprecation (raised inside Kedro and kedro-mlflow),
  MLflow's colour-escaped "Add type hints to the `predict` method" (raised as kedro-mlflow
  defines its model class), and Kedro's "dataset names contain '.'" (our model outputs are
  namespaced ``mvar.*``/``lstm.*`` on purpose; the evaluation pipeline reads them by full name),
  and Dask's "Port 8787 is already in use" (another cluster on the machine holds the default
  dashboard port; ours moves to a free one, which nothing here uses).
"""
from __future__ import annotations

import logging
import os
import re
import warnings

from rich.console import Console

#: The project's console: stderr, shared by the log handlers and the progress bars so that log
#: lines print above a live bar instead of tearing it.
console = Console(stderr=True)

LIBRARY_ENVIRONMENT = {"DASK_LOGGING__DISTRIBUTED": "warning", "MLFLOW_CONFIGURE_LOGGING": "false"}

KNOWN_HARMLESS_WARNINGS = (
    r"register_new_resolver\(\) is deprecated",
    r"(?s).*Add type hints to the `predict` method",
    r"One or more dataset names contain '\.' characters",
    r"Port \d+ is already in use",
)


def _not_known_harmless(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(re.search(pattern, message) for pattern in KNOWN_HARMLESS_WARNINGS)


def silence_known_warnings() -> None:
    """Drop :data:`KNOWN_HARMLESS_WARNINGS`, twice over: a ``warnings`` filter, and a filter on
    the ``py.warnings`` logger (where Kedro's rich handler routes warnings), because MLflow
    raises its warning inside ``catch_warnings`` with its own ``simplefilter("once")``."""
    for pattern in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
    py_warnings = logging.getLogger("py.warnings")
    if _not_known_harmless not in py_warnings.filters:
        py_warnings.addFilter(_not_known_harmless)


def quiet_libraries() -> None:
    """Set :data:`LIBRARY_ENVIRONMENT` where the user has not, and silence the known warnings."""
    for name, value in LIBRARY_ENVIRONMENT.items():
        os.environ.setdefault(name, value)
    silence_known_warnings()


quiet_libraries()
