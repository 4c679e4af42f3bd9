"""``DaskRunner``: run a Kedro pipeline on a Dask cluster, one task per node; and
``KeepClusterHooks``: one cluster per ``kedro run`` for the stages' own parallel work.

This is the DaskRunner recipe of the Kedro documentation ("Deploy with Dask"), written against the
Kedro 1.x ``AbstractRunner`` API::

    kedro run --runner=rom_pipeline.framework.runner.DaskRunner                        # the env's `execution`
    kedro run --runner=rom_pipeline.framework.runner.DaskRunner --runner-params=workers=4
    kedro run --runner=rom_pipeline.framework.runner.DaskRunner \\
        --runner-params=scheduler_address=tcp://10.0.0.5:8786                # a running scheduler
    kedro run --env hpc --runner=rom_pipeline.framework.runner.DaskRunner              # SLURM via dask-jobqueue

How it works:

* Every node becomes one ``client.submit`` whose dependencies are the futures of the nodes it
  depends on, so Dask's scheduler starts a node as soon as its inputs exist and runs independent
  nodes (e.g. the train and test simulations) at the same time.
* Persisted datasets (files) are loaded and saved by the worker that runs the node, with the very
  dataset objects of the session's catalog (same save version, same paths): the workers must see
  the same file system as the driver (a shared disk on a cluster).
* Datasets without a file (``MemoryDataset``) cannot be shared between processes through the
  catalog; their values travel as Dask task results from the producing node to the consumers
  (the documented recipe publishes them on the scheduler instead; task results need no global
  names and are freed when the last consumer is done).
* Inside a node, :mod:`rom_pipeline.execution.parallel` notices it runs on a worker and submits its own
  tasks (simulation runs, POD per-run work) to the same cluster instead of nesting a new one.

As with Kedro's ``ParallelRunner``, node and dataset hooks run in the worker processes with a hook
manager built from the project's ``settings.HOOKS``; pipeline hooks (and every hook of plugins such
as kedro-viz or kedro-mlflow, which need the session set up on the driver) run on the driver only.
"""
from __future__ import annotations

import logging
from collections import Counter
from concurrent.futures import Executor
from contextlib import ExitStack
from itertools import chain
from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io import DataCatalog, MemoryDataset
from kedro.pipeline import Pipeline
from kedro.runner import AbstractRunner
from kedro.runner.task import Task

from rom_pipeline.execution.parallel import ExecutionConfig, dask_client, keep_cluster

logger = logging.getLogger(__name__)


def _worker_hook_manager(package_name: str | None):
    """A hook manager with the project's ``settings.HOOKS`` in a Dask worker process.

    The project is configured once per worker process. Plugin hooks (kedro-viz, kedro-mlflow)
    are left to the driver: they expect the session set-up that only happens there.
    """
    from kedro.framework import project
    from kedro.framework.hooks.manager import _create_hook_manager, _register_hooks

    if package_name and project.PACKAGE_NAME != package_name:
        project.configure_project(package_name)
    hook_manager = _create_hook_manager()
    _register_hooks(hook_manager, project.settings.HOOKS)
    return hook_manager


def _run_node_on_worker(
    node,
    datasets: dict[str, Any],
    upstream: dict[str, dict[str, Any]],
    transient_outputs: list[str],
    is_async: bool,
    run_id: str | None,
    package_name: str | None,
    *after: Any,
) -> dict[str, Any]:
    """Run one node on a worker and return the values of its in-memory outputs.

    Args:
        node: the Kedro node.
        datasets: the session's dataset objects for the node's persisted inputs and outputs.
        upstream: ``{input name: result of the producing node}`` for in-memory inputs (Dask has
            replaced the producers' futures by their results).
        transient_outputs: the node's outputs that live in memory only.
        after: results of the other nodes this one depends on (only their completion matters).
    """
    hook_manager = _worker_hook_manager(package_name)
    memory_inputs = {name: MemoryDataset(result[name]) for name, result in upstream.items()}
    memory_outputs = {name: MemoryDataset() for name in transient_outputs}
    catalog = DataCatalog(datasets={**datasets, **memory_inputs, **memory_outputs})
    Task(node=node, catalog=catalog, is_async=is_async, hook_manager=hook_manager, run_id=run_id).execute()
    return {name: catalog.load(name) for name in transient_outputs}


