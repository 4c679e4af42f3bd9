"""Scale-out on Dask: results never depend on where they are computed.

* the simulation runs and the POD basis computed on a 2-worker ``LocalCluster`` are bit-identical
  to the serial ones (every stored array, the POD modes and singular values);
* the Kedro ``DaskRunner`` reproduces a sequential ``kedro run`` exactly;
* every server the project starts listens on 127.0.0.1 only.
"""
from __future__ import annotations

import copy
import json
import os
import re
import socket
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from rom_pipeline.config import validate_parameters
from rom_pipeline.datasets.files import NpzDataset
from rom_pipeline.datasets.runs import RunCollection, SimulationRunsDataset
from rom_pipeline.execution import parallel
from rom_pipeline.framework import session_state
from rom_pipeline.execution.parallel import (
    ExecutionConfig,
    dask_client,
    inside_dask_worker,
    keep_cluster,
    map_as_completed,
    map_ordered,
)
from rom_pipeline.pipelines.models import derived_quantities
from rom_pipeline.pipelines.pod.nodes import fit_pod_basis
from rom_pipeline.rom.pod import PODBasis
from rom_pipeline.framework.runner import KeepClusterHooks
from rom_pipeline.execution.run_folder import RunFolder, SimulationPlan
from rom_pipeline.execution.runs import plan_runs
from tests.conftest import PROJECT, _load_env

KEDRO = str(Path(sys.executable).with_name("kedro"))


# --------------------------------------------------------------------------- helpers (picklable)
def _square(x: int) -> int:
    return x * x


def _slow_first(x: int) -> int:
    if x == 0:
        time.sleep(0.5)  # finishes after later items on a cluster; map_ordered yields it first
    return 10 * x


def _fails_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"run {x} failed: fix its parameters")
    return x


def _nested_map(n: int) -> tuple[bool, list[int]]:
    """Runs on a worker: a nested map must reuse the worker's cluster, not start another."""
    pairs = map_as_completed(_square, range(n), ExecutionConfig(workers=2))
    return inside_dask_worker(), sorted(result for _, result in pairs)


def _scheduler_seen_by_worker(_: int) -> str:
    from distributed import get_worker

    return get_worker().scheduler.address


def _double(values: np.ndarray) -> np.ndarray:
    return 2.0 * values


def _total(values: np.ndarray, offset: float) -> float:
    return float(values.sum() + offset)


def _broken(values: np.ndarray) -> np.ndarray:
    raise ArithmeticError("singular companion matrix in node 'broken'")


def _density(runs: RunCollection, run_id: str, subsample: int) -> np.ndarray:
    return runs.density(run_id)["density"][::subsample].astype(np.float64)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def tiny_cfg():
    return validate_parameters(_load_env("test"))


@pytest.fixture(scope="module")
def serial_runs(tmp_path_factory, tiny_cfg) -> RunCollection:
    """The test environment's 8 training runs, simulated in this process."""
    tasks = plan_runs(tiny_cfg, "train")
    path = tmp_path_factory.mktemp("serial") / "train"
    RunFolder(path).simulate(SimulationPlan({t.run_id: t for t in tasks}, ExecutionConfig()))
    return SimulationRunsDataset(path=str(path)).load()


@pytest.fixture(scope="module")
def cluster_client():
    """One 2-worker LocalCluster shared by the tests below (started by the project's code)."""
    with dask_client(ExecutionConfig(workers=2)) as client:
        yield client


@pytest.fixture(scope="module")
def on_cluster(cluster_client) -> ExecutionConfig:
    return ExecutionConfig(scheduler_address=cluster_client.scheduler.address)


# --------------------------------------------------------------------------- maps
def test_serial_maps_return_every_item_in_order():
    assert list(map_ordered(_square, range(5), ExecutionConfig())) == [0, 1, 4, 9, 16]
    assert list(map_as_completed(_square, range(4), ExecutionConfig())) == [(0, 0), (1, 1), (2, 4), (3, 9)]
    assert list(map_ordered(_square, [], ExecutionConfig())) == []
    assert list(map_as_completed(_square, [], ExecutionConfig(workers=2))) == []  # no cluster for nothing


def test_cluster_maps_keep_order_or_report_completion(on_cluster):
    # the slow first item completes last, yet map_ordered yields it first, with 2 tasks in flight
    assert list(map_ordered(_slow_first, range(6), on_cluster, max_pending=2)) == [0, 10, 20, 30, 40, 50]
    pairs = list(map_as_completed(_slow_first, range(6), on_cluster))
    assert sorted(pairs) == [(i, 10 * i) for i in range(6)]  # each result with its own item


