"""The MVAR of a thesis regime trained on longer runs: does the training horizon limit it?

In the variable-speed regimes the test runs (200 s) drift into states that the thesis's 20 s
training runs never reach (``analyse_regime.py``, time-band table). This experiment changes only
the training horizon, ``sim.T``, and keeps everything else of the regime (340 runs with the same
initial conditions and seeds, the same test runs, POD r = 19, MVAR lag 5). It runs

    kedro run --env <regime> --pipelines=<stage> --params sim.T=<seconds>

for the simulation, pod, latent_dataset and mvar stages under its own data root, then writes the
MVAR's test R² per IC family (oracle shifts) beside the 20 s protocol's
(``benchmarks/results/<regime>.csv``, from ``bench_thesis_regime.py``) and the reference:

    .venv/bin/python experiments/horizon_experiment.py gas_vs --train-seconds 60
        # data under /tmp/rom_h60_gas_vs, table in experiments/results/gas_vs_train60s.md

``--stages`` reruns some stages only (``--stages ''``: tabulate an earlier run). The LSTM is not
trained (T / 20 times the data is T / 20 times its training cost); the longer horizon is a change of protocol, so these
numbers are reported beside the thesis protocol's, never instead of them.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # bench_thesis_regime: its stage runner and reference table
from bench_thesis_regime import PROJECT, REFERENCE, run_stage

STAGES = ("simulation", "pod", "latent_dataset", "mvar")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("regime", help="Kedro environment, e.g. gas_vs")
    parser.add_argument("--train-seconds", type=float, required=True,
                        help="training-run horizon sim.T in seconds (the thesis protocol: 20)")
    parser.add_argument("--data-root", default=None,
                        help="default: /tmp/rom_h<seconds>_<regime>")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="comma-separated stages to (re)run; '' tabulates an earlier run")
    parser.add_argument("--quick", action="store_true", help="smoke test: do not write results/")
    args = parser.parse_args()
    if not args.train_seconds > 0:
        raise SystemExit(f"--train-seconds {args.train_seconds:g}: give a positive horizon in seconds")
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"--stages {args.stages!r}: unknown {unknown}; choose from {', '.join(STAGES)}")
    seconds = f"{args.train_seconds:g}"
    own = PROJECT / "conf" / args.regime / "parameters.yml"
    if not own.exists():
        raise SystemExit(f"regime {args.regime!r}: no conf/{args.regime}/parameters.yml; use a "
                         "thesis environment such as gas_vs")
    base_seconds = f"{yaml.safe_load(own.read_text())['sim']['T']:g}"
    data_root = Path(args.data_root or f"/tmp/rom_h{seconds}_{args.regime}")
    exp_dir = data_root / args.regime
    if not stages and not (exp_dir / "MVAR" / "test_results.csv").exists():
        raise SystemExit(f"--stages '': {exp_dir} holds no earlier run to tabulate; run the stages")
    times = {stage: run_stage(args.regime, stage, data_root, f"sim.T={seconds}") for stage in stages}

    longer = pd.read_csv(exp_dir / "MVAR" / "test_results.csv")
    longer = longer[longer.shift_mode == "oracle"].groupby("family", sort=False)[
        ["r2_pooled", "r2_pod_ceiling"]].mean()
    thesis_csv = PROJECT / "benchmarks" / "results" / f"{args.regime}.csv"
    thesis = None
    if thesis_csv.exists():
        table = pd.read_csv(thesis_csv)
        thesis = table[(table.model == "MVAR") & (table.shift_mode == "oracle")].set_index("family")
    reference = REFERENCE.get(args.regime)

    def cell(family: str) -> str:
        return "–" if thesis is None or family not in thesis.index else f"{thesis.loc[family, 'r2_pooled']:.3f}"

    lines = [f"# Regime `{args.regime}`: MVAR trained on {seconds} s runs instead of {base_seconds} s", "",
             f"Command: `.venv/bin/python experiments/horizon_experiment.py {args.regime} "
             f"--train-seconds {seconds}"
             f"{'' if stages == list(STAGES) else ' --stages ' + repr(','.join(stages))}` "
             f"(2-core machine, {time.strftime('%Y-%m-%d')}); only "
             f"`sim.T` differs from the regime's own protocol.", "",
             f"| test run | MVAR R², {seconds} s training runs | MVAR R², {base_seconds} s (the regime's protocol) | POD ceiling ({seconds} s basis) |",
             "|---|---:|---:|---:|"]
    lines += [f"| {family} | {row.r2_pooled:.3f} | {cell(family)} | {row.r2_pod_ceiling:.3f} |"
              for family, row in longer.iterrows()]
    lines += [f"| **mean** | **{longer.r2_pooled.mean():.3f}** | {cell('all')} | "
              f"{longer.r2_pod_ceiling.mean():.3f} |", "",
              f"Reference (research code, 20 s training runs, oracle shifts): MVAR "
              f"{reference[0] if reference else '–'}.", ""]
    if times:
        lines += ["| stage | seconds |", "|---|---:|"]
        lines += [f"| {s} | {t:.1f} |" for s, t in times.items()]
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.quick:
        out = PROJECT / "experiments" / "results" / f"{args.regime}_train{seconds}s.md"
        out.write_text(report)


if __name__ == "__main__":
    main()
