"""Where the swarm goes: a model of its track and the lab-frame ensemble (issue 14).

The POD works in the co-moving frame: frame ``k`` is aligned by its shift ``s_k`` (cells, see
:mod:`rom_pipeline.rom.shifts`), and a co-moving forecast ``g_k`` is placed in the lab frame by the
inverse translation ``S_{-s_k} g_k``. Forecasting the lab frame without future information needs
a forecast of ``s_k`` itself.

Track model (fitted on TRAINING runs only). The per-step increments
``d_k = s_k - s_{k-1}`` (minimal periodic image) follow a Gaussian VAR(p) with intercept,

    d_k = c + A_1 d_{k-1} + ... + A_p d_{k-p} + e_k,    e_k ~ N(0, Sigma) i.i.d.,

fitted by pooled least squares over all training runs (windows never cross runs); ``Sigma`` is
the residual covariance with the degrees-of-freedom correction ``n - (1 + 2p)``.

Displacement law. Given the last ``p`` observed increments before the forecast start ``k0``, the
cumulative displacement ``D_h = s_{k0-1+h} - s_{k0-1} = sum_{j=1..h} d_{k0-1+j}`` (h = 1..n) is
Gaussian; its mean and covariance follow exactly from the linear state recursion on
``z = [d_k, ..., d_{k-p+1}, D]``: ``m_h = F m_{h-1} + b``, ``P_h = F P_{h-1} F^T + L Sigma L^T``,
``m_0 = [observed increments, 0]``, ``P_0 = 0``.

Lab-frame ensemble of a co-moving forecast ``g_h`` (n, ny, nx):

* its mean is ``E[S_{-s} g_h]`` with ``s ~ N(mu_h, C_h)``, ``mu_h = s_{k0-1} + E D_h``,
  ``C_h = Cov D_h``: exactly, on the periodic grid, the Fourier multiplier
  ``FFT(mean_h)(k) = FFT(g_h)(k) exp(2 pi i w.mu_h - 2 pi^2 w^T C_h w)``, ``w = (k_y/n_y, k_x/n_x)``
  (the Gaussian characteristic function; the even-axis Nyquist modes, which cannot move by a
  fraction of a cell, take its real part);
* member ``m`` is ``S_{-s_m} g_h`` with ``s_m`` a path of the fitted VAR driven by seeded Gaussian
  noise (Fourier shift, so each member keeps the mass of ``g_h``).

Which track (config key ``eval.track_method``). ``"alignment"``: the model forecasts the alignment
shifts ``s_k`` themselves. ``"phase"``: it forecasts the PHASE TRACK ``p_k``, the circular centre of
mass of the reconstructed lab-frame density (:func:`phase_track`: the phase of the lowest Fourier
mode of each axis' marginal), and a forecast shape ``g_h`` is placed so that its own centre lands on
``p_h``: ``s_h = phase(g_h) - p_h`` (:meth:`rom_pipeline.evaluation.protocol.ForecastBlock.placement`;
mean, covariance and members alike, since ``phase(g_h)`` is known). The alignment shift is the
argmax of a correlation with the reference shape; on a diffuse swarm (the thesis ``gas``) it jumps
between near-equal maxima, about 1.7 cells per 0.12 s step against 0.66 for the phase, so its
increments carry little of the swarm's motion (``experiments/results/lab_ensemble_phase_track.md``).

Held-out calibration (``calibration="heldout"``, config key ``eval.track_calibration``). The VAR's
law is too narrow a few seconds after a forecast start near the run start (the increments are not
stationary: the swarm forms, splits and the shift estimate of a diffuse swarm jumps), and too wide
in the first frames. The calibrated law keeps the VAR mean and correlation and replaces the
per-axis variance at every lead by the one measured on HELD-OUT TRAINING runs from the same
forecast start ``k0``: the runs are split into ``n_folds`` folds, a VAR is fitted without each fold
and its errors ``e_{i,h} = wrap(D_h - E D_h)`` on the fold's runs are collected. Per axis ``a``
(``n_a`` cells) the wrapped-normal variance matching the first harmonic of the errors is

    rho_{h,a} = mean_i cos(2 pi e_{i,h,a} / n_a),    v_{h,a} = -n_a^2 / (2 pi^2) log rho_{h,a},

(the real part of the empirical characteristic function at the lowest wavenumber, which is what the
ensemble mean's first Fourier mode needs), set to the uniform limit ``n_a^2`` when ``rho`` is below
its sampling noise ``2 / sqrt(2 N_h)`` and made non-decreasing in ``h``. The covariance becomes
``C'_h = R_h C_h R_h`` with ``R_h = diag(sqrt(v_{h,a} / C_{h,aa}))``; past the calibrated leads
``R_h`` keeps its last value. Member paths are scaled the same way about the VAR mean, so their
per-lead covariance is ``C'_h`` too.

Empirical law (``calibration="empirical"``). The wrapped normal matches only the first circular
moment of the held-out errors; their law is not Gaussian (a swarm is either still located or
lost). The empirical law keeps the N held-out error PATHS ``e_i = (e_{i,1}, ..., e_{i,H})`` (runs
complete to the common horizon H) and takes the displacement ``D_h = E D_h + e_{i,h}`` with
probability 1/N each: the M members are M of the N paths drawn without replacement (with
replacement if M > N), seeded; past H every path keeps its error at H. The scored ensemble mean
(the point forecast) uses the smooth estimate of the same law, the wrapped normal matching its
first circular moment (``displacement_law``, as ``heldout``): the plain average over the N paths,
``(1/N) sum_i S_{-(s_{k0-1} + E D_h + e_{i,h})} g_h``, is N
displaced copies of the shape, whose sampling noise costs squared error where the law is nearly
uniform (measured on the default experiment: ``experiments/results/lab_ensemble_blend_default.md``).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rom_pipeline.rom.shifts import fourier_shift_copies

__all__ = [
    "ANALOG_FRACTION", "ANALOG_MIN", "TRACK_CALIBRATIONS", "TRACK_CONDITIONINGS", "TRACK_METHODS", "TrackModel",
    "check_track_method", "heldout_displacement_errors", "lab_frame_mean", "lab_frame_members", "phase_concentration",
    "phase_positions", "phase_track", "track_increments", "translated_ensemble_scores", "translated_mixture_components",
    "wrapped_lead_variance",
]


#: Values of ``eval.track_calibration``.
TRACK_CALIBRATIONS = ("none", "heldout", "empirical")

#: Values of ``eval.track_method``: the track the model forecasts (module docstring, "Which track").
TRACK_METHODS = ("alignment", "phase")

#: Values of ``eval.track_conditioning``: how the empirical law depends on the run's covariate.
TRACK_CONDITIONINGS = ("none", "analogs", "scale")

#: ``"analogs"`` (:class:`TrackModel`, "Covariates"): the law at a run uses the error paths of the nearest
#: ``ANALOG_FRACTION`` of the held-out runs by covariate, and at least ``ANALOG_MIN`` of them.
ANALOG_FRACTION = 0.25
ANALOG_MIN = 10

#: ``"scale"``: the floor (cells²) added to a squared error before its log is regressed on the
#: covariate, the variance of a uniform rounding error over one cell (whole-cell tracks give
#: exact zeros).
SCALE_FLOOR = 1.0 / 12.0


def check_track_method(method: str) -> None:
    """ValueError naming ``eval.track_method`` unless ``method`` is one of :data:`TRACK_METHODS`."""
    if method not in TRACK_METHODS:
        raise ValueError(
            f"eval.track_method is {method!r}; use one of {TRACK_METHODS} ('alignment': the POD "
            "alignment shifts, 'phase': the circular centre of mass of the reconstructed density)"
        )


def phase_positions(frames: np.ndarray) -> np.ndarray:
    """(T, 2) circular centre of mass ``(p_y, p_x)`` of each frame, in cells.

    Per axis ``a`` (``n_a`` cells), ``p_a = -arg F_a(1) n_a / (2 pi)`` with ``F_a(1)`` the first
    Fourier coefficient of the frame's marginal along ``a``: the phase of its lowest mode. A frame
    translated by ``t`` cells (periodically, by a roll or a Fourier shift) has ``p`` moved by exactly
    ``t`` (mod ``n_a``); a point mass at cell ``j`` has ``p_a = j``. Values lie in (-n_a/2, n_a/2].
    """
    first, _ = _first_modes(frames)
    n = np.asarray(np.shape(frames)[1:], dtype=np.float64)
    return -np.angle(first) * n / (2.0 * np.pi)


def _first_modes(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T, 2) first Fourier coefficients ``F_y(1), F_x(1)`` of each frame's two axis marginals,
    and (T,) its mass ``F(0)``."""
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 3:
        raise ValueError(f"frames must have shape (T, ny, nx), got {frames.shape}")
    first = np.empty((frames.shape[0], 2), dtype=complex)
    for axis, (summed, n) in enumerate(((2, frames.shape[1]), (1, frames.shape[2]))):
        first[:, axis] = frames.sum(axis=summed) @ np.exp(-2j * np.pi * np.arange(n) / n)
    return first, frames.sum(axis=(1, 2))


