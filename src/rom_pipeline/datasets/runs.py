"""The run folder of a split, read through the catalog.

The folder's layout, and how runs get into it (resumable, one atomic folder per run, ownership
of what may be deleted), belong to :mod:`rom_pipeline.execution.run_folder`; the simulation node
carries out the plan there. The datasets here only read and record:

- :class:`RunFolderDataset` (``{split}.run_folder``) loads a :class:`~rom_pipeline.execution.run_folder.RunFolder`
  handle on the folder, what the simulation node writes into;
- :class:`SimulationRunsDataset` (``{split}.runs``) loads the complete runs as a lazy
  :class:`RunCollection` (one run in memory at a time); saving one records the node's result:
  it checks that the collection is this folder's and that every run in it is complete on disk.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import TablePreview

from rom_pipeline.datasets.files import read_npz
from rom_pipeline.execution.run_folder import RunFolder, RunFolderError


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


class RunFolderDataset(AbstractDataset[RunFolder, RunFolder]):
    """A handle on a split's run folder: ``load`` returns a :class:`RunFolder` at ``path`` (the
    folder need not exist yet). Nothing is saved through it: the simulation node writes the runs
    with :meth:`RunFolder.simulate`.

    Example catalog entry::

        train.run_folder:
          type: rom_pipeline.datasets.RunFolderDataset
          path: data/${globals:experiment}/train
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> RunFolder:
        return RunFolder(self._path)

    def save(self, data: RunFolder) -> None:
        raise DatasetError(f"{self._path}: a run folder is written by the simulation node, not saved")

    def _exists(self) -> bool:
        return True  # an empty or missing folder is a valid start: every run is then simulated

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class SimulationRunsDataset(AbstractDataset[RunCollection, RunCollection]):
    """The complete runs of a split's folder (see the module docstring).

    Example catalog entry::

        train.runs:
          type: rom_pipeline.datasets.SimulationRunsDataset
          path: data/${globals:experiment}/train
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def _checked_runs(self) -> list[str]:
        try:
            return RunFolder(self._path).checked_runs()
        except RunFolderError as exc:
            raise DatasetError(str(exc)) from None

    # ------------------------------------------------------------------ Kedro API
    def load(self) -> RunCollection:
        runs = self._checked_runs()
        if not runs:
            raise DatasetError(
                f"No simulation runs in {self._path}: build them first with "
                "`kedro run --pipelines=simulation`"
            )
        return RunCollection(self._path, runs)

    def save(self, data: RunCollection) -> None:
        """Record the simulation node's result: the runs are already on disk; refuse a collection
        of another folder, or one whose runs are not all complete here."""
        if not isinstance(data, RunCollection):
            raise DatasetError(
                f"SimulationRunsDataset records a RunCollection (what the simulation node returns), "
                f"got {type(data).__name__}"
            )
        if data.path.resolve() != self._path.resolve():
            raise DatasetError(f"runs of {data.path} cannot be recorded as {self._path}: wire the "
                               "node's run_folder input to the same folder as its runs output")
        missing = sorted(set(data.run_ids) - set(self._checked_runs()))
        if missing:
            raise DatasetError(f"{self._path}: runs {missing} are not complete on disk. Fix: "
                               "rerun `kedro run --pipelines=simulation`")

    def _exists(self) -> bool:
        return bool(RunFolder(self._path).complete_runs())

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
