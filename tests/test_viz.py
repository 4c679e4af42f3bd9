"""Kedro-Viz sees the project's structure: modular pipelines, namespaces, key datasets and layers.

``kedro viz build`` writes the same JSON the Kedro-Viz REST API serves (``build/api/main`` is
``GET /api/main``, ``build/api/pipelines/<id>`` is ``GET /api/pipelines/<id>``) into ``build/``
of the working directory. To leave the checkout untouched the build runs in a temporary shell
of the project: links to ``pyproject.toml`` and ``conf/`` and a real ``src/`` folder holding a link
to the package (Kedro requires the source folder to lie inside the project root).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("kedro_viz")

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
MODULAR_PIPELINES = {"simulation", "pod", "latent_dataset", "mvar", "lstm", "evaluation"}
NAMESPACES = {"train", "test", "pod", "latent_dataset", "mvar", "lstm", "evaluation"}
# dataset -> layer (catalog metadata kedro-viz.layer)
KEY_DATASETS = {
    "train.runs": "primary",
    "test.runs": "primary",
    "pod_basis": "feature",
    "train_latent": "feature",
    "latent_dataset": "model_input",
    "mvar.model": "models",
    "lstm.model": "models",
    "mvar.test_results": "model_output",
    "lstm.predictions": "model_output",
    "all_test_results": "reporting",
    "comparison_table": "reporting",
}
LAYER_ORDER = ["primary", "feature", "model_input", "models", "model_output", "reporting"]


@pytest.fixture(scope="module")
def viz_api(tmp_path_factory) -> Path:
    shell = tmp_path_factory.mktemp("viz_project")
    (shell / "pyproject.toml").symlink_to(PROJECT / "pyproject.toml")
    (shell / "conf").symlink_to(PROJECT / "conf")
    (shell / "src").mkdir()
    (shell / "src" / "rom_pipeline").symlink_to(PROJECT / "src" / "rom_pipeline")
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg"}
    kedro = Path(sys.executable).with_name("kedro")
    build = subprocess.run(
        [str(kedro), "viz", "build"], cwd=shell, env=env, capture_output=True, text=True, timeout=600
    )
    api = shell / "build" / "api"
    assert build.returncode == 0 and (api / "main").is_file(), (
        f"kedro viz build failed ({build.returncode}):\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}"
    )
    assert (shell / "build" / "index.html").is_file()  # the static viewer came with the data
    return api


@pytest.fixture(scope="module")
def main(viz_api) -> dict:
    return json.loads((viz_api / "main").read_text())


def data_nodes(response: dict) -> dict[str, dict]:
    return {n["name"]: n for n in response["nodes"] if n["type"] == "data"}


def test_registered_pipelines(main, viz_api):
    ids = {p["id"] for p in main["pipelines"]}
    assert MODULAR_PIPELINES | {"__default__"} <= ids
    assert main["selected_pipeline"] == "__default__"
    for pipeline_id in MODULAR_PIPELINES:
        response = json.loads((viz_api / "pipelines" / pipeline_id).read_text())
        assert response["selected_pipeline"] == pipeline_id
        assert any(n["type"] == "task" for n in response["nodes"]), pipeline_id


def test_namespaces_are_modular_pipelines(main):
    tree = main["modular_pipelines"]
    assert NAMESPACES <= set(tree)
    root_children = {c["id"] for c in tree["__root__"]["children"] if c["type"] == "modularPipeline"}
    assert NAMESPACES <= root_children
    tasks = [n for n in main["nodes"] if n["type"] == "task"]
    for namespace in NAMESPACES:
        inside = [t for t in tasks if namespace in (t.get("modular_pipelines") or [])]
        assert inside, f"no task node inside namespace {namespace!r}"
    # The simulation template is instantiated twice, once per split.
    simulate = {t["full_name"] for t in tasks if t["name"] == "simulate_runs"}
    assert simulate == {"train.simulate_runs", "test.simulate_runs"}


def test_key_datasets_and_layers(main):
    # Layers in data-flow order (other pipelines may add layers of their own).
    assert [layer for layer in main["layers"] if layer in LAYER_ORDER] == LAYER_ORDER
    datasets = data_nodes(main)
    for name, layer in KEY_DATASETS.items():
        assert name in datasets, f"{name} missing from the viz graph"
        assert datasets[name]["layer"] == layer, (name, datasets[name]["layer"])
    assert datasets["mvar.model"]["dataset_type"].endswith("NpzDataset")
    assert datasets["lstm.model"]["dataset_type"].endswith("TorchPayloadDataset")
    assert "mvar" in datasets["mvar.model"]["modular_pipelines"]
    assert "lstm" in datasets["lstm.model"]["modular_pipelines"]


def test_graph_wiring(main):
    """The shared artifacts feed both model namespaces, and both models feed the evaluation."""
    by_id = {n["id"]: n for n in main["nodes"]}
    edges = [(by_id[e["source"]]["name"], by_id[e["target"]]) for e in main["edges"]]

    def consumers(dataset: str) -> set[str]:
        return {
            ns for name, target in edges if name == dataset and target["type"] == "task"
            for ns in (target.get("modular_pipelines") or [])
        }

    assert {"mvar", "lstm"} <= consumers("latent_dataset")
    assert {"mvar", "lstm"} <= consumers("pod_basis")
    assert {"mvar", "lstm"} <= consumers("test.runs")
    assert "evaluation" in consumers("mvar.test_results")
    assert "evaluation" in consumers("lstm.test_results")
    produced = {by_id[e["target"]]["name"] for e in main["edges"] if by_id[e["source"]]["type"] == "task"}
    assert {"pod_basis", "latent_dataset", "mvar.model", "lstm.model", "comparison_table"} <= produced
