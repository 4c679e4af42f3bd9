"""Blending the lab-frame ensemble with climatology, per lead window, fitted on HELD-OUT TRAINING
runs (issue 14; config keys ``eval.ensemble_blend``, ``eval.blend_folds``).

Standard forecast post-processing. The ``lab_ensemble`` forecast ``F_h`` (the forecast shape on the
sampled tracks) is replaced by the mixture

    w(tau) F_h + (1 - w(tau)) C_h,      tau = lead time of frame h,

with ``C_h`` the climatological reference ensemble (the training-mean co-moving shape at uniformly
random positions) and one weight ``w`` per lead window ``[e_i, e_{i+1})`` of ``eval.lead_windows``.
Its proper scores follow exactly from :func:`rom_pipeline.evaluation.scores.mixture_frame_scores`.
The scored lab-frame density (the point forecast, scored by R²) is the same blend of the two means,
``v E[S_{-s} g_h] + (1 - v) mean(lift(0))`` (the climatology's mean over uniform positions is the
constant field of its mass), with its own weight ``v`` per window, fitted for its own score (squared
error). ``w = v = 1`` is the unblended forecast, ``w = v = 0`` the climatology.

Fit (``method="heldout"``). The training runs are split into ``n_folds`` contiguous folds; for each
fold the forecaster and the track model are refitted on the other folds' runs and forecast the
fold's runs from the protocol's forecast start; the per-frame mixture components of every held-out
frame (every ``frame_step``-th) are pooled per lead window and ``w`` minimises their summed fair CRPS
(a convex quadratic, :func:`rom_pipeline.evaluation.scores.fit_mixture_weight`), and ``v`` their
summed squared error, ``v = clip(sum <y - b, a - b> / sum ||a - b||^2, 0, 1)`` with ``a`` and ``b``
the post-processed forecast and climatology means (:func:`least_squares_weight`). Since ``w = 0``
(``v = 0``) reproduces the climatology, the fitted weights are at least as good as the climatology on
those runs.
Spread cap (``eval.blend_max_spread_skill``, default 1). The CRPS is a per-pixel score: mixing in the
climatology's far-away blobs pays for it in the few pixels where the forecast misses, while it widens the
ensemble as a whole. On the default experiment's held-out runs the CRPS-optimal weight at 0-2 s (0.87)
turns a forecast ensemble with spread/skill 0.86 into a mixture with 1.27. With the cap, ``w`` minimises the
same summed CRPS among the weights whose held-out spread/skill (:func:`mixture_spread_skill`, exact in
``w``) is at most ``max(cap, R_F)``, ``R_F`` the forecast ensemble's own ratio: the climatology may widen an
under-dispersed ensemble up to calibration and never widens an over-dispersed one
(:func:`capped_mixture_weight`). There it gives ``w`` = 0.96 at 0-2 s, a held-out ratio of 1.00, and
costs 0.006 of held-out CRPS skill (experiments/results/lab_ensemble_blend_criteria.md).
Lead windows past the training runs' horizon hold no held-out frame, so nothing supports the
forecast there: they get ``w = v = 0``, the climatology (the empirical track law, too, is only
measured up to that horizon). No test run is read. (The POD basis and its mean, i.e. the climatological shape, are the stored ones, fitted on all
training runs.)
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from rom_pipeline.evaluation.scores import MIXTURE_COMPONENTS, _check_weight, fit_mixture_weight

__all__ = ["BLEND_METHODS", "ClimatologyBlend", "blend_from_components", "check_blend_method", "fit_climatology_blend",
           "capped_mixture_weight", "heldout_blend_components", "least_squares_weight",
           "mixture_spread_skill"]

logger = logging.getLogger(__name__)

#: Values of ``eval.ensemble_blend``.
BLEND_METHODS = ("none", "heldout")


def check_blend_method(method: str, n_folds: int = 3) -> None:
    """Refuse an unknown ``eval.ensemble_blend`` or ``eval.blend_folds`` < 2 (before any work)."""
    if method not in BLEND_METHODS:
        raise ValueError(
            f"eval.ensemble_blend is {method!r}; use one of {BLEND_METHODS} (none: the forecast "
            "ensemble alone; heldout: blended with climatology by per-lead weights fitted on "
            "held-out training runs)"
        )
    if isinstance(n_folds, bool) or int(n_folds) != n_folds or n_folds < 2:
        raise ValueError(f"eval.blend_folds is {n_folds!r}; the held-out blend needs an integer >= 2")


@dataclass
class ClimatologyBlend:
    """Per-lead-window weights ``w`` of the forecast in the mixture with climatology.

    Attributes:
        edges: (K,) increasing lead-window edges in s (``eval.lead_windows``; empty: one window).
        weights: (K,) weight of window ``[e_i, e_{i+1})`` (the last: ``[e_last, end]``), each in
            [0, 1]; with no edges a single weight.
        n_frames: (K,) held-out frames each weight was fitted on (0: past the training runs'
            horizon, weight 0).
        mean_weights: (K,) weights ``v`` of the scored mean (empty: ``weights``).
    """

    edges: tuple[float, ...]
    weights: tuple[float, ...]
    n_frames: tuple[int, ...] = ()
    mean_weights: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        self.edges = tuple(float(e) for e in self.edges)
        self.weights = tuple(float(w) for w in self.weights)
        if len(self.weights) != max(len(self.edges), 1):
            raise ValueError(
                f"a climatology blend needs one weight per lead window: {len(self.edges)} edges, "
                f"{len(self.weights)} weights"
            )
        if any(b <= a for a, b in zip(self.edges, self.edges[1:])):
            raise ValueError(f"the blend's lead-window edges must increase, got {self.edges}")
        _check_weight(np.asarray(self.weights))
        self.mean_weights = tuple(float(w) for w in self.mean_weights) or self.weights
        if len(self.mean_weights) != len(self.weights):
            raise ValueError(f"a climatology blend needs one mean weight per lead window, got {self.mean_weights}")
        _check_weight(np.asarray(self.mean_weights))

    def window_index(self, lead_time: np.ndarray) -> np.ndarray:
        """(n,) window of every lead time (frames before the first edge: window 0)."""
        if not self.edges:
            return np.zeros(np.shape(lead_time), dtype=int)
        return np.clip(np.searchsorted(self.edges, np.asarray(lead_time), side="right") - 1, 0, None)

    def weights_at(self, lead_time: np.ndarray, mean: bool = False) -> np.ndarray:
        """(n,) forecast weight ``w`` (``mean``: ``v``) of every frame with the given lead times (s)."""
        return np.asarray(self.mean_weights if mean else self.weights)[self.window_index(lead_time)]

    def to_dict(self) -> dict:
        """JSON form (``method: heldout``); :meth:`from_dict` reads it back."""
        return {"method": "heldout", "edges": list(self.edges), "weights": list(self.weights),
                "mean_weights": list(self.mean_weights), "n_frames": list(self.n_frames)}

    @classmethod
    def from_dict(cls, data: dict) -> ClimatologyBlend | None:
        """Inverse of :meth:`to_dict`; None for ``{"method": "none"}``."""
        check_blend_method(str(data.get("method")))
        if data["method"] == "none":
            return None
        return cls(tuple(data["edges"]), tuple(data["weights"]), tuple(data.get("n_frames", ())),
                   tuple(data.get("mean_weights", ())))


def least_squares_weight(truth: np.ndarray, forecast_mean: np.ndarray, reference_mean: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame sums of the least-squares blend ``v a + (1 - v) b`` of two point forecasts.

    Args:
        truth, forecast_mean, reference_mean: (n, ny, nx) ``y``, ``a``, ``b``.

    Returns:
        ``sxy`` = sum_pixels (y - b)(a - b) and ``sxx`` = sum_pixels (a - b)^2, each (n,): the
        squared error summed over a set of frames is minimised over [0, 1] by
        ``clip(sum sxy / sum sxx, 0, 1)``.
    """
    y, a, b = (np.asarray(x, dtype=np.float64) for x in (truth, forecast_mean, reference_mean))
    gap = a - b
    return ((y - b) * gap).sum(axis=(1, 2)), (gap * gap).sum(axis=(1, 2))


