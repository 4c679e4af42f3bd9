"""``evaluation``: the MVAR-vs-LSTM (any models) comparison report and experiment summary."""
from rom_pipeline.pipelines.evaluation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
