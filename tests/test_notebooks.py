"""The example notebooks run end to end on the tiny `test` experiment and show its real numbers.

The session's one `kedro run --env test` (``tiny_default_run`` in conftest) writes every output
into a temporary ROM_DATA_ROOT; both notebooks are then executed with nbclient in a kernel of
this very interpreter, with KEDRO_ENV=test and that ROM_DATA_ROOT, exactly as a user would run
them from ``notebooks/``. The numbers the notebooks print are checked against the files the pipeline wrote.
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

from jupyter_client.kernelspec import KernelSpecManager  # noqa: E402
from jupyter_client.manager import KernelManager  # noqa: E402

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).resolve().parents[1]
NOTEBOOKS = PROJECT / "notebooks"
KERNEL_NAME = "rom_pipeline_test"


@pytest.fixture(scope="module")
def data_root(tiny_default_run) -> Path:
    """Outputs of the whole default pipeline on the tiny test experiment (the session's run)."""
    return tiny_default_run


@pytest.fixture(scope="module")
def kernel_spec_manager(tmp_path_factory) -> KernelSpecManager:
    """A kernel spec launching *this* interpreter (the project's venv), independent of any
    kernels installed for the user."""
    from ipykernel.kernelspec import write_kernel_spec

    kernels = tmp_path_factory.mktemp("jupyter") / "kernels"
    write_kernel_spec(kernels / KERNEL_NAME, overrides={"display_name": "rom_pipeline (tests)"})
    return KernelSpecManager(kernel_dirs=[str(kernels)], ensure_native_kernel=False)


def execute(notebook: Path | nbformat.NotebookNode, ksm: KernelSpecManager, data_root: Path):
    nb = nbformat.read(notebook, as_version=4) if isinstance(notebook, Path) else notebook
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=ksm)
    client = nbclient.NotebookClient(
        nb, km=km, kernel_name=KERNEL_NAME, timeout=300,
        resources={"metadata": {"path": str(NOTEBOOKS)}},  # run from the notebook's folder
    )
    env = {
        **os.environ, "KEDRO_ENV": "test", "ROM_DATA_ROOT": str(data_root),
        "KEDRO_DISABLE_TELEMETRY": "1", "MPLBACKEND": "Agg",
    }
    client.execute(env=env)
    return nb


def outputs(nb, output_type: str | None = None) -> list:
    return [
        out for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", [])
        if output_type is None or out["output_type"] == output_type
    ]


def stdout(nb) -> str:
    return "".join(out["text"] for out in outputs(nb, "stream") if out["name"] == "stdout")


def rich_outputs(nb, mime: str) -> list[str]:
    found = []
    for out in outputs(nb):
        data = out.get("data", {})
        if mime in data:
            found.append(data[mime])
    return found


def assert_clean(nb) -> None:
    errors = outputs(nb, "error")
    assert not errors, f"cells raised: {[(e['ename'], e['evalue']) for e in errors]}"
    unexecuted = [c.source[:60] for c in nb.cells if c.cell_type == "code" and c.execution_count is None]
    assert not unexecuted, f"cells not executed: {unexecuted}"


def latest_version(path: Path) -> Path:
    """The newest version of a versioned Kedro dataset ``<path>/<version>/<name>``."""
    versions = sorted(p for p in path.iterdir() if p.is_dir())
    assert versions, f"no versions under {path}"
    return versions[-1] / path.name


def test_kernel_runs_this_interpreter(kernel_spec_manager, data_root):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import os, sys\nprint(sys.executable)\nprint(os.environ['KEDRO_ENV'], os.environ['ROM_DATA_ROOT'])"
    )])
    lines = stdout(execute(nb, kernel_spec_manager, data_root)).split()
    assert Path(lines[0]).resolve() == Path(sys.executable).resolve()
    assert lines[1:] == ["test", str(data_root)]


def test_notebooks_are_stored_without_outputs():
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        dirty = [c.source[:40] for c in nb.cells if c.cell_type == "code" and (c.outputs or c.execution_count)]
        assert not dirty, f"{path.name} has stored outputs in {dirty}; clear them before committing"
        source = "\n".join(c.source for c in nb.cells)
        assert "%load_ext kedro.ipython" in source and "catalog.load(" in source
        assert str(PROJECT) not in source and "/data/" not in source, f"{path.name} hard-codes a path"


def test_simulations_and_pod_notebook(kernel_spec_manager, data_root):
    nb = execute(NOTEBOOKS / "01_simulations_and_pod.ipynb", kernel_spec_manager, data_root)
    assert_clean(nb)
    text = stdout(nb)
    experiment = data_root / "test"

    assert "Kedro env: test" in text
    n_train = len(pd.read_csv(experiment / "train" / "metadata.csv"))
    n_test = len(pd.read_csv(experiment / "test" / "metadata.csv"))
    assert f"{n_train} training runs, {n_test} unseen test runs" in text

    with np.load(latest_version(experiment / "rom_common" / "pod_basis.npz")) as pod:
        r = int(pod["n_modes"])
        energy = float(pod["cumulative_energy"][r - 1])
        ny, nx = (int(v) for v in pod["grid_shape"])
    match = re.search(r"POD: r = (\d+) modes of a (\d+)x(\d+) grid, energy captured ([0-9.]+)", text)
    assert match, text
    assert (int(match[1]), int(match[2]), int(match[3])) == (r, ny, nx)
    assert float(match[4]) == pytest.approx(energy, abs=1e-6)

    match = re.search(r"mean relative L2 POD reconstruction error over (\d+) training runs: ([0-9.]+)", text)
    assert match, text
    assert int(match[1]) == n_train
    assert 0.0 < float(match[2]) < 1.0  # a rank-r reconstruction: imperfect, but far better than nothing

    # density grid per family, POD spectrum, POD modes, latent trajectories
    assert len(rich_outputs(nb, "image/png")) >= 4
    tables = "".join(rich_outputs(nb, "text/html"))
    families = set(pd.read_csv(experiment / "train" / "metadata.csv")["family"])
    assert all(family in tables for family in families)


def test_model_comparison_notebook(kernel_spec_manager, data_root):
    nb = execute(NOTEBOOKS / "02_model_comparison.ipynb", kernel_spec_manager, data_root)
    assert_clean(nb)
    text = stdout(nb)

    results = pd.read_csv(data_root / "test" / "report" / "all_test_results.csv")
    shift_mode = "oracle" if "oracle" in set(results["shift_mode"]) else results["shift_mode"].iloc[0]
    expected = results[results["shift_mode"] == shift_mode].groupby("model")["r2_pooled"].mean()
    printed = {
        model: float(value)
        for model, value in re.findall(rf"mean pooled R2 \[{shift_mode}\] (\S+): (-?[0-9.]+)", text)
    }
    assert set(printed) == set(expected.index) and len(printed) >= 1, text
    for model, value in printed.items():
        assert value == pytest.approx(expected[model], abs=1e-6), model

    # R²(t) curves, snapshot grid, metric bars
    assert len(rich_outputs(nb, "image/png")) >= 3
    assert any("# Model comparison" in md for md in rich_outputs(nb, "text/markdown"))
    tables = "".join(rich_outputs(nb, "text/html"))
    assert "r2_pooled_mean" in tables
    # skill against both baselines per shift mode, and R² by lead-time window
    assert "skill_vs_climatology" in tables and "skill_vs_persistence" in tables
    assert "co-moving shape (true track)" in tables and "0–2 s" in tables
    comparison = pd.read_csv(data_root / "test" / "report" / "comparison_table.csv")
    for family in set(comparison["family"]):
        assert family in tables
