"""Run independent tasks serially or on a Dask cluster.

``workers == 1`` and no scheduler address -> plain serial loop (no Dask import). Otherwise a
``dask.distributed`` client is used: an embedded ``LocalCluster`` with one single-threaded process
per worker (scheduler bound to 127.0.0.1, no dashboard), an existing scheduler
(``scheduler_address``), or a SLURM cluster through ``dask-jobqueue`` (``cluster: slurm``). Code
that already runs inside a Dask worker (a node dispatched by :class:`rom_pipeline.framework.runner.DaskRunner`)
submits its tasks to that same cluster instead of starting a nested one.

Two ways to consume the results:

* :func:`map_as_completed` yields ``(item, result)`` in completion order (simulation runs: each is
  written as soon as it is done);
* :func:`map_ordered` yields results in input order with a bounded number of tasks in flight
  (reductions that must add partial results in a fixed order to be bit-reproducible, e.g. the
  POD second moment).

Tasks must be picklable and carry their own seeds, so the results never depend on the number of
workers or on the order in which they finish.
"""
from __future__ import annotations

import inspect
import json
import logging
import re
import shutil
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rom_pipeline.execution.progress import progress_bar

logger = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

CLUSTER_KINDS = ("local", "slurm")
# Sizing of one SLURM job (one single-threaded Dask worker); `execution.slurm` overrides any key.
SLURM_DEFAULTS: dict[str, Any] = {"cores": 1, "processes": 1, "memory": "4GB", "walltime": "02:00:00"}
# The scheduler must listen where the compute nodes reach it, but its dashboard need not:
# it stays on the loopback interface (reach it with `ssh -L 8787:localhost:8787 <login node>`).
SLURM_SCHEDULER_DEFAULTS: dict[str, Any] = {"dashboard_address": "127.0.0.1:8787"}


@dataclass(frozen=True)
class ExecutionConfig:
    """Where independent work runs.

    Attributes:
        workers: number of worker processes (LocalCluster) or SLURM jobs; 1 = serial.
        scheduler_address: address of a running Dask scheduler (``tcp://host:8786``); overrides
            ``workers`` and ``cluster``.
        cluster: ``local`` (LocalCluster) or ``slurm`` (dask-jobqueue SLURMCluster).
        slurm: keyword arguments for ``dask_jobqueue.SLURMCluster`` (queue, account, cores, memory,
            walltime, job_extra_directives, job_script_prologue, ...; see ``conf/hpc``).
    """

    workers: int = 1
    scheduler_address: str | None = None
    cluster: str = "local"
    slurm: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(
                f"execution.workers = {self.workers!r}: must be an integer >= 1 (1 runs serially)"
            )
        if self.cluster not in CLUSTER_KINDS:
            raise ValueError(
                f"execution.cluster = {self.cluster!r}: must be one of {list(CLUSTER_KINDS)}"
            )
        if self.scheduler_address is not None and not str(self.scheduler_address).strip():
            raise ValueError(
                "execution.scheduler_address = '': give an address such as 'tcp://10.0.0.5:8786' "
                "or null for a cluster started by the pipeline"
            )
        if not isinstance(self.slurm, dict):
            raise ValueError(f"execution.slurm = {self.slurm!r}: must be a mapping of SLURMCluster options")
        problems = check_slurm_options(self.slurm)
        if problems:
            raise ValueError("; ".join(problems))

    @property
    def parallel(self) -> bool:
        return self.workers > 1 or self.scheduler_address is not None or self.cluster == "slurm"


