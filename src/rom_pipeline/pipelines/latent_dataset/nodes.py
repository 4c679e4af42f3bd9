"""Thin nodes of the latent_dataset pipeline (the science is in :mod:`rom_pipeline.rom.latent`)."""
from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure

from rom_pipeline.config import LatentDatasetConfig, shared_lag
from rom_pipeline.evaluation import plots
from rom_pipeline.rom.latent import latent_windows, unpack_trajectories


def build_latent_dataset(train_latent: dict, latent_dataset: dict[str, Any],
                         **forecaster_blocks: dict[str, Any]) -> dict[str, np.ndarray]:
    """``X_all`` (n, lag, r), ``Y_all`` (n, r), ``run_index`` (n,) at the shared lag, plus the
    per-run trajectories so a model with another lag re-windows without rerunning anything."""
    from rom_pipeline.registry import FORECASTERS

    lag = shared_lag(LatentDatasetConfig.model_validate(latent_dataset),
                     [entry.config.model_validate(forecaster_blocks[name])
                      for name, entry in FORECASTERS.items() if name in forecaster_blocks])
    trajectories = list(unpack_trajectories(train_latent).values())
    X, Y, run_index = latent_windows(trajectories, lag)
    keep = ("run_ids", "lengths", "trajectories", "dt_rom")
    return {"X_all": X, "Y_all": Y, "run_index": run_index, "lag": np.array(lag),
            **{k: train_latent[k] for k in keep}}


def plot_latent_trajectories(train_latent: dict) -> Figure:
    trajectories = list(unpack_trajectories(train_latent).values())
    dt = float(train_latent["dt_rom"])
    times = np.arange(max(len(t) for t in trajectories)) * dt
    return plots.plot_latent_trajectories(trajectories, times=times)
