"""The per-regime search selections beside their test scores: before (the protocol's models) and
after (each regime's committed selection), the research code's reference, the baselines and the
fluctuation bound, in ``benchmarks/results/per_regime_selection.md``.

    .venv/bin/python experiments/selection_summary.py [--before 79e6ace]

Inputs, all committed: ``conf/thesis/selected.yml`` (what each regime's search picked),
``experiments/results/search_<regime>.md`` (how), ``benchmarks/results/<regime>.csv`` (test scores
after: ``bench_thesis_regime.py`` on the selected environment), the same file at git revision
``--before`` (test scores of the protocol's models), and ``experiments/results/<regime>_analysis.txt``
(the R² bound). Scores are the mean pooled test R² on the true track (shift mode ``oracle``), as in
docs/results.md. "Meets" follows the issue: at or above the reference, and in gas and blackhole,
whose reference sits at the fluctuation bound, within 0.002 of that bound.
"""
from __future__ import annotations

import argparse
import io
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml

PROJECT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT / "src"))
from rom_pipeline.cli.catalogue import REFERENCE_R2, THESIS_REGIMES  # noqa: E402

AT_THE_BOUND = ("gas", "blackhole")  # the issue: "meets" = within 0.002 of the fluctuation bound


def true_track(csv_text: str) -> dict[str, float]:
    table = pd.read_csv(io.StringIO(csv_text))
    rows = table[(table["family"] == "all") & (table["shift_mode"] == "oracle")]
    return dict(zip(rows["model"], rows["r2_pooled"]))


def bound(regime: str) -> float | None:
    path = PROJECT / "experiments" / "results" / f"{regime}_analysis.txt"
    if not path.is_file():
        return None
    m = re.search(r"R² bound \(fluctuations after 20 s\)\s+mean\s+(-?[\d.]+)", path.read_text())
    return float(m.group(1)) if m else None


def meets(regime: str, model: str, score: float, b: float | None) -> bool:
    """At or above the reference at its precision (three decimals); in gas and blackhole, within
    0.002 of the fluctuation bound."""
    ref = REFERENCE_R2[regime][model]
    if regime in AT_THE_BOUND and b is not None:
        return round(score, 3) >= round(min(ref, b - 0.002), 3)
    return round(score, 3) >= ref


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", default="79e6ace",
                        help="git revision whose benchmarks/results/<regime>.csv are the protocol's scores")
    parser.add_argument("--out", default=str(PROJECT / "benchmarks" / "results" / "per_regime_selection.md"))
    args = parser.parse_args(argv)
    selected = yaml.safe_load((PROJECT / "conf" / "thesis" / "selected.yml").read_text()) or {}
    lines = [
        "# Per-regime models chosen by each regime's search (issue 15)", "",
        f"Command: `.venv/bin/python experiments/selection_summary.py --before {args.before}`. Mean pooled "
        "test R² over the 4 unseen test runs, co-moving shape on the true track (`oracle`), protocol "
        "unchanged (340 training runs of 20 s, 0.6 s seed, 200 s horizon). *Before*: the protocol's "
        f"models (r = 19, MVAR lag 5 unrestricted; pure Vicsek rank 0), `benchmarks/results/<regime>.csv` at "
        f"`{args.before}`. *After*: the environment with the search's pick adopted "
        "(`conf/thesis/selected.yml`), `bench_thesis_regime.py` on it. The pick was made on 51 held-out "
        "*training* runs (`experiments/results/search_<regime>.md`); test runs were not looked at. "
        "Where the pick kept r = 19, only the MVAR changed: it was refitted and scored by "
        "`kedro run --env <regime> --pipelines=latent_dataset,mvar` (the shared latent windows follow the MVAR lag; per-run scores in "
        "`benchmarks/results/<regime>_mvar_selected.csv`), and the other columns are the before run's "
        "(same data, same basis). Where the search picked the protocol's own MVAR, nothing changed. "
        "Bold: meets the reference at its precision of three decimals (gas, blackhole: within 0.002 "
        "of the fluctuation bound).", "",
        "| regime | search pick (MVAR) | pick − protocol, held-out (± s.e.) | MVAR test before → after | "
        "reference MVAR | LSTM test before → after | reference LSTM | OPINF after | climatology | "
        "persistence | R² bound |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    count = {"MVAR": [0, 0], "LSTM": [0, 0]}
    for regime in THESIS_REGIMES:
        after_file = PROJECT / "benchmarks" / "results" / f"{regime}.csv"
        before_text = subprocess.run(["git", "show", f"{args.before}:benchmarks/results/{regime}.csv"],
                                     cwd=PROJECT, capture_output=True, text=True).stdout
        before = true_track(before_text) if before_text else {}
        after = true_track(after_file.read_text()) if after_file.is_file() else {}
        mvar_only = PROJECT / "benchmarks" / "results" / f"{regime}_mvar_selected.csv"
        rerun = after_file.is_file() and after_file.read_text() != before_text
        if mvar_only.is_file() and not rerun:  # r = 19 kept: only the MVAR was refitted and scored
            runs = pd.read_csv(mvar_only)
            after = {**before, "MVAR": float(runs.loc[runs["shift_mode"] == "oracle", "r2_pooled"].mean())}
        pick = selected.get(regime, {}).get("chosen", {}).get("mvar")
        diff = "–"
        table_md = PROJECT / (pick["table"] if pick else f"experiments/results/search_{regime}.md")
        if pick and table_md.is_file():
            m = re.search(r"Pick minus protocol, paired over the \d+ held-out runs: ([+-][\d.]+) ± ([\d.]+)",
                          table_md.read_text())
            diff = f"{m.group(1)} ± {m.group(2)}" if m else "0 (protocol picked)"
        b = bound(regime)

        def cell(model: str) -> str:
            if model not in after:
                return f"{before.get(model, float('nan')):.3f} → –"
            ok = meets(regime, model, after[model], b)
            count[model][0] += ok
            count[model][1] += 1
            text = f"{before.get(model, float('nan')):.3f} → {after[model]:.3f}"
            return f"**{text}**" if ok else text

        lines.append(
            f"| `{regime}` | `{pick['config_id'] if pick else 'not searched'}` | {diff} | {cell('MVAR')} | "
            f"{REFERENCE_R2[regime]['MVAR']} | {cell('LSTM')} | {REFERENCE_R2[regime]['LSTM']} | "
            f"{after.get('OPINF', float('nan')):.3f} | {after.get('climatology', float('nan')):.3f} | "
            f"{after.get('persistence', float('nan')):.3f} | {b if b is not None else '–'} |")
    lines += ["", f"Meets the reference: MVAR {count['MVAR'][0]} of {count['MVAR'][1]}, "
                  f"LSTM {count['LSTM'][0]} of {count['LSTM'][1]} regimes scored after the selection."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
