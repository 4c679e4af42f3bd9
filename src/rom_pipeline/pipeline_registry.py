"""Project pipelines: every modular pipeline found in ``pipelines/``, and a default that runs
simulation -> pod -> latent_dataset -> each enabled model -> evaluation."""
from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline

from rom_pipeline.pipelines.models import MODEL_NAMES, enabled_models

STAGES = ("simulation", "pod", "latent_dataset")


def register_pipelines() -> dict[str, Pipeline]:
    # Kedro 1.7 loads only the requested pipelines (``--pipelines=mvar``); the default is built
    # when every stage it needs was discovered.
    pipelines = find_pipelines(raise_errors=True)
    for name in set(MODEL_NAMES) - set(enabled_models()):
        # A disabled model is skipped (hooks.IntentHooks says so), never trained and then ignored.
        pipelines[name] = Pipeline([])
    stages = (*STAGES, *enabled_models(), "evaluation")
    if all(name in pipelines for name in stages):
        pipelines["__default__"] = sum((pipelines[name] for name in stages), Pipeline([]))
    return pipelines
