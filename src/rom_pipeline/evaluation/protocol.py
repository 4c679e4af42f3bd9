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

The forecast block (steps 3-4) is one function, :func:`forecast_block`; the hyper-parameter
search scores held-out training runs through it too.

Shift modes (shift-aligned bases only; otherwise a single mode ``"none"`` is scored):
    ``"oracle"`` ("co-moving shape (true track)"): the true shifts s_k of the forecast frames. It
        uses the future track, so it measures how well the co-moving shape is forecast, not
        where the swarm goes.
    ``"hold"``: s_{k0−1} for every forecast frame.
    ``"extrapolate"``: s_{k0−1} + (k − k0 + 1)(s_{k0−1} − s_{k0−2}), the last two conditioning
        shifts extended linearly in time (the step taken as the minimal periodic image),
        wrapped modulo the grid into (−n/2, n/2] like ``PODBasis.estimate_shifts`` (and rounded
        to whole cells for integer tracks).
    ``"lab_ensemble"``: no future information. A model of the track fitted on the training runs
        (:class:`rom_pipeline.evaluation.track.TrackModel`; the track is the alignment shifts or,
        by default, the phase track, ``eval.track_method``, placed by :meth:`ForecastBlock.placement`)
        gives the law of the displacement after the last seed frame; the scored density is the
        ensemble mean, the co-moving
        forecast convolved exactly with that law in Fourier space, and ``eval.ensemble_size``
        seeded members (the forecast shape on sampled tracks) get the proper scores of
        :mod:`rom_pipeline.evaluation.scores` (fair CRPS and energy score, as skill against the
        climatological shape at uniformly random positions and against the held track, and the
        spread/skill ratio). With a per-forecaster
        :class:`~rom_pipeline.evaluation.blend.ClimatologyBlend` (``eval.ensemble_blend``) the
        ensemble and its mean are blended with the climatology per lead window.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from rom_pipeline.evaluation.metrics import (
    TruthStatistics,
    density_scores,
    latent_r2,
    r2_pooled,
    valid_prediction_time,
)
from rom_pipeline.evaluation.postprocess import CLAMP_MODES, MASS_MODES, clamp, mass_postprocess
from rom_pipeline.evaluation.scores import mixture_frame_scores, skill, spread_skill_ratio
from rom_pipeline.evaluation.track import (
    check_track_method,
    lab_frame_mean,
    phase_concentration,
    phase_positions,
    phase_track,
    translated_ensemble_scores,
    translated_mixture_components,
)

__all__ = [
    "SHIFT_MODES",
    "SHIFT_MODE_LABELS",
    "BlockForecast",
    "EvaluationConfig",
    "EvaluationResult",
    "ForecastBlock",
    "ModeForecast",
    "TestRun",
    "evaluate_forecaster",
    "evaluate_many",
    "forecast_block",
    "forecast_shifts",
    "check_lead_windows",
    "forecast_start_index",
    "lead_window_names",
    "lead_window_r2",
    "lift_forecast",
    "teacher_forced",
]

logger = logging.getLogger(__name__)

SHIFT_MODES = ("oracle", "hold", "extrapolate", "lab_ensemble")

#: What each shift mode measures, for every human-facing report (the keys stay for compatibility).
SHIFT_MODE_LABELS = {
    "oracle": "co-moving shape (true track): the forecast shape placed on the true future track; "
              "measures the shape forecast alone, not where the swarm goes",
    "hold": "lab frame, track held: the forecast shape placed at the last seed position",
    "extrapolate": "lab frame, track extrapolated: the forecast shape moved on with the last "
                   "seed velocity",
    "lab_ensemble": "lab frame, track forecast (no future information): the ensemble mean of the "
                    "forecast shape over the predicted law of the track",
    "none": "no shift alignment: the forecast lives in the lab frame",
}

#: Short forms of :data:`SHIFT_MODE_LABELS` for one-line summaries (the console's closing lines).
SHIFT_MODE_SHORT = {
    "oracle": "true track", "hold": "track held", "extrapolate": "track extrapolated",
    "lab_ensemble": "track forecast", "none": "lab frame",
}

# Per-frame ensemble scores of the lab_ensemble mode (NaN in the other modes' rows).
ENSEMBLE_FRAME_COLUMNS = (
    "crps", "crps_climatology", "crps_hold", "energy", "energy_climatology", "energy_hold",
    "ensemble_variance", "ensemble_mean_mse",
)

