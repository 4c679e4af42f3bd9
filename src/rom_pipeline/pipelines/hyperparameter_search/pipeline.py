from kedro.pipeline import Node, Pipeline

from rom_pipeline.pipelines.hyperparameter_search import nodes


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline(
        [
            Node(nodes.search_hyperparameters,
                 ["train_latent", "pod_basis", "train.runs", "parameters"],
                 ["results", "run_scores", "best"], name="search_hyperparameters"),
            Node(nodes.plot_search_scores, "results", "scores_plot", name="plot_search_scores"),
        ],
        namespace="search",
        inputs={"train_latent", "pod_basis", "train.runs"},
        parameters={"parameters"},
    )
