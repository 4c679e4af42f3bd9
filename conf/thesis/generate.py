"""Generate the thesis regime environments conf/<regime>/ from ONE shared protocol.

Kedro's OmegaConfigLoader merges conf/base with a single run environment; it has no include
mechanism (``${oc.env:...}`` reads environment variables, not files), and a custom resolver that
pulls in a shared file would hide the values from anyone reading an environment. So each regime's
``parameters.yml`` is written complete (nothing inherited from conf/base, which may change for
quick experiments), generated here from :data:`PROTOCOL` (the thesis split and ROM settings,
science.md §2 and reference_results.md) plus one row of :data:`REGIMES` (science.md §1.4).
``tests/test_environments.py`` checks that the committed files equal this script's output.

    .venv/bin/python conf/thesis/generate.py          # (re)write all regime environments
    .venv/bin/python conf/thesis/generate.py --check  # exit 1 if a committed file differs
    .venv/bin/python conf/thesis/generate.py --adopt gas data/gas/search/best_configurations.json
        # record the regime's search pick (its rank-1 MVAR; --models mvar,lstm for both) in
        # conf/thesis/selected.yml and rewrite the environments
"""
from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any

import yaml

from rom_pipeline.cli.legacy import render_environment, write_environment

CONF = Path(__file__).resolve().parents[1]

# The thesis protocol shared by every regime (physics columns are filled from REGIMES).
PROTOCOL: dict[str, Any] = {
    "sim": {"N": 100, "T": 20.0, "dt": 0.04, "Lx": 25.0, "Ly": 25.0, "bc": "periodic",
            "save_every": 1, "seed_base": 0},
    "test_sim": {"T": 200.0, "seed_base": 1000},
    "model": {"type": "discrete", "speed_mode": "constant_with_forces"},
    "params": {"R": 4.0},
    "noise": {"kind": "gaussian", "match_variance": True},
    "forces": {"enabled": True, "type": "morse", "params": {"mu_t": 0.3, "rcut_factor": 5.0}},
    "alignment": {"enabled": True},
    "density": {"nx": 64, "ny": 64, "bandwidth": 5.0},
    # 340 training runs: 96 + 80 + 80 + 84 (Cartesian products x samples)
    "train_ic": {
        "gaussian": {"enabled": True, "positions_x": [5.0, 10.0, 15.0, 20.0],
                     "positions_y": [5.0, 10.0, 15.0, 20.0], "variances": [1.5, 3.0, 5.0],
                     "n_samples_per_config": 2, "pairing": "product"},
        "uniform": {"enabled": True, "n_runs": 80},
        "ring": {"enabled": True, "radii": [2.0, 3.5, 5.0, 6.5, 8.0],
                 "widths": [0.4, 0.8, 1.2, 1.8], "n_samples_per_config": 4, "pairing": "product"},
        "two_clusters": {"enabled": True, "separations": [3.0, 5.0, 7.0, 10.0],
                         "sigmas": [1.0, 2.0, 3.0], "n_samples_per_config": 7,
                         "pairing": "product"},
    },
    # 4 unseen test runs
    "test_ic": {
        "gaussian": {"enabled": True, "positions_x": [12.5], "positions_y": [12.5],
                     "variances": [2.5]},
        "uniform": {"enabled": True, "n_runs": 1},
        "ring": {"enabled": True, "radii": [5.0], "widths": [0.8]},
        "two_clusters": {"enabled": True, "separations": [7.0], "sigmas": [2.0]},
    },
    "rom": {
        "subsample": 3, "fixed_modes": 19, "density_transform": "sqrt",
        "density_transform_eps": 1.0e-10, "shift_align": True, "shift_align_ref": "mean",
    },
    "mvar": {"enabled": True, "lag": 5, "ridge_alpha": 1.0e-4, "coint_rank": None,
             "max_lag": 20},
    "lstm": {"enabled": True, "lag": 5, "hidden_units": 128, "num_layers": 2,
             "dropout": 0.1, "residual": False, "differences": False,
             "use_layer_norm": True,
             "normalize_input": True, "learning_rate": 7.0e-4, "batch_size": 512,
             "weight_decay": 1.0e-5, "max_epochs": 300, "patience": 20,
             "gradient_clip": 5.0, "selection": "one_step",
             "clip_rollout": 0.1, "num_threads": 2},
    "eval": {"forecast_start": 0.6, "clamp_mode": "none", "mass_postprocess": "scale",
             "shift_modes": ["oracle", "hold", "extrapolate"]},
    "execution": {"workers": 2},
    # The regime's own search (issue 15): `kedro run --env <regime> --pipelines=hyperparameter_search`
    # scores every candidate on 51 whole held-out *training* runs (never a test run), closed loop
    # from the protocol's 0.6 s seed to the end of each 20 s run, on the stored basis (r' nested in
    # it: no new SVD). `--adopt` below turns its best_configurations.json into the regime's model.
    "search": {
        "validation": "holdout", "holdout_fraction": 0.15, "seed": 0, "shift_mode": "oracle",
        "modes": {"fixed_modes": [10, 14, 19], "pod_energy": []},
        "mvar": {"enabled": True, "pairing": "product",
                 "grid": {"lag": [2, 3, 4, 5], "coint_rank": [None, 0, 4], "ridge_alpha": [1.0e-4]}},
        # The LSTM is searched on the basis the MVAR search chose (adopt the MVAR, regenerate,
        # rerun pod and latent_dataset, then `--params search.mvar.enabled=false,search.lstm.enabled=true`):
        # the thesis's direct LSTM against the default experiment's linear path + closed-loop choice
        # (experiments/results/lstm_default.md). Fits cost 2-6 min each at thesis size.
        "lstm": {"enabled": False, "pairing": "zip",
                 "grid": {"linear_skip": [False, True], "linear_fit": ["training", "all"],
                          "select_initial": [False, True], "selection": ["one_step", "skill"],
                          "noise_std": [0.0, 0.1], "learning_rate": [7.0e-4, 3.0e-4]},
                 "modes": {"fixed_modes": [], "pod_energy": []}},
    },
}

