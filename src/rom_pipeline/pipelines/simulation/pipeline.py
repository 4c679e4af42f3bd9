"""One template instantiated for the training runs and for the unseen test runs."""
from __future__ import annotations

from functools import partial, update_wrapper

from kedro.pipeline import Node, Pipeline

from rom_pipeline.pipelines.simulation.nodes import plan_simulation_runs, split_blocks


def simulation_template(split: str) -> Pipeline:
    """``{split}.runs`` (run directory) and ``{split}.run_table`` from the blocks the split reads,
    simulated into ``{split}.run_folder`` (the same folder, as a handle the node writes through)."""
    func = update_wrapper(partial(plan_simulation_runs, split=split), plan_simulation_runs)
    blocks = {name: f"params:{name}" for name in split_blocks(split)}
    return Pipeline(
        [Node(func, inputs={"run_folder": "run_folder", **blocks}, outputs=["runs", "run_table"],
              name="simulate_runs")],
        namespace=split,
        parameters=set(blocks.values()),
        prefix_datasets_with_namespace=True,
    )


def create_pipeline(**kwargs) -> Pipeline:
    return simulation_template("train") + simulation_template("test")
