"""Train one LSTM variant on a regime's stored latent data and score it on its test runs.

Reuses the artifacts ``bench_thesis_regime.py <regime>`` left under its data root; the variant is
the regime's configured LSTM with the JSON overrides given (the LSTM experiments of
docs/results.md):

    .venv/bin/python benchmarks/lstm_variant.py pure_vicsek '{"noise_std": 0.3, "max_epochs": 100, "patience": 20}'

Prints the mean pooled test R² (oracle shifts) and the per-run values. These are test-set
numbers, for understanding a model form, not for choosing one.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("regime")
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON object of LSTM keys")
    parser.add_argument("--data-root", default=None, help="default: /tmp/rom_bench_<regime>")
    args = parser.parse_args()
    overrides = json.loads(args.overrides)
    os.environ["ROM_DATA_ROOT"] = args.data_root or f"/tmp/rom_bench_{args.regime}"
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from rom_pipeline.config import validate_parameters
    from rom_pipeline.evaluation.protocol import evaluate_forecaster
    from rom_pipeline.pipelines.models import evaluation_config, test_runs_for_evaluation
    from rom_pipeline.rom.latent import unpack_trajectories
    from rom_pipeline.rom.lstm import LSTMForecaster
    from rom_pipeline.rom.pod import PODBasis

    bootstrap_project(PROJECT)
    with KedroSession.create(project_path=PROJECT, env=args.regime) as session:
        catalog = session.load_context().catalog
        params = catalog.load("parameters")
        lstm = validate_parameters(params).rom.models.lstm.model_dump(exclude={"enabled"})
        unknown = sorted(set(overrides) - set(lstm))
        if unknown:
            raise SystemExit(f"unknown LSTM keys {unknown}; choose from {', '.join(lstm)}")
        pod = PODBasis.from_arrays(catalog.load("pod_basis"))
        trajectories = list(unpack_trajectories(catalog.load("latent_dataset")).values())
        params = {**params, "eval": {**params["eval"], "shift_modes": ["oracle"],
                                     "order_parameters": False}}
        runs = list(test_runs_for_evaluation(catalog.load("test.runs"), params))
    started = time.perf_counter()
    model = LSTMForecaster(**{**lstm, **overrides}).fit(trajectories)
    fit_seconds = time.perf_counter() - started
    config = evaluation_config(params)
    r2 = [evaluate_forecaster(model, pod, run, config).metrics[0]["r2_pooled"] for run in runs]
    per_run = "  ".join(f"{run.family} {v:.3f}" for run, v in zip(runs, r2))
    print(f"{args.regime} LSTM {overrides}: best epoch {model.best_epoch_}, fit {fit_seconds:.0f} s, "
          f"pooled R² mean {np.mean(r2):.3f}   {per_run}")


if __name__ == "__main__":
    main()