# --------------------------------------------------------------------------- SLURM
# Characters a SLURM option may hold: enough for partitions, accounts, memory, walltimes, paths and
# directives such as "--exclude=node[01-03]" or "--mail-type=END,FAIL", but no newline (a new line
# would be a new, injected line of the batch script), no quote, "$", "`", ";" or "\\" (shell).
SAFE_SLURM_VALUE = re.compile(r"[A-Za-z0-9_ .,:=@%/+\-\[\]*|&()#]*")
SAFE_SLURM_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Options that are shell commands by design: only control characters are refused there.
SHELL_SLURM_OPTIONS = ("job_script_prologue", "env_extra", "job_script_epilogue")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_slurm_options(slurm: dict[str, Any], where: str = "execution.slurm") -> list[str]:
    """Problems of ``execution.slurm`` values that would corrupt the generated batch script.

    Every key must be an identifier; every string (also inside lists and mappings) must match
    :data:`SAFE_SLURM_VALUE` (options in :data:`SHELL_SLURM_OPTIONS` only may not hold control
    characters such as a newline). Returns one message per problem naming key, value and fix.
    """
    problems: list[str] = []

    def visit(key: str, value: Any, shell: bool) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if not SAFE_SLURM_KEY.fullmatch(str(k)):
                    problems.append(f"{key}.{k!r}: a SLURM option name must be an identifier (letters, digits, _)")
                visit(f"{key}.{k}", v, shell)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                visit(f"{key}.{i}", v, shell)
        elif isinstance(value, str):
            if _CONTROL.search(value):
                problems.append(
                    f"{key} = {value!r}: holds a newline or another control character, which would "
                    "inject a line into the batch script; write the option on one line"
                )
            elif not shell and not SAFE_SLURM_VALUE.fullmatch(value):
                bad = sorted({c for c in value if not SAFE_SLURM_VALUE.fullmatch(c)})
                problems.append(
                    f"{key} = {value!r}: characters {bad} are not allowed in a SLURM option (allowed: "
                    "letters, digits, space and _.,:=@%/+-[]*|&()#); remove them"
                )

    for name, value in slurm.items():
        if not SAFE_SLURM_KEY.fullmatch(str(name)):
            problems.append(f"{where}.{name!r}: a SLURM option name must be an identifier (letters, digits, _)")
            continue
        visit(f"{where}.{name}", value, shell=name in SHELL_SLURM_OPTIONS)
    return problems


class ClusterUnavailable(ValueError):
    """The ``execution`` block asks for a cluster this machine cannot start (no ``sbatch``).

    A ``ValueError`` of its own rather than ``config.ConfigError``: execution code sits below the
    parameter contract and does not import it (``docs/architecture.md``); ``kedro run`` prints it
    as a short user error all the same (``rom_pipeline.cli.kedro_cli.USER_ERRORS``).
    """


def require_sbatch() -> str:
    """Path of ``sbatch``; raises :class:`ClusterUnavailable` at once (before any scheduler
    starts) when it is not on PATH."""
    path = shutil.which("sbatch")
    if path is None:
        raise ClusterUnavailable(
            "execution.cluster = 'slurm' but `sbatch` is not on PATH: run on a SLURM login node, "
            "or use execution.cluster: local (or a running scheduler via execution.scheduler_address)"
        )
    return path


def _slurm_cluster_class():
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError as exc:
        raise ImportError(
            "execution.cluster = 'slurm' needs dask-jobqueue: pip install 'rom_pipeline[slurm]'"
        ) from exc
    return SLURMCluster


def slurm_option_names() -> set[str]:
    """Every keyword ``dask_jobqueue.SLURMCluster`` accepts (cluster, job and worker options)."""
    from dask_jobqueue.core import Job, JobQueueCluster
    from dask_jobqueue.slurm import SLURMJob

    names: set[str] = set()
    for fn in (SLURMJob.__init__, Job.__init__, JobQueueCluster.__init__):
        names.update(
            p.name for p in inspect.signature(fn).parameters.values()
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
        )
    return names - {"scheduler", "name", "job_cls", "config_name"}


def slurm_cluster_kwargs(config: ExecutionConfig) -> dict[str, Any]:
    """``SLURM_DEFAULTS`` updated with ``execution.slurm`` (``scheduler_options`` merged over
    ``SLURM_SCHEDULER_DEFAULTS``); unknown keys are refused by name."""
    _slurm_cluster_class()
    allowed = slurm_option_names()
    unknown = sorted(set(config.slurm) - allowed)
    if unknown:
        raise ValueError(
            "; ".join(f"execution.slurm.{k} = {config.slurm[k]!r}: unknown SLURMCluster option" for k in unknown)
            + f"; remove or fix it (accepted: {', '.join(sorted(allowed))})"
        )
    kwargs = {**SLURM_DEFAULTS, **config.slurm}
    kwargs["scheduler_options"] = {**SLURM_SCHEDULER_DEFAULTS, **(config.slurm.get("scheduler_options") or {})}
    return kwargs


def make_slurm_cluster(config: ExecutionConfig):
    """A ``dask_jobqueue.SLURMCluster`` scaled to ``config.workers`` jobs (import is optional).

    ``sbatch`` is looked up first: without it the jobs could never start and the map would wait
    for workers forever."""
    require_sbatch()
    cluster = _slurm_cluster_class()(**slurm_cluster_kwargs(config))
    cluster.scale(jobs=config.workers)
    return cluster


# --------------------------------------------------------------------------- clients
def inside_dask_worker() -> bool:
    """True when called from a task running on a Dask worker."""
    try:
        from distributed import get_worker
    except ImportError:  # pragma: no cover - distributed is a core dependency
        return False
    try:
        get_worker()
    except ValueError:
        return False
    return True