# Each regime's configuration as its search selected it (`--adopt`), with the table that chose it.
SELECTED_FILE = Path(__file__).resolve().with_name("selected.yml")

# science.md §1.4: v0, eta, Morse (Ca, Cr, la, lr); None = forces disabled.
_TABLE: dict[str, tuple[float, float, tuple[float, float, float, float] | None]] = {
    "gas": (3.0, 1.5, (0.5, 0.2, 1.5, 0.5)),
    "blackhole": (4.0, 0.15, (20.0, 0.05, 1.5, 0.3)),
    "supernova": (3.0, 0.15, (0.05, 15.0, 1.5, 0.5)),
    "crystal": (2.0, 0.10, (3.0, 3.0, 2.0, 0.5)),
    "pure_vicsek": (3.0, 0.30, None),
}
_BEHAVIOUR = {
    "gas": "noise-dominated disordered gas",
    "blackhole": "strong attraction, density spike",
    "supernova": "explosive repulsive dispersal",
    "crystal": "balanced forces, lattice-like",
    "pure_vicsek": "alignment only (forces off)",
}


def regime_parameters(name: str, selection: dict[str, Any] | None = None) -> dict[str, Any]:
    """The thesis protocol with the physics of regime ``name`` (``<regime>`` or ``<regime>_vs``)
    and its search selection (``selection``, default: the committed one)."""
    base, vs = (name[:-3], True) if name.endswith("_vs") else (name, False)
    v0, eta, morse = _TABLE[base]
    p = copy.deepcopy(PROTOCOL)
    p["model"]["speed"] = v0
    p["noise"]["eta"] = eta
    p["sim"]["N"] = 300 if base == "crystal" else 100
    if morse is None:
        p["forces"]["enabled"] = False
        p["mvar"]["coint_rank"] = 0  # neutral shapes, see header()
        p["lstm"]["differences"] = True
        p["model"]["speed_mode"] = "variable" if vs else "constant"
    else:
        p["forces"]["params"].update(dict(zip(("Ca", "Cr", "la", "lr"), morse)))
        p["model"]["speed_mode"] = "variable" if vs else "constant_with_forces"
    chosen = selected(name) if selection is None else selection
    for block, values in chosen.get("parameters", {}).items():
        p[block].update(values)
    return p


def _selections() -> dict[str, Any]:
    if not SELECTED_FILE.is_file():
        return {}
    return yaml.safe_load(SELECTED_FILE.read_text()) or {}


def selected(name: str) -> dict[str, Any]:
    """The committed search selection of regime ``name`` ({} if its search has not been adopted)."""
    return _selections().get(name, {})


