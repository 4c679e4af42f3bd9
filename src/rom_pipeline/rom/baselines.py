"""Reference forecasters that learn no dynamics, to tell whether a trained model learned some.

Both satisfy :class:`rom_pipeline.rom.forecaster.LatentForecaster` with lag 1, so the evaluation
scores them through the same forecast block as MVAR and the LSTM: lifted, placed by every shift
mode and post-processed exactly like a model.

:class:`PersistenceForecaster` holds the last conditioning state: with shift alignment this is the
last observed co-moving density carried along the swarm's track. A model that does not beat it
over the forecast horizon has not learned the latent dynamics (in pure Vicsek flocks, where the
co-moving shape barely changes, persistence is a hard baseline to beat).

:class:`ClimatologyForecaster` forecasts the training runs' mean co-moving latent state at every
lead, whatever the seed: the skill a forecast has without looking at the run at all.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _check_rollout_args(seed_window: np.ndarray, n_steps: int, r: int | None = None) -> np.ndarray:
    seed_window = np.asarray(seed_window, dtype=np.float64)
    if seed_window.ndim != 2 or seed_window.shape[0] != 1 or (r is not None and seed_window.shape[1] != r):
        expected = "(1, r)" if r is None else f"(1, {r})"
        raise ValueError(f"seed_window must have shape {expected}, got {seed_window.shape}")
    if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 0:
        raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
    return seed_window


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
        seed_window = _check_rollout_args(seed_window, n_steps)
        return np.repeat(seed_window, int(n_steps), axis=0)


class ClimatologyForecaster:
    """y_k = ȳ, the mean latent state of the training runs: ȳ = (1/Σ_i K_i) Σ_i Σ_k y_{i,k}
    (every training frame weighted equally), whatever the seed. Lag 1.

    Attributes:
        mean_: (r,) ȳ, set by :meth:`fit`.
        n_frames_: Σ_i K_i, the training frames averaged.
    """

    name = "climatology"
    lag = 1

    def fit(self, trajectories: Sequence[np.ndarray]) -> ClimatologyForecaster:
        """Average every frame of the training trajectories, each (K_i, r)."""
        trajectories = [np.asarray(y, dtype=np.float64) for y in trajectories]
        if not trajectories:
            raise ValueError("ClimatologyForecaster.fit needs at least one training trajectory")
        r = trajectories[0].shape[-1]
        for i, y in enumerate(trajectories):
            if y.ndim != 2 or y.shape[1] != r or y.shape[0] == 0:
                raise ValueError(f"trajectory {i} has shape {y.shape}; expected (K >= 1, {r})")
        stacked = np.concatenate(trajectories)
        self.mean_ = stacked.mean(axis=0)
        self.n_frames_ = int(stacked.shape[0])
        return self

    def _mean(self) -> np.ndarray:
        if not hasattr(self, "mean_"):
            raise RuntimeError("ClimatologyForecaster is not fitted: call fit(trajectories) first")
        return self.mean_

    def predict_next(self, windows: np.ndarray) -> np.ndarray:
        mean = self._mean()
        windows = np.asarray(windows, dtype=np.float64)
        if windows.ndim != 3 or windows.shape[1] != 1 or windows.shape[2] != mean.size:
            raise ValueError(f"windows must have shape (n, 1, {mean.size}), got {windows.shape}")
        return np.repeat(mean[None, :], windows.shape[0], axis=0)

    def rollout(self, seed_window: np.ndarray, n_steps: int) -> np.ndarray:
        mean = self._mean()
        _check_rollout_args(seed_window, n_steps, mean.size)
        return np.repeat(mean[None, :], int(n_steps), axis=0)
