"""Integer vs sub-pixel tracks on HELD-OUT TRAINING runs (issue 14: which rom.shift_method is the default).

Every 5th training run is held out; the POD basis (each shift method), the MVAR and the track model are
fitted on the other training runs only, and the held-out runs are scored with the evaluation protocol
(``forecast_start`` of the experiment) in the shift modes ``oracle`` (co-moving shape, true track),
``hold`` and ``lab_ensemble``. Prints the mean over held-out runs of every score and the sub-pixel minus
integer difference, and writes ``experiments/results/shift_method_heldout_<env>.csv``.

    PYTHONPATH=src python experiments/shift_method_heldout.py --env base   # needs data/<experiment>/train
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from rom_pipeline.config import validate_parameters
from rom_pipeline.datasets.runs import RunCollection
from rom_pipeline.evaluation.protocol import EvaluationConfig, TestRun, evaluate_forecaster
from rom_pipeline.evaluation.track import TrackModel
from rom_pipeline.rom.mvar import MVARForecaster
from rom_pipeline.rom.pod import PODBasis

PROJECT = Path(__file__).resolve().parents[1]
SCORES = ("r2_pooled", "r2_lead_0_2", "r2_pod_ceiling", "crps_skill_climatology", "crps_skill_hold",
          "energy_skill_climatology", "spread_skill")


def load_parameters(env: str) -> dict:
    from kedro.config import OmegaConfigLoader

    from rom_pipeline.settings import CONFIG_LOADER_ARGS

    loader = OmegaConfigLoader(conf_source=str(PROJECT / "conf"), **{**CONFIG_LOADER_ARGS, "default_run_env": env})
    return yaml.safe_load(yaml.safe_dump(dict(loader["parameters"])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="base")
    parser.add_argument("--experiment", default="default", help="data/<experiment>/train holds the runs")
    parser.add_argument("--every", type=int, default=5, help="hold out every n-th training run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    cfg = validate_parameters(load_parameters(args.env))
    rom = cfg.rom
    train_dir = PROJECT / "data" / args.experiment / "train"
    ids = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
    runs = RunCollection(train_dir, ids)
    held = ids[:: args.every]
    fit_ids = [r for r in ids if r not in held]
    cell_area = (cfg.sim.Lx / cfg.density.nx) * (cfg.sim.Ly / cfg.density.ny)

    def frames(run_id: str) -> np.ndarray:
        return runs.density(run_id)["density"][:: rom.subsample].astype(np.float64)

    rows = []
    for method in ("integer", "subpixel"):
        tic = time.perf_counter()
        pod = PODBasis(fixed_modes=rom.fixed_modes, pod_energy=rom.pod_energy, transform=rom.density_transform,
                       transform_eps=rom.density_transform_eps, shift_align=True,
                       shift_align_ref=rom.shift_align_ref, shift_method=method)
        pod.fit([lambda r=r: frames(r) for r in fit_ids])
        latent, tracks = [], []
        for r in fit_ids:
            f = frames(r)
            s = pod.estimate_shifts(f)
            latent.append(pod.restrict(f, shifts=s))
            tracks.append(s)
        mvar_cfg = cfg.mvar
        lag = mvar_cfg.lag if isinstance(mvar_cfg.lag, int) else 5
        model = MVARForecaster(lag=lag, ridge_alpha=mvar_cfg.ridge_alpha).fit(latent)
        track = TrackModel(order=cfg.eval.track_order).fit(tracks, pod.grid_shape_)
        config = EvaluationConfig(
            forecast_start=cfg.forecast_start, clamp_mode=cfg.eval.clamp_mode,
            mass_postprocess=cfg.eval.mass_postprocess, shift_modes=("oracle", "hold", "lab_ensemble"),
            order_parameters=False, lead_windows=(0.0, 2.0, 5.0, 10.0),
            ensemble_size=cfg.eval.ensemble_size, ensemble_seed=cfg.eval.ensemble_seed,
        )
        for r in held:
            dens = runs.density(r)
            run = TestRun(run_id=r, family=runs[r]["family"], times=dens["times"][:: rom.subsample],
                          density=frames(r), positions=None, velocities=None, Lx=cfg.sim.Lx, Ly=cfg.sim.Ly,
                          periodic=cfg.sim.bc == "periodic", cell_area=cell_area)
            for row in evaluate_forecaster(model, pod, run, config, track_model=track).metrics:
                rows.append({"shift_method": method, **{k: row.get(k, np.nan) for k in
                                                        ("run_id", "shift_mode", *SCORES)}})
        print(f"{method}: fitted on {len(fit_ids)} runs, scored {len(held)} held-out runs in "
              f"{time.perf_counter() - tic:.1f} s (machine shared)")
    table = pd.DataFrame(rows)
    out = PROJECT / "experiments" / "results" / f"shift_method_heldout_{args.env}.csv"
    table.to_csv(out, index=False)
    means = table.groupby(["shift_mode", "shift_method"])[list(SCORES)].mean()
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 4):
        print(means)
        diff = means.xs("subpixel", level="shift_method") - means.xs("integer", level="shift_method")
        print("\nsubpixel - integer (mean over held-out runs):")
        print(diff)
    print(f"\nwritten {out.relative_to(PROJECT)}")


if __name__ == "__main__":
    main()