def adopt(name: str, best_file: Path, models: list[str], table: str | None = None) -> dict[str, Any]:
    """Record ``models``' rank-1 configurations from a search's ``best_configurations.json`` as
    regime ``name``'s selection in :data:`SELECTED_FILE` (the environments are rewritten after).

    A model adopted earlier from another search (e.g. the MVAR, whose search chose the basis,
    before an LSTM search on that basis) is kept, provided both were searched on the same POD
    settings. ``table`` is where the search's table is committed (default
    ``experiments/results/search_<regime>.md``). Refuses, writing nothing: a regime the generator
    does not know, a model the search did not select, models that need different POD settings
    (one environment holds one basis), and a pick that does not fit the test protocol.
    """
    if name not in REGIMES:
        raise SystemExit(f"--adopt: unknown regime {name!r}; choose one of {', '.join(REGIMES)}")
    best = json.loads(best_file.read_text())
    missing = [m for m in models if m not in best]
    if missing:
        raise SystemExit(f"--adopt: {best_file} selected no {', '.join(missing)} (it has "
                         f"{', '.join(k for k in best if k != 'scored_on')}): search that model first")
    previous = selected(name)
    kept = {m: c for m, c in previous.get("chosen", {}).items() if m not in models}
    roms = {m: best[m]["parameters"]["rom"] for m in models}
    roms.update({m: previous["parameters"]["rom"] for m in kept})
    if len({json.dumps(r, sort_keys=True) for r in roms.values()}) > 1:
        raise SystemExit(f"--adopt: the selected models need different POD settings {roms}; one "
                         "environment holds one basis: search the second model on the first's "
                         "basis (regenerate the environment, rerun pod, then its search)")
    parameters: dict[str, Any] = {"rom": next(iter(roms.values()))}
    parameters.update({m: previous["parameters"][m] for m in kept})
    scored = best["scored_on"]
    note = (f"{len(scored['folds'][0])} held-out training runs ({scored['validation']}, seed "
            f"{scored['seed']}), forecast from {scored['forecast_start']:g} s, shift mode "
            f"{scored['shift_mode']}")
    chosen = dict(kept)
    for m in models:
        parameters[m] = best[m]["parameters"][m]
        chosen[m] = {"config_id": best[m]["config_id"], "held_out_r2": best[m]["score_mean"],
                     "baselines": {b: v["score_mean"] for b, v in best[m]["baselines"].items()},
                     "scored_on": note,
                     "table": table or f"experiments/results/search_{name}.md"}
    entry = {"parameters": parameters, "chosen": chosen}
    try:  # the pick must fit the protocol (e.g. a lag <= the 0.6 s seed) before anything is written
        render_environment(name, regime_parameters(name, entry), header(name, entry))
    except ValueError as exc:
        raise SystemExit(f"--adopt: {name}'s selection {parameters} does not fit the test "
                         f"protocol: {exc}") from exc
    everything = _selections()
    everything[name] = entry
    text = ("# Per-regime configurations chosen by each regime's hyperparameter_search on held-out\n"
            "# training runs (never the test runs). Written by `conf/thesis/generate.py --adopt`;\n"
            "# the generator applies `parameters` on top of the thesis protocol.\n")
    SELECTED_FILE.write_text(text + yaml.safe_dump(everything, sort_keys=True, width=100))
    return entry


REGIMES = [*_TABLE, *(f"{r}_vs" for r in _TABLE)]


