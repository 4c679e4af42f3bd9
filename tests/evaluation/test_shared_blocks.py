"""Evaluation speed-ups that must not change a number: shared truth blocks, one forward FFT per
ensemble frame, and the compiled scoringrules backend."""
import numpy as np
import pandas as pd
import pytest
import scoringrules as sr

from rom_pipeline.evaluation.protocol import ForecastBlock, _climatology_scores, evaluate_many
from rom_pipeline.evaluation.scores import crps_fair, energy_score_fair
from rom_pipeline.rom.shifts import fourier_shift, fourier_shift_copies
from tests.evaluation.test_lab_ensemble import MeanStateForecaster, config, rigid_blob_run, track_model


class LastTwoMean(MeanStateForecaster):
    """A second, different forecaster with a longer seed: the mean of the last two seed states."""

    name = "last_two_mean"
    lag = 2

    def rollout(self, seed, n_steps):
        return np.repeat(seed[-2:].mean(axis=0, keepdims=True), n_steps, axis=0)


@pytest.fixture(scope="module")
def basis():
    from rom_pipeline.rom.pod import PODBasis

    return PODBasis(fixed_modes=3, pod_energy=1.0, shift_align=True, shift_align_ref="first",
                    shift_method="subpixel").fit([rigid_blob_run().density])


def test_shared_blocks_score_every_forecaster_exactly_as_separate_blocks(basis):
    runs = [rigid_blob_run(T=30), rigid_blob_run(T=26, velocity=np.array([-0.3, 0.2]))]
    runs[1].run_id = "blob_2"
    cfg = config(ensemble_size=5)
    model = track_model([[0.09, 0.0], [0.0, 0.16]])
    blocks = {}
    for forecaster in (MeanStateForecaster(), LastTwoMean()):
        alone, curves_alone, _ = evaluate_many(forecaster, basis, runs, cfg, track_model=model)
        shared, curves_shared, _ = evaluate_many(forecaster, basis, runs, cfg, track_model=model,
                                                 blocks=blocks)
        columns = [c for c in alone.columns if c != "forecast_seconds"]  # wall time of the rollout
        pd.testing.assert_frame_equal(alone[columns], shared[columns], check_exact=True)
        pd.testing.assert_frame_equal(curves_alone, curves_shared, check_exact=True)
        assert shared.loc[shared.shift_mode == "lab_ensemble", "crps_skill_climatology"].notna().all()
    assert set(blocks) == {"blob", "blob_2"}
    # the block prepared for the lag-1 forecaster served the lag-2 one: its climatology was scored once
    block = blocks["blob"]
    again = _climatology_scores(basis, block, cfg)
    for key, value in block.climatology.items():
        np.testing.assert_array_equal(value, again[key])


def test_a_shared_block_still_checks_each_forecasters_seed_length(basis):
    run = rigid_blob_run()
    cfg = config(ensemble_size=2)  # forecast_start 0.6 s = 5 frames
    blocks = {}
    evaluate_many(MeanStateForecaster(), basis, [run], cfg, track_model=track_model(np.eye(2)), blocks=blocks)
    long_seed = LastTwoMean()
    long_seed.lag = 6
    with pytest.raises(ValueError, match="needs a seed of lag = 6 frames"):
        evaluate_many(long_seed, basis, [run], cfg, track_model=track_model(np.eye(2)), blocks=blocks)


def test_the_climatology_reference_does_not_depend_on_the_number_of_modes(basis):
    run = rigid_blob_run()
    cfg = config(ensemble_size=4)
    block = ForecastBlock.prepare(basis, run, cfg, seed_length=1, track_model=track_model(np.eye(2)))
    arrays = basis.to_arrays()
    truncated = type(basis).from_arrays({**arrays, "n_modes": np.array(1), "modes": arrays["modes"][:, :1]})
    assert truncated.n_modes_ == 1
    one_mode = _climatology_scores(truncated, block, cfg)
    for key, value in block.climatology.items():
        np.testing.assert_array_equal(value, one_mode[key])


def test_fourier_shift_copies_equals_fourier_shift_of_the_stacked_copies():
    rng = np.random.default_rng(3)
    frames = rng.random((4, 10, 12))
    shifts = rng.uniform(-6, 6, size=(3, 4, 2))
    stacked = np.concatenate([frames] * 3)
    expected = fourier_shift(stacked, shifts.reshape(12, 2)).reshape(3, 4, 10, 12)
    np.testing.assert_array_equal(fourier_shift_copies(frames, shifts), expected)
    with pytest.raises(ValueError, match=r"shifts must have shape \(M, 4, 2\)"):
        fourier_shift_copies(frames, shifts[:, :3])


def test_compiled_scores_agree_with_scoringrules_numpy_backend():
    rng = np.random.default_rng(5)
    truth = rng.random((3, 6, 7))
    members = truth[None] + 0.2 * rng.standard_normal((9, 3, 6, 7))
    numpy_crps = sr.crps_ensemble(truth, np.moveaxis(members, 0, -1), estimator="fair", backend="numpy")
    np.testing.assert_allclose(crps_fair(truth, members), numpy_crps, rtol=1e-13, atol=0)
    numpy_es = sr.es_ensemble(truth.reshape(3, -1), np.moveaxis(members.reshape(9, 3, -1), 0, 1),
                              estimator="fair", backend="numpy")
    np.testing.assert_allclose(energy_score_fair(truth, members), numpy_es, rtol=1e-13, atol=0)
