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
import signal
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
from rom_pipeline.datasets.runs import SimulationRunsDataset
from rom_pipeline.execution.run_folder import RunFolder, RunFolderError, SimulationPlan
from rom_pipeline.physics.initial_conditions import sample_positions
from rom_pipeline.pipelines.models import derived_quantities
from rom_pipeline.pipelines.pod.nodes import fit_pod_basis
from rom_pipeline.rom.mvar import MVARForecaster
from rom_pipeline.rom.pod import PODBasis
from rom_pipeline.execution.runs import plan_runs
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
    RunFolder(root / "train").simulate(plan)
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
        params = _params()
        fit_pod_basis(SimulationRunsDataset(path=str(root / "train")).load(), params["rom"],
                      params["execution"], derived_quantities(params)[0])
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
        RunFolder(root / "fresh").simulate(SimulationPlan(tasks))
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
    Case("validation fraction 1", _config("lstm.validation_fraction", 1.0), ConfigError, ("lstm.validation_fraction = 1.0", "less than 1")),
    Case("unknown device", _config("lstm.device", "tpu"), ConfigError, ("lstm.device = 'tpu'", "'auto', 'cpu' or 'cuda'")),
    Case("shared lag too long", _config("latent_dataset.lag", 40), ConfigError, ("latent_dataset.lag = 40 must be smaller than the 31 ROM frames", "lower the lag")),
    Case("unknown shift mode", _config("eval.shift_modes", ["teleport"]), ConfigError, ("eval.shift_modes.0 = 'teleport'",)),
    Case("max_lag 0", _config("mvar.max_lag", 0), ConfigError, ("mvar.max_lag = 0",)),
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
    Case("run crashes midway", _faulty_run(_FailingTask, "train_005"), FloatingPointError,
         ("train_005: positions became NaN at step 17", "lower sim.dt"),
         allowed_new=(*(f"fresh/train_{k:03d}/" for k in range(5)), "fresh/timings.csv")),
    Case("run result incomplete", _faulty_run(_IncompleteTask, "train_003"), RunFolderError,
         ("run train_003: its task returned no ['density']",), allowed_new=(*(f"fresh/train_{k:03d}/" for k in range(3)), "fresh/timings.csv")),
    Case("run write fails half-way", _faulty_run(_MalformedTask, "train_006"), RunFolderError,
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
# Bad parameters through `kedro run`: see PARAM_CASES below (in-process CLI, a finished experiment).
def test_bad_parameters_stop_kedro_run_before_any_output(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    code, text = _cli(root, "--pipelines=simulation", "--params=train_ic.gaussian.variances=[]")
    assert code == 1
    assert "ConfigError: Invalid experiment parameters" in text
    assert "train_ic.gaussian.variances = []" in text and "at least 1 item" in text
    assert _files(root) == {}, "a config error must stop the run before any node writes"


def test_missing_upstream_artifacts_name_the_command_that_builds_them(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    code, text = _cli(root, "--pipelines=mvar")
    assert code == 1
    assert "Missing inputs latent_dataset, pod_basis, test.runs" in text
    assert "`kedro run --pipelines=simulation,pod,latent_dataset --env test`" in text
    assert "Traceback" not in text
    assert _files(root) == {}


@pytest.mark.slow
def test_fixed_modes_beyond_rank_fails_the_pod_stage_and_writes_none_of_it(finished, tmp_path):
    root = tmp_path / "data"
    for split in ("train", "test"):  # the simulation stage's output, copied from the module's run
        shutil.copytree(finished / "test" / split, root / "test" / split)
    proc = _kedro(root, "--pipelines=pod", "--params=rom.fixed_modes=300")
    text = " ".join((proc.stdout + proc.stderr).split())
    assert proc.returncode != 0
    assert "rom.fixed_modes=300 exceeds the numerical rank" in text
    assert "choose rom.fixed_modes <=" in text
    exp = root / "test"
    # the simulation stage and the parameters' description of the ROM grid, nothing of POD
    assert sorted(p.name for p in exp.iterdir() if p.is_dir()) == ["rom_common", "test", "train"]
    assert sorted(p.name for p in (exp / "rom_common").iterdir()) == ["rom_grid.json"]
    assert not [p for p in root.rglob("*") if ".partial-" in p.name]
    assert len(SimulationRunsDataset(path=str(exp / "train")).load()) == 8


# --------------------------------------------------------------------------- numerical faults
@pytest.mark.slow
def test_unstable_mvar_is_reported_as_diverged_not_a_crash(data_copy):
    # a copy of the module's finished experiment (simulation, POD, latent dataset, a stable MVAR)
    root = data_copy
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


# =========================================================================== through the real CLI
# A newcomer's bad inputs, each through `kedro run` (Kedro's CLI, in this process: the project's
# cli.py run command, hooks, catalog and datasets exactly as on the command line), on a finished
# tiny experiment built once for the module. For each: exit code 1, one short message (no
# traceback) naming the key or file and the fix, and the data folder byte-identical afterwards.
import hashlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402
from contextlib import contextmanager  # noqa: E402

from click.testing import CliRunner  # noqa: E402


def _hash_tree(root: Path) -> dict[str, str]:
    """``{relative path: sha256}`` of every file below ``root``."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@contextmanager
def _environ(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _cli(data_root: Path, *args: str, conf: Path | None = None, env: str = "test"):
    """``kedro run --env test ARGS`` in this process; returns (exit code, stdout + stderr)."""
    from kedro.framework.cli.cli import KedroCLI

    extra = ["--conf-source", str(conf)] if conf is not None else []
    with _environ(ROM_DATA_ROOT=str(data_root), COLUMNS="400", ROM_VERBOSE="0"):
        try:
            result = CliRunner().invoke(KedroCLI(project_path=PROJECT), ["run", "--env", env, *extra, *args])
        finally:
            _end_mlflow_runs()
    text = result.output  # stdout and stderr, interleaved
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        text += f"\n{type(result.exception).__name__}: {result.exception}"
    return result.exit_code, " ".join(text.split())


def _end_mlflow_runs() -> None:
    """A failed in-process run can leave its MLflow run active (a CLI process would exit)."""
    try:
        import mlflow
    except ImportError:
        return
    while mlflow.active_run() is not None:
        mlflow.end_run()


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished tiny experiment (simulation, POD, latent dataset, MVAR) of the test environment."""
    root = tmp_path_factory.mktemp("finished") / "data"
    code, text = _cli(root, "--pipelines=simulation,pod,latent_dataset,mvar")
    assert code == 0, text[-3000:]
    return root


@pytest.fixture
def data_copy(finished, tmp_path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(finished, root)
    return root


def _latest(store: Path) -> Path:
    """The newest version's file of a versioned artifact folder (``name.npz/<version>/name.npz``)."""
    return sorted(store.iterdir())[-1] / store.name


def _rewrite_npz(path: Path, **changes) -> None:
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, fn in changes.items():
        arrays[key] = fn(arrays[key])
    with path.open("wb") as f:
        np.savez(f, **arrays)


def _set_nan(key: str, where=(0, 0)):
    def edit(a):
        a = a.astype(np.float64).copy()
        a[where] = np.nan
        return a
    return {key: edit}


def _newer_version(store: Path, edit) -> Path:
    """Copy the newest version of ``store`` to a newer timestamp and apply ``edit`` to its file."""
    old = sorted(store.iterdir())[-1]
    new = store / generate_timestamp()
    time.sleep(0.002)
    shutil.copytree(old, new)
    edit(new / store.name)
    return new / store.name


def _stale_lineage(key: str, value):
    def edit(path: Path) -> None:
        def change(raw):
            record = json.loads(str(raw))
            record["params"][key] = value
            return np.array(json.dumps(record))
        _rewrite_npz(path, _lineage=change)
    return edit


def _conf(tmp: Path, env_edits: dict[str, dict]) -> Path:
    """A copy of the project's conf/ with YAML files of the test environment replaced/extended."""
    import yaml

    conf = tmp / "conf"
    shutil.copytree(PROJECT / "conf", conf)
    for filename, content in env_edits.items():
        (conf / "test" / filename).write_text(yaml.safe_dump(content))
    return conf


def _test_globals(**overrides) -> dict:
    return {"experiment": "test", **overrides}


def _test_parameters(**dotted) -> dict:
    import yaml

    raw = yaml.safe_load((PROJECT / "conf" / "test" / "parameters.yml").read_text())
    return with_overrides(raw, **dotted)


@dataclass(frozen=True)
class CliCase:
    name: str
    args: tuple[str, ...]
    expected: tuple[str, ...]
    setup: Callable[[Path], None] | None = None  # edits the data folder copy before the run
    conf: dict | None = None  # files of conf/test/ replaced in a conf copy


P = "--params="
PARAM_CASES = [
    # ---- parameters: refused before anything is read, written or deleted
    CliCase("sim.T inf", ("--pipelines=simulation", P + "sim.T=inf"), ("sim.T = 'inf': must be a finite number",)),
    CliCase("test_sim.T inf", ("--pipelines=simulation", P + "test_sim.T=inf"), ("test_sim.T = 'inf': must be a finite number",)),
    CliCase("params.R inf", ("--pipelines=simulation", P + "params.R=inf"), ("params.R = 'inf': must be a finite number",)),
    CliCase("sim.Lx inf", ("--pipelines=simulation", P + "sim.Lx=inf"), ("sim.Lx = 'inf': must be a finite number",)),
    CliCase("sim.dt nan", ("--pipelines=simulation", P + "sim.dt=nan"), ("sim.dt = 'nan': must be a finite number",)),
    CliCase("sim.N true", ("--pipelines=simulation", P + "sim.N=true"), ("sim.N = True: a boolean where a number", "write the number itself")),
    CliCase("density.nx false", ("--pipelines=simulation", P + "density.nx=false"), ("density.nx = False: a boolean",)),
    CliCase("test_sim.T cut", ("--pipelines=simulation", P + "test_sim.T=6.01"), ("test_sim.T = 6.01 is not a whole number of steps of sim.dt = 0.05", "use 6 or 6.05")),
    CliCase("sim.T cut", ("--pipelines=simulation", P + "sim.T=3.01"), ("sim.T = 3.01 is not a whole number of steps", "use 3 or 3.05")),
    CliCase("sim.N 0", ("--pipelines=simulation", P + "sim.N=0"), ("sim.N = 0", "greater than 0")),
    CliCase("sim.N word", ("--pipelines=simulation", P + "sim.N=many"), ("sim.N = 'many'", "valid integer")),
    CliCase("sim.bc unknown", ("--pipelines=simulation", P + "sim.bc=toroidal"), ("sim.bc = 'toroidal'", "'periodic' or 'reflecting'")),
    CliCase("sim typo", ("--pipelines=simulation", P + "sim.NN=10"), ("sim.NN = 10: unknown key", "fix its spelling")),
    CliCase("unknown block", ("--pipelines=simulation", P + "simulation.N=10"), ("simulation = {'N': 10}: unknown key",)),
    CliCase("sim.save_every 0", ("--pipelines=simulation", P + "sim.save_every=0"), ("sim.save_every = 0", "greater than or equal to 1")),
    CliCase("sim.seed_base negative", ("--pipelines=simulation", P + "sim.seed_base=-1"), ("sim.seed_base = -1",)),
    CliCase("model.type unknown", ("--pipelines=simulation", P + "model.type=boids"), ("model.type = 'boids'", "'discrete' or 'dorsogna'")),
    CliCase("speed too high", ("--pipelines=simulation", P + "model.speed=100.0"), ("exceeds params.R / 2", "lower sim.dt or model.speed")),
    CliCase("noise negative", ("--pipelines=simulation", P + "noise.eta=-1.0"), ("noise.eta = -1.0", "greater than or equal to 0")),
    CliCase("bandwidth 0", ("--pipelines=simulation", P + "density.bandwidth=0"), ("density.bandwidth = 0",)),
    CliCase("n_runs negative", ("--pipelines=simulation", P + "train_ic.uniform.n_runs=-1"), ("train_ic.uniform.n_runs = -1",)),
    CliCase("unknown IC family", ("--pipelines=simulation", P + "train_ic.spiral.enabled=true"), ("train_ic.spiral = {'enabled': True}: unknown key",)),
    CliCase("test horizon too short", ("--pipelines=simulation", P + "test_sim.T=0.4"), ("test_sim.T = 0.4 must be longer than eval.forecast_start", "raise test_sim.T")),
    CliCase("workers 0", ("--pipelines=simulation", P + "execution.workers=0"), ("execution.workers = 0",)),
    CliCase("unknown cluster", ("--pipelines=simulation", P + "execution.cluster=kubernetes"), ("execution.cluster = 'kubernetes'", "'local' or 'slurm'")),
    CliCase("slurm without sbatch", ("--pipelines=simulation", P + "execution.cluster=slurm"), ("`sbatch` is not on PATH", "use execution.cluster: local")),
    CliCase("subsample 0", ("--pipelines=pod", P + "rom.subsample=0"), ("rom.subsample = 0",)),
    CliCase("fixed_modes 0", ("--pipelines=pod", P + "rom.fixed_modes=0"), ("rom.fixed_modes = 0",)),
    CliCase("pod_energy 1.5", ("--pipelines=pod", P + "rom.pod_energy=1.5"), ("rom.pod_energy = 1.5", "less than or equal to 1")),
    CliCase("transform unknown", ("--pipelines=pod", P + "rom.density_transform=cbrt"), ("rom.density_transform = 'cbrt'",)),
    CliCase("lag too long", ("--pipelines=mvar", P + "mvar.lag=100"), ("mvar.lag = 100 must be smaller than the 31 ROM frames", "lower the lag")),
    CliCase("lag word", ("--pipelines=mvar", P + "mvar.lag=best"), ("mvar.lag.int = 'best'", "Input should be 'aic', 'bic', 'hqic' or 'fpe'")),
    CliCase("ridge negative", ("--pipelines=mvar", P + "mvar.ridge_alpha=-1.0"), ("mvar.ridge_alpha = -1.0",)),
    CliCase("ridge inf", ("--pipelines=mvar", P + "mvar.ridge_alpha=inf"), ("mvar.ridge_alpha = 'inf': must be a finite number",)),
    CliCase("dropout 1.5", ("--pipelines=lstm", P + "lstm.dropout=1.5"), ("lstm.dropout = 1.5",)),
    CliCase("device tpu", ("--pipelines=lstm", P + "lstm.device=tpu"), ("lstm.device = 'tpu'", "'auto', 'cpu' or 'cuda'")),
    CliCase("forecast too early", ("--pipelines=mvar", P + "eval.forecast_start=0.1"), ("eval.forecast_start = 0.1 s gives 1 conditioning frames", "raise eval.forecast_start")),
    CliCase("clamp unknown", ("--pipelines=mvar", P + "eval.clamp_mode=C0"), ("eval.clamp_mode = 'C0'",)),
    CliCase("coint_rank too big", ("--pipelines=mvar", P + "mvar.coint_rank=20"), ("coint_rank = 20 exceeds rom.fixed_modes = 6",)),
    CliCase("n_folds 1", ("--pipelines=hyperparameter_search", P + "search.n_folds=1"), ("search.n_folds = 1",)),
    # ---- pipelines
    CliCase("unknown pipeline", ("--pipelines=nonexistent",), ("unknown pipeline(s) 'nonexistent'", "Available pipelines:", "simulation", "latent_dataset", "mvar")),
    CliCase("pipeline typo", ("--pipelines=simulation,lattent_dataset",), ("'lattent_dataset'", "Available pipelines:")),
    # ---- stale inputs: what is on disk was built with other parameters
    CliCase("POD on runs of other physics", ("--pipelines=pod", P + "params.R=3.0"), ("train.runs", "8 of 8 runs were simulated with other parameters (params.R: 2.0 -> 3.0)", "`kedro run --pipelines=simulation,pod,latent_dataset --env test`")),
    CliCase("POD on runs of another N", ("--pipelines=pod", P + "sim.N=50"), ("train.runs", "sim.N: 40 -> 50", "--pipelines=simulation,pod,latent_dataset")),
    CliCase("POD with runs missing", ("--pipelines=pod", P + "train_ic.uniform.n_runs=3"), ("train.runs", "are missing (1 of 9 planned)",)),
    CliCase("latent at another subsample", ("--pipelines=latent_dataset", P + "rom.subsample=1"), ("train_latent", "rom.subsample: 2 -> 1", "`kedro run --pipelines=pod,latent_dataset --env test`")),
    CliCase("MVAR on a latent dataset of another subsample", ("--pipelines=mvar", P + "rom.subsample=1"), ("latent_dataset", "upstream pod_basis: rom.subsample: 2 -> 1", "--pipelines=pod,latent_dataset")),
    CliCase("MVAR on a basis of other modes", ("--pipelines=mvar", P + "rom.fixed_modes=4"), ("pod_basis", "rom.fixed_modes: 6 -> 4",)),
    CliCase("MVAR on another shared lag", ("--pipelines=mvar", P + "latent_dataset.lag=2"), ("latent_dataset", "latent_dataset.lag (shared: latent_dataset.lag, else mvar.lag): 3 -> 2", "`kedro run --pipelines=latent_dataset --env test`")),
    CliCase("MVAR on test runs of another horizon", ("--pipelines=mvar", P + "test_sim.T=5.0"), ("test.runs", "2 of 2 runs were simulated with other parameters (test_sim.T: 6.0 -> 5.0)",)),
    CliCase("MVAR on another density grid", ("--pipelines=mvar", P + "density.nx=20"),
            ("test.runs", "density.nx: 16 -> 20", "upstream train.runs: density.nx: 16 -> 20", "--pipelines=simulation,pod,latent_dataset")),
    CliCase("evaluating a model of other settings", ("--pipelines=mvar", "--nodes=mvar.evaluate_on_test_runs", P + "mvar.ridge_alpha=1.0"), ("mvar.model", "mvar.ridge_alpha: 0.0001 -> 1.0", "`kedro run --pipelines=mvar --env test`")),
]


FILE_CASES = [
    # ---- corrupt, incomplete, non-finite or mismatched files
    CliCase("missing density.npz", ("--pipelines=pod",), ("train/train_003/density.npz is missing", "kedro run --pipelines=simulation"),
            setup=lambda r: (r / "test/train/train_003/density.npz").unlink()),
    CliCase("corrupt meta.json", ("--pipelines=pod",), ("train/train_005/meta.json is corrupt", "kedro run --pipelines=simulation"),
            setup=lambda r: (r / "test/train/train_005/meta.json").write_text("{not json")),
    CliCase("truncated density.npz", ("--pipelines=pod",), ("train_004/density.npz is not a readable .npz file", "delete its run folder and rerun"),
            setup=lambda r: _truncate(r / "test/train/train_004/density.npz")),
    CliCase("NaN in a training density", ("--pipelines=pod",), ("train_002/density.npz holds NaN or infinite densities", "rerun the simulation pipeline"),
            setup=lambda r: _rewrite_npz(r / "test/train/train_002/density.npz", **_set_nan("density", (3, 4, 5)))),
    CliCase("NaN in the POD basis", ("--pipelines=mvar",), ("pod_basis", "arrays ['modes'] hold NaN or inf", "--pipelines=pod,latent_dataset"),
            setup=lambda r: _rewrite_npz(_latest(r / "test/rom_common/pod_basis.npz"), **_set_nan("modes"))),
    CliCase("inf in the latent trajectories", ("--pipelines=latent_dataset",), ("train_latent", "arrays ['trajectories'] hold NaN or inf"),
            setup=lambda r: _rewrite_npz(_latest(r / "test/rom_common/latent_trajectories.npz"),
                                         trajectories=lambda a: np.where(np.arange(a.size).reshape(a.shape) == 7, np.inf, a))),
    CliCase("random bytes as the basis", ("--pipelines=mvar",), ("pod_basis.npz", "is not a readable .npz file", "delete it and rerun"),
            setup=lambda r: _latest(r / "test/rom_common/pod_basis.npz").write_bytes(np.random.default_rng(0).bytes(4096))),
    CliCase("truncated latent dataset", ("--pipelines=mvar",), ("latent_dataset.npz", "is not a readable .npz file"),
            setup=lambda r: _truncate(_latest(r / "test/rom_common/latent_dataset.npz"))),
    CliCase("newer basis of other modes with an older latent dataset", ("--pipelines=mvar",),
            ("pod_basis", "rom.fixed_modes: 4 -> 6", "--pipelines=pod,latent_dataset"),
            setup=lambda r: _newer_version(r / "test/rom_common/pod_basis.npz", _stale_lineage("rom.fixed_modes", 4)) and None),
    CliCase("a user's folder where a run goes", ("--pipelines=simulation", P + "train_ic.uniform.n_runs=4"),
            ("train_008: in the way of planned runs but not written by this pipeline", "move it out of"),
            setup=lambda r: ((r / "test/train/train_008").mkdir(), (r / "test/train/train_008/notes.txt").write_text("mine"))),
    CliCase("missing load version", ("--pipelines=mvar", "--load-versions=pod_basis:2001-01-01T00.00.00.000Z"),
            ("--load-versions pod_basis:2001-01-01T00.00.00.000Z: no such version in", "versions on disk: 20")),
]

CONF_CASES = [
    # ---- edited YAML
    CliCase("experiment outside the data root", ("--pipelines=simulation",), ("experiment = '../../../somewhere' (globals.yml): must be a simple folder name",),
            conf={"globals.yml": _test_globals(experiment="../../../somewhere")}),
    CliCase("empty experiment", ("--pipelines=simulation",), ("experiment = '' (globals.yml): must be a simple folder name",),
            conf={"globals.yml": _test_globals(experiment="")}),
    CliCase("experiment with a slash", ("--pipelines=simulation",), ("experiment = 'a/b' (globals.yml)",),
            conf={"globals.yml": _test_globals(experiment="a/b")}),
    CliCase("inf in parameters.yml", ("--pipelines=simulation",), ("sim.T = inf: must be a finite number",),
            conf={"parameters.yml": _test_parameters(**{"sim.T": float("inf")})}),
    CliCase("newline in a SLURM option", ("--pipelines=simulation",), ("execution.slurm.queue = 'short\\n#SBATCH --uid=0': holds a newline", "write the option on one line"),
            conf={"parameters.yml": _test_parameters(**{"execution.slurm": {"queue": "short\n#SBATCH --uid=0"}})}),
    CliCase("shell characters in a SLURM option", ("--pipelines=simulation",), ("execution.slurm.account = '$(whoami)'", "are not allowed in a SLURM option"),
            conf={"parameters.yml": _test_parameters(**{"execution.slurm": {"account": "$(whoami)"}})}),
    CliCase("catalog entry outside the data root", ("--pipelines=pod",), ("datasets outside the data root", "pod_summary -> /tmp/rom_elsewhere/pod_summary.json", "fix the catalog entry"),
            conf={"catalog.yml": {"pod_summary": {"type": "json.JSONDataset", "filepath": "/tmp/rom_elsewhere/pod_summary.json"}}}),
    CliCase("boolean IC position in YAML", ("--pipelines=simulation",), ("train_ic.gaussian.positions_x = [True, 8.0]: a boolean",),
            conf={"parameters.yml": _test_parameters(**{"train_ic.gaussian.positions_x": [True, 8.0]})}),
]

ALL_CLI_CASES = PARAM_CASES + FILE_CASES + CONF_CASES


def test_at_least_60_distinct_cli_cases():
    names = [c.name for c in ALL_CLI_CASES]
    assert len(set(names)) == len(names) >= 60
    assert len({(c.args, str(c.conf)) for c in ALL_CLI_CASES if c.setup is None}) == len(
        [c for c in ALL_CLI_CASES if c.setup is None])


def _check_refused(case: CliCase, root: Path, code: int, text: str) -> None:
    assert code == 1, f"{case.name}: exit code {code}: {text[-2000:]}"
    for fragment in case.expected:
        assert fragment in text, f"{case.name}: {fragment!r} not in {text[-3000:]!r}"
    assert "Traceback" not in text and "╭" not in text, f"{case.name}: a traceback was printed"
    assert "Error:" in text


@pytest.mark.parametrize("case", PARAM_CASES, ids=[c.name for c in PARAM_CASES])
def test_bad_parameter_through_the_cli_is_refused_with_the_data_unchanged(case, finished):
    before = _hash_tree(finished)
    code, text = _cli(finished, *case.args)
    _check_refused(case, finished, code, text)
    assert _hash_tree(finished) == before, f"{case.name}: the data folder changed"


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.name for c in FILE_CASES])
def test_bad_file_through_the_cli_is_refused_with_the_data_unchanged(case, data_copy):
    if case.setup is not None:
        case.setup(data_copy)
    before = _hash_tree(data_copy)
    code, text = _cli(data_copy, *case.args)
    _check_refused(case, data_copy, code, text)
    assert _hash_tree(data_copy) == before, f"{case.name}: the data folder changed"


@pytest.mark.parametrize("case", CONF_CASES, ids=[c.name for c in CONF_CASES])
def test_bad_yaml_through_the_cli_is_refused_with_the_data_unchanged(case, finished, tmp_path):
    conf = _conf(tmp_path, case.conf)
    before, outside = _hash_tree(finished), _hash_tree(finished.parent)
    code, text = _cli(finished, *case.args, conf=conf)
    _check_refused(case, finished, code, text)
    assert _hash_tree(finished) == before and _hash_tree(finished.parent) == outside


def test_verbose_restores_the_traceback(finished):
    from kedro.framework.cli.cli import KedroCLI

    with _environ(ROM_DATA_ROOT=str(finished), COLUMNS="400"):
        result = CliRunner().invoke(KedroCLI(project_path=PROJECT),
                                    ["run", "--env", "test", "--pipelines=simulation", "--params=sim.T=inf", "--verbose"])
    assert result.exit_code != 0
    assert type(result.exception).__name__ == "ConfigError"  # raised, not shortened
    assert "sim.T = 'inf'" in str(result.exception)


# --------------------------------------------------------------------------- one writer per experiment
def test_a_second_run_of_a_held_experiment_is_refused_at_once_naming_the_running_one(data_copy):
    from rom_pipeline.execution.lock import ExperimentLock

    before = _hash_tree(data_copy)
    with ExperimentLock(data_copy / "test", "test"):  # as a running `kedro run` holds it
        held = _hash_tree(data_copy)
        start = time.perf_counter()
        code, text = _cli(data_copy, "--pipelines=mvar")
        seconds = time.perf_counter() - start
        assert _hash_tree(data_copy) == held
    assert code == 1
    assert f"Experiment 'test' ({data_copy / 'test'}) is being written by another run (pid {os.getpid()}" in text
    assert "started 20" in text and "Wait for it to finish" in text
    assert seconds < 30  # refused at once, it does not wait for the lock
    assert _hash_tree(data_copy) == before  # the owner record is removed with the lock
    # reading stays possible while a run writes: the catalog loads without the lock
    from rom_pipeline.datasets.runs import SimulationRunsDataset as Runs
    with ExperimentLock(data_copy / "test", "test"):
        assert len(Runs(path=str(data_copy / "test" / "train")).load()) == 8


@pytest.mark.slow
def test_a_pod_started_during_a_simulation_is_refused(data_copy):
    """A real simulation (another process, more runs so that it lasts) holds the experiment; a POD
    started meanwhile stops at once naming it, and the simulation then finishes normally."""
    env = {**os.environ, "ROM_DATA_ROOT": str(data_copy), "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg",
           "COLUMNS": "400"}
    owner = data_copy / "test" / ".rom_pipeline.lock.json"
    # The paused simulation may be stopped inside an MLflow write; its own tracking store keeps
    # that SQLite lock (an artefact of SIGSTOP) away from the POD, which must meet the experiment lock.
    sim_env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{data_copy.parent / 'simulation_mlflow.db'}"}
    sim = subprocess.Popen([KEDRO, "run", "--env", "test", "--pipelines=simulation", "--params=train_ic.uniform.n_runs=40"],
                           cwd=PROJECT, env=sim_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not owner.exists() and sim.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert owner.exists(), "the simulation never took the lock"
        # Pause the simulation while it holds the lock (it is fast enough to finish before a POD
        # session starts); it resumes below and must still finish normally.
        sim.send_signal(signal.SIGSTOP)
        train_before = _hash_tree(data_copy / "test" / "rom_common")
        try:
            code, text = _cli(data_copy, "--pipelines=pod", "--params=train_ic.uniform.n_runs=40")
        finally:
            sim.send_signal(signal.SIGCONT)
        assert code == 1
        assert f"is being written by another run (pid {sim.pid}" in text
        assert "--pipelines=simulation" in text  # the command of the running one
        assert _hash_tree(data_copy / "test" / "rom_common") == train_before
    finally:
        _, err = sim.communicate(timeout=300)
    assert sim.returncode == 0, err[-3000:]
    assert len(SimulationRunsDataset(path=str(data_copy / "test" / "train")).load()) == 2 + 40 + 2 + 2


# --------------------------------------------------------------------------- legacy YAML limits
LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(7)
)


@pytest.mark.parametrize("name,text,expected", [
    ("alias bomb", LAUGHS, "expands to more than 100000 values through YAML aliases"),
    ("too many aliases", "a: &a 1\nb: [" + ", ".join(["*a"] * 150) + "]\n", "more than 100 YAML aliases"),
    ("oversized file", "sim:\n  N: 10\n" + "# padding\n" * 120_000, "over the 1000000-byte limit"),
])
def test_legacy_yaml_limits_refuse_before_writing(tmp_path, name, text, expected):
    from rom_pipeline.cli.legacy import cli as legacy_cli

    old = tmp_path / "old.yaml"
    old.write_text(text)
    project = tmp_path / "project"
    (project / "conf").mkdir(parents=True)
    assert len(LAUGHS) < 500  # 0.4 KB that would expand to 9**8 values
    result = CliRunner().invoke(legacy_cli, ["convert", str(old), "--env", "x", "--project-dir", str(project)])
    assert result.exit_code == 1
    assert expected in result.output and str(old) in result.output
    assert "Traceback" not in result.output
    assert list((project / "conf").iterdir()) == []
