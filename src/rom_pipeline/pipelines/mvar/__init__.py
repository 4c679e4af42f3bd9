"""``mvar``: ridge MVAR latent forecaster, trained and evaluated on the shared artifacts."""
from rom_pipeline.pipelines.mvar.pipeline import create_pipeline

__all__ = ["create_pipeline"]
