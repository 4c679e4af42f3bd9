"""experiments/search_table.py: a regime's search as the table committed beside its selection."""
import importlib.util
import json
import sys

import numpy as np
import pandas as pd
import pytest

from tests.conftest import PROJECT


def _module():
    spec = importlib.util.spec_from_file_location("search_table", PROJECT / "experiments/search_table.py")
    module = importlib.util.module_from_spec(spec)
    dont_write = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = dont_write
    return module


PICK = "mvar[r=14,lag=4,coint_rank=None,ridge_alpha=0.0001]"
PROTO = "mvar[r=19,lag=5,coint_rank=None,ridge_alpha=0.0001]"
OTHER_ALPHA = "mvar[r=19,lag=5,coint_rank=None,ridge_alpha=0.1]"


def _run_scores(rng):
    runs = [f"train_{i:03d}" for i in range(12)]
    proto = rng.uniform(0.5, 0.9, len(runs))
    pick = proto + rng.normal(0.01, 0.02, len(runs))
    rows = [(cid, run, v) for cid, vals in ((PICK, pick), (PROTO, proto), (OTHER_ALPHA, proto - 0.1))
            for run, v in zip(runs, vals)]
    return pd.DataFrame(rows, columns=["config_id", "run_id", "r2_pooled"]), pick - proto


def test_paired_difference_is_the_mean_and_standard_error_of_per_run_differences():
    mod = _module()
    scores, diff = _run_scores(np.random.default_rng(0))
    mean, se, n, wins = mod.paired_difference(scores, PICK, PROTO)
    assert n == 12 and wins == int((diff > 0).sum())
    assert mean == pytest.approx(diff.mean(), abs=1e-12)
    assert se == pytest.approx(diff.std(ddof=1) / np.sqrt(12), abs=1e-12)


def test_render_names_the_protocol_row_and_the_pick_difference(tmp_path):
    mod = _module()
    scores, diff = _run_scores(np.random.default_rng(1))
    table = pd.DataFrame({
        "rank": [1, 2, 3, 1], "model": ["mvar", "mvar", "mvar", "climatology"],
        "config_id": [PICK, PROTO, OTHER_ALPHA, "climatology[r=14]"],
        "score_mean": [0.80, 0.79, 0.69, 0.6], "score_std": [0.1] * 4, "latent_r2_mean": [0.5] * 4,
        "n_diverged": [0] * 4, "wall_seconds": [1.0] * 4,
    })
    budget = {"n_candidates": 4, "n_fits": 4, "fit_seconds": 1.0, "score_seconds": 2.0, "wall_seconds": 3.5}
    best = {"scored_on": {"folds": [list(range(12))], "validation": "holdout", "seed": 0,
                          "forecast_start": 0.6, "forecast_start_rule": "eval.forecast_start",
                          "shift_mode": "oracle", "mass_postprocess": "scale", "score": "mean R2",
                          "stored_n_modes": 19, "budget": budget},
            "mvar": {"config_id": PICK, "score_mean": 0.8, "score_std": 0.1, "latent_r2_mean": 0.5,
                     "n_diverged": 0, "baselines": {"climatology": {"score_mean": 0.6},
                                                    "persistence": {"score_mean": 0.3}}}}
    text = mod.render("gas", table, scores, best, wall_seconds=120.0)
    assert f"The protocol's MVAR (`{PROTO}`) scores 0.7900 (rank 2)" in text  # not the α = 0.1 row
    assert f"{diff.mean():+.4f}" in text and "the whole `kedro run` 120 s" in text
    assert "| mvar | `" + PICK + "` | 0.8000 ± 0.1000 | 0.5000 | 0.6000 | 0.3000 | 0 |" in text


def test_missing_search_outputs_are_refused_with_the_command_to_run(tmp_path):
    mod = _module()
    with pytest.raises(SystemExit, match="kedro run --env gas --pipelines=hyperparameter_search"):
        mod.main(["gas", "--data-root", str(tmp_path), "--out", str(tmp_path)])
    assert list(tmp_path.iterdir()) == []
