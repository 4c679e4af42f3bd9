"""Thin nodes of the hyper-parameter search (the science is in :mod:`rom_pipeline.evaluation.search`)."""
from __future__ import annotations

import dataclasses
import logging
import time
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rom_pipeline.config import SearchConfig
from rom_pipeline.datasets.runs import RunCollection
from rom_pipeline.evaluation.protocol import TestRun
from rom_pipeline.pipelines.models import evaluation_config
from rom_pipeline.evaluation import plots, search
from rom_pipeline.rom.latent import unpack_trajectories
from rom_pipeline.rom.pod import PODBasis

logger = logging.getLogger(__name__)


def _base_hyperparameters(model: str, block: dict[str, Any]) -> dict[str, Any]:
    """The configured model (its ``<model>`` block) as constructor arguments, less the keys a
    search does not vary (registry ``search_exclude``, e.g. the MVAR's lag scan ``max_lag``)."""
    from rom_pipeline.registry import FORECASTERS

    entry = FORECASTERS[model]
    options = entry.options(block)
    return {k: v for k, v in options.items() if k not in entry.search_exclude}


def _candidates(search_cfg: SearchConfig, forecaster_blocks: dict[str, dict[str, Any]],
                pod: PODBasis) -> list[search.Candidate]:
    """Every model's candidates, then the baselines at each of their (r', POD setting)."""
    pod_grid = search.pod_settings(search_cfg.pod.grid())
    out = []
    for model in search_cfg.enabled():
        block = getattr(search_cfg, model)
        modes = block.modes or search_cfg.modes
        counts = search.mode_counts(pod, modes.fixed_modes, modes.pod_energy,
                                    refit=pod_grid != [{}])
        grid = block.configurations(f"search.{model}")
        out += search.build_candidates(model, _base_hyperparameters(model, forecaster_blocks[model]),
                                       grid, counts, pod_grid)
    return out + search.baseline_candidates(out)


def _run_loader(train_runs: RunCollection, rom_grid: dict[str, Any]):
    """``run_id -> TestRun`` of a training run's true density on the ROM grid (no particles)."""

    def load(run_id: str) -> TestRun:
        dens = train_runs.density(run_id)
        k = rom_grid["subsample"]
        return TestRun(
            run_id=run_id, family=str(train_runs[run_id].get("family", "")),
            times=dens["times"][::k], density=dens["density"][::k].astype(np.float64),
            positions=None, velocities=None, Lx=rom_grid["Lx"], Ly=rom_grid["Ly"],
            periodic=rom_grid["periodic"], cell_area=rom_grid["cell_area"],
        )

    return load


def search_hyperparameters(
    train_latent: dict, pod_basis: dict, train_runs: RunCollection, rom_grid: dict[str, Any],
    forecast_setup: dict[str, Any], search_block: dict[str, Any], **forecaster_blocks: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Score every configured candidate on held-out training runs.

    ``search_block`` is the ``search`` block, ``forecaster_blocks`` every registered forecaster's
    block (the hyper-parameters a grid leaves unlisted). Returns the results table (one row per
    candidate), the per-run scores and the best configuration of every model (JSON).
    """
    s = SearchConfig.model_validate(search_block)
    pod = PODBasis.from_arrays(pod_basis)
    trajectories = unpack_trajectories(train_latent)
    # every check before any fit: the split, the grid, the protocol's seed window
    folds = search.run_folds(list(trajectories), s.validation, s.n_folds, s.holdout_fraction, s.seed)
    if not s.enabled():
        raise ValueError("every search.<model>.enabled is false: nothing to search; enable at least one")
    candidates = _candidates(s, forecaster_blocks, pod)
    dt = float(train_latent["dt_rom"])
    given = forecast_setup["forecast_start_given"]
    if given is not None:
        seed_frames = int(round(given / dt))
        search.check_protocol_fit(candidates, seed_frames,
                                  f"eval.forecast_start = {given:g} s at dt = {dt:g} s")
    lags = [c.lag for c in candidates]
    forecast_start, start_rule = search.search_forecast_start(
        s.forecast_start, forecast_setup["forecast_start_given"], dt, lags)
    shortest = min(len(y) for y in trajectories.values())
    k0 = int(round(forecast_start / dt))
    if shortest - k0 < 2:
        raise ValueError(
            f"the search forecast starts at frame {k0} ({forecast_start:g} s) but the shortest "
            f"training run has {shortest} ROM frames: lower search.forecast_start or the lags"
        )
    # The evaluation's own settings, with the search's start and single shift mode.
    config = dataclasses.replace(
        evaluation_config(forecast_setup), forecast_start=forecast_start,
        shift_modes=(s.shift_mode,), order_parameters=False, lead_windows=(),
    )
    logger.info("search: %d candidates x %d folds (%s), forecast from %.3g s (frame %d: %s)",
                len(candidates), len(folds), s.validation, forecast_start, k0, start_rule)
    tic = time.perf_counter()
    result = search.grid_search(trajectories, pod, _run_loader(train_runs, rom_grid), candidates, folds,
                                config)
    scored_on = {
        "validation": s.validation,
        "folds": [held for _, held in folds],
        "seed": s.seed,
        "forecast_start": forecast_start,
        "forecast_start_rule": start_rule,
        "shift_mode": s.shift_mode if pod.shift_align else "none",
        "clamp_mode": forecast_setup["evaluation"]["clamp_mode"],
        "mass_postprocess": forecast_setup["evaluation"]["mass_postprocess"],
        "score": "mean over held-out runs of the pooled density R2 of the closed-loop forecast",
        "stored_n_modes": int(pod.n_modes_),
        "pod_grid": s.pod.grid(),
        "search_seconds": time.perf_counter() - tic,
        "budget": result.budget,
    }
    best = search.best_configurations(result.table, candidates, scored_on)
    for model in s.enabled():
        logger.info("search: best %s %s, held-out R2 %s", model, best[model]["config_id"],
                    best[model]["score_mean"])
    return result.table, result.run_scores, best


def plot_search_scores(results: pd.DataFrame) -> Figure:
    return plots.plot_search_scores(results)
