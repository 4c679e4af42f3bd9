"""Thin nodes of the simulation pipeline: plan the runs from parameters and carry the plan out
in the split's run folder (the science is in :mod:`rom_pipeline.execution.runs` and
:mod:`rom_pipeline.physics`; the resumable, per-run-atomic writing in
:mod:`rom_pipeline.execution.run_folder`)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from rom_pipeline.config import validate_parameters
from rom_pipeline.datasets.runs import RunCollection
from rom_pipeline.execution.run_folder import RunFolder, SimulationPlan
from rom_pipeline.execution.runs import plan_runs


def plan_simulation_runs(
    parameters: dict[str, Any], run_folder: RunFolder, split: str
) -> tuple[RunCollection, pd.DataFrame]:
    """Simulate the runs of one split into ``run_folder``; the runs and their metadata table.

    Runs are simulated in parallel per ``execution`` and written one at a time; runs already on
    disk with identical parameters are reused (:meth:`RunFolder.simulate`).
    """
    cfg = validate_parameters(parameters)
    tasks = plan_runs(cfg, split)
    plan = SimulationPlan({t.run_id: t for t in tasks}, execution=cfg.execution.to_execution())
    run_ids = run_folder.simulate(plan)
    table = pd.DataFrame([t.metadata() for t in tasks])
    return RunCollection(run_folder.path, run_ids), table
