"""Sequence-to-one LSTM forecaster in POD latent space (science.md §7), in three parts:

* :mod:`~rom_pipeline.rom.lstm.network`: the ``nn.Module`` (window -> next normalised state);
* :mod:`~rom_pipeline.rom.lstm.training`: the training loop (closed-loop training methods,
  validation, checkpoint selection by closed-loop skill, early stopping, LR schedule);
* :mod:`~rom_pipeline.rom.lstm.forecaster`: :class:`LSTMForecaster` (normalisation, fit,
  ``predict_next``, ``rollout``, the stored payload).
"""
from rom_pipeline.rom.lstm.forecaster import PAYLOAD_FORMAT, LSTMForecaster
from rom_pipeline.rom.lstm.network import SequenceToOneLSTM, count_lstm_parameters
from rom_pipeline.rom.lstm.training import (
    LOG_COLUMNS,
    SELECTIONS,
    closed_loop_r2,
    closed_loop_skill,
    held_out_runs,
)

__all__ = [
    "LOG_COLUMNS", "PAYLOAD_FORMAT", "SELECTIONS", "LSTMForecaster", "SequenceToOneLSTM",
    "closed_loop_r2", "closed_loop_skill", "count_lstm_parameters", "held_out_runs",
]
