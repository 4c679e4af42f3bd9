"""Hyper-parameter search by closed-loop validation on held-out whole training runs.

A *candidate* is one forecaster class (MVAR, LSTM, ...) with one set of hyper-parameters and one
number of POD modes r'. Its score is the skill the evaluation protocol (science.md §8) measures
on unseen test runs, measured instead on training runs the candidate never saw:

1. Split the training runs into folds of whole runs (``kfold``: every run is held out exactly
   once; ``holdout``: one seeded held-out share). Windows never cross runs, so a held-out run
   contributes nothing to the fit (a split of overlapping windows would leak).
2. Fit the candidate on the first r' latent coordinates of the other runs.
3. For every held-out run, score the candidate through the test-run protocol's one forecast
   block (:func:`rom_pipeline.evaluation.protocol.forecast_block`, the function the evaluation
   calls): seed the model with the true latent window ending at ``forecast_start``, roll it out
   closed loop to the end of the run, lift the forecast with the basis truncated to r' and the
   shifts of the scored shift mode, clamp, restore the mass of the last conditioning frame, and
   compare with the run's true KDE density.
4. ``score`` = pooled density R² (1 − ΣΣ(ρ − ρ̂)² / ΣΣ(ρ − ρ̄)² per run), averaged over the
   held-out runs; the latent R², the teacher-forced one-step latent R² and the POD ceiling are
   kept alongside. One-step skill never ranks candidates: it rewards models whose rollouts
   diverge.

One shift mode is scored per candidate (one rollout, one lift); the truth side of the block
(its restriction, shifts and POD ceiling) is built once per held-out run and r'. For the same
forecast this gives exactly the numbers
:func:`~rom_pipeline.evaluation.protocol.evaluate_forecaster` reports (``r2_pooled``,
``r2_latent``, ``r2_pod_ceiling``, ``diverged``).

POD modes are nested: the basis with r' < r modes is the first r' columns of the stored r-mode
basis, Φ_{r'} = Φ_r[:, :r'] (same mean, transform and alignment reference), so the r'-mode
latent trajectory y^{(r')} = Φ_{r'}ᵀ(x − μ) is the first r' columns of the stored one. Searching
r' ≤ r therefore needs no new SVD and no new projection; r' > r is impossible without refitting
POD and is rejected.

The transform and the shift method change the basis itself, so they cannot be nested: each
value of ``search.pod`` gets, in every fold, one POD fitted on that fold's fitting runs only
(:func:`refit_pod`; never a held-out run), kept at the largest r' asked for and shared by every
model setting of that value (smaller r' are again its leading columns). Its cost is counted in
the table (``pod_seconds``) and in the search's total budget.

The climatology and persistence baselines are scored beside every (r', POD) a model is searched
at, on the same held-out runs and through the same block, so each selected configuration comes
with the baseline scores it has to beat (:func:`best_configurations`).

A configuration the test protocol cannot score is refused before any fit
(:func:`check_protocol_fit`): on the test runs every forecaster is seeded with the true window of
``eval.forecast_start / dt`` frames, so no lag may be longer.

Every candidate is scored on the same frames: the forecast starts at the same frame k0 for all of
them (raised, if needed, to the largest lag searched), so scores of different lags are comparable.
Where it starts is :func:`search_forecast_start`: the evaluation's ``eval.forecast_start`` when
set (the same k0 as on the test runs); with ``eval.forecast_start`` null the evaluation seeds with
the whole training length sim.T, which leaves no frame to forecast in a training run (those are
only sim.T long), so the search then seeds with the protocol's shortest seed, the largest lag.
"""
from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rom_pipeline.evaluation.metrics import latent_r2, r2_pooled
from rom_pipeline.evaluation.protocol import (
    EvaluationConfig,
    ForecastBlock,
    TestRun,
    forecast_block,
    teacher_forced,
)
from rom_pipeline.rom.baselines import ClimatologyForecaster, PersistenceForecaster
from rom_pipeline.rom.pod import PODBasis

logger = logging.getLogger(__name__)



class _FittedPersistence(PersistenceForecaster):
    """Persistence with the ``fit`` every searched factory has (it learns nothing)."""

    def fit(self, trajectories: Sequence[np.ndarray]) -> _FittedPersistence:
        return self


#: Scored beside every (r', POD setting) a model is searched at, never selected as a model.
BASELINE_FORECASTERS: dict[str, Callable[..., Any]] = {
    "climatology": ClimatologyForecaster, "persistence": _FittedPersistence,
}
BASELINES = tuple(BASELINE_FORECASTERS)
# Keys of search.pod: POD settings that need one POD per value, fitted on each fold's fitting runs.
POD_GRID_KEYS = ("transform", "shift_method")


