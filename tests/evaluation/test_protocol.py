"""The evaluation protocol on small synthetic runs with oracle, persistence and exploding
forecasters whose scores are known independently of the metrics code."""
import warnings

import numpy as np
import pandas as pd
import pytest

from rom_pipeline.evaluation.protocol import (
    EvaluationConfig,
    TestRun,
    evaluate_forecaster,
    evaluate_many,
)
from rom_pipeline.rom.baselines import PersistenceForecaster
from rom_pipeline.rom.forecaster import LatentForecaster
from rom_pipeline.rom.pod import PODBasis

DT = 0.12


def make_pod(frames, n_modes=None, shift_align=False):
    """Exact POD of one run; without n_modes it keeps the full numerical rank."""
    pod = PODBasis(fixed_modes=n_modes, pod_energy=1.0, shift_align=shift_align, shift_align_ref="first")
    return pod.fit([frames.copy()])  # a copy: the test compares against the untouched frames


class OracleForecaster:
    """Knows the true latent trajectory and returns its future exactly."""

    name = "oracle"

    def __init__(self, y_true, lag):
        self.y_true, self.lag = y_true, lag

    def _index_after(self, window):
        for j in range(len(self.y_true) - self.lag + 1):
            if np.allclose(self.y_true[j:j + self.lag], window, rtol=0, atol=1e-12):
                return j + self.lag
        raise AssertionError("window not on the true trajectory")

    def predict_next(self, windows):
        return np.stack([self.y_true[self._index_after(w)] for w in windows])

    def rollout(self, seed, n_steps):
        k = self._index_after(seed)
        return self.y_true[k:k + n_steps].copy()


class ExplodingForecaster:
    name = "exploding"
    lag = 2

    def predict_next(self, windows):
        return 10.0 * windows[:, -1]

    def rollout(self, seed, n_steps):
        return seed[-1] * 10.0 ** np.arange(1, n_steps + 1)[:, None]


def random_run(T=14, shape=(5, 6), seed=0, t0=2.0, **kw):
    rng = np.random.default_rng(seed)
    density = rng.gamma(3.0, 1.0, size=(T,) + shape)
    fields = dict(positions=None, velocities=None, Lx=6.0, Ly=5.0, periodic=True, cell_area=1.0)
    fields.update(kw)
    return TestRun(run_id=f"run{seed}", family="gaussian", times=t0 + DT * np.arange(T),
                   density=density, **fields)


def translating_blob_run(T=16, shape=(16, 32)):
    """A periodic Gaussian blob moving +1 cell per frame in x (crossing the seam), breathing."""
    ny, nx = shape
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    frames = []
    for k in range(T):
        dx = (xx - (26 + k) + nx / 2) % nx - nx / 2
        dy = (yy - 8 + ny / 2) % ny - ny / 2
        width = 2.0 + 0.5 * np.sin(k)
        frames.append(np.exp(-(dx**2 + dy**2) / (2 * width**2)) + 0.01)
    return TestRun(run_id="blob", family="gaussian", times=DT * np.arange(T), density=np.array(frames),
                   positions=None, velocities=None, Lx=32.0, Ly=16.0, periodic=True, cell_area=1.0)


def true_latent(pod, density):
    shifts = pod.estimate_shifts(density) if pod.shift_align else None
    return pod.restrict(density, shifts=shifts)


