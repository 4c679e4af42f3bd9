"""A folder of simulation runs in the users' layout, simulated and written one run at a time.

::

    <path>/train_000/particles.npz   times (T,), positions (T,N,2), velocities (T,N,2)
    <path>/train_000/density.npz     density (T,ny,nx), times (T,), x (nx,), y (ny,)
    <path>/train_000/meta.json       run id, family, IC parameters, seed, T, N, fingerprint
    <path>/timings.csv               run_id, seconds (wall times, kept out of the runs' files)

:meth:`RunFolder.simulate` carries out a :class:`SimulationPlan` (``{run_id: task}``, each task a
picklable callable with a ``fingerprint``, see :class:`rom_pipeline.execution.runs.RunTask`): the
tasks run in parallel when the plan asks for it (:func:`~rom_pipeline.execution.parallel.map_as_completed`),
each run is written as soon as it is done, and memory stays at a few runs whatever their number.

- **Resumable**: a run whose ``meta.json`` carries the task's fingerprint is reused untouched.
- **Atomic per run**: a run is written into ``<run_id>.partial-<8 hex>`` and renamed into place
  only when complete, so an interrupted stage never leaves a half-written run.
- **Never mixed**: runs that no longer belong to the plan (or whose parameters changed) are
  removed first.
- **Ownership**: only what this code wrote is ever deleted, recognised by its naming scheme: a
  run folder ``<split>_<k>`` (three or more digits) holding nothing but the run files and its
  marker ``meta.json``, or a temporary ``<run_id>.partial-<8 hex>``. Any other folder is left
  alone (and never listed); a foreign folder in the way of a planned run stops the work before
  anything is deleted or simulated.

Plain Python (no Kedro): the simulation node calls :meth:`RunFolder.simulate`, and the catalog's
``SimulationRunsDataset`` (:mod:`rom_pipeline.datasets.runs`) reads the folder back.
"""
from __future__ import annotations

import io
import json
import logging
import re
import shutil
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rom_pipeline.execution.parallel import ExecutionConfig, map_as_completed

logger = logging.getLogger(__name__)
RUN_FILES = ("particles.npz", "density.npz", "meta.json")
RUN_NAME = re.compile(r"[a-z]+_\d{3,}")
PARTIAL_NAME = re.compile(r"[a-z]+_\d{3,}\.partial-[0-9a-f]{8}")
REBUILD = "rerun `kedro run --pipelines=simulation` (it recomputes only that run)"


class RunFolderError(ValueError):
    """A run folder cannot be used as it is: a foreign folder in the way, an incomplete or corrupt
    run, or a task that returned something other than a run. The message names the path and the
    fix."""


class SimulationPlan(dict):
    """``{run_id: task}`` where each task is a picklable callable with a ``fingerprint`` that
    returns ``{"particles": {...}, "density": {...}, "meta": {...}[, "timing": {"seconds": s}]}``;
    ``execution`` says where the tasks run."""

    def __init__(self, tasks: Mapping[str, Any], execution: ExecutionConfig | None = None):
        super().__init__(tasks)
        self.execution = execution or ExecutionConfig()