def header(name: str, selection: dict[str, Any] | None = None) -> list[str]:
    base = name.removesuffix("_vs")
    v0, eta, morse = _TABLE[base]
    lines = [
        f"Thesis regime '{name}' (outputs under data/{name}/): {_BEHAVIOUR[base]}"
        + (", variable speed (VS)" if name.endswith("_vs") else "") + ".",
        "GENERATED by conf/thesis/generate.py from the shared thesis protocol; edit the generator",
        "and rerun it, not this file (tests/test_environments.py checks they agree).",
        "Every parameter is explicit: nothing is inherited from conf/base.",
        f"Physics (science.md 1.4): v0 {v0}, eta {eta}, "
        + ("Morse forces off" if morse is None else
           f"Morse Ca {morse[0]}, Cr {morse[1]}, la {morse[2]}, lr {morse[3]}, mu_t 0.3")
        + f"; N {300 if base == 'crystal' else 100}, L 25, R 4, dt 0.04, gaussian noise (match_variance).",
        "Protocol (science.md 2): 340 training runs of 20 s (gaussian 96, uniform 80, ring 80,",
        "two-cluster 84), 4 unseen test runs of 200 s; 64x64 KDE bandwidth 5 cells; subsample 3;",
        "sqrt transform; shift alignment; 19 POD modes, MVAR lag 5 ridge 1e-4 (unless SELECTED",
        "below); LSTM 2x128 lag 5 (dropout 0.1); forecasts seeded at 0.6 s, mass post-processing",
        "'scale'. Unlike the thesis,",
        "the LSTM predicts the next state directly (residual: false; science.md 7 names the residual",
        "output a cause of divergent rollouts) and keeps the checkpoint of best one-step validation",
        "loss on held-out whole runs (closed-loop latent R2 over the held-out horizon favours",
        "barely trained, mean-predicting checkpoints in these regimes; the hyperparameter_search",
        "pipeline scores configurations by closed-loop density R2 instead). Closed-loop LSTM states",
        "are bounded to each mode's training range +- 10 % (clip_rollout 0.1).",
        "The thesis tuned the lag per regime (MVAR lag 4-6, reference_results.md); here each regime's",
        "search block (hyperparameter_search on held-out training runs) chooses, and",
        "`conf/thesis/generate.py --adopt` records its pick in conf/thesis/selected.yml.",
        "LSTM cost (benchmarks/results/speed_lstm_regimes.md): two torch threads (1.7x one on 2 cores;",
        "rom_pipeline sets GOMP_SPINCOUNT so they do not spin when cores are shared) and patience 20:",
        "in every regime the best epoch came at most 14 epochs after the previous best.",
    ]
    chosen = selected(name) if selection is None else selection
    if chosen:
        lines.append("SELECTED by this regime's search (conf/thesis/selected.yml):")
        for model, c in chosen["chosen"].items():
            lines += [f"  {model}: {c['config_id']},",
                      f"    held-out R2 {c['held_out_r2']:.4f} (climatology "
                      f"{c['baselines'].get('climatology', float('nan')):.4f}, persistence "
                      f"{c['baselines'].get('persistence', float('nan')):.4f}) on {c['scored_on']};",
                      f"    table {c['table']}"]
    else:
        lines.append("Not yet searched: the models are the protocol's (MVAR lag 5, 19 modes).")
    if morse is None:
        lines += [
            "Model form: with forces off nothing restores a flock to a preferred shape: a polarised",
            "flock keeps whatever co-moving shape it has, so every shape is an equilibrium. The MVAR",
            "is therefore fitted in error-correction form with rank 0 (coint_rank 0: a VAR in the",
            "differences, no drift), which keeps a shape instead of relaxing it to the training mean",
            "(the unrestricted lag-5 fit does that: coint_rank null), and the LSTM reads the window's",
            "increments and predicts an increment that is zero for a constant window (differences",
            "true). See docs/results.md.",
        ]
    if name == "pure_vicsek_vs":
        lines += [
            "NOTE: forces are off, so speed_mode 'variable' has no kick (v <- v + dt mu_t F with",
            "F = 0): speeds stay v0, and the same seeds give the same runs as pure_vicsek; it is kept",
            "as the VS twin for completeness of the regime table.",
        ]
    elif base == "pure_vicsek":
        lines.append("Pure Vicsek: speed_mode constant, forces disabled (Morse parameters unused).")
    return [*lines, ""]


def render(name: str) -> dict[str, str]:
    return render_environment(name, regime_parameters(name), header(name))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a committed file differs")
    parser.add_argument("--adopt", nargs=2, metavar=("REGIME", "BEST_JSON"),
                        help="record a search's best_configurations.json as REGIME's selection")
    parser.add_argument("--models", default="mvar",
                        help="comma-separated models to adopt from BEST_JSON (default: mvar)")
    parser.add_argument("--table", default=None,
                        help="the committed search table (default experiments/results/search_<regime>.md)")
    args = parser.parse_args(argv)
    if args.adopt:
        regime, best_file = args.adopt
        entry = adopt(regime, Path(best_file), [m for m in args.models.split(",") if m], args.table)
        print(f"{regime}: adopted {entry['parameters']}")
    stale = []
    for name in REGIMES:
        files = render(name)
        if args.check:
            for filename, text in files.items():
                path = CONF / name / filename
                if not path.is_file() or path.read_text() != text:
                    stale.append(str(path))
        else:
            write_environment(CONF, name, files, force=True)
    if stale:
        sys.stderr.write("out of date (run conf/thesis/generate.py):\n  " + "\n  ".join(stale) + "\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
