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
  unrestricted), ridge penalty, stability threshold, and (``--lags``) shorter lags. Each variant
  line ends with what the training data alone would say: the closed-loop latent R² on held-out
  whole training runs (the LSTM's validation split), with the variant refitted on the other runs
  and every rollout seeded with the configured lag's window (as the protocol seeds the test runs);
- per time band of the forecast block (``--bands``), for each test run: the share of its variance
  the band holds, the share the configured MVAR loses there, the spatial standard deviation of
  the true and the forecast density (is the swarm compact, is it dispersing), and the mean agent
  speed (in the variable-speed regimes speeds drift: the late test frames can be states that the
  short training runs never reach).

    .venv/bin/python experiments/analyse_regime.py pure_vicsek     # data under /tmp/rom_bench_pure_vicsek

The table is printed and written to ``experiments/results/<regime>_analysis.txt`` (or ``--out``).

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
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # regime_artifacts: what bench_thesis_regime.py leaves


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("regime")
    parser.add_argument("--data-root", default=None, help="default: /tmp/rom_bench_<regime>")
    parser.add_argument("--ranks", default="0,2,4,8,12,levels")
    parser.add_argument("--alphas", default="1e-4,1,100,1000")
    parser.add_argument("--thresholds", default="0.999,0.99,0.95")
    parser.add_argument("--lags", default="", help="shorter MVAR lags to try, e.g. 1,2,3,4")
    parser.add_argument("--floor-after", type=float, default=20.0, help="seconds (default 20)")
    parser.add_argument("--bands", default="2,5,10,20,50,100",
                        help="inner edges (s) of the time bands of the last table")
    parser.add_argument("--out", default=None,
                        help="default: experiments/results/<regime>_analysis.txt")
    args = parser.parse_args()
    edges = parse_bands(args.bands)
    try:
        lags = [int(v) for v in args.lags.split(",") if v.strip()]
    except ValueError:
        lags = [0]
    if any(v < 1 for v in lags):
        raise SystemExit(f"--lags {args.lags!r}: give positive integer lags, e.g. 1,2,3,4")
    from regime_artifacts import load_regime

    from rom_pipeline.evaluation.protocol import evaluate_forecaster
    from rom_pipeline.rom.baselines import PersistenceForecaster
    from rom_pipeline.rom.lstm import closed_loop_r2, held_out_runs
    from rom_pipeline.rom.mvar import MVARForecaster
    from rom_pipeline.rom.pod import apply_shifts

    regime_data = load_regime(args.regime, args.data_root or f"/tmp/rom_bench_{args.regime}",
                              oracle_only=True, particles=True)
    params, pod, trajectories, runs = (regime_data.params, regime_data.pod,
                                       regime_data.trajectories, regime_data.runs)
    config = regime_data.config
    from rom_pipeline.config import validate_parameters

    cfg = validate_parameters(params)  # every default filled in (they live in the constructors)
    lag = int(cfg.mvar.lag)
    if any(v > lag for v in lags):
        raise SystemExit(f"--lags {args.lags!r}: give lags from 1 to the configured {lag} (a longer "
                         "one does not fit the seed window the configured lag was chosen for)")
    alpha0 = float(cfg.mvar.ridge_alpha)

    lines: list[str] = []

    def emit(line: str) -> None:
        lines.append(line)
        print(line, flush=True)

    def row(label: str, values: list[float], suffix: str = "") -> None:
        per_run = "  ".join(f"{run.family} {v:6.3f}" for run, v in zip(runs, values))
        emit(f"{label:38s} mean {np.mean(values):6.3f}   {per_run}{suffix}")

    val_idx = set(held_out_runs(len(trajectories), cfg.lstm.validation_fraction, cfg.lstm.seed))
    fit_runs = [y for i, y in enumerate(trajectories) if i not in val_idx]
    val_runs = [y for i, y in enumerate(trajectories) if i in val_idx]

    def score(label: str, model, make=None) -> None:
        r2 = regime_data.score(model)
        suffix = ""
        if make is not None:
            held = make().fit(fit_runs)
            w = held.lag
            heldout = closed_loop_r2([y[lag:] for y in val_runs],
                                     [held.rollout(y[lag - w:lag], len(y) - lag) for y in val_runs])
            suffix = f"   | held-out training runs, latent R² {heldout:7.3f}"
        row(label, r2, suffix)

    emit("Command: .venv/bin/python experiments/analyse_regime.py " + " ".join(sys.argv[1:]))
    emit(f"regime {args.regime}: MVAR lag {lag}, pooled R² on {len(runs)} test runs (oracle shifts)")
    # One evaluation of the MVAR as configured per run gives the forecast block (the protocol's
    # own truth and times) for both the fluctuation bound and the MVAR's loss split.
    configured = MVARForecaster(lag, alpha0, cfg.mvar.eigenvalue_threshold,
                                cfg.mvar.coint_rank).fit(trajectories)
    bounds, early, late_loss, forecasts = [], [], [], []
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
        shape = apply_shifts(late, shifts, method=pod.shift_method).mean(axis=0)
        tracked = apply_shifts(np.repeat(shape[None], len(late), axis=0), shifts, inverse=True,
                               method=pod.shift_method)
        bounds.append(1.0 - np.sum((late - tracked) ** 2) / total)
        err = np.sum((truth - res.prediction.astype(np.float64)) ** 2, axis=(1, 2))
        early.append(err[~after].sum() / total)
        late_loss.append(err[after].sum() / total)
        forecasts.append((res.forecast_times, truth, res.prediction.astype(np.float64), total))
    row(f"R² bound (fluctuations after {args.floor_after:g} s)", bounds)
    score("persistence (last state held)", PersistenceForecaster())
    row(f"MVAR loss share before {args.floor_after:g} s", early)
    row(f"MVAR loss share after {args.floor_after:g} s", late_loss)
    variants = [(f"coint_rank {rank}", {"coint_rank": None if rank == "levels" else int(rank)})
                for rank in args.ranks.split(",")]
    variants += [(f"levels, ridge_alpha {a}", {"ridge_alpha": float(a)}) for a in args.alphas.split(",")]
    variants += [(f"levels, eigenvalue_threshold {t}", {"eigenvalue_threshold": float(t)})
                 for t in args.thresholds.split(",")]
    variants += [(f"levels, lag {v}", {"lag": v}) for v in lags]
    for label, options in variants:
        make = partial(MVARForecaster, **{"lag": lag, "ridge_alpha": alpha0, **options})
        score(label, make().fit(trajectories), make)
    emit("")
    band_table(edges, runs, forecasts, emit)
    out = Path(args.out) if args.out else PROJECT / "experiments" / "results" / f"{args.regime}_analysis.txt"
    out.write_text("\n".join(lines) + "\n")


def parse_bands(bands: str) -> list[float]:
    try:
        edges = [float(b) for b in bands.split(",") if b.strip()]
    except ValueError:
        edges = []
    if not edges or edges != sorted(edges) or len(set(edges)) != len(edges):
        raise SystemExit(f"--bands {bands!r}: give increasing inner edges in seconds, e.g. 2,5,10,20")
    return edges


def band_table(edges: list[float], runs, forecasts, emit) -> None:
    """Per time band: variance share, MVAR loss share, spatial std of truth and MVAR, mean speed."""
    start = min(times[0] for times, *_ in forecasts)
    end = max(times[-1] for times, *_ in forecasts)
    limits = [start - 1e-9] + [e for e in edges if start < e < end] + [end]
    labels = [f"[{start:.3g},{limits[1]:.3g}]"] + [f"({lo:.3g},{hi:.3g}]" for lo, hi in
                                                  zip(limits[1:-1], limits[2:])]
    emit(f"{'per time band of the forecast block (s)':50s} " + " ".join(f"{b:>10s}" for b in labels))
    for run, (times, truth, prediction, total) in zip(runs, forecasts):
        masks = [(times > lo) & (times <= hi) for lo, hi in zip(limits[:-1], limits[1:])]
        speed = None
        if run.velocities is not None:
            frames = np.searchsorted(run.times, times - 1e-9)
            speed = np.linalg.norm(run.velocities[frames], axis=-1).mean(axis=1)
        mean = truth.mean()  # the pooled R²'s mean over the whole forecast block
        rows = {
            "variance share": lambda m: np.sum((truth[m] - mean) ** 2) / total,
            "MVAR loss share": lambda m: np.sum((truth[m] - prediction[m]) ** 2) / total,
            "spatial std, truth": lambda m: truth[m].std(axis=(1, 2)).mean(),
            "spatial std, MVAR": lambda m: prediction[m].std(axis=(1, 2)).mean(),
        }
        if speed is not None:
            rows["mean agent speed"] = lambda m: speed[m].mean()
        for name, value in rows.items():  # a band this run does not reach prints "-"
            cells = " ".join(f"{value(m):10.4g}" if m.any() else f"{'-':>10s}" for m in masks)
            emit(f"{run.family:14s} {name:35s} {cells}")


if __name__ == "__main__":
    main()
