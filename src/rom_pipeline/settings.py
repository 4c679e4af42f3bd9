"""Project settings (see https://docs.kedro.org/en/stable/configure/configuration_basics/)."""
import os

from kedro.config import OmegaConfigLoader

from rom_pipeline.hooks import MissingInputsHooks, ProvenanceHooks, ValidationHooks
from rom_pipeline.integrity import IntegrityHooks, LoadVersionHooks
from rom_pipeline.runner import KeepClusterHooks
from rom_pipeline.tracking import TrackingHooks

# Hooks run last-in-first-out: validation first, then the missing-input check, then integrity
# (paths, sbatch, the experiment's write lock, lineage of the inputs), then the rest.
HOOKS = (
    ProvenanceHooks(), KeepClusterHooks(), TrackingHooks(), IntegrityHooks(), MissingInputsHooks(),
    LoadVersionHooks(), ValidationHooks(),
)

CONFIG_LOADER_CLASS = OmegaConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    "merge_strategy": {"parameters": "soft", "globals": "soft"},
    # ${env_or:NAME,default}: lets a cluster job or a test point the data root elsewhere.
    "custom_resolvers": {"env_or": lambda name, default=None: os.environ.get(name, default)},
}
