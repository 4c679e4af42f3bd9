"""``latent_dataset``: windows of the latent trajectories shared by every model."""
from rom_pipeline.pipelines.latent_dataset.pipeline import create_pipeline

__all__ = ["create_pipeline"]
