"""Quadratic operator inference in POD latent space (the ``opinf`` package).

A discrete-time model of lag 1 on the latent state ``y_k`` (length r):

    y_{k+1} = c + A y_k + H (y_k ⊗ y_k) = c + A y_k + H~ (y_k ⊗~ y_k),

with ``c`` (r,), ``A`` (r, r) and the quadratic operator stored compressed: ``y ⊗~ y`` holds the
r(r+1)/2 distinct products ``y_i y_j`` (i >= j, opinf's ``QuadraticOperator.ckron`` order) and
``H~`` is (r, r(r+1)/2); the full ``H`` (r, r^2, symmetric in its two state slots) is
``QuadraticOperator.expand_entries(H~)``. This is opinf's ``DiscreteModel("cAH")``.

Fit (operator inference): with ``d_k = [1; y_k; y_k ⊗~ y_k]`` the data vector of every pair
``(y_k, y_{k+1})`` taken *inside* one run (no pair crosses two runs) and ``O = [c A H~]``,

    min_O  sum_k || O d_k - y_{k+1} ||^2 + lambda_A ||A||_F^2 + lambda_H ||H~||_F^2,

a Tikhonov problem with the diagonal regulariser ``Gamma = diag(0, sqrt(lambda_A) 1_r,
sqrt(lambda_H) 1_{r(r+1)/2})`` (the constant is not penalised, like the MVAR intercept;
``lambda`` multiplies the sum, not the mean, of squared residuals, as in ``rom.mvar``). opinf's
``TikhonovSolver`` solves it as the stacked least-squares problem ``[R; Gamma] O^T = [Q^T Y; 0]``
by SVD (``scipy.linalg.lstsq``), where ``D = QR`` is the data matrix (rows ``d_k^T``) and ``Y``
the next states (rows ``y_{k+1}^T``): the QR step leaves the objective unchanged up to a constant
and is done once for all candidates; a zero penalty on rank-deficient data stays well defined.

Regularisation is chosen inside :meth:`OpInfForecaster.fit` on whole held-out training runs:
every candidate pair ``(lambda_A, lambda_H)`` is fitted on the remaining runs and rolled out in
closed loop from the first state of each held-out run over its whole length; the skill

    S = 1 - MSE(rollout, truth) / MSE(training-mean state, truth)

is pooled over all held-out steps and modes (training mean = the mean state of the fitting runs).
A candidate whose held-out rollout leaves the stability box (below) scores ``S = -inf``; ties
(e.g. every candidate diverging) go to the larger share of steps kept, then to the earlier
candidate. The best pair is refitted on all runs.

Stability guard: with ``lo_i, hi_i`` the per-mode range of the training states, a state is
*inside the box* when ``|y_i - (lo_i + hi_i) / 2| <= bound_factor (hi_i - lo_i) / 2`` for every
mode, i.e. a box ``bound_factor`` times the training range about its centre. A rollout (or a
one-step prediction) that lands outside the box, or is non-finite, returns NaN from that step on:
quadratic models can blow up in finite time, and this turns a blow-up into the non-finite
forecast the evaluation already detects (as for the MVAR and the LSTM), never an error.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence

import numpy as np
import pandas as pd

logger = logging.getLogger(__name__)

DEFAULT_LINEAR_REGULARISATION = tuple(float(v) for v in np.logspace(-4, 6, 11))
DEFAULT_QUADRATIC_REGULARISATION = tuple(float(v) for v in np.logspace(-2, 12, 15))
SCAN_COLUMNS = ("linear_regularisation", "quadratic_regularisation", "heldout_skill",
                "heldout_finite_fraction")


def _check_grid(key: str, values) -> tuple[float, ...]:
    grid = np.atleast_1d(np.asarray(values, dtype=np.float64))
    if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or np.any(grid < 0):
        raise ValueError(
            f"opinf.{key} must be a non-empty list of finite numbers >= 0 (Tikhonov penalties), "
            f"got {values!r}; e.g. [1.0e-2, 1.0, 1.0e2]"
        )
    return tuple(float(v) for v in grid)


def _runs(trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(trajectories, np.ndarray) and trajectories.ndim == 2:
        raise ValueError(f"trajectories must be a sequence of (K_i, r) runs, got one array of shape "
                         f"{trajectories.shape}; wrap a single run in a list")
    runs = [np.asarray(y, dtype=np.float64) for y in trajectories]
    if not runs:
        raise ValueError("OpInfForecaster.fit needs at least one (K, r) latent run")
    r = runs[0].shape[-1] if runs[0].ndim == 2 else None
    for i, y in enumerate(runs):
        if y.ndim != 2 or y.shape[1] != r or y.shape[0] < 2:
            raise ValueError(f"trajectory {i} has shape {y.shape}; expected (K, {r}) with K >= 2 "
                             "(a run needs one (y_k, y_{k+1}) pair)")
        if not np.all(np.isfinite(y)):
            raise ValueError(f"latent trajectory {i} contains non-finite values; fix the POD/restriction stage")
    return runs


def held_out_runs(n_runs: int, fraction: float, seed: int) -> list[int]:
    """Sorted indices of the ceil(fraction · n_runs) held-out runs: the first entries of
    ``numpy.random.default_rng(seed).permutation(n_runs)``."""
    n_val = math.ceil(fraction * n_runs)
    if n_val < 1 or n_val >= n_runs:
        raise ValueError(
            f"opinf.validation_fraction={fraction} holds out {n_val} of {n_runs} runs; the "
            "regularisation scan needs at least one held-out and one fitting run: pass more "
            "runs, change validation_fraction, or give a single regularisation candidate"
        )
    return sorted(int(i) for i in np.random.default_rng(seed).permutation(n_runs)[:n_val])


def _pairs(runs: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """States (r, n) and next states (r, n) of the within-run pairs (opinf's stacking)."""
    return _opinf().models.DiscreteModel.stack_trajectories([y.T for y in runs])


def _opinf():
    """The ``opinf`` package, imported on first use: it costs 1–2 s (it loads matplotlib), which
    every ``kedro run`` paid when the registry read this module for the model's parameters."""
    import opinf

    return opinf


def _operators() -> tuple[type, type, type]:
    """opinf's constant, linear and quadratic operator classes (the model ``cAH``)."""
    operators = _opinf().operators
    return operators.ConstantOperator, operators.LinearOperator, operators.QuadraticOperator


def _regression(states: np.ndarray, next_states: np.ndarray) -> opinf.lstsq.TikhonovSolver:
    """An opinf Tikhonov solver holding the QR-compressed regression of the pairs.

    ``D = [1, Y^T, (Y ⊗~ Y)^T]`` (n, d) is assembled from the operators' ``datablock``; for
    n > d it is replaced by R of ``D = QR`` and the targets by ``Q^T Z^T``, which changes the
    objective only by a constant (so every candidate solves a 2d x d problem instead of an
    (n + d) x d one).
    """
    data = np.hstack([op.datablock(states).T for op in _operators()])
    lhs = next_states.T
    if data.shape[0] > data.shape[1]:
        q, data = np.linalg.qr(data)
        lhs = q.T @ lhs
    return _opinf().lstsq.TikhonovSolver(method="lstsq").fit(data, lhs.T)


def _solve(solver: opinf.lstsq.TikhonovSolver, r: int, linear: float, quadratic: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(c, A, H~)`` for the penalties: Gamma = diag(0, sqrt(linear) 1_r, sqrt(quadratic) 1_{r(r+1)/2})."""
    solver.regularizer = _opinf().lstsq.TikhonovSolver.get_operator_regularizer(
        [op() for op in _operators()], [0.0, math.sqrt(linear), math.sqrt(quadratic)], r)
    operator_matrix = solver.solve()
    return operator_matrix[:, 0].copy(), operator_matrix[:, 1:1 + r].copy(), operator_matrix[:, 1 + r:].copy()


def _discrete_model(constant: np.ndarray, linear: np.ndarray, quadratic: np.ndarray
                    ) -> opinf.models.DiscreteModel:
    """opinf's ``DiscreteModel`` with the given operators (its ``rhs`` is the one-step map)."""
    return _opinf().models.DiscreteModel(operators=[
        op(entries) for op, entries in zip(_operators(), (constant, linear, quadratic))])


class OpInfForecaster:
    """Quadratic operator-inference latent forecaster; satisfies ``rom.forecaster.LatentForecaster``.

    Args:
        linear_regularisation: candidate penalties ``lambda_A >= 0`` on ``||A||_F^2``.
        quadratic_regularisation: candidate penalties ``lambda_H >= 0`` on ``||H~||_F^2``; every
            pair of the two grids is scanned (defaults: ``logspace(-4, 6, 11)`` and
            ``logspace(-2, 12, 15)``, 165 pairs; quadratic features are products of two states,
            so their useful penalties are larger).
            With one candidate each there is no scan and no hold-out.
        validation_fraction: share of runs held out for the scan (``ceil(fraction · n_runs)``
            runs, drawn with ``seed``), in (0, 1).
        seed: seed of the held-out draw.
        bound_factor: the stability box is ``bound_factor`` times the per-mode training range
            about its centre (module docstring); >= 1.

    Attributes (after ``fit``):
        constant_: (r,) ``c``.
        linear_: (r, r) ``A``.
        quadratic_: (r, r(r+1)/2) compressed ``H~`` (``quadratic_full()`` gives (r, r^2)).
        linear_regularisation_, quadratic_regularisation_: the chosen penalties.
        heldout_skill_: held-out closed-loop skill S of the chosen pair (NaN without a scan).
        regularisation_scan_: DataFrame, one row per candidate pair, columns ``SCAN_COLUMNS``
            (``heldout_finite_fraction``: share of held-out steps before the guard stopped it).
        heldout_runs_: indices of the held-out runs (empty without a scan).
        state_min_, state_max_: (r,) per-mode range of all training states (the box).
        train_r2_: one-step R^2 on all training pairs, ``1 - sum (Y - Y_hat)^2 / sum (Y - mean Y)^2``
            (pooled over modes, per-mode means).
        train_rmse_: one-step RMSE on the training pairs.
        n_pairs_: number of training pairs.
        fit_seconds_: wall time of ``fit``.
    """

    name = "OPINF"

    def __init__(
        self,
        linear_regularisation: Sequence[float] = DEFAULT_LINEAR_REGULARISATION,
        quadratic_regularisation: Sequence[float] = DEFAULT_QUADRATIC_REGULARISATION,
        validation_fraction: float = 0.2,
        seed: int = 0,
        bound_factor: float = 3.0,
    ):
        self.lag = 1
        self.linear_regularisation = linear_regularisation
        self.quadratic_regularisation = quadratic_regularisation
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.bound_factor = bound_factor

    def _validate_params(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        linear = _check_grid("linear_regularisation", self.linear_regularisation)
        quadratic = _check_grid("quadratic_regularisation", self.quadratic_regularisation)
        fraction = self.validation_fraction
        if isinstance(fraction, bool) or not np.isfinite(float(fraction)) or not 0 < fraction < 1:
            raise ValueError(f"opinf.validation_fraction must be in (0, 1), got {fraction!r}")
        if isinstance(self.seed, bool) or int(self.seed) != self.seed:
            raise ValueError(f"opinf.seed must be an integer, got {self.seed!r}")
        factor = float(self.bound_factor)
        if not np.isfinite(factor) or factor < 1:
            raise ValueError(f"opinf.bound_factor must be a finite number >= 1, got {self.bound_factor!r}")
        return linear, quadratic

    def _check_fitted(self) -> None:
        if not hasattr(self, "constant_"):
            raise RuntimeError("this OpInfForecaster is not fitted yet: call fit(trajectories) or from_arrays(...)")

    # ------------------------------------------------------------------ fitting
    def fit(self, trajectories: Sequence[np.ndarray]) -> OpInfForecaster:
        """Choose the regularisation on held-out runs, then fit on all runs.

        Args:
            trajectories: one array (K_i, r) per run, K_i >= 2.

        Returns:
            self.
        """
        t_start = time.perf_counter()
        linear_grid, quadratic_grid = self._validate_params()
        runs = _runs(trajectories)
        r = runs[0].shape[1]
        candidates = [(a, h) for a in linear_grid for h in quadratic_grid]
        if len(candidates) > 1:
            heldout = held_out_runs(len(runs), float(self.validation_fraction), int(self.seed))
            fitting = [y for i, y in enumerate(runs) if i not in set(heldout)]
            scan = self._scan(fitting, [runs[i] for i in heldout], candidates)
            best = max(range(len(candidates)),
                       key=lambda i: (scan[i][0], scan[i][1], -i))  # ties: the first candidate
        else:
            heldout, scan, best = [], [(np.nan, np.nan)], 0
        self.regularisation_scan_ = pd.DataFrame(
            [(*candidates[i], *scan[i]) for i in range(len(candidates))], columns=list(SCAN_COLUMNS))
        self.heldout_runs_ = heldout
        self.linear_regularisation_, self.quadratic_regularisation_ = candidates[best]
        self.heldout_skill_ = float(scan[best][0])

        states, next_states = _pairs(runs)
        self.constant_, self.linear_, self.quadratic_ = _solve(_regression(states, next_states), r,
                                                               *candidates[best])
        self._model = _discrete_model(self.constant_, self.linear_, self.quadratic_)
        all_states = np.concatenate(runs)
        self.state_min_, self.state_max_ = all_states.min(axis=0), all_states.max(axis=0)
        residual = next_states - self._model.rhs(states)
        total = np.sum((next_states - next_states.mean(axis=1, keepdims=True)) ** 2)
        self.n_pairs_ = int(states.shape[1])
        self.train_rmse_ = float(np.sqrt(np.mean(residual**2)))
        self.train_r2_ = float(1.0 - np.sum(residual**2) / total)
        self.fit_seconds_ = time.perf_counter() - t_start
        logger.info(
            "OPINF: %d pairs, r=%d, lambda_A=%g, lambda_H=%g (held-out skill %.4f over %d runs, "
            "%d candidates), train R2=%.6f, %.3f s", self.n_pairs_, r, self.linear_regularisation_,
            self.quadratic_regularisation_, self.heldout_skill_, len(heldout), len(candidates),
            self.train_r2_, self.fit_seconds_,
        )
        return self

    def _scan(self, fitting: list[np.ndarray], heldout: list[np.ndarray],
              candidates: list[tuple[float, float]]) -> list[tuple[float, float]]:
        """(skill S, finite fraction) of each candidate, fitted on ``fitting``, scored on ``heldout``."""
        r = fitting[0].shape[1]
        solver = _regression(*_pairs(fitting))
        fit_states = np.concatenate(fitting)
        lo, hi = fit_states.min(axis=0), fit_states.max(axis=0)
        mean_state = fit_states.mean(axis=0)
        n_steps = max(len(y) for y in heldout) - 1
        seeds = np.stack([y[0] for y in heldout], axis=1)                       # (r, n_heldout)
        # truth[k, :, j] = y_{k+1} of held-out run j; NaN past the end of a shorter run
        truth = np.full((n_steps, r, len(heldout)), np.nan)
        for j, y in enumerate(heldout):
            truth[: len(y) - 1, :, j] = y[1:]
        valid = np.isfinite(truth)
        reference = np.sum((truth[valid] - np.broadcast_to(mean_state[None, :, None], truth.shape)[valid]) ** 2)
        results = []
        for linear, quadratic in candidates:
            model = _discrete_model(*_solve(solver, r, linear, quadratic))
            forecast = _guarded_rollout(model.rhs, seeds, n_steps, lo, hi, float(self.bound_factor))
            finite = np.isfinite(forecast[valid])
            error = np.sum((forecast[valid] - truth[valid]) ** 2) if finite.all() else np.inf
            results.append((float(1.0 - error / reference), float(finite.mean())))
        return results

    def quadratic_full(self) -> np.ndarray:
        """(r, r^2) full quadratic operator ``H`` with ``H (y ⊗ y) = H~ (y ⊗~ y)``."""
        self._check_fitted()
        return _opinf().operators.QuadraticOperator.expand_entries(self.quadratic_)

    # ------------------------------------------------------------------ forecasting
    def predict_next(self, windows: np.ndarray) -> np.ndarray:
        """One-step prediction ``c + A y + H~ (y ⊗~ y)`` of the last (only) window state.

        Args:
            windows: (n, 1, r).

        Returns:
            (n, r) predicted next states; a row outside the stability box is NaN.
        """
        self._check_fitted()
        windows = np.asarray(windows, dtype=np.float64)
        r = self.constant_.shape[0]
        if windows.ndim != 3 or windows.shape[1:] != (1, r):
            raise ValueError(f"windows must have shape (n, 1, {r}), got {windows.shape}")
        states = np.ascontiguousarray(windows[:, 0, :].T)
        return _guarded_rollout(self._model.rhs, states, 1, self.state_min_, self.state_max_,
                                float(self.bound_factor))[0].T

    def rollout(self, seed_window: np.ndarray, n_steps: int) -> np.ndarray:
        """Closed-loop forecast from a true seed state.

        Args:
            seed_window: (1, r) true state.
            n_steps: number of future states >= 0.

        Returns:
            (n_steps, r) predicted states; NaN from the first step that leaves the stability box
            (module docstring), never an error.
        """
        self._check_fitted()
        r = self.constant_.shape[0]
        seed_window = np.asarray(seed_window, dtype=np.float64)
        if seed_window.shape != (1, r):
            raise ValueError(f"seed_window must have shape (1, {r}), got {seed_window.shape}")
        if isinstance(n_steps, bool) or int(n_steps) != n_steps or n_steps < 0:
            raise ValueError(f"n_steps must be a non-negative integer, got {n_steps!r}")
        return _guarded_rollout(self._model.rhs, seed_window.T.copy(), int(n_steps), self.state_min_,
                                self.state_max_, float(self.bound_factor))[:, :, 0]

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Hyper-parameters, operators and the scan as plain arrays (``np.savez(..., allow_pickle=False)``)."""
        self._check_fitted()
        linear_grid, quadratic_grid = self._validate_params()
        scan = self.regularisation_scan_
        return {
            "name": np.array(self.name),
            "linear_regularisation": np.array(linear_grid),
            "quadratic_regularisation": np.array(quadratic_grid),
            "validation_fraction": np.array(float(self.validation_fraction)),
            "seed": np.array(int(self.seed), dtype=np.int64),
            "bound_factor": np.array(float(self.bound_factor)),
            "constant": self.constant_,
            "linear": self.linear_,
            "quadratic": self.quadratic_,
            "state_min": self.state_min_,
            "state_max": self.state_max_,
            "chosen_linear_regularisation": np.array(self.linear_regularisation_),
            "chosen_quadratic_regularisation": np.array(self.quadratic_regularisation_),
            "heldout_skill": np.array(self.heldout_skill_),
            "heldout_runs": np.array(self.heldout_runs_, dtype=np.int64),
            **{f"scan_{c}": scan[c].to_numpy(dtype=np.float64) for c in SCAN_COLUMNS},
            "train_r2": np.array(self.train_r2_),
            "train_rmse": np.array(self.train_rmse_),
            "n_pairs": np.array(self.n_pairs_, dtype=np.int64),
        }  # no wall time: identical fits give identical files

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> OpInfForecaster:
        """Rebuild a fitted model from :meth:`to_arrays` output (or an ``np.load`` of it)."""
        required = ("linear_regularisation", "quadratic_regularisation", "validation_fraction", "seed",
                    "bound_factor", "constant", "linear", "quadratic", "state_min", "state_max",
                    "chosen_linear_regularisation", "chosen_quadratic_regularisation", "heldout_skill",
                    "heldout_runs", *(f"scan_{c}" for c in SCAN_COLUMNS), "train_r2", "train_rmse",
                    "n_pairs")
        missing = [key for key in required if key not in arrays]
        if missing:
            raise ValueError(f"OPINF arrays lack {missing}; they must come from OpInfForecaster.to_arrays()")
        if "name" in arrays and str(arrays["name"]) != cls.name:
            raise ValueError(f"these arrays hold a {str(arrays['name'])!r} model, not {cls.name!r}")
        model = cls(
            linear_regularisation=tuple(np.asarray(arrays["linear_regularisation"]).tolist()),
            quadratic_regularisation=tuple(np.asarray(arrays["quadratic_regularisation"]).tolist()),
            validation_fraction=float(arrays["validation_fraction"]),
            seed=int(arrays["seed"]),
            bound_factor=float(arrays["bound_factor"]),
        )
        model._validate_params()
        model.constant_ = np.asarray(arrays["constant"], dtype=np.float64)
        model.linear_ = np.asarray(arrays["linear"], dtype=np.float64)
        model.quadratic_ = np.asarray(arrays["quadratic"], dtype=np.float64)
        r = model.constant_.shape[0]
        expected = {"linear": (r, r), "quadratic": (r, r * (r + 1) // 2), "state_min": (r,), "state_max": (r,)}
        for key, shape in expected.items():
            if np.shape(arrays[key]) != shape:
                raise ValueError(f"OPINF arrays[{key!r}] has shape {np.shape(arrays[key])}; expected {shape}")
        model.state_min_ = np.asarray(arrays["state_min"], dtype=np.float64)
        model.state_max_ = np.asarray(arrays["state_max"], dtype=np.float64)
        model.linear_regularisation_ = float(arrays["chosen_linear_regularisation"])
        model.quadratic_regularisation_ = float(arrays["chosen_quadratic_regularisation"])
        model.heldout_skill_ = float(arrays["heldout_skill"])
        model.heldout_runs_ = [int(i) for i in np.asarray(arrays["heldout_runs"])]
        model.regularisation_scan_ = pd.DataFrame({c: np.asarray(arrays[f"scan_{c}"], dtype=np.float64)
                                                   for c in SCAN_COLUMNS})
        model.train_r2_ = float(arrays["train_r2"])
        model.train_rmse_ = float(arrays["train_rmse"])
        model.n_pairs_ = int(arrays["n_pairs"])
        model.fit_seconds_ = float("nan")  # wall times are not stored with the model
        model._model = _discrete_model(model.constant_, model.linear_, model.quadratic_)
        return model


def _guarded_rollout(rhs, seeds: np.ndarray, n_steps: int, lo: np.ndarray, hi: np.ndarray,
                     bound_factor: float) -> np.ndarray:
    """Iterate ``y <- rhs(y)`` from ``seeds`` (r, n) for ``n_steps``; returns (n_steps, r, n).

    A column that leaves the box ``|y - (lo + hi)/2| <= bound_factor (hi - lo)/2`` (or is
    non-finite) is NaN from that step on.
    """
    centre = ((lo + hi) / 2)[:, None]
    half_width = (bound_factor * (hi - lo) / 2)[:, None]
    out = np.full((n_steps, *seeds.shape), np.nan)
    state = seeds.copy()
    alive = np.ones(seeds.shape[1], dtype=bool)
    with np.errstate(over="ignore", invalid="ignore"):
        for k in range(n_steps):
            if not alive.any():
                break
            state = rhs(state)
            alive &= np.all(np.abs(state - centre) <= half_width, axis=0)  # False for NaN
            state[:, ~alive] = np.nan
            out[k] = state
    return out
