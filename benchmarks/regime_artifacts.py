"""Load what ``bench_thesis_regime.py <regime>`` left under a data root, for the scripts that
score more models on it (the persistence row, ``analyse_regime.py``, ``lstm_variant.py``)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROJECT = Path(__file__).resolve().parents[1]


@dataclass
class RegimeArtifacts:
    params: dict[str, Any]
    pod: Any  # rom_pipeline.rom.pod.PODBasis
    trajectories: list[np.ndarray]
    runs: list[Any]  # evaluation TestRun records
    config: Any  # evaluation EvaluationConfig
    track_model: Any = None  # evaluation.track.TrackModel when 'lab_ensemble' is scored

    def score(self, forecaster) -> list[float]:
        """Pooled R² of ``forecaster`` on every test run, first shift mode of ``config``."""
        from rom_pipeline.evaluation.protocol import evaluate_forecaster

        return [evaluate_forecaster(forecaster, self.pod, run, self.config,
                                    track_model=self.track_model).metrics[0]["r2_pooled"]
                for run in self.runs]


def load_regime(regime: str, data_root: str | Path, oracle_only: bool = False,
                particles: bool = False) -> RegimeArtifacts:
    """The regime's parameters, POD basis, latent training runs and test runs.

    ``oracle_only`` scores only the oracle shift mode, without order parameters (quick scans).
    ``particles`` keeps the test runs' positions and velocities (on the ROM time grid) even then.
    """
    os.environ["ROM_DATA_ROOT"] = str(data_root)
    from kedro.framework.session import KedroSession
    from kedro.framework.startup import bootstrap_project

    from rom_pipeline.pipelines.models import (
        derived_quantities,
        evaluation_config,
        test_runs_for_evaluation,
        training_track_model,
    )
    from rom_pipeline.rom.latent import unpack_trajectories
    from rom_pipeline.rom.pod import PODBasis

    bootstrap_project(PROJECT)
    with KedroSession.create(project_path=PROJECT, env=regime) as session:
        catalog = session.load_context().catalog
        params = catalog.load("parameters")
        if oracle_only:
            params = {**params, "eval": {**params["eval"], "shift_modes": ["oracle"],
                                         "order_parameters": False}}
        pod = PODBasis.from_arrays(catalog.load("pod_basis"))
        trajectories = list(unpack_trajectories(catalog.load("latent_dataset")).values())
        run_params = params
        if particles:
            run_params = {**params, "eval": {**params["eval"], "order_parameters": True}}
        rom_grid, run_setup = derived_quantities(run_params)
        runs = list(test_runs_for_evaluation(catalog.load("test.runs"), rom_grid, run_setup))
        forecast_setup = derived_quantities(params)[1]
        track_model = training_track_model(catalog.load("train_latent"), pod, forecast_setup)
    return RegimeArtifacts(params, pod, trajectories, runs, evaluation_config(forecast_setup), track_model)
