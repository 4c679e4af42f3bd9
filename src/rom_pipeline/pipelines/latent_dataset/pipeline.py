from kedro.pipeline import Node, Pipeline

from rom_pipeline.pipelines.latent_dataset import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(nodes.build_latent_dataset, ["train_latent", "parameters"], "latent_dataset",
                 name="build_latent_dataset"),
            Node(nodes.plot_latent_trajectories, "train_latent", "latent_trajectories_plot",
                 name="plot_latent_trajectories"),
        ],
        namespace="latent_dataset",
        inputs={"train_latent"},
        parameters={"parameters"},
        outputs={"latent_dataset", "latent_trajectories_plot"},
    )
