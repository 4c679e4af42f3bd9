"""The model pipeline factory: one train -> evaluate template instantiated per registered forecaster.

The template (:func:`model_template`) holds one generic training node (:func:`train_forecaster`,
which calls the registry entry), the model's extra plot nodes (from the registry) and the shared
evaluation node (:func:`evaluate_forecaster_on_tests`). :func:`model_pipeline` instantiates it with
``namespace=<model>`` and the parameter mapping ``params:model_options -> params:<model>``
(the pipeline-factory pattern of modular-spaceflights / kedro-viz's demo project).

The quantities every forecast needs and that follow from several parameter blocks (the ROM step,
the cell area, the forecast start, the lead windows) are computed ONCE per run by the two nodes of
:func:`setup_pipeline` (``rom_grid`` and ``forecast_setup``); no node derives them again.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from functools import partial, update_wrapper
from typing import Any

import numpy as np
import pandas as pd
from kedro.pipeline import Node, Pipeline

from rom_pipeline.config import STANDARD_LEAD_WINDOWS, DensityConfig, EvalConfig, ROMConfig, SimConfig, TestSimConfig
from rom_pipeline.datasets.runs import RunCollection
from rom_pipeline.execution.progress import track
from rom_pipeline.registry import FORECASTERS, Forecaster
from rom_pipeline.rom.latent import unpack_trajectories
from rom_pipeline.rom.pod import PODBasis

logger = logging.getLogger(__name__)

SHARED_INPUTS = {"latent_dataset", "train_latent", "pod_basis", "train.runs", "test.runs", "rom_grid",
                 "forecast_setup"}
MODEL_NAMES = tuple(FORECASTERS)


def enabled_models(parameters: dict[str, Any] | None = None) -> list[str]:
    """Names of the registered forecasters whose ``<name>.enabled`` is true (default: all).

    Without ``parameters``: those of the running session. Kedro 1.7 calls
    ``register_pipelines()`` with no arguments, so the session's parameters reach the pipeline
    registry only through the hook that validates them (:func:`rom_pipeline.framework.session_state.active_parameters`).
    """
    if parameters is None:
        from rom_pipeline.framework.session_state import active_parameters

        parameters = active_parameters()
    return [m for m in FORECASTERS if (parameters.get(m) or {}).get("enabled", True)]


# ---------------------------------------------------------------------- derived quantities
def describe_rom_grid(sim: dict, density: dict, rom: dict) -> dict[str, Any]:
    """The ROM's time and space grid, from the ``sim``, ``density`` and ``rom`` blocks.

    Returns ``dt_rom = sim.dt · sim.save_every · rom.subsample`` [s], ``subsample``, the domain
    ``Lx``, ``Ly``, ``periodic``, ``cell_area = (Lx / nx) (Ly / ny)``, ``train_horizon = sim.T``
    [s] and ``shift_align``.
    """
    s, d, r = SimConfig.model_validate(sim), DensityConfig.model_validate(density), ROMConfig.model_validate(rom)
    return {
        "dt_rom": s.dt * s.save_every * r.subsample,
        "subsample": r.subsample,
        "Lx": s.Lx, "Ly": s.Ly, "periodic": s.bc == "periodic",
        "cell_area": (s.Lx / d.nx) * (s.Ly / d.ny),
        "train_horizon": s.T,
        "shift_align": r.shift_align,
    }


def describe_forecast(eval: dict, test_sim: dict, rom_grid: dict) -> dict[str, Any]:  # noqa: A002
    """The evaluation protocol's settings (science.md §8) from the ``eval`` and ``test_sim``
    blocks and the ROM grid: ``forecast_start`` (``eval.forecast_start``, null: the training
    horizon ``sim.T``), the lead windows (``eval.lead_windows``, null: the standard edges inside
    the horizon ``test_sim.T − forecast_start``), the shift modes scored (``oracle`` alone
    without alignment) and the rest of :class:`~rom_pipeline.evaluation.protocol.EvaluationConfig`;
    plus ``forecast_start_given`` (the raw key, for the search), ``test_horizon``,
    ``track_order``, ``track_calibration``, ``track_conditioning``, ``ensemble_blend``,
    ``blend_folds``, ``blend_max_spread_skill`` and the display settings."""
    e, t = EvalConfig.model_validate(eval), TestSimConfig.model_validate(test_sim)
    start = e.forecast_start if e.forecast_start is not None else rom_grid["train_horizon"]
    if e.lead_windows is not None:
        lead = [float(edge) for edge in e.lead_windows]
    else:
        lead = [edge for edge in STANDARD_LEAD_WINDOWS if edge < t.T - start]
    shift_modes = list(e.shift_modes) if rom_grid["shift_align"] else ["oracle"]
    return {
        "evaluation": {
            "forecast_start": start, "clamp_mode": e.clamp_mode,
            "mass_postprocess": e.mass_postprocess, "shift_modes": shift_modes,
            "valid_r2_threshold": e.valid_r2_threshold, "order_parameters": e.order_parameters,
            "lead_windows": lead, "ensemble_size": e.ensemble_size, "ensemble_seed": e.ensemble_seed,
            "track_method": e.track_method,
        },
        "forecast_start_given": e.forecast_start,
        "test_horizon": t.T,
        "track_order": e.track_order,
        "track_calibration": e.track_calibration,
        "track_conditioning": e.track_conditioning,
        "ensemble_blend": e.ensemble_blend,
        "blend_folds": e.blend_folds,
        "blend_max_spread_skill": e.blend_max_spread_skill,
        "lab_ensemble": rom_grid["shift_align"] and "lab_ensemble" in e.shift_modes,
        "snapshot_times": list(e.snapshot_times),
        "animation_max_frames": e.animation_max_frames,
    }


def derived_quantities(parameters: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(rom_grid, forecast_setup)`` of a whole parameter tree, for code outside the pipelines
    (benchmarks, notebooks) that holds the tree: the same two functions the nodes run."""
    rom_grid = describe_rom_grid(parameters.get("sim", {}), parameters.get("density", {}),
                                 parameters.get("rom", {}))
    return rom_grid, describe_forecast(parameters.get("eval", {}), parameters.get("test_sim", {}), rom_grid)


