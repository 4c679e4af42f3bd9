"""Score one LSTM variant on held-out TRAINING runs of a stored latent dataset (never test runs).

The variant is ``LSTMForecaster(lag=5, device="cpu", **overrides)``; it is fitted on 75 % of the
training runs (it holds out its own validation runs inside them for checkpoint selection) and
scored on the other 25 % (``held_out_runs(n, 0.25, seed=123)``), each rolled out closed loop from
its first true window to its end:

    latent R²  mean over the held-out runs of the evaluation's pooled latent R² (metrics.latent_r2)
    skill      1 − Σ‖y − ŷ‖² / Σ‖y − c‖², c the mean latent state of the fitting runs

``'{"mvar": true}'`` scores the ridge MVAR (lag 5, α 1e-4) on the same split instead. This is how
the default experiment's LSTM settings in conf/base were chosen (experiments/results/lstm_default.md)::

    .venv/bin/python experiments/lstm_holdout.py '{"linear_skip": true, "noise_std": 0.1}'
"""
from __future__ import annotations

import argparse
import glob
import json
import time

import numpy as np
import torch

from rom_pipeline.evaluation.metrics import latent_r2
from rom_pipeline.rom.latent import unpack_trajectories
from rom_pipeline.rom.lstm import LSTMForecaster, closed_loop_skill, held_out_runs
from rom_pipeline.rom.mvar import MVARForecaster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("overrides", nargs="?", default="{}", help="JSON object of LSTM keys")
    parser.add_argument("--latent", default="data/default/rom_common/latent_dataset.npz",
                        help="the latent_dataset artifact (a versioned folder or a file)")
    args = parser.parse_args()
    overrides = json.loads(args.overrides)
    files = sorted(glob.glob(f"{args.latent}/*/*.npz")) or [args.latent]
    runs = list(unpack_trajectories(dict(np.load(files[-1]))).values())
    outer = held_out_runs(len(runs), 0.25, 123)
    fit_runs = [run for i, run in enumerate(runs) if i not in outer]
    scored = [runs[i] for i in outer]
    climatology = np.concatenate(fit_runs).mean(axis=0)

    tic = time.perf_counter()
    if overrides.pop("mvar", False):
        model, name = MVARForecaster(lag=5, ridge_alpha=1e-4).fit(fit_runs), "MVAR"
    else:
        torch.set_num_threads(1)
        model = LSTMForecaster(**{"lag": 5, "device": "cpu", **overrides}).fit(fit_runs)
        name = f"LSTM {json.dumps(overrides)} best epoch {model.best_epoch_}/" \
               f"{len(model.training_log_)}"
    seconds = time.perf_counter() - tic
    truth = [y[model.lag:] for y in scored]
    forecast = [model.rollout(y[:model.lag], len(y) - model.lag) for y in scored]
    r2 = [latent_r2(y, f) if np.all(np.isfinite(f)) else -np.inf for y, f in zip(truth, forecast)]
    print(f"{name}: fit {seconds:.0f} s; {len(scored)} held-out training runs: latent R² "
          f"{np.mean(r2):.3f}, skill vs climatology {closed_loop_skill(truth, forecast, climatology):.3f}")


if __name__ == "__main__":
    main()
