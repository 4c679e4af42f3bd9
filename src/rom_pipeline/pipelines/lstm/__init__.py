"""``lstm``: PyTorch LSTM latent forecaster, trained and evaluated on the shared artifacts."""
from rom_pipeline.pipelines.lstm.pipeline import create_pipeline

__all__ = ["create_pipeline"]