def test_perfect_forecaster_reaches_pod_ceiling_and_one_with_full_rank():
    run = random_run()
    for n_modes in (3, None):
        pod = make_pod(run.density, n_modes=n_modes)
        oracle = OracleForecaster(true_latent(pod, run.density), lag=5)
        res = evaluate_forecaster(oracle, pod, run, EvaluationConfig(forecast_start=0.6))
        m = res.metrics[0]
        assert m["shift_mode"] == "none" and m["model"] == "oracle" and m["n_forecast_frames"] == 9
        assert m["r2_pooled"] == pytest.approx(m["r2_pod_ceiling"], abs=1e-12)
        assert m["r2_one_step"] == pytest.approx(m["r2_pod_ceiling"], abs=1e-12)
        assert m["r2_latent"] == pytest.approx(1.0, abs=1e-12)
        assert not m["diverged"]
        if n_modes == 3:
            assert m["r2_pod_ceiling"] < 0.9
        else:
            assert m["r2_pod_ceiling"] == pytest.approx(1.0, abs=1e-12)
            assert m["r2_pooled"] == pytest.approx(1.0, abs=1e-12)
            assert m["rel_l2_end"] == pytest.approx(0.0, abs=1e-12)
            assert m["valid_time"] == pytest.approx(8 * DT)
            np.testing.assert_allclose(res.prediction, run.density[5:], rtol=1e-5)


def test_persistence_scores_match_hand_computation():
    run = random_run(T=12)
    pod = make_pod(run.density)  # full rank: lift(restrict(ρ)) = ρ
    cfg = EvaluationConfig(forecast_start=0.48, valid_r2_threshold=-2.0)  # k0 = 4
    res = evaluate_forecaster(PersistenceForecaster(), pod, run, cfg)
    m = res.metrics[0]
    truth = run.density[4:]
    held = np.broadcast_to(run.density[3], truth.shape)  # persistence repeats the last seed frame
    ss_tot = np.sum((truth - truth.mean()) ** 2)
    assert m["r2_pooled"] == pytest.approx(1 - np.sum((truth - held) ** 2) / ss_tot, abs=1e-12)
    one_step = run.density[3:11]  # teacher forced: predict the previous true frame
    assert m["r2_one_step"] == pytest.approx(1 - np.sum((truth - one_step) ** 2) / ss_tot, abs=1e-12)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((truth - held) ** 2)), abs=1e-12)
    masses = truth.sum(axis=(1, 2))
    assert m["mass_violation_max"] == pytest.approx(
        np.max(np.abs(run.density[3].sum() - masses) / masses), abs=1e-12)
    r2_t = [1 - np.sum((f - run.density[3]) ** 2) / np.sum((f - f.mean()) ** 2) for f in truth]
    np.testing.assert_allclose(res.r2_vs_time["r2"], r2_t, atol=1e-12)
    assert m["r2_snapshot_mean"] == pytest.approx(np.mean(r2_t), abs=1e-12)
    first_bad = next((k for k, v in enumerate(r2_t) if v < -2.0), len(r2_t) - 1)
    assert 0 < first_bad < len(r2_t) - 1  # a case where the threshold is crossed mid-forecast
    assert m["valid_time"] == pytest.approx(first_bad * DT)
    rel_l2 = [np.linalg.norm(f - run.density[3]) / np.linalg.norm(f) for f in truth]
    assert m["rel_l2_mean"] == pytest.approx(np.mean(rel_l2), abs=1e-12)
    assert m["rel_l2_end"] == pytest.approx(rel_l2[-1], abs=1e-12)
    np.testing.assert_allclose(res.forecast_times, 2.0 + DT * np.arange(4, 12))
    np.testing.assert_allclose(res.r2_vs_time["lead_time"], DT * np.arange(8), atol=1e-12)
    assert res.prediction.dtype == np.float32 and res.prediction.shape == (8, 5, 6)


def test_clamp_and_scale_restore_last_conditioning_mass():
    run = random_run(T=12, seed=4)
    pod = make_pod(run.density, n_modes=2)
    oracle = OracleForecaster(true_latent(pod, run.density), lag=3)
    cfg = EvaluationConfig(forecast_start=0.48, clamp_mode="clamp", mass_postprocess="scale")
    res = evaluate_forecaster(oracle, pod, run, cfg)
    m0 = run.density[3].sum()
    np.testing.assert_allclose(res.prediction.astype(np.float64).sum(axis=(1, 2)), m0, rtol=1e-6)
    masses = run.density[4:].sum(axis=(1, 2))
    assert res.metrics[0]["mass_violation_max"] == pytest.approx(np.max(np.abs(m0 - masses) / masses))
    assert res.metrics[0]["negativity_fraction"] == 0.0


