"""Bad inputs fail early and clearly, and never leave partial output behind.

One table of 34 bad inputs (beyond the 30 of ``tests/test_config.py``) plus 6 end to end: bad parameters,
corrupt, truncated, unsafe or missing artifacts, impossible model settings and crashing tasks.
For each: the error names what is wrong (key/file and value) and how to fix it, and the data
directory holds no new or half-written file afterwards. A handful run end to end through
``kedro run``; the rest call the code that raises. Numerical faults are the other half: an
unstable forecaster is reported as diverged in ``test_results``, it does not crash the run.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from kedro.io import DatasetError
from kedro.io.core import Version, generate_timestamp

from rom_pipeline.config import ConfigError, validate_parameters
from rom_pipeline.datasets.files import NpzDataset, TorchPayloadDataset
from rom_pipeline.datasets.runs import SimulationPlan, SimulationRunsDataset
from rom_pipeline.physics.initial_conditions import sample_positions
from rom_pipeline.pipelines.pod.nodes import fit_pod_basis
from rom_pipeline.rom.mvar import MVARForecaster
from rom_pipeline.rom.pod import PODBasis
from rom_pipeline.runs import plan_runs
from tests.conftest import PROJECT, _load_env, with_overrides

KEDRO = str(Path(sys.executable).with_name("kedro"))
MARKER = "side_effect_ran"


# --------------------------------------------------------------------------- helpers
def _params(**overrides) -> dict:
    """The test environment's parameters with dotted-key overrides."""
    return with_overrides(_load_env("test"), **overrides)


def _files(root: Path) -> dict[str, int]:
    """``{relative path: size}`` of every file below ``root``."""
    return {str(p.relative_to(root)): p.stat().st_size for p in sorted(root.rglob("*")) if p.is_file()}


def _kedro(data_root: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROM_DATA_ROOT": str(data_root), "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg",
           # the MLflow tracking store is not pipeline output: keep it out of the data directory
           "MLFLOW_TRACKING_URI": f"sqlite:///{data_root.parent / 'mlflow.db'}",
           "MLFLOW_ARTIFACT_LOCATION": str(data_root.parent / "mlartifacts"),
           "COLUMNS": "400"}
    return subprocess.run([KEDRO, "run", "--env", "test", *args], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=600)


class _SideEffect:
    """Unpickling this object would create a marker file: proof that nothing was unpickled."""

    def __init__(self, folder: Path):
        self.folder = folder

    def __reduce__(self):
        return (Path.touch, (self.folder / MARKER,))


class _FailingTask:
    """A run that crashes while it is simulated (picklable, with a run id and fingerprint)."""

    def __init__(self, run_id: str):
        self.run_id, self.fingerprint = run_id, f"crash-{run_id}"

    def __call__(self):
        raise FloatingPointError(f"{self.run_id}: positions became NaN at step 17; lower sim.dt")


class _IncompleteTask(_FailingTask):
    """A run whose result lacks its density movie."""

    def __call__(self):
        return {"particles": {"times": np.zeros(2)}, "meta": {"run_id": self.run_id}}


class _MalformedTask(_FailingTask):
    """A run whose density holds Python objects: the write fails half-way through (after
    particles.npz was written into the run's temporary folder)."""

    def __call__(self):
        return {"particles": {"times": np.zeros(2)}, "density": {"density": np.array([{}], dtype=object)},
                "meta": {"run_id": self.run_id}}


@pytest.fixture(scope="module")
def pristine_runs(tmp_path_factory) -> Path:
    """The test environment's 8 training runs, simulated once for the whole module."""
    root = tmp_path_factory.mktemp("pristine")
    plan = SimulationPlan({t.run_id: t for t in plan_runs(validate_parameters(_params()), "train")})
    SimulationRunsDataset(path=str(root / "train")).save(plan)
    return root


# --------------------------------------------------------------------------- provocations
def _config(key: str, value) -> Callable[[Path], None]:
    def provoke(root: Path) -> None:
        validate_parameters(_params(**{key: value}))
    return provoke


