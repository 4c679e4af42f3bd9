"""``pod``: the shared POD basis of the training densities and the latent trajectories."""
from rom_pipeline.pipelines.pod.pipeline import create_pipeline

__all__ = ["create_pipeline"]