def test_exploding_forecaster_is_reported_diverged_without_raising():
    run = random_run(T=400, shape=(3, 4))
    pod = make_pod(run.density)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning may escape either
        res = evaluate_forecaster(ExplodingForecaster(), pod, run, EvaluationConfig(forecast_start=0.24))
    m = res.metrics[0]
    assert m["diverged"] is True
    assert np.isnan(m["r2_pooled"]) and np.isnan(m["valid_time"]) and np.isnan(m["rmse"])
    assert m["r2_pod_ceiling"] == pytest.approx(1.0, abs=1e-10)  # independent of the rollout
    assert np.isnan(res.prediction).all()
    assert res.r2_vs_time["r2"].isna().all()
    # finite but huge: 12 steps reach 1e12 times the seed, beyond divergence_factor = 1e6
    short = random_run(T=14, shape=(3, 4))
    res = evaluate_forecaster(ExplodingForecaster(), make_pod(short.density), short,
                              EvaluationConfig(forecast_start=0.24))
    assert res.metrics[0]["diverged"] is True and np.isnan(res.metrics[0]["r2_pooled"])
    lenient = EvaluationConfig(forecast_start=0.24, divergence_factor=1e15)
    res = evaluate_forecaster(ExplodingForecaster(), make_pod(short.density), short, lenient)
    assert res.metrics[0]["diverged"] is False and res.metrics[0]["r2_pooled"] < -1e10


def test_forecast_start_shorter_than_lag_raises():
    run = random_run()
    pod = make_pod(run.density)
    oracle = OracleForecaster(true_latent(pod, run.density), lag=5)
    with pytest.raises(ValueError, match=r"eval\.forecast_start = 0\.36 s.*>= 0\.6 s"):
        evaluate_forecaster(oracle, pod, run, EvaluationConfig(forecast_start=0.36))
    with pytest.raises(ValueError, match=r"eval\.forecast_start.*no forecast frame"):
        evaluate_forecaster(oracle, pod, run, EvaluationConfig(forecast_start=14 * DT))


def test_shift_modes_oracle_beats_hold_and_extrapolation_tracks_constant_velocity():
    run = translating_blob_run(T=22)  # the alignment shift passes -16 = +16 (mod 32): a wrap
    pod = make_pod(run.density, shift_align=True)
    shifts = pod.estimate_shifts(run.density)
    # the blob moves +1 cell per frame in x, so its alignment shift moves -1 per frame (mod 32)
    np.testing.assert_array_equal(np.diff(shifts[:, 1]) % 32, 31)
    oracle = OracleForecaster(true_latent(pod, run.density), lag=3)
    cfg = EvaluationConfig(forecast_start=0.6, shift_modes=("oracle", "hold", "extrapolate"))
    res = evaluate_forecaster(oracle, pod, run, cfg)
    by_mode = {m["shift_mode"]: m for m in res.metrics}
    assert by_mode["oracle"]["r2_pooled"] == pytest.approx(1.0, abs=1e-10)
    assert by_mode["oracle"]["r2_pooled"] == pytest.approx(by_mode["oracle"]["r2_pod_ceiling"], abs=1e-12)
    assert by_mode["extrapolate"]["r2_pooled"] == pytest.approx(1.0, abs=1e-10)
    assert by_mode["hold"]["r2_pooled"] < 0.0
    # hold puts frame k's true shape at frame 4's position, i.e. frame k rolled back k-4 cells
    # (to the POD's reconstruction accuracy, ~1e-7 here: modes below its rank cut-off are dropped)
    hold_r2 = res.r2_vs_time.query("shift_mode == 'hold'")["r2"].to_numpy()
    for i, f in enumerate(run.density[5:]):
        held = np.roll(f, -(i + 1), axis=1)
        expected = 1 - np.sum((f - held) ** 2) / np.sum((f - f.mean()) ** 2)
        assert hold_r2[i] == pytest.approx(expected, abs=1e-6)
    assert len(res.r2_vs_time) == 3 * 17