def test_worker_errors_reach_the_caller_unchanged(on_cluster):
    with pytest.raises(ValueError, match=r"run 3 failed: fix its parameters"):
        list(map_ordered(_fails_on_three, range(6), on_cluster))


def test_nested_maps_inside_a_worker_reuse_its_cluster(cluster_client):
    # Dask worker processes are daemonic: starting a LocalCluster there would fail outright.
    inside, results = cluster_client.submit(_nested_map, 5, pure=False).result()
    assert inside is True
    assert results == [0, 1, 4, 9, 16]
    assert inside_dask_worker() is False


def test_keep_cluster_hooks_start_one_cluster_lazily_and_close_it(monkeypatch):
    config = ExecutionConfig(workers=2)
    key = parallel._cluster_key(config)
    params = _load_env("test")
    params["execution"]["workers"] = 2
    monkeypatch.setitem(session_state._ACTIVE, "params", params)
    monkeypatch.delitem(session_state._ACTIVE, "config", raising=False)  # validated from "params"
    run_hooks = KeepClusterHooks()
    run_hooks.before_pipeline_run(run_params={}, pipeline=None, catalog=None)
    try:
        assert parallel._KEPT == {key: None}  # nothing started before a stage needs it
        first = set(map_ordered(_scheduler_seen_by_worker, range(4), config))
        second = {result for _, result in map_as_completed(_scheduler_seen_by_worker, range(4), config)}
        cluster = parallel._KEPT[key]
        assert first == second == {cluster.scheduler.address}  # both stages used the one cluster
    finally:
        run_hooks.on_pipeline_error(error=RuntimeError(), run_params={}, pipeline=None, catalog=None)
    assert parallel._KEPT == {}
    assert cluster.status.name == "closed"


def test_keep_cluster_ignores_serial_and_remote_configurations():
    for config in (ExecutionConfig(), ExecutionConfig(scheduler_address="tcp://10.0.0.5:8786")):
        with keep_cluster(config):
            assert parallel._KEPT == {}
    assert list(map_ordered(_square, range(3), ExecutionConfig())) == [0, 1, 4]


BAD_EXECUTION = [
    ({"workers": 0}, "execution.workers = 0"),
    ({"workers": -2}, "execution.workers = -2"),
    ({"workers": 1.5}, "execution.workers = 1.5"),
    ({"workers": True}, "execution.workers = True"),
    ({"cluster": "kubernetes"}, "execution.cluster = 'kubernetes'"),
    ({"scheduler_address": "  "}, "execution.scheduler_address"),
    ({"slurm": ["queue"]}, "execution.slurm"),
]


