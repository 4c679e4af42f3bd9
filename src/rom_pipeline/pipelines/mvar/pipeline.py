from kedro.pipeline import Node, Pipeline

from rom_pipeline.pipelines.models import model_pipeline
from rom_pipeline.pipelines.mvar import nodes
from rom_pipeline.rom.mvar import MVARForecaster


def create_pipeline(**kwargs) -> Pipeline:
    training = Pipeline(
        [
            Node(nodes.train_mvar, ["latent_dataset", "parameters"],
                 ["model", "lag_scan", "training_summary"], name="train_mvar"),
            Node(nodes.plot_mvar_eigenvalues, ["model", "parameters"], "eigenvalues_plot",
                 name="plot_eigenvalues"),
            Node(nodes.plot_mvar_lag_scan, ["lag_scan", "training_summary"], "lag_scan_plot", name="plot_lag_scan"),
        ]
    )
    return model_pipeline("mvar", training, MVARForecaster.from_arrays)