def phase_concentration(frames: np.ndarray) -> np.ndarray:
    """(T,) how concentrated each frame is about its circular centre of mass: the mean over the two
    axes of ``|F_a(1)| / F(0)``, the first Fourier coefficient of the axis marginal over the mass
    (the mean resultant length of circular statistics): 1 for a point mass, 0 for a uniform field;
    translation invariant. Negative values are not expected (densities)."""
    first, mass = _first_modes(frames)
    return np.abs(first).mean(axis=1) / np.where(mass != 0, mass, 1.0)


def phase_track(pod, latent: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """(T, 2) phase track ``p_k = phase(lift(y_k)) - s_k`` of a latent trajectory: the circular
    centre of mass (:func:`phase_positions`) of its lab-frame reconstruction ``S_{-s_k} lift(y_k)``
    (a translation by ``-s_k`` moves the centre by ``-s_k``), computed from the co-moving frames.

    Args:
        pod: fitted basis (``lift``, ``n_modes_``).
        latent: (T, r) latent states (the first ``pod.n_modes_`` columns are used).
        shifts: (T, 2) their alignment shifts.
    """
    latent = np.asarray(latent, dtype=np.float64)
    shifts = np.asarray(shifts, dtype=np.float64)
    if latent.ndim != 2 or shifts.shape != (latent.shape[0], 2):
        raise ValueError(f"need latent (T, r) and shifts (T, 2); got {latent.shape} and {shifts.shape}")
    shape = pod.lift(latent[:, : int(pod.n_modes_)], shifts=None)
    return phase_positions(shape) - shifts


def track_increments(shifts: np.ndarray, grid_shape: tuple[int, int]) -> np.ndarray:
    """(T, 2) shifts -> (T-1, 2) increments ``s_k - s_{k-1}`` as the minimal periodic image
    (in ``[-n/2, n/2)`` per axis), so a swarm crossing the seam keeps a small step."""
    shifts = np.asarray(shifts, dtype=np.float64)
    if shifts.ndim != 2 or shifts.shape[1] != 2:
        raise ValueError(f"shifts must have shape (T, 2), got {shifts.shape}")
    n = np.asarray(grid_shape, dtype=np.float64)
    step = np.diff(shifts, axis=0)
    return np.mod(step + n / 2, n) - n / 2


class TrackModel:
    """Gaussian VAR(p) with intercept on the shift increments (see the module docstring).

    Args:
        order: p >= 1 (config key ``eval.track_order``).
        calibration: ``"none"`` (the VAR's Gaussian law), ``"heldout"`` (per-lead variances
            measured on held-out training runs) or ``"empirical"`` (the held-out error paths
            themselves), see the module docstring; config key ``eval.track_calibration``.
        n_folds: folds of training runs for the ``"heldout"`` calibration (>= 2).

    Attributes (after ``fit``):
        intercept_: (2,) ``c``.
        coefs_: (p, 2, 2) ``A_1..A_p``.
        noise_cov_: (2, 2) ``Sigma``.
        grid_shape_: (ny, nx) of the tracks.
        n_obs_: number of fitted increments.
        lead_variance_: (H, 2) calibrated per-axis variances ``v_h`` of ``D_h``, h = 1..H
            (``"heldout"`` and ``"empirical"``, else None).
        lead_errors_: (N, H, 2) held-out error paths (``"empirical"`` only, else None).
        lead_covariate_: (N,) the covariate of each error path's run at the forecast start
            (``"empirical"`` fitted with ``covariates``, else None).
        lead_slope_: (H,) ``"scale"`` only: slope ``b_h`` of ``log(|e_h|^2 + SCALE_FLOOR)`` on
            the covariate over the error paths (pooled least squares per lead).

    Covariates (``conditioning``, config key ``eval.track_conditioning``): the held-out error
    paths come from runs as different as a compact blob and a near-uniform gas, whose track errors
    differ by an order of magnitude, so one pooled law is too wide for the first and too narrow
    for the second. Fitted with one covariate per run (the swarm's concentration at the forecast
    start) and asked for the law at a run's covariate ``c``, ``"analogs"`` keeps the error paths of
    the nearest runs by covariate; ``"scale"`` keeps every path but rescales path ``i`` at lead
    ``h`` by ``exp(b_h (c - c_i) / 2)`` (``c`` clipped to the fitted range), the ratio of the
    fitted error scales ``exp(a_h + b_h c)`` of the two runs (the intercept ``a_h`` cancels, so the
    bias of a log-regression does not enter); ``"none"`` ignores covariates.
    """

    def __init__(self, order: int = 1, calibration: str = "none", n_folds: int = 5,
                 conditioning: str = "none"):
        if isinstance(order, bool) or int(order) != order or order < 1:
            raise ValueError(f"eval.track_order must be a positive integer, got {order!r}")
        if calibration not in TRACK_CALIBRATIONS:
            raise ValueError(
                f"eval.track_calibration is {calibration!r}; use one of {TRACK_CALIBRATIONS}"
            )
        if isinstance(n_folds, bool) or int(n_folds) != n_folds or n_folds < 2:
            raise ValueError(f"the held-out track calibration needs n_folds >= 2, got {n_folds!r}")
        if conditioning not in TRACK_CONDITIONINGS:
            raise ValueError(
                f"eval.track_conditioning is {conditioning!r}; use one of {TRACK_CONDITIONINGS}"
            )
        self.order = int(order)
        self.calibration = calibration
        self.n_folds = int(n_folds)
        self.conditioning = conditioning

    def fit(
        self, tracks: Sequence[np.ndarray], grid_shape: tuple[int, int], start: int | None = None,
        covariates: Sequence[float] | None = None,
    ) -> TrackModel:
        """Pooled least squares on the training tracks (and, for ``calibration="heldout"``, the
        held-out per-lead variances).

        Args:
            tracks: one (T_i, 2) array of alignment shifts per training run.
            grid_shape: (ny, nx).
            start: forecast start index k0 (conditioning frames) the law will be used from;
                required by ``calibration="heldout"``.
            covariates: optional, one number per training run at frame ``start - 1`` (the
                swarm's :func:`phase_concentration`); with ``calibration="empirical"`` and a
                ``conditioning`` other than ``"none"``, a law asked for with a ``covariate`` is
                conditioned on it (class docstring, "Covariates").

        Returns:
            self.
        """
        if covariates is not None:
            covariates = np.asarray(covariates, dtype=np.float64)
            if covariates.shape != (len(tracks),) or not np.all(np.isfinite(covariates)):
                raise ValueError(
                    f"covariates must be {len(tracks)} finite numbers, one per training track; got "
                    f"shape {covariates.shape}"
                )
        self._fit_var(tracks, grid_shape)
        self.lead_variance_ = None
        self.lead_errors_ = None
        self.lead_covariate_ = None
        self.lead_slope_ = None
        if self.calibration in ("heldout", "empirical"):
            if start is None:
                raise ValueError(
                    "the held-out track calibration needs the forecast start index: "
                    "fit(tracks, grid_shape, start=k0)"
                )
            errors = heldout_displacement_errors(tracks, grid_shape, self.order, int(start), self.n_folds)
            self.lead_variance_ = wrapped_lead_variance(errors, grid_shape)
            if self.calibration == "empirical":
                complete = np.isfinite(errors[..., 0])
                horizon = int(np.argmin(complete.all(axis=0))) if not complete.all() else errors.shape[1]
                keep = complete[:, :max(horizon, 1)].all(axis=1)
                if horizon < 1 or keep.sum() < 2:
                    raise ValueError(
                        "eval.track_calibration: empirical needs at least 2 training runs that go past the "
                        "forecast start; use more or longer training runs or set eval.track_calibration: heldout"
                    )
                self.lead_errors_ = errors[keep, :horizon]
                if covariates is not None and self.conditioning != "none":
                    self.lead_covariate_ = covariates[keep]
                    if self.conditioning == "scale":
                        self.lead_slope_ = _log_error_slopes(self.lead_errors_, self.lead_covariate_)
        return self

    def _conditioned_errors(self, covariate: float | None) -> np.ndarray | None:
        """The empirical law's error paths at a run with ``covariate`` (class docstring,
        "Covariates"), or None when the covariate changes nothing (no covariate, a model fitted
        without covariates, or ``conditioning="none"``)."""
        if covariate is None or getattr(self, "lead_covariate_", None) is None:
            return None
        if not np.isfinite(covariate):
            raise ValueError(f"the track law's covariate must be finite, got {covariate!r}")
        if self.conditioning == "analogs":
            return self.lead_errors_[self._analogs(covariate)]
        c = float(np.clip(covariate, self.lead_covariate_.min(), self.lead_covariate_.max()))
        factor = np.exp(0.5 * self.lead_slope_[None, :] * (c - self.lead_covariate_[:, None]))  # (N, H)
        return self.lead_errors_ * factor[:, :, None]

    def _analogs(self, covariate: float) -> np.ndarray:
        """Indices of the error paths whose runs are nearest to ``covariate`` (the nearest
        ``ANALOG_FRACTION`` of them, at least ``ANALOG_MIN``; ties by path order)."""
        n = len(self.lead_covariate_)
        k = min(n, max(ANALOG_MIN, int(np.ceil(ANALOG_FRACTION * n))))
        return np.sort(np.argsort(np.abs(self.lead_covariate_ - float(covariate)), kind="stable")[:k])

    def _lead_variance(self, covariate: float | None) -> np.ndarray | None:
        """The calibrated per-lead variances: of the conditioned error paths when ``covariate``
        conditions the law, else ``lead_variance_``."""
        errors = self._conditioned_errors(covariate)
        if errors is None:
            return getattr(self, "lead_variance_", None)
        return wrapped_lead_variance(errors, self.grid_shape_)

    def _fit_var(self, tracks: Sequence[np.ndarray], grid_shape: tuple[int, int]) -> None:
        p = self.order
        rows, targets = [], []
        for i, track in enumerate(tracks):
            inc = track_increments(track, grid_shape)
            if inc.shape[0] <= p:
                continue
            lagged = np.lib.stride_tricks.sliding_window_view(inc, p, axis=0)[:-1]  # (n, 2, p), oldest first
            lagged = lagged[:, :, ::-1].transpose(0, 2, 1).reshape(len(lagged), 2 * p)  # [d_{k-1}, ..., d_{k-p}]
            rows.append(np.hstack([np.ones((len(lagged), 1)), lagged]))
            targets.append(inc[p:])
        n_params = 1 + 2 * p
        n_obs = sum(len(t) for t in targets)
        if n_obs <= n_params:
            raise ValueError(
                f"the track model of order {p} needs more than {n_params} increments from the training "
                f"runs, got {n_obs}: lower eval.track_order or use longer training runs"
            )
        X = np.concatenate(rows)
        Y = np.concatenate(targets)
        beta, *_ = np.linalg.lstsq(X, Y, rcond=None)  # (1 + 2p, 2)
        resid = Y - X @ beta
        self.intercept_ = beta[0].copy()
        self.coefs_ = np.ascontiguousarray(beta[1:].reshape(p, 2, 2).transpose(0, 2, 1))
        self.noise_cov_ = resid.T @ resid / (n_obs - n_params)
        self.grid_shape_ = (int(grid_shape[0]), int(grid_shape[1]))
        self.n_obs_ = int(n_obs)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coefs_"):
            raise RuntimeError("this TrackModel is not fitted yet: call fit(tracks, grid_shape) first")

    def _recent(self, conditioning_shifts: np.ndarray) -> np.ndarray:
        """(p, 2) last p increments of the conditioning shifts, newest first."""
        conditioning_shifts = np.asarray(conditioning_shifts, dtype=np.float64)
        if conditioning_shifts.ndim != 2 or conditioning_shifts.shape[0] < self.order + 1:
            raise ValueError(
                f"the track model of order {self.order} needs {self.order + 1} conditioning shifts, got "
                f"{conditioning_shifts.shape[0] if conditioning_shifts.ndim == 2 else conditioning_shifts.shape}: "
                "raise eval.forecast_start or lower eval.track_order"
            )
        inc = track_increments(conditioning_shifts[-(self.order + 1):], self.grid_shape_)
        return inc[::-1]

    def _companion(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """F (2p+2, 2p+2), b (2p+2,), L (2p+2, 2) of ``z_h = F z_{h-1} + b + L e_h``."""
        p = self.order
        size = 2 * p + 2
        F = np.zeros((size, size))
        F[:2, : 2 * p] = np.hstack(list(self.coefs_))
        F[2 : 2 * p, : 2 * p - 2] = np.eye(2 * p - 2)
        F[2 * p :, : 2 * p] = F[:2, : 2 * p]  # D_h = D_{h-1} + d_h
        F[2 * p :, 2 * p :] = np.eye(2)
        b = np.zeros(size)
        b[:2] = self.intercept_
        b[2 * p :] = self.intercept_
        L = np.zeros((size, 2))
        L[:2] = np.eye(2)
        L[2 * p :] = np.eye(2)
        return F, b, L

    def displacement_law(self, conditioning_shifts: np.ndarray, n_steps: int, covariate: float | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Law of the cumulative displacement ``D_h``, h = 1..n_steps.

        Args:
            conditioning_shifts: (k0, 2) observed shifts before the forecast start (k0 >= p + 1).
            n_steps: number of forecast frames.
            covariate: the run's covariate at the forecast start (see :meth:`fit`), or None.

        Returns:
            mean (n_steps, 2) and covariance (n_steps, 2, 2) of ``D_h`` (cells).
        """
        self._check_fitted()
        mean, cov = self._var_law(conditioning_shifts, n_steps)
        scale = self._lead_scale(cov, self._lead_variance(covariate))
        if scale is not None:
            cov = cov * scale[:, :, None] * scale[:, None, :]
        return mean, cov

    def _var_law(self, conditioning_shifts: np.ndarray, n_steps: int) -> tuple[np.ndarray, np.ndarray]:
        """The fitted VAR's (uncalibrated) Gaussian law of ``D_h``: mean (n, 2), cov (n, 2, 2)."""
        p = self.order
        F, b, L = self._companion()
        Q = L @ self.noise_cov_ @ L.T
        z = np.concatenate([self._recent(conditioning_shifts).ravel(), np.zeros(2)])
        P = np.zeros((2 * p + 2, 2 * p + 2))
        mean = np.empty((n_steps, 2))
        cov = np.empty((n_steps, 2, 2))
        for h in range(n_steps):
            z = F @ z + b
            P = F @ P @ F.T + Q
            mean[h] = z[2 * p :]
            cov[h] = P[2 * p :, 2 * p :]
        return mean, cov

    def _lead_scale(self, cov: np.ndarray, lead_variance: np.ndarray | None) -> np.ndarray | None:
        """(n, 2) per-axis factors ``sqrt(v_h / C_h,aa)`` of the held-out calibration with
        variances ``lead_variance`` (H, 2) (None without it); past the calibrated leads the last
        factor is kept."""
        if lead_variance is None:
            return None
        n, H = cov.shape[0], lead_variance.shape[0]
        var = np.diagonal(cov, axis1=1, axis2=2)  # (n, 2)
        target = lead_variance[np.minimum(np.arange(n), H - 1)]
        scale = np.sqrt(target / np.where(var > 0, var, 1.0))
        if n > H:  # keep the last calibrated ratio, not the last variance
            scale[H:] = scale[H - 1]
        return np.where(var > 0, scale, 1.0)

    def sample_displacements(
        self, conditioning_shifts: np.ndarray, n_steps: int, n_members: int, seed: int,
        covariate: float | None = None,
    ) -> np.ndarray:
        """(n_members, n_steps, 2) sampled paths of ``D_h`` (seeded: the same seed gives the same
        paths); ``covariate``: see :meth:`displacement_law`."""
        self._check_fitted()
        if isinstance(n_members, bool) or int(n_members) != n_members or n_members < 1:
            raise ValueError(f"eval.ensemble_size must be an integer >= 1, got {n_members!r}")
        p = self.order
        rng = np.random.default_rng(seed)
        # symmetric square root: also valid for a singular (e.g. noise-free) covariance
        w, v = np.linalg.eigh(self.noise_cov_)
        root = v * np.sqrt(np.clip(w, 0.0, None))
        noise = rng.standard_normal((int(n_members), n_steps, 2)) @ root.T
        history = np.repeat(self._recent(conditioning_shifts)[None], n_members, axis=0)  # (M, p, 2) newest first
        total = np.zeros((n_members, 2))
        out = np.empty((n_members, n_steps, 2))
        for h in range(n_steps):
            step = self.intercept_ + np.einsum("ij,mj->mi", self.coefs_[0], history[:, 0])
            for i in range(1, p):
                step = step + np.einsum("ij,mj->mi", self.coefs_[i], history[:, i])
            step = step + noise[:, h]
            total = total + step
            out[:, h] = total
            history = np.concatenate([step[:, None], history[:, :-1]], axis=1)
        if getattr(self, "lead_errors_", None) is not None:
            paths = self.displacement_paths(conditioning_shifts, n_steps, covariate)
            pick = rng.choice(len(paths), size=int(n_members), replace=int(n_members) > len(paths))
            return paths[pick]
        if getattr(self, "lead_variance_", None) is not None:
            mean, cov = self._var_law(conditioning_shifts, n_steps)
            scale = self._lead_scale(cov, self.lead_variance_)
            out = mean[None] + (out - mean[None]) * scale[None]
        return out

    def displacement_paths(self, conditioning_shifts: np.ndarray, n_steps: int,
                           covariate: float | None = None) -> np.ndarray:
        """(N, n_steps, 2) the empirical law's equally likely paths of ``D_h``: the VAR mean plus
        each held-out error path (past its horizon H the error at H), conditioned on
        ``covariate`` when the model was fitted with covariates (class docstring, "Covariates");
        ``"empirical"`` only."""
        self._check_fitted()
        if getattr(self, "lead_errors_", None) is None:
            raise ValueError("displacement_paths needs a TrackModel fitted with calibration='empirical'")
        mean, _ = self._var_law(conditioning_shifts, n_steps)
        errors = self._conditioned_errors(covariate)
        errors = self.lead_errors_ if errors is None else errors
        lead = np.minimum(np.arange(n_steps), errors.shape[1] - 1)
        return mean[None] + errors[:, lead]

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Learned state as plain arrays (``np.savez``-able)."""
        self._check_fitted()
        return {
            "order": np.array(self.order, dtype=np.int64),
            "intercept": self.intercept_, "coefs": self.coefs_, "noise_cov": self.noise_cov_,
            "grid_shape": np.array(self.grid_shape_, dtype=np.int64), "n_obs": np.array(self.n_obs_, dtype=np.int64),
            "calibration": np.array(self.calibration), "n_folds": np.array(self.n_folds, dtype=np.int64),
            "lead_variance": (np.zeros((0, 2)) if self.lead_variance_ is None else self.lead_variance_),
            "lead_errors": (np.zeros((0, 0, 2)) if getattr(self, "lead_errors_", None) is None else self.lead_errors_),
            "lead_covariate": (np.zeros(0) if getattr(self, "lead_covariate_", None) is None else self.lead_covariate_),
            "lead_slope": (np.zeros(0) if getattr(self, "lead_slope_", None) is None else self.lead_slope_),
            "conditioning": np.array(self.conditioning),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> TrackModel:
        """Inverse of :meth:`to_arrays`."""
        model = cls(int(arrays["order"]), str(arrays.get("calibration", "none")), int(arrays.get("n_folds", 5)),
                    str(arrays.get("conditioning", "none")))
        model.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        model.coefs_ = np.asarray(arrays["coefs"], dtype=np.float64)
        model.noise_cov_ = np.asarray(arrays["noise_cov"], dtype=np.float64)
        model.grid_shape_ = tuple(int(v) for v in arrays["grid_shape"])
        model.n_obs_ = int(arrays["n_obs"])
        lead_variance = np.asarray(arrays.get("lead_variance", np.zeros((0, 2))), dtype=np.float64)
        model.lead_variance_ = lead_variance if lead_variance.size else None
        lead_errors = np.asarray(arrays.get("lead_errors", np.zeros((0, 0, 2))), dtype=np.float64)
        model.lead_errors_ = lead_errors if lead_errors.size else None
        lead_covariate = np.asarray(arrays.get("lead_covariate", np.zeros(0)), dtype=np.float64)
        model.lead_covariate_ = lead_covariate if lead_covariate.size else None
        lead_slope = np.asarray(arrays.get("lead_slope", np.zeros(0)), dtype=np.float64)
        model.lead_slope_ = lead_slope if lead_slope.size else None
        return model


def _log_error_slopes(errors: np.ndarray, covariates: np.ndarray) -> np.ndarray:
    """(H,) least-squares slope of ``log(mean_axes e_{i,h}^2 + SCALE_FLOOR)`` on ``covariates``
    (N,) at every lead of ``errors`` (N, H, 2); 0 where the covariates do not vary."""
    y = np.log(np.mean(errors**2, axis=2) + SCALE_FLOOR)  # (N, H)
    if np.ptp(covariates) <= 1e-12 * max(1.0, float(np.max(np.abs(covariates)))):
        return np.zeros(errors.shape[1])
    x = covariates - covariates.mean()
    return x @ (y - y.mean(axis=0)) / float(x @ x)


def heldout_displacement_errors(
    tracks: Sequence[np.ndarray], grid_shape: tuple[int, int], order: int, start: int, n_folds: int = 5
) -> np.ndarray:
    """Errors of the VAR displacement mean on held-out training runs, from forecast start ``start``.

    The runs are split into ``n_folds`` contiguous folds; a VAR(order) fitted on the other folds
    gives, for each held-out run ``i``, the mean ``E D_h`` from its first ``start`` shifts, and the
    error is ``e_{i,h} = wrap(D_h - E D_h)`` (minimal periodic image), h = 1..T_i - start.

    Args:
        tracks: one (T_i, 2) array of alignment shifts per training run.
        grid_shape: (ny, nx).
        order: VAR order p (``start >= p + 1``).
        start: forecast start index k0.
        n_folds: folds (clipped to the number of runs).

    Returns:
        (n_runs, H, 2) errors, H = max_i T_i - start, NaN past a run's end.
    """
    tracks = [np.asarray(t, dtype=np.float64) for t in tracks]
    if start < order + 1:
        raise ValueError(
            f"the track model of order {order} needs {order + 1} conditioning shifts, but the forecast "
            f"start leaves {start}: raise eval.forecast_start or lower eval.track_order"
        )
    n_runs = len(tracks)
    if n_runs < 2:
        raise ValueError(
            f"eval.track_calibration: heldout needs at least 2 training runs, got {n_runs}: use more "
            "training runs or set eval.track_calibration: none"
        )
    H = max(len(t) for t in tracks) - start
    if H < 1:
        raise ValueError(f"the training runs end before the forecast start index {start}")
    n = np.asarray(grid_shape, dtype=np.float64)
    errors = np.full((n_runs, H, 2), np.nan)
    for fold in np.array_split(np.arange(n_runs), min(int(n_folds), n_runs)):
        held = set(fold.tolist())
        model = TrackModel(order).fit([t for i, t in enumerate(tracks) if i not in held], grid_shape)
        for i in fold:
            track = tracks[i]
            if len(track) <= start:
                continue
            mean, _ = model.displacement_law(track[:start], len(track) - start)
            true = np.cumsum(track_increments(track[start - 1:], grid_shape), axis=0)
            errors[i, : len(track) - start] = np.mod(true - mean + n / 2, n) - n / 2
    return errors


def wrapped_lead_variance(errors: np.ndarray, grid_shape: tuple[int, int]) -> np.ndarray:
    """(H, 2) per-axis wrapped-normal variances of held-out displacement errors (module docstring).

    Args:
        errors: (n_runs, H, 2) wrapped errors, NaN where a run has none.
        grid_shape: (ny, nx).

    Returns:
        (H, 2) variances ``v_h``: from the first circular moment, ``n_a^2`` (the uniform limit) when
        it is within its sampling noise, non-decreasing in h.
    """
    n = np.asarray(grid_shape, dtype=np.float64)
    valid = np.isfinite(errors[..., 0])  # (n_runs, H)
    count = valid.sum(axis=0)  # (H,)
    if not count.all():
        raise ValueError("every calibrated lead needs at least one held-out error")
    cosine = np.where(valid[..., None], np.cos(2.0 * np.pi * np.nan_to_num(errors) / n), 0.0)
    rho = cosine.sum(axis=0) / count[:, None]  # (H, 2)
    noise = 2.0 / np.sqrt(2.0 * count)[:, None]
    with np.errstate(divide="ignore"):
        var = np.where(rho > noise, -(n**2) / (2.0 * np.pi**2) * np.log(np.clip(rho, 1e-300, 1.0)), n**2)
    return np.maximum.accumulate(np.minimum(var, n**2), axis=0)


def lab_frame_mean(shape: np.ndarray, shift_mean: np.ndarray, shift_cov: np.ndarray) -> np.ndarray:
    """Exact expectation of ``S_{-s} g`` for ``s ~ N(shift_mean, shift_cov)``, frame by frame.

    Args:
        shape: (n, ny, nx) co-moving frames ``g``.
        shift_mean: (n, 2) mean alignment shift (cells).
        shift_cov: (n, 2, 2) its covariance.

    Returns:
        (n, ny, nx) expected lab-frame density (same mass as ``shape``).
    """
    shape = np.asarray(shape, dtype=np.float64)
    n, ny, nx = shape.shape
    mu = np.asarray(shift_mean, dtype=np.float64)
    C = np.asarray(shift_cov, dtype=np.float64)
    if mu.shape != (n, 2) or C.shape != (n, 2, 2):
        raise ValueError(f"shift_mean must be (n, 2) and shift_cov (n, 2, 2) with n = {n}; got {mu.shape}, {C.shape}")
    wy = (np.rint(np.fft.fftfreq(ny) * ny) / ny)[None, :, None]  # (1, ny, 1)
    wx = (np.arange(nx // 2 + 1) / nx)[None, None, :]  # (1, 1, nx//2+1)
    phase = 2.0 * np.pi * (wy * mu[:, 0, None, None] + wx * mu[:, 1, None, None])
    quad = C[:, 0, 0, None, None] * wy**2 + 2.0 * C[:, 0, 1, None, None] * wy * wx + C[:, 1, 1, None, None] * wx**2
    factor = np.exp(1j * phase - 2.0 * np.pi**2 * quad)
    nyquist = np.zeros((ny, nx // 2 + 1), dtype=bool)
    if ny % 2 == 0:
        nyquist[ny // 2, :] = True
    if nx % 2 == 0:
        nyquist[:, nx // 2] = True
    factor = np.where(nyquist[None], factor.real, factor)
    return np.fft.irfft2(np.fft.rfft2(shape, axes=(1, 2)) * factor, s=(ny, nx), axes=(1, 2))


def lab_frame_members(shape: np.ndarray, member_shifts: np.ndarray) -> np.ndarray:
    """Members ``S_{-s_m} g`` of the lab-frame ensemble.

    Args:
        shape: (n, ny, nx) co-moving frames.
        member_shifts: (M, n, 2) alignment shifts of each member (cells).

    Returns:
        (M, n, ny, nx) members.
    """
    shape = np.asarray(shape, dtype=np.float64)
    member_shifts = np.asarray(member_shifts, dtype=np.float64)
    M, n = member_shifts.shape[:2]
    if member_shifts.shape != (M, shape.shape[0], 2):
        raise ValueError(f"member_shifts must have shape (M, {shape.shape[0]}, 2), got {member_shifts.shape}")
    return fourier_shift_copies(shape, -member_shifts)


def translated_ensemble_scores(
    truth: np.ndarray,
    shape: np.ndarray,
    member_shifts: np.ndarray,
    postprocess=None,
    chunk: int = 32,
) -> dict[str, np.ndarray]:
    """Per-frame proper scores of the ensemble ``x_m,h = post(S_{-s_m,h} g_h)``, built and scored a
    chunk of frames at a time (an (M, n, ny, nx) ensemble is never held in memory).

    Args:
        truth: (n, ny, nx) observed frames.
        shape: (n, ny, nx) co-moving frames ``g_h``, or (ny, nx) for one shape at every frame.
        member_shifts: (M, n, 2) alignment shifts of the members (cells).
        postprocess: callable (k, ny, nx) -> (k, ny, nx) applied to every member's frames (e.g.
            clamp and mass restoration); None for none.
        chunk: frames per chunk.

    Returns:
        :func:`rom_pipeline.evaluation.scores.frame_scores` of the whole ensemble: ``crps``,
        ``energy``, ``mse_mean``, ``variance``, each (n,).
    """
    from rom_pipeline.evaluation.scores import frame_scores

    truth = np.asarray(truth, dtype=np.float64)
    ensemble = _checked_ensemble(truth, shape, member_shifts)
    return _chunked_scores(truth, [ensemble], frame_scores, postprocess, chunk)


def _checked_ensemble(truth: np.ndarray, shape: np.ndarray, shifts: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(frames (n, ny, nx), shifts (M, n, 2)) as float64, one shape frame broadcast to every
    lead; ValueError naming both shapes when they do not fit ``truth`` (n, ny, nx)."""
    n = truth.shape[0]
    frames = np.asarray(shape, dtype=np.float64)
    if frames.ndim == 2:
        frames = np.broadcast_to(frames[None], truth.shape)
    shifts = np.asarray(shifts, dtype=np.float64)
    if frames.shape != truth.shape or shifts.ndim != 3 or shifts.shape[1:] != (n, 2) or shifts.shape[0] < 1:
        raise ValueError(
            f"need shape {truth.shape} (or one frame) and member_shifts (M >= 1, {n}, 2); got "
            f"{frames.shape} and {shifts.shape}"
        )
    return frames, shifts


def _chunked_scores(truth: np.ndarray, ensembles: list[tuple[np.ndarray, np.ndarray]], score,
                    postprocess, chunk: int) -> dict[str, np.ndarray]:
    """``score(truth_chunk, *members)`` over chunks of frames, concatenated per key: each
    ensemble's members ``post(S_{-s_m,h} g_h)`` (M, k, ny, nx) are built a chunk at a time."""
    n = truth.shape[0]
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        built = []
        for frames, shifts in ensembles:
            members = lab_frame_members(np.ascontiguousarray(frames[sl]), shifts[:, sl])
            if postprocess is not None:
                m, k = members.shape[:2]
                members = postprocess(members.reshape(m * k, *truth.shape[1:])).reshape(members.shape)
            built.append(members)
        for key, value in score(truth[sl], *built).items():
            parts.setdefault(key, []).append(value)
    return {key: np.concatenate(values) for key, values in parts.items()}


def translated_mixture_components(
    truth: np.ndarray,
    shape: np.ndarray,
    member_shifts: np.ndarray,
    reference_shape: np.ndarray,
    reference_shifts: np.ndarray,
    postprocess=None,
    chunk: int = 32,
) -> dict[str, np.ndarray]:
    """Per-frame :func:`rom_pipeline.evaluation.scores.mixture_components` of the forecast
    ensemble ``post(S_{-s_m,h} g_h)`` and a reference ensemble ``post(S_{-c_j,h} g^ref_h)`` (the
    climatology: its shape at random positions), built a chunk of frames at a time.

    Args:
        truth: (n, ny, nx) observed frames.
        shape, reference_shape: (n, ny, nx) frames, or (ny, nx) for one frame at every lead.
        member_shifts: (M, n, 2) forecast members' shifts; reference_shifts: (M_c, n, 2).
        postprocess: callable (k, ny, nx) -> (k, ny, nx) applied to every member's frames.
        chunk: frames per chunk.

    Returns:
        ``MIXTURE_COMPONENTS``, each (n,).
    """
    from rom_pipeline.evaluation.scores import mixture_components

    truth = np.asarray(truth, dtype=np.float64)
    ensembles = [_checked_ensemble(truth, shape, member_shifts),
                 _checked_ensemble(truth, reference_shape, reference_shifts)]
    return _chunked_scores(truth, ensembles, mixture_components, postprocess, chunk)