def owned_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a run folder this code wrote: named ``<split>_<k>``, holding its
    ``meta.json`` marker and nothing but run files (a temporary ``.partial-`` file included)."""
    if not folder.is_dir() or not RUN_NAME.fullmatch(folder.name):
        return False
    names = [p.name for p in folder.iterdir()]
    return "meta.json" in names and all(n in RUN_FILES or ".partial-" in n for n in names)


def _run_task(item: tuple[str, Any]) -> Any:
    """Evaluate one ``(run_id, task)`` pair of a plan (top level, so it pickles to Dask workers)."""
    return item[1]()


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``np.savez`` of numeric arrays (object arrays are refused: they would be pickled, and
    loading refuses pickles)."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    bad = [k for k, v in arrays.items() if v.dtype == object]
    if bad:
        raise RunFolderError(f"{path.name}: refuses object arrays (keys {bad}); a run stores numbers only")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


class RunFolder:
    """The run folder at ``path`` (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def complete_runs(self) -> dict[str, str]:
        """``{run_id: fingerprint}`` of every complete run on disk (own naming scheme only)."""
        done: dict[str, str] = {}
        if not self.path.is_dir():
            return done
        for d in sorted(self.path.iterdir()):
            if not d.is_dir() or not RUN_NAME.fullmatch(d.name):
                continue
            if all((d / f).is_file() for f in RUN_FILES):
                try:
                    done[d.name] = json.loads((d / "meta.json").read_text())["fingerprint"]
                except (ValueError, KeyError, TypeError):
                    continue
        return done

    def checked_runs(self) -> list[str]:
        """Run ids on disk, each complete and readable, in order.

        Raises:
            RunFolderError: a run folder is incomplete or its ``meta.json`` corrupt (named, never
                silently dropped from every later stage).
        """
        if not self.path.is_dir():
            return []
        runs, problems = [], []
        for d in sorted(self.path.iterdir()):
            if not d.is_dir() or not RUN_NAME.fullmatch(d.name):
                continue
            if any(p.name not in RUN_FILES for p in d.iterdir()):
                continue  # holds files this pipeline never writes: not a run folder
            missing = [f for f in RUN_FILES if not (d / f).is_file()]
            if missing:
                problems.append(f"{d / missing[0]} is missing")
                continue
            try:
                json.loads((d / "meta.json").read_text())["fingerprint"]
            except (ValueError, KeyError, TypeError) as exc:
                problems.append(f"{d / 'meta.json'} is corrupt ({type(exc).__name__}: {exc})")
                continue
            runs.append(d.name)
        if problems:
            raise RunFolderError(
                "Incomplete or corrupt simulation runs: " + "; ".join(problems) + f". Fix: {REBUILD}."
            )
        return runs

    def simulate(self, plan: SimulationPlan) -> list[str]:
        """Bring the folder to ``plan``: reuse the runs whose fingerprint matches, remove stale
        and half-written ones of its own, simulate the rest (in parallel per ``plan.execution``)
        and write each atomically as it finishes. Returns the plan's run ids.

        Raises:
            RunFolderError: a foreign folder is in the way of a planned run (before anything is
                deleted or simulated), or a task returned no run.
        """
        if not isinstance(plan, Mapping):
            raise RunFolderError(f"{self.path}: a plan is a mapping run_id -> task, got {type(plan).__name__}")
        execution = getattr(plan, "execution", ExecutionConfig())
        self.path.mkdir(parents=True, exist_ok=True)
        folders = [d for d in sorted(self.path.iterdir()) if d.is_dir()]
        foreign = [d for d in folders if d.name in plan and not owned_run_folder(d)]
        if foreign:  # checked before anything is deleted or simulated
            raise RunFolderError(
                f"{', '.join(str(d) for d in foreign)}: in the way of planned runs but not written by "
                "this pipeline (a run folder holds only particles.npz, density.npz and meta.json); "
                f"move it out of {self.path} and rerun"
            )
        for d in folders:
            if PARTIAL_NAME.fullmatch(d.name):  # left by a killed run: never complete
                shutil.rmtree(d, ignore_errors=True)
            elif not RUN_NAME.fullmatch(d.name) or not owned_run_folder(d):
                logger.warning("%s is not a run folder of this pipeline: left untouched and never loaded", d)
        on_disk = self.complete_runs()
        for run_id, fp in on_disk.items():
            if run_id not in plan or plan[run_id].fingerprint != fp:
                logger.info("Removing stale run %s (not in the current plan or parameters changed)", run_id)
                shutil.rmtree(self.path / run_id)
        for d in folders:  # own run folders left incomplete by an interrupted older layout
            if d.exists() and d.name not in on_disk and owned_run_folder(d):
                shutil.rmtree(d, ignore_errors=True)
        todo = [rid for rid, task in plan.items() if on_disk.get(rid) != task.fingerprint]
        logger.info(
            "%s: %d runs planned, %d reused from disk, %d to simulate (%s)",
            self.path, len(plan), len(plan) - len(todo), len(todo),
            f"{execution.workers} workers" if execution.parallel else "serial",
        )
        pairs = [(rid, plan[rid]) for rid in todo]
        for (rid, _), result in map_as_completed(_run_task, pairs, execution, label=f"simulate {self.path.name}"):
            self.write_run(rid, result)
            if "timing" in result:
                self.record_timing(rid, result["timing"])
        return list(plan)

    def write_run(self, run_id: str, result: dict[str, Any]) -> None:
        """Write one run atomically: into ``<run_id>.partial-<hex>``, then renamed into place."""
        missing = [part for part in ("particles", "density", "meta") if part not in result]
        if missing:
            raise RunFolderError(
                f"run {run_id}: its task returned no {missing}; a run task must return "
                "{'particles': ..., 'density': ..., 'meta': ...} (see rom_pipeline.execution.runs.simulate_run)"
            )
        final = self.path / run_id
        tmp = self.path / f"{run_id}.partial-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            write_npz(tmp / "particles.npz", result["particles"])
            write_npz(tmp / "density.npz", result["density"])
            (tmp / "meta.json").write_text(json.dumps(result["meta"], indent=1, default=float))
            if final.exists():
                if not owned_run_folder(final):
                    raise RunFolderError(
                        f"{final} is not a run folder this pipeline wrote; move it out of {self.path}"
                    )
                shutil.rmtree(final)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def record_timing(self, run_id: str, timing: dict[str, float]) -> None:
        """Append a run's wall time to ``timings.csv`` (kept out of the run's own files)."""
        path = self.path / "timings.csv"
        header = not path.exists()
        with path.open("a") as f:
            if header:
                f.write("run_id,seconds\n")
            f.write(f"{run_id},{float(timing.get('seconds', float('nan'))):.4f}\n")
