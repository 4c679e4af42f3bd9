"""Project pipelines: every modular pipeline found in ``pipelines/``, and a default that runs
simulation -> pod -> latent_dataset -> each enabled model -> evaluation."""
from __future__ import annotations

import logging

from kedro.framework.project import find_pipelines
from kedro.pipeline import Node, Pipeline

from rom_pipeline.pipelines.models import MODEL_NAMES, enabled_models

logger = logging.getLogger(__name__)
STAGES = ("simulation", "pod", "latent_dataset")


def disabled_model_pipeline(name: str) -> Pipeline:
    """What ``--pipelines=<name>`` runs while ``rom.models.<name>.enabled`` is false: one node that
    says the model is skipped (never trained and then left out of the evaluation). Kedro refuses
    an empty pipeline and a node with neither inputs nor outputs, hence a node that reads the
    parameters and ignores them."""

    def skip_disabled_model(parameters: dict) -> None:
        logger.warning(
            "The %s pipeline is skipped: rom.models.%s.enabled is false. To train and evaluate it, "
            "run with --params rom.models.%s.enabled=true.", name, name, name,
        )

    return Pipeline([Node(skip_disabled_model, "parameters", None, name=f"{name}_disabled")])


def register_pipelines() -> dict[str, Pipeline]:
    # Kedro 1.7 loads only the requested pipelines (``--pipelines=mvar``); the default is built
    # when every stage it needs was discovered.
    pipelines = find_pipelines(raise_errors=True)
    for name in set(MODEL_NAMES) - set(enabled_models()):
        pipelines[name] = disabled_model_pipeline(name)
    stages = (*STAGES, *enabled_models(), "evaluation")
    if all(name in pipelines for name in stages):
        pipelines["__default__"] = sum((pipelines[name] for name in stages), Pipeline([]))
    return pipelines
