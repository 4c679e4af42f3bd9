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
"""
from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

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
}

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


def regime_parameters(name: str) -> dict[str, Any]:
    """The thesis protocol with the physics of regime ``name`` (``<regime>`` or ``<regime>_vs``)."""
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
    return p


REGIMES = [*_TABLE, *(f"{r}_vs" for r in _TABLE)]


def header(name: str) -> list[str]:
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
        "sqrt transform; shift alignment; 19 POD modes; MVAR lag 5 ridge 1e-4; LSTM 2x128 lag 5",
        "(dropout 0.1); forecasts seeded at 0.6 s, mass post-processing 'scale'. Unlike the thesis,",
        "the LSTM predicts the next state directly (residual: false; science.md 7 names the residual",
        "output a cause of divergent rollouts) and keeps the checkpoint of best one-step validation",
        "loss on held-out whole runs (closed-loop latent R2 over the held-out horizon favours",
        "barely trained, mean-predicting checkpoints in these regimes; the hyperparameter_search",
        "pipeline scores configurations by closed-loop density R2 instead). Closed-loop LSTM states",
        "are bounded to each mode's training range +- 10 % (clip_rollout 0.1).",
        "The thesis tuned the lag per regime (MVAR lag 4-6, reference_results.md); one lag, 5, is",
        "used here for every regime.",
        "LSTM cost (benchmarks/results/speed_lstm_regimes.md): two torch threads (1.7x one on 2 cores;",
        "rom_pipeline sets GOMP_SPINCOUNT so they do not spin when cores are shared) and patience 20:",
        "in every regime the best epoch came at most 14 epochs after the previous best.",
    ]
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
    check = "--check" in argv
    stale = []
    for name in REGIMES:
        files = render(name)
        if check:
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
