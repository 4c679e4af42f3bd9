"""The model pipeline factory: one train -> evaluate template instantiated per forecaster.

Each model contributes only (a) its training nodes, which turn ``latent_dataset`` into
``<model>.model`` and a ``<model>.training_summary``, and (b) a function that rebuilds a
:class:`~rom_pipeline.rom.forecaster.LatentForecaster` from the stored artifact. Evaluation of
the unseen test runs is the same node for every model (see :func:`evaluate_forecaster_on_tests`).
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial, update_wrapper
from typing import Any

import numpy as np
import pandas as pd
from kedro.pipeline import Node, Pipeline

from rom_pipeline.config import validate_parameters
from rom_pipeline.datasets.runs import RunCollection
from rom_pipeline.progress import track
from rom_pipeline.rom.forecaster import LatentForecaster
from rom_pipeline.rom.pod import PODBasis

SHARED_INPUTS = {"latent_dataset", "train_latent", "pod_basis", "test.runs"}
MODEL_NAMES = ("mvar", "lstm")


def enabled_models(parameters: dict[str, Any] | None = None) -> list[str]:
    """Names of the models whose ``rom.models.<name>.enabled`` is true (default: both)."""
    if parameters is None:
        from rom_pipeline.hooks import active_parameters

        parameters = active_parameters()
    models = (parameters.get("rom") or {}).get("models") or {}
    return [m for m in MODEL_NAMES if (models.get(m) or {}).get("enabled", True)]


def test_runs_for_evaluation(test_runs: RunCollection, parameters: dict[str, Any]):
    """The unseen test runs on the ROM time grid, as evaluation ``TestRun`` records."""
    from rom_pipeline.evaluation.protocol import TestRun

    cfg = validate_parameters(parameters)
    k = cfg.rom.subsample
    cell_area = (cfg.sim.Lx / cfg.density.nx) * (cfg.sim.Ly / cfg.density.ny)
    for run_id in test_runs:
        meta = test_runs[run_id]
        dens = test_runs.density(run_id)
        parts = test_runs.particles(run_id) if cfg.eval.order_parameters else None
        yield TestRun(
            run_id=run_id, family=meta["family"], times=dens["times"][::k],
            density=dens["density"][::k].astype(np.float64),
            positions=None if parts is None else parts["positions"][::k].astype(np.float64),
            velocities=None if parts is None else parts["velocities"][::k].astype(np.float64),
            Lx=cfg.sim.Lx, Ly=cfg.sim.Ly, periodic=cfg.sim.bc == "periodic", cell_area=cell_area,
        )


def evaluation_config(parameters: dict[str, Any]):
    from rom_pipeline.evaluation.protocol import EvaluationConfig

    cfg = validate_parameters(parameters)
    shift_modes = tuple(cfg.eval.shift_modes) if cfg.rom.shift_align else ("oracle",)
    return EvaluationConfig(
        forecast_start=cfg.forecast_start, clamp_mode=cfg.eval.clamp_mode,
        mass_postprocess=cfg.eval.mass_postprocess, shift_modes=shift_modes,
        valid_r2_threshold=cfg.eval.valid_r2_threshold, order_parameters=cfg.eval.order_parameters,
        lead_windows=cfg.lead_windows, ensemble_size=cfg.eval.ensemble_size,
        ensemble_seed=cfg.eval.ensemble_seed,
    )


def training_track_model(train_latent: dict, pod: PODBasis, parameters: dict[str, Any]):
    """The track model of the ``lab_ensemble`` shift mode, fitted on the TRAINING runs' alignment
    shifts (stored with their latent trajectories in ``train_latent``); None when that mode is not
    scored."""
    from rom_pipeline.evaluation.track import TrackModel
    from rom_pipeline.rom.latent import unpack_trajectories

    cfg = validate_parameters(parameters)
    if not (cfg.rom.shift_align and "lab_ensemble" in cfg.eval.shift_modes):
        return None
    if "shifts" not in train_latent:
        raise ValueError(
            "train_latent holds no training shifts; re-run the pod pipeline with rom.shift_align: true "
            "before scoring eval.shift_modes 'lab_ensemble'"
        )
    tracks = list(unpack_trajectories(train_latent, key="shifts").values())
    start = int(round(cfg.forecast_start / cfg.dt_rom))  # the protocol's k0
    return TrackModel(order=cfg.eval.track_order, calibration=cfg.eval.track_calibration).fit(
        tracks, pod.grid_shape_, start=start)


def evaluate_forecaster_on_tests(
    model_artifact: Any,
    pod_basis: dict,
    train_latent: dict,
    test_runs: RunCollection,
    parameters: dict[str, Any],
    load_forecaster: Callable[[Any], LatentForecaster],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, np.ndarray]]:
    """Score one forecaster on every unseen test run with the shared protocol (science.md §8).

    Returns ``test_results`` (one row per run × shift mode), ``r2_vs_time`` (long format) and the
    predicted density movies ``{run_id: (T_f, ny, nx)}`` (first shift mode) with their times
    (``{run_id}__times``) and the true density of the same frames (``{run_id}__truth``).
    ``train_latent`` supplies the training shifts of the ``lab_ensemble`` track model.
    """
    from rom_pipeline.evaluation.protocol import evaluate_many

    forecaster = load_forecaster(model_artifact)
    pod = PODBasis.from_arrays(pod_basis)
    results, r2_t, per_run = evaluate_many(
        forecaster, pod, track(test_runs_for_evaluation(test_runs, parameters), "evaluating test runs",
                               total=len(test_runs)),
        evaluation_config(parameters),
        track_model=training_track_model(train_latent, pod, parameters),
    )
    predictions: dict[str, np.ndarray] = {}
    for run_id, res in per_run.items():
        predictions[run_id] = np.asarray(res.prediction, dtype=np.float32)
        predictions[f"{run_id}__times"] = np.asarray(res.forecast_times)
        predictions[f"{run_id}__truth"] = np.asarray(res.truth_forecast, dtype=np.float32)
    return results, r2_t, predictions


def model_pipeline(
    name: str, training: Pipeline, load_forecaster: Callable[[Any], LatentForecaster]
) -> Pipeline:
    """Namespace ``name``: the model's ``training`` nodes + the shared evaluation node."""
    evaluate = update_wrapper(
        partial(evaluate_forecaster_on_tests, load_forecaster=load_forecaster),
        evaluate_forecaster_on_tests,
    )
    evaluation = Pipeline(
        [
            Node(
                evaluate,
                ["model", "pod_basis", "train_latent", "test.runs", "parameters"],
                ["test_results", "r2_vs_time", "predictions"],
                name="evaluate_on_test_runs",
            )
        ]
    )
    return Pipeline(
        training + evaluation,
        namespace=name,
        inputs=SHARED_INPUTS,
        parameters={"parameters"},
    )