def _nan_density(root: Path) -> None:
    path = root / "train" / "train_002" / "density.npz"
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["density"][5, 3, 4] = np.nan
    np.savez(path, **arrays)
    before = _files(root)
    try:
        fit_pod_basis(SimulationRunsDataset(path=str(root / "train")).load(), _params())
    finally:
        assert _files(root) == before


def _truncate(path: Path, keep: float = 0.5) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])


def _truncated_run(root: Path) -> None:
    _truncate(root / "train" / "train_004" / "density.npz")
    runs = SimulationRunsDataset(path=str(root / "train")).load()
    runs.density("train_004")


def _truncated_artifact(root: Path) -> None:
    path = root / "pod_basis.npz"
    basis = PODBasis(fixed_modes=2).fit([np.random.default_rng(0).random((6, 4, 4))])
    NpzDataset(filepath=str(path)).save(basis.to_arrays())
    _truncate(path, 0.7)
    NpzDataset(filepath=str(path)).load()


def _pickled_run(root: Path) -> None:
    path = root / "train" / "train_001" / "particles.npz"
    np.savez(path, times=np.zeros(3), positions=np.array([_SideEffect(root)], dtype=object))
    SimulationRunsDataset(path=str(root / "train")).load().particles("train_001")


def _pickled_artifact(root: Path) -> None:
    path = root / "pod_basis.npz"
    np.savez(path, modes=np.eye(3), payload=np.array([_SideEffect(root)], dtype=object))
    NpzDataset(filepath=str(path)).load()


def _object_array_save(root: Path) -> None:
    NpzDataset(filepath=str(root / "latent_dataset.npz")).save({"runs": np.array([{"a": 1}], dtype=object)})


def _non_dict_save(root: Path) -> None:
    NpzDataset(filepath=str(root / "latent_dataset.npz")).save([np.zeros(3)])


def _pickled_torch(root: Path) -> None:
    import torch

    path = root / "lstm_state_dict.pt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "hook": _SideEffect(root)}, path)
    TorchPayloadDataset(filepath=str(path)).load()


def _truncated_torch(root: Path) -> None:
    import torch

    path = root / "lstm_state_dict.pt"
    torch.save({"state_dict": {"w": torch.zeros(50)}}, path)
    _truncate(path, 0.4)
    TorchPayloadDataset(filepath=str(path)).load()


def _fixed_modes_over_rank(root: Path) -> None:
    rng = np.random.default_rng(1)
    rank_two = np.einsum("tk,kyx->tyx", rng.random((30, 2)), rng.random((2, 8, 8)))  # rank <= 2
    PODBasis(fixed_modes=5).fit([rank_two])


def _grid_mismatch(root: Path) -> None:
    rng = np.random.default_rng(2)
    PODBasis(fixed_modes=2).fit([rng.random((5, 8, 8)), rng.random((5, 8, 6))])


def _no_runs(root: Path) -> None:
    PODBasis(fixed_modes=2).fit([])


def _lag_over_run_length(root: Path) -> None:
    MVARForecaster(lag=40).fit([np.zeros((31, 6)), np.ones((31, 6))])


def _wrong_artifact(root: Path) -> None:
    basis = PODBasis(fixed_modes=2).fit([np.random.default_rng(3).random((6, 4, 4))])
    MVARForecaster.from_arrays(basis.to_arrays())


def _unknown_family(root: Path) -> None:
    sample_positions("spiral", 10, 12.0, 12.0, np.random.default_rng(0))


def _missing_runs(root: Path) -> None:
    SimulationRunsDataset(path=str(root / "nowhere" / "train")).load()


def _faulty_run(task_class: type, run_id: str) -> Callable[[Path], None]:
    def provoke(root: Path) -> None:
        tasks = {t.run_id: t for t in plan_runs(validate_parameters(_params()), "train")}
        tasks[run_id] = task_class(run_id)
        SimulationRunsDataset(path=str(root / "fresh")).save(SimulationPlan(tasks))
    return provoke


