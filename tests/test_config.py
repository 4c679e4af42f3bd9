"""Parameter validation: every bad input fails before any work with key, value and fix."""
import pytest

from rom_pipeline.config import ConfigError, validate_parameters
from tests.conftest import with_overrides


def test_base_and_test_environments_validate(base_params, test_params):
    base = validate_parameters(base_params)
    assert base.train_ic.run_count("train_ic") == 2 * 2 * 2 + 10 + 3 * 2 * 2 + 2 * 2 * 3 == 42
    assert base.test_ic.run_count("test_ic") == 4
    assert base.dt_rom == pytest.approx(0.12)
    tiny = validate_parameters(test_params)
    assert tiny.sim.N == 40 and tiny.density.nx == 16
    assert tiny.noise.eta == base.noise.eta  # soft merge keeps untouched base keys


def _set(params, dotted, value):
    return with_overrides(params, **{dotted: value})


BAD = [
    ("sim.N", 0, "sim.N"),
    ("sim.N", -5, "sim.N"),
    ("sim.N", "many", "sim.N"),
    ("sim.dt", 0.0, "sim.dt"),
    ("sim.T", -1.0, "sim.T"),
    ("sim.bc", "toroidal", "sim.bc"),
    ("sim.typo_key", 1, "unknown key"),
    ("bogus_block", {"a": 1}, "bogus_block"),
    ("model.speed", 100.0, "params.R / 2"),
    ("model.type", "boids", "model.type"),
    ("model.speed_mode", "fast", "model.speed_mode"),
    ("noise.kind", "cauchy", "noise.kind"),
    ("noise.eta", -0.1, "noise.eta"),
    ("density.bandwidth", 0.0, "density.bandwidth"),
    ("density.nx", 2, "density.nx"),
    ("train_ic.gaussian.variances", [], "train_ic.gaussian.variances"),
    ("train_ic.gaussian.variances", [-1.0], "variance"),
    ("train_ic.spiral", {"enabled": True}, "train_ic.spiral"),
    ("train_ic.ring.pairing", "zip", "pairing 'zip'"),
    ("test_sim.T", 0.3, "test_sim.T"),
    ("rom.subsample", 0, "rom.subsample"),
    ("rom.fixed_modes", 0, "rom.fixed_modes"),
    ("rom.pod_energy", 1.5, "rom.pod_energy"),
    ("rom.density_transform", "cbrt", "rom.density_transform"),
    ("mvar.lag", 500, "mvar.lag"),
    ("mvar.lag", "best", "mvar.lag"),
    ("lstm.dropout", 1.5, "lstm.dropout"),
    ("gru", {"enabled": True}, "gru"),
    ("eval.clamp_mode", "C0", "eval.clamp_mode"),
    ("eval.forecast_start", 0.05, "eval.forecast_start"),
    ("mvar.coint_rank", -1, "mvar.coint_rank"),
    ("mvar.coint_rank", 20, "coint_rank = 20 exceeds rom.fixed_modes = 19"),
    ("lstm", {"differences": True, "residual": True}, "set residual = false"),
    ("lstm", {"differences": True, "lag": 1}, "differences = true needs lag >= 2"),
]


@pytest.mark.parametrize("key,value,expected", BAD, ids=[f"{k}={v!r}" for k, v, _ in BAD])
def test_bad_parameter_gives_clear_error(base_params, key, value, expected):
    with pytest.raises(ConfigError) as info:
        validate_parameters(_set(base_params, key, value))
    msg = str(info.value)
    assert expected in msg
    assert repr(value) in msg or str(value) in msg or isinstance(value, dict)


def test_zip_pairing_is_elementwise(base_params):
    p = _set(base_params, "train_ic.ring", {"enabled": True, "radii": [2.0, 3.0, 4.0, 5.0],
                                            "widths": [0.3, 0.3, 0.6, 0.6], "pairing": "zip",
                                            "n_samples_per_config": 25})
    cfg = validate_parameters(p)
    assert cfg.train_ic.ring.run_count() == 100
    confs = cfg.train_ic.ring.configurations("train_ic.ring")
    assert confs[2] == {"radius": 4.0, "width": 0.6}


