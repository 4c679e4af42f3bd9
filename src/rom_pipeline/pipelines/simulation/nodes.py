"""Thin nodes of the simulation pipeline: plan runs from parameters (the science is in
:mod:`rom_pipeline.execution.runs` and :mod:`rom_pipeline.physics`)."""
from __future__ import annotations

from typing import Any

import pandas as pd

from rom_pipeline.config import validate_parameters
from rom_pipeline.datasets.runs import SimulationPlan
from rom_pipeline.execution.runs import plan_runs


def plan_simulation_runs(parameters: dict[str, Any], split: str) -> tuple[SimulationPlan, pd.DataFrame]:
    """The runs of one split as a lazily evaluated plan, and its metadata table.

    The plan is executed by the run dataset when saved (runs written one at a time, in parallel
    per ``execution``, reusing runs already on disk with identical parameters).
    """
    cfg = validate_parameters(parameters)
    tasks = plan_runs(cfg, split)
    plan = SimulationPlan({t.run_id: t for t in tasks}, execution=cfg.execution.to_execution())
    table = pd.DataFrame([t.metadata() for t in tasks])
    return plan, table
