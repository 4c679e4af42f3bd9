"""Wall time of the simulation stage (and the POD fit) serially and on a 2-worker LocalCluster.

The default experiment (``conf/base``: 42 training runs of 20 s and 4 test runs of 50 s, N = 100,
64x64 KDE) is simulated exactly as the pipeline's simulation stage does it: each split is one
``RunFolder.simulate`` of the planned runs (what the simulation node calls), with ``execution.workers`` = 1 (serial, in this
process) and then 2 workers, two ways:

* ``own cluster``: every stage starts and closes its own LocalCluster (one per split, one for the
  POD fit), start-up included, as a plain ``kedro run`` does;
* ``kept cluster``: one cluster for the whole run (``KeepClusterHooks``), started by the simulation
  stage (start-up included there) and reused by the POD fit.

The POD fit of the training runs is timed the same way. Every parallel result is checked bit for
bit against the serial one, and the ratio serial / parallel is printed. Single-threaded BLAS in
this process, as in the Dask workers, so the serial baseline uses one core.

    .venv/bin/python benchmarks/bench_scaleout.py [--quick] [--workers 2]

``--quick`` uses the sizes of ``conf/test`` (8 + 2 runs, N = 40, 16x16).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rom_pipeline.config import validate_parameters  # noqa: E402
from rom_pipeline.datasets.runs import RunCollection, SimulationRunsDataset  # noqa: E402
from rom_pipeline.execution.parallel import ExecutionConfig, keep_cluster, map_ordered  # noqa: E402
from rom_pipeline.execution.run_folder import RunFolder, SimulationPlan  # noqa: E402
from rom_pipeline.rom.pod import PODBasis  # noqa: E402
from rom_pipeline.execution.runs import plan_runs  # noqa: E402
from tests.conftest import _load_env  # noqa: E402


def _simulate(cfg, root: Path, workers: int) -> tuple[float, dict[str, RunCollection]]:
    start = time.perf_counter()
    runs = {}
    for split in ("train", "test"):
        tasks = plan_runs(cfg, split)
        RunFolder(root / split).simulate(SimulationPlan({t.run_id: t for t in tasks}, ExecutionConfig(workers=workers)))
        runs[split] = SimulationRunsDataset(path=str(root / split)).load()
    return time.perf_counter() - start, runs


def _density(runs: RunCollection, run_id: str, subsample: int) -> np.ndarray:
    return runs.density(run_id)["density"][::subsample].astype(np.float64)


def _fit_pod(cfg, runs: RunCollection, workers: int) -> tuple[float, PODBasis]:
    rom = cfg.rom
    loaders = [partial(_density, runs, r, rom.subsample) for r in runs]
    execution = ExecutionConfig(workers=workers)
    start = time.perf_counter()
    with keep_cluster(execution):
        pod = PODBasis(fixed_modes=rom.fixed_modes, pod_energy=rom.pod_energy, transform=rom.density_transform,
                       transform_eps=rom.density_transform_eps, shift_align=rom.shift_align,
                       shift_align_ref=rom.shift_align_ref).fit(
            loaders, map_fn=partial(map_ordered, config=execution, label="POD runs"))
    return time.perf_counter() - start, pod


def _identical(serial: dict[str, RunCollection], parallel: dict[str, RunCollection]) -> bool:
    for split, runs in serial.items():
        for run_id in runs:
            for part in ("density", "particles"):
                a, b = getattr(runs, part)(run_id), getattr(parallel[split], part)(run_id)
                if a.keys() != b.keys() or any(a[k].tobytes() != b[k].tobytes() for k in a):
                    return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="conf/test sizes, a few seconds")
    parser.add_argument("--workers", type=int, default=2, help="workers of the parallel run (default 2)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    import distributed  # noqa: F401  (creates its loggers, each with its own level)

    for name in list(logging.root.manager.loggerDict):
        if name.startswith("distributed"):  # cluster start/stop chatter
            logging.getLogger(name).setLevel(logging.WARNING)
    load = os.getloadavg()
    cfg = validate_parameters(_load_env("test" if args.quick else "base"))
    n_train, n_test = (cfg.train_ic.run_count("train_ic"), cfg.test_ic.run_count("test_ic"))

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sim_serial, runs_serial = _simulate(cfg, root / "serial", 1)
        pod_serial, basis_serial = _fit_pod(cfg, runs_serial["train"], 1)
        sim_own, runs_own = _simulate(cfg, root / "own", args.workers)
        pod_own, basis_own = _fit_pod(cfg, runs_serial["train"], args.workers)
        with keep_cluster(ExecutionConfig(workers=args.workers)):
            sim_kept, runs_kept = _simulate(cfg, root / "kept", args.workers)
            pod_kept, basis_kept = _fit_pod(cfg, runs_serial["train"], args.workers)
        same_runs = _identical(runs_serial, runs_own) and _identical(runs_serial, runs_kept)
        same_pod = all(
            getattr(basis_serial, a).tobytes() == getattr(basis, a).tobytes()
            for basis in (basis_own, basis_kept) for a in ("modes_", "singular_values_", "mean_")
        )

    env = "test" if args.quick else "base"
    w = args.workers
    print(f"{'env':<5} {'stage':<11} {'runs':>6} {'serial s':>9} {f'{w}w own cluster s':>18} "
          f"{f'{w}w kept cluster s':>19} {'speed-up own':>13} {'speed-up kept':>14} {'bit-identical':>14}")
    rows = (("simulation", f"{n_train}+{n_test}", sim_serial, sim_own, sim_kept, same_runs),
            ("pod fit", f"{n_train}", pod_serial, pod_own, pod_kept, same_pod))
    for stage, runs, serial, own, kept, same in rows:
        print(f"{env:<5} {stage:<11} {runs:>6} {serial:>9.2f} {own:>18.2f} {kept:>19.2f} "
              f"{serial / own:>12.2f}x {serial / kept:>13.2f}x {str(same):>14}")
    print(f"CPU cores: {os.cpu_count()}; load average before the run: {load[0]:.2f} (other processes "
          "share the cores); own-cluster times include every cluster start, kept-cluster times one")

if __name__ == "__main__":
    main()
