"""End-to-end runs of the Kedro project on the tiny ``test`` environment (real `kedro run`s)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PROJECT

pytestmark = pytest.mark.slow
KEDRO = str(Path(sys.executable).with_name("kedro"))


def kedro_run(data_root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROM_DATA_ROOT": str(data_root), "KEDRO_DISABLE_TELEMETRY": "1",
           "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [KEDRO, "run", "--env", "test", *args], cwd=PROJECT, env=env,
        capture_output=True, text=True, timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"kedro run {' '.join(args)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc


@pytest.fixture(scope="module")
def full_run(tiny_default_run: Path) -> Path:
    """The default `kedro run --env test` of the session (shared with the notebook tests: read only)."""
    return tiny_default_run / "test"


def test_default_run_writes_every_artifact_for_both_models(full_run: Path):
    exp = full_run
    expected = [
        "config_used.yaml", "summary.json", "train/metadata.csv", "test/metadata.csv",
        "train/train_000/particles.npz", "train/train_000/density.npz", "train/train_000/meta.json",
        "MVAR/mvar_model.npz", "MVAR/test_results.csv", "MVAR/r2_vs_time.csv",
        "MVAR/predicted_density.npz", "MVAR/lag_scan.csv", "MVAR/eigenvalues.png",
        "LSTM/lstm_state_dict.pt", "LSTM/training_log.csv", "LSTM/test_results.csv",
        "LSTM/r2_vs_time.csv", "LSTM/predicted_density.npz",
        "report/comparison_table.csv", "report/comparison_table.md", "report/all_test_results.csv",
        "figures/pod_spectrum.png", "figures/pod_modes.png", "figures/r2_curves.png",
        "figures/snapshot_grid.png", "figures/latent_trajectories.png",
    ]
    missing = [p for p in expected if not (exp / p).exists()]
    assert not missing, missing
    # versioned shared artifacts: <name>/<version>/<name>
    for name in ("pod_basis.npz", "latent_dataset.npz", "latent_trajectories.npz"):
        versions = list((exp / "rom_common" / name).iterdir())
        assert len(versions) == 1 and (versions[0] / name).is_file()
    assert len(list((exp / "report" / "animations").glob("*.gif"))) == 2  # one per IC family


def test_summary_names_the_lineage_of_the_artifacts_it_summarises(full_run: Path):
    from rom_pipeline.datasets.files import NpzDataset
    from rom_pipeline.framework.lineage import fingerprint

    lineage = json.loads((full_run / "summary.json").read_text())["lineage"]
    stored = {"mvar.predictions": full_run / "MVAR" / "predicted_density.npz",
              "lstm.predictions": full_run / "LSTM" / "predicted_density.npz",
              "pod_basis": next((full_run / "rom_common" / "pod_basis.npz").glob("*/pod_basis.npz"))}
    for name, path in stored.items():
        assert lineage[name] == fingerprint(NpzDataset(filepath=str(path)).read_lineage()), name
    assert {"parameters", "latent_dataset", "mvar.model", "lstm.model"} <= set(lineage)


def test_animations_have_eval_animation_max_frames(full_run: Path):
    from PIL import Image

    from tests.conftest import _load_env

    max_frames = _load_env("test")["eval"]["animation_max_frames"]
    forecast_frames = len(np.load(full_run / "MVAR" / "predicted_density.npz")["test_000__times"])
    assert 2 <= max_frames < forecast_frames  # so the limit is what sets the count
    for gif in (full_run / "report" / "animations").glob("*.gif"):
        with Image.open(gif) as image:
            assert image.n_frames == max_frames, gif.name


def test_report_numbers_equal_test_results(full_run: Path):
    exp = full_run
    per_model = {m: pd.read_csv(exp / m / "test_results.csv") for m in ("MVAR", "LSTM")}
    table = pd.read_csv(exp / "report" / "comparison_table.csv")
    summary = json.loads((exp / "summary.json").read_text())
    for model, results in per_model.items():
        assert set(results["run_id"]) == {"test_000", "test_001"}
        oracle = results[results["shift_mode"] == "oracle"]
        row = table[(table["model"] == model) & (table["family"] == "all")
                    & (table["shift_mode"] == "oracle")].iloc[0]
        assert row["r2_pooled_mean"] == pytest.approx(oracle["r2_pooled"].mean(), abs=1e-12)
        assert summary["models"][model]["r2_pooled_mean"]["oracle"] == pytest.approx(
            oracle["r2_pooled"].mean(), abs=1e-12
        )
        assert (oracle["r2_pod_ceiling"] <= 1.0).all()
    # provenance: the versions of the shared artifacts this run used are the ones on disk
    for name, folder in (("pod_basis", "rom_common/pod_basis.npz"),
                         ("latent_dataset", "rom_common/latent_dataset.npz"),
                         ("mvar.model", "MVAR/mvar_model.npz")):
        assert summary["artifact_versions"][name] == sorted(p.name for p in (exp / folder).iterdir())[-1]
    md = (exp / "report" / "comparison_table.md").read_text()
    assert "oracle" in md and "hold" in md


def test_predictions_match_r2_in_results(full_run: Path):
    """Recompute the pooled R² of one stored prediction from the stored truth."""
    exp = full_run
    preds = np.load(exp / "MVAR" / "predicted_density.npz", allow_pickle=False)
    truth = np.load(exp / "test" / "test_000" / "density.npz", allow_pickle=False)["density"]
    pred = preds["test_000"].astype(np.float64)
    truth = truth[::2][-len(pred):].astype(np.float64)  # conf/test: rom.subsample = 2
    r2 = 1 - ((truth - pred) ** 2).sum() / ((truth - truth.mean()) ** 2).sum()
    results = pd.read_csv(exp / "MVAR" / "test_results.csv")
    stored = results[(results.run_id == "test_000") & (results.shift_mode == "oracle")]["r2_pooled"].item()
    assert r2 == pytest.approx(stored, abs=1e-5)  # predictions are stored as float32


def test_model_pipelines_run_alone_from_shared_artifacts(full_run: Path, tmp_path: Path):
    root = tmp_path / "data"
    shutil.copytree(full_run.parent, root)  # the session's run stays untouched (mtimes are kept)
    exp = root / full_run.name
    runs_before = {p: p.stat().st_mtime_ns for p in (exp / "train").rglob("*.npz")}
    pod_versions = sorted((exp / "rom_common" / "pod_basis.npz").iterdir())
    mvar_versions = sorted((exp / "MVAR" / "mvar_model.npz").iterdir())
    kedro_run(root, "--pipelines=mvar")
    assert sorted((exp / "rom_common" / "pod_basis.npz").iterdir()) == pod_versions
    assert len(list((exp / "MVAR" / "mvar_model.npz").iterdir())) == len(mvar_versions) + 1
    # the shared stages rerun without re-simulating: stored runs are reused untouched
    kedro_run(root, "--pipelines=simulation,pod,latent_dataset")
    assert {p: p.stat().st_mtime_ns for p in (exp / "train").rglob("*.npz")} == runs_before


BASELINES = {"climatology", "persistence"}

# The seed's three usage examples, as the README gives them: each a named run in its own folder.
USAGE_EXAMPLES = {
    "mvar_only": ("experiment=mvar_only,lstm.enabled=false,opinf.enabled=false", {"MVAR"}),
    "lstm_only": ("experiment=lstm_only,mvar.enabled=false,opinf.enabled=false", {"LSTM"}),
    "both": ("experiment=both,opinf.enabled=false", {"MVAR", "LSTM"}),
}


def test_usage_examples_leave_three_separate_complete_result_folders(tmp_path: Path):
    for name, (params, _) in USAGE_EXAMPLES.items():
        proc = kedro_run(tmp_path, "--params", params)
        assert proc.stdout == ""  # logs and bars go to stderr
        err = "".join(proc.stderr.split())  # rich wraps long lines, even inside a path
        assert f"Comparisonreport:{tmp_path / name / 'report' / 'comparison_table.md'}" in err
        # the closing lines give the baselines beside the models, scored alike
        for baseline in BASELINES:
            assert f"{baseline}:meanpooledR²truetrack" in err
    folders = {p.name for p in tmp_path.iterdir() if p.is_dir()} - {"mlartifacts"}  # MLflow's
    assert folders == set(USAGE_EXAMPLES)
    for name, (_, models) in USAGE_EXAMPLES.items():
        exp = tmp_path / name
        assert {p.name for p in exp.iterdir() if p.name in ("MVAR", "LSTM", "OPINF")} == models
        for model in models:
            assert (exp / model / "test_results.csv").is_file()
        assert (exp / "report" / "comparison_table.md").is_file()
        results = pd.read_csv(exp / "report" / "all_test_results.csv")
        assert set(results["model"]) == models | BASELINES  # baselines scored beside the models
        summary = json.loads((exp / "summary.json").read_text())
        assert set(summary["models"]) - BASELINES == models
        model_artifacts = {k.split(".")[0].upper() for k in summary["artifact_versions"] if k.endswith(".model")}
        assert model_artifacts == models
    # the MLflow runs carry the names, inside the environment's MLflow experiment
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=os.environ["MLFLOW_TRACKING_URI"])
    exp_id = client.get_experiment_by_name("test").experiment_id
    names = {r.info.run_name for r in client.search_runs([exp_id], max_results=1000)}
    assert set(USAGE_EXAMPLES) <= names

    # a disabled model's pipeline is skipped, with a message, and trains nothing
    proc = kedro_run(tmp_path, "--pipelines=lstm", "--params", USAGE_EXAMPLES["mvar_only"][0])
    err = "".join(proc.stderr.split())
    assert "Thelstmpipelineisskipped:lstm.enabledisfalse" in err
    assert not (tmp_path / "mvar_only" / "LSTM").exists()


def test_bad_run_name_stops_before_any_work(tmp_path: Path):
    proc = kedro_run(tmp_path, "--params", "experiment=../elsewhere", check=False)
    assert proc.returncode != 0
    assert "plainfoldername" in "".join(proc.stderr.split())
    assert not any(tmp_path.iterdir())


def test_invalid_parameters_stop_before_any_work(tmp_path: Path):
    proc = kedro_run(tmp_path, "--params", "sim.N=0", check=False)
    assert proc.returncode != 0
    out = " ".join((proc.stdout + proc.stderr).split())
    assert "sim.N" in out and "greater than 0" in out
    assert not (tmp_path / "test").exists()


def test_model_pipeline_without_shared_artifacts_says_how_to_build_them(tmp_path: Path):
    proc = kedro_run(tmp_path, "--pipelines=mvar", check=False)
    assert proc.returncode != 0
    out = " ".join((proc.stdout + proc.stderr).split())  # rich wraps long lines
    assert "Missing inputs latent_dataset, pod_basis, test.runs" in out
    assert "kedro run --pipelines=simulation,pod,latent_dataset --env test" in out


def test_report_page_links_existing_figures_and_animations(full_run: Path):
    import re

    report = full_run / "report"
    page = (report / "index.html").read_text()
    links = re.findall(r'(?:src|href)="([^"#][^"]*)"', page)
    images = re.findall(r'<img src="([^"]+)"', page)
    assert {"../figures/r2_curves.png", "../figures/snapshot_grid.png"} <= set(images)
    missing = [link for link in links if not (report / link).is_file()]
    assert not missing, missing
    gifs = sorted(p.name for p in (report / "animations").glob("*.gif"))
    assert [link.split("/")[-1] for link in links if link.endswith(".gif")] == gifs
    results = pd.read_csv(report / "all_test_results.csv")
    oracle = results[results["shift_mode"] == "oracle"]
    for model in ("MVAR", "LSTM"):  # the table's pooled R² of each model, as the page shows it
        mean = oracle[oracle["model"] == model]["r2_pooled"].mean()
        row = re.search(rf"<td>{model}</td>\s*<td>all</td>.*?</tr>", page, flags=re.DOTALL)
        assert row and f"{mean:.3f}" in row.group(0)
    umask = os.umask(0)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in (report / "animations").glob("*.gif")} == {0o666 & ~umask}
