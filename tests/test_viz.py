"""Kedro-Viz sees the project's structure: modular pipelines, namespaces, key datasets and layers.

``kedro viz build --include-previews`` writes the same JSON the Kedro-Viz REST API serves
(``build/api/main`` is ``GET /api/main``, ``build/api/pipelines/<id>`` is
``GET /api/pipelines/<id>``, ``build/api/nodes/<id>`` is ``GET /api/nodes/<id>`` with the
dataset's preview and its type) into ``build/`` of the working directory. To leave the checkout
untouched the build runs in a temporary shell of the project: links to ``pyproject.toml`` and
``conf/`` and a real ``src/`` folder holding a link to the package (Kedro requires the source
folder to lie inside the project root). Its data root (``ROM_DATA_ROOT``) is a temporary folder
where every custom dataset is first saved through the project's own catalog, so the previews
read real files.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("kedro_viz")

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
MODULAR_PIPELINES = {"simulation", "pod", "latent_dataset", "mvar", "lstm", "opinf", "evaluation"}
NAMESPACES = {"train", "test", "pod", "latent_dataset", "mvar", "lstm", "opinf", "evaluation"}
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


class _TinyRun:
    """A simulation-plan task producing a 3-frame run (what ``RunFolder.simulate`` carries out)."""

    def __init__(self, run_id: str, family: str):
        self.run_id, self.family, self.fingerprint = run_id, family, f"fp-{run_id}"

    def __call__(self) -> dict:
        times = np.arange(3) * 0.1
        return {
            "particles": {"times": times, "positions": np.zeros((3, 4, 2)), "velocities": np.ones((3, 4, 2))},
            "density": {"density": np.ones((3, 5, 6)), "times": times, "x": np.arange(6.0), "y": np.arange(5.0)},
            "meta": {"run_id": self.run_id, "family": self.family, "seed": 7, "T": 0.3, "N": 4,
                     "fingerprint": self.fingerprint, "ic": {"center": [1.0, 2.0]}},
        }


COMPARISON_MARKDOWN = "# Model comparison\n\n| model | r2_pooled |\n| --- | ---: |\n| MVAR | 0.842 |\n"


def _save_custom_datasets(data_root: Path) -> None:
    """Save one small instance of every custom dataset through the project's catalog."""
    import torch
    from kedro.io import DataCatalog

    from rom_pipeline.datasets import RunCollection
    from rom_pipeline.evaluation.plots import comparison_animation_gif
    from rom_pipeline.execution.run_folder import SimulationPlan
    from rom_pipeline.settings import CONFIG_LOADER_ARGS, ExperimentConfigLoader

    previous = os.environ.get("ROM_DATA_ROOT")
    os.environ["ROM_DATA_ROOT"] = str(data_root)
    try:
        loader = ExperimentConfigLoader(conf_source=str(PROJECT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": "base"})
        catalog = DataCatalog.from_config(loader["catalog"])
        folder = catalog.load("train.run_folder")  # as the simulation node does it
        run_ids = folder.simulate(SimulationPlan({"train_000": _TinyRun("train_000", "gaussian"),
                                                  "train_001": _TinyRun("train_001", "ring")}))
        catalog.save("train.runs", RunCollection(folder.path, run_ids))
        catalog.save("mvar.model", {"coefficients": np.arange(12.0).reshape(3, 4), "lag": np.array(2)})
        catalog.save("lstm.model", {"format": "tiny/1", "state_dict": {"w": torch.zeros(2, 3)}, "lag": 3})
        truth = np.random.default_rng(0).random((4, 6, 6))
        catalog.save("comparison_animations", {"test_000_gaussian": comparison_animation_gif(
            truth, {"MVAR": truth * 0.9}, np.arange(4.0), title="t")})
        catalog.save("comparison_markdown", COMPARISON_MARKDOWN)
    finally:
        if previous is None:
            os.environ.pop("ROM_DATA_ROOT", None)
        else:
            os.environ["ROM_DATA_ROOT"] = previous


@pytest.fixture(scope="module")
def viz_api(tmp_path_factory) -> Path:
    shell = tmp_path_factory.mktemp("viz_project")
    (shell / "pyproject.toml").symlink_to(PROJECT / "pyproject.toml")
    (shell / "conf").symlink_to(PROJECT / "conf")
    (shell / "src").mkdir()
    (shell / "src" / "rom_pipeline").symlink_to(PROJECT / "src" / "rom_pipeline")
    data_root = tmp_path_factory.mktemp("viz_data")
    _save_custom_datasets(data_root)
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg", "ROM_DATA_ROOT": str(data_root)}
    kedro = Path(sys.executable).with_name("kedro")
    build = subprocess.run(
        [str(kedro), "viz", "build", "--include-previews"], cwd=shell, env=env, capture_output=True,
        text=True, timeout=600,
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


def _node_metadata(viz_api: Path, main: dict, name: str) -> dict:
    node = data_nodes(main)[name]
    return json.loads((viz_api / "nodes" / node["id"]).read_text())


def test_custom_datasets_have_typed_previews(viz_api, main):
    """Every custom dataset's preview reaches kedro-viz with the type its annotation declares."""
    import base64
    import io

    from PIL import Image

    runs = _node_metadata(viz_api, main, "train.runs")
    assert runs["preview_type"] == "TablePreview"
    assert runs["preview"]["index"] == ["train_000", "train_001"]
    columns = runs["preview"]["columns"]
    assert "fingerprint" not in columns
    first = dict(zip(columns, runs["preview"]["data"][0]))
    assert first["family"] == "gaussian" and first["N"] == 4 and json.loads(first["ic"]) == {"center": [1.0, 2.0]}

    mvar = _node_metadata(viz_api, main, "mvar.model")
    assert mvar["preview_type"] == "TablePreview"
    rows = {row[0]: dict(zip(mvar["preview"]["columns"], row)) for row in mvar["preview"]["data"]}
    assert rows["coefficients"]["shape"] == "3×4" and rows["coefficients"]["max"] == 11.0
    assert rows["coefficients"]["mean"] == 5.5 and rows["lag"]["value"] == 2

    lstm = _node_metadata(viz_api, main, "lstm.model")
    assert lstm["preview_type"] == "JSONPreview"
    assert json.loads(lstm["preview"]) == {
        "format": "tiny/1", "state_dict": {"w": {"shape": [2, 3], "dtype": "float32"}}, "lag": 3,
    }

    markdown = _node_metadata(viz_api, main, "comparison_markdown")
    assert markdown["preview_type"] == "HTMLPreview"
    assert "<td>MVAR</td>" in markdown["preview"] and "<h1>Model comparison</h1>" in markdown["preview"]

    animation = _node_metadata(viz_api, main, "comparison_animations")
    assert animation["preview_type"] == "ImagePreview"
    with Image.open(io.BytesIO(base64.b64decode(animation["preview"]))) as image:
        assert image.format == "PNG" and image.width > 100


def test_namespaced_dataset_names_stay_distinct(main):
    """kedro-viz labels a node by its full name unless "pretty names" is on (off by default):
    the namespace keeps the two models' datasets apart."""
    names = set(data_nodes(main))
    assert {"mvar.model", "lstm.model", "mvar.training_summary", "lstm.training_summary"} <= names
    for model in ("mvar", "lstm", "opinf"):
        inside = [n for n in main["nodes"] if n["type"] == "data" and n["name"].startswith(f"{model}.")]
        assert inside and all(model in (n.get("modular_pipelines") or []) for n in inside), [
            (n["name"], n.get("modular_pipelines")) for n in inside
            if model not in (n.get("modular_pipelines") or [])]


def test_each_node_shows_its_own_parameter_blocks(main):
    """No node is wired to the whole parameter tree: kedro-viz shows one parameters node per block
    (``params:mvar``, ...), linked only to the nodes that read that block."""
    params = {n["id"]: n["name"] for n in main["nodes"] if n["type"] == "parameters"}
    assert "parameters" not in params.values()
    assert {"params:mvar", "params:lstm", "params:rom", "params:eval"} <= set(params.values())
    tasks = {n["id"]: n["name"] for n in main["nodes"] if n["type"] == "task"}
    readers: dict[str, set[str]] = {}
    for edge in main["edges"]:
        if edge["source"] in params and edge["target"] in tasks:
            readers.setdefault(params[edge["source"]], set()).add(tasks[edge["target"]])
    # a model's block goes to its training node, the shared lag's node and the searches/records
    for model in ("mvar", "lstm", "opinf"):
        assert any(name.endswith("train_forecaster") for name in readers[f"params:{model}"]), readers
        assert not any("evaluate_on_test_runs" in name for name in readers[f"params:{model}"])
