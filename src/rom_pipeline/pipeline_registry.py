"""Project pipelines: every modular pipeline found in ``pipelines/``, and a default that runs
simulation -> pod -> latent_dataset -> each enabled model -> evaluation."""
from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from rom_pipeline.pipelines.models import enabled_models

STAGES = ("simulation", "pod", "latent_dataset")


def register_pipelines() -> dict[str, Pipeline]:
    pipelines = find_pipelines(raise_errors=True)
    default = Pipeline([])
    for name in (*STAGES, *enabled_models(), "evaluation"):
        default += pipelines[name]
    pipelines["__default__"] = default
    return pipelines
