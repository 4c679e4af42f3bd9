"""Project settings (see https://docs.kedro.org/en/stable/configure/configuration_basics/)."""
import os
from pathlib import Path

from kedro.config import OmegaConfigLoader

from rom_pipeline.execution import console  # noqa: F401  (quiets the libraries; see rom_pipeline.execution.console)
from rom_pipeline.config import validate_experiment_name
from rom_pipeline.framework.hooks import (
    IntentHooks,
    MissingInputsHooks,
    ProvenanceHooks,
    RunSummaryHooks,
    ValidationHooks,
)
from rom_pipeline.framework.integrity import IntegrityHooks, LoadVersionHooks
from rom_pipeline.framework.runner import KeepClusterHooks
from rom_pipeline.framework.tracking import TrackingHooks


PROJECT_PATH = Path(__file__).resolve().parents[2]


class ExperimentConfigLoader(OmegaConfigLoader):
    """Kedro's loader, plus named runs: ``kedro run --params experiment=NAME``.

    A named run sets the ``experiment`` global to ``NAME``, so every catalog path
    (``${globals:data_root}/${globals:experiment}/...``) lands in ``<data_root>/NAME/`` and never
    touches another run's outputs; ``run_name`` (the MLflow run name, ``conf/base/mlflow.yml``)
    becomes ``NAME`` and ``environment_experiment`` keeps the environment's own experiment, which
    stays the MLflow experiment. Kedro forbids ``${runtime_params:...}`` in globals, hence this
    subclass rather than a resolver in every catalog entry. Without the parameter nothing changes
    (``run_name`` is null: kedro-mlflow names the run after the pipelines).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        globals_ = dict(self._globals or {})
        globals_.setdefault("environment_experiment", globals_.get("experiment"))
        globals_.setdefault("run_name", None)
        name = (self.runtime_params or {}).get("experiment")
        if name is not None:
            if isinstance(name, int) and not isinstance(name, bool):
                name = str(name)  # Kedro parses --params experiment=42 as a number
            name = validate_experiment_name(name, "--params experiment")  # before any work: a bad name is a ConfigError
            globals_.update(experiment=name, run_name=name)
        self._globals = globals_
        self._globals_oc = None  # the globals resolver's cache of the old values

    def __getitem__(self, key: str):
        if key == "globals" and "_globals" in vars(self):  # not while the base class reads them
            return dict(self._globals)
        config = super().__getitem__(key)
        if key == "catalog":
            config = expand_forecaster_entries(config)
        return config


FORECASTER_PLACEHOLDER = "{forecaster}"


def expand_forecaster_entries(catalog: dict) -> dict:
    """Repeat every catalog entry whose name holds ``{forecaster}`` for each registered forecaster
    (:data:`rom_pipeline.registry.FORECASTERS`), filling ``{forecaster}``, ``{folder}``,
    ``{artifact_type}``, ``{artifact_file}`` and ``{training_table}`` in its name and values; any
    other ``{...}`` (a Kedro dataset-factory placeholder such as ``{plot}``) is left as it is."""
    from rom_pipeline.registry import FORECASTERS

    def fill(value, tokens: dict[str, str]):
        if isinstance(value, str):
            for token, text in tokens.items():
                value = value.replace(token, text)
            return value
        if isinstance(value, dict):
            return {fill(k, tokens): fill(v, tokens) for k, v in value.items()}
        if isinstance(value, list):
            return [fill(v, tokens) for v in value]
        return value

    out = {}
    for name, entry in catalog.items():
        if FORECASTER_PLACEHOLDER not in name:
            out[name] = entry
            continue
        for forecaster in FORECASTERS.values():
            tokens = {FORECASTER_PLACEHOLDER: forecaster.name, "{folder}": forecaster.folder,
                      "{artifact_type}": forecaster.artifact_type,
                      "{artifact_file}": forecaster.artifact_file,
                      "{training_table}": forecaster.training_table}
            out.setdefault(fill(name, tokens), fill(entry, tokens))
    return out


# Hooks run last-in-first-out: validation first, then the disabled-model and missing-input
# checks, then integrity (paths, sbatch, the experiment's write lock, lineage of the inputs), then
# the rest.
HOOKS = (
    RunSummaryHooks(), ProvenanceHooks(), KeepClusterHooks(), TrackingHooks(), IntegrityHooks(),
    MissingInputsHooks(), LoadVersionHooks(), IntentHooks(), ValidationHooks(),
)

CONFIG_LOADER_CLASS = ExperimentConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft", "globals": "soft"},
    # ${env_or:NAME,default}: lets a cluster job or a test point the data root elsewhere.
    "custom_resolvers": {
        "env_or": lambda name, default=None: os.environ.get(name, default),
        # ${from_project_root:PATH}: PATH made absolute from the project root, for the settings
        # Kedro does not anchor itself (the MLflow store): a notebook in notebooks/ then uses
        # data/mlflow.db like `kedro run`, never notebooks/data/mlflow.db.
        "from_project_root": lambda path: str(PROJECT_PATH / path),
    },
}