def registered_forecasters() -> dict[str, Callable[..., Any]]:
    """``{model: class}`` of every forecaster in :data:`rom_pipeline.registry.FORECASTERS`, and
    the baselines (:data:`BASELINE_FORECASTERS`)."""
    from rom_pipeline.registry import FORECASTERS as REGISTRY

    return {**{name: entry.estimator for name, entry in REGISTRY.items()}, **BASELINE_FORECASTERS}

VALIDATION_SCHEMES = ("kfold", "holdout")
RUN_SCORE_COLUMNS = (
    "config_id", "model", "fold", "run_id", "n_modes", "pod_setting", "r2_pooled", "r2_latent",
    "r2_one_step_latent", "r2_pod_ceiling", "diverged", "n_forecast_frames",
)
# The latent trajectories stored by the POD stage are the restriction of the runs' densities (to
# rounding); a mismatch above this fraction of max|y| means train_latent and train.runs come from
# different runs or parameters.
_CONSISTENCY_RTOL = 1e-6


# ---------------------------------------------------------------------- POD modes
def truncate_basis(pod: PODBasis, n_modes: int) -> PODBasis:
    """The basis with the first ``n_modes`` modes of ``pod`` (modes are nested, see module doc).

    Args:
        pod: a fitted basis with r modes.
        n_modes: r' with 1 <= r' <= r.

    Returns:
        A copy with ``modes_ = pod.modes_[:, :r']`` and ``n_modes_ = r'``; the mean, transform,
        alignment reference and spectrum are shared with ``pod``. ``restrict`` of the copy equals
        the first r' columns of ``pod.restrict``.

    Raises:
        ValueError: if r' < 1 or r' > r.
    """
    n_modes = int(n_modes)
    if n_modes < 1:
        raise ValueError(f"the number of POD modes must be >= 1, got {n_modes}")
    if n_modes > pod.n_modes_:
        raise ValueError(
            f"r' = {n_modes} POD modes requested but the stored pod_basis has only r = "
            f"{pod.n_modes_}: the search truncates the stored basis (modes are nested) and cannot "
            f"add modes. Lower search.modes, or rerun the pod pipeline with rom.fixed_modes >= "
            f"{n_modes} (or a higher rom.pod_energy)"
        )
    return pod.truncated(n_modes)


def modes_for_energy(pod: PODBasis, energy: float) -> int:
    """Smallest r' with cumulative energy Σ_{k≤r'} σ_k² / Σ σ² >= ``energy`` (the POD stage's rule,
    capped at the numerical rank), from the spectrum stored with the basis."""
    energy = float(energy)
    if not 0.0 < energy <= 1.0:
        raise ValueError(f"pod_energy must be in (0, 1], got {energy!r}")
    cumulative = np.asarray(pod.cumulative_energy_, dtype=np.float64)
    r = int(np.searchsorted(cumulative, energy, side="left")) + 1
    return min(r, int(pod.rank_), len(cumulative))


def mode_counts(
    pod: PODBasis, fixed_modes: Sequence[int] = (), pod_energy: Sequence[float] = (),
    refit: bool = False,
) -> dict[int, str]:
    """``{r': how it was asked for}`` for the requested mode counts, in request order.

    With no request the stored r is searched. Requests mapping to the same r' are merged (their
    labels joined), so no candidate is fitted twice. ``refit``: the candidates use PODs refitted
    per fold (``search.pod``), which keep the largest r' asked for, so r' may exceed the stored r
    but must be given as ``fixed_modes``.

    Raises:
        ValueError: if any r' exceeds the stored r (see :func:`truncate_basis`), or ``refit``
            with ``pod_energy`` (the refitted spectra differ per fold).
    """
    if refit:
        if pod_energy:
            raise ValueError(
                f"search.pod refits POD per fold, so r' cannot come from the stored spectrum: "
                f"give search.modes.fixed_modes instead of pod_energy {list(pod_energy)}"
            )
        counts = [int(r) for r in fixed_modes] or [int(pod.n_modes_)]
        return {r: f"fixed_modes={r}" for r in dict.fromkeys(counts)}
    requests = [(int(r), f"fixed_modes={int(r)}") for r in fixed_modes]
    requests += [(modes_for_energy(pod, e), f"pod_energy={float(e):g}") for e in pod_energy]
    if not requests:
        requests = [(int(pod.n_modes_), f"stored r={int(pod.n_modes_)}")]
    out: dict[int, str] = {}
    for r, label in requests:
        truncate_basis(pod, r)  # raises for r' > r with the fix
        out[r] = f"{out[r]},{label}" if r in out else label
    return out


