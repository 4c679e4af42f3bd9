"""Diagnostics of a thesis regime on its stored artifacts (the analysis numbers in docs/results.md).

Reuses the POD basis, latent dataset and test runs that ``bench_thesis_regime.py <regime>`` left
under its data root and prints, per test run (pooled R², oracle shifts, the regime's protocol):

- the fluctuation floor: the share of the test run's variance that no forecast of the mean
  co-moving shape can remove after ``--floor-after`` seconds (each late frame aligned by its own
  shift, replaced by the aligned time mean, shifted back), i.e. an upper bound on R²;
- the persistence baseline (last conditioning state held);
- for the MVAR as configured, the share of each test run's variance it loses before and after
  ``--floor-after`` (compare the latter with 1 − bound: the irreducible part);
- the MVAR refitted in each variant: error-correction rank k (``coint_rank``; ``levels`` =
  unrestricted), ridge penalty, stability threshold. Each variant line ends with what the
  training data alone would say: the closed-loop latent R² on held-out whole training runs (the
  LSTM's validation split), with the variant refitted on the other runs.

    .venv/bin/python benchmarks/analyse_regime.py pure_vicsek     # data under /tmp/rom_bench_pure_vicsek

The table is printed and written to ``benchmarks/results/<regime>_analysis.txt`` (or ``--out``).

These are *test-set* numbers: they show how sensitive the forecast is to the model form, they are
not a way to choose it (science.md §8; the held-out training runs are only 20 s long).
"""
from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("regime")
    parser.add_argument("--data-root", default=None, help="default: /tmp/rom_bench_<regime>")
    parser.add_argument("--ranks", default="0,2,4,8,12,levels")
    parser.add_argument("--alphas", default="1e-4,1,100,1000")
    parser.add_argument("--thresholds", default="0.999,0.99,0.95")
    parser.add_argument("--floor-after", type=float, default=20.0, help="seconds (default 20)")
    parser.add_argument("--out", default=None,
                        help="default: benchmarks/results/<regime>_analysis.txt")
    args = parser.parse_args()
    from regime_artifacts import load_regime

    from rom_pipeline.evaluation.protocol import evaluate_forecaster
    from rom_pipeline.rom.baselines import PersistenceForecaster
    from rom_pipeline.rom.lstm import closed_loop_r2, held_out_runs
    from rom_pipeline.rom.mvar import MVARForecaster
    from rom_pipeline.rom.pod import apply_shifts

    regime_data = load_regime(args.regime, args.data_root or f"/tmp/rom_bench_{args.regime}",
                              oracle_only=True)
    params, pod, trajectories, runs = (regime_data.params, regime_data.pod,
                                       regime_data.trajectories, regime_data.runs)
    config = regime_data.config
    lag = int(params["rom"]["models"]["mvar"]["lag"])
    alpha0 = float(params["rom"]["models"]["mvar"]["ridge_alpha"])

    lines: list[str] = []

    def emit(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    def row(label: str, values: list[float], suffix: str = "") -> None:
        per_run = "  ".join(f"{run.family} {v:6.3f}" for run, v in zip(runs, values))
        emit(f"{label:38s} mean {np.mean(values):6.3f}   {per_run}{suffix}")

    lstm_cfg = params["rom"]["models"]["lstm"]
    val_idx = set(held_out_runs(len(trajectories), lstm_cfg.get("validation_fraction", 0.2),
                                lstm_cfg.get("seed", 0)))
    fit_runs = [y for i, y in enumerate(trajectories) if i not in val_idx]
    val_runs = [y for i, y in enumerate(trajectories) if i in val_idx]

    def score(label: str, model, make=None) -> None:
        r2 = regime_data.score(model)
        suffix = ""
        if make is not None:
            held = make().fit(fit_runs)
            w = held.lag
            heldout = closed_loop_r2([y[w:] for y in val_runs],
                                     [held.rollout(y[:w], len(y) - w) for y in val_runs])
            suffix = f"   | held-out training runs, latent R² {heldout:7.3f}"
        row(label, r2, suffix)

    emit("Command: .venv/bin/python benchmarks/analyse_regime.py " + " ".join(sys.argv[1:]))
    emit(f"regime {args.regime}: MVAR lag {lag}, pooled R² on {len(runs)} test runs (oracle shifts)")
    # One evaluation of the MVAR as configured per run gives the forecast block (the protocol's
    # own truth and times) for both the fluctuation bound and the MVAR's loss split.
    mvar_cfg = params["rom"]["models"]["mvar"]
    configured = MVARForecaster(lag, alpha0, mvar_cfg.get("eigenvalue_threshold"),
                                mvar_cfg.get("coint_rank")).fit(trajectories)
    bounds, early, late_loss = [], [], []
    for run in runs:
        res = evaluate_forecaster(configured, pod, run, config)
        truth = res.truth_forecast.astype(np.float64)
        total = np.sum((truth - truth.mean()) ** 2)
        after = res.forecast_times > args.floor_after
        if not after.any():
            raise SystemExit(f"--floor-after {args.floor_after:g} s: test run {run.run_id} ends at "
                             f"{run.times[-1]:g} s; pass a shorter time")
        late = truth[after]
        shifts = pod.estimate_shifts(late)
        shape = apply_shifts(late, shifts).mean(axis=0)
        tracked = apply_shifts(np.repeat(shape[None], len(late), axis=0), shifts, inverse=True)
        bounds.append(1.0 - np.sum((late - tracked) ** 2) / total)
        err = np.sum((truth - res.prediction.astype(np.float64)) ** 2, axis=(1, 2))
        early.append(err[~after].sum() / total)
        late_loss.append(err[after].sum() / total)
    row(f"R² bound (fluctuations after {args.floor_after:g} s)", bounds)
    score("persistence (last state held)", PersistenceForecaster())
    row(f"MVAR loss share before {args.floor_after:g} s", early)
    row(f"MVAR loss share after {args.floor_after:g} s", late_loss)
    variants = [(f"coint_rank {rank}", {"coint_rank": None if rank == "levels" else int(rank)})
                for rank in args.ranks.split(",")]
    variants += [(f"levels, ridge_alpha {a}", {"ridge_alpha": float(a)}) for a in args.alphas.split(",")]
    variants += [(f"levels, eigenvalue_threshold {t}", {"eigenvalue_threshold": float(t)})
                 for t in args.thresholds.split(",")]
    for label, options in variants:
        make = partial(MVARForecaster, **{"lag": lag, "ridge_alpha": alpha0, **options})
        score(label, make().fit(trajectories), make)
    out = Path(args.out) if args.out else PROJECT / "benchmarks" / "results" / f"{args.regime}_analysis.txt"
    out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
