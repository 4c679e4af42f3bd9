"""Multivariate autoregression in POD latent space (science.md §6).

Model of lag ``w`` on latent states ``y_k`` (length r):

    y_k = A_0 + sum_{j=1}^{w} A_j y_{k-j},

``A_1`` multiplies the most recent state. Fitted by ridge regression with an unpenalised
intercept on the windows of every run (windows never cross runs, see ``rom.latent``):

    min_{A_0, B}  sum_k || y_k - A_0 - B^T z_k ||^2 + alpha ||B||_F^2,
    z_k = [y_{k-1}; y_{k-2}; ...; y_{k-w}],   B = [A_1^T; A_2^T; ...; A_w^T]   (w r x r),

which is solved on centred data, ``(Z_c^T Z_c + alpha I) B = Z_c^T Y_c`` and
``A_0 = mean(Y) - B^T mean(z)`` (``alpha`` multiplies the sum, not the mean, of squared
residuals: the scikit-learn ``Ridge`` convention).

Stability: the companion matrix ``C`` has ``[A_1 ... A_w]`` in its top block row and identities
below the diagonal; the spectral radius ``rho(C)`` < 1 means the noise-free recursion forgets its
seed.

Error-correction form (``coint_rank = k``): the same model written in differences,

    dy_k = alpha beta^T [y_{k-1}; 1] + sum_{j=1}^{w-1} Gamma_j dy_{k-j},      dy_k = y_k - y_{k-1},

with ``alpha`` (r x k) and ``beta`` ((r+1) x k) of rank k and the constant restricted to the
cointegrating relations (Johansen's reduced-rank maximum-likelihood estimator, statsmodels'
``VECM(deterministic="ci")``). Only k combinations of the state are pulled back towards an
equilibrium; the other r - k directions are neutral (unit roots), so a shape the data gives no
restoring force to persists instead of relaxing to the training mean. ``k = r`` is the
unrestricted levels model above (fitted by ridge); ``k = 0`` is a VAR in differences with no
drift. The fit is converted back to ``A_0 .. A_w`` (``A_1 = I + Pi + Gamma_1``,
``A_j = Gamma_j - Gamma_{j-1}``, ``A_w = -Gamma_{w-1}``, ``A_0`` = the restricted constant), so
forecasting, the companion matrix and storage are the same for both forms.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd
import scipy.linalg

from rom_pipeline.rom.latent import latent_windows

logger = logging.getLogger(__name__)

INFORMATION_CRITERIA = ("aic", "bic", "hqic", "fpe")
# Normal equations lose about log10(cond) digits; below this reciprocal condition number of the
# regularised Gram matrix we solve the (augmented) least-squares problem by SVD instead.
_CHOLESKY_MIN_RCOND = 1e-7


def _ridge_solve(zc: np.ndarray, yc: np.ndarray, alpha: float) -> tuple[np.ndarray, str]:
    """Solve ``min ||Y_c - Z_c B||^2 + alpha ||B||^2`` for B (m, r); returns (B, solver name)."""
    m = zc.shape[1]
    gram = zc.T @ zc
    gram[np.diag_indices(m)] += alpha
    try:
        factor, lower = scipy.linalg.cho_factor(gram, lower=True, check_finite=False)
        rcond, info = scipy.linalg.lapack.dpocon(factor, np.abs(gram).sum(axis=0).max(), uplo="L")
        if info == 0 and rcond > _CHOLESKY_MIN_RCOND:
            return scipy.linalg.cho_solve((factor, lower), zc.T @ yc, check_finite=False), "cholesky"
    except np.linalg.LinAlgError:
        pass
    if alpha > 0:
        design = np.vstack([zc, np.sqrt(alpha) * np.eye(m)])
        target = np.vstack([yc, np.zeros((m, yc.shape[1]))])
    else:
        design, target = zc, yc
    solution = scipy.linalg.lstsq(design, target, lapack_driver="gelsd", check_finite=False)[0]
    return solution, "lstsq"


def _vecm_solution(
    windows: np.ndarray, targets: np.ndarray, rank: int, alpha: float
) -> tuple[np.ndarray, np.ndarray, str]:
    """Reduced-rank (Johansen) fit of the error-correction form; see the module docstring.

    Args:
        windows: (n, w, r) windows, oldest state first.
        targets: (n, r) next states.
        rank: cointegration rank k, 0 <= k <= r.
        alpha: ridge penalty of the short-run regressions on the lagged differences.

    Returns:
        ``(solution, intercept, solver)`` with ``solution`` (w r, r) in the oldest-first feature
        order of the levels fit, so ``y_k = intercept + z_k^T solution``.
    """
    n, lag, r = windows.shape
    last = windows[:, -1]
    z0 = targets - last                                             # dy_k
    z1 = np.hstack([last, np.ones((n, 1))])                         # [y_{k-1}; 1]
    z2 = np.diff(windows, axis=1)[:, ::-1].reshape(n, (lag - 1) * r)  # dy_{k-1} first
    solver = "eigh"
    if lag > 1:  # partial the short-run dynamics out of dy_k and [y_{k-1}; 1]
        proj, solver = _ridge_solve(z2, np.hstack([z0, z1]), alpha)
        r0, r1 = z0 - z2 @ proj[:, :r], z1 - z2 @ proj[:, r:]
    else:
        r0, r1 = z0, z1
    pi_star = np.zeros((r, r + 1))
    if rank > 0:
        s00, s01, s11 = r0.T @ r0 / n, r0.T @ r1 / n, r1.T @ r1 / n
        # beta: leading generalised eigenvectors of S10 S00^-1 S01 v = lambda S11 v (beta'S11 beta = I)
        try:
            _, vectors = scipy.linalg.eigh(s01.T @ np.linalg.solve(s00, s01), s11,
                                           subset_by_index=[r + 1 - rank, r])
        except np.linalg.LinAlgError as exc:
            raise ValueError(
                f"mvar.coint_rank = {rank}: the reduced-rank fit needs non-degenerate latent "
                f"states and differences ({exc}); a latent mode is constant or two are collinear. "
                "Use fewer POD modes, or coint_rank null (the unrestricted levels model)"
            ) from exc
        beta = vectors[:, ::-1]
        pi_star = (s01 @ beta) @ beta.T                             # alpha beta^T, alpha = S01 beta
    blocks = [np.eye(r) + pi_star[:, :r].T]                         # row convention: B_j = A_j^T
    if lag > 1:
        gamma, solver = _ridge_solve(z2, z0 - z1 @ pi_star.T, alpha)
        g = gamma.reshape(lag - 1, r, r)                            # g[j-1] = Gamma_j^T
        blocks[0] = blocks[0] + g[0]
        blocks += [g[j] - g[j - 1] for j in range(1, lag - 1)] + [-g[-1]]
    return np.concatenate(blocks[::-1], axis=0), pi_star[:, r].copy(), solver


def _companion(coef: np.ndarray) -> np.ndarray:
    lag, r, _ = coef.shape
    comp = np.zeros((lag * r, lag * r))
    comp[:r, :] = np.concatenate(list(coef), axis=1)
    comp[r:, :-r] = np.eye((lag - 1) * r)
    return comp


class MVARForecaster:
    """Ridge MVAR(w) latent forecaster; satisfies ``rom.forecaster.LatentForecaster``.

    Args:
        lag: window length w >= 1, or an information criterion (``"aic"``, ``"bic"``,
            ``"hqic"``, ``"fpe"``): ``fit`` then picks w = argmin of that criterion in the lag
            scan (:func:`select_lag`, :func:`best_lag`) and sets ``lag`` to it, so a fitted model
            always holds its integer window length (``lag_rule_`` keeps the rule).
        max_lag: largest order of the lag scan ``fit`` tabulates (``lag_scan_``), capped at half
            the shortest run; ``None``: no scan (a criterion ``lag`` then scans up to 20).
        ridge_alpha: ridge penalty alpha >= 0 on ``A_1..A_w`` (not on ``A_0``).
        eigenvalue_threshold: if given (> 0) and the companion spectral radius exceeds it, scale
            ``A_j <- c^j A_j`` with ``c = threshold / rho``. This is exact: ``lambda`` solves
            ``det(lambda^w I - sum_j A_j lambda^{w-j}) = 0`` iff ``c lambda`` solves it for the
            scaled coefficients, so every eigenvalue is multiplied by ``c`` and the new radius is
            exactly the threshold (eigenvectors keep their directions; all modes are damped by the
            same factor per step). The intercept is then refitted, ``A_0 = mean(Y) - sum_j A_j
            mean(y_{k-j})``, which is the least-squares optimum for the scaled ``A_j``.
        coint_rank: ``None`` (default) fits the unrestricted levels model by ridge; an integer
            k in 0..r fits the error-correction form of rank k (module docstring): k directions
            are pulled back towards an equilibrium, r - k are neutral. ``ridge_alpha`` then
            penalises only the short-run coefficients Gamma_j.

    Attributes (after ``fit``):
        intercept_: (r,) ``A_0``.
        coef_: (lag, r, r), ``coef_[j-1] = A_j`` (``A_1`` = most recent state).
        eigenvalues_: (lag*r,) complex eigenvalues of the companion matrix.
        spectral_radius_: max |eigenvalue| (after any enforcement).
        spectral_radius_before_: radius before enforcement (None without a threshold).
        stability_scale_: the factor c applied (1.0 when nothing was scaled).
        train_r2_: one-step R^2 on the training windows, ``1 - sum (Y - Y_hat)^2 / sum (Y - mean Y)^2``
            (pooled over modes, per-mode means).
        train_rmse_: one-step RMSE on the training windows.
        n_windows_: number of training windows.
        solver_: ``"cholesky"`` (normal equations) or ``"lstsq"`` (SVD fallback).
        lag_scan_: the :func:`select_lag` table (lag, criteria, n_obs) for lags 1..max_lag'
            (``max_lag' = min(max_lag, shortest run // 2)``); empty when nothing was scanned.
        lag_rule_: ``"fixed"`` or the criterion that chose ``lag``.
        fit_seconds_: wall time of ``fit`` (lag scan included).
    """

    name = "MVAR"

    def __init__(self, lag: int | str = 5, ridge_alpha: float = 1e-4,
                 eigenvalue_threshold: float | None = None, coint_rank: int | None = None,
                 max_lag: int | None = None):
        self.lag = lag
        self.max_lag = max_lag
        self.ridge_alpha = ridge_alpha
        self.eigenvalue_threshold = eigenvalue_threshold
        self.coint_rank = coint_rank

    def _validate_params(self) -> None:
        if isinstance(self.lag, bool) or int(self.lag) != self.lag or self.lag < 1:
            raise ValueError(f"mvar.lag must be a positive integer, got {self.lag!r}")
        alpha = float(self.ridge_alpha)
        if not np.isfinite(alpha) or alpha < 0:
            raise ValueError(f"mvar.ridge_alpha must be a finite number >= 0, got {self.ridge_alpha!r}")
        if self.eigenvalue_threshold is not None:
            threshold = float(self.eigenvalue_threshold)
            if not np.isfinite(threshold) or threshold <= 0:
                raise ValueError(
                    f"mvar.eigenvalue_threshold must be > 0 or null, got {self.eigenvalue_threshold!r}"
                )
        rank = self.coint_rank
        if rank is not None and (isinstance(rank, bool) or int(rank) != rank or rank < 0):
            raise ValueError(
                f"mvar.coint_rank must be null (levels model) or an integer >= 0, got {rank!r}"
            )

    def _select_lag(self, trajectories: list[np.ndarray]) -> None:
        """The lag scan (``lag_scan_``) and, for a criterion ``lag``, the lag it selects."""
        criterion = self.lag if isinstance(self.lag, str) else None
        if criterion is not None and criterion not in INFORMATION_CRITERIA:
            raise ValueError(
                f"mvar.lag must be a positive integer or one of {INFORMATION_CRITERIA}, got {self.lag!r}"
            )
        max_lag = self.max_lag if self.max_lag is not None else (20 if criterion else None)
        if max_lag is None:
            self.lag_scan_ = pd.DataFrame(columns=["lag", *INFORMATION_CRITERIA, "n_obs"])
        else:
            shortest = min(len(y) for y in trajectories)
            self.lag_scan_ = select_lag(trajectories, max_lag=min(int(max_lag), shortest // 2))
        self.lag_rule_ = criterion or "fixed"
        if criterion is not None:
            self.lag = best_lag(self.lag_scan_, criterion)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError("this MVARForecaster is not fitted yet: call fit(trajectories) or from_arrays(...)")

    # ------------------------------------------------------------------ fitting
    def fit(self, trajectories: Sequence[np.ndarray]) -> MVARForecaster:
        """Fit on per-run latent trajectories.

        Args:
            trajectories: one array (K_i, r) per run, K_i > lag.

        Returns:
            self.
        """
        t_start = time.perf_counter()
        trajectories = [np.asarray(y, dtype=np.float64) for y in trajectories]
        for i, y in enumerate(trajectories):
            if not np.isfinite(y.sum()):  # a sum is finite iff every term is (for sane magnitudes)
                raise ValueError(f"latent trajectory {i} contains non-finite values; fix the POD/restriction stage")
        self._select_lag(trajectories)
        self._validate_params()
        lag = int(self.lag)
        windows, targets, _ = latent_windows(trajectories, lag)
        n, _, r = windows.shape
        rank = None if self.coint_rank is None else int(self.coint_rank)
        if rank is not None and rank > r:
            raise ValueError(
                f"mvar.coint_rank = {rank} exceeds the r = {r} latent modes; use 0..{r} "
                "(or null for the unrestricted levels model)"
            )
        # Oldest-first features are a free reshape of the windows; block b multiplies y_{k-lag+b},
        # i.e. holds A_{lag-b}^T. The levels fit is solved on centred data, where the
        # unpenalised intercept drops out: Y_hat = mean(Y) + (Z - mean(Z)) B.
        features = windows.reshape(n, lag * r)
        feature_mean = features.mean(axis=0)
        target_mean = targets.mean(axis=0)
        if rank is None:
            # latent_windows returned fresh arrays, so centre them in place (no 2nd n x lag*r copy)
            features = np.subtract(features, feature_mean, out=features)
            targets = np.subtract(targets, target_mean, out=targets)
            solution, solver = _ridge_solve(features, targets, float(self.ridge_alpha))
            intercept = target_mean - feature_mean @ solution
        else:
            solution, intercept, solver = _vecm_solution(windows, targets, rank, float(self.ridge_alpha))
        coef = np.ascontiguousarray(solution.reshape(lag, r, r)[::-1].transpose(0, 2, 1))

        eigenvalues = np.linalg.eigvals(_companion(coef))
        radius = float(np.abs(eigenvalues).max())
        self.spectral_radius_before_ = None
        self.stability_scale_ = 1.0
        if self.eigenvalue_threshold is not None:
            self.spectral_radius_before_ = radius
            threshold = float(self.eigenvalue_threshold)
            if radius > threshold:
                scale = threshold / radius
                powers = scale ** np.arange(1, lag + 1)
                coef = coef * powers[:, None, None]
                solution = solution * np.repeat(powers[::-1], r)[:, None]
                eigenvalues = np.linalg.eigvals(_companion(coef))
                radius = float(np.abs(eigenvalues).max())
                self.stability_scale_ = scale
                logger.info(
                    "MVAR stability: radius %.6f > threshold %.6f, scaled A_j by c^j with c=%.6f",
                    self.spectral_radius_before_, threshold, scale,
                )
                # the least-squares intercept for the scaled A_j
                intercept = target_mean - feature_mean @ solution

        self.intercept_ = intercept
        self.coef_ = coef
        self.eigenvalues_ = eigenvalues
        self.spectral_radius_ = radius
        self.solver_ = solver
        self.n_windows_ = int(n)
        if rank is None:  # centred in place above; the intercept is the least-squares one
            residual = targets - features @ solution
            total = np.sum(targets**2)
        else:
            residual = targets - intercept - features @ solution
            total = np.sum((targets - target_mean) ** 2)
        self.train_rmse_ = float(np.sqrt(np.mean(residual**2)))
        self.train_r2_ = float(1.0 - np.sum(residual**2) / total)
        self.fit_seconds_ = time.perf_counter() - t_start
        logger.info(
            "MVAR(lag=%d, alpha=%g, coint_rank=%s): %d windows, r=%d, solver=%s, radius=%.4f, "
            "train R2=%.6f, %.3f s", lag, self.ridge_alpha, rank, n, r, solver, radius,
            self.train_r2_, self.fit_seconds_,
        )
        return self

    # ------------------------------------------------------------------ forecasting
    def _stacked_coef(self) -> np.ndarray:
        """B = [A_1^T; ...; A_w^T] of shape (lag*r, r)."""
        lag, r, _ = self.coef_.shape
        return self.coef_.transpose(0, 2, 1).reshape(lag * r, r)

    def predict_next(self, windows: np.ndarray) -> np.ndarray:
        """One-step prediction ``A_0 + sum_j A_j y_{k-j}``.

        Args:
            windows: (n, lag, r), oldest state first.

        Returns:
            (n, r) predicted next states.
        """
        self._check_fitted()
        windows = np.asarray(windows, dtype=np.float64)
        lag, r, _ = self.coef_.shape
        if windows.ndim != 3 or windows.shape[1:] != (lag, r):
            raise ValueError(f"windows must have shape (n, {lag}, {r}), got {windows.shape}")
        with np.errstate(over="ignore", invalid="ignore"):
            return self.intercept_ + windows[:, ::-1, :].reshape(len(windows), lag * r) @ self._stacked_coef()

    def rollout(self, seed_window: np.ndarray, n_steps: int) -> np.ndarray:
        """Closed-loop forecast from a true seed window.

        Args:
            seed_window: (lag, r) true states, oldest first.
            n_steps: number of future states >= 0.

        Returns:
            (n_steps, r) predicted states; a diverging recursion yields inf/nan, never an error.
        """
        self._check_fitted()
        lag, r, _ = self.coef_.shape
        seed_window = np.asarray(seed_window, dtype=np.float64)
        if seed_window.shape != (lag, r):
            raise ValueError(f"seed_window must have shape ({lag}, {r}), got {seed_window.shape}")
        if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 0:
            raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
        stacked = self._stacked_coef()
        state = seed_window[::-1].reshape(lag * r).copy()  # most recent first, like the features
        out = np.empty((int(n_steps), r))
        with np.errstate(over="ignore", invalid="ignore"):
            for k in range(int(n_steps)):
                nxt = self.intercept_ + state @ stacked
                out[k] = nxt
                state[r:] = state[:-r].copy()
                state[:r] = nxt
        return out

    def companion_matrix(self) -> np.ndarray:
        """(lag*r, lag*r) companion matrix with ``[A_1 ... A_w]`` in the top block row."""
        self._check_fitted()
        return _companion(self.coef_)

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Hyper-parameters and learned state as plain arrays (``np.savez(..., allow_pickle=False)``)."""
        self._check_fitted()
        return {
            "name": np.array(self.name),
            "lag": np.array(int(self.lag), dtype=np.int64),
            "ridge_alpha": np.array(float(self.ridge_alpha)),
            "eigenvalue_threshold": np.array(
                np.nan if self.eigenvalue_threshold is None else float(self.eigenvalue_threshold)
            ),
            "coint_rank": np.array(-1 if self.coint_rank is None else int(self.coint_rank),
                                   dtype=np.int64),
            "intercept": self.intercept_,
            "coef": self.coef_,
            "eigenvalues": self.eigenvalues_,
            "spectral_radius": np.array(self.spectral_radius_),
            "spectral_radius_before": np.array(
                np.nan if self.spectral_radius_before_ is None else self.spectral_radius_before_
            ),
            "stability_scale": np.array(self.stability_scale_),
            "train_r2": np.array(self.train_r2_),
            "train_rmse": np.array(self.train_rmse_),
            "n_windows": np.array(self.n_windows_, dtype=np.int64),
            "solver": np.array(self.solver_),
        }  # no wall time: identical fits give identical files (fit_seconds_ goes to the summary)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> MVARForecaster:
        """Rebuild a fitted model from :meth:`to_arrays` output (or an ``np.load`` of it)."""
        required = (
            "lag", "ridge_alpha", "eigenvalue_threshold", "intercept", "coef", "eigenvalues",
            "spectral_radius", "spectral_radius_before", "stability_scale", "train_r2", "train_rmse",
            "n_windows", "solver",
        )
        missing = [key for key in required if key not in arrays]
        if missing:
            raise ValueError(f"MVAR arrays lack {missing}; they must come from MVARForecaster.to_arrays()")
        if "name" in arrays and str(arrays["name"]) != cls.name:
            raise ValueError(f"these arrays hold a {str(arrays['name'])!r} model, not {cls.name!r}")
        threshold = float(arrays["eigenvalue_threshold"])
        rank = int(arrays["coint_rank"]) if "coint_rank" in arrays else -1  # absent: older artifacts
        model = cls(
            lag=int(arrays["lag"]),
            ridge_alpha=float(arrays["ridge_alpha"]),
            eigenvalue_threshold=None if np.isnan(threshold) else threshold,
            coint_rank=None if rank < 0 else rank,
        )
        model._validate_params()
        model.intercept_ = np.asarray(arrays["intercept"], dtype=np.float64)
        model.coef_ = np.asarray(arrays["coef"], dtype=np.float64)
        r = model.intercept_.shape[0]
        if model.coef_.shape != (model.lag, r, r):
            raise ValueError(f"coef has shape {model.coef_.shape}; expected {(model.lag, r, r)}")
        model.eigenvalues_ = np.asarray(arrays["eigenvalues"])
        model.spectral_radius_ = float(arrays["spectral_radius"])
        before = float(arrays["spectral_radius_before"])
        model.spectral_radius_before_ = None if np.isnan(before) else before
        model.stability_scale_ = float(arrays["stability_scale"])
        model.train_r2_ = float(arrays["train_r2"])
        model.train_rmse_ = float(arrays["train_rmse"])
        model.n_windows_ = int(arrays["n_windows"])
        model.solver_ = str(arrays["solver"])
        model.fit_seconds_ = float("nan")  # wall times are not stored with the model
        return model


# ---------------------------------------------------------------------- lag selection
def select_lag(
    trajectories: Sequence[np.ndarray],
    max_lag: int = 20,
    criteria: Sequence[str] = INFORMATION_CRITERIA,
) -> pd.DataFrame:
    """Information criteria of OLS VAR(p) with intercept for p = 1..max_lag, runs kept separate.

    Every p uses the same sample: in each run the first ``max_lag`` frames only serve as lags, so
    the targets are ``y_k``, ``k = max_lag .. K_i - 1`` and ``n_obs = sum_i (K_i - max_lag)``; no
    regression row mixes two runs. With ``Sigma_p`` the OLS residual covariance ``RSS / n_obs``,
    ``ld = log det Sigma_p``, ``f = p r^2 + r`` free parameters and ``m = p r + 1`` regressors per
    equation (statsmodels ``VAR.select_order`` definitions, Lütkepohl 2005, §4.3):

        aic = ld + 2 f / n,   bic = ld + log(n) f / n,   hqic = ld + 2 log(log n) f / n,
        fpe = ((n + m) / (n - m))^r exp(ld).

    All orders come from one QR factorisation of ``[1, y_{k-1}, ..., y_{k-max_lag} | y_k]``
    (accumulated run by run): the residual of ``y_k`` on the first ``1 + p r`` regressors is the
    trailing block ``R[1+pr:, -r:]`` of the triangular factor.

    Args:
        trajectories: one array (K_i, r) per run with K_i > max_lag.
        max_lag: largest order tried.
        criteria: subset of ``("aic", "bic", "hqic", "fpe")``.

    Returns:
        DataFrame with one row per p and columns ``lag``, the requested criteria, ``n_obs``.
    """
    if isinstance(max_lag, bool) or int(max_lag) != max_lag or max_lag < 1:
        raise ValueError(f"max_lag must be a positive integer, got {max_lag!r}")
    max_lag = int(max_lag)
    criteria = tuple(criteria)
    unknown = [c for c in criteria if c not in INFORMATION_CRITERIA]
    if unknown or not criteria:
        raise ValueError(f"criteria must be a non-empty subset of {INFORMATION_CRITERIA}, got {criteria!r}")
    trajectories = [np.asarray(y, dtype=np.float64) for y in trajectories]
    if not trajectories:
        raise ValueError("select_lag needs at least one trajectory")
    r = trajectories[0].shape[-1]
    for i, y in enumerate(trajectories):
        if y.ndim != 2 or y.shape[1] != r or y.shape[0] <= max_lag:
            raise ValueError(
                f"run {i} has shape {y.shape}; select_lag needs (K, {r}) with K > max_lag={max_lag}: "
                "lower max_lag or fix the trajectory"
            )
    n_regressors = 1 + max_lag * r
    n_obs = sum(y.shape[0] - max_lag for y in trajectories)
    if n_obs < n_regressors + r:
        raise ValueError(
            f"max_lag={max_lag} needs at least {n_regressors + r} common-sample observations "
            f"(1 + max_lag*r regressors + r), but the runs give {n_obs}: lower max_lag"
        )

    width = n_regressors + r
    chunk_rows = max(4 * width, 4096)
    tri = np.zeros((0, width))
    pending: list[np.ndarray] = []
    pending_rows = 0

    def absorb(blocks: list[np.ndarray], tri: np.ndarray) -> np.ndarray:
        return np.linalg.qr(np.vstack([tri, *blocks]), mode="r")[:width]

    for y in trajectories:
        windows, targets, _ = latent_windows([y], max_lag)
        rows = np.empty((len(targets), width))
        rows[:, 0] = 1.0
        rows[:, 1:n_regressors] = windows[:, ::-1, :].reshape(len(targets), max_lag * r)
        rows[:, n_regressors:] = targets
        pending.append(rows)
        pending_rows += len(rows)
        if pending_rows >= chunk_rows:
            tri = absorb(pending, tri)
            pending, pending_rows = [], 0
    if pending:
        tri = absorb(pending, tri)

    records = []
    with np.errstate(divide="ignore"):
        for p in range(1, max_lag + 1):
            m = 1 + p * r
            residual_factor = scipy.linalg.qr(tri[m:, n_regressors:], mode="r", check_finite=False)[0][:r]
            logdet = 2.0 * np.sum(np.log(np.abs(np.diag(residual_factor)))) - r * np.log(n_obs)
            free = p * r * r + r
            values = {
                "aic": logdet + 2.0 * free / n_obs,
                "bic": logdet + np.log(n_obs) * free / n_obs,
                "hqic": logdet + 2.0 * np.log(np.log(n_obs)) * free / n_obs,
                "fpe": ((n_obs + m) / (n_obs - m)) ** r * np.exp(logdet),
            }
            records.append({"lag": p, **{c: values[c] for c in criteria}, "n_obs": n_obs})
    return pd.DataFrame.from_records(records, columns=["lag", *criteria, "n_obs"])


def best_lag(table: pd.DataFrame, criterion: str) -> int:
    """Lag with the smallest value of ``criterion`` in a :func:`select_lag` table."""
    if criterion not in INFORMATION_CRITERIA or criterion not in table.columns:
        raise ValueError(
            f"criterion {criterion!r} is not a column of the lag table {list(table.columns)}: "
            f"use one of {INFORMATION_CRITERIA} that select_lag computed"
        )
    return int(table["lag"].iloc[int(np.argmin(table[criterion].to_numpy()))])