def rom_grid_pipeline() -> Pipeline:
    """The node that computes ``rom_grid`` (added to every pipeline that reads it; Kedro keeps
    one copy of identical nodes when pipelines are summed)."""
    return Pipeline([Node(describe_rom_grid, ["params:sim", "params:density", "params:rom"],
                          "rom_grid", name="describe_rom_grid")])


def setup_pipeline() -> Pipeline:
    """``rom_grid`` and ``forecast_setup``: what the forecasting pipelines read."""
    return rom_grid_pipeline() + Pipeline([
        Node(describe_forecast, ["params:eval", "params:test_sim", "rom_grid"], "forecast_setup",
             name="describe_forecast"),
    ])


def evaluation_config(forecast_setup: dict[str, Any]):
    """The :class:`~rom_pipeline.evaluation.protocol.EvaluationConfig` of ``forecast_setup``."""
    from rom_pipeline.evaluation.protocol import EvaluationConfig

    settings = dict(forecast_setup["evaluation"])
    settings["shift_modes"] = tuple(settings["shift_modes"])
    settings["lead_windows"] = tuple(settings["lead_windows"])
    return EvaluationConfig(**settings)


def runs_for_evaluation(runs: RunCollection, rom_grid: dict[str, Any], particles: bool) -> Iterator:
    """The runs on the ROM time grid (every ``subsample``-th frame), as evaluation ``TestRun``
    records; particles (for the order parameters) only when ``particles``."""
    from rom_pipeline.evaluation.protocol import TestRun

    k = rom_grid["subsample"]
    for run_id in runs:
        meta = runs[run_id]
        dens = runs.density(run_id)
        parts = runs.particles(run_id) if particles else None
        yield TestRun(
            run_id=run_id, family=str(meta.get("family", "")), times=dens["times"][::k],
            density=dens["density"][::k].astype(np.float64),
            positions=None if parts is None else parts["positions"][::k].astype(np.float64),
            velocities=None if parts is None else parts["velocities"][::k].astype(np.float64),
            Lx=rom_grid["Lx"], Ly=rom_grid["Ly"], periodic=rom_grid["periodic"],
            cell_area=rom_grid["cell_area"],
        )