# ---------------------------------------------------------------------- run splits
def run_folds(
    run_ids: Sequence[str], scheme: str = "kfold", n_folds: int = 3,
    holdout_fraction: float = 0.25, seed: int = 0,
) -> list[tuple[list[str], list[str]]]:
    """Split whole runs into (training runs, held-out runs) pairs.

    ``kfold``: a permutation of the runs drawn from ``numpy.random.default_rng(seed)`` is cut into
    ``n_folds`` near-equal groups (``numpy.array_split``); fold i holds out group i, so every run
    is held out exactly once. ``holdout``: one fold holding out the first
    ceil(holdout_fraction · n_runs) runs of that permutation.

    Returns:
        One ``(train_ids, held_out_ids)`` pair per fold, each list sorted; the two are disjoint
        and together are all runs.

    Raises:
        ValueError: for an unknown scheme, fewer than two runs, more folds than runs, or a
            hold-out share that leaves no training run.
    """
    run_ids = [str(r) for r in run_ids]
    n = len(run_ids)
    if len(set(run_ids)) != n:
        raise ValueError("run ids must be unique")
    if scheme not in VALIDATION_SCHEMES:
        raise ValueError(f"search.validation = {scheme!r}; use one of {VALIDATION_SCHEMES}")
    if n < 2:
        raise ValueError(f"the search needs at least 2 training runs to hold one out, got {n}")
    order = [run_ids[i] for i in np.random.default_rng(seed).permutation(n)]
    if scheme == "kfold":
        if not 2 <= n_folds <= n:
            raise ValueError(
                f"search.n_folds = {n_folds} must be between 2 and the {n} training runs"
            )
        groups = [list(g) for g in np.array_split(np.array(order, dtype=object), n_folds)]
    else:
        n_out = math.ceil(holdout_fraction * n)
        if not 0 < holdout_fraction < 1 or n_out >= n:
            raise ValueError(
                f"search.holdout_fraction = {holdout_fraction} holds out {n_out} of {n} runs; "
                "choose a share in (0, 1) that leaves at least one training run"
            )
        groups = [order[:n_out]]
    folds = []
    for group in groups:
        held = set(group)
        folds.append((sorted(r for r in run_ids if r not in held), sorted(held)))
    return folds


def search_forecast_start(
    search_start: float | None, eval_start: float | None, dt: float, lags: Sequence[int]
) -> tuple[float, str]:
    """Forecast start (s) of the held-out runs and the rule that chose it.

    ``search.forecast_start`` if set; else ``eval.forecast_start`` if set (the test runs' own
    k0); else k0 = the largest lag (``eval.forecast_start`` null means "seed with the whole
    training length sim.T" on test runs, which would leave no forecast frame in a training run,
    so the search seeds with the shortest window every candidate accepts). Always raised to the
    largest lag by :func:`common_forecast_start`.
    """
    if search_start is not None:
        requested, rule = float(search_start), "search.forecast_start"
    elif eval_start is not None:
        requested, rule = float(eval_start), "eval.forecast_start (as on the test runs)"
    else:
        requested, rule = 0.0, ("eval.forecast_start is null (test runs seed with sim.T, longer "
                                "than a held-out training run allows): seed = the largest lag")
    start = common_forecast_start(requested, dt, lags)
    if requested > 0 and start > requested + 1e-9 * dt:
        rule += ", raised to the largest lag"
    return start, rule


def common_forecast_start(forecast_start: float, dt: float, lags: Sequence[int]) -> float:
    """Forecast start (s) shared by every candidate: ``k0 · dt`` with
    ``k0 = max(round(forecast_start / dt), max(lags))`` conditioning frames, so every candidate
    has a full seed window and all are scored on the same frames k0..K−1."""
    k0 = max(int(round(forecast_start / dt)), max(int(w) for w in lags))
    return k0 * dt


