"""Thin nodes of the simulation pipeline: plan the runs from their parameter blocks and carry the
plan out in the split's run folder (the science is in :mod:`rom_pipeline.execution.runs` and
:mod:`rom_pipeline.physics`; the resumable, per-run-atomic writing in
:mod:`rom_pipeline.execution.run_folder`)."""
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
from rom_pipeline.datasets.runs import RunCollection
from rom_pipeline.execution.run_folder import RunFolder, SimulationPlan
from rom_pipeline.execution.runs import plan_runs

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


def plan_simulation_runs(
    run_folder: RunFolder, split: str, **blocks: dict[str, Any]
) -> tuple[RunCollection, pd.DataFrame]:
    """Simulate the runs of one split into ``run_folder``; the runs and their metadata table.

    ``blocks`` are the parameter blocks of :func:`split_blocks` (``sim``, ``model``, ...). Runs
    are simulated in parallel per ``execution`` and written one at a time; runs already on disk
    with identical parameters are reused (:meth:`RunFolder.simulate`).
    """
    cfg = SimpleNamespace(**{name: model.model_validate(blocks[name])
                             for name, model in split_blocks(split).items()})
    tasks = plan_runs(cfg, split)
    plan = SimulationPlan({t.run_id: t for t in tasks}, execution=cfg.execution.to_execution())
    run_ids = run_folder.simulate(plan)
    table = pd.DataFrame([t.metadata() for t in tasks])
    return RunCollection(run_folder.path, run_ids), table
