"""Latent windows for sequence-to-one forecasters (science.md §5).

For one run with latent trajectory ``y`` of shape (K, r) and lag ``w`` the windows are
``X_k = [y_{k-w}, ..., y_{k-1}]`` (oldest first) with target ``Y_k = y_k`` for ``k = w .. K-1``.
Windows never cross runs: each run contributes ``K - w`` windows and the run index of every
window is kept so validation can hold out whole trajectories.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def latent_windows(
    trajectories: Sequence[np.ndarray], lag: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build windows from per-run latent trajectories.

    Args:
        trajectories: one array (K_i, r) per run.
        lag: window length w >= 1.

    Returns:
        ``X_all`` (n, w, r), ``Y_all`` (n, r) and ``run_index`` (n,) with n = Σ_i (K_i − w).

    Raises:
        ValueError: if ``lag`` < 1, the trajectories disagree on r, or a run is not longer than
            the lag (it would contribute no window).
    """
    if int(lag) != lag or lag < 1:
        raise ValueError(f"lag must be a positive integer, got {lag!r}")
    lag = int(lag)
    if len(trajectories) == 0:
        raise ValueError("latent_windows needs at least one trajectory")
    r = trajectories[0].shape[1]
    xs, ys, idx = [], [], []
    for i, y in enumerate(trajectories):
        y = np.asarray(y)
        if y.ndim != 2 or y.shape[1] != r:
            raise ValueError(f"trajectory {i} has shape {y.shape}; expected (K, {r})")
        K = y.shape[0]
        if K <= lag:
            raise ValueError(
                f"run {i} has {K} latent frames but lag is {lag}: choose a lag smaller than the "
                "number of ROM frames per run (sim.T / (sim.dt * rom.subsample))"
            )
        # sliding_window_view gives (K - lag + 1, r, lag); drop the last (it has no target).
        win = np.lib.stride_tricks.sliding_window_view(y, lag, axis=0)[:-1]
        xs.append(np.ascontiguousarray(win.transpose(0, 2, 1)))
        ys.append(y[lag:])
        idx.append(np.full(K - lag, i, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(idx)


def pack_trajectories(
    trajectories: dict[str, np.ndarray], shifts: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Store per-run latent trajectories as flat arrays (for an ``.npz`` without pickling).

    Returns ``run_ids`` (n_runs,), ``lengths`` (n_runs,), ``trajectories`` (Σ K_i, r) and, if
    given, ``shifts`` (Σ K_i, 2).
    """
    run_ids = list(trajectories)
    out = {
        "run_ids": np.array(run_ids),
        "lengths": np.array([len(trajectories[r]) for r in run_ids], dtype=np.int64),
        "trajectories": np.concatenate([trajectories[r] for r in run_ids]),
    }
    if shifts is not None:
        # integer tracks stay int64, sub-pixel tracks float64
        stacked = np.concatenate([shifts[r] for r in run_ids])
        out["shifts"] = stacked.astype(np.int64 if np.issubdtype(stacked.dtype, np.integer) else np.float64)
    return out


def unpack_trajectories(arrays: dict[str, np.ndarray], key: str = "trajectories") -> dict[str, np.ndarray]:
    """Inverse of :func:`pack_trajectories`: ``{run_id: (K_i, r)}`` (or the shifts with ``key="shifts"``)."""
    bounds = np.concatenate([[0], np.cumsum(arrays["lengths"])])
    data = arrays[key]
    return {str(r): data[a:b] for r, a, b in zip(arrays["run_ids"], bounds[:-1], bounds[1:])}