# ---------------------------------------------------------------------- candidates
@dataclass(frozen=True)
class Candidate:
    """One configuration to score.

    Attributes:
        model: key of the forecaster factory (``"mvar"``, ``"lstm"``).
        n_modes: r', the POD modes the forecaster sees.
        hyperparameters: every constructor argument of the forecaster.
        varied: the searched values only (a subset of ``hyperparameters``).
        modes_source: how r' was requested (``"fixed_modes=10"``, ``"pod_energy=0.99"``).
        pod: POD settings of ``search.pod`` (``{"transform": "log", "shift_method": "integer"}``):
            the candidate is scored on a POD with these settings fitted on each fold's fitting
            runs. ``{}``: the stored basis (fitted on all training runs).
    """

    model: str
    n_modes: int
    hyperparameters: dict[str, Any]
    varied: dict[str, Any] = field(default_factory=dict)
    modes_source: str = ""
    pod: dict[str, Any] = field(default_factory=dict)

    @property
    def config_id(self) -> str:
        parts = [f"r={self.n_modes}", *(f"{k}={_short(v)}" for k, v in self.pod.items()),
                 *(f"{k}={_short(v)}" for k, v in self.varied.items())]
        return f"{self.model}[{','.join(parts)}]"

    @property
    def lag(self) -> int:
        """Seed frames the forecaster needs (1 for a forecaster without a ``lag`` key: the
        baselines, operator inference)."""
        return int(self.hyperparameters.get("lag", 1))

    @property
    def pod_key(self) -> str:
        """Label of the candidate's POD: ``"stored"`` or the ``search.pod`` values."""
        return pod_label(self.pod)


def pod_label(setting: Mapping[str, Any]) -> str:
    return ",".join(f"{k}={v}" for k, v in setting.items()) or "stored"


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def build_candidates(
    model: str, base: Mapping[str, Any], grid: Sequence[Mapping[str, Any]], modes: Mapping[int, str],
    pod_grid: Sequence[Mapping[str, Any]] = ({},),
) -> list[Candidate]:
    """Candidates of one model: every grid point (overriding ``base``) at every r' in ``modes``
    and every POD setting of ``pod_grid`` (see :func:`pod_settings`).

    Raises:
        ValueError: for an unknown model, an empty grid or a lag that is not a positive integer.
    """
    known = registered_forecasters()
    if model not in known or model in BASELINES:
        raise ValueError(f"unknown model {model!r}; the search knows "
                         f"{sorted(set(known) - set(BASELINES))}")
    if not grid or not modes or not pod_grid:
        raise ValueError(f"search.{model}: the grid has no configuration to score; give at least "
                         f"one value per searched key (or disable the model)")
    out = []
    for point in grid:
        hyper = {**base, **point}
        # a forecaster without a lag argument has a fixed window (its instance's lag)
        lag = hyper["lag"] if "lag" in hyper else getattr(known[model](**hyper), "lag", None)
        if isinstance(lag, bool) or not isinstance(lag, (int, np.integer)) or lag < 1:
            raise ValueError(
                f"{model} lag = {lag!r}: the search fits fixed integer lags; give search.{model}"
                f".grid.lag (e.g. [2, 3, 5]) when {model}.lag is a criterion"
            )
        for setting in pod_grid:
            for r, source in modes.items():
                out.append(Candidate(model, int(r), dict(hyper), dict(point), source, dict(setting)))
    return out