# Columns of the long R²-vs-time table, in order.
R2_VS_TIME_COLUMNS = (
    "model", "run_id", "family", "shift_mode", "time", "lead_time", "r2", "r2_cumulative",
    "r2_pod_ceiling", "rel_l2", "polarisation", "milling", "nematic", *ENSEMBLE_FRAME_COLUMNS,
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
        lead_windows: increasing edges e_0 < e_1 < ... (s after the forecast start, e_0 >= 0) of
            the lead-time windows [e_i, e_{i+1}) and [e_last, end] scored by pooled R²
            (``r2_lead_<a>_<b>``); empty for none.
        ensemble_size: members M >= 1 of the ``lab_ensemble`` mode (the spread/skill ratio
            needs M >= 2).
        ensemble_seed: seed of the sampled tracks (members) and of the climatology's random
            positions.
        track_method: the track the ``lab_ensemble`` track model forecasts, one of
            ``TRACK_METHODS`` (:mod:`rom_pipeline.evaluation.track`, "Which track").
    """

    forecast_start: float
    clamp_mode: str = "none"
    mass_postprocess: str = "none"
    shift_modes: tuple[str, ...] = ("oracle",)
    valid_r2_threshold: float = 0.5
    order_parameters: bool = True
    divergence_factor: float = 1e6
    lead_windows: tuple[float, ...] = ()
    ensemble_size: int = 20
    ensemble_seed: int = 0
    track_method: str = "alignment"

    def __post_init__(self) -> None:
        check_track_method(self.track_method)
        if isinstance(self.ensemble_size, bool) or int(self.ensemble_size) != self.ensemble_size \
                or self.ensemble_size < 1:
            raise ValueError(
                f"eval.ensemble_size is {self.ensemble_size!r}; the lab-frame ensemble needs an "
                "integer number of members >= 1 (e.g. 20)"
            )
        self.ensemble_size = int(self.ensemble_size)
        self.lead_windows = tuple(float(e) for e in self.lead_windows)
        check_lead_windows(self.lead_windows)
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


def check_lead_windows(edges, horizon: float | None = None) -> None:
    """Refuse lead-window edges that are not finite, not >= 0, not strictly increasing, or (given
    the forecast ``horizon`` in s) not inside it: every window must hold a forecast frame."""
    edges = [float(e) for e in edges]
    if any(not np.isfinite(e) for e in edges) or (edges and edges[0] < 0) or any(
        b <= a for a, b in zip(edges, edges[1:])
    ):
        raise ValueError(
            f"eval.lead_windows = {edges}: give strictly increasing, finite edges >= 0 in seconds "
            "after the forecast start, e.g. [0, 2, 5, 10, 20] for the windows 0-2, 2-5, 5-10, "
            "10-20 and 20 s to the end"
        )
    if horizon is not None and edges and edges[-1] >= horizon:
        raise ValueError(
            f"eval.lead_windows = {edges}: the last window starts at {edges[-1]:g} s but the "
            f"forecast covers only {horizon:g} s (test_sim.T - eval.forecast_start); drop the "
            f"edges >= {horizon:g} s or raise test_sim.T"
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


def forecast_start_index(forecast_start: float, dt: float, lag: int, T: int, run_id: str) -> int:
    """k0 = round(forecast_start / Δt_ROM) conditioning frames, checked against the seed length
    ``lag`` (k0 ≥ lag) and the run length T (k0 < T: at least one forecast frame)."""
    k0 = int(round(forecast_start / dt))
    if k0 < lag:
        raise ValueError(
            f"eval.forecast_start = {forecast_start} s gives {k0} conditioning frame(s) "
            f"at Δt_ROM = {dt:g} s, but the forecaster needs a seed of lag = {lag} frames: "
            f"set eval.forecast_start >= {lag * dt:g} s"
        )
    if k0 >= T:
        raise ValueError(
            f"eval.forecast_start = {forecast_start} s leaves no forecast frame in run "
            f"{run_id!r} ({T} frames, last at {(T - 1) * dt:g} s after the start): lower it"
        )
    return k0


def forecast_shifts(
    mode: str, true_shifts: np.ndarray | None, k0: int, T: int, grid_shape: tuple[int, int]
) -> np.ndarray | None:
    """(T − k0, 2) shifts of the forecast frames for one shift mode (None for ``"none"``); integer
    tracks give integer shifts, sub-pixel tracks real ones. ``"lab_ensemble"`` has no single track
    (see :func:`lift_forecast`)."""
    if mode == "none":
        return None
    n_f = T - k0
    if mode == "oracle":
        return true_shifts[k0:].copy()
    last = true_shifts[k0 - 1]
    if mode == "hold":
        return np.repeat(last[None, :], n_f, axis=0)
    if mode != "extrapolate":
        raise ValueError(f"unknown shift mode {mode!r}; use one of {SHIFT_MODES} or 'none'")
    # extrapolate: minimal-image step between the last two conditioning shifts, so a blob
    # crossing the periodic seam keeps its velocity.
    m = np.arange(1, n_f + 1, dtype=np.float64)[:, None]
    if not np.issubdtype(true_shifts.dtype, np.integer):  # sub-pixel track: no rounding
        n = np.asarray(grid_shape, dtype=np.float64)
        step = np.mod(last - true_shifts[k0 - 2] + n / 2, n) - n / 2
        wrapped = np.mod(last[None, :] + m * step[None, :], n)
        return np.where(wrapped > n / 2, wrapped - n, wrapped)
    n = np.asarray(grid_shape, dtype=np.int64)
    step = np.mod(last - true_shifts[k0 - 2] + n // 2, n) - n // 2
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


# ---------------------------------------------------------------------- the forecast block
@dataclass
class ForecastBlock:
    """The truth side of one run's forecast block: everything that does not depend on the model.

    Built once per run (and shared by every forecaster scored on it, e.g. all search candidates).

    Attributes:
        run: the run on the ROM time grid.
        k0: conditioning frames; the forecast covers frames k0..T−1 (n_f = T − k0 of them).
        latent: (T, r) true latent trajectory y_k = restrict(ρ_k) with each frame's own shift;
            a basis with r' < r modes reads its first r' columns (modes are nested).
        true_shifts: (T, 2) integer shifts estimated on the truth, or None without alignment.
        truth: (n_f, ny, nx) float64 true density of the forecast frames.
        times: (n_f,) times of the forecast frames (s).
        lead_time: (n_f,) times − times[0] (s): 0 at the first forecast frame.
        target_mass: M0 = ΔxΔy Σρ_{k0−1}, the mass of the last conditioning frame.
        grid_shape: (ny, nx).
        track_method: ``config.track_method``: what ``track_mean``, ``track_cov`` and
            ``member_shifts`` are positions of (the alignment shifts, or the phase track);
            :meth:`placement` turns them into the shifts that place a forecast shape.
        track_mean, track_cov: (n_f, 2) mean and (n_f, 2, 2) covariance of the forecast
            frames' track under the track model (``lab_ensemble`` only, else None).
        member_shifts: (M, n_f, 2) sampled tracks of the ensemble members (``lab_ensemble``).
        climatology: ``lab_ensemble`` only: per-frame scores (``crps``, ``energy``, ``mse_mean``,
            ``variance``, each (n_f,)) of the climatological reference ensemble, the lifted
            training-mean co-moving state at ``ensemble_size`` seeded, uniformly random positions
            per frame. It depends on the truth and the basis mean only (lift(0) is the same for
            every r' <= r), so it is scored once here for every forecaster on the block.
        climatology_positions: (M, n_f, 2) the climatological reference's random positions
            (``lab_ensemble`` only).
    """

    run: TestRun
    k0: int
    latent: np.ndarray
    true_shifts: np.ndarray | None
    truth: np.ndarray
    times: np.ndarray
    lead_time: np.ndarray
    target_mass: float
    grid_shape: tuple[int, int]
    _ceiling: dict[int, np.ndarray] = field(default_factory=dict, repr=False)
    track_method: str = "alignment"
    track_mean: np.ndarray | None = field(default=None, repr=False)
    track_cov: np.ndarray | None = field(default=None, repr=False)
    member_shifts: np.ndarray | None = field(default=None, repr=False)
    climatology: dict[str, np.ndarray] | None = field(default=None, repr=False)
    climatology_positions: np.ndarray | None = field(default=None, repr=False)
    _truth_statistics: TruthStatistics | None = field(default=None, repr=False)

    @classmethod
    def prepare(
        cls, pod, run: TestRun, config: EvaluationConfig, seed_length: int,
        latent: np.ndarray | None = None, track_model=None, score_climatology: bool = True,
    ) -> ForecastBlock:
        """Estimate the run's true shifts, restrict it, and cut it at ``config.forecast_start``.

        Args:
            pod: the fitted basis (all stored modes).
            run: the run.
            config: protocol settings (``forecast_start``, ``shift_modes``).
            seed_length: the longest seed window that will be taken from the block (the lag).
            latent: (T, r) precomputed restriction of ``run.density`` (e.g. the stored
                trajectory of a training run); None restricts here.
            track_model: a fitted :class:`rom_pipeline.evaluation.track.TrackModel` (training
                tracks only); required by the ``lab_ensemble`` shift mode.
            score_climatology: score the climatological reference ensemble here (``lab_ensemble``);
                False leaves ``climatology`` None (only its positions are drawn).

        Raises:
            ValueError: if the run's grid differs from the basis, the forecast start leaves fewer
                than ``seed_length`` conditioning frames (or fewer than 2 for ``extrapolate``) or
                no forecast frame.
        """
        density = np.asarray(run.density, dtype=np.float64)
        T = density.shape[0]
        grid_shape = tuple(int(g) for g in pod.grid_shape_)
        if density.shape[1:] != grid_shape:
            raise ValueError(
                f"TestRun {run.run_id!r}: density grid {density.shape[1:]} differs from the POD "
                f"grid {grid_shape}; use the training KDE grid for the test runs"
            )
        dt = _uniform_step(run.times, run.run_id)
        k0 = forecast_start_index(config.forecast_start, dt, int(seed_length), T, run.run_id)
        aligned = bool(pod.shift_align)
        if "lab_ensemble" in config.shift_modes:
            if not aligned:
                raise ValueError(
                    "eval.shift_modes asks for 'lab_ensemble' but the POD basis has no shift "
                    "alignment (rom.shift_align: false): without alignment the forecast already "
                    "lives in the lab frame; drop 'lab_ensemble' or set rom.shift_align: true"
                )
            if track_model is None:
                raise ValueError(
                    "eval.shift_modes 'lab_ensemble' needs a track model fitted on the training "
                    "shifts (evaluation.track.TrackModel); pass track_model="
                )
        if aligned and "extrapolate" in config.shift_modes and k0 < 2:
            raise ValueError(
                f"eval.forecast_start = {config.forecast_start} s gives {k0} conditioning "
                f"frame(s); eval.shift_modes 'extrapolate' needs 2: set eval.forecast_start >= "
                f"{2 * dt:g} s"
            )
        true_shifts = np.asarray(pod.estimate_shifts(density)) if aligned else None  # int or sub-pixel
        if latent is None:
            latent = pod.restrict(density, shifts=true_shifts)
        times = run.times[k0:]
        track = {}
        if aligned and "lab_ensemble" in config.shift_modes:
            n_f = T - k0
            if config.track_method == "phase":  # the seed frames' phase track (their restriction)
                observed = phase_track(pod, np.asarray(latent)[:k0], true_shifts[:k0])
            else:
                observed = true_shifts[:k0].astype(np.float64)
            last = observed[-1]
            # how concentrated the last seed frame's reconstruction is (eval.track_conditioning)
            covariate = float(phase_concentration(
                pod.lift(np.asarray(latent)[k0 - 1:k0, : int(pod.n_modes_)], shifts=None))[0])
            mean, cov = track_model.displacement_law(observed, n_f, covariate)
            samples = track_model.sample_displacements(
                observed, n_f, config.ensemble_size, seed=config.ensemble_seed, covariate=covariate
            )
            rng = np.random.default_rng([config.ensemble_seed, 1])
            n = np.asarray(grid_shape, dtype=np.float64)
            track.update({"track_method": config.track_method, "track_mean": last + mean,
                          "track_cov": cov, "member_shifts": last + samples,
                          "climatology_positions": rng.uniform(-n / 2, n / 2, size=(config.ensemble_size, n_f, 2))})
        block = cls(
            run=run, k0=k0, latent=np.asarray(latent, dtype=np.float64), true_shifts=true_shifts,
            truth=density[k0:], times=times, lead_time=times - times[0],
            target_mass=run.cell_area * float(density[k0 - 1].sum()), grid_shape=grid_shape,
            **track,
        )
        if track and score_climatology:
            block.climatology = _climatology_scores(pod, block, config)
        return block

    def placement(self, shape: np.ndarray, frames=slice(None)
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The alignment shifts that place the co-moving forecast ``shape`` (n, ny, nx), forecast
        frames ``frames`` (a slice or indices), in the lab frame (``lab_ensemble`` only): mean
        (n, 2), covariance (n, 2, 2) and members (M, n, 2). The track itself for
        ``track_method="alignment"``; for ``"phase"``, ``s = phase(g) - p`` so that each placed
        frame's circular centre of mass is the track ``p``
        (:func:`rom_pipeline.evaluation.track.phase_positions`)."""
        mean, cov = self.track_mean[frames], self.track_cov[frames]
        members = self.member_shifts[:, frames]
        if self.track_method == "alignment":
            return mean, cov, members
        centre = phase_positions(shape)
        if centre.shape != mean.shape:
            raise ValueError(f"placement: {shape.shape[0]} shape frames for {mean.shape[0]} track frames")
        return centre - mean, cov, centre[None] - members

    @property
    def n_forecast(self) -> int:
        return self.truth.shape[0]

    @property
    def truth_statistics(self) -> TruthStatistics:
        """The truth side of the density metrics (:class:`~rom_pipeline.evaluation.metrics.TruthStatistics`
        of ``truth``), computed on first use and shared by every forecast scored on the block."""
        if self._truth_statistics is None:
            self._truth_statistics = TruthStatistics(self.truth)
        return self._truth_statistics

    def lead_window_ranges(self, edges: tuple[float, ...]) -> dict[str, tuple[int, int]]:
        """``{r2_lead_<a>_<b>: (start, stop)}``: the forecast frames of each lead window of
        :func:`lead_window_r2` as a range (``lead_time`` increases, so each window is contiguous)."""
        bounds = (*edges, np.inf)
        return {name: (int(np.searchsorted(self.lead_time, lo, side="left")),
                       int(np.searchsorted(self.lead_time, hi, side="left")))
                for name, lo, hi in zip(lead_window_names(edges), bounds[:-1], bounds[1:])}

    @property
    def oracle_shifts(self) -> np.ndarray | None:
        """(n_f, 2) true shifts of the forecast frames (None without alignment)."""
        return None if self.true_shifts is None else self.true_shifts[self.k0:]

    def shift_modes(self, config: EvaluationConfig) -> tuple[str, ...]:
        """The scored shift modes: ``config.shift_modes`` when aligned, else ``("none",)``."""
        return config.shift_modes if self.true_shifts is not None else ("none",)

    def ceiling(self, basis) -> np.ndarray:
        """(n_f, ny, nx) lift of the true latent forecast frames with r' = ``basis.n_modes_``
        modes and oracle shifts, no post-processing: the best any r'-mode forecast can reach."""
        r = int(basis.n_modes_)
        if r not in self._ceiling:
            with np.errstate(all="ignore"):
                self._ceiling[r] = np.asarray(
                    basis.lift(self.latent[self.k0:, :r], shifts=self.oracle_shifts),
                    dtype=np.float64,
                )
        return self._ceiling[r]


def lift_forecast(basis, y_pred: np.ndarray, block: ForecastBlock, mode: str, blend=None) -> np.ndarray:
    """(n_f, ny, nx) density of a latent forecast ``y_pred`` (n_f, r') placed by shift mode
    ``mode``: ρ̂_k = lift(ŷ_k, s_k) with s_k from :func:`forecast_shifts`. The one place a shift
    mode turns a latent forecast into densities (a new mode adds a branch here).

    ``"lab_ensemble"``: E[S_{−s} g_k] with g_k = lift(ŷ_k) in the co-moving frame and s ~
    N(mean_k, cov_k), the placement of g_k on the block's track law (:meth:`ForecastBlock.placement`,
    :func:`rom_pipeline.evaluation.track.lab_frame_mean`);
    with a :class:`~rom_pipeline.evaluation.blend.ClimatologyBlend` ``blend``, the blended mean
    v_k E[S_{−s} g_k] + (1 − v_k) mean(lift(0)) (``blend.mean_weights``) (the climatology's mean over uniform positions is
    the constant field of its mass)."""
    if mode == "lab_ensemble":
        shape = np.asarray(basis.lift(y_pred, shifts=None), dtype=np.float64)
        shift_mean, shift_cov, _ = block.placement(shape)
        mean = lab_frame_mean(shape, shift_mean, shift_cov)
        if blend is None:
            return mean
        w = blend.weights_at(block.lead_time, mean=True)[:, None, None]
        level = float(np.mean(basis.lift(np.zeros((1, y_pred.shape[1])), shifts=None)))
        return w * mean + (1.0 - w) * level
    shifts = forecast_shifts(mode, block.true_shifts, block.k0, block.latent.shape[0],
                             block.grid_shape)
    return np.asarray(basis.lift(y_pred, shifts=shifts), dtype=np.float64)


def lead_window_r2(
    truth: np.ndarray, pred: np.ndarray, lead_time: np.ndarray, edges: tuple[float, ...]
) -> dict[str, float]:
    """Pooled R² (:func:`r2_pooled`) of the frames in each lead-time window, keyed by
    :func:`lead_window_names`. Windows are [e_i, e_{i+1}) and the last [e_last, end]; a window
    with no frame is NaN."""
    out = {}
    bounds = (*edges, np.inf)
    for name, lo, hi in zip(lead_window_names(edges), bounds[:-1], bounds[1:]):
        inside = (lead_time >= lo) & (lead_time < hi)
        out[name] = r2_pooled(truth[inside], pred[inside]) if inside.any() else float("nan")
    return out


def lead_window_names(edges: tuple[float, ...]) -> list[str]:
    """Column names ``r2_lead_<a>_<b>`` of the lead windows [a, b) and ``r2_lead_<a>_end``."""
    ends = [f"{e:g}" for e in edges[1:]] + ["end"]
    return [f"r2_lead_{a:g}_{b}" for a, b in zip(edges, ends)]


@dataclass
class ModeForecast:
    """One shift mode of a scored forecast.

    Attributes:
        shift_mode: the mode.
        prediction: (n_f, ny, nx) post-processed forecast density (NaN everywhere if diverged).
        diverged: the rollout diverged or its lifted density is non-finite.
        scores: ``r2_pooled``, ``r2_snapshot_mean``, ``r2_latent``, ``mse`` (mean over frames
            and cells of (ρ − ρ̂)²), ``rmse``, ``mass_violation_max``, ``negativity_fraction``,
            ``valid_time`` and one ``r2_lead_<a>_<b>`` per lead window (NaN when diverged).
        r2_t, r2_cumulative: (n_f,) per-frame and cumulative R².
        rel: ``{"l1", "l2", "linf"}`` (n_f,) per-frame relative errors.
        ensemble: ``lab_ensemble`` only: (n_f,) per-frame ``ENSEMBLE_FRAME_COLUMNS``; else None.
    """

    shift_mode: str
    prediction: np.ndarray
    diverged: bool
    scores: dict[str, float]
    r2_t: np.ndarray
    r2_cumulative: np.ndarray
    rel: dict[str, np.ndarray]
    ensemble: dict[str, np.ndarray] | None = None


@dataclass
class BlockForecast:
    """Output of :func:`forecast_block`.

    Attributes:
        y_pred: (n_f, r') closed-loop latent forecast.
        forecast_seconds: wall time of the rollout.
        latent_diverged: non-finite rollout or max|ŷ| > divergence_factor · max|y|.
        modes: one :class:`ModeForecast` per scored shift mode, in order.
    """

    y_pred: np.ndarray
    forecast_seconds: float
    latent_diverged: bool
    modes: list[ModeForecast]


def _score_density(
    block: ForecastBlock, pred: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray,
    config: EvaluationConfig,
) -> tuple[dict[str, float], np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Scores of one post-processed forecast (the metrics of :mod:`rom_pipeline.evaluation.metrics`
    in one pass, :func:`~rom_pipeline.evaluation.metrics.density_scores`, the truth side taken
    from the block), its R²(t), cumulative R² and relative errors."""
    fused = density_scores(block.truth_statistics, pred, block.run.cell_area,
                           block.lead_window_ranges(config.lead_windows))
    r2_t = fused["r2_t"]
    scores = {
        "r2_pooled": fused["r2_pooled"],
        "r2_snapshot_mean": float(np.mean(r2_t)),
        "r2_latent": latent_r2(y_true, y_pred),
        "rmse": fused["rmse"],
        "mass_violation_max": fused["mass_violation_max"],
        "negativity_fraction": fused["negativity_fraction"],
        "valid_time": valid_prediction_time(block.times, r2_t, config.valid_r2_threshold),
        "mse": fused["mse"],
        **fused["windows"],
    }
    return scores, r2_t, fused["r2_cumulative"], fused["rel"]


def forecast_block(
    forecaster, basis, block: ForecastBlock, config: EvaluationConfig, blend=None,
) -> BlockForecast:
    """The one forecast block (science.md §8): seed, roll out, lift, post-process, score.

    With r' = ``basis.n_modes_`` and y = ``block.latent[:, :r']`` (T, r'):

    1. seed: the true window y_{k0−lag..k0−1} (lag = ``forecaster.lag``);
    2. roll out closed loop n_f = T − k0 steps: ŷ (n_f, r');
    3. for every scored shift mode: lift ρ̂ = :func:`lift_forecast` (n_f, ny, nx);
    4. post-process: ``clamp`` (``config.clamp_mode``), then restore the mass M0 of the last
       conditioning frame (``config.mass_postprocess``);
    5. score ρ̂ against ``block.truth`` and ŷ against y_{k0..T−1}.

    ``blend`` (a :class:`~rom_pipeline.evaluation.blend.ClimatologyBlend`, or None): the
    ``lab_ensemble`` mode scores the forecaster's mixture with climatology (its mean and its
    proper scores); the other modes ignore it.

    Evaluation and hyper-parameter search both score through this function, so a forecast
    scores the same wherever it is scored. A diverged forecast (non-finite or
    max|ŷ| > divergence_factor · max|y|, or a non-finite density) gets NaN scores; it does not
    raise.

    Raises:
        ValueError: if the forecaster returns the wrong shape.
    """
    name = str(getattr(forecaster, "name", type(forecaster).__name__))
    r, lag, k0 = int(basis.n_modes_), int(forecaster.lag), block.k0
    y = block.latent[:, :r]
    n_f = block.n_forecast
    seed = y[k0 - lag:k0].copy()
    tic = time.perf_counter()
    with np.errstate(all="ignore"):
        y_pred = np.asarray(forecaster.rollout(seed, n_f), dtype=np.float64)
    forecast_seconds = time.perf_counter() - tic
    if y_pred.shape != (n_f, r):
        raise ValueError(
            f"forecaster {name!r}.rollout returned shape {y_pred.shape}; expected ({n_f}, {r}) "
            "(n_steps, n_modes)"
        )
    scale = float(np.max(np.abs(y))) or 1.0
    with np.errstate(all="ignore"):
        latent_diverged = bool(
            not np.all(np.isfinite(y_pred))
            or np.max(np.abs(y_pred)) > config.divergence_factor * scale
        )
    if latent_diverged:
        logger.warning("%s on %s: closed-loop rollout diverged", name, block.run.run_id)

    modes = []
    nan_series = np.full(n_f, np.nan)
    for mode in block.shift_modes(config):
        diverged = latent_diverged
        pred = None
        if not diverged:
            with np.errstate(all="ignore"):
                pred = lift_forecast(basis, y_pred, block, mode, blend)
                diverged = not np.all(np.isfinite(pred))
                if not diverged:
                    if config.clamp_mode != "none":  # "none" would only copy the movie
                        pred = clamp(pred, config.clamp_mode)
                    pred = mass_postprocess(pred, config.mass_postprocess, block.target_mass,
                                            cell_area=block.run.cell_area)
                    diverged = not np.all(np.isfinite(pred))
            if diverged:
                logger.warning(
                    "%s on %s (%s shifts): non-finite density after lifting/post-processing",
                    name, block.run.run_id, mode,
                )
        if diverged:
            scores = dict.fromkeys(
                ("r2_pooled", "r2_snapshot_mean", "r2_latent", "rmse", "mass_violation_max",
                 "negativity_fraction", "valid_time", "mse",
                 *lead_window_names(config.lead_windows)),
                float("nan"),
            )
            ensemble = None
            if mode == "lab_ensemble":
                scores.update(dict.fromkeys(ENSEMBLE_SCORES, float("nan")))
                ensemble = dict.fromkeys(ENSEMBLE_FRAME_COLUMNS, nan_series)
            modes.append(ModeForecast(
                mode, np.full_like(block.truth, np.nan), True, scores, nan_series,
                nan_series, {"l1": nan_series, "l2": nan_series, "linf": nan_series}, ensemble))
        else:
            scores, r2_t, r2_cum, rel = _score_density(block, pred, y[k0:], y_pred, config)
            ensemble = None
            if mode == "lab_ensemble":
                ensemble = _ensemble_scores(basis, y_pred, block, config, blend)
                scores.update(_ensemble_summary(ensemble, config.ensemble_size))
            modes.append(ModeForecast(mode, pred, False, scores, r2_t, r2_cum, rel, ensemble))
    return BlockForecast(y_pred, forecast_seconds, latent_diverged, modes)


#: Scalar ensemble scores of the ``lab_ensemble`` mode (means over the forecast frames).
ENSEMBLE_SCORES = (
    "crps", "energy_score", "crps_skill_climatology", "energy_skill_climatology",
    "crps_skill_hold", "energy_skill_hold", "spread_skill",
)


def _postprocessor(block: ForecastBlock, config: EvaluationConfig):
    def post(frames: np.ndarray) -> np.ndarray:
        return mass_postprocess(clamp(frames, config.clamp_mode), config.mass_postprocess,
                                block.target_mass, cell_area=block.run.cell_area)
    return post


def _ensemble_scores(basis, y_pred: np.ndarray, block: ForecastBlock, config: EvaluationConfig,
                     blend=None):
    """Per-frame scores (``ENSEMBLE_FRAME_COLUMNS``) of the lab-frame ensemble and its references.

    Members: the co-moving forecast lift(ŷ_k) placed on the sampled tracks ``block.member_shifts``
    (:meth:`ForecastBlock.placement`).
    Climatology: ``block.climatology``, scored once per block by :func:`_climatology_scores`.
    Hold: the forecast shape at s_{k0−1}, a single (deterministic) member. Every member is
    post-processed like the scored forecasts (clamp, mass restoration). With a ``blend``, the
    model's scores are those of the mixture w_k F_k + (1 − w_k) C_k with the climatological
    ensemble C (:func:`rom_pipeline.evaluation.scores.mixture_frame_scores`).
    """
    post = _postprocessor(block, config)
    shape = np.asarray(basis.lift(y_pred, shifts=None), dtype=np.float64)
    members = block.placement(shape)[2]
    if block.climatology is None:
        block.climatology = _climatology_scores(basis, block, config)
    if blend is None:
        model = translated_ensemble_scores(block.truth, shape, members, post)
    else:
        r = int(basis.n_modes_)
        climatology_shape = np.asarray(basis.lift(np.zeros((1, r)), shifts=None), dtype=np.float64)[0]
        components = translated_mixture_components(block.truth, shape, members,
                                                   climatology_shape, block.climatology_positions, post)
        model = mixture_frame_scores(components, blend.weights_at(block.lead_time))
    climatology = block.climatology
    held = np.repeat(block.true_shifts[block.k0 - 1][None].astype(np.float64), block.n_forecast, axis=0)
    hold = translated_ensemble_scores(block.truth, shape, held[None], post)
    return {
        "crps": model["crps"], "crps_climatology": climatology["crps"], "crps_hold": hold["crps"],
        "energy": model["energy"], "energy_climatology": climatology["energy"],
        "energy_hold": hold["energy"], "ensemble_variance": model["variance"],
        "ensemble_mean_mse": model["mse_mean"],
    }


def _climatology_scores(basis, block: ForecastBlock, config: EvaluationConfig) -> dict[str, np.ndarray]:
    """Per-frame scores of the climatological reference ensemble of ``block``: the lifted
    training-mean co-moving state lift(0) at M = ``config.ensemble_size`` independent, uniformly
    random positions per frame (seed ``[config.ensemble_seed, 1]``), post-processed like the scored
    forecasts. Model independent: lift(0) = T^{-1}(mu) for any number of modes."""
    r = int(basis.n_modes_)
    climatology_shape = np.asarray(basis.lift(np.zeros((1, r)), shifts=None), dtype=np.float64)[0]
    return translated_ensemble_scores(block.truth, climatology_shape, block.climatology_positions,
                                      _postprocessor(block, config))


def _ensemble_summary(ensemble: dict[str, np.ndarray], n_members: int) -> dict[str, float]:
    """Scalar ``ENSEMBLE_SCORES`` from the per-frame scores: skills are 1 − mean S / mean S_ref."""
    crps, energy = float(np.mean(ensemble["crps"])), float(np.mean(ensemble["energy"]))
    spread = (spread_skill_ratio(ensemble["ensemble_variance"], ensemble["ensemble_mean_mse"], n_members)
              if n_members >= 2 else float("nan"))
    return {
        "crps": crps,
        "energy_score": energy,
        "crps_skill_climatology": skill(crps, float(np.mean(ensemble["crps_climatology"]))),
        "energy_skill_climatology": skill(energy, float(np.mean(ensemble["energy_climatology"]))),
        "crps_skill_hold": skill(crps, float(np.mean(ensemble["crps_hold"]))),
        "energy_skill_hold": skill(energy, float(np.mean(ensemble["energy_hold"]))),
        "spread_skill": spread,
    }


def teacher_forced(forecaster, basis, block: ForecastBlock) -> np.ndarray:
    """(n_f, r') one-step predictions ``predict_next`` of the true windows y_{k−lag..k−1}
    ending just before each forecast frame k = k0..T−1 (NaN-free only if the model is)."""
    r, lag, k0 = int(basis.n_modes_), int(forecaster.lag), block.k0
    y = block.latent[:, :r]
    T, n_f = y.shape[0], block.n_forecast
    windows = np.lib.stride_tricks.sliding_window_view(y, lag, axis=0)[k0 - lag:T - lag]
    windows = np.ascontiguousarray(windows.transpose(0, 2, 1))  # (n_f, lag, r), oldest first
    with np.errstate(all="ignore"):
        y_one = np.asarray(forecaster.predict_next(windows), dtype=np.float64)
    if y_one.shape != (n_f, r):
        raise ValueError(
            f"forecaster {getattr(forecaster, 'name', forecaster)!r}.predict_next returned shape "
            f"{y_one.shape}; expected ({n_f}, {r})"
        )
    return y_one


# ---------------------------------------------------------------------- evaluation
def evaluate_forecaster(
    forecaster, pod, run: TestRun, config: EvaluationConfig, track_model=None,
    blocks: dict[str, ForecastBlock] | None = None, blend=None,
) -> EvaluationResult:
    """Score one latent forecaster on one unseen test run (science.md §8).

    Args:
        forecaster: a ``LatentForecaster`` (``lag``, ``name``, ``predict_next``, ``rollout``).
        pod: the fitted training basis (``restrict``, ``lift``, ``estimate_shifts``,
            ``shift_align``, ``grid_shape_``, ``n_modes_``).
        run: the test run on the ROM time grid.
        config: protocol settings.
        track_model: the training-run track model, needed by the ``lab_ensemble`` shift mode.
        blocks: optional ``{run_id: ForecastBlock}`` shared by forecasters scored with the same
            ``pod``, ``config`` and ``track_model``: the run's truth side (shifts, restriction,
            track law, climatology reference) is prepared once, by the first forecaster, and
            reused by the others (the scores are the same as without it).
        blend: this forecaster's :class:`~rom_pipeline.evaluation.blend.ClimatologyBlend` of the
            ``lab_ensemble`` mode (None: the forecast ensemble alone).

    Returns:
        An :class:`EvaluationResult`. Metrics per shift mode: the scores of :func:`forecast_block`
        (``r2_pooled``, ``r2_snapshot_mean``, ``r2_latent``, ``mse``, ``rmse``,
        ``mass_violation_max``, ``negativity_fraction``, ``valid_time`` (s), ``r2_lead_*``),
        ``r2_pod_ceiling`` (pooled R² of lift(restrict(ρ)) with oracle shifts, no
        post-processing: the best any latent forecast can reach), ``r2_one_step`` (teacher
        forced: predict_next on true windows ending before each forecast frame, lifted with
        oracle shifts, no post-processing), ``rel_{l1,l2,linf}_{mean,end}``, ``diverged``,
        ``forecast_seconds`` (wall time of the rollout), and the truth's ``polarisation_mean``,
        ``milling_mean``, ``nematic_mean`` (NaN without particles). A diverged forecast has NaN
        skill metrics and does not raise.

    Raises:
        ValueError: if ``eval.forecast_start`` leaves fewer than ``lag`` conditioning frames
            (or, for ``extrapolate``, fewer than 2) or no forecast frame, if the run's grid
            differs from the basis, or if the forecaster returns the wrong shape.
    """
    model = str(forecaster.name)
    block = None if blocks is None else blocks.get(run.run_id)
    if block is None or block.run is not run:
        block = ForecastBlock.prepare(pod, run, config, seed_length=int(forecaster.lag),
                                      track_model=track_model)
        if blocks is not None:
            blocks[run.run_id] = block
    else:  # the shared block was cut for another lag: check this forecaster's seed fits
        forecast_start_index(config.forecast_start, _uniform_step(run.times, run.run_id),
                             int(forecaster.lag), run.times.size, run.run_id)
    forecast = forecast_block(forecaster, pod, block, config, blend)
    r2_ceiling, ceiling_t, r2_one_step = _diagnostics(forecaster, pod, block)
    order = _truth_order(run, block, config)
    metrics_rows = [_metrics_row(model, block, forecast, m, r2_ceiling, r2_one_step, order)
                    for m in forecast.modes]
    tables = [_r2_vs_time(model, block, m, ceiling_t, order) for m in forecast.modes]
    for row in metrics_rows:
        logger.debug(
            "%s on %s (%s shifts): R²_pooled = %.4f (POD ceiling %.4f), valid time %.2f s",
            model, run.run_id, row["shift_mode"], row["r2_pooled"], r2_ceiling, row["valid_time"],
        )
    return EvaluationResult(
        metrics=metrics_rows,
        r2_vs_time=pd.concat(tables, ignore_index=True),
        prediction=forecast.modes[0].prediction.astype(np.float32),
        truth_forecast=block.truth.astype(np.float32),
        forecast_times=block.times.copy(),
    )


def _diagnostics(forecaster, pod, block: ForecastBlock) -> tuple[float, np.ndarray, float]:
    """POD ceiling (pooled and per frame) and the teacher-forced one-step density R²."""
    stats = block.truth_statistics
    with np.errstate(all="ignore"):
        r2_ceiling, ceiling_t = stats.r2(block.ceiling(pod))
        y_one = teacher_forced(forecaster, pod, block)
        if np.all(np.isfinite(y_one)):
            r2_one_step = stats.r2(pod.lift(y_one, shifts=block.oracle_shifts))[0]
        else:
            r2_one_step = float("nan")
    return r2_ceiling, ceiling_t, r2_one_step


def _truth_order(run: TestRun, block: ForecastBlock, config: EvaluationConfig):
    if config.order_parameters and run.positions is not None:
        return _order_parameter_series(run, block.k0)
    nan_series = np.full(block.n_forecast, np.nan)
    return {"polarisation": nan_series, "milling": nan_series, "nematic": nan_series}


def _metrics_row(model, block, forecast, mode_forecast, r2_ceiling, r2_one_step, order) -> dict:
    run, m = block.run, mode_forecast
    scores = dict(m.scores)
    mse_value = scores.pop("mse")
    leads = {k: scores.pop(k) for k in list(scores) if k.startswith("r2_lead_")}
    row = {
        "run_id": run.run_id,
        "family": run.family,
        "model": model,
        "shift_mode": m.shift_mode,
        "forecast_start": float(run.times[block.k0] - run.times[0]),
        "n_forecast_frames": block.n_forecast,
        **scores,
        "r2_pod_ceiling": r2_ceiling,
        "r2_one_step": r2_one_step,
    }
    for p in ("l1", "l2", "linf"):
        row[f"rel_{p}_mean"] = float(np.mean(m.rel[p]))
        row[f"rel_{p}_end"] = float(m.rel[p][-1])
    row.update(
        diverged=m.diverged,
        forecast_seconds=forecast.forecast_seconds,
        polarisation_mean=float(np.mean(order["polarisation"])),
        milling_mean=float(np.mean(order["milling"])),
        nematic_mean=float(np.mean(order["nematic"])),
        mse=mse_value,
        **leads,
    )
    return row


def _r2_vs_time(model, block, m: ModeForecast, ceiling_t, order) -> pd.DataFrame:
    ensemble = m.ensemble or dict.fromkeys(ENSEMBLE_FRAME_COLUMNS, np.full(block.n_forecast, np.nan))
    return pd.DataFrame(
        {
            "model": model,
            "run_id": block.run.run_id,
            "family": block.run.family,
            "shift_mode": m.shift_mode,
            "time": block.times,
            "lead_time": block.lead_time,
            "r2": m.r2_t,
            "r2_cumulative": m.r2_cumulative,
            "r2_pod_ceiling": ceiling_t,
            "rel_l2": m.rel["l2"],
            "polarisation": order["polarisation"],
            "milling": order["milling"],
            "nematic": order["nematic"],
            **ensemble,
        },
        columns=list(R2_VS_TIME_COLUMNS),
    )


def evaluate_many(
    forecaster, pod, runs: Iterable[TestRun], config: EvaluationConfig, track_model=None,
    blocks: dict[str, ForecastBlock] | None = None, blend=None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, EvaluationResult]]:
    """Run :func:`evaluate_forecaster` on every test run (``blocks``, ``blend``: see there).

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
        results[run.run_id] = evaluate_forecaster(forecaster, pod, run, config, track_model, blocks, blend)
    if not results:
        raise ValueError("evaluate_many got no test runs; check the test simulation outputs")
    test_results = pd.DataFrame([row for res in results.values() for row in res.metrics])
    r2_vs_time = pd.concat([res.r2_vs_time for res in results.values()], ignore_index=True)
    return test_results, r2_vs_time, results
