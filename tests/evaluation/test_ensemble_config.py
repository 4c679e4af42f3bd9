"""Config keys of sub-pixel tracks and the lab-frame ensemble fail early with key, value and fix."""
import pytest

from rom_pipeline.config import ConfigError, validate_parameters
from tests.conftest import with_overrides


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"rom.shift_method": "bilinear"}, r"rom.shift_method[\s\S]*'integer' or 'subpixel'"),
        ({"eval.ensemble_size": 0}, r"eval.ensemble_size[\s\S]*greater than or equal to 1"),
        ({"eval.track_order": 0}, r"eval.track_order"),
        ({"eval.track_method": "centroid"}, r"eval.track_method[\s\S]*'alignment' or 'phase'"),
        ({"eval.track_conditioning": "knn"}, r"eval.track_conditioning[\s\S]*'none', 'analogs' or 'scale'"),
        ({"eval.shift_modes": ["oracle", "lab_frame"]}, r"eval.shift_modes"),
        ({"rom.shift_align": False, "eval.shift_modes": ["oracle", "lab_ensemble"]},
         "without alignment the forecast already lives in the lab frame"),
        ({"eval.ensemble_size": 1, "eval.ensemble_blend": "heldout", "eval.blend_max_spread_skill": 1.0},
         r"eval.blend_max_spread_skill = 1.0 caps[\s\S]*eval.ensemble_size >= 2 \(it is 1\)"),
        ({"eval.blend_max_spread_skill": 0.0}, r"eval.blend_max_spread_skill[\s\S]*greater than 0"),
        ({"eval.track_order": 5, "eval.forecast_start": 0.6},
         r"eval.track_order = 5 needs 6 conditioning frames but eval.forecast_start = 0.6 s gives 5"),
    ],
)
def test_bad_ensemble_and_shift_keys_are_refused(base_params, overrides, expected):
    with pytest.raises(ConfigError, match=expected):
        validate_parameters(with_overrides(base_params, **overrides))


def test_defaults(base_params):
    cfg = validate_parameters(base_params)
    assert cfg.rom.shift_method in ("integer", "subpixel")
    assert "lab_ensemble" in cfg.eval.shift_modes
    assert (cfg.eval.ensemble_size, cfg.eval.track_order, cfg.eval.track_method) == (20, 4, "phase")
    assert cfg.eval.track_conditioning == "scale"
