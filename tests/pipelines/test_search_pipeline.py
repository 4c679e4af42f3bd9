"""The hyperparameter_search pipeline on the tiny ``test`` environment (a real `kedro run`): it
reuses the shared artifacts, writes the table, the best configurations and the figure, and its
numbers equal an independent recomputation from the stored artifacts."""
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


def _npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


def _versioned(folder: Path) -> Path:
    (version,) = list(folder.iterdir())
    return version / folder.name


@pytest.fixture(scope="module")
def searched(tiny_default_run: Path, tmp_path_factory) -> Path:
    """The search pipeline run on a copy of the session's default tiny run (its simulations and
    shared POD artifacts, which the search reuses)."""
    root = tmp_path_factory.mktemp("search") / "data"
    shutil.copytree(tiny_default_run, root)
    env = {**os.environ, "ROM_DATA_ROOT": str(root), "KEDRO_DISABLE_TELEMETRY": "1",
           "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [KEDRO, "run", "--env", "test", "--pipelines=hyperparameter_search"],
        cwd=PROJECT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return root / "test"


def test_search_writes_table_best_configurations_and_figure(searched: Path):
    table = pd.read_csv(searched / "search" / "search_results.csv")
    # conf/test: MVAR lag {1, 3} x alpha {1e-4, 10} x r' {3, 6}; one LSTM at r' = 6; the two
    # baselines at each r' searched (3, 6)
    assert sorted(table["model"].value_counts().items()) == [
        ("climatology", 2), ("lstm", 1), ("mvar", 8), ("persistence", 2)]
    assert (table["n_fits"] == 2).all() and (table["wall_seconds"] > 0).all()
    assert set(table.loc[table["model"] == "mvar", "n_modes"]) == {3, 6}
    assert (table["n_runs"] == 8).all()  # 2 folds: every training run held out once
    assert table["score_mean"].between(-10, 1).all() and (table["fit_seconds_total"] > 0).all()
    best = json.loads((searched / "search" / "best_configurations.json").read_text())
    mvar = table[table["model"] == "mvar"]
    top = mvar.loc[mvar["score_mean"].idxmax()]
    assert best["mvar"]["config_id"] == top["config_id"]
    assert best["mvar"]["score_mean"] == pytest.approx(top["score_mean"])
    assert best["lstm"]["hyperparameters"]["hidden_units"] == 8
    assert set(best) == {"scored_on", "mvar", "lstm"}
    assert best["scored_on"]["budget"]["n_fits"] == 2 * len(table)
    base = table[(table["model"] == "persistence") & (table["n_modes"] == best["mvar"]["n_modes"])]
    assert best["mvar"]["baselines"]["persistence"]["score_mean"] == pytest.approx(
        base["score_mean"].iloc[0])
    folds = best["scored_on"]["folds"]
    assert sorted(r for f in folds for r in f) == sorted(f"train_{i:03d}" for i in range(8))
    png = (searched / "search" / "search_scores.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_scores_equal_an_independent_recomputation(searched: Path):
    """Refit one MVAR candidate per fold and score it with NumPy alone: lift with the first r'
    stored modes, undo sqrt and the stored shifts, rescale to the last seed frame's mass."""
    from rom_pipeline.rom.mvar import MVARForecaster
    from rom_pipeline.rom.shifts import fourier_shift

    best = json.loads((searched / "search" / "best_configurations.json").read_text())
    table = pd.read_csv(searched / "search" / "search_results.csv")
    runs = pd.read_csv(searched / "search" / "run_scores.csv")
    row = table[(table["model"] == "mvar") & (table["n_modes"] == 3) & (table["lag"] == 3)
                & (table["ridge_alpha"] == 1e-4)].iloc[0]
    pod = _npz(_versioned(searched / "rom_common" / "pod_basis.npz"))
    latent = _npz(_versioned(searched / "rom_common" / "latent_trajectories.npz"))
    bounds = np.concatenate([[0], np.cumsum(latent["lengths"])])
    traj = {str(r): latent["trajectories"][a:b] for r, a, b in zip(latent["run_ids"], bounds, bounds[1:])}
    shifts = {str(r): latent["shifts"][a:b] for r, a, b in zip(latent["run_ids"], bounds, bounds[1:])}
    assert str(pod["transform"]) == "sqrt" and bool(pod["shift_align"])
    r, lag, eps = 3, 3, float(pod["transform_eps"])
    k0 = int(round(best["scored_on"]["forecast_start"] / float(latent["dt_rom"])))
    ny, nx = (int(v) for v in pod["grid_shape"])
    expected = {}
    for held in best["scored_on"]["folds"]:
        train = [k for k in traj if k not in held]
        model = MVARForecaster(lag=lag, ridge_alpha=1e-4).fit([traj[k][:, :r] for k in train])
        for run_id in held:
            y = traj[run_id][:, :r]
            y_hat = model.rollout(y[k0 - lag:k0], len(y) - k0)
            x = y_hat @ pod["modes"][:, :r].T + pod["mean"]
            aligned = (x * x - eps).reshape(-1, ny, nx)
            track = shifts[run_id][k0:]
            if np.issubdtype(track.dtype, np.integer):
                rho_hat = np.stack([np.roll(f, tuple(-s), axis=(0, 1)) for f, s in zip(aligned, track)])
            else:  # sub-pixel tracks (rom.shift_method): the Fourier translation tested in tests/rom
                rho_hat = fourier_shift(aligned, -track)
            rho = _npz(searched / "train" / run_id / "density.npz")["density"][::2].astype(float)
            rho_hat *= rho[k0 - 1].sum() / rho_hat.sum(axis=(1, 2))[:, None, None]
            truth = rho[k0:]
            expected[run_id] = 1 - np.sum((truth - rho_hat) ** 2) / np.sum((truth - truth.mean()) ** 2)
    mine = runs[runs["config_id"] == row["config_id"]]
    assert dict(zip(mine["run_id"], mine["r2_pooled"])) == pytest.approx(expected, rel=1e-8)
    assert row["score_mean"] == pytest.approx(np.mean(list(expected.values())), rel=1e-8)
    assert row["score_std"] == pytest.approx(np.std(list(expected.values())), rel=1e-6)