def test_legacy_test_prefixed_keys_are_accepted(base_params):
    p = _set(base_params, "test_ic.gaussian", {"enabled": True, "test_positions_x": [5.5],
                                               "test_positions_y": [5.5], "test_variances": [2.25]})
    cfg = validate_parameters(p)
    assert cfg.test_ic.gaussian.positions_x == [5.5]


INTEGRITY = [
    # non-finite numbers anywhere (a shared rule of every block)
    ("sim.T", float("inf"), "sim.T = inf: must be a finite number"),
    ("test_sim.T", float("inf"), "test_sim.T = inf: must be a finite number"),
    ("params.R", float("inf"), "params.R = inf: must be a finite number"),
    ("sim.Lx", float("inf"), "sim.Lx = inf: must be a finite number"),
    ("density.bandwidth", float("nan"), "density.bandwidth = nan: must be a finite number"),
    ("lstm.learning_rate", float("inf"), "lstm.learning_rate = inf"),
    ("train_ic.gaussian.positions_x", [float("nan")], "train_ic.gaussian.positions_x.0 = nan"),
    # booleans never read as numbers
    ("sim.N", True, "sim.N = True: a boolean where a number"),
    ("sim.dt", False, "sim.dt = False: a boolean where a number"),
    ("mvar.lag", True, "mvar.lag = True: a boolean"),
    ("train_ic.gaussian.variances", [True], "train_ic.gaussian.variances = [True]: a boolean"),
    # horizons are whole numbers of steps, never silently cut
    ("test_sim.T", 6.01, "test_sim.T = 6.01 is not a whole number of steps of sim.dt = 0.05"),
    # SLURM options cannot inject lines into the batch script
    ("execution.slurm", {"queue": "short\n#SBATCH --uid=0"}, "execution.slurm.queue = 'short\\n#SBATCH --uid=0': holds a newline"),
    ("execution.slurm", {"account": "me;rm -rf ~"}, "execution.slurm.account = 'me;rm -rf ~': characters [';', '~'] are not allowed"),
]


@pytest.mark.parametrize("key,value,expected", INTEGRITY, ids=[f"{k}={v!r}" for k, v, _ in INTEGRITY])
def test_non_finite_boolean_and_uncut_values_are_refused(test_params, key, value, expected):
    with pytest.raises(ConfigError) as info:
        validate_parameters(_set(test_params, key, value))
    assert expected in str(info.value)


def test_horizon_error_offers_the_two_nearest_whole_step_horizons(test_params):
    with pytest.raises(ConfigError, match=r"use 6 or 6\.05"):
        validate_parameters(_set(test_params, "test_sim.T", 6.01))


def test_booleans_stay_valid_where_booleans_are_wanted(test_params):
    cfg = validate_parameters(_set(test_params, "noise.match_variance", False))
    assert cfg.noise.match_variance is False
    cfg = validate_parameters(_set(test_params, "execution.slurm",
                                   {"job_extra_directives": ["--exclude=node[01-03]", "--mail-type=END,FAIL"]}))
    assert cfg.execution.slurm["job_extra_directives"][0] == "--exclude=node[01-03]"


@pytest.mark.parametrize("name", ["", "..", ".", "../../../somewhere", "a/b", "/abs", "a\\b", "x..y", "-rf", 5, None])
def test_experiment_name_must_be_a_simple_folder_name(name):
    from rom_pipeline.config import validate_experiment_name

    with pytest.raises(ConfigError, match="must be a simple folder name"):
        validate_experiment_name(name)


@pytest.mark.parametrize("name", ["test", "gas_vs", "run-2.b", "A1"])
def test_simple_experiment_names_pass(name):
    from rom_pipeline.config import validate_experiment_name

    assert validate_experiment_name(name) == name
