"""Figures of the POD stage: singular-value spectrum, leading modes, latent trajectories."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from rom_pipeline.evaluation.plots._common import MODE_CMAP, _grid_shape, _image

def spectrum_window(cumulative_energy, n_modes: int) -> int:
    """How many leading modes the spectrum figure shows: K = min(n, max(3r, r + 5, k_99.9)) with
    k_99.9 the first k with E_k ≥ 0.999, itself capped at 5r so that a slowly decaying spectrum
    (thousands of modes to 99.9 %) still leaves the cut at k = r readable."""
    energy = np.asarray(cumulative_energy, dtype=float)
    n, r = energy.size, int(n_modes)
    reached = np.flatnonzero(energy >= 0.999)
    k_999 = int(reached[0]) + 1 if reached.size else n
    return int(min(n, max(3 * r, r + 5, min(k_999, 5 * r))))


def plot_pod_spectrum(
    singular_values, cumulative_energy, n_modes: int, energy_threshold: float | None = None
) -> Figure:
    """Singular values σ_k (log scale) and cumulative energy E_k = Σ_{j≤k} σ_j² / Σ_j σ_j².

    Only the first K = :func:`spectrum_window` modes are drawn (about 3r), so the cut at k = r
    stays visible when the snapshot matrix has thousands of modes; the modes beyond r are
    shaded as "truncated".

    Args:
        singular_values: (n,) σ_1 ≥ σ_2 ≥ ... of the training snapshot matrix.
        cumulative_energy: (n,) E_k, in [0, 1].
        n_modes: the selected rank r (1 ≤ r ≤ n), drawn as a vertical dashed line at k = r
            in both panels (label ``"r = {r}"``).
        energy_threshold: the energy target that chose r, drawn as a horizontal line.

    Returns:
        Figure with two axes: ``[σ_k, E_k]`` against the mode index k = 1..K (x limits
        [0.5, K + 0.5]).
    """
    sigma = np.asarray(singular_values, dtype=float)
    energy = np.asarray(cumulative_energy, dtype=float)
    if sigma.ndim != 1 or sigma.size == 0:
        raise ValueError(f"singular_values must be a non-empty 1-D array, got shape {sigma.shape}")
    if energy.shape != sigma.shape:
        raise ValueError(
            f"cumulative_energy has shape {energy.shape} but singular_values has {sigma.shape}; "
            "pass both from the same POD fit"
        )
    if int(n_modes) != n_modes or not 1 <= n_modes <= sigma.size:
        raise ValueError(f"n_modes must be an integer in [1, {sigma.size}], got {n_modes!r}")
    n_modes = int(n_modes)
    shown = spectrum_window(energy, n_modes)
    k = np.arange(1, shown + 1)

    fig = Figure(figsize=(10, 4), layout="constrained")
    ax_sigma, ax_energy = fig.subplots(1, 2)
    ax_sigma.semilogy(k, sigma[:shown], "o-", markersize=3, label=r"$\sigma_k$")
    ax_sigma.set_ylabel(r"singular value $\sigma_k$")
    ax_sigma.set_title(f"POD spectrum, first {shown} of {sigma.size} modes")
    ax_energy.plot(k, energy[:shown], "o-", markersize=3, label="cumulative energy")
    ax_energy.set_ylabel("cumulative energy $E_k$")
    ax_energy.set_title(f"r = {n_modes} modes capture {energy[n_modes - 1]:.4f} of the energy")
    for ax in (ax_sigma, ax_energy):
        ax.axvline(n_modes, color="C3", linestyle="--", label=f"r = {n_modes}")
        if shown > n_modes:
            ax.axvspan(n_modes + 0.5, shown + 0.5, color="0.85", alpha=0.5, zorder=0, label="truncated")
        ax.set_xlim(0.5, shown + 0.5)
        ax.set_xlabel("mode index k")
        ax.grid(True, alpha=0.3)
    if energy_threshold is not None:
        ax_energy.axhline(
            float(energy_threshold), color="0.4", linestyle=":", label=f"threshold {energy_threshold:g}"
        )
    ax_sigma.legend()
    ax_energy.legend(loc="lower right")
    return fig


def plot_pod_modes(modes, grid_shape: tuple[int, int], n_show: int = 6, extent=None) -> Figure:
    """The leading POD modes φ_1 .. φ_{n_show} as images on the density grid.

    Args:
        modes: (ny*nx, r) orthonormal columns.
        grid_shape: (ny, nx) of the density grid.
        n_show: how many leading modes to draw (capped at r).
        extent: optional ``(x_min, x_max, y_min, y_max)``.

    Returns:
        Figure whose first ``min(n_show, r)`` axes hold one image each, mode k reshaped to
        (ny, nx) and drawn on a symmetric diverging scale ±max|φ_k|.
    """
    modes = np.asarray(modes, dtype=float)
    if modes.ndim != 2:
        raise ValueError(f"modes must have shape (ny*nx, r), got {modes.shape}")
    ny, nx = (int(s) for s in grid_shape)
    if ny * nx != modes.shape[0]:
        raise ValueError(
            f"grid_shape={tuple(grid_shape)} has {ny * nx} cells but modes has {modes.shape[0]} rows; "
            "pass the (ny, nx) of the density grid the POD was fitted on"
        )
    if int(n_show) != n_show or n_show < 1:
        raise ValueError(f"n_show must be a positive integer, got {n_show!r}")
    n = min(int(n_show), modes.shape[1])
    nrows, ncols = _grid_shape(n)
    fig = Figure(figsize=(3.2 * ncols, 3.0 * nrows), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols)).ravel()
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        field = modes[:, i].reshape(ny, nx)
        scale = float(np.nanmax(np.abs(field))) or 1.0
        image = _image(ax, field, extent, MODE_CMAP, (-scale, scale))
        ax.set_title(f"mode {i + 1}")
        fig.colorbar(image, ax=ax, shrink=0.8)
    fig.suptitle(f"Leading {n} of {modes.shape[1]} POD modes on the density grid (sign is arbitrary)")
    return fig


def plot_latent_trajectories(
    trajectories: Sequence[np.ndarray], times=None, n_modes: int = 4, n_runs: int = 3
) -> Figure:
    """POD coefficients y_k(t) of the first runs, one panel per mode.

    Args:
        trajectories: one (K_i, r) array per run.
        times: ``None`` (x axis = frame index), one (K,) array shared by every run, or one
            (K_i,) array per run.
        n_modes: panels to draw, the first ``min(n_modes, r)`` modes.
        n_runs: runs to draw, the first ``min(n_runs, len(trajectories))``.

    Returns:
        Figure with one axes per mode (shared x); axes j holds one line per run, labelled
        ``"run {i}"``, with ydata ``trajectories[i][:, j]``.
    """
    if len(trajectories) == 0:
        raise ValueError("trajectories is empty; pass one (K, r) latent array per run")
    trajs = [np.asarray(y, dtype=float) for y in trajectories]
    r = trajs[0].shape[1] if trajs[0].ndim == 2 else None
    for i, y in enumerate(trajs):
        if y.ndim != 2 or y.shape[1] != r:
            raise ValueError(f"trajectories[{i}] has shape {y.shape}; expected (K, r) with r = {r}")
    for name, value in (("n_modes", n_modes), ("n_runs", n_runs)):
        if int(value) != value or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    n_show_runs = min(int(n_runs), len(trajs))
    n_show_modes = min(int(n_modes), r)

    if times is None:
        run_times = [np.arange(trajs[i].shape[0], dtype=float) for i in range(n_show_runs)]
        xlabel = "frame"
    else:
        if isinstance(times, np.ndarray) and times.ndim == 1:
            run_times = [times] * n_show_runs
        elif isinstance(times, Sequence) and len(times) > 0 and np.ndim(times[0]) == 1:
            if len(times) < n_show_runs:
                raise ValueError(
                    f"times has {len(times)} per-run arrays but {n_show_runs} runs are drawn; "
                    "pass one time array per run or a single shared one"
                )
            run_times = [np.asarray(t, dtype=float) for t in times[:n_show_runs]]
        else:
            run_times = [np.asarray(times, dtype=float)] * n_show_runs
        xlabel = "time [s]"
        for i in range(n_show_runs):
            if run_times[i].shape != (trajs[i].shape[0],):
                raise ValueError(
                    f"times for run {i} has shape {run_times[i].shape} but the run has "
                    f"{trajs[i].shape[0]} frames"
                )

    fig = Figure(figsize=(9, 2.0 * n_show_modes + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(n_show_modes, 1, sharex=True))
    for j, ax in enumerate(axes):
        for i in range(n_show_runs):
            ax.plot(run_times[i], trajs[i][:, j], label=f"run {i}", linewidth=1.0)
        ax.set_ylabel(f"$y_{{{j + 1}}}$")
        ax.grid(True, alpha=0.3)
    axes[0].legend(loc="upper right", fontsize="small")
    axes[0].set_title("Latent (POD) trajectories")
    axes[-1].set_xlabel(xlabel)
    return fig
