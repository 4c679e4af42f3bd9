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

Every candidate is scored on the same frames: the forecast starts at the same frame k0 for all of
them (raised, if needed, to the largest lag searched), so scores of different lags are comparable.
Where it starts is :func:`search_forecast_start`: the evaluation's ``eval.forecast_start`` when
set (the same k0 as on the test runs); with ``eval.forecast_start`` null the evaluation seeds with
the whole training length sim.T, which leaves no frame to forecast in a training run (those are
only sim.T long), so the search then seeds with the protocol's shortest seed, the largest lag.
"""
from __future__ import annotations

import copy
import json
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from rom_pipeline.evaluation.metrics import latent_r2, r2_pooled
from rom_pipeline.evaluation.protocol import (
    EvaluationConfig,
    ForecastBlock,
    TestRun,
    forecast_block,
    teacher_forced,
)
from rom_pipeline.rom.pod import PODBasis

logger = logging.getLogger(__name__)



def registered_forecasters() -> dict[str, Callable[..., Any]]:
    """``{model: class}`` of every forecaster in :data:`rom_pipeline.registry.FORECASTERS`."""
    from rom_pipeline.registry import FORECASTERS as REGISTRY

    return {name: entry.estimator for name, entry in REGISTRY.items()}


def __getattr__(name: str) -> Any:
    if name == "FORECASTERS":  # the registry's classes, read when asked for
        return registered_forecasters()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

VALIDATION_SCHEMES = ("kfold", "holdout")
RUN_SCORE_COLUMNS = (
    "config_id", "model", "fold", "run_id", "n_modes", "r2_pooled", "r2_latent",
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
    truncated = copy.copy(pod)
    truncated.modes_ = np.ascontiguousarray(pod.modes_[:, :n_modes])
    truncated.n_modes_ = n_modes
    truncated.fixed_modes = n_modes
    return truncated


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
    pod: PODBasis, fixed_modes: Sequence[int] = (), pod_energy: Sequence[float] = ()
) -> dict[int, str]:
    """``{r': how it was asked for}`` for the requested mode counts, in request order.

    With no request the stored r is searched. Requests mapping to the same r' are merged (their
    labels joined), so no candidate is fitted twice.

    Raises:
        ValueError: if any r' exceeds the stored r (see :func:`truncate_basis`).
    """
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
        lag: the window length w of the fitted forecaster (default: ``hyperparameters["lag"]``;
            a forecaster without a ``lag`` argument gives its own, e.g. 1).
    """

    model: str
    n_modes: int
    hyperparameters: dict[str, Any]
    varied: dict[str, Any] = field(default_factory=dict)
    modes_source: str = ""
    lag: int | None = None

    def __post_init__(self) -> None:
        if self.lag is None:  # frozen: set once, here
            object.__setattr__(self, "lag", int(self.hyperparameters["lag"]))

    @property
    def config_id(self) -> str:
        parts = [f"r={self.n_modes}", *(f"{k}={_short(v)}" for k, v in self.varied.items())]
        return f"{self.model}[{','.join(parts)}]"


