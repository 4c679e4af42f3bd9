"""Thin nodes of the MVAR pipeline (the science is in :mod:`rom_pipeline.rom.mvar`)."""
from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rom_pipeline.config import validate_parameters
from rom_pipeline.evaluation import plots
from rom_pipeline.rom.latent import unpack_trajectories
from rom_pipeline.rom.mvar import MVARForecaster, best_lag, select_lag

logger = logging.getLogger(__name__)


def train_mvar(latent_dataset: dict, parameters: dict[str, Any]) -> tuple[dict, pd.DataFrame, dict]:
    """Scan lags per run (no seams), pick the configured or criterion-selected lag, fit ridge MVAR.

    Returns the model arrays, the lag-scan table and a JSON training summary.
    """
    cfg = validate_parameters(parameters).rom.models.mvar
    trajectories = list(unpack_trajectories(latent_dataset).values())
    shortest = min(len(t) for t in trajectories)
    max_lag = min(cfg.max_lag, shortest // 2)
    scan = select_lag(trajectories, max_lag=max_lag)
    lag = cfg.lag if isinstance(cfg.lag, int) else best_lag(scan, cfg.lag)
    model = MVARForecaster(lag=lag, ridge_alpha=cfg.ridge_alpha,
                           eigenvalue_threshold=cfg.eigenvalue_threshold,
                           coint_rank=cfg.coint_rank).fit(trajectories)
    summary = {
        "model": "MVAR",
        "lag": int(lag),
        "lag_rule": cfg.lag if isinstance(cfg.lag, str) else "fixed",
        "ridge_alpha": cfg.ridge_alpha,
        "n_windows": int(model.n_windows_),
        "train_r2": float(model.train_r2_),
        "train_rmse": float(model.train_rmse_),
        "spectral_radius": float(model.spectral_radius_),
        "spectral_radius_before_enforcement": (
            None if model.spectral_radius_before_ is None else float(model.spectral_radius_before_)
        ),
        "eigenvalue_threshold": cfg.eigenvalue_threshold,
        "coint_rank": cfg.coint_rank,
        "fit_seconds": float(model.fit_seconds_),
    }
    logger.info("MVAR lag %d: train R2 %.4f, spectral radius %.4f", lag, model.train_r2_,
                model.spectral_radius_)
    return model.to_arrays(), scan, summary


def plot_mvar_eigenvalues(mvar_model: dict, parameters: dict[str, Any]) -> Figure:
    model = MVARForecaster.from_arrays(mvar_model)
    threshold = validate_parameters(parameters).rom.models.mvar.eigenvalue_threshold
    return plots.plot_eigenvalues(np.linalg.eigvals(model.companion_matrix()), threshold)


def plot_mvar_lag_scan(lag_scan: pd.DataFrame, training_summary: dict) -> Figure:
    """The lag scan with the lag the fitted model uses marked."""
    return plots.plot_lag_scan(lag_scan, chosen_lag=training_summary["lag"], rule=training_summary.get("lag_rule"))