def test_runs_for_evaluation(test_runs: RunCollection, rom_grid: dict[str, Any],
                             forecast_setup: dict[str, Any]):
    """The unseen test runs on the ROM time grid, as evaluation ``TestRun`` records."""
    return runs_for_evaluation(test_runs, rom_grid, forecast_setup["evaluation"]["order_parameters"])


def training_tracks(train_latent: dict, pod: PODBasis, forecast_setup: dict[str, Any]) -> dict[str, np.ndarray]:
    """``{run_id: (K, 2) track}`` of the TRAINING runs that ``eval.track_method`` forecasts: their
    alignment shifts (stored with their latent trajectories in ``train_latent``), or the phase track
    of their reconstruction (:func:`rom_pipeline.evaluation.track.phase_track`)."""
    from rom_pipeline.evaluation.track import phase_track

    if "shifts" not in train_latent:
        raise ValueError(
            "train_latent holds no training shifts; re-run the pod pipeline with rom.shift_align: true "
            "before scoring eval.shift_modes 'lab_ensemble'"
        )
    shifts = unpack_trajectories(train_latent, key="shifts")
    if forecast_setup["evaluation"]["track_method"] == "alignment":
        return shifts
    states = unpack_trajectories(train_latent)
    return {run_id: phase_track(pod, states[run_id], shifts[run_id]) for run_id in shifts}


def training_covariates(train_latent: dict, pod: PODBasis, start: int) -> dict[str, float]:
    """``{run_id: concentration}`` of the TRAINING runs' reconstructions at frame ``start - 1``
    (the last frame before the forecast start, or a shorter run's last frame;
    :func:`rom_pipeline.evaluation.track.phase_concentration`): the covariate that conditions the
    track law (``eval.track_conditioning``)."""
    from rom_pipeline.evaluation.track import phase_concentration

    out = {}
    for run_id, y in unpack_trajectories(train_latent).items():
        k = max(1, min(int(start), y.shape[0]))
        out[run_id] = float(phase_concentration(pod.lift(y[k - 1:k, : int(pod.n_modes_)], shifts=None))[0])
    return out


def training_track_model(train_latent: dict, pod: PODBasis, forecast_setup: dict[str, Any]):
    """The track model of the ``lab_ensemble`` shift mode, fitted on the TRAINING runs' tracks
    (:func:`training_tracks`) with their covariates (:func:`training_covariates`); None when that
    mode is not scored."""
    from rom_pipeline.evaluation.track import TrackModel

    if not forecast_setup["lab_ensemble"]:
        return None
    tracks = training_tracks(train_latent, pod, forecast_setup)
    # the protocol's k0, on the ROM grid the training shifts were stored on
    start = int(round(forecast_setup["evaluation"]["forecast_start"] / float(train_latent["dt_rom"])))
    conditioning = forecast_setup["track_conditioning"]
    covariates = training_covariates(train_latent, pod, start) if conditioning != "none" else None
    return TrackModel(order=forecast_setup["track_order"], calibration=forecast_setup["track_calibration"],
                      conditioning=conditioning).fit(
        list(tracks.values()), pod.grid_shape_, start=start,
        covariates=None if covariates is None else [covariates[r] for r in tracks])


def forecaster_blend(forecaster: Forecaster, model_options: dict[str, Any], train_latent: dict,
                     train_runs: RunCollection, pod: PODBasis, rom_grid: dict[str, Any],
                     forecast_setup: dict[str, Any]):
    """The ``lab_ensemble`` mode's blend with climatology of one forecaster
    (:func:`rom_pipeline.evaluation.blend.fit_climatology_blend`): the forecaster (its
    ``model_options``) and the track model refitted without each of ``eval.blend_folds`` folds of
    TRAINING runs and scored on the fold (:func:`blend_components`), the weights chosen per lead
    window (:func:`rom_pipeline.evaluation.blend.blend_from_components`). None when the mode is
    not scored or ``eval.ensemble_blend`` is ``none``."""
    from rom_pipeline.evaluation.blend import blend_from_components

    held_out = blend_components(forecaster, model_options, train_latent, train_runs, pod, rom_grid,
                                forecast_setup)
    if held_out is None:
        return None
    config = evaluation_config(forecast_setup)
    blend = blend_from_components(*held_out, tuple(config.lead_windows),
                                  forecast_setup.get("blend_max_spread_skill"), int(config.ensemble_size))
    logger.info("%s: lab_ensemble blend with climatology, forecast weight per lead window %s: "
                "ensemble %s, mean %s (held-out training frames %s)", forecaster.name, list(blend.edges),
                [round(w, 3) for w in blend.weights], [round(w, 3) for w in blend.mean_weights],
                list(blend.n_frames))
    return blend