def _short(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def build_candidates(
    model: str, base: Mapping[str, Any], grid: Sequence[Mapping[str, Any]], modes: Mapping[int, str]
) -> list[Candidate]:
    """Candidates of one model: every grid point (overriding ``base``) at every r' in ``modes``.

    Raises:
        ValueError: for an unknown model or a lag that is not a positive integer.
    """
    known = registered_forecasters()
    if model not in known:
        raise ValueError(f"unknown model {model!r}; the search knows {sorted(known)}")
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
        for r, source in modes.items():
            out.append(Candidate(model, int(r), dict(hyper), dict(point), source, lag=int(lag)))
    return out


# ---------------------------------------------------------------------- the search
@dataclass
class SearchResult:
    """Output of :func:`grid_search`.

    Attributes:
        table: one row per candidate, best first within each model (see :func:`summarise`).
        run_scores: one row per (candidate, held-out run), columns ``RUN_SCORE_COLUMNS``.
    """

    table: pd.DataFrame
    run_scores: pd.DataFrame


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
                   config: EvaluationConfig) -> dict[str, Any]:
    """Closed-loop skill of one fitted forecaster on one held-out run, scored by the protocol's
    :func:`~rom_pipeline.evaluation.protocol.forecast_block` (seed, roll out, lift with r' =
    ``basis.n_modes_`` modes and ``config.shift_modes[0]``, post-process, score), so the numbers
    are those the evaluation reports for the same forecast.

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
        "r2_pod_ceiling": r2_pooled(block.truth, block.ceiling(basis)),
        "diverged": scored.diverged, "n_forecast_frames": block.n_forecast,
    }


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

    Args:
        trajectories: ``{run_id: (K_i, r)}`` stored latent trajectories of all training runs.
        pod: the stored r-mode basis; candidate r' ≤ r use :func:`truncate_basis`.
        load_run: ``run_id -> TestRun`` with the run's true density on the ROM grid (called once
            per held-out run).
        candidates: configurations to score.
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
    bases = {r: truncate_basis(pod, r) for r in sorted({c.n_modes for c in candidates})}
    max_lag = max(c.lag for c in candidates)
    rows: list[dict[str, Any]] = []
    forecasters = registered_forecasters() if forecasters is None else forecasters
    fit_seconds: dict[str, list[float]] = {c.config_id: [] for c in candidates}
    score_seconds = dict.fromkeys(fit_seconds, 0.0)
    for fold, (train_ids, held_ids) in enumerate(folds):
        overlap = set(train_ids) & set(held_ids)
        if overlap:
            raise ValueError(f"fold {fold}: runs {sorted(overlap)} are both trained on and held out")
        fitted = []
        for cand in candidates:
            train = [np.asarray(trajectories[r])[:, : cand.n_modes] for r in train_ids]
            tic = time.perf_counter()
            model = forecasters[cand.model](**cand.hyperparameters).fit(train)
            fit_seconds[cand.config_id].append(time.perf_counter() - tic)
            fitted.append((cand, model))
        logger.info("search fold %d/%d: %d candidates fitted on %d runs, scoring %d held-out runs",
                    fold + 1, len(folds), len(candidates), len(train_ids), len(held_ids))
        for run_id in held_ids:
            run = held_out_block(pod, load_run(run_id), trajectories[run_id], config, max_lag)
            for cand, model in fitted:
                tic = time.perf_counter()
                score = score_forecast(model, bases[cand.n_modes], run, config)
                score_seconds[cand.config_id] += time.perf_counter() - tic
                if score["diverged"]:
                    logger.warning("search: %s diverged on %s", cand.config_id, run_id)
                rows.append({"config_id": cand.config_id, "model": cand.model, "fold": fold,
                             "run_id": run_id, "n_modes": cand.n_modes, **score})
    run_scores = pd.DataFrame(rows, columns=list(RUN_SCORE_COLUMNS))
    return SearchResult(summarise(run_scores, candidates, fit_seconds, score_seconds), run_scores)


def summarise(
    run_scores: pd.DataFrame, candidates: Sequence[Candidate],
    fit_seconds: Mapping[str, Sequence[float]], score_seconds: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per candidate from the per-run scores.

    Columns: ``rank`` (1 = best of its model), ``model``, ``config_id``, ``n_modes``,
    ``modes_source``, one column per varied hyper-parameter, ``params`` (the varied values as
    JSON), ``score_mean``/``score_std`` (mean and population std of the pooled density R² over the
    held-out runs that did not diverge), ``latent_r2_mean``/``latent_r2_std``,
    ``one_step_latent_r2_mean`` (teacher forced, for contrast only), ``pod_ceiling_mean``,
    ``n_runs``, ``n_diverged``, ``fit_seconds_mean`` (per fold), ``fit_seconds_total`` and
    ``score_seconds_total`` (rollouts and scoring over all held-out runs).

    Ranking: fewer diverged held-out runs first (a model that blows up on a training-like run is
    not production-ready, however good its other rollouts), then the higher ``score_mean``.
    """
    varied_keys = list(dict.fromkeys(k for c in candidates for k in c.varied))
    rows = []
    for cand in candidates:
        mine = run_scores[run_scores["config_id"] == cand.config_id]
        ok = mine[~mine["diverged"].astype(bool)]
        r2 = ok["r2_pooled"].to_numpy(float)
        latent = ok["r2_latent"].to_numpy(float)
        seconds = np.asarray(fit_seconds.get(cand.config_id, []), dtype=float)
        rows.append({
            "model": cand.model, "config_id": cand.config_id, "n_modes": cand.n_modes,
            "modes_source": cand.modes_source,
            **{k: cand.varied.get(k) for k in varied_keys},
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
    """The rank-1 candidate of every model, JSON-ready.

    Returns:
        ``{"scored_on": scored_on, "<model>": {"config_id", "n_modes", "modes_source",
        "score_mean", "score_std", "latent_r2_mean", "n_diverged", "hyperparameters" (all
        constructor arguments), "varied", "parameters" (the ``rom`` and ``<model>`` blocks to paste into
        parameters: fixed_modes and the varied hyper-parameters)}}``. Non-finite numbers become
        None.
    """
    by_id = {c.config_id: c for c in candidates}
    out: dict[str, Any] = {"scored_on": dict(scored_on)}
    for _, row in table[table["rank"] == 1].iterrows():
        cand = by_id[row["config_id"]]
        out[cand.model] = {
            "config_id": cand.config_id,
            "n_modes": cand.n_modes,
            "modes_source": cand.modes_source,
            **{k: _finite(row[k]) for k in ("score_mean", "score_std", "latent_r2_mean")},
            "n_diverged": int(row["n_diverged"]),
            "hyperparameters": _plain(cand.hyperparameters),
            "varied": _plain(cand.varied),
            "parameters": {"rom": {"fixed_modes": cand.n_modes},
                           cand.model: _plain(cand.varied)},
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


# ---------------------------------------------------------------------- figure
def plot_search_scores(table: pd.DataFrame) -> Figure:
    """Validation score vs each searched parameter: one row of panels per model, one panel per
    parameter that takes more than one value (r' included; a model with a single candidate gets
    one r' panel). Every candidate is a dot with a ±1 standard-error bar over its held-out runs;
    the line joins the best score at each value. Positive parameters spanning more than two
    decades get a log axis."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    summary = {"rank", "model", "config_id", "modes_source", "params", "score_mean", "score_std",
               "latent_r2_mean", "latent_r2_std", "one_step_latent_r2_mean", "pod_ceiling_mean",
               "n_runs", "n_diverged", "fit_seconds_mean", "fit_seconds_total", "score_seconds_total"}
    parameters = [c for c in table.columns if c not in summary]
    models = sorted(table["model"].unique())
    panels = {}
    for model in models:
        rows = table[table["model"] == model]
        varied = [c for c in parameters if rows[c].dropna().astype(str).nunique() > 1]
        panels[model] = varied or ["n_modes"]
    n_cols = max(len(v) for v in panels.values())
    fig, axes = plt.subplots(len(models), n_cols, figsize=(3.6 * n_cols, 3.0 * len(models)),
                             squeeze=False, constrained_layout=True)
    for i, model in enumerate(models):
        rows = table[table["model"] == model]
        n_ok = (rows["n_runs"] - rows["n_diverged"]).clip(lower=1).to_numpy(float)
        score = rows["score_mean"].to_numpy(float)
        stderr = rows["score_std"].to_numpy(float) / np.sqrt(n_ok)
        for j in range(n_cols):
            ax = axes[i, j]
            if j >= len(panels[model]):
                ax.set_visible(False)
                continue
            col = panels[model][j]
            values = rows[col]
            if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
                x = values.to_numpy(float, na_value=np.nan)
                positive = x[np.isfinite(x) & (x > 0)]
                if positive.size == x.size and positive.max() / positive.min() > 100:
                    ax.set_xscale("log")
                elif pd.api.types.is_integer_dtype(values):
                    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            else:
                labels = sorted(values.astype(str).unique())
                x = np.array([labels.index(v) for v in values.astype(str)], dtype=float)
                ax.set_xticks(range(len(labels)), labels)
            ax.errorbar(x, score, yerr=stderr, fmt="o", ms=4, alpha=0.6, capsize=2,
                        color="tab:blue", label="candidate (±1 s.e.)")
            best = pd.Series(score, index=x).replace(-np.inf, np.nan).groupby(level=0).max()
            ax.plot(best.index, best.to_numpy(), "-", color="tab:red", lw=1.2, label="best")
            ax.set_xlabel(col)
            ax.set_ylabel("held-out pooled density R²")
            ax.set_title(f"{model.upper()}: {col}", fontsize=10)
            ax.grid(alpha=0.3)
            if j == 0:
                ax.legend(fontsize=7, loc="lower left")
    return fig
