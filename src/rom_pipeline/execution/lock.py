"""One writer per experiment: an advisory lock on ``<data_root>/<experiment>/``.

A ``kedro run`` holds the lock from the start of its pipeline to its end; a second run of the same
experiment fails at once and names the running one (pid, host, start time and command, stored
beside the lock in ``.rom_pipeline.lock.json``). Reading (notebooks, ``kedro viz``, the catalog in
a Python session) takes no lock. The lock is ``filelock``'s OS-level lock (``flock`` on POSIX),
so a killed run never leaves a stale lock behind: the operating system releases it with the
process.
"""
from __future__ import annotations

import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

LOCK_NAME = ".rom_pipeline.lock"
OWNER_NAME = ".rom_pipeline.lock.json"


class ExperimentBusy(RuntimeError):
    """Another run writes the same experiment."""


def _owner() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "",
    }


def describe_owner(folder: Path) -> str:
    """``pid P on HOST, started T: COMMAND`` of the run holding ``folder``'s lock (if recorded)."""
    try:
        o = json.loads((Path(folder) / OWNER_NAME).read_text())
        return f"pid {o['pid']} on {o['host']}, started {o['started']} UTC: {o['command']}"
    except (OSError, ValueError, KeyError):
        return "owner not recorded"


class ExperimentLock:
    """The write lock of one experiment folder (``acquire`` never waits)."""

    def __init__(self, folder: str | Path, experiment: str):
        self.folder = Path(folder)
        self.experiment = experiment
        self._lock: FileLock | None = None

    @property
    def held(self) -> bool:
        return self._lock is not None and self._lock.is_locked

    def acquire(self) -> ExperimentLock:
        """Take the lock, or raise :class:`ExperimentBusy` naming the run that holds it."""
        self.folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.folder / LOCK_NAME), timeout=0)
        try:
            lock.acquire()
        except Timeout:
            raise ExperimentBusy(
                f"Experiment '{self.experiment}' ({self.folder}) is being written by another run "
                f"({describe_owner(self.folder)}). Wait for it to finish (or stop it), then rerun; "
                "two runs of one experiment would mix their outputs. Reading its data (notebooks, "
                "kedro viz) is not blocked."
            ) from None
        self._lock = lock
        tmp = self.folder / f"{OWNER_NAME}.tmp{os.getpid()}"
        tmp.write_text(json.dumps(_owner()))
        tmp.replace(self.folder / OWNER_NAME)
        return self

    def release(self) -> None:
        if self._lock is None:
            return
        try:
            (self.folder / OWNER_NAME).unlink(missing_ok=True)
        finally:
            self._lock.release(force=True)
            self._lock = None

    def __enter__(self) -> ExperimentLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
