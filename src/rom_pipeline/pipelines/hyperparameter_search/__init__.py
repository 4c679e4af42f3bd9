"""``hyperparameter_search``: closed-loop validation of forecaster hyper-parameters and POD modes
on held-out training runs, from the shared artifacts (not part of the default pipeline)."""
from rom_pipeline.pipelines.hyperparameter_search.pipeline import create_pipeline

__all__ = ["create_pipeline"]