# Clusters kept open by `keep_cluster` blocks: key -> cluster, None until first needed.
_KEPT: dict[tuple, Any] = {}
_KEPT_LOCK = threading.Lock()


def _cluster_key(config: ExecutionConfig) -> tuple:
    return (config.workers, config.cluster, json.dumps(config.slurm, sort_keys=True, default=str))


def _start_cluster(config: ExecutionConfig):
    if config.cluster == "slurm":
        return make_slurm_cluster(config)
    from distributed import LocalCluster

    return LocalCluster(
        n_workers=config.workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    )


@contextmanager
def keep_cluster(config: ExecutionConfig) -> Iterator[None]:
    """Within the block, start the cluster of ``config`` at most once and reuse it.

    The cluster is started lazily by the first map call that needs it (a block without parallel
    work starts nothing) and closed when the block ends. Without such a block every map call
    starts and closes its own cluster. Serial configurations and existing schedulers need no
    keeping; nested blocks for the same configuration share the outer one's cluster.
    """
    key = _cluster_key(config)
    with _KEPT_LOCK:
        owner = config.parallel and not config.scheduler_address and key not in _KEPT
        if owner:
            _KEPT[key] = None
    if not owner:
        yield
        return
    try:
        yield
    finally:
        with _KEPT_LOCK:
            cluster = _KEPT.pop(key, None)
        if cluster is not None:
            cluster.close()


@contextmanager
def dask_client(config: ExecutionConfig):
    """A ``distributed.Client`` for ``config``.

    Inside a Dask worker the worker's own client is returned (the task secedes from the worker's
    thread pool while it waits), so nested work shares the cluster instead of nesting one. A
    scheduler address is connected to. Otherwise the cluster kept by an enclosing
    :func:`keep_cluster` block is used, or a cluster is started and closed on exit.
    """
    from distributed import Client, worker_client

    if inside_dask_worker():
        with worker_client() as client:
            yield client
        return
    if config.scheduler_address:
        with Client(config.scheduler_address) as client:
            yield client
        return
    key = _cluster_key(config)
    with _KEPT_LOCK:
        kept = key in _KEPT
        if kept and _KEPT[key] is None:
            _KEPT[key] = _start_cluster(config)
        cluster = _KEPT[key] if kept else None
    if kept:
        with Client(cluster) as client:
            yield client
        return
    cluster = _start_cluster(config)
    try:
        with Client(cluster) as client:
            yield client
    finally:
        cluster.close()


def _n_workers(client) -> int:
    return max(1, len(client.scheduler_info().get("workers", {})))


def map_as_completed(
    fn: Callable[[T], R], items: Iterable[T], config: ExecutionConfig, label: str = "tasks"
) -> Iterator[tuple[T, R]]:
    """Yield ``(item, fn(item))`` for every item, in completion order.

    A progress bar (:mod:`rom_pipeline.execution.progress`) counts the finished items.
    """
    items = list(items)
    if not items:
        return
    with progress_bar(label, len(items)) as advance:
        if not config.parallel:
            for item in items:
                yield item, fn(item)
                advance()
            return

        from distributed import as_completed

        with dask_client(config) as client:
            futures = client.map(fn, items, pure=False)
            index = {f.key: i for i, f in enumerate(futures)}
            for future, result in as_completed(futures, with_results=True):
                yield items[index[future.key]], result
                future.release()
                advance()


def map_ordered(
    fn: Callable[[T], R],
    items: Iterable[T],
    config: ExecutionConfig,
    label: str = "tasks",
    max_pending: int | None = None,
) -> Iterator[R]:
    """Yield ``fn(item)`` for every item, in the order of ``items``.

    On a cluster at most ``max_pending`` tasks (default: twice the number of workers) are in
    flight or waiting to be consumed, so memory stays bounded whatever the number of items. The
    results are the same objects a serial loop would produce, so a reduction that adds them in
    this order is bit-identical to the serial one.
    """
    items = list(items)
    if not items:
        return
    with progress_bar(label, len(items)) as advance:
        if not config.parallel:
            for item in items:
                yield fn(item)
                advance()
            return

        with dask_client(config) as client:
            window = max_pending or 2 * _n_workers(client)
            pending: deque = deque()
            upcoming = iter(items)
            for item in upcoming:
                pending.append(client.submit(fn, item, pure=False))
                if len(pending) >= window:
                    break
            while pending:
                future = pending.popleft()
                result = future.result()
                future.release()
                nxt = next(upcoming, _END)
                if nxt is not _END:
                    pending.append(client.submit(fn, nxt, pure=False))
                advance()
                yield result


_END = object()
