"""The Alvarez-style evaluation protocol on unseen test runs (science.md §8).

For one test run with ROM frames k = 0..T−1 at times t_k (uniform step Δt_ROM):

1. k0 = round(forecast_start / Δt_ROM) conditioning frames 0..k0−1 (k0 ≥ lag); forecast frames
   k0..T−1.
2. Restrict the truth with the training POD: y_k = restrict(ρ_k) using each frame's own
   estimated shift s_k (the "true" or oracle shift) when the basis is shift aligned.
3. Seed the forecaster with the true latent window y_{k0−lag..k0−1} and roll out closed loop
   T − k0 steps.
4. Lift the forecast with the shifts of each requested shift mode, clamp, restore the mass
   M0 = ΔxΔy Σρ_{k0−1} (the last conditioning frame), and score it against ρ_{k0..T−1}.

Shift modes (shift-aligned bases only; otherwise a single mode ``"none"`` is scored):
    ``"oracle"``: the true shifts s_k of the forecast frames (uses the future; an upper bound).
    ``"hold"``: s_{k0−1} for every forecast frame.
    ``"extrapolate"``: s_{k0−1} + (k − k0 + 1)(s_{k0−1} − s_{k0−2}), the last two conditioning
        shifts extended linearly in time (the step taken as the minimal periodic image),
        rounded and wrapped modulo the grid into (−n/2, n/2] like ``PODBasis.estimate_shifts``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rom_pipeline.evaluation.metrics import (
    latent_r2,
    mass_violation,
    negativity_fraction,
    r2_cumulative,
    r2_per_snapshot,
    r2_pooled,
    relative_errors,
    rmse,
    valid_prediction_time,
)
from rom_pipeline.evaluation.postprocess import CLAMP_MODES, MASS_MODES, clamp, mass_postprocess

__all__ = [
    "SHIFT_MODES",
    "EvaluationConfig",
    "EvaluationResult",
    "TestRun",
    "evaluate_forecaster",
    "evaluate_many",
]

logger = logging.getLogger(__name__)

SHIFT_MODES = ("oracle", "hold", "extrapolate")

# Columns of the long R²-vs-time table, in order.
R2_VS_TIME_COLUMNS = (
    "model", "run_id", "family", "shift_mode", "time", "lead_time", "r2", "r2_cumulative",
    "r2_pod_ceiling", "rel_l2", "polarisation", "milling", "nematic",
)


@dataclass
class TestRun:
    """One unseen test trajectory on the ROM time grid.

    Attributes:
        run_id: unique name of the run.
        family: initial-condition family (``"gaussian"``, ``"ring"``, ...).
        times: (T,) frame times in seconds, uniformly spaced (already subsampled to Δt_ROM).
        density: (T, ny, nx) KDE density frames at ``times``.
        positions: (T, N, 2) particle positions at ``times``, or None.
        velocities: (T, N, 2) particle velocities at ``times``, or None (given with positions).
        Lx, Ly: domain size.
        periodic: True for a periodic domain (minimal-image geometry in order parameters).
        cell_area: ΔxΔy of the density grid.
    """

    __test__ = False  # not a pytest test class despite its name

    run_id: str
    family: str
    times: np.ndarray
    density: np.ndarray
    positions: np.ndarray | None
    velocities: np.ndarray | None
    Lx: float
    Ly: float
    periodic: bool
    cell_area: float

    def __post_init__(self) -> None:
        self.times = np.asarray(self.times, dtype=np.float64)
        self.density = np.asarray(self.density)
        if self.density.ndim != 3:
            raise ValueError(
                f"TestRun {self.run_id!r}: density has shape {self.density.shape}; "
                "expected (T, ny, nx)"
            )
        T = self.density.shape[0]
        if self.times.shape != (T,):
            raise ValueError(
                f"TestRun {self.run_id!r}: times has shape {self.times.shape} but density has "
                f"{T} frames; pass one time per density frame"
            )
        if (self.positions is None) != (self.velocities is None):
            raise ValueError(
                f"TestRun {self.run_id!r}: positions and velocities must be given together "
                "(both arrays or both None)"
            )
        if self.positions is not None:
            self.positions = np.asarray(self.positions, dtype=np.float64)
            self.velocities = np.asarray(self.velocities, dtype=np.float64)
            for name, arr in (("positions", self.positions), ("velocities", self.velocities)):
                if arr.ndim != 3 or arr.shape[0] != T or arr.shape[2] != 2:
                    raise ValueError(
                        f"TestRun {self.run_id!r}: {name} has shape {arr.shape}; expected "
                        f"({T}, N, 2) on the same time grid as the density"
                    )
            if self.positions.shape != self.velocities.shape:
                raise ValueError(
                    f"TestRun {self.run_id!r}: positions {self.positions.shape} and velocities "
                    f"{self.velocities.shape} disagree"
                )
        for name in ("Lx", "Ly", "cell_area"):
            value = getattr(self, name)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(
                    f"TestRun {self.run_id!r}: {name} must be positive and finite, got {value!r}"
                )


@dataclass
class EvaluationConfig:
    """Settings of the evaluation protocol (the ``eval`` parameter block).

    Attributes:
        forecast_start: seconds from the run start at which the forecast begins; the
            conditioning frames are those before it (production 0.6 s = 5 frames).
        clamp_mode: positivity treatment, one of ``CLAMP_MODES``.
        mass_postprocess: mass restoration, one of ``MASS_MODES``.
        shift_modes: shift modes to score (``SHIFT_MODES``); ignored for a basis without
            shift alignment, which scores a single mode ``"none"``.
        valid_r2_threshold: R²(t) level defining the valid prediction time.
        order_parameters: compute the truth's order parameters when particles are given.
        divergence_factor: a rollout is diverged when non-finite or when
            max|ŷ| > divergence_factor · max|y| (y the run's true latent trajectory).
    """

    forecast_start: float
    clamp_mode: str = "none"
    mass_postprocess: str = "none"
    shift_modes: tuple[str, ...] = ("oracle",)
    valid_r2_threshold: float = 0.5
    order_parameters: bool = True
    divergence_factor: float = 1e6

    def __post_init__(self) -> None:
        if not np.isfinite(self.forecast_start) or self.forecast_start < 0:
            raise ValueError(
                f"eval.forecast_start must be a non-negative number of seconds, "
                f"got {self.forecast_start!r}"
            )
        if self.clamp_mode not in CLAMP_MODES:
            raise ValueError(f"eval.clamp_mode is {self.clamp_mode!r}; use one of {CLAMP_MODES}")
        if self.mass_postprocess not in MASS_MODES:
            raise ValueError(
                f"eval.mass_postprocess is {self.mass_postprocess!r}; use one of {MASS_MODES}"
            )
        if isinstance(self.shift_modes, str):
            self.shift_modes = (self.shift_modes,)
        self.shift_modes = tuple(self.shift_modes)
        unknown = [m for m in self.shift_modes if m not in SHIFT_MODES]
        if not self.shift_modes or unknown or len(set(self.shift_modes)) != len(self.shift_modes):
            raise ValueError(
                f"eval.shift_modes is {self.shift_modes!r}; give a non-empty list of distinct "
                f"modes from {SHIFT_MODES}"
            )
        if not np.isfinite(self.valid_r2_threshold):
            raise ValueError(
                f"eval.valid_r2_threshold must be finite, got {self.valid_r2_threshold!r}"
            )
        if not np.isfinite(self.divergence_factor) or self.divergence_factor <= 0:
            raise ValueError(
                f"eval.divergence_factor must be positive, got {self.divergence_factor!r}"
            )


@dataclass
class EvaluationResult:
    """Everything the protocol produced for one (model, test run).

    Attributes:
        metrics: one dict per scored shift mode (run_id, family, model, shift_mode, metrics).
        r2_vs_time: long table with one row per (shift mode, forecast frame); columns
            ``R2_VS_TIME_COLUMNS``.
        prediction: (T_f, ny, nx) float32 post-processed forecast of the first shift mode
            (NaN if it diverged).
        truth_forecast: (T_f, ny, nx) float32 true density of the forecast frames.
        forecast_times: (T_f,) times of the forecast frames (seconds).
    """

    metrics: list[dict]
    r2_vs_time: pd.DataFrame
    prediction: np.ndarray
    truth_forecast: np.ndarray
    forecast_times: np.ndarray = field(repr=False)


def _uniform_step(times: np.ndarray, run_id: str) -> float:
    if times.size < 2:
        raise ValueError(f"TestRun {run_id!r} has {times.size} frame(s); need at least 2")
    steps = np.diff(times)
    dt = float(np.median(steps))
    if dt <= 0 or not np.allclose(steps, dt, rtol=1e-6, atol=1e-9 * abs(dt)):
        raise ValueError(
            f"TestRun {run_id!r}: times are not uniformly increasing (steps from {steps.min()} "
            f"to {steps.max()}); subsample the run to the ROM time grid first"
        )
    return dt


def _forecast_start_index(config: EvaluationConfig, dt: float, lag: int, T: int, run_id: str) -> int:
    """k0 = number of conditioning frames, checked against the lag and the run length."""
    k0 = int(round(config.forecast_start / dt))
    if k0 < lag:
        raise ValueError(
            f"eval.forecast_start = {config.forecast_start} s gives {k0} conditioning frame(s) "
            f"at Δt_ROM = {dt:g} s, but the forecaster needs a seed of lag = {lag} frames: "
            f"set eval.forecast_start >= {lag * dt:g} s"
        )
    if k0 >= T:
        raise ValueError(
            f"eval.forecast_start = {config.forecast_start} s leaves no forecast frame in run "
            f"{run_id!r} ({T} frames, last at {(T - 1) * dt:g} s after the start): lower it"
        )
    return k0


def _forecast_shifts(
    mode: str, true_shifts: np.ndarray | None, k0: int, T: int, grid_shape: tuple[int, int]
) -> np.ndarray | None:
    """(T − k0, 2) integer shifts of the forecast frames for one shift mode."""
    if mode == "none":
        return None
    n_f = T - k0
    if mode == "oracle":
        return true_shifts[k0:].copy()
    last = true_shifts[k0 - 1]
    if mode == "hold":
        return np.repeat(last[None, :], n_f, axis=0)
    # extrapolate: minimal-image step between the last two conditioning shifts, so a blob
    # crossing the periodic seam keeps its velocity.
    n = np.asarray(grid_shape, dtype=np.int64)
    step = np.mod(last - true_shifts[k0 - 2] + n // 2, n) - n // 2
    m = np.arange(1, n_f + 1, dtype=np.float64)[:, None]
    wrapped = np.mod(np.rint(last[None, :] + m * step[None, :]).astype(np.int64), n)
    return np.where(wrapped > n // 2, wrapped - n, wrapped)  # the basis' (-n/2, n/2] convention


def _order_parameter_series(run: TestRun, k0: int) -> dict[str, np.ndarray]:
    """Per-frame polarisation, milling and nematic order of the truth over forecast frames."""
    from rom_pipeline.physics.order_parameters import milling, nematic_order, polarisation

    pos = run.positions[k0:]
    vel = run.velocities[k0:]
    return {
        "polarisation": np.asarray(polarisation(vel), dtype=np.float64),
        "milling": np.asarray(milling(pos, vel, run.Lx, run.Ly, run.periodic), dtype=np.float64),
        "nematic": np.asarray(nematic_order(vel), dtype=np.float64),
    }


def evaluate_forecaster(forecaster, pod, run: TestRun, config: EvaluationConfig) -> EvaluationResult:
    """Score one latent forecaster on one unseen test run (science.md §8).

    Args:
        forecaster: a ``LatentForecaster`` (``lag``, ``name``, ``predict_next``, ``rollout``).
        pod: the fitted training basis (``restrict``, ``lift``, ``estimate_shifts``,
            ``shift_align``, ``grid_shape_``, ``n_modes_``).
        run: the test run on the ROM time grid.
        config: protocol settings.

    Returns:
        An :class:`EvaluationResult`. Metrics per shift mode: ``r2_pooled``,
        ``r2_snapshot_mean``, ``r2_latent``, ``r2_pod_ceiling`` (pooled R² of
        lift(restrict(ρ)) with oracle shifts, no post-processing: the best any latent forecast
        can reach), ``r2_one_step`` (teacher forced: predict_next on true windows ending before
        each forecast frame, lifted with oracle shifts, no post-processing), ``rel_{l1,l2,linf}
        _{mean,end}``, ``rmse``, ``mass_violation_max``, ``negativity_fraction``, ``valid_time``
        (s), ``diverged``, ``forecast_seconds`` (wall time of the rollout), and the truth's
        ``polarisation_mean``, ``milling_mean``, ``nematic_mean`` (NaN without particles).
        A diverged forecast has NaN skill metrics and does not raise.

    Raises:
        ValueError: if ``eval.forecast_start`` leaves fewer than ``lag`` conditioning frames
            (or, for ``extrapolate``, fewer than 2) or no forecast frame, if the run's grid
            differs from the basis, or if the forecaster returns the wrong shape.
    """
    model = str(forecaster.name)
    lag = int(forecaster.lag)
    density = np.asarray(run.density, dtype=np.float64)
    T = density.shape[0]
    grid_shape = tuple(int(g) for g in pod.grid_shape_)
    if density.shape[1:] != grid_shape:
        raise ValueError(
            f"TestRun {run.run_id!r}: density grid {density.shape[1:]} differs from the POD "
            f"grid {grid_shape}; use the training KDE grid for the test runs"
        )
    dt = _uniform_step(run.times, run.run_id)
    k0 = _forecast_start_index(config, dt, lag, T, run.run_id)
    aligned = bool(pod.shift_align)
    shift_modes = config.shift_modes if aligned else ("none",)
    if "extrapolate" in shift_modes and k0 < 2:
        raise ValueError(
            f"eval.forecast_start = {config.forecast_start} s gives {k0} conditioning frame(s); "
            f"eval.shift_modes 'extrapolate' needs 2: set eval.forecast_start >= {2 * dt:g} s"
        )

    true_shifts = np.asarray(pod.estimate_shifts(density), dtype=np.int64) if aligned else None
    latent = np.asarray(pod.restrict(density, shifts=true_shifts), dtype=np.float64)
    r = latent.shape[1]
    n_f = T - k0
    truth_f = density[k0:]
    times_f = run.times[k0:]
    lead_time = times_f - times_f[0]
    oracle_shifts = true_shifts[k0:] if aligned else None

    # Closed-loop forecast from the true seed window.
    seed = latent[k0 - lag:k0].copy()
    tic = time.perf_counter()
    with np.errstate(all="ignore"):
        y_pred = np.asarray(forecaster.rollout(seed, n_f), dtype=np.float64)
    forecast_seconds = time.perf_counter() - tic
    if y_pred.shape != (n_f, r):
        raise ValueError(
            f"forecaster {model!r}.rollout returned shape {y_pred.shape}; expected ({n_f}, {r}) "
            "(n_steps, n_modes)"
        )
    scale = float(np.max(np.abs(latent))) or 1.0
    with np.errstate(all="ignore"):
        latent_diverged = bool(
            not np.all(np.isfinite(y_pred))
            or np.max(np.abs(y_pred)) > config.divergence_factor * scale
        )
    if latent_diverged:
        logger.warning("%s on %s: closed-loop rollout diverged", model, run.run_id)

    # Diagnostics that do not depend on the rollout.
    with np.errstate(all="ignore"):
        ceiling_density = np.asarray(pod.lift(latent[k0:], shifts=oracle_shifts), dtype=np.float64)
        ceiling_t = r2_per_snapshot(truth_f, ceiling_density)
        r2_ceiling = r2_pooled(truth_f, ceiling_density)
        windows = np.lib.stride_tricks.sliding_window_view(latent, lag, axis=0)[k0 - lag:T - lag]
        windows = np.ascontiguousarray(windows.transpose(0, 2, 1))  # (n_f, lag, r), oldest first
        y_one = np.asarray(forecaster.predict_next(windows), dtype=np.float64)
        if y_one.shape != (n_f, r):
            raise ValueError(
                f"forecaster {model!r}.predict_next returned shape {y_one.shape}; expected "
                f"({n_f}, {r})"
            )
        if np.all(np.isfinite(y_one)):
            one_step_density = pod.lift(y_one, shifts=oracle_shifts)
            r2_one_step = r2_pooled(truth_f, one_step_density)
        else:
            r2_one_step = float("nan")

    nan_series = np.full(n_f, np.nan)
    if config.order_parameters and run.positions is not None:
        order = _order_parameter_series(run, k0)
    else:
        order = {"polarisation": nan_series, "milling": nan_series, "nematic": nan_series}

    target_mass = run.cell_area * float(density[k0 - 1].sum())
    metrics_rows: list[dict] = []
    tables: list[pd.DataFrame] = []
    first_prediction: np.ndarray | None = None
    for mode in shift_modes:
        shifts = _forecast_shifts(mode, true_shifts, k0, T, grid_shape)
        diverged = latent_diverged
        pred = None
        if not diverged:
            with np.errstate(all="ignore"):
                pred = np.asarray(pod.lift(y_pred, shifts=shifts), dtype=np.float64)
                diverged = not np.all(np.isfinite(pred))
                if not diverged:
                    pred = clamp(pred, config.clamp_mode)
                    pred = mass_postprocess(
                        pred, config.mass_postprocess, target_mass, cell_area=run.cell_area
                    )
                    diverged = not np.all(np.isfinite(pred))
            if diverged:
                logger.warning(
                    "%s on %s (%s shifts): non-finite density after lifting/post-processing",
                    model, run.run_id, mode,
                )
        if diverged:
            pred = np.full_like(truth_f, np.nan)
            r2_t = r2_cum = nan_series
            rel = {"l1": nan_series, "l2": nan_series, "linf": nan_series}
            skill = dict.fromkeys(
                ("r2_pooled", "r2_snapshot_mean", "r2_latent", "rmse", "mass_violation_max",
                 "negativity_fraction", "valid_time"),
                float("nan"),
            )
        else:
            r2_t = r2_per_snapshot(truth_f, pred)
            r2_cum = r2_cumulative(truth_f, pred)
            rel = relative_errors(truth_f, pred)
            skill = {
                "r2_pooled": r2_pooled(truth_f, pred),
                "r2_snapshot_mean": float(np.mean(r2_t)),
                "r2_latent": latent_r2(latent[k0:], y_pred),
                "rmse": rmse(truth_f, pred),
                "mass_violation_max": mass_violation(truth_f, pred, run.cell_area),
                "negativity_fraction": negativity_fraction(pred),
                "valid_time": valid_prediction_time(times_f, r2_t, config.valid_r2_threshold),
            }
        if first_prediction is None:
            first_prediction = pred
        row = {
            "run_id": run.run_id,
            "family": run.family,
            "model": model,
            "shift_mode": mode,
            "forecast_start": float(run.times[k0] - run.times[0]),
            "n_forecast_frames": n_f,
            **skill,
            "r2_pod_ceiling": r2_ceiling,
            "r2_one_step": r2_one_step,
        }
        for p in ("l1", "l2", "linf"):
            row[f"rel_{p}_mean"] = float(np.mean(rel[p]))
            row[f"rel_{p}_end"] = float(rel[p][-1])
        row.update(
            diverged=diverged,
            forecast_seconds=forecast_seconds,
            polarisation_mean=float(np.mean(order["polarisation"])),
            milling_mean=float(np.mean(order["milling"])),
            nematic_mean=float(np.mean(order["nematic"])),
        )
        metrics_rows.append(row)
        tables.append(
            pd.DataFrame(
                {
                    "model": model,
                    "run_id": run.run_id,
                    "family": run.family,
                    "shift_mode": mode,
                    "time": times_f,
                    "lead_time": lead_time,
                    "r2": r2_t,
                    "r2_cumulative": r2_cum,
                    "r2_pod_ceiling": ceiling_t,
                    "rel_l2": rel["l2"],
                    "polarisation": order["polarisation"],
                    "milling": order["milling"],
                    "nematic": order["nematic"],
                },
                columns=list(R2_VS_TIME_COLUMNS),
            )
        )
        logger.debug(
            "%s on %s (%s shifts): R²_pooled = %.4f (POD ceiling %.4f), valid time %.2f s",
            model, run.run_id, mode, row["r2_pooled"], r2_ceiling, row["valid_time"],
        )

    return EvaluationResult(
        metrics=metrics_rows,
        r2_vs_time=pd.concat(tables, ignore_index=True),
        prediction=first_prediction.astype(np.float32),
        truth_forecast=truth_f.astype(np.float32),
        forecast_times=times_f.copy(),
    )


def evaluate_many(
    forecaster, pod, runs: Iterable[TestRun], config: EvaluationConfig
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, EvaluationResult]]:
    """Run :func:`evaluate_forecaster` on every test run.

    Returns:
        ``test_results`` (one row per run × shift mode), ``r2_vs_time`` (long table, all runs)
        and ``{run_id: EvaluationResult}``.

    Raises:
        ValueError: if ``runs`` is empty or two runs share a ``run_id``.
    """
    results: dict[str, EvaluationResult] = {}
    for run in runs:
        if run.run_id in results:
            raise ValueError(f"two test runs share run_id {run.run_id!r}; run ids must be unique")
        results[run.run_id] = evaluate_forecaster(forecaster, pod, run, config)
    if not results:
        raise ValueError("evaluate_many got no test runs; check the test simulation outputs")
    test_results = pd.DataFrame([row for res in results.values() for row in res.metrics])
    r2_vs_time = pd.concat([res.r2_vs_time for res in results.values()], ignore_index=True)
    return test_results, r2_vs_time, results
