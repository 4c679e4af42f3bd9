"""Project CLI: Kedro's ``kedro run`` with short errors.

Kedro loads the ``cli`` group of this module and lets its commands override the built-in ones
(see https://docs.kedro.org/en/stable/extend/common_use_cases/). ``run`` here is Kedro's own run
command with one more option: an error the user can fix (invalid parameters, missing or stale
inputs, another run holding the experiment, an unknown ``--pipelines`` name, an unreadable data
file) is printed as its message, which names the key or file and the fix, without the ~200-line
traceback. ``--verbose`` or ``ROM_VERBOSE=1`` restores the traceback.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
from kedro.framework.cli.project import run as kedro_run
from kedro.io import DatasetError

from rom_pipeline.config import ConfigError
from rom_pipeline.execution.lock import ExperimentBusy
from rom_pipeline.execution.parallel import ClusterUnavailable
from rom_pipeline.execution.run_folder import RunFolderError
from rom_pipeline.framework.lineage import LineageError

USER_ERRORS = (ConfigError, ClusterUnavailable, RunFolderError, LineageError, ExperimentBusy, DatasetError)


def verbose_requested(flag: bool = False) -> bool:
    return flag or os.environ.get("ROM_VERBOSE", "").strip().lower() in ("1", "true", "yes", "on")


def short_message(error: BaseException) -> str | None:
    """The message to print instead of a traceback, or ``None`` for an unexpected error."""
    text = str(error)
    if isinstance(error, ValueError) and text.startswith("Failed to find the pipeline named"):
        from kedro.framework.project import pipelines

        names = sorted(name for name in pipelines.keys() if name != "__default__")
        first = text.split(". ")[0]
        return f"{first}. Available pipelines: {', '.join(names)} (or none for the default pipeline)."
    if isinstance(error, USER_ERRORS):
        return f"{type(error).__name__}: {text}"
    if type(error) is RuntimeError and text.startswith("Missing inputs"):  # hooks.MissingInputsHooks
        return text
    cause = error.__cause__ or error.__context__
    if isinstance(error, Exception) and isinstance(cause, USER_ERRORS):
        return short_message(cause)
    return None


def available_pipelines() -> list[str]:
    """Names ``--pipelines`` accepts: every modular pipeline package in ``rom_pipeline.pipelines``
    and every registered forecaster (:mod:`rom_pipeline.registry`)."""
    import pkgutil

    import rom_pipeline.pipelines as package
    from rom_pipeline.registry import FORECASTERS

    return sorted({m.name for m in pkgutil.iter_modules(package.__path__) if m.ispkg} | set(FORECASTERS))


def check_pipeline_names(names: list[str] | tuple[str, ...]) -> None:
    """Refuse an unknown ``--pipelines`` name at once, listing the real ones."""
    known = available_pipelines()
    unknown = [n for n in names if n not in known and n != "__default__"]
    if unknown:
        click.secho("Error: ", fg="red", bold=True, err=True, nl=False)
        click.echo(
            f"--pipelines: unknown pipeline(s) {', '.join(repr(n) for n in unknown)}. Available "
            f"pipelines: {', '.join(known)} (leave --pipelines out for the default pipeline).", err=True
        )
        raise SystemExit(1)


def check_experiment_name(env: str | None, conf_source: str | None) -> None:
    """Validate ``globals.experiment`` before the session starts (plugins such as kedro-mlflow read
    it first and would fail with an unclear message)."""
    from kedro.config import OmegaConfigLoader
    from kedro.framework.project import settings

    from rom_pipeline.config import validate_experiment_name

    source = conf_source or str(Path.cwd() / settings.CONF_SOURCE)
    loader = OmegaConfigLoader(conf_source=source, **{**settings.CONFIG_LOADER_ARGS, "env": env})
    try:
        glob = dict(loader["globals"])
    except Exception:  # unreadable configuration: Kedro reports it itself
        return
    validate_experiment_name(glob.get("experiment"))


@click.group(name="rom_pipeline")
def cli() -> None:
    """Project commands of rom_pipeline."""


@cli.command(
    name="run",
    params=[
        *kedro_run.params,
        click.Option(["--verbose"], is_flag=True, default=False,
                     help="Show the full traceback of an error (also: ROM_VERBOSE=1)."),
    ],
    help=(kedro_run.help or "Run the pipeline.") + " Errors the user can fix are shown without a "
    "traceback; --verbose or ROM_VERBOSE=1 shows it.",
)
def run(verbose: bool, **kwargs: Any) -> Any:
    check_pipeline_names([*(kwargs.get("pipelines") or []), *([kwargs["pipeline"]] if kwargs.get("pipeline") else [])])
    try:
        check_experiment_name(kwargs.get("env"), kwargs.get("conf_source"))
        return kedro_run.callback(**kwargs)
    except Exception as error:
        message = None if verbose_requested(verbose) else short_message(error)
        if message is None:
            raise
        click.secho("Error: ", fg="red", bold=True, err=True, nl=False)
        click.echo(message, err=True)
        click.echo("(run with --verbose or ROM_VERBOSE=1 for the traceback)", err=True)
        raise SystemExit(1) from None
