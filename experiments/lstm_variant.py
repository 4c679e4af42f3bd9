"""Train one LSTM variant on a regime's stored latent data and score it on its test runs.

Reuses the artifacts ``bench_thesis_regime.py <regime>`` left under its data root; the variant is
the regime's configured LSTM with the JSON overrides given (the LSTM experiments of
docs/results.md):

    .venv/bin/python experiments/lstm_variant.py pure_vicsek '{"noise_std": 0.3, "max_epochs": 100, "patience": 20}'

Prints the mean pooled test R² (oracle shifts) and the per-run values. These are test-set
numbers, for understanding a model form, not for choosing one.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # regime_artifacts: what bench_thesis_regime.py leaves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("regime")
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON object of LSTM keys")
    parser.add_argument("--data-root", default=None, help="default: /tmp/rom_bench_<regime>")
    args = parser.parse_args()
    overrides = json.loads(args.overrides)
    from regime_artifacts import load_regime

    from rom_pipeline.config import LSTMConfig, validate_parameters
    from rom_pipeline.rom.lstm import LSTMForecaster

    keys = [k for k in LSTMConfig.model_fields if k != "enabled"]
    unknown = sorted(set(overrides) - set(keys))
    if unknown:
        raise SystemExit(f"unknown LSTM keys {unknown}; choose from {', '.join(keys)}")
    regime_data = load_regime(args.regime, args.data_root or f"/tmp/rom_bench_{args.regime}",
                              oracle_only=True)
    lstm = validate_parameters(regime_data.params).lstm.model_dump(exclude={"enabled"})
    started = time.perf_counter()
    model = LSTMForecaster(**{**lstm, **overrides}).fit(regime_data.trajectories)
    fit_seconds = time.perf_counter() - started
    r2 = regime_data.score(model)
    per_run = "  ".join(f"{run.family} {v:.3f}" for run, v in zip(regime_data.runs, r2))
    print(f"{args.regime} LSTM {overrides}: best epoch {model.best_epoch_}, fit {fit_seconds:.0f} s, "
          f"pooled R² mean {np.mean(r2):.3f}   {per_run}")


if __name__ == "__main__":
    main()
