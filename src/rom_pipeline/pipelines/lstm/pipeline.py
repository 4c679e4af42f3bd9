from kedro.pipeline import Node, Pipeline

from rom_pipeline.pipelines.lstm import nodes
from rom_pipeline.pipelines.models import model_pipeline
from rom_pipeline.rom.lstm import LSTMForecaster


def create_pipeline(**kwargs) -> Pipeline:
    training = Pipeline(
        [
            Node(nodes.train_lstm, ["latent_dataset", "parameters"],
                 ["model", "training_log", "training_summary"], name="train_lstm"),
            Node(nodes.plot_lstm_training, ["training_log", "training_summary"], "training_plot", name="plot_training"),
        ]
    )
    return model_pipeline("lstm", training, LSTMForecaster.from_payload)