@pytest.mark.parametrize("kwargs,expected", BAD_EXECUTION, ids=[str(k) for k, _ in BAD_EXECUTION])
def test_bad_execution_settings_are_refused_by_name(kwargs, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        ExecutionConfig(**kwargs)


# --------------------------------------------------------------------------- loopback only
def _listening_hosts(server) -> set[str]:
    return {sock.getsockname()[0] for sock in server._sockets.values() if sock.family == socket.AF_INET}


def test_local_cluster_listens_on_loopback_only(cluster_client):
    cluster = cluster_client.cluster
    assert cluster.scheduler.address.startswith("tcp://127.0.0.1:")
    assert _listening_hosts(cluster.scheduler.http_server) == {"127.0.0.1"}
    workers = cluster_client.scheduler_info()["workers"]
    assert len(workers) == 2 and all(addr.startswith("tcp://127.0.0.1:") for addr in workers)


def test_makefile_viz_binds_loopback():
    makefile = (PROJECT / "Makefile").read_text()
    viz = re.search(r"^viz:.*\n((?:\t.*\n)+)", makefile, flags=re.M)
    assert viz is not None, "Makefile has no viz target"
    assert "kedro viz run --host 127.0.0.1" in viz.group(1)
    assert "0.0.0.0" not in makefile


# --------------------------------------------------------------------------- proof: bit-identical
def test_simulation_on_two_workers_is_bit_identical_to_serial(tmp_path, tiny_cfg, serial_runs):
    tasks = plan_runs(tiny_cfg, "train")
    RunFolder(tmp_path / "train").simulate(SimulationPlan({t.run_id: t for t in tasks}, ExecutionConfig(workers=2)))
    parallel_runs = SimulationRunsDataset(path=str(tmp_path / "train")).load()
    assert parallel_runs.run_ids == serial_runs.run_ids == [f"train_{k:03d}" for k in range(8)]
    n_arrays = 0
    for run_id in serial_runs:
        for part in ("density", "particles"):
            serial = getattr(serial_runs, part)(run_id)
            parallel = getattr(parallel_runs, part)(run_id)
            assert serial.keys() == parallel.keys()
            for key in serial:
                assert _same_bits(serial[key], parallel[key]), f"{run_id}/{part}.npz[{key}] differs"
                n_arrays += 1
        meta_serial, meta_parallel = dict(serial_runs[run_id]), dict(parallel_runs[run_id])
        assert "seconds" not in meta_serial  # wall times live in timings.csv, not in run files
        assert meta_serial == meta_parallel
    assert n_arrays == 8 * (4 + 3)
    assert serial_runs.density("train_000")["density"].shape == (61, 16, 16)


POD_SETTINGS = [
    # (subsample, transform, shift_align, reference) -> route
    (2, "sqrt", True, "mean"),      # 248 snapshots < 256 cells: method of snapshots
    (1, "raw", True, "first"),      # 488 snapshots: grid Gram (dsyrk)
    (1, "log", True, "median"),
    (1, "sqrt", False, "mean"),
]


@pytest.mark.parametrize("subsample,transform,shift_align,reference", POD_SETTINGS,
                         ids=[f"{t}-{'align-' + r if a else 'no-align'}-sub{s}" for s, t, a, r in POD_SETTINGS])
def test_pod_on_a_cluster_is_bit_identical_to_serial(serial_runs, on_cluster, subsample, transform,
                                                     shift_align, reference):
    loaders = [partial(_density, serial_runs, run_id, subsample) for run_id in serial_runs]
    settings = dict(fixed_modes=6, transform=transform, transform_eps=1e-6, shift_align=shift_align,
                    shift_align_ref=reference)
    serial = PODBasis(**settings).fit(loaders)
    parallel = PODBasis(**settings).fit(loaders, map_fn=partial(map_ordered, config=on_cluster))
    assert serial.route_ == ("snapshots" if subsample == 2 else "gram")
    assert serial.n_snapshots_ == parallel.n_snapshots_ == 8 * len(range(0, 61, subsample))
    for attr in ("modes_", "singular_values_", "cumulative_energy_", "mean_"):
        assert _same_bits(getattr(serial, attr), getattr(parallel, attr)), attr
    if shift_align:
        assert _same_bits(serial.reference_, parallel.reference_)
    # and the basis is a real one: orthonormal modes, spectrum descending
    np.testing.assert_allclose(serial.modes_.T @ serial.modes_, np.eye(6), atol=1e-12)
    assert np.all(np.diff(serial.singular_values_) <= 0)


@pytest.mark.parametrize("pod_solver", ["gram", "krylov"])  # gram maps on the cluster, krylov in process
def test_pod_node_passes_execution_and_stays_bit_identical(serial_runs, on_cluster, pod_solver, monkeypatch):
    import rom_pipeline.pipelines.pod.nodes as pod_nodes

    monkeypatch.setattr(pod_nodes, "choose_pod_solver", lambda runs, subsample: pod_solver)
    params = _load_env("test")
    on_workers = copy.deepcopy(params)
    on_workers["execution"]["scheduler_address"] = on_cluster.scheduler_address
    rom_grid = derived_quantities(params)[0]
    serial_arrays, serial_summary = fit_pod_basis(serial_runs, params["rom"], params["execution"], rom_grid)
    parallel_arrays, parallel_summary = fit_pod_basis(serial_runs, on_workers["rom"], on_workers["execution"],
                                                      rom_grid)
    assert serial_arrays.keys() == parallel_arrays.keys()
    for key in serial_arrays:
        if key != "fit_seconds":
            assert _same_bits(serial_arrays[key], parallel_arrays[key]), key
    assert serial_summary["n_modes"] == parallel_summary["n_modes"] == 6


# --------------------------------------------------------------------------- Kedro DaskRunner
def test_dask_runner_passes_in_memory_results_between_nodes_on_workers(on_cluster, tmp_path):
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.pipeline import Node, Pipeline

    from rom_pipeline.framework.runner import DaskRunner

    stored = NpzDataset(filepath=str(tmp_path / "doubled.npz"))
    catalog = DataCatalog(datasets={
        "values": MemoryDataset(np.arange(5.0)), "offset": MemoryDataset(0.5), "stored": stored,
    })
    pipeline = Pipeline([
        Node(_double, "values", "doubled", name="double"),          # in memory, on one worker
        Node(_total, ["doubled", "offset"], "total", name="total"),  # free output: back to the driver
        Node(lambda d: {"doubled": d}, "doubled", "stored", name="store"),  # persisted by a worker
    ])
    runner = DaskRunner(scheduler_address=on_cluster.scheduler_address)
    runner.run(pipeline, catalog)
    assert catalog.load("total") == 2.0 * 10.0 + 0.5
    np.testing.assert_array_equal(stored.load()["doubled"], 2.0 * np.arange(5.0))

    failing = Pipeline([Node(_broken, "values", "never", name="broken")])
    with pytest.raises(ArithmeticError, match="singular companion matrix in node 'broken'"):
        runner.run(failing, DataCatalog(datasets={"values": MemoryDataset(np.arange(3.0))}))


def _kedro(data_root: Path, *args: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROM_DATA_ROOT": str(data_root), "KEDRO_DISABLE_TELEMETRY": "1",
           "MPLBACKEND": "Agg", "MLFLOW_TRACKING_URI": f"sqlite:///{data_root.parent / 'mlflow.db'}",
           "COLUMNS": "400", **(extra_env or {})}  # wide rich console: one log record per line
    proc = subprocess.run([KEDRO, "run", "--env", "test", *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"kedro run {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _latest(path: Path) -> dict[str, np.ndarray]:
    versions = sorted(path.iterdir())
    assert len(versions) == 1
    return NpzDataset(filepath=str(versions[0] / path.name)).load()


@pytest.mark.slow
def test_dask_runner_reproduces_the_sequential_run(tmp_path, tiny_default_run):
    stages = "--pipelines=simulation,pod,latent_dataset,mvar"
    # The sequential reference is the session's `kedro run --env test` (conftest.py): Dask workers
    # run BLAS single-threaded, and so does that run, so that the only difference left is where
    # each node runs.
    sequential = tiny_default_run
    on_dask = tmp_path / "dask" / "data"
    proc = _kedro(on_dask, stages, "--runner=rom_pipeline.framework.runner.DaskRunner", "--runner-params=workers=2",
                  "--params=execution.workers=2")
    log = proc.stdout + proc.stderr
    assert "DaskRunner: 15 nodes on a local cluster of 2 worker processes" in " ".join(log.split())
    assert "Completed 15 out of 15 tasks" in " ".join(log.split())

    seq_model = _latest(sequential / "test" / "MVAR" / "mvar_model.npz")
    dask_model = _latest(on_dask / "test" / "MVAR" / "mvar_model.npz")
    assert seq_model["coef"].shape == (3, 6, 6)
    for key in ("coef", "intercept", "eigenvalues", "spectral_radius", "train_r2"):
        assert _same_bits(seq_model[key], dask_model[key]), key
    for name in ("pod_basis.npz", "latent_dataset.npz"):
        seq, dsk = _latest(sequential / "test" / "rom_common" / name), _latest(on_dask / "test" / "rom_common" / name)
        for key in seq:
            if key != "fit_seconds":
                assert _same_bits(seq[key], dsk[key]), f"{name}[{key}]"
    seq_scan = (sequential / "test" / "MVAR" / "lag_scan.csv").read_text()
    assert seq_scan == (on_dask / "test" / "MVAR" / "lag_scan.csv").read_text()
    seq_summary = json.loads((sequential / "test" / "MVAR" / "training_summary.json").read_text())
    dask_summary = json.loads((on_dask / "test" / "MVAR" / "training_summary.json").read_text())
    seq_summary.pop("fit_seconds"), dask_summary.pop("fit_seconds")
    assert seq_summary == dask_summary
    for run_dir in sorted((sequential / "test" / "train").glob("train_*")):
        for part in ("density.npz", "particles.npz"):
            a = NpzDataset(filepath=str(run_dir / part)).load()
            b = NpzDataset(filepath=str(on_dask / "test" / "train" / run_dir.name / part)).load()
            assert all(_same_bits(a[k], b[k]) for k in a), f"{run_dir.name}/{part}"