def fit_climatology_blend(
    train_forecaster: Callable[[list[np.ndarray]], object],
    fit_track_model: Callable[[list[np.ndarray]], object],
    pod,
    runs: Sequence,
    latents: Sequence[np.ndarray],
    tracks: Sequence[np.ndarray],
    config,
    n_folds: int = 3,
    frame_step: int = 2,
    covariates: Sequence[float] | None = None,
    max_spread_skill: float | None = None,
) -> ClimatologyBlend:
    """Per-lead-window blend weights fitted on held-out training runs (module docstring):
    :func:`heldout_blend_components` then :func:`blend_from_components` (arguments: see those two;
    the cap's ensemble size is ``config.ensemble_size``).
    """
    lead, comps = heldout_blend_components(train_forecaster, fit_track_model, pod, runs, latents, tracks,
                                           config, n_folds, frame_step, covariates)
    return blend_from_components(lead, comps, tuple(config.lead_windows), max_spread_skill,
                                 int(config.ensemble_size))


def heldout_blend_components(
    train_forecaster: Callable[[list[np.ndarray]], object],
    fit_track_model: Callable[[list[np.ndarray]], object],
    pod,
    runs: Sequence,
    latents: Sequence[np.ndarray],
    tracks: Sequence[np.ndarray],
    config,
    n_folds: int = 3,
    frame_step: int = 2,
    covariates: Sequence[float] | None = None,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The per-frame mixture components of every scored held-out training frame (module docstring).

    Args:
        train_forecaster: trajectories [(K_i, r)] -> a fitted forecaster (``lag``, ``rollout``).
        fit_track_model: (training tracks [(K_i, 2)], their covariates [float] or None) -> a
            fitted track model.
        pod: the fitted basis (``lift``, ``estimate_shifts``, ``grid_shape_``, ``n_modes_``).
        runs: the training runs (:class:`~rom_pipeline.evaluation.protocol.TestRun`, ROM grid).
        latents: their (K_i, r) latent trajectories, in the same order.
        tracks: their (K_i, 2) tracks of ``config.track_method`` (the alignment shifts or the
            phase track), in the same order.
        config: the :class:`~rom_pipeline.evaluation.protocol.EvaluationConfig` (forecast start,
            post-processing, ensemble size and seed, lead windows).
        n_folds: folds of training runs (>= 2, clipped to the number of runs).
        frame_step: score every ``frame_step``-th forecast frame (speed).
        covariates: optional, one track-law covariate per run in the same order (the swarm's
            concentration at the forecast start, :meth:`TrackModel.fit
            <rom_pipeline.evaluation.track.TrackModel.fit>`), passed on with each fold's tracks.

    Returns:
        ``(lead, components)``: the (n,) lead times (s) of the scored held-out frames and their
        :data:`~rom_pipeline.evaluation.scores.MIXTURE_COMPONENTS` plus ``sxy`` and ``sxx``
        (:func:`least_squares_weight`), each (n,).
    """
    from dataclasses import replace

    from rom_pipeline.evaluation.protocol import ForecastBlock, _postprocessor
    from rom_pipeline.evaluation.track import lab_frame_mean, translated_mixture_components

    check_blend_method("heldout", n_folds)
    n_runs = len(runs)
    if n_runs < 2 or len(latents) != n_runs or len(tracks) != n_runs:
        raise ValueError(
            f"the held-out climatology blend needs >= 2 training runs with one latent trajectory and "
            f"track each; got {n_runs} runs, {len(latents)} trajectories, {len(tracks)} tracks: use "
            "more training runs or set eval.ensemble_blend: none"
        )
    config = replace(config, shift_modes=("lab_ensemble",))
    r = int(pod.n_modes_)
    climatology_shape = np.asarray(pod.lift(np.zeros((1, r)), shifts=None), dtype=np.float64)[0]
    leads, parts = [], {key: [] for key in (*MIXTURE_COMPONENTS, "sxy", "sxx")}
    for fold in np.array_split(np.arange(n_runs), min(int(n_folds), n_runs)):
        held = set(fold.tolist())
        rest = [i for i in range(n_runs) if i not in held]
        forecaster = train_forecaster([np.asarray(latents[i]) for i in rest])
        track_model = fit_track_model([np.asarray(tracks[i]) for i in rest],
                                      None if covariates is None else [float(covariates[i]) for i in rest])
        for i in fold:
            block = ForecastBlock.prepare(pod, runs[i], config, int(forecaster.lag),
                                          latent=latents[i], track_model=track_model,
                                          score_climatology=False)
            k0, n_f = block.k0, block.n_forecast
            with np.errstate(all="ignore"):
                y_pred = np.asarray(forecaster.rollout(block.latent[k0 - int(forecaster.lag):k0, :r], n_f),
                                    dtype=np.float64)
                shape = np.asarray(pod.lift(y_pred, shifts=None), dtype=np.float64)
            if not np.all(np.isfinite(shape)):
                logger.warning("climatology blend: the refitted forecaster diverged on held-out run %s; "
                               "left out of the fit", runs[i].run_id)
                continue
            idx = np.arange(0, n_f, int(frame_step))
            post = _postprocessor(block, config)
            shift_mean, shift_cov, members = block.placement(shape[idx], idx)
            comps = translated_mixture_components(
                block.truth[idx], shape[idx], members, climatology_shape,
                block.climatology_positions[:, idx], post)
            mean = lab_frame_mean(shape[idx], shift_mean, shift_cov)
            level = np.full_like(mean, float(np.mean(climatology_shape)))
            comps["sxy"], comps["sxx"] = least_squares_weight(block.truth[idx], post(mean), post(level))
            leads.append(block.lead_time[idx])
            for key in parts:
                parts[key].append(comps[key])
    if not leads:
        raise ValueError("the climatology blend could not score any held-out training run (every "
                         "refitted forecast diverged): set eval.ensemble_blend: none")
    return np.concatenate(leads), {key: np.concatenate(values) for key, values in parts.items()}


def mixture_spread_skill(comps: dict[str, np.ndarray], weights: np.ndarray, n_members: int) -> np.ndarray:
    """Spread/skill ratio ``sqrt((M+1)/M mean var(w) / mean mse(w))`` of the mixture ``w F + (1 - w) C``
    over the given frames, for every weight in ``weights``.

    The mixture's pixel-mean variance ``w v_F + (1 - w) v_C + w (1 - w) G`` and the squared error of its
    mean ``w^2 m_F + (1 - w)^2 m_C + 2 w (1 - w) x`` are quadratics in ``w`` whose coefficients are frame
    sums of :data:`~rom_pipeline.evaluation.scores.MIXTURE_COMPONENTS` (``variance_*``, ``mean_gap``,
    ``mse_*``, ``cross_fc``), so every weight costs a handful of flops.

    Args:
        comps: the frames' components, each (n,).
        weights: (k,) weights in [0, 1].
        n_members: the forecast ensemble's M (the ``(M+1)/M`` finite-ensemble factor).

    Returns:
        (k,) ratios (inf where the mixture's mean is exact).
    """
    w = np.asarray(weights, dtype=np.float64)
    v_f, v_c, gap = (float(np.mean(comps[k])) for k in ("variance_f", "variance_c", "mean_gap"))
    m_f, m_c, cross = (float(np.mean(comps[k])) for k in ("mse_f", "mse_c", "cross_fc"))
    variance = w * v_f + (1 - w) * v_c + w * (1 - w) * gap
    mse = w * w * m_f + (1 - w) ** 2 * m_c + 2 * w * (1 - w) * cross
    m = float(n_members)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mse > 0, np.sqrt((m + 1) / m * np.maximum(variance, 0.0) / np.where(mse > 0, mse, 1.0)),
                        np.inf)


#: Resolution of the weight grid of the spread-capped fit.
CAP_GRID = 10_001


def capped_mixture_weight(comps: dict[str, np.ndarray], n_members: int, cap: float) -> float:
    """The CRPS-optimal weight among those whose spread/skill is at most ``max(cap, R(1))``, with
    ``R(1)`` the forecast ensemble's own ratio: the climatology may widen an under-dispersed forecast
    ensemble up to ``cap``, and never widens one that is already wider.

    The summed mixture CRPS is a convex quadratic in ``w`` (:func:`~rom_pipeline.evaluation.scores.
    fit_mixture_weight`); it is minimised over the feasible points of a grid of ``CAP_GRID`` weights in
    [0, 1] (``w = 1`` is always feasible), so the result is the unconstrained weight whenever that one
    satisfies the cap.
    """
    w_free = fit_mixture_weight(comps)
    grid = np.linspace(0.0, 1.0, CAP_GRID)
    ratio = mixture_spread_skill(comps, np.append(grid, w_free), n_members)
    limit = max(float(cap), float(ratio[-2])) * (1 + 1e-12)
    if ratio[-1] <= limit:
        return w_free
    c = {k: float(np.sum(comps[f"crps_{k}"])) for k in ("abs_f", "abs_c", "pair_ff", "pair_cc", "pair_fc")}
    v = 1.0 - grid
    crps = (grid * c["abs_f"] + v * c["abs_c"]
            - 0.5 * (grid * grid * c["pair_ff"] + 2 * grid * v * c["pair_fc"] + v * v * c["pair_cc"]))
    feasible = ratio[:-1] <= limit
    return float(grid[feasible][np.argmin(crps[feasible])])


def blend_from_components(lead: np.ndarray, comps: dict[str, np.ndarray], edges: tuple[float, ...],
                          max_spread_skill: float | None = None, n_members: int | None = None
                          ) -> ClimatologyBlend:
    """The blend weights of every lead window from the held-out frames' components
    (:func:`heldout_blend_components`): ``w`` minimises the window's summed fair CRPS (with
    ``max_spread_skill``: subject to the window's held-out spread/skill staying at most
    ``max(max_spread_skill, that of the forecast alone)``, :func:`capped_mixture_weight`, which needs
    ``n_members``), ``v`` its squared error; a window with no frame gets ``w = v = 0``.
    """
    if max_spread_skill is not None and (n_members is None or int(n_members) < 2):
        raise ValueError(f"a spread/skill cap on the blend needs an ensemble of >= 2 members, got {n_members!r}")
    edges = tuple(edges)
    window = ClimatologyBlend(edges, [1.0] * max(len(edges), 1)).window_index(lead)
    weights, mean_weights, counts = [], [], []
    for k in range(max(len(edges), 1)):
        inside = window == k
        counts.append(int(inside.sum()))
        if inside.any():
            frames = {key: v[inside] for key, v in comps.items()}
            weights.append(fit_mixture_weight(frames) if max_spread_skill is None
                           else capped_mixture_weight(frames, int(n_members), float(max_spread_skill)))
            sxx = float(comps["sxx"][inside].sum())
            mean_weights.append(float(np.clip(comps["sxy"][inside].sum() / sxx, 0.0, 1.0)) if sxx > 0 else 1.0)
        else:  # past the training runs' horizon: no evidence for the forecast, the climatology
            weights.append(0.0)
            mean_weights.append(0.0)
    return ClimatologyBlend(edges, weights, tuple(counts), mean_weights)