@dataclass(frozen=True)
class Case:
    name: str
    provoke: Callable[[Path], None]
    error: type[BaseException]
    expected: tuple[str, ...]  # fragments of the message: the key or file, the value, the fix
    needs_runs: bool = False
    allowed_new: tuple[str, ...] = ()  # complete outputs a stage may legitimately leave


EMPTY_FAMILIES = {f: {"enabled": False} for f in ("gaussian", "uniform", "ring", "two_clusters")}
CASES = [
    # ---- parameters (validated before any node runs)
    Case("workers 0", _config("execution.workers", 0), ConfigError, ("execution.workers = 0", "greater than or equal to 1")),
    Case("unknown cluster", _config("execution.cluster", "kubernetes"), ConfigError, ("execution.cluster = 'kubernetes'", "'local' or 'slurm'")),
    Case("slurm not a mapping", _config("execution.slurm", "fast"), ConfigError, ("execution.slurm = 'fast'", "valid dictionary")),
    Case("save_every 0", _config("sim.save_every", 0), ConfigError, ("sim.save_every = 0", "greater than or equal to 1")),
    Case("T not whole steps", _config("sim.T", 3.01), ConfigError, ("sim.T = 3.01 is not a whole number of steps of sim.dt = 0.05",)),
    Case("no test runs", _config("test_ic", EMPTY_FAMILIES), ConfigError, ("test_ic describes 0 runs", "enable at least one family")),
    Case("negative run count", _config("train_ic.uniform.n_runs", -1), ConfigError, ("train_ic.uniform.n_runs = -1",)),
    Case("unknown reference", _config("rom.shift_align_ref", "mode"), ConfigError, ("rom.shift_align_ref = 'mode'", "'mean', 'first' or 'median'")),
    Case("validation fraction 1", _config("rom.models.lstm.validation_fraction", 1.0), ConfigError, ("rom.models.lstm.validation_fraction = 1.0", "less than 1")),
    Case("unknown device", _config("rom.models.lstm.device", "tpu"), ConfigError, ("rom.models.lstm.device = 'tpu'", "'auto', 'cpu' or 'cuda'")),
    Case("shared lag too long", _config("rom.lag", 40), ConfigError, ("rom.lag = 40 must be smaller than the 31 ROM frames", "lower the lag")),
    Case("unknown shift mode", _config("eval.shift_modes", ["teleport"]), ConfigError, ("eval.shift_modes.0 = 'teleport'",)),
    Case("max_lag 0", _config("rom.models.mvar.max_lag", 0), ConfigError, ("rom.models.mvar.max_lag = 0",)),
    Case("unknown force law", _config("forces.type", "lennard_jones"), ConfigError, ("forces.type = 'lennard_jones'", "'morse'")),
    Case("NaN noise", _config("noise.eta", float("nan")), ConfigError, ("noise.eta = nan", "must be a finite number")),
    # ---- data and artifacts
    Case("NaN in a density file", _nan_density, DatasetError, ("train_002/density.npz holds NaN or infinite densities", "rerun the simulation pipeline"), needs_runs=True),
    Case("truncated run file", _truncated_run, DatasetError, ("train_004/density.npz is not a readable .npz file", "delete its run folder and rerun"), needs_runs=True),
    Case("truncated .npz artifact", _truncated_artifact, DatasetError, ("pod_basis.npz is not a readable .npz file", "delete it and rerun")),
    Case("pickle in a run file", _pickled_run, DatasetError, ("particles.npz holds pickled Python objects", "allow_pickle=False"), needs_runs=True),
    Case("pickle in an .npz artifact", _pickled_artifact, DatasetError, ("pod_basis.npz holds pickled Python objects", "delete it and rerun")),
    Case("object array saved", _object_array_save, DatasetError, ("refuses object arrays (keys ['runs'])", "store numbers or strings")),
    Case("non-dict saved", _non_dict_save, DatasetError, ("NpzDataset saves a dict of arrays, got list",)),
    Case("pickled object in a torch payload", _pickled_torch, DatasetError, ("lstm_state_dict.pt could not be loaded safely", "rerun the lstm pipeline")),
    Case("truncated torch payload", _truncated_torch, DatasetError, ("lstm_state_dict.pt could not be loaded safely",)),
    Case("missing simulation runs", _missing_runs, DatasetError, ("No simulation runs in", "`kedro run --pipelines=simulation`")),
    # ---- impossible model settings at the science layer
    Case("fixed_modes > rank", _fixed_modes_over_rank, ValueError, ("rom.fixed_modes=5 exceeds the numerical rank 2", "choose rom.fixed_modes <= 2")),
    Case("runs on different grids", _grid_mismatch, ValueError, ("run 1 has grid (8, 6) but run 0 has (8, 8)",)),
    Case("no training runs", _no_runs, ValueError, ("runs is empty",)),
    Case("lag >= run length", _lag_over_run_length, ValueError, ("run 0 has 31 latent frames but lag is 40", "choose a lag smaller")),
    Case("POD arrays given as a model", _wrong_artifact, ValueError, ("MVAR arrays lack ['lag'", "must come from MVARForecaster.to_arrays()")),
    Case("unknown IC family", _unknown_family, ValueError, ("family must be one of", "'spiral'")),
    # ---- crashing and malformed simulation runs: complete runs only, never a half-written one
    Case("run crashes midway", _faulty_run(_FailingTask, "train_005"), DatasetError,
         ("Failed while saving data to dataset", "fresh')", "train_005: positions became NaN at step 17", "lower sim.dt"),
         allowed_new=(*(f"fresh/train_{k:03d}/" for k in range(5)), "fresh/timings.csv")),
    Case("run result incomplete", _faulty_run(_IncompleteTask, "train_003"), DatasetError,
         ("run train_003: its task returned no ['density']",), allowed_new=(*(f"fresh/train_{k:03d}/" for k in range(3)), "fresh/timings.csv")),
    Case("run write fails half-way", _faulty_run(_MalformedTask, "train_006"), DatasetError,
         ("density.npz: refuses object arrays (keys ['density'])",), allowed_new=(*(f"fresh/train_{k:03d}/" for k in range(6)), "fresh/timings.csv")),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_fails_clearly_and_leaves_no_partial_output(case: Case, tmp_path, pristine_runs):
    root = tmp_path / "data"
    if case.needs_runs:
        shutil.copytree(pristine_runs, root)
    else:
        root.mkdir()
    before = _files(root)
    with pytest.raises(case.error) as info:
        case.provoke(root)
    message = " ".join(str(info.value).split())
    for fragment in case.expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    after = _files(root)
    assert not (root / MARKER).exists(), "an untrusted object was unpickled"
    assert not [p for p in root.rglob("*") if ".partial-" in p.name], "a half-written output was left"
    new = {p for p in after if p not in before or after[p] != before[p]}
    new = {p for p in new if not any(p.startswith(prefix) for prefix in case.allowed_new)}
    changed_by_setup = {"pod_basis.npz", "lstm_state_dict.pt", "train/train_002/density.npz",
                        "train/train_004/density.npz", "train/train_001/particles.npz"}
    assert new <= changed_by_setup, f"new or changed files: {sorted(new - changed_by_setup)}"
    for prefix in case.allowed_new:  # what a failed stage keeps is complete runs
        run = root / prefix
        if not run.is_dir():
            continue
        assert sorted(p.name for p in run.iterdir()) == ["density.npz", "meta.json", "particles.npz"]


def test_table_has_at_least_25_distinct_cases():
    assert len({c.name for c in CASES}) == len(CASES) >= 25


# --------------------------------------------------------------------------- end to end (kedro run)
E2E = [
    ("unknown IC family", "--params=train_ic.spiral.enabled=true",
     ("train_ic.spiral = {'enabled': True}: unknown key", "remove it or fix its spelling")),
    ("unknown model type", "--params=model.type=boids",
     ("model.type = 'boids'", "'discrete' or 'dorsogna'")),
    ("lag >= run length", "--params=rom.models.mvar.lag=100",
     ("rom.models.mvar.lag = 100 must be smaller than the 31 ROM frames", "lower the lag or rom.subsample")),
    ("empty grid", "--params=train_ic.gaussian.variances=[]",
     ("train_ic.gaussian.variances = []", "at least 1 item")),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,params,expected", E2E, ids=[e[0] for e in E2E])
def test_bad_parameters_stop_kedro_run_before_any_output(tmp_path, name, params, expected):
    root = tmp_path / "data"
    root.mkdir()
    proc = _kedro(root, "--pipelines=simulation", params)
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert "ConfigError: Invalid experiment parameters" in text
    for fragment in expected:
        assert fragment in text, fragment
    assert _files(root) == {}, "a config error must stop the run before any node writes"


@pytest.mark.slow
def test_missing_upstream_artifacts_name_the_command_that_builds_them(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    proc = _kedro(root, "--pipelines=mvar")
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert "Missing inputs latent_dataset, pod_basis, test.runs" in text
    assert "`kedro run --pipelines=simulation,pod,latent_dataset --env test`" in text
    assert _files(root) == {}


@pytest.mark.slow
def test_fixed_modes_beyond_rank_fails_the_pod_stage_and_writes_none_of_it(tmp_path):
    root = tmp_path / "data"
    proc = _kedro(root, "--pipelines=simulation,pod", "--params=rom.fixed_modes=300")
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert "rom.fixed_modes=300 exceeds the numerical rank" in text
    assert "choose rom.fixed_modes <=" in text
    exp = root / "test"
    assert sorted(p.name for p in exp.iterdir()) == ["test", "train"]  # the simulation stage, nothing of POD
    assert not [p for p in root.rglob("*") if ".partial-" in p.name]
    assert len(SimulationRunsDataset(path=str(exp / "train")).load()) == 8


# --------------------------------------------------------------------------- numerical faults
@pytest.mark.slow
def test_unstable_mvar_is_reported_as_diverged_not_a_crash(tmp_path):
    root = tmp_path / "data"
    built = _kedro(root, "--pipelines=simulation,pod,latent_dataset,mvar", "--params=rom.models.mvar.ridge_alpha=1.0e-12")
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    mvar = root / "test" / "MVAR"
    stable = pd.read_csv(mvar / "test_results.csv")
    assert not stable["diverged"].any()

    # doctor the trained model into an explosive one and store it as the newest version
    store = mvar / "mvar_model.npz"
    (version,) = sorted(store.iterdir())
    arrays = NpzDataset(filepath=str(store), version=Version(version.name, None)).load()
    model = MVARForecaster.from_arrays(arrays)
    model.coef_ = model.coef_ * 25.0
    model.eigenvalues_ = np.linalg.eigvals(model.companion_matrix())
    model.spectral_radius_ = float(np.max(np.abs(model.eigenvalues_)))
    assert model.spectral_radius_ > 2.0
    NpzDataset(filepath=str(store), version=Version(None, generate_timestamp())).save(model.to_arrays())

    proc = _kedro(root, "--pipelines=mvar", "--nodes=mvar.evaluate_on_test_runs")
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode == 0, text[-3000:]
    assert "closed-loop rollout diverged" in text
    results = pd.read_csv(mvar / "test_results.csv")
    assert set(results["run_id"]) == {"test_000", "test_001"}
    assert results["diverged"].all()
    for metric in ("r2_pooled", "r2_latent", "rmse", "valid_time"):
        assert results[metric].isna().all(), metric
    # diagnostics that do not depend on the rollout are still reported
    assert np.isfinite(results["r2_pod_ceiling"]).all() and (results["r2_pod_ceiling"] <= 1).all()
    predicted = NpzDataset(filepath=str(mvar / "predicted_density.npz")).load()
    assert np.isnan(predicted["test_000"]).all()
