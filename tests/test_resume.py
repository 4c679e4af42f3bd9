"""Resumable simulation stage: a killed run resumes without recomputing finished runs, a changed
parameter recomputes exactly the affected runs, and half-written folders are never loaded."""
from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from kedro.io import DatasetError

from rom_pipeline.config import validate_parameters
from rom_pipeline.datasets.runs import SimulationRunsDataset
from rom_pipeline.execution.parallel import ExecutionConfig
from rom_pipeline.execution.run_folder import RunFolder, SimulationPlan
from rom_pipeline.execution.runs import plan_runs
from tests.conftest import PROJECT, _load_env, with_overrides

KEDRO = str(Path(sys.executable).with_name("kedro"))


def _params(**overrides) -> dict:
    """The test environment's parameters with dotted-key overrides."""
    return with_overrides(_load_env("test"), **overrides)


def _plan(params: dict, split: str = "train", workers: int = 1) -> SimulationPlan:
    tasks = plan_runs(validate_parameters(params), split)
    return SimulationPlan({t.run_id: t for t in tasks}, ExecutionConfig(workers=workers))


def _mtimes(path: Path) -> dict[str, tuple[int, int]]:
    """``{relative file: (mtime_ns, inode)}`` of every file below ``path``."""
    return {
        str(p.relative_to(path)): (p.stat().st_mtime_ns, p.stat().st_ino)
        for p in sorted(path.rglob("*")) if p.is_file()
    }


def _arrays(path: Path, run_id: str) -> dict[str, np.ndarray]:
    out = {}
    for part in ("density", "particles"):
        with np.load(path / run_id / f"{part}.npz", allow_pickle=False) as npz:
            out.update({f"{part}/{k}": npz[k] for k in npz.files})
    return out


def _same_run(path_a: Path, path_b: Path, run_id: str) -> bool:
    a, b = _arrays(path_a, run_id), _arrays(path_b, run_id)
    return a.keys() == b.keys() and all(
        a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a
    )


def _fingerprints(path: Path) -> dict[str, str]:
    return {
        d.name: json.loads((d / "meta.json").read_text())["fingerprint"]
        for d in sorted(path.iterdir()) if d.is_dir()
    }


