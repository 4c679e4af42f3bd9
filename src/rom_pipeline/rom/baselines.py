"""Reference forecasters that learn nothing, to tell whether a trained model learned dynamics.

:class:`PersistenceForecaster` holds the last conditioning state: with shift alignment this is the
last observed co-moving density carried along the swarm's track. A model that does not beat it
over the forecast horizon has not learned the latent dynamics (in pure Vicsek flocks, where the
co-moving shape barely changes, persistence is a hard baseline to beat).
"""
from __future__ import annotations

import numpy as np


class PersistenceForecaster:
    """y_k = y_{k-1}: satisfies :class:`rom_pipeline.rom.forecaster.LatentForecaster` with lag 1."""

    name = "persistence"
    lag = 1

    def predict_next(self, windows: np.ndarray) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float64)
        if windows.ndim != 3 or windows.shape[1] != 1:
            raise ValueError(f"windows must have shape (n, 1, r), got {windows.shape}")
        return windows[:, -1].copy()

    def rollout(self, seed_window: np.ndarray, n_steps: int) -> np.ndarray:
        seed_window = np.asarray(seed_window, dtype=np.float64)
        if seed_window.ndim != 2 or seed_window.shape[0] != 1:
            raise ValueError(f"seed_window must have shape (1, r), got {seed_window.shape}")
        if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 0:
            raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
        return np.repeat(seed_window, int(n_steps), axis=0)
