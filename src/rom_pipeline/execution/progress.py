"""Progress bars for the long steps: simulation runs, POD passes, LSTM epochs, evaluation runs.

Science code stays free of Kedro and of rich: a long loop accepts an optional callback
``progress(n=1)`` and calls it once per finished unit (a run, an epoch). The glue opens a bar
and hands its callback in::

    with progress_bar("LSTM epochs", total=cfg.max_epochs) as advance:
        model.fit(trajectories, progress=advance)

    for run in track(runs, "MVAR: evaluating test runs"):   # an iterable, counted as consumed
        ...

The bar (rich, on the project's stderr :data:`~rom_pipeline.execution.console.console`) shows done/total,
elapsed time and the time left. On a terminal it redraws in place; when stderr is a file or a
pipe it prints once, as one finished line, when the step ends, so logs stay short. A step that
stops early (early stopping) closes its bar where it stopped.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rom_pipeline.execution.console import console

T = TypeVar("T")
Advance = Callable[..., None]


def _columns():
    return (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )


@contextmanager
def progress_bar(description: str, total: int | None) -> Iterator[Advance]:
    """A bar of ``total`` units; yields ``advance(n=1)``, to be called per finished unit.

    Args:
        description: what is being done, e.g. ``"simulating train runs"``.
        total: number of units (``None``: unknown; the bar then shows no time left).
    """
    with Progress(*_columns(), console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Yield ``items`` unchanged, advancing a bar as each one is consumed.

    ``total`` defaults to ``len(items)`` when ``items`` has a length.
    """
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with progress_bar(description, total) as advance:
        for item in items:
            yield item
            advance()
