"""Thin nodes of the hyper-parameter search (the science is in :mod:`rom_pipeline.evaluation.search`)."""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rom_pipeline.config import ExperimentConfig, validate_parameters
from rom_pipeline.datasets.runs import RunCollection
from rom_pipeline.evaluation.protocol import TestRun
from rom_pipeline.pipelines.models import evaluation_config
from rom_pipeline.evaluation import plots, search
from rom_pipeline.rom.latent import unpack_trajectories
from rom_pipeline.rom.pod import PODBasis

logger = logging.getLogger(__name__)


def _base_hyperparameters(cfg: ExperimentConfig, model: str) -> dict[str, Any]:
    """The configured model (rom.models.<model>) as constructor arguments."""
    if model == "mvar":
        return cfg.rom.models.mvar.model_dump(exclude={"enabled", "max_lag"})
    return cfg.rom.models.lstm.model_dump(exclude={"enabled"})


def _candidates(cfg: ExperimentConfig, pod: PODBasis) -> list[search.Candidate]:
    """Every model's candidates, then the baselines at each of their (r', POD setting)."""
    pod_grid = search.pod_settings(cfg.search.pod.grid())
    out = []
    for model in cfg.search.enabled():
        block = getattr(cfg.search, model)
        modes = block.modes or cfg.search.modes
        counts = search.mode_counts(pod, modes.fixed_modes, modes.pod_energy,
                                    refit=pod_grid != [{}])
        grid = block.configurations(f"search.{model}")
        out += search.build_candidates(model, _base_hyperparameters(cfg, model), grid, counts,
                                       pod_grid)
    return out + search.baseline_candidates(out)


def _run_loader(train_runs: RunCollection, cfg: ExperimentConfig):
    """``run_id -> TestRun`` of a training run's true density on the ROM grid (no particles)."""
    cell_area = (cfg.sim.Lx / cfg.density.nx) * (cfg.sim.Ly / cfg.density.ny)

    def load(run_id: str) -> TestRun:
        dens = train_runs.density(run_id)
        k = cfg.rom.subsample
        return TestRun(
            run_id=run_id, family=str(train_runs[run_id].get("family", "")),
            times=dens["times"][::k], density=dens["density"][::k].astype(np.float64),
            positions=None, velocities=None, Lx=cfg.sim.Lx, Ly=cfg.sim.Ly,
            periodic=cfg.sim.bc == "periodic", cell_area=cell_area,
        )

    return load


def search_hyperparameters(
    train_latent: dict, pod_basis: dict, train_runs: RunCollection, parameters: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Score every configured candidate on held-out training runs.

    Returns the results table (one row per candidate), the per-run scores and the best
    configuration of every model (JSON).
    """
    cfg = validate_parameters(parameters)
    s = cfg.search
    pod = PODBasis.from_arrays(pod_basis)
    trajectories = unpack_trajectories(train_latent)
    # every check before any fit: the split, the grid, the protocol's seed window
    folds = search.run_folds(list(trajectories), s.validation, s.n_folds, s.holdout_fraction, s.seed)
    if not s.enabled():
        raise ValueError("search.mvar.enabled and search.lstm.enabled are both false: nothing to "
                         "search; enable at least one")
    candidates = _candidates(cfg, pod)
    dt = float(train_latent["dt_rom"])
    if cfg.eval.forecast_start is not None:
        seed_frames = int(round(cfg.eval.forecast_start / dt))
        search.check_protocol_fit(candidates, seed_frames,
                                  f"eval.forecast_start = {cfg.eval.forecast_start:g} s at dt = {dt:g} s")
    lags = [c.lag for c in candidates]
    forecast_start, start_rule = search.search_forecast_start(
        s.forecast_start, cfg.eval.forecast_start, dt, lags)
    shortest = min(len(y) for y in trajectories.values())
    k0 = int(round(forecast_start / dt))
    if shortest - k0 < 2:
        raise ValueError(
            f"the search forecast starts at frame {k0} ({forecast_start:g} s) but the shortest "
            f"training run has {shortest} ROM frames: lower search.forecast_start or the lags"
        )
    # The evaluation's own settings, with the search's start and single shift mode.
    config = dataclasses.replace(
        evaluation_config(parameters), forecast_start=forecast_start,
        shift_modes=(s.shift_mode,), order_parameters=False, lead_windows=(),
    )
    logger.info("search: %d candidates x %d folds (%s), forecast from %.3g s (frame %d: %s)",
                len(candidates), len(folds), s.validation, forecast_start, k0, start_rule)
    tic = time.perf_counter()
    result = search.grid_search(trajectories, pod, _run_loader(train_runs, cfg), candidates, folds,
                                config)
    scored_on = {
        "validation": s.validation,
        "folds": [held for _, held in folds],
        "seed": s.seed,
        "forecast_start": forecast_start,
        "forecast_start_rule": start_rule,
        "shift_mode": s.shift_mode if pod.shift_align else "none",
        "clamp_mode": cfg.eval.clamp_mode,
        "mass_postprocess": cfg.eval.mass_postprocess,
        "score": "mean over held-out runs of the pooled density R2 of the closed-loop forecast",
        "stored_n_modes": int(pod.n_modes_),
        "pod_grid": cfg.search.pod.grid(),
        "search_seconds": time.perf_counter() - tic,
        "budget": result.budget,
    }
    best = search.best_configurations(result.table, candidates, scored_on)
    for model in cfg.search.enabled():
        logger.info("search: best %s %s, held-out R2 %s", model, best[model]["config_id"],
                    best[model]["score_mean"])
    return result.table, result.run_scores, best


def plot_search_scores(results: pd.DataFrame) -> Figure:
    return plots.plot_search_scores(results)