def test_evaluate_many_tables_and_duplicate_ids():
    runs = [random_run(seed=1), random_run(seed=2)]
    pod = make_pod(np.concatenate([r.density for r in runs]))
    cfg = EvaluationConfig(forecast_start=0.36)
    table, r2_time, results = evaluate_many(PersistenceForecaster(), pod, runs, cfg)
    assert isinstance(table, pd.DataFrame) and list(table["run_id"]) == ["run1", "run2"]
    assert len(r2_time) == 2 * 11 and set(results) == {"run1", "run2"}
    for run in runs:
        truth, held = run.density[3:], run.density[2]
        expected = 1 - np.sum((truth - held) ** 2) / np.sum((truth - truth.mean()) ** 2)
        assert table.set_index("run_id").loc[run.run_id, "r2_pooled"] == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="share run_id 'run1'"):
        evaluate_many(PersistenceForecaster(), pod, [runs[0], runs[0]], cfg)


def test_order_parameters_of_truth_averaged_over_forecast_frames():
    T, N = 10, 4
    ring_angle = np.array([0.0, 0.5, 1.0, 1.5]) * np.pi
    ring_pos = 12.5 + 3.0 * np.stack([np.cos(ring_angle), np.sin(ring_angle)], axis=1)
    ring_vel = np.stack([-np.sin(ring_angle), np.cos(ring_angle)], axis=1)  # rigid rotation
    line_pos = np.stack([np.full(N, 12.5), 12.5 + np.array([-3.0, -1.0, 1.0, 3.0])], axis=1)
    line_vel = np.tile([1.0, 0.0], (N, 1))  # aligned flock, no angular momentum
    is_ring = np.arange(T) % 2 == 0
    pos = np.where(is_ring[:, None, None], ring_pos, line_pos)
    vel = np.where(is_ring[:, None, None], ring_vel, line_vel)
    run = random_run(T=T, positions=pos, velocities=vel, Lx=25.0, Ly=25.0)
    pod = make_pod(run.density)
    res = evaluate_forecaster(PersistenceForecaster(), pod, run, EvaluationConfig(forecast_start=0.36))
    ring_share = is_ring[3:].mean()  # forecast frames 3..9
    m = res.metrics[0]
    assert m["polarisation_mean"] == pytest.approx(1 - ring_share, abs=1e-12)
    assert m["nematic_mean"] == pytest.approx(1 - ring_share, abs=1e-12)
    assert m["milling_mean"] == pytest.approx(ring_share, abs=1e-12)
    np.testing.assert_allclose(res.r2_vs_time["polarisation"], (~is_ring[3:]).astype(float), atol=1e-12)


def test_config_and_run_validation_name_the_key():
    with pytest.raises(ValueError, match="eval.clamp_mode"):
        EvaluationConfig(forecast_start=0.6, clamp_mode="relu")
    with pytest.raises(ValueError, match="eval.shift_modes"):
        EvaluationConfig(forecast_start=0.6, shift_modes=["oracle", "psychic"])
    assert EvaluationConfig(forecast_start=0.6, shift_modes=["hold"]).shift_modes == ("hold",)
    with pytest.raises(ValueError, match="positions and velocities"):
        random_run(positions=np.zeros((14, 3, 2)))


def test_library_persistence_baseline_is_a_forecaster_and_checks_shapes():
    model = PersistenceForecaster()
    assert isinstance(model, LatentForecaster) and model.lag == 1
    seed = np.array([[1.0, -2.0]])
    np.testing.assert_array_equal(model.rollout(seed, 3), np.repeat(seed, 3, axis=0))
    with pytest.raises(ValueError, match="seed_window"):
        model.rollout(np.zeros((2, 2)), 3)
    with pytest.raises(ValueError, match="windows"):
        model.predict_next(np.zeros((4, 2, 2)))
