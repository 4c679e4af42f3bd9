"""Project pipelines: the stages found in ``pipelines/``, one pipeline per registered forecaster
(the model template, :mod:`rom_pipeline.pipelines.models`), and a default that runs
simulation -> pod -> latent_dataset -> each enabled model -> evaluation."""
from __future__ import annotations

import importlib
import logging

from kedro.pipeline import Node, Pipeline

from rom_pipeline.pipelines.models import enabled_models, model_pipeline, setup_pipeline
from rom_pipeline.registry import FORECASTERS

logger = logging.getLogger(__name__)
STAGES = ("simulation", "pod", "latent_dataset")
#: The stage packages of ``pipelines/`` (the models have no package: the template serves them all).
PACKAGES = (*STAGES, "evaluation", "hyperparameter_search")


def disabled_model_pipeline(name: str) -> Pipeline:
    """What ``--pipelines=<name>`` runs while ``<name>.enabled`` is false: one node that says the
    model is skipped (never trained and then left out of the evaluation). Kedro refuses an empty
    pipeline and a node with neither inputs nor outputs, hence a node that reads the model's own
    parameters block and ignores it."""

    def skip_disabled_model(block: dict) -> None:
        logger.warning(
            "The %s pipeline is skipped: %s.enabled is false. To train and evaluate it, "
            "run with --params %s.enabled=true.", name, name, name,
        )

    return Pipeline([Node(skip_disabled_model, f"params:{name}", None, name=f"{name}_disabled")])


def register_pipelines() -> dict[str, Pipeline]:
    # Not Kedro's find_pipelines: with --pipelines=mvar it would look for a package
    # pipelines/mvar, and the models have none. Building every pipeline object is cheap. Which
    # models are enabled comes from the session's validated parameters (``register_pipelines``
    # receives none; see ``enabled_models``).
    pipelines = {name: importlib.import_module(f"rom_pipeline.pipelines.{name}").create_pipeline()
                 for name in PACKAGES}
    enabled = enabled_models()
    for name, forecaster in FORECASTERS.items():
        pipelines[name] = (setup_pipeline() + model_pipeline(forecaster) if name in enabled
                           else disabled_model_pipeline(name))
    stages = (*STAGES, *enabled, "evaluation")
    # __default__ first: kedro-viz files a dataset under the modular pipeline it meets first, and
    # in the whole graph a model's outputs belong to the model, not to the evaluation reading them
    return {"__default__": sum((pipelines[name] for name in stages), Pipeline([])), **pipelines}
