"""A directory of simulation runs in the users' layout, written one run at a time.

::

    <path>/train_000/particles.npz   times (T,), positions (T,N,2), velocities (T,N,2)
    <path>/train_000/density.npz     density (T,ny,nx), times (T,), x (nx,), y (ny,)
    <path>/train_000/meta.json       run id, family, IC parameters, seed, T, N, fingerprint

Saving takes a :class:`SimulationPlan` (Kedro's *lazy saving*: a mapping from run id to a callable
that produces the run). The dataset evaluates the callables (in parallel when the plan asks for
it), writes each run as soon as it is done, and keeps memory to a few runs whatever their number.
It is resumable: a run whose ``meta.json`` carries the same fingerprint is kept untouched, and a
run is written into a temporary folder that is renamed into place only when complete, so an
interrupted stage never leaves a half-written run. Runs that no longer belong to the plan (or whose
parameters changed) are removed first, so old and new runs never mix.

Ownership: the dataset deletes only what it wrote itself, recognised by its naming scheme: a run
folder ``<split>_<k>`` (three or more digits) holding nothing but the run files and its marker
``meta.json``, or a temporary folder ``<run_id>.partial-<8 hex>``. Any other folder is left alone
(and never loaded); a foreign folder in the way of a planned run stops the save before any work.
Wall times go to ``timings.csv`` beside the runs, never into a run's files, so identical work gives
identical files.
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
import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import TablePreview

from rom_pipeline.datasets.files import read_npz
from rom_pipeline.execution.parallel import ExecutionConfig, map_as_completed

logger = logging.getLogger(__name__)
RUN_FILES = ("particles.npz", "density.npz", "meta.json")
RUN_NAME = re.compile(r"[a-z]+_\d{3,}")
PARTIAL_NAME = re.compile(r"[a-z]+_\d{3,}\.partial-[0-9a-f]{8}")
REBUILD = "rerun `kedro run --pipelines=simulation` (it recomputes only that run)"


def owned_run_folder(folder: Path) -> bool:
    """Whether ``folder`` is a run folder this dataset wrote: named ``<split>_<k>``, holding its
    ``meta.json`` marker and nothing but run files (a temporary ``.partial-`` file included)."""
    if not folder.is_dir() or not RUN_NAME.fullmatch(folder.name):
        return False
    names = [p.name for p in folder.iterdir()]
    return "meta.json" in names and all(n in RUN_FILES or ".partial-" in n for n in names)


class SimulationPlan(dict):
    """``{run_id: task}`` where each task is a picklable callable with a ``fingerprint``."""

    def __init__(self, tasks: Mapping[str, Any], execution: ExecutionConfig | None = None):
        super().__init__(tasks)
        self.execution = execution or ExecutionConfig()


def _run_task(item: tuple[str, Any]) -> Any:
    """Evaluate one ``(run_id, task)`` pair of a plan (top level, so it pickles to Dask workers)."""
    return item[1]()


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    bad = [k for k, v in arrays.items() if v.dtype == object]
    if bad:  # they would be pickled, and loading refuses pickles
        raise DatasetError(f"{path.name}: refuses object arrays (keys {bad}); a run stores numbers only")
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    return read_npz(
        path, str(path), "delete its run folder and rerun the simulation pipeline, which "
        "recomputes only the missing runs",
    )


class RunCollection(Mapping):
    """Lazy read access to a stored run directory: ``runs[run_id]`` -> metadata dict.

    Arrays are read on demand (:meth:`density`, :meth:`particles`) so consumers can stream over
    hundreds of runs with one run in memory at a time.
    """

    def __init__(self, path: Path, run_ids: list[str]):
        self.path = Path(path)
        self.run_ids = run_ids
        self._meta: dict[str, dict] = {}

    def __getitem__(self, run_id: str) -> dict[str, Any]:
        if run_id not in self._meta:
            if run_id not in self.run_ids:
                raise KeyError(run_id)
            self._meta[run_id] = json.loads((self.path / run_id / "meta.json").read_text())
        return self._meta[run_id]

    def __iter__(self):
        return iter(self.run_ids)

    def __len__(self) -> int:
        return len(self.run_ids)

    def density(self, run_id: str) -> dict[str, np.ndarray]:
        """``{"density": (T,ny,nx), "times": (T,), "x": (nx,), "y": (ny,)}``."""
        out = _read_npz(self.path / run_id / "density.npz")
        if not np.all(np.isfinite(out["density"])):
            raise DatasetError(
                f"{self.path / run_id / 'density.npz'} holds NaN or infinite densities; delete "
                "the run folder and rerun the simulation pipeline"
            )
        return out

    def particles(self, run_id: str) -> dict[str, np.ndarray]:
        """``{"times": (T,), "positions": (T,N,2), "velocities": (T,N,2)}``."""
        return _read_npz(self.path / run_id / "particles.npz")

    def table(self) -> pd.DataFrame:
        """One row of metadata per run."""
        return pd.DataFrame([self[r] for r in self.run_ids])


class SimulationRunsDataset(AbstractDataset[SimulationPlan, RunCollection]):
    """Run directory dataset (see the module docstring).

    Example catalog entry::

        train.runs:
          type: rom_pipeline.datasets.SimulationRunsDataset
          path: data/${globals:experiment}/train
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    # ------------------------------------------------------------------ helpers
    def _complete_runs(self) -> dict[str, str]:
        """``{run_id: fingerprint}`` of every complete run on disk (own naming scheme only)."""
        done: dict[str, str] = {}
        if not self._path.is_dir():
            return done
        for d in sorted(self._path.iterdir()):
            if not d.is_dir() or not RUN_NAME.fullmatch(d.name):
                continue
            if all((d / f).is_file() for f in RUN_FILES):
                try:
                    done[d.name] = json.loads((d / "meta.json").read_text())["fingerprint"]
                except (ValueError, KeyError, TypeError):
                    continue
        return done

    def _check_complete(self) -> list[str]:
        """Run ids on disk, each complete and readable; an incomplete or corrupt run is refused
        by name (it would otherwise silently drop out of every later stage)."""
        if not self._path.is_dir():
            return []
        runs, problems = [], []
        for d in sorted(self._path.iterdir()):
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
            raise DatasetError(
                "Incomplete or corrupt simulation runs: " + "; ".join(problems) + f". Fix: {REBUILD}."
            )
        return runs

    def _write_run(self, run_id: str, result: dict[str, Any]) -> None:
        missing = [part for part in ("particles", "density", "meta") if part not in result]
        if missing:
            raise DatasetError(
                f"run {run_id}: its task returned no {missing}; a run task must return "
                "{'particles': ..., 'density': ..., 'meta': ...} (see rom_pipeline.execution.runs.simulate_run)"
            )
        final = self._path / run_id
        tmp = self._path / f"{run_id}.partial-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            _write_npz(tmp / "particles.npz", result["particles"])
            _write_npz(tmp / "density.npz", result["density"])
            (tmp / "meta.json").write_text(json.dumps(result["meta"], indent=1, default=float))
            if final.exists():
                if not owned_run_folder(final):
                    raise DatasetError(
                        f"{final} is not a run folder this pipeline wrote; move it out of {self._path}"
                    )
                shutil.rmtree(final)
            tmp.rename(final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    # ------------------------------------------------------------------ Kedro API
    def load(self) -> RunCollection:
        runs = self._check_complete()
        if not runs:
            raise DatasetError(
                f"No simulation runs in {self._path}: build them first with "
                "`kedro run --pipelines=simulation`"
            )
        return RunCollection(self._path, runs)

    def save(self, data: SimulationPlan) -> None:
        if not isinstance(data, Mapping):
            raise DatasetError("SimulationRunsDataset saves a mapping run_id -> task")
        execution = getattr(data, "execution", ExecutionConfig())
        self._path.mkdir(parents=True, exist_ok=True)
        folders = [d for d in sorted(self._path.iterdir()) if d.is_dir()]
        foreign = [d for d in folders if d.name in data and not owned_run_folder(d)]
        if foreign:  # checked before anything is deleted or simulated
            raise DatasetError(
                f"{', '.join(str(d) for d in foreign)}: in the way of planned runs but not written by "
                "this pipeline (a run folder holds only particles.npz, density.npz and meta.json); "
                f"move it out of {self._path} and rerun"
            )
        for d in folders:
            if PARTIAL_NAME.fullmatch(d.name):  # left by a killed run: never complete
                shutil.rmtree(d, ignore_errors=True)
            elif not RUN_NAME.fullmatch(d.name) or not owned_run_folder(d):
                logger.warning("%s is not a run folder of this pipeline: left untouched and never loaded", d)
        on_disk = self._complete_runs()
        for run_id, fp in on_disk.items():
            if run_id not in data or data[run_id].fingerprint != fp:
                logger.info("Removing stale run %s (not in the current plan or parameters changed)", run_id)
                shutil.rmtree(self._path / run_id)
        for d in folders:  # own run folders left incomplete by an interrupted older layout
            if d.exists() and d.name not in on_disk and owned_run_folder(d):
                shutil.rmtree(d, ignore_errors=True)
        todo = [rid for rid, task in data.items() if on_disk.get(rid) != task.fingerprint]
        reused = len(data) - len(todo)
        logger.info(
            "%s: %d runs planned, %d reused from disk, %d to simulate (%s)",
            self._path, len(data), reused, len(todo),
            f"{execution.workers} workers" if execution.parallel else "serial",
        )
        pairs = [(rid, data[rid]) for rid in todo]
        for (rid, _), result in map_as_completed(
            _run_task, pairs, execution, label=f"simulate {self._path.name}"
        ):
            self._write_run(rid, result)
            if "timing" in result:
                self._record_timing(rid, result["timing"])

    def _record_timing(self, run_id: str, timing: dict[str, float]) -> None:
        """Append a run's wall time to ``timings.csv`` (kept out of the run's own files)."""
        path = self._path / "timings.csv"
        header = not path.exists()
        with path.open("a") as f:
            if header:
                f.write("run_id,seconds\n")
            f.write(f"{run_id},{float(timing.get('seconds', float('nan'))):.4f}\n")

    def _exists(self) -> bool:
        return bool(self._complete_runs())

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}

    def preview(self, nrows: int = 20) -> TablePreview:
        """kedro-viz table preview: the metadata of the first ``nrows`` runs, one row per run
        (nested values such as IC parameters as compact JSON text)."""
        runs = self.load()
        rows = [runs[run_id] for run_id in runs.run_ids[:nrows]]
        columns = list(dict.fromkeys(key for row in rows for key in row if key != "fingerprint"))

        def cell(value: Any) -> Any:
            if value is None or isinstance(value, bool | int | str):
                return value
            if isinstance(value, float):
                return value if np.isfinite(value) else None
            return json.dumps(value, default=float, separators=(",", ":"))

        return TablePreview({
            "index": [row.get("run_id", run_id) for row, run_id in zip(rows, runs.run_ids)],
            "columns": columns,
            "data": [[cell(row.get(c)) for c in columns] for row in rows],
        })
