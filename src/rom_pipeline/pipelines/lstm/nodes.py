"""Thin nodes of the LSTM pipeline (the science is in :mod:`rom_pipeline.rom.lstm`)."""
from __future__ import annotations

import logging
from typing import Any

import pandas as pd
from matplotlib.figure import Figure

from rom_pipeline.config import validate_parameters
from rom_pipeline.evaluation import plots
from rom_pipeline.execution.progress import progress_bar
from rom_pipeline.rom.latent import unpack_trajectories
from rom_pipeline.rom.lstm import LSTMForecaster

logger = logging.getLogger(__name__)


def train_lstm(latent_dataset: dict, parameters: dict[str, Any]) -> tuple[dict, pd.DataFrame, dict]:
    """Train on whole training runs, holding out whole runs for validation; the checkpoint is chosen
    by ``selection`` (default: closed-loop skill against the training climatology) on the held-out
    runs. Returns the payload, the training log and a summary."""
    cfg = validate_parameters(parameters).rom.models.lstm
    hyper = cfg.model_dump(exclude={"enabled"})
    trajectories = list(unpack_trajectories(latent_dataset).values())
    with progress_bar("LSTM epochs", total=cfg.max_epochs) as advance:
        model = LSTMForecaster(**hyper).fit(trajectories, progress=advance)
    log = model.training_log_
    best = log.loc[log["epoch"] == model.best_epoch_].iloc[0]
    summary = {
        "model": "LSTM",
        "lag": cfg.lag,
        "hyperparameters": hyper,
        "n_parameters": int(model.n_parameters_),
        "best_epoch": int(model.best_epoch_),
        "epochs_run": int(log["epoch"].max()),
        "best_val_loss": float(best["val_loss"]),
        "best_val_rollout_r2": float(best["val_rollout_r2"]),
        "best_val_rollout_skill": float(best["val_rollout_skill"]),
        "validation_runs": [int(i) for i in model.validation_runs_],
        "device": str(model.device_),
        "fit_seconds": float(model.fit_seconds_),
    }
    return model.save_payload(), log, summary


def plot_lstm_training(training_log: pd.DataFrame, training_summary: dict) -> Figure:
    """The training history with the epoch whose weights were kept marked."""
    return plots.plot_training_log(training_log, chosen_epoch=training_summary["best_epoch"])