class DaskRunner(AbstractRunner):
    """Run each node of a pipeline as one task on a Dask cluster (see the module docstring).

    Args:
        is_async: load and save a node's datasets with threads (Kedro's ``--async``).
        workers: worker processes of an embedded ``LocalCluster`` (or SLURM jobs).
        scheduler_address: connect to a running scheduler instead of starting a cluster.
        cluster: ``local`` or ``slurm``.

    Without any of ``workers``, ``scheduler_address`` and ``cluster`` the ``execution`` block of
    the run's parameters decides (``conf/<env>/parameters*.yml``).
    """

    def __init__(
        self,
        is_async: bool = False,
        workers: int | None = None,
        scheduler_address: str | None = None,
        cluster: str | None = None,
    ):
        super().__init__(is_async=is_async)
        self._overrides = {
            key: value
            for key, value in (("workers", workers), ("scheduler_address", scheduler_address), ("cluster", cluster))
            if value is not None
        }
        if self._overrides:
            ExecutionConfig(**self._overrides)  # refuse bad runner parameters at construction

    def execution_config(self) -> ExecutionConfig:
        """The cluster to use: runner parameters, else the session's ``execution`` block."""
        from rom_pipeline.config import validate_parameters
        from rom_pipeline.framework.session_state import active_config, active_parameters

        params = active_parameters()
        cfg = active_config() or (validate_parameters(params) if params else None)
        base = cfg.execution.to_execution() if cfg is not None else ExecutionConfig()
        if not self._overrides:
            return base
        return ExecutionConfig(**{
            "workers": base.workers, "cluster": base.cluster, "slurm": base.slurm,
            "scheduler_address": None, **self._overrides,
        })

    def _get_executor(self, max_workers: int) -> Executor | None:
        return None  # nodes go to the Dask client, not to a concurrent.futures executor

    def _run(
        self,
        pipeline: Pipeline,
        catalog,
        hook_manager=None,
        run_id: str | None = None,
    ) -> None:
        from distributed import as_completed
        from kedro.framework.project import PACKAGE_NAME

        nodes = pipeline.nodes
        produced = set(chain.from_iterable(n.outputs for n in nodes))
        transient = {
            name for name in produced
            if name not in catalog or getattr(catalog.get(name), "_EPHEMERAL", False)
        }
        producer = {name: n for n in nodes for name in n.outputs}
        dependants = Counter(chain.from_iterable(pipeline.node_dependencies[n] for n in nodes))
        config = self.execution_config()
        self._logger.info("DaskRunner: %d nodes on %s", len(nodes), _describe(config))

        with dask_client(config) as client:
            futures: dict = {}
            for node in nodes:  # topological order: producers are submitted first
                datasets = {
                    name: catalog.get(name, fallback_to_runtime_pattern=True)
                    for name in (*node.inputs, *node.outputs) if name not in transient
                }
                upstream = {name: futures[producer[name]] for name in node.inputs if name in transient}
                after = [futures[n] for n in pipeline.node_dependencies[node]]
                futures[node] = client.submit(
                    _run_node_on_worker, node, datasets, upstream,
                    [name for name in node.outputs if name in transient],
                    self._is_async, run_id, PACKAGE_NAME, *after,
                    key=f"kedro-node-{node.name}-{run_id or ''}", pure=False,
                )
            node_of = {future.key: node for node, future in futures.items()}
            done_nodes: set = set()
            try:
                for future, result in as_completed(list(futures.values()), with_results=True):
                    node = node_of[future.key]
                    done_nodes.add(node)
                    for name in node.outputs:
                        if name in transient and name in pipeline.outputs():
                            catalog.save(name, result[name])
                    self._logger.info("Completed node: %s", node.name)
                    self._logger.info("Completed %d out of %d tasks", len(done_nodes), len(nodes))
                    for parent in pipeline.node_dependencies[node]:
                        dependants[parent] -= 1
                        if dependants[parent] == 0:  # its in-memory outputs are no longer needed
                            futures.pop(parent, None)
            except Exception:
                self._suggest_resume_scenario(pipeline, done_nodes, catalog)
                raise


def _describe(config: ExecutionConfig) -> str:
    if config.scheduler_address:
        return f"the scheduler at {config.scheduler_address}"
    if config.cluster == "slurm":
        return f"a SLURM cluster of {config.workers} jobs"
    return f"a local cluster of {config.workers} worker processes"


class KeepClusterHooks:
    """One cluster per ``kedro run`` for the project's own parallel work (any runner).

    Without these hooks every stage that maps work over runs (train simulation, test simulation,
    POD) starts and closes a cluster of its own: seconds for a LocalCluster, a wait in the queue
    for SLURM jobs. With them the cluster of the run's ``execution`` block is started by the first
    stage that needs it (a run without parallel work starts none) and closed when the run ends or
    fails. Register in ``settings.py``: ``HOOKS = (..., KeepClusterHooks())``.
    """

    def __init__(self) -> None:
        self._stack: ExitStack | None = None

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        from rom_pipeline.config import validate_parameters
        from rom_pipeline.framework.session_state import active_config, active_parameters

        params = active_parameters()
        if not params:
            return
        cfg = active_config() or validate_parameters(params)
        self._close()
        self._stack = ExitStack()
        self._stack.enter_context(keep_cluster(cfg.execution.to_execution()))

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], run_result, pipeline, catalog) -> None:
        self._close()

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline, catalog) -> None:
        self._close()

    def _close(self) -> None:
        if self._stack is not None:
            stack, self._stack = self._stack, None
            stack.close()
