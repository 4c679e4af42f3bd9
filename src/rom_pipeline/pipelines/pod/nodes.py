"""Thin nodes of the POD pipeline (the science is in :mod:`rom_pipeline.rom.pod`)."""
from __future__ import annotations

import logging
from functools import partial
from typing import Any

import numpy as np
import psutil
from matplotlib.figure import Figure

from rom_pipeline.config import ExecutionBlock, ROMConfig
from rom_pipeline.datasets.runs import RunCollection
from rom_pipeline.evaluation import plots
from rom_pipeline.execution.parallel import keep_cluster, map_ordered
from rom_pipeline.rom.latent import pack_trajectories
from rom_pipeline.rom.pod import PODBasis

logger = logging.getLogger(__name__)


def _subsampled_density(runs: RunCollection, run_id: str, subsample: int) -> np.ndarray:
    return runs.density(run_id)["density"][::subsample].astype(np.float64)


def choose_pod_solver(train_runs: RunCollection, subsample: int) -> str:
    """``"krylov"`` (leading modes, rows kept in memory: seconds at thesis size) when twice the
    training snapshot matrix, float64, fits in the memory available now, else ``"gram"`` (whole
    spectrum, streamed over the runs: memory independent of the number of runs). The size is
    estimated from the first run's subsampled frame count times the number of runs."""
    first = train_runs.density(train_runs.run_ids[0])["density"][::subsample]
    snapshot_bytes = len(train_runs) * first.size * 8
    available = psutil.virtual_memory().available
    solver = "krylov" if 2 * snapshot_bytes <= available else "gram"
    logger.info("POD: snapshot matrix about %.2f GiB, %.2f GiB available: %s solver",
                snapshot_bytes / 2**30, available / 2**30, solver)
    return solver


def fit_pod_basis(train_runs: RunCollection, rom: dict[str, Any], execution: dict[str, Any],
                  rom_grid: dict[str, Any]) -> tuple[dict, dict]:
    """Fit the POD basis on every training run (streamed one run at a time) with the ``rom``
    block's settings, on the ROM grid's frames, with the solver :func:`choose_pod_solver` picks:
    in this process on the "krylov" route (which keeps the rows here), else streamed and parallel
    per the ``execution`` block.

    Returns the basis as arrays (``PODBasis.to_arrays``, plus ``x``/``y`` cell centres and
    ``dt_rom``) and a JSON summary (r, energy captured, snapshot count, fit time).
    """
    rom = ROMConfig.model_validate(rom)
    solver = choose_pod_solver(train_runs, rom.subsample)
    pod = PODBasis(
        fixed_modes=rom.fixed_modes, pod_energy=rom.pod_energy,
        transform=rom.density_transform, transform_eps=rom.density_transform_eps,
        shift_align=rom.shift_align, shift_align_ref=rom.shift_align_ref,
        shift_method=rom.shift_method, solver=solver,
    )
    loaders = [partial(_subsampled_density, train_runs, r, rom.subsample) for r in train_runs]
    execution = ExecutionBlock.model_validate(execution).to_execution()
    if solver == "krylov":
        # The rows are kept in this process, so workers would ship every one of them back; the
        # per-run work (load, align, transform) is lighter than that: on the gas regime the fit
        # took 29 s in process against 137 s on the 2-worker cluster (speed_pod.txt, run D).
        pod.fit(loaders)
    else:
        with keep_cluster(execution):  # one cluster for the reference pass and the main pass
            pod.fit(loaders, map_fn=partial(map_ordered, config=execution, label="POD runs"))
    first = train_runs.density(train_runs.run_ids[0])
    arrays = {**pod.to_arrays(), "x": first["x"], "y": first["y"], "dt_rom": np.array(rom_grid["dt_rom"])}
    r = pod.n_modes_
    summary = {
        "n_modes": int(r),
        "energy_captured": float(pod.cumulative_energy_[r - 1]),
        "n_snapshots": int(pod.n_snapshots_),
        "n_runs": len(train_runs),
        "grid_shape": list(pod.grid_shape_),
        "transform": rom.density_transform,
        "shift_align": rom.shift_align,
        "fit_seconds": float(pod.fit_seconds_),
    }
    logger.info("POD: r = %d modes capture %.4f of the energy (%d snapshots)", r,
                summary["energy_captured"], summary["n_snapshots"])
    return arrays, summary


def project_training_runs(
    train_runs: RunCollection, pod_basis: dict, rom_grid: dict[str, Any]
) -> dict[str, np.ndarray]:
    """Latent trajectories y = Φᵀ(x − μ) of every training run, with their alignment shifts."""
    pod = PODBasis.from_arrays(pod_basis)
    latent, shifts = {}, {}
    for run_id in train_runs:
        frames = _subsampled_density(train_runs, run_id, rom_grid["subsample"])
        s = pod.estimate_shifts(frames)
        latent[run_id] = pod.restrict(frames, shifts=s)
        shifts[run_id] = s
    return {**pack_trajectories(latent, shifts), "dt_rom": np.array(rom_grid["dt_rom"])}


def plot_pod_spectrum(pod_basis: dict, rom: dict[str, Any]) -> Figure:
    rom = ROMConfig.model_validate(rom)
    pod = PODBasis.from_arrays(pod_basis)
    threshold = None if rom.fixed_modes else rom.pod_energy
    return plots.plot_pod_spectrum(pod.singular_values_, pod.cumulative_energy_, pod.n_modes_, threshold)


def plot_pod_modes(pod_basis: dict) -> Figure:
    pod = PODBasis.from_arrays(pod_basis)
    x, y = pod_basis["x"], pod_basis["y"]
    dx, dy = x[1] - x[0], y[1] - y[0]
    extent = (x[0] - dx / 2, x[-1] + dx / 2, y[0] - dy / 2, y[-1] + dy / 2)
    return plots.plot_pod_modes(pod.modes_, pod.grid_shape_, n_show=6, extent=extent)
