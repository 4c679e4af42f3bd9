"""Lineage records: which artifacts a parameter change makes stale, and how the check names it."""
import pytest

from rom_pipeline.config import validate_parameters
from rom_pipeline.framework.lineage import compare_record, expected_records, fingerprint, rebuild_command
from tests.conftest import with_overrides


def _prints(params, **overrides):
    records = expected_records(validate_parameters(with_overrides(params, **overrides)))
    return {name: fingerprint(r) for name, r in records.items()}


from rom_pipeline.registry import FORECASTERS  # noqa: E402

MODELS = {f"{m}.model" for m in FORECASTERS}  # every registered forecaster's artifacts
PREDICTIONS = {f"{m}.predictions" for m in FORECASTERS}


@pytest.mark.parametrize("key,value,stale", [
    ("params.R", 3.0, {"train.runs", "test.runs", "pod_basis", "train_latent", "latent_dataset",
                       *MODELS, *PREDICTIONS}),
    ("test_sim.T", 5.0, {"test.runs", *PREDICTIONS}),
    ("rom.subsample", 1, {"pod_basis", "train_latent", "latent_dataset", *MODELS, *PREDICTIONS}),
    ("latent_dataset.lag", 2, {"latent_dataset", *MODELS, *PREDICTIONS}),
    ("mvar.ridge_alpha", 1.0, {"mvar.model", "mvar.predictions"}),
    ("opinf.bound_factor", 2.0, {"opinf.model", "opinf.predictions"}),
    ("lstm.device", "cpu", set()),  # where it trains does not define the model
    ("eval.clamp_mode", "clamp", PREDICTIONS),
    ("execution.workers", 2, set()),  # results are identical whatever the number of workers
])
def test_a_parameter_change_makes_exactly_its_dependants_stale(test_params, key, value, stale):
    before, after = _prints(test_params), _prints(test_params, **{key: value})
    assert {name for name in before if before[name] != after[name]} == stale


def test_the_check_names_the_difference_and_the_earliest_stage_to_rebuild(test_params):
    stored = expected_records(validate_parameters(test_params))["latent_dataset"]
    current = expected_records(validate_parameters(with_overrides(test_params, **{"rom.fixed_modes": 4})))
    problems, root = compare_record("latent_dataset", stored, current["latent_dataset"])
    assert problems == ["upstream pod_basis: rom.fixed_modes: 6 -> 4"]
    assert root == "pod_basis"
    assert rebuild_command(root, "test") == "`kedro run --pipelines=pod,latent_dataset --env test`"
    assert compare_record("latent_dataset", stored, stored) == ([], "latent_dataset")


def test_a_forecaster_block_with_tuple_defaults_matches_its_stored_record():
    """A record goes through JSON (tuples become lists); the expected one must read the same, or a
    stage run on its own finds its own fresh artifact stale (opinf's penalty grids are tuples)."""
    import json

    from rom_pipeline.config import validate_parameters
    from rom_pipeline.framework.lineage import stage_parameters

    cfg = validate_parameters({})
    expected = stage_parameters("opinf.model", cfg)
    assert isinstance(cfg.opinf.linear_regularisation, tuple)
    assert json.loads(json.dumps(expected)) == expected
