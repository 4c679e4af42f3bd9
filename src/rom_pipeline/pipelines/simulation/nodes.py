"""Thin nodes of the simulation pipeline: plan runs from parameters (the science is in
:mod:`rom_pipeline.runs` and :mod:`rom_pipeline.physics`)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pandas as pd

from rom_pipeline.config import (
    AlignmentConfig,
    DensityConfig,
    ExecutionBlock,
    ForcesConfig,
    ICConfig,
    InteractionParams,
    ModelConfig,
    NoiseConfig,
    SimConfig,
    TestSimConfig,
)
from rom_pipeline.datasets.runs import SimulationPlan
from rom_pipeline.runs import plan_runs

#: The blocks a split's runs read, with their models (``{split}_ic`` and, for the test runs,
#: ``test_sim`` are added per split).
BLOCKS = {
    "sim": SimConfig, "model": ModelConfig, "params": InteractionParams, "noise": NoiseConfig,
    "forces": ForcesConfig, "alignment": AlignmentConfig, "density": DensityConfig,
    "execution": ExecutionBlock,
}
SPLIT_BLOCKS = {"train": {"train_ic": ICConfig}, "test": {"test_sim": TestSimConfig, "test_ic": ICConfig}}


def split_blocks(split: str) -> dict[str, type]:
    """``{block: model}`` of the parameter blocks the runs of ``split`` read."""
    return {**BLOCKS, **SPLIT_BLOCKS[split]}


def plan_simulation_runs(split: str, **blocks: dict[str, Any]) -> tuple[SimulationPlan, pd.DataFrame]:
    """The runs of one split as a lazily evaluated plan, and its metadata table.

    ``blocks`` are the parameter blocks of :func:`split_blocks` (``sim``, ``model``, ...). The plan
    is executed by the run dataset when saved (runs written one at a time, in parallel per
    ``execution``, reusing runs already on disk with identical parameters).
    """
    cfg = SimpleNamespace(**{name: model.model_validate(blocks[name])
                             for name, model in split_blocks(split).items()})
    tasks = plan_runs(cfg, split)
    plan = SimulationPlan({t.run_id: t for t in tasks}, execution=cfg.execution.to_execution())
    table = pd.DataFrame([t.metadata() for t in tasks])
    return plan, table
