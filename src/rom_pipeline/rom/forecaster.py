"""The one interface every latent forecaster implements (MVAR, LSTM, and any future model).

Evaluation only talks to this protocol, so it never needs to know which model it holds.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class LatentForecaster(Protocol):
    """A model of y_k = F(y_{k-w}, ..., y_{k-1}) in POD latent space.

    Attributes:
        lag: window length w.
        name: short model name used in reports and output folders (e.g. ``"MVAR"``).
    """

    lag: int
    name: str

    def predict_next(self, windows: np.ndarray) -> np.ndarray:
        """One-step prediction: windows (n, w, r), oldest first -> next states (n, r)."""
        ...

    def rollout(self, seed_window: np.ndarray, n_steps: int) -> np.ndarray:
        """Closed-loop forecast: seed (w, r) of true states -> (n_steps, r) predicted states.

        Each prediction is fed back as the newest input. A diverging rollout returns non-finite
        values rather than raising; the evaluation detects and reports it.
        """
        ...
