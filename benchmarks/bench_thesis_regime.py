"""End-to-end benchmark of one thesis regime at thesis scale, beside the reference numbers.

Runs the pipelines stage by stage (`kedro run --env <regime> --pipelines=<stage>`), timing each,
then tabulates MVAR and LSTM per IC family (pooled R² with oracle and predicted shifts, mean
per-snapshot R², relative L2, valid-prediction time, POD ceiling) beside the research code's
headline numbers (shared/docs/reference_results.md), and writes
``benchmarks/results/<regime>.md`` and ``<regime>.csv``.

    .venv/bin/python benchmarks/bench_thesis_regime.py gas            # thesis scale (minutes)
    .venv/bin/python benchmarks/bench_thesis_regime.py test --quick   # smoke test on the tiny env
    .venv/bin/python benchmarks/bench_thesis_regime.py pure_vicsek --stages mvar,evaluation
        # rerun some stages on the data of an earlier run; the other stages' times are those
        # recorded by that run (benchmarks/results/<regime>_times.json), marked as such

Beside the models it tabulates the baselines the evaluation pipeline scored with the same protocol
(``report/all_test_results.csv``): climatology (the training runs' mean co-moving shape) and
persistence (the last conditioning state held along the swarm's track); a model that does not beat
them has not learned the dynamics. Where that table has no persistence row, the persistence
baseline is scored here with the regime's own protocol.

Each stage's wall time and its CPU time (user + system of the ``kedro run`` process and the
processes it waited for) are recorded, with the load average before and after: on a shared
machine the CPU time bounds what the stage costs, the wall time is what a user waits.

The baseline for speed is the research code's reported 2–4 CPU-hours per regime; the target is
≤ 15 minutes for the whole `gas` regime on this 2-core machine.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

from rom_pipeline.cli.catalogue import REFERENCE_R2
from rom_pipeline.registry import FORECASTERS

PROJECT = Path(__file__).resolve().parents[1]
KEDRO = str(Path(sys.executable).with_name("kedro"))
STAGES = ("simulation", "pod", "latent_dataset", *FORECASTERS, "evaluation")  # one per pipeline
# Mean test forecast R² of the research code (reference_results.md), oracle shifts: (MVAR, LSTM).
REFERENCE = {regime: (ref["MVAR"], ref["LSTM"]) for regime, ref in REFERENCE_R2.items()}
RESEARCH_CODE_HOURS = (2.0, 4.0)


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished children so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_stage(env: str, stage: str, data_root: Path, params: str | None = None,
              cpu: dict[str, float] | None = None) -> float:
    """Run one pipeline (``--params`` overrides, if given) under ``data_root``; its wall time.
    With ``cpu``, the stage's CPU seconds are stored in ``cpu[stage]``."""
    start, cpu_start = time.perf_counter(), children_cpu_seconds()
    proc = subprocess.run(
        [KEDRO, "run", "--env", env, f"--pipelines={stage}", *(["--params", params] if params else [])],
        cwd=PROJECT,
        env={**os.environ, "ROM_DATA_ROOT": str(data_root), "KEDRO_DISABLE_TELEMETRY": "1",
             "MPLBACKEND": "Agg"},
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-5000:] + proc.stderr[-5000:])
        raise SystemExit(f"stage {stage} failed")
    if cpu is not None:
        cpu[stage] = children_cpu_seconds() - cpu_start
    return time.perf_counter() - start


def persistence_results(regime: str, data_root: Path) -> pd.DataFrame:
    """Score the persistence baseline with the regime's own evaluation protocol and artifacts."""
    from regime_artifacts import load_regime

    from rom_pipeline.evaluation.protocol import evaluate_many
    from rom_pipeline.rom.baselines import PersistenceForecaster

    regime_data = load_regime(regime, data_root)
    results, _, _ = evaluate_many(PersistenceForecaster(), regime_data.pod, regime_data.runs,
                                  regime_data.config, track_model=regime_data.track_model)
    return results


def scored_results(regime: str, data_root: Path) -> pd.DataFrame:
    """Every model's and baseline's per-run results, as the evaluation pipeline wrote them; the
    persistence baseline is scored here when that table lacks it."""
    results = pd.read_csv(data_root / regime / "report" / "all_test_results.csv")
    if "persistence" not in set(results["model"]):
        results = pd.concat([results, persistence_results(regime, data_root).assign(model="persistence")])
    return results