def pod_settings(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination (product) of the ``search.pod`` lists, e.g. ``{"transform": ["sqrt",
    "log"]}`` -> ``[{"transform": "sqrt"}, {"transform": "log"}]``; ``{}`` -> ``[{}]`` (the stored
    basis only).

    Raises:
        ValueError: for a key other than :data:`POD_GRID_KEYS` or an empty list.
    """
    unknown = sorted(set(grid) - set(POD_GRID_KEYS))
    if unknown:
        raise ValueError(f"search.pod has unknown keys {unknown}; choose from {POD_GRID_KEYS}")
    settings: list[dict[str, Any]] = [{}]
    for key in POD_GRID_KEYS:
        if key not in grid:
            continue
        values = list(grid[key])
        if not values:
            raise ValueError(f"search.pod.{key} is an empty list: give at least one value")
        settings = [{**s, key: v} for s in settings for v in values]
    return settings


def baseline_candidates(candidates: Sequence[Candidate]) -> list[Candidate]:
    """Climatology and persistence at every (r', POD setting) the models are searched at, so each
    selected configuration has its baselines scored on the same held-out runs and basis."""
    seen: dict[tuple[int, str], Candidate] = {}
    for cand in candidates:
        seen.setdefault((cand.n_modes, cand.pod_key), cand)
    return [Candidate(name, cand.n_modes, {}, {}, cand.modes_source, dict(cand.pod))
            for cand in seen.values() for name in BASELINES]


def check_protocol_fit(candidates: Sequence[Candidate], seed_frames: int | None,
                       seed_rule: str) -> None:
    """Refuse, before any fit, a configuration the test protocol cannot score.

    On the test runs every forecaster is seeded with the true window of ``seed_frames`` frames
    (``eval.forecast_start / dt``), so a lag longer than that cannot be evaluated: it would be
    selected here and fail (or be scored on a different seed) in the evaluation.

    Raises:
        ValueError: naming each offending model, key and value, and the fix.
    """
    if seed_frames is None:
        return
    too_long = sorted({(c.model, c.lag) for c in candidates if c.lag > seed_frames})
    if too_long:
        listed = ", ".join(f"search.{m}.grid.lag (or {m}.lag) = {lag}" for m, lag in too_long)
        raise ValueError(
            f"{listed}: longer than the test protocol's seed window of {seed_frames} frames "
            f"({seed_rule}); a selected configuration must fit the test protocol. Use lags <= "
            f"{seed_frames}"
        )


# ---------------------------------------------------------------------- the search
@dataclass
class SearchResult:
    """Output of :func:`grid_search`.

    Attributes:
        table: one row per candidate, best first within each model (see :func:`summarise`).
        run_scores: one row per (candidate, held-out run), columns ``RUN_SCORE_COLUMNS``.
        budget: the whole search's cost: ``n_candidates``, ``n_fits`` (forecaster fits),
            ``n_pod_fits`` (POD fits of ``search.pod`` settings), ``fit_seconds``,
            ``score_seconds``, ``pod_seconds`` (POD fits and restrictions) and ``wall_seconds``
            (all of :func:`grid_search`, loading included).
    """

    table: pd.DataFrame
    run_scores: pd.DataFrame
    budget: dict[str, Any] = field(default_factory=dict)


def held_out_block(pod: PODBasis, run: TestRun, stored: np.ndarray, config: EvaluationConfig,
                   max_lag: int) -> ForecastBlock:
    """The protocol's :class:`~rom_pipeline.evaluation.protocol.ForecastBlock` of one held-out run
    (restricted with its true shifts, cut at ``config.forecast_start``), after checking that the
    stored latent trajectory the candidates were fitted on is that restriction.

    Raises:
        ValueError: if the stored trajectory is not the restriction of the run's density
            (``train_latent`` and ``train.runs`` out of date with each other), or the
            forecast start leaves too few conditioning frames.
    """
    block = ForecastBlock.prepare(pod, run, config, seed_length=max_lag)
    latent = np.asarray(stored, dtype=np.float64)
    restricted = block.latent
    scale = max(float(np.max(np.abs(restricted))), 1e-300)
    if latent.shape != restricted.shape or \
            np.max(np.abs(latent - restricted)) > _CONSISTENCY_RTOL * scale:
        raise ValueError(
            f"run {run.run_id!r}: the stored latent trajectory {latent.shape} is not the POD "
            f"restriction of its density {restricted.shape}; train_latent and train.runs are "
            "out of date with each other: rerun the pod pipeline"
        )
    return block


def score_forecast(model, basis: PODBasis, block: ForecastBlock,
                   config: EvaluationConfig, pod_ceiling: float | None = None) -> dict[str, Any]:
    """Closed-loop skill of one fitted forecaster on one held-out run, scored by the protocol's
    :func:`~rom_pipeline.evaluation.protocol.forecast_block` (seed, roll out, lift with r' =
    ``basis.n_modes_`` modes and ``config.shift_modes[0]``, post-process, score), so the numbers
    are those the evaluation reports for the same forecast.

    ``pod_ceiling``: the block's POD ceiling at this r' if already computed (it depends on the
    run and the basis only, not on the model).

    Returns:
        ``{"r2_pooled", "r2_latent", "r2_one_step_latent" (teacher-forced latent R²),
        "r2_pod_ceiling", "diverged", "n_forecast_frames"}``.
    """
    (scored,) = forecast_block(model, basis, block, config).modes
    y_one = teacher_forced(model, basis, block)
    y_true = block.latent[block.k0:, :basis.n_modes_]
    one_step = latent_r2(y_true, y_one) if np.all(np.isfinite(y_one)) else math.nan
    return {
        "r2_pooled": scored.scores["r2_pooled"], "r2_latent": scored.scores["r2_latent"],
        "r2_one_step_latent": one_step,
        "r2_pod_ceiling": (r2_pooled(block.truth, block.ceiling(basis)) if pod_ceiling is None
                           else pod_ceiling),
        "diverged": scored.diverged, "n_forecast_frames": block.n_forecast,
    }


def refit_pod(stored: PODBasis, setting: Mapping[str, Any], n_modes: int,
              frames: Sequence[Callable[[], np.ndarray]]) -> PODBasis:
    """A POD with the stored basis's settings except those in ``setting`` (``transform``,
    ``shift_method``), keeping ``n_modes`` modes, fitted on ``frames`` (one loader of (T, ny, nx)
    per fitting run; never a held-out run)."""
    return PODBasis(
        fixed_modes=int(n_modes), pod_energy=stored.pod_energy,
        transform=setting.get("transform", stored.transform), transform_eps=stored.transform_eps,
        shift_align=stored.shift_align, shift_align_ref=stored.shift_align_ref,
        shift_method=setting.get("shift_method", stored.shift_method),
    ).fit(list(frames))


def grid_search(
    trajectories: Mapping[str, np.ndarray],
    pod: PODBasis,
    load_run: Callable[[str], TestRun],
    candidates: Sequence[Candidate],
    folds: Sequence[tuple[Sequence[str], Sequence[str]]],
    config: EvaluationConfig,
    forecasters: Mapping[str, Callable[..., Any]] | None = None,
) -> SearchResult:
    """Score every candidate by closed-loop skill on held-out whole runs (see module doc).

    Candidates with ``pod == {}`` use the stored basis and ``trajectories``. Candidates with POD
    settings (``search.pod``) use, in each fold, one POD per setting fitted by :func:`refit_pod`
    on that fold's fitting runs only (its r = the largest r' of the setting's candidates, so
    smaller r' are again its leading columns), shared by every candidate of that setting; the
    fitting runs are restricted with it and the held-out runs are restricted inside their
    forecast block. Its cost is counted in ``pod_seconds``.

    Args:
        trajectories: ``{run_id: (K_i, r)}`` stored latent trajectories of all training runs.
        pod: the stored r-mode basis; candidate r' ≤ r use :func:`truncate_basis`.
        load_run: ``run_id -> TestRun`` with the run's true density on the ROM grid.
        candidates: configurations to score (baselines included, see
            :func:`baseline_candidates`).
        folds: ``(train_ids, held_out_ids)`` pairs, e.g. from :func:`run_folds`.
        config: protocol settings: one shift mode, ``forecast_start`` covering the largest lag
            (see :func:`common_forecast_start`), clamp and mass post-processing.
        forecasters: ``{model: factory}``; ``factory(**hyperparameters).fit(list of (K, r'))``
            (default: the registered forecasters, :func:`registered_forecasters`).

    Returns:
        A :class:`SearchResult`.
    """
    if not candidates:
        raise ValueError("no candidates to search: enable a model in search (mvar or lstm)")
    if len(config.shift_modes) != 1:
        raise ValueError(f"the search scores one shift mode, got {config.shift_modes}")
    missing = sorted({r for train, held in folds for r in (*train, *held)} - set(trajectories))
    if missing:
        raise ValueError(f"folds name runs {missing} that have no latent trajectory")
    tic_all = time.perf_counter()
    groups: dict[str, list[Candidate]] = {}
    for cand in candidates:
        groups.setdefault(cand.pod_key, []).append(cand)
    if "stored" in groups:
        truncate_basis(pod, max(c.n_modes for c in groups["stored"]))  # r' > r: the fix, early
    max_lag = max(c.lag for c in candidates)
    rows: list[dict[str, Any]] = []
    forecasters = registered_forecasters() if forecasters is None else forecasters
    fit_seconds: dict[str, list[float]] = {c.config_id: [] for c in candidates}
    score_seconds = dict.fromkeys(fit_seconds, 0.0)
    pod_seconds = dict.fromkeys(groups, 0.0)
    n_pod_fits = 0

    def density(run_id: str) -> np.ndarray:
        return np.asarray(load_run(run_id).density, dtype=np.float64)

    for fold, (train_ids, held_ids) in enumerate(folds):
        overlap = set(train_ids) & set(held_ids)
        if overlap:
            raise ValueError(f"fold {fold}: runs {sorted(overlap)} are both trained on and held out")
        held_runs = {run_id: load_run(run_id) for run_id in held_ids}
        for key, group in groups.items():
            if key == "stored":
                basis, latent = pod, {r: np.asarray(trajectories[r]) for r in train_ids}
            else:
                tic = time.perf_counter()
                basis = refit_pod(pod, group[0].pod, max(c.n_modes for c in group),
                                  [lambda r=r: density(r) for r in train_ids])
                latent = {}
                for r in train_ids:
                    frames = density(r)
                    shifts = basis.estimate_shifts(frames) if basis.shift_align else None
                    latent[r] = basis.restrict(frames, shifts=shifts)
                pod_seconds[key] += time.perf_counter() - tic
                n_pod_fits += 1
            bases = {r: truncate_basis(basis, r) for r in sorted({c.n_modes for c in group})}
            fitted = []
            for cand in group:
                train = [latent[r][:, : cand.n_modes] for r in train_ids]
                tic = time.perf_counter()
                model = forecasters[cand.model](**cand.hyperparameters).fit(train)
                fit_seconds[cand.config_id].append(time.perf_counter() - tic)
                fitted.append((cand, model))
            logger.info("search fold %d/%d, POD %s: %d candidates fitted on %d runs, scoring %d "
                        "held-out runs", fold + 1, len(folds), key, len(group), len(train_ids),
                        len(held_ids))
            for run_id, test_run in held_runs.items():
                if key == "stored":
                    block = held_out_block(pod, test_run, trajectories[run_id], config, max_lag)
                else:
                    block = ForecastBlock.prepare(basis, test_run, config, seed_length=max_lag)
                ceilings = {r: r2_pooled(block.truth, block.ceiling(b)) for r, b in bases.items()}
                for cand, model in fitted:
                    tic = time.perf_counter()
                    score = score_forecast(model, bases[cand.n_modes], block, config,
                                           ceilings[cand.n_modes])
                    score_seconds[cand.config_id] += time.perf_counter() - tic
                    if score["diverged"]:
                        logger.warning("search: %s diverged on %s", cand.config_id, run_id)
                    rows.append({"config_id": cand.config_id, "model": cand.model, "fold": fold,
                                 "run_id": run_id, "n_modes": cand.n_modes, "pod_setting": key,
                                 **score})
    run_scores = pd.DataFrame(rows, columns=list(RUN_SCORE_COLUMNS))
    table = summarise(run_scores, candidates, fit_seconds, score_seconds, pod_seconds)
    budget = {
        "n_candidates": len(candidates),
        "n_fits": int(sum(len(v) for v in fit_seconds.values())),
        "n_pod_fits": n_pod_fits,
        "fit_seconds": float(sum(sum(v) for v in fit_seconds.values())),
        "score_seconds": float(sum(score_seconds.values())),
        "pod_seconds": float(sum(pod_seconds.values())),
        "wall_seconds": time.perf_counter() - tic_all,
    }
    return SearchResult(table, run_scores, budget)


def summarise(
    run_scores: pd.DataFrame, candidates: Sequence[Candidate],
    fit_seconds: Mapping[str, Sequence[float]], score_seconds: Mapping[str, float] | None = None,
    pod_seconds: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per candidate from the per-run scores.

    Columns: ``rank`` (1 = best of its model), ``model``, ``config_id``, ``n_modes``,
    ``modes_source``, ``pod_setting`` and one column per ``search.pod`` key (POD settings; the
    stored basis leaves them empty), one column per varied hyper-parameter, ``params`` (the varied values as
    JSON), ``score_mean``/``score_std`` (mean and population std of the pooled density R² over the
    held-out runs that did not diverge), ``latent_r2_mean``/``latent_r2_std``,
    ``one_step_latent_r2_mean`` (teacher forced, for contrast only), ``pod_ceiling_mean``,
    ``n_runs``, ``n_diverged``, ``fit_seconds_mean`` (per fold), ``fit_seconds_total`` and
    ``score_seconds_total`` (rollouts and scoring over all held-out runs), the row's budget
    ``n_fits`` (forecaster fits, one per fold) and ``wall_seconds`` (its fits and scoring), and
    ``pod_seconds`` (the cost of its POD setting's per-fold POD fits, shared by every row of that
    setting; 0 for the stored basis).

    Ranking: fewer diverged held-out runs first (a model that blows up on a training-like run is
    not production-ready, however good its other rollouts), then the higher ``score_mean``.
    """
    varied_keys = list(dict.fromkeys(k for c in candidates for k in c.varied))
    pod_keys = list(dict.fromkeys(k for c in candidates for k in c.pod))
    rows = []
    for cand in candidates:
        mine = run_scores[run_scores["config_id"] == cand.config_id]
        ok = mine[~mine["diverged"].astype(bool)]
        r2 = ok["r2_pooled"].to_numpy(float)
        latent = ok["r2_latent"].to_numpy(float)
        seconds = np.asarray(fit_seconds.get(cand.config_id, []), dtype=float)
        rows.append({
            "model": cand.model, "config_id": cand.config_id, "n_modes": cand.n_modes,
            "modes_source": cand.modes_source, "pod_setting": cand.pod_key,
            **{k: cand.pod.get(k) for k in pod_keys},
            # the value the candidate used, searched or configured (empty if it has no such key)
            **{k: cand.varied.get(k, cand.hyperparameters.get(k)) for k in varied_keys},
            "params": json.dumps(cand.varied, sort_keys=True, default=str),
            "score_mean": float(np.mean(r2)) if r2.size else math.nan,
            "score_std": float(np.std(r2)) if r2.size else math.nan,
            "latent_r2_mean": float(np.mean(latent)) if latent.size else math.nan,
            "latent_r2_std": float(np.std(latent)) if latent.size else math.nan,
            "one_step_latent_r2_mean": _nanmean(mine["r2_one_step_latent"]),
            "pod_ceiling_mean": _nanmean(mine["r2_pod_ceiling"]),
            "n_runs": int(len(mine)),
            "n_diverged": int(mine["diverged"].astype(bool).sum()),
            "fit_seconds_mean": float(seconds.mean()) if seconds.size else math.nan,
            "fit_seconds_total": float(seconds.sum()),
            "score_seconds_total": float((score_seconds or {}).get(cand.config_id, math.nan)),
            "n_fits": int(seconds.size),
            "wall_seconds": float(seconds.sum())
            + float((score_seconds or {}).get(cand.config_id, 0.0)),
            "pod_seconds": float((pod_seconds or {}).get(cand.pod_key, 0.0)),
        })
    table = pd.DataFrame(rows)
    for key in varied_keys:  # a column only one model varies holds gaps: keep ints and bools
        present = [v for v in table[key] if v is not None]
        if present and all(isinstance(v, (bool, np.bool_)) for v in present):
            table[key] = table[key].astype("boolean")
        elif present and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool)
                             for v in present):
            table[key] = table[key].astype("Int64")
    table["_score"] = table["score_mean"].fillna(-math.inf)
    table = table.sort_values(["model", "n_diverged", "_score"], ascending=[True, True, False],
                              kind="stable").drop(columns="_score")
    table.insert(0, "rank", table.groupby("model").cumcount() + 1)
    return table.reset_index(drop=True)


def _nanmean(values: pd.Series) -> float:
    values = values.to_numpy(float)
    values = values[np.isfinite(values)]
    return float(values.mean()) if values.size else math.nan


def best_configurations(table: pd.DataFrame, candidates: Sequence[Candidate],
                        scored_on: Mapping[str, Any]) -> dict[str, Any]:
    """The rank-1 candidate of every model (the baselines are never selected), JSON-ready, with
    the baselines' scores at the same r' and POD on the same held-out runs.

    Returns:
        ``{"scored_on": scored_on, "<model>": {"config_id", "n_modes", "modes_source", "pod",
        "score_mean", "score_std", "latent_r2_mean", "n_diverged", "hyperparameters" (all
        constructor arguments), "varied", "baselines" ({"climatology": {"score_mean",
        "latent_r2_mean"}, "persistence": ...}), "parameters" (the blocks to paste into
        parameters: ``rom`` with fixed_modes and the POD settings, ``<model>`` with the varied
        hyper-parameters)}}``. Non-finite numbers become None.
    """
    by_id = {c.config_id: c for c in candidates}
    out: dict[str, Any] = {"scored_on": dict(scored_on)}
    for _, row in table[table["rank"] == 1].iterrows():
        cand = by_id[row["config_id"]]
        if cand.model in BASELINES:
            continue
        baselines = {}
        for name in BASELINES:
            same = table[(table["model"] == name) & (table["n_modes"] == cand.n_modes)
                         & (table["pod_setting"] == cand.pod_key)]
            if len(same):
                baselines[name] = {k: _finite(same.iloc[0][k])
                                   for k in ("score_mean", "latent_r2_mean")}
        rom_keys = {"transform": "density_transform", "shift_method": "shift_method"}
        out[cand.model] = {
            "config_id": cand.config_id,
            "n_modes": cand.n_modes,
            "modes_source": cand.modes_source,
            "pod": _plain(cand.pod),
            **{k: _finite(row[k]) for k in ("score_mean", "score_std", "latent_r2_mean")},
            "n_diverged": int(row["n_diverged"]),
            "hyperparameters": _plain(cand.hyperparameters),
            "varied": _plain(cand.varied),
            "baselines": baselines,
            "parameters": {
                "rom": {"fixed_modes": cand.n_modes,
                        **{rom_keys[k]: _plain(v) for k, v in cand.pod.items()}},
                cand.model: _plain(cand.varied),
            },
        }
    return out


def _finite(value: Any) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
