"""Integrity hooks: where a run may write, that it writes alone, and that what it reads is current.

Before the first node runs (after parameter validation and the missing-input check):

1. the experiment name is a simple folder name and every file dataset of the pipeline lies inside
   ``<data_root>/`` (see :func:`rom_pipeline.config.validate_experiment_name`);
2. ``execution.cluster: slurm`` needs ``sbatch`` on PATH (checked before any cluster starts);
3. the experiment's write lock is taken (:mod:`rom_pipeline.execution.lock`): a second run of the same
   experiment stops here, naming the running one;
4. every tracked artifact the run only reads is compared with what the current parameters expect
   (:mod:`rom_pipeline.framework.lineage`), and the artifacts it writes are stamped with their record.

The lock is released when the pipeline ends, successfully or not.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from kedro.framework.hooks import hook_impl

from rom_pipeline.framework import lineage
from rom_pipeline.config import ConfigError, validate_experiment_name, validate_parameters
from rom_pipeline.execution.lock import ExperimentLock

logger = logging.getLogger(__name__)


def _dataset_path(dataset: Any) -> Path | None:
    """The local path a dataset reads and writes (``None`` for memory or remote datasets)."""
    protocol = getattr(dataset, "_protocol", "file")
    if protocol not in ("file", "local", None):
        return None
    path = getattr(dataset, "_path", None) or getattr(dataset, "_filepath", None)
    return None if path is None else Path(str(path))


class IntegrityHooks:
    def __init__(self) -> None:
        self._lock: ExperimentLock | None = None
        self._root: Path | None = None
        self._folder: Path | None = None
        self._experiment = ""
        self._env: str | None = None

    @hook_impl
    def after_context_created(self, context) -> None:
        glob = dict(context.config_loader["globals"])
        self._experiment = validate_experiment_name(glob.get("experiment"))
        self._root = Path(str(glob.get("data_root", "data"))).resolve()
        self._folder = (self._root / self._experiment).resolve()
        self._env = context.env
        if not self._folder.is_relative_to(self._root):  # a symlink pointing elsewhere
            raise ConfigError(
                f"experiment folder {self._root / self._experiment} resolves to {self._folder}, outside "
                f"the data root {self._root}; remove the link or choose another experiment name"
            )

    def _check_paths(self, pipeline, catalog) -> None:
        outside = []
        for name in sorted(pipeline.datasets()):
            try:
                path = _dataset_path(catalog[name])
            except Exception:  # parameters, memory datasets
                continue
            if path is not None and not path.resolve().is_relative_to(self._root):
                outside.append(f"{name} -> {path}")
        if outside:
            raise ConfigError(
                f"datasets outside the data root {self._root}: {'; '.join(outside)}. Every path must "
                "lie under ${globals:data_root}/ (e.g. ${globals:data_root}/${globals:experiment}/...); "
                "fix the catalog entry"
            )

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        from rom_pipeline.framework.session_state import active_config, active_parameters
        from rom_pipeline.execution.parallel import require_sbatch

        if self._lock is not None:  # an earlier session of this process failed before its run
            self._lock.release()
            self._lock = None
        if self._folder is None:
            return
        self._check_paths(pipeline, catalog)
        cfg = active_config() or validate_parameters(active_parameters())
        if cfg.execution.cluster == "slurm" and not cfg.execution.scheduler_address:
            require_sbatch()
        lock = ExperimentLock(self._folder, self._experiment).acquire()
        try:
            lineage.check_inputs(set(pipeline.inputs()), catalog, cfg, run_params.get("env") or self._env)
            records = lineage.expected_records(cfg)
            for name in sorted(pipeline.all_outputs()):
                if name in lineage.ARTIFACTS:
                    dataset = catalog[name]
                    if hasattr(dataset, "stamp"):
                        dataset.stamp(records[name], require_finite=name in lineage.FINITE)
        except BaseException:
            lock.release()
            raise
        self._lock = lock

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    @hook_impl
    def after_pipeline_run(self, run_params: dict[str, Any], run_result, pipeline, catalog) -> None:
        self._release()

    @hook_impl
    def on_pipeline_error(self, error: Exception, run_params: dict[str, Any], pipeline, catalog) -> None:
        self._release()


class LoadVersionHooks:
    """``--load-versions NAME:VERSION`` naming a version that is not on disk is refused as such
    (runs before the missing-input check, which would otherwise call the dataset missing)."""

    @hook_impl
    def before_pipeline_run(self, run_params: dict[str, Any], pipeline, catalog) -> None:
        problems = []
        for name, version in sorted((run_params.get("load_versions") or {}).items()):
            try:
                dataset = catalog[name]
            except Exception:
                problems.append(f"--load-versions {name}:{version}: no dataset {name!r} in the catalog")
                continue
            path = _dataset_path(dataset)
            if path is None or not getattr(dataset, "_version", None):
                continue
            if not (path / version / path.name).exists():
                on_disk = sorted(p.name for p in path.iterdir() if (p / path.name).exists()) if path.is_dir() else []
                problems.append(
                    f"--load-versions {name}:{version}: no such version in {path}; versions on disk: "
                    f"{', '.join(on_disk) or 'none'} (leave {name} out of --load-versions for the newest)"
                )
        if problems:
            raise ConfigError("; ".join(problems))
