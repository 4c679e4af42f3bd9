from kedro.pipeline import Node, Pipeline

from rom_pipeline.pipelines.latent_dataset import nodes
from rom_pipeline.registry import FORECASTERS


def create_pipeline(**kwargs) -> Pipeline:
    # The shared lag defaults to a forecaster's lag, so the node reads every forecaster block.
    blocks = {"latent_dataset": "params:latent_dataset",
              **{name: f"params:{name}" for name in FORECASTERS}}
    return Pipeline(
        [
            Node(nodes.build_latent_dataset, {"train_latent": "train_latent", **blocks},
                 "latent_dataset", name="build_latent_dataset"),
            Node(nodes.plot_latent_trajectories, "train_latent", "latent_trajectories_plot",
                 name="plot_latent_trajectories"),
        ],
        namespace="latent_dataset",
        inputs={"train_latent"},
        parameters=set(blocks.values()),
        outputs={"latent_dataset", "latent_trajectories_plot"},
    )
