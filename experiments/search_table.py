"""Write a regime's search table, ``experiments/results/search_<regime>.md`` and ``.csv``, from the
outputs of its ``hyperparameter_search`` run (``<data_root>/<regime>/search/``).

    .venv/bin/python experiments/search_table.py gas [--data-root data] [--wall-seconds 312]

The table is what the issue asks to sit beside a committed selection: how the configurations were
scored (held-out *training* runs only), the search's budget and wall time, every configuration's
held-out score with the baselines scored the same way, and, for the pick, its paired difference
from the protocol's configuration (r = 19, lag 5, unrestricted) over the same held-out runs with
its standard error, so that a pick that wins by less than the run-to-run noise says so.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pandas as pd

PROJECT = Path(__file__).resolve().parents[1]
# The thesis protocol's MVAR (conf/thesis/generate.py PROTOCOL): the search's reference row.
PROTOCOL_MVAR = {"n_modes": 19, "lag": 5, "coint_rank": None, "ridge_alpha": 1e-4}


def _protocol_id(table: pd.DataFrame, model: str = "mvar", regime: str = "") -> str | None:
    """config_id of the protocol's configuration of ``model`` among the searched rows (None if it
    was not searched): the MVAR at r = 19, lag 5, α 1e-4, unrestricted (rank 0 in the pure
    Vicsek regimes, conf/thesis/generate.py); the LSTM without the linear path (the thesis's
    direct LSTM, ``linear_skip=False``)."""
    rank = "0" if regime.startswith("pure_vicsek") else "None"
    for cid in table.loc[table["model"] == model, "config_id"]:
        if model == "lstm" and "linear_skip=False" in cid:
            return cid
        if (model == "mvar" and f"r={PROTOCOL_MVAR['n_modes']}," in cid and "lag=5" in cid
                and (f"coint_rank={rank}," in cid or f"coint_rank={rank}]" in cid
                     or "coint_rank" not in cid)
                and ("ridge_alpha=0.0001" in cid or "ridge_alpha" not in cid)):
            return cid
    return None


def paired_difference(run_scores: pd.DataFrame, a: str, b: str) -> tuple[float, float, int, int]:
    """Mean and standard error of R²(a) − R²(b) over the held-out runs both scored, and on how
    many of them a is higher."""
    pivot = run_scores.pivot_table(index="run_id", columns="config_id", values="r2_pooled")
    d = (pivot[a] - pivot[b]).dropna()
    n = len(d)
    se = float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    return float(d.mean()), se, n, int((d > 0).sum())


def render(regime: str, table: pd.DataFrame, run_scores: pd.DataFrame, best: dict,
           wall_seconds: float | None, protocol: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> str:
    """The Markdown table. ``protocol``: (results, run_scores) of another search on the same
    held-out runs that holds the protocol's row, when this one does not (e.g. an extension to
    r' beyond the stored r = 19 needs its own, larger basis)."""
    scored = best["scored_on"]
    budget = scored["budget"]
    lines = [
        f"# Hyper-parameter search: `{regime}`", "",
        f"Command: `kedro run --env {regime} --pipelines=hyperparameter_search` (after simulation, pod "
        f"and latent_dataset), the grid in `conf/{regime}/parameters.yml` (`search:`, written by "
        "`conf/thesis/generate.py`). Table: `.venv/bin/python experiments/search_table.py "
        f"{regime}`.", "",
        f"**Scored on** {len(scored['folds'][0])} whole held-out *training* runs ({scored['validation']}, "
        f"seed {scored['seed']}; test runs never looked at), closed loop from {scored['forecast_start']:g} s "
        f"({scored['forecast_start_rule']}) to the end of each 20 s run, shift mode {scored['shift_mode']}, "
        f"mass post-processing {scored['mass_postprocess']}: {scored['score']}. Basis: the stored one "
        f"(r = {scored['stored_n_modes']}, fitted on all training runs, the held-out ones included: it "
        "scores every candidate the same way, but makes held-out scores somewhat optimistic); r' < r "
        "uses its leading modes (nested, no new SVD).", "",
        f"**Budget:** {budget['n_candidates']} configurations (baselines included), {budget['n_fits']} "
        f"fits ({budget['fit_seconds']:.1f} s), scoring {budget['score_seconds']:.1f} s, search node "
        f"{budget['wall_seconds']:.1f} s"
        + (f"; the whole `kedro run` {wall_seconds:.0f} s ({wall_seconds / 60:.1f} min)" if wall_seconds else "")
        + ".", "",
        "## Selected", "",
        "| model | configuration | held-out pooled R² (mean ± std) | latent R² | climatology | persistence | diverged |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    models = [m for m in best if m != "scored_on"]
    for m in models:
        b = best[m]
        base = b["baselines"]
        lines.append(
            f"| {m} | `{b['config_id']}` | {b['score_mean']:.4f} ± {b['score_std']:.4f} | "
            f"{b['latent_r2_mean']:.4f} | {base.get('climatology', {}).get('score_mean', float('nan')):.4f} | "
            f"{base.get('persistence', {}).get('score_mean', float('nan')):.4f} | {b['n_diverged']} |")
    for model in models:
        ref_table, ref_scores = (table, run_scores)
        proto = _protocol_id(table, model, regime)
        if proto is None and protocol is not None:
            ref_table, ref_scores = protocol
            proto = _protocol_id(ref_table, model, regime)
            ref_scores = pd.concat([run_scores, ref_scores])
        if proto is None:
            continue
        pick = best[model]["config_id"]
        row = ref_table[ref_table["config_id"] == proto].iloc[0]
        lines += ["", f"The protocol's {model.upper()} (`{proto}`) scores {row['score_mean']:.4f} "
                      f"(rank {int(row['rank'])})."]
        if pick != proto:
            mean, se, n, wins = paired_difference(ref_scores, pick, proto)
            verdict = ("more than two standard errors" if abs(mean) > 2 * se
                       else "within two standard errors: a tie the rank breaks")
            lines.append(f"Pick minus protocol, paired over the {n} held-out runs: {mean:+.4f} ± {se:.4f} "
                         f"(standard error; higher on {wins} of {n} runs), {verdict}.")
        else:
            lines.append("The search picked the protocol's configuration.")
    cols = ["rank", "model", "config_id", "score_mean", "score_std", "latent_r2_mean", "n_diverged",
            "wall_seconds"]
    lines += ["", "## All configurations (best first within each model)", "",
              "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.sort_values(["model", "rank"]).iterrows():
        cells = []
        for c in cols:
            v = r[c]
            cells.append(f"`{v}`" if c == "config_id" else
                         f"{v:.4f}" if isinstance(v, float) and c != "wall_seconds" else
                         f"{v:.1f}" if c == "wall_seconds" else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("regime")
    parser.add_argument("--data-root", default=str(PROJECT / "data"))
    parser.add_argument("--wall-seconds", type=float, default=None,
                        help="wall time of the whole `kedro run` (the search node's is in the JSON)")
    parser.add_argument("--out", default=str(PROJECT / "experiments" / "results"))
    parser.add_argument("--suffix", default="", help="file name suffix, e.g. _lstm for a second search")
    parser.add_argument("--protocol-from", default=None,
                        help="search folder (same held-out runs) holding the protocol's row, if this search lacks it")
    args = parser.parse_args(argv)
    folder = Path(args.data_root) / args.regime / "search"
    missing = [f for f in ("search_results.csv", "run_scores.csv", "best_configurations.json")
               if not (folder / f).is_file()]
    if missing:
        sys.exit(f"{folder} lacks {', '.join(missing)}: run `kedro run --env {args.regime} "
                 "--pipelines=hyperparameter_search` first")
    table = pd.read_csv(folder / "search_results.csv")
    run_scores = pd.read_csv(folder / "run_scores.csv")
    best = json.loads((folder / "best_configurations.json").read_text())
    out = Path(args.out)
    stem = f"search_{args.regime}{args.suffix}"
    protocol = None
    if args.protocol_from:
        ref = Path(args.protocol_from)
        protocol = (pd.read_csv(ref / "search_results.csv"), pd.read_csv(ref / "run_scores.csv"))
    (out / f"{stem}.md").write_text(render(args.regime, table, run_scores, best, args.wall_seconds,
                                           protocol))
    table.to_csv(out / f"{stem}.csv", index=False)
    print(out / f"{stem}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