def blend_components(forecaster: Forecaster, model_options: dict[str, Any], train_latent: dict,
                     train_runs: RunCollection, pod: PODBasis, rom_grid: dict[str, Any],
                     forecast_setup: dict[str, Any]):
    """The held-out training frames' mixture components of one forecaster's blend
    (:func:`rom_pipeline.evaluation.blend.heldout_blend_components`, arguments as
    :func:`forecaster_blend`): ``(lead, components)``, or None when the blend is off."""
    from rom_pipeline.evaluation.blend import check_blend_method, heldout_blend_components
    from rom_pipeline.evaluation.track import TrackModel

    method, folds = forecast_setup.get("ensemble_blend", "none"), forecast_setup.get("blend_folds", 3)
    check_blend_method(method, folds)
    if not forecast_setup["lab_ensemble"] or method == "none":
        return None
    latents = unpack_trajectories(train_latent)
    tracks = training_tracks(train_latent, pod, forecast_setup)
    ids = list(latents)
    missing = [r for r in ids if r not in set(train_runs.run_ids)]
    if missing:
        raise ValueError(
            f"eval.ensemble_blend: heldout needs the training runs' densities; {len(missing)} of the "
            f"latent trajectories' runs are not in the training folder (e.g. {missing[0]!r}): re-run "
            "the simulation or set eval.ensemble_blend: none"
        )
    runs = list(runs_for_evaluation(RunCollection(train_runs.path, ids), rom_grid, particles=False))
    for run, run_id in zip(runs, ids):
        if run.times.size != latents[run_id].shape[0]:
            raise ValueError(
                f"training run {run_id!r} has {run.times.size} ROM frames but {latents[run_id].shape[0]} "
                "stored latent states: re-run the pod pipeline on these training runs"
            )
    start = int(round(forecast_setup["evaluation"]["forecast_start"] / float(train_latent["dt_rom"])))

    def fit_track(fold_tracks, fold_covariates):
        return TrackModel(order=forecast_setup["track_order"], calibration=forecast_setup["track_calibration"],
                          conditioning=forecast_setup["track_conditioning"]).fit(
            fold_tracks, pod.grid_shape_, start=start, covariates=fold_covariates)

    covariates = (training_covariates(train_latent, pod, start)
                  if forecast_setup["track_conditioning"] != "none" else None)

    return heldout_blend_components(
        lambda trajectories: forecaster.train(model_options, trajectories), fit_track, pod, runs,
        [latents[r] for r in ids], [tracks[r] for r in ids], evaluation_config(forecast_setup), n_folds=folds,
        covariates=None if covariates is None else [covariates[r] for r in ids],
    )


def fit_ensemble_blend(model_options: dict[str, Any], pod_basis: dict, train_latent: dict,
                       train_runs: RunCollection, rom_grid: dict[str, Any], forecast_setup: dict[str, Any],
                       *, forecaster: Forecaster) -> dict[str, Any]:
    """``ensemble_blend.json``: the ``lab_ensemble`` mode's per-lead-window weights of the blend
    with climatology (:func:`forecaster_blend`, fitted on held-out training runs), or
    ``{"method": "none"}`` when that mode is not scored or ``eval.ensemble_blend`` is ``none``."""
    blend = forecaster_blend(forecaster, model_options, train_latent, train_runs,
                             PODBasis.from_arrays(pod_basis), rom_grid, forecast_setup)
    return {"method": "none"} if blend is None else blend.to_dict()


# ---------------------------------------------------------------------- the template's nodes
def train_forecaster(latent_dataset: dict, model_options: dict[str, Any],
                     forecaster: Forecaster) -> tuple[Any, pd.DataFrame, dict]:
    """Fit the registered ``forecaster`` on the training runs' latent trajectories (K_i, r) with
    the options of its parameters block.

    Returns the stored artifact, the training table (MVAR: the lag scan; LSTM: the epoch log) and
    the training summary (JSON)."""
    trajectories = list(unpack_trajectories(latent_dataset).values())
    model = forecaster.train(model_options, trajectories)
    return forecaster.save(model), forecaster.table(model), forecaster.training_summary(model, model_options)