# --------------------------------------------------------------------------- kill and resume
@pytest.mark.slow
def test_killed_simulation_resumes_without_recomputing_finished_runs(tmp_path):
    root = tmp_path / "data"
    sizes = {"train_ic.uniform.n_runs": 60, "sim.T": 10.0}
    cli_sizes = ",".join(f"{k}={v}" for k, v in sizes.items())
    env = {**os.environ, "ROM_DATA_ROOT": str(root), "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}", "COLUMNS": "400"}
    train = root / "test" / "train"
    n_planned = 2 + 60 + 2 + 2  # gaussian, uniform, ring, two_clusters

    # 1. start on a 2-worker cluster and SIGKILL the whole process group midway
    proc = subprocess.Popen(
        [KEDRO, "run", "--env", "test", "--pipelines=simulation", f"--params={cli_sizes},execution.workers=2"],
        cwd=PROJECT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            done = [d for d in train.glob("train_*") if ".partial-" not in d.name] if train.is_dir() else []
            if len(done) >= 5:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the simulation finished (or failed) before it could be killed"
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL

    # 2. what the killed run left: complete runs only are loadable; plant a complete-looking
    #    partial folder as a run killed during its rename would leave it
    dataset = SimulationRunsDataset(path=str(train))
    finished = dataset.load().run_ids
    assert 5 <= len(finished) < n_planned
    missing = next(f"train_{k:03d}" for k in range(n_planned) if f"train_{k:03d}" not in finished)
    shutil.copytree(train / finished[0], train / f"{missing}.partial-deadbeef")
    assert dataset.load().run_ids == finished  # a partial folder is never loaded
    assert all(".partial-" not in r for r in dataset.load().run_ids)
    before = {k: v for k, v in _mtimes(train).items() if k.split("/")[0] in finished}

    # 3. resume serially: only the missing runs are simulated
    rerun = subprocess.run(
        [KEDRO, "run", "--env", "test", "--pipelines=simulation", f"--params={cli_sizes}"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    log = " ".join((rerun.stdout + rerun.stderr).split())
    assert f"{n_planned} runs planned, {len(finished)} reused from disk, {n_planned - len(finished)} to simulate" in log
    assert not list(train.glob("*.partial-*"))
    assert dataset.load().run_ids == [f"train_{k:03d}" for k in range(n_planned)]
    after = _mtimes(train)
    assert {k: after[k] for k in before} == before  # finished runs were not rewritten

    # 4. the resumed set equals a clean, uninterrupted computation bit for bit
    clean = tmp_path / "clean"
    plan = _plan(_params(**sizes))
    RunFolder(clean).simulate(plan)
    assert _fingerprints(train) == _fingerprints(clean) == {rid: t.fingerprint for rid, t in plan.items()}
    assert all(_same_run(train, clean, run_id) for run_id in plan)


# --------------------------------------------------------------------------- fingerprints
def test_unchanged_parameters_reuse_every_run(tmp_path, caplog):
    path = tmp_path / "train"
    RunFolder(path).simulate(_plan(_params()))
    before = _mtimes(path)
    with caplog.at_level(logging.INFO, logger="rom_pipeline.execution.run_folder"):
        RunFolder(path).simulate(_plan(_params()))
    assert _mtimes(path) == before
    assert "8 runs planned, 8 reused from disk, 0 to simulate" in caplog.text


def test_changed_physics_recomputes_every_run_and_never_mixes(tmp_path):
    path, old = tmp_path / "train", tmp_path / "old"
    RunFolder(path).simulate(_plan(_params()))
    shutil.copytree(path, old)
    before = _mtimes(path)
    plan = _plan(_params(**{"noise.eta": 0.5}))
    RunFolder(path).simulate(plan)
    after = _mtimes(path)
    assert set(after) == set(before)
    assert all(after[f] != before[f] for f in after)  # every file rewritten
    assert _fingerprints(path) == {rid: t.fingerprint for rid, t in plan.items()}
    assert not set(_fingerprints(path).values()) & set(_fingerprints(old).values())
    for run_id in plan:  # the stored arrays are the new physics, not the old
        new_positions = _arrays(path, run_id)["particles/positions"]
        assert not np.array_equal(new_positions[1:], _arrays(old, run_id)["particles/positions"][1:])


def test_fewer_runs_remove_the_stale_ones_and_keep_the_rest(tmp_path):
    path = tmp_path / "train"
    RunFolder(path).simulate(_plan(_params()))
    old_prints, before = _fingerprints(path), _mtimes(path)
    # one uniform run less: run ids (and seeds) after it shift, so those runs are new runs
    plan = _plan(_params(**{"train_ic.uniform.n_runs": 1}))
    RunFolder(path).simulate(plan)
    assert sorted(p.name for p in path.iterdir() if p.is_dir()) == [f"train_{k:03d}" for k in range(7)]
    new_prints, after = _fingerprints(path), _mtimes(path)
    kept = [rid for rid in new_prints if old_prints.get(rid) == new_prints[rid]]
    # unchanged: 2 gaussian runs, the first uniform run, and the runs whose id, family, IC and seed
    # coincide after the shift (run k keeps seed seed_base + k; the ring and two-cluster samples
    # of one configuration are interchangeable)
    assert kept == ["train_000", "train_001", "train_002", "train_004", "train_006"]
    for f, stamp in after.items():
        assert (stamp == before[f]) == (f.split("/")[0] in kept), f


def test_partial_and_incomplete_folders_are_never_loaded_and_are_repaired(tmp_path):
    path, reference = tmp_path / "train", tmp_path / "reference"
    plan = _plan(_params())
    RunFolder(path).simulate(plan)
    shutil.copytree(path, reference)
    shutil.copytree(path / "train_001", path / "train_001.partial-0badc0de")  # complete-looking
    (path / "train_003" / "density.npz").unlink()  # killed before the rename in an older layout
    (path / "train_005" / "meta.json").write_text("{not json")
    untouched = {k: v for k, v in _mtimes(path).items() if k.split("/")[0] not in ("train_003", "train_005", "timings.csv")
                 and ".partial-" not in k}
    dataset = SimulationRunsDataset(path=str(path))
    with pytest.raises(DatasetError) as info:  # refused by name, never silently dropped
        dataset.load()
    message = str(info.value)
    assert "train_003/density.npz is missing" in message and "train_005/meta.json is corrupt" in message
    assert "kedro run --pipelines=simulation" in message
    RunFolder(path).simulate(plan)
    assert sorted(p.name for p in path.iterdir() if p.is_dir()) == [f"train_{k:03d}" for k in range(8)]
    assert {k: v for k, v in _mtimes(path).items() if k in untouched} == untouched
    assert all(_same_run(path, reference, run_id) for run_id in plan)