def results_table(results: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for model, res in results.groupby("model", sort=False):
        for (family, mode), g in res.groupby(["family", "shift_mode"]):
            rows.append({"model": model, "family": family, "shift_mode": mode,
                         "r2_pooled": g["r2_pooled"].mean(),
                         "r2_snapshot_mean": g["r2_snapshot_mean"].mean(),
                         "rel_l2_mean": g["rel_l2_mean"].mean(), "valid_time": g["valid_time"].mean(),
                         "r2_pod_ceiling": g["r2_pod_ceiling"].mean(), "diverged": int(g["diverged"].sum())})
        for mode, g in res.groupby("shift_mode"):
            rows.append({"model": model, "family": "all", "shift_mode": mode,
                         "r2_pooled": g["r2_pooled"].mean(),
                         "r2_snapshot_mean": g["r2_snapshot_mean"].mean(),
                         "rel_l2_mean": g["rel_l2_mean"].mean(), "valid_time": g["valid_time"].mean(),
                         "r2_pod_ceiling": g["r2_pod_ceiling"].mean(), "diverged": int(g["diverged"].sum())})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("regime", help="Kedro environment, e.g. gas, crystal, pure_vicsek, gas_vs")
    parser.add_argument("--data-root", default=None, help="default: a folder under /tmp")
    parser.add_argument("--quick", action="store_true", help="smoke test: do not write results/")
    parser.add_argument("--stages", default=",".join(STAGES),
                        help="comma-separated stages to (re)run; default: all")
    args = parser.parse_args()
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = [s for s in stages if s not in STAGES]
    if unknown:
        raise SystemExit(f"--stages {args.stages!r}: unknown {unknown}; choose from {', '.join(STAGES)}")
    out = PROJECT / "benchmarks" / "results"
    times_file = out / f"{args.regime}_times.json"
    previous = json.loads(times_file.read_text()) if times_file.exists() else {}
    missing = [s for s in STAGES if s not in stages and s not in previous]
    if missing:
        raise SystemExit(f"--stages skips {missing} but {times_file} has no recorded time for "
                         "them: run every stage once")
    data_root = Path(args.data_root or f"/tmp/rom_bench_{args.regime}")
    exp_dir = data_root / args.regime
    load_before = os.getloadavg()[0]
    cpu: dict[str, float] = {}
    times = {stage: (run_stage(args.regime, stage, data_root, cpu=cpu) if stage in stages
                     else previous[stage]) for stage in STAGES}
    load_after = os.getloadavg()[0]
    reused = [s for s in STAGES if s not in stages]
    cpu = {s: cpu.get(s, previous.get("cpu_seconds", {}).get(s, float("nan"))) for s in STAGES}
    total = sum(times.values())
    table = results_table(scored_results(args.regime, data_root))
    summary = json.loads((exp_dir / "summary.json").read_text())
    lstm_file = exp_dir / "LSTM" / "training_summary.json"
    lstm = json.loads(lstm_file.read_text()) if lstm_file.exists() else None

    ref = REFERENCE.get(args.regime)
    lines = [f"# Regime `{args.regime}`: thesis-scale end-to-end benchmark", "",
             f"Command: `.venv/bin/python benchmarks/bench_thesis_regime.py {args.regime}"
             f"{' --stages ' + ','.join(stages) if reused else ''}` "
             f"(2-core machine, {time.strftime('%Y-%m-%d')}).", "",
             f"POD: r = {summary['pod']['n_modes']} modes, energy {summary['pod']['energy_captured']:.4f}; "
             f"{summary['n_train_runs']} training runs, {summary['n_test_runs']} test runs of "
             f"{summary['test_horizon']} s, forecast from {summary['forecast_start']} s.", "",
             "## Mean test R² (pooled, all test runs) beside the research code", "",
             "| model | ours, oracle shifts | ours, predicted shifts (hold) | ours, predicted (extrapolate) | reference (oracle) |",
             "|---|---:|---:|---:|---:|"]
    reference = dict(zip(("MVAR", "LSTM"), ref)) if ref else {}
    for model in table.model.unique():
        allrows = table[(table.model == model) & (table.family == "all")].set_index("shift_mode")
        get = lambda m: f"{allrows.loc[m, 'r2_pooled']:.3f}" if m in allrows.index else "–"  # noqa: E731
        lines.append(f"| {model} | {get('oracle')} | {get('hold')} | {get('extrapolate')} | "
                     f"{reference.get(model, '–')} |")
    if lstm is not None:
        lines += ["", f"LSTM: best epoch {lstm['best_epoch']} of {lstm['epochs_run']} "
                      f"epochs run, fit {lstm['fit_seconds']:.1f} s on {lstm['device']}."]
    lines += ["", "## Per IC family", "", "```", table.round(4).to_string(index=False), "```", "",
              "## Time per stage", "",
              f"Load average (1 min) {load_before:.2f} before, {load_after:.2f} after, on "
              f"{os.cpu_count()} cores. CPU: user + system seconds of the stage's processes.", "",
              "| stage | wall seconds | CPU seconds |", "|---|---:|---:|"]
    lines += [f"| {s} | {t:.1f}{' (previous run)' if s in reused else ''} | {cpu[s]:.1f} |"
              for s, t in times.items()]
    lines += [f"| **total** | **{total:.1f}** | **{sum(cpu.values()):.1f}** |", "",
              f"Research code: {RESEARCH_CODE_HOURS[0]:.0f}–{RESEARCH_CODE_HOURS[1]:.0f} CPU-hours per "
              f"regime; ours {total / 60:.1f} min → {RESEARCH_CODE_HOURS[0] * 3600 / total:.0f}–"
              f"{RESEARCH_CODE_HOURS[1] * 3600 / total:.0f}× faster."]
    report = "\n".join(lines) + "\n"
    print(report)
    if not args.quick:
        out.mkdir(parents=True, exist_ok=True)
        record = {**times, "cpu_seconds": cpu, "load_average_before": load_before,
                  "load_average_after": load_after}
        times_file.write_text(json.dumps(record, indent=1) + "\n")
        (out / f"{args.regime}.md").write_text(report)
        table.to_csv(out / f"{args.regime}.csv", index=False)


if __name__ == "__main__":
    main()