def evaluate_forecaster_on_tests(
    model_artifact: Any,
    pod_basis: dict,
    train_latent: dict,
    test_runs: RunCollection,
    rom_grid: dict[str, Any],
    forecast_setup: dict[str, Any],
    ensemble_blend: dict[str, Any] | None = None,
    *,
    forecaster: Forecaster,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Score one forecaster on every unseen test run with the shared protocol (science.md §8).

    Returns ``test_results`` (one row per run × shift mode), ``r2_vs_time`` (long format) and the
    predicted density movies ``{run_id: (T_f, ny, nx)}`` (first shift mode) with their times
    (``{run_id}__times``) and the true density of the same frames (``{run_id}__truth``).
    ``train_latent`` supplies the training shifts of the ``lab_ensemble`` track model;
    ``ensemble_blend`` (:func:`fit_ensemble_blend`) that mode's weights of the blend with
    climatology (None or method ``none``: unblended).
    """
    from rom_pipeline.evaluation.blend import ClimatologyBlend

    from rom_pipeline.evaluation.protocol import evaluate_many

    model = forecaster.load(model_artifact)
    pod = PODBasis.from_arrays(pod_basis)
    blend = ClimatologyBlend.from_dict(ensemble_blend) if ensemble_blend else None
    results, r2_t, per_run = evaluate_many(
        model, pod, track(test_runs_for_evaluation(test_runs, rom_grid, forecast_setup),
                          "evaluating test runs", total=len(test_runs)),
        evaluation_config(forecast_setup),
        track_model=training_track_model(train_latent, pod, forecast_setup), blend=blend,
    )
    predictions: dict[str, np.ndarray] = {}
    for run_id, res in per_run.items():
        predictions[run_id] = np.asarray(res.prediction, dtype=np.float32)
        predictions[f"{run_id}__times"] = np.asarray(res.forecast_times)
        predictions[f"{run_id}__truth"] = np.asarray(res.truth_forecast, dtype=np.float32)
    return results, r2_t, predictions


def _bound(function, **kwargs):
    """``function`` with ``kwargs`` bound, keeping its name and docstring (for Kedro and viz)."""
    return update_wrapper(partial(function, **kwargs), function)


def model_template(forecaster: Forecaster) -> Pipeline:
    """train -> (the registry's plots) -> evaluate, in names local to one model (the training
    table is named by the registry: ``lag_scan``, ``training_log``)."""
    table = forecaster.training_table
    nodes = [
        Node(_bound(train_forecaster, forecaster=forecaster), ["latent_dataset", "params:model_options"],
             ["model", table, "training_summary"], name="train_forecaster"),
        Node(_bound(fit_ensemble_blend, forecaster=forecaster),
             ["params:model_options", "pod_basis", "train_latent", "train.runs", "rom_grid", "forecast_setup"],
             "ensemble_blend", name="fit_ensemble_blend"),
        Node(_bound(evaluate_forecaster_on_tests, forecaster=forecaster),
             ["model", "pod_basis", "train_latent", "test.runs", "rom_grid", "forecast_setup",
              "ensemble_blend"],
             ["test_results", "r2_vs_time", "predictions"], name="evaluate_on_test_runs"),
    ]
    for plot in forecaster.plots:
        inputs = [table if name == "training_table" else name for name in plot.inputs]
        nodes.append(Node(plot.function, inputs, plot.output,
                          name=plot.output.removesuffix("_plot").join(("plot_", ""))))
    return Pipeline(nodes)


def model_pipeline(forecaster: Forecaster) -> Pipeline:
    """The template in namespace ``<name>``: its ``params:model_options`` is ``params:<name>``;
    its datasets are ``<name>.model``, ``<name>.test_results``, ..."""
    return Pipeline(
        model_template(forecaster),
        namespace=forecaster.name,
        inputs=SHARED_INPUTS,
        parameters={"params:model_options": f"params:{forecaster.name}"},
    )
