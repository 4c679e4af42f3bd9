import copy
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# One MLflow store for the whole test session (when the optional extra is installed), so every
# tiny `kedro run` does not pay for creating a fresh SQLite store.
os.environ.setdefault(
    "MLFLOW_TRACKING_URI",
    "sqlite:///" + str(Path(tempfile.gettempdir()) / f"rom_pipeline_tests_{os.getpid()}_mlflow.db"),
)

PROJECT = Path(__file__).resolve().parents[1]


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


@pytest.fixture(scope="session")
def tiny_default_run(tmp_path_factory) -> Path:
    """``ROM_DATA_ROOT`` of one ``kedro run --env test``: the whole default pipeline on the tiny
    test experiment (outputs under ``<root>/test``), run once per session and shared by the tests
    that read its outputs. A test that changes files there must work on a copy."""
    root = tmp_path_factory.mktemp("tiny_default_run")
    env = {**os.environ, "ROM_DATA_ROOT": str(root), "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg"}
    kedro = Path(sys.executable).with_name("kedro")
    proc = subprocess.run([str(kedro), "run", "--env", "test"], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"kedro run --env test failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
    return root
