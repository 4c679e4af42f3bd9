"""Run independent tasks serially or on a Dask cluster, yielding results as they finish.

``workers == 1`` and no scheduler address -> plain serial loop (no Dask import). Otherwise a
``dask.distributed`` client is used: an embedded ``LocalCluster`` with one single-threaded process
per worker, an existing scheduler (``scheduler_address``), or a SLURM cluster through
``dask-jobqueue`` (``cluster: slurm``). Tasks must be picklable and carry their own seeds, so the
results never depend on the number of workers or on the order in which they finish.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

logger = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class ExecutionConfig:
    """Where independent work runs.

    Attributes:
        workers: number of worker processes (LocalCluster) or SLURM jobs; 1 = serial.
        scheduler_address: address of a running Dask scheduler (``tcp://host:8786``); overrides
            ``workers`` and ``cluster``.
        cluster: ``local`` (LocalCluster) or ``slurm`` (dask-jobqueue SLURMCluster).
        slurm: keyword arguments for ``dask_jobqueue.SLURMCluster`` (queue, cores, memory, walltime,
            account, job_extra_directives, ...).
    """

    workers: int = 1
    scheduler_address: str | None = None
    cluster: str = "local"
    slurm: dict[str, Any] = field(default_factory=dict)

    @property
    def parallel(self) -> bool:
        return self.workers > 1 or self.scheduler_address is not None or self.cluster == "slurm"


def make_slurm_cluster(config: ExecutionConfig):
    """A ``dask_jobqueue.SLURMCluster`` scaled to ``config.workers`` jobs (import is optional)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:  # pragma: no cover - depends on the optional extra
        raise ImportError(
            "execution.cluster = 'slurm' needs dask-jobqueue: pip install 'rom_pipeline[slurm]'"
        ) from exc
    kwargs = {"cores": 1, "processes": 1, "memory": "4GB", "walltime": "02:00:00"}
    kwargs.update(config.slurm)
    cluster = SLURMCluster(**kwargs)
    cluster.scale(jobs=config.workers)
    return cluster


@contextmanager
def dask_client(config: ExecutionConfig):
    """A ``distributed.Client`` for ``config``; the cluster it creates is closed on exit."""
    from distributed import Client, LocalCluster

    if config.scheduler_address:
        with Client(config.scheduler_address) as client:
            yield client
        return
    if config.cluster == "slurm":
        cluster = make_slurm_cluster(config)
    else:
        cluster = LocalCluster(
            n_workers=config.workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            host="127.0.0.1",
        )
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def map_as_completed(
    fn: Callable[[T], R], items: Iterable[T], config: ExecutionConfig, label: str = "tasks"
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` for every item, in completion order.

    Progress (done / total and rate) is logged about every 10 %.
    """
    items = list(items)
    total = len(items)
    if total == 0:
        return
    start = time.perf_counter()
    step = max(1, total // 10)

    def progress(done: int) -> None:
        if done % step == 0 or done == total:
            elapsed = time.perf_counter() - start
            logger.info(
                "%s: %d/%d done (%.2f per s, %.1f s elapsed)",
                label, done, total, done / max(elapsed, 1e-9), elapsed,
            )

    if not config.parallel:
        for done, item in enumerate(items, 1):
            yield item, fn(item)
            progress(done)
        return

    from distributed import as_completed

    with dask_client(config) as client:
        futures = client.map(fn, items, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for done, (future, result) in enumerate(as_completed(futures, with_results=True), 1):
            yield items[index[future.key]], result
            future.release()
            progress(done)
