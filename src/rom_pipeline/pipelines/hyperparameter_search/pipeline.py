from kedro.pipeline import Node, Pipeline

from rom_pipeline.pipelines.hyperparameter_search import nodes
from rom_pipeline.pipelines.models import setup_pipeline
from rom_pipeline.registry import FORECASTERS


def create_pipeline(**kwargs) -> Pipeline:
    inputs = {"train_latent": "train_latent", "pod_basis": "pod_basis", "train_runs": "train.runs",
              "rom_grid": "rom_grid", "forecast_setup": "forecast_setup",
              "search_block": "params:search", **{name: f"params:{name}" for name in FORECASTERS}}
    search = Pipeline(
        [
            Node(nodes.search_hyperparameters, inputs, ["results", "run_scores", "best"],
                 name="search_hyperparameters"),
            Node(nodes.plot_search_scores, "results", "scores_plot", name="plot_search_scores"),
        ],
        namespace="search",
        inputs={"train_latent", "pod_basis", "train.runs", "rom_grid", "forecast_setup"},
        parameters={v for v in inputs.values() if v.startswith("params:")},
    )
    return setup_pipeline() + search
