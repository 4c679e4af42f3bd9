"""``simulation``: experiment parameters -> training and unseen test runs (particles + density)."""
from rom_pipeline.pipelines.simulation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
