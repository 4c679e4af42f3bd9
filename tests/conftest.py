import contextlib
import copy
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

# Numba's on-disk cache is not safe for two processes that compile the same function at once, which
# the pytest-xdist workers do (scoringrules' gufuncs, the simulation kernels): a torn cache file
# then segfaults the next process that loads it (numba#10128; seen in CI: bench_scores.py --quick).
# One cache directory per worker (kept between runs, under .pytest_cache), inherited by the
# `kedro run` and benchmark subprocesses a worker starts. A directory the user set is kept.
os.environ.setdefault("NUMBA_CACHE_DIR", str(
    Path(__file__).resolve().parents[1] / ".pytest_cache" / "numba"
    / os.environ.get("PYTEST_XDIST_WORKER", "controller")))
os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# One MLflow store per test process (when the optional extra is installed), so every tiny
# `kedro run` does not pay for creating a fresh SQLite store. Each pytest-xdist worker gets its own:
# the workers inherit the controller's environment, and two processes writing one SQLite store
# at once can fail with "database is locked". A URI the user set is kept.
if os.environ.get("MLFLOW_TRACKING_URI", "") == os.environ.get("ROM_TESTS_MLFLOW_URI", ""):
    os.environ["MLFLOW_TRACKING_URI"] = os.environ["ROM_TESTS_MLFLOW_URI"] = "sqlite:///" + str(
        Path(tempfile.gettempdir()) / f"rom_pipeline_tests_{os.getpid()}_mlflow.db")

PROJECT = Path(__file__).resolve().parents[1]
ONE_BLAS_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def _load_env(env: str) -> dict:
    """Parameters of an environment, merged softly over base (as the project's settings do)."""
    from kedro.config import OmegaConfigLoader

    from rom_pipeline.settings import CONFIG_LOADER_ARGS

    args = {**CONFIG_LOADER_ARGS, "default_run_env": env}
    loader = OmegaConfigLoader(conf_source=str(PROJECT / "conf"), **args)
    return yaml.safe_load(yaml.safe_dump(dict(loader["parameters"])))


@pytest.fixture
def base_params() -> dict:
    return _load_env("base")


@pytest.fixture
def test_params() -> dict:
    return _load_env("test")


def with_overrides(params: dict, **dotted: object) -> dict:
    """A deep copy of ``params`` with ``{"a.b.c": value}`` overrides (``__`` not needed: pass a dict
    via ``**{"sim.N": 0}``)."""
    out = copy.deepcopy(params)
    for key, value in dotted.items():
        node = out
        *path, last = key.split(".")
        for k in path:
            node = node.setdefault(k, {})
        node[last] = value
    return out


def _kedro_run_test_env(root: Path) -> None:
    """One ``kedro run --env test`` with ``ROM_DATA_ROOT=root`` (an assertion error with the run's
    output tails when it fails).

    BLAS runs single-threaded, as on the workers of a Dask cluster: the session's run is then also
    the sequential reference that tests/test_parallel.py compares a Dask run with bit for bit (and
    the two pytest-xdist workers do not oversubscribe the cores)."""
    env = {**os.environ, "ROM_DATA_ROOT": str(root), "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg",
           **ONE_BLAS_THREAD}
    kedro = Path(sys.executable).with_name("kedro")
    proc = subprocess.run([str(kedro), "run", "--env", "test"], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"kedro run --env test failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"


@pytest.fixture(scope="session")
def tiny_default_run(tmp_path_factory) -> Path:
    """``ROM_DATA_ROOT`` of one ``kedro run --env test``: the whole default pipeline on the tiny
    test experiment (outputs under ``<root>/test``), run once per session and shared by the tests
    that read its outputs. A test that changes files there must work on a copy.

    Under pytest-xdist (``make test`` runs ``-n auto``) the run is made once for all workers (the
    file-lock pattern of the xdist docs): the first worker that needs it runs it into the session's
    shared temporary folder while a worker that needs it meanwhile waits, and a failure is recorded
    there so that the other workers report it instead of running it again."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        root = tmp_path_factory.mktemp("tiny_default_run")
        _kedro_run_test_env(root)
        return root
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent  # the same folder for every worker of the session
    root, done, failed = (shared / f"tiny_default_run.{s}" for s in ("data", "done", "failed"))
    with FileLock(str(shared / "tiny_default_run.lock")):
        if not done.is_file() and not failed.is_file():
            root.mkdir()
            try:
                _kedro_run_test_env(root)
            except BaseException as error:  # a failure or a timeout: the other workers report it
                failed.write_text(f"{type(error).__name__}: {error}")
                raise
            done.touch()
    if failed.is_file():
        raise AssertionError(failed.read_text())
    return root


@pytest.fixture(autouse=True)
def _end_leaked_mlflow_runs():
    """End an MLflow run a test left active in this process (an in-process ``kedro run`` that
    failed, or a session of a test that never closed it): a CLI process would have exited, and the
    next in-process run of this worker would otherwise log into it ("Changing param values is not
    allowed"), so that the outcome of a test depended on which tests ran before it."""
    yield
    mlflow = sys.modules.get("mlflow")  # never imported here: nothing can be active
    if mlflow is not None:
        while mlflow.active_run() is not None:
            # end_run pops the run first: a run of a store the test has since left (its
            # termination then fails) is dropped all the same
            with contextlib.suppress(mlflow.exceptions.MlflowException):
                mlflow.end_run()


def _uses_wider_fixture(item: pytest.Item) -> bool:
    """Whether ``item`` requests a module-, class- or package-scoped fixture (moving it away from
    its neighbours would make pytest build that fixture a second time)."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.values() if info is not None else ()
    return any(d[-1].scope in ("module", "class", "package") for d in defs if d)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Run the ``slow`` tests (subprocess ``kedro run``s, benchmarks: up to minutes each) first.

    With the suite on two pytest-xdist workers (``--dist worksteal`` in pyproject.toml), a long
    test that starts last keeps one worker busy while the other has nothing left to do; started
    first, the short tests fill the other worker meanwhile and are stolen back and forth at the
    end. The order is otherwise the collection order (a stable sort), and a slow test that shares a
    module-scoped fixture with its neighbours stays among them, so that no fixture is built twice.
    The tests do not depend on their order (each makes or copies its own data)."""
    items[:] = sorted(items, key=lambda item: not (item.get_closest_marker("slow") is not None
                                                   and not _uses_wider_fixture(item)))
