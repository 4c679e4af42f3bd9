"""The lab_ensemble shift mode of the evaluation protocol (no future information)."""
import numpy as np
import pytest

from rom_pipeline.evaluation.protocol import (
    ENSEMBLE_SCORES,
    EvaluationConfig,
    ForecastBlock,
    TestRun,
    evaluate_forecaster,
)
from rom_pipeline.evaluation.track import TrackModel
from rom_pipeline.rom.pod import PODBasis

DT = 0.12
SHAPE = (16, 24)
VELOCITY = np.array([0.15, 0.4])  # cells per frame: a sub-pixel track


def rigid_blob_run(T=30, velocity=VELOCITY):
    ny, nx = SHAPE
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    frames = []
    for k in range(T):
        cy, cx = 8 + velocity[0] * k, 6 + velocity[1] * k
        dy = (yy - cy + ny / 2) % ny - ny / 2
        dx = (xx - cx + nx / 2) % nx - nx / 2
        frames.append(np.exp(-(dy**2 + dx**2) / (2 * 2.2**2)) + 0.01)
    return TestRun(run_id="blob", family="gaussian", times=DT * np.arange(T), density=np.array(frames),
                   positions=None, velocities=None, Lx=24.0, Ly=16.0, periodic=True, cell_area=1.0)


class MeanStateForecaster:
    """Holds the (co-moving) latent state of the last seed frame: exact for a rigid blob."""

    name = "hold_state"
    lag = 1

    def predict_next(self, windows):
        return windows[:, -1]

    def rollout(self, seed, n_steps):
        return np.repeat(seed[-1:], n_steps, axis=0)


def track_model(noise_cov):
    """The blob's own process: constant increments -VELOCITY (alignment shifts move against it)."""
    model = TrackModel(order=1)
    model.intercept_ = -VELOCITY.copy()
    model.coefs_ = np.zeros((1, 2, 2))
    model.noise_cov_ = np.asarray(noise_cov, dtype=float)
    model.grid_shape_ = SHAPE
    model.n_obs_ = 1
    return model


@pytest.fixture(scope="module")
def basis():
    run = rigid_blob_run()
    return PODBasis(fixed_modes=2, pod_energy=1.0, shift_align=True, shift_align_ref="first",
                    shift_method="subpixel").fit([run.density])


def config(**kw):
    return EvaluationConfig(forecast_start=0.6, shift_modes=("oracle", "hold", "lab_ensemble"),
                            mass_postprocess="scale", **kw)


def rows_by_mode(result):
    return {row["shift_mode"]: row for row in result.metrics}


def test_a_noise_free_track_model_reproduces_the_true_track(basis):
    run = rigid_blob_run()
    result = evaluate_forecaster(MeanStateForecaster(), basis, run, config(ensemble_size=3),
                                 track_model=track_model(np.zeros((2, 2))))
    rows = rows_by_mode(result)
    lab, oracle, hold = rows["lab_ensemble"], rows["oracle"], rows["hold"]
    assert oracle["r2_pooled"] > 0.999
    assert lab["r2_pooled"] == pytest.approx(oracle["r2_pooled"], abs=1e-6)
    assert hold["r2_pooled"] < 0.5  # the blob leaves its seed position
    assert lab["spread_skill"] == pytest.approx(0.0, abs=1e-9)
    assert lab["crps_skill_hold"] > 0.9 and lab["crps_skill_climatology"] > 0.9
    assert np.isnan(oracle.get("crps", np.nan))
    curve = result.r2_vs_time
    assert curve.loc[curve.shift_mode == "lab_ensemble", "crps"].notna().all()
    assert curve.loc[curve.shift_mode == "oracle", "crps"].isna().all()
    # every member is the truth up to the POD error: CRPS = mean absolute error of the oracle lift
    lab_curve = curve[curve.shift_mode == "lab_ensemble"]
    assert np.all(lab_curve["crps"] < 1e-3)


def test_track_uncertainty_blurs_the_mean_and_is_scored_reproducibly(basis):
    run = rigid_blob_run()
    model = track_model([[0.09, 0.0], [0.0, 0.16]])
    first = evaluate_forecaster(MeanStateForecaster(), basis, run, config(ensemble_size=16, ensemble_seed=4),
                                track_model=model)
    again = evaluate_forecaster(MeanStateForecaster(), basis, run, config(ensemble_size=16, ensemble_seed=4),
                                track_model=model)
    lab = rows_by_mode(first)["lab_ensemble"]
    for key in (*ENSEMBLE_SCORES, "r2_pooled"):
        assert lab[key] == rows_by_mode(again)["lab_ensemble"][key]
    assert 0.0 < lab["r2_pooled"] < rows_by_mode(first)["oracle"]["r2_pooled"]
    assert lab["crps_skill_climatology"] > 0.3 and lab["crps_skill_hold"] > 0.3
    # the ensemble is calibrated: the model that generated the spread is the truth's track law
    # only in distribution, so just require a sane ratio here
    assert 0.2 < lab["spread_skill"] < 5.0
    # the block holds the exact displacement law: mean = last shift - h v, covariance = h Sigma
    block = ForecastBlock.prepare(basis, run, config(ensemble_size=16), seed_length=1, track_model=model)
    h = np.arange(1, block.n_forecast + 1)
    np.testing.assert_allclose(block.track_mean, block.true_shifts[block.k0 - 1] - h[:, None] * VELOCITY, atol=1e-12)
    np.testing.assert_allclose(block.track_cov[:, 1, 1], 0.16 * h, atol=1e-12)
    assert block.member_shifts.shape == (16, block.n_forecast, 2)


def test_a_phase_track_model_places_the_forecast_shape_on_the_swarm_centre(basis):
    """eval.track_method: phase. The blob's phase track moves WITH it (+VELOCITY per frame); a
    noise-free model of it reproduces the true track, and every member's placed shape has its centre
    on that member's sampled track."""
    from rom_pipeline.evaluation.track import lab_frame_members, phase_positions, phase_track

    run = rigid_blob_run()
    model = track_model(np.zeros((2, 2)))
    model.intercept_ = VELOCITY.copy()
    cfg = config(ensemble_size=3, track_method="phase")
    rows = rows_by_mode(evaluate_forecaster(MeanStateForecaster(), basis, run, cfg, track_model=model))
    assert rows["lab_ensemble"]["r2_pooled"] == pytest.approx(rows["oracle"]["r2_pooled"], abs=1e-6)
    assert rows["oracle"]["r2_pooled"] > 0.999
    block = ForecastBlock.prepare(basis, run, cfg, seed_length=1, track_model=model)
    assert block.track_method == "phase"
    seed_track = phase_track(basis, block.latent[: block.k0], block.true_shifts[: block.k0])
    h = np.arange(1, block.n_forecast + 1)
    np.testing.assert_allclose(block.track_mean, seed_track[-1] + h[:, None] * VELOCITY, atol=1e-12)
    # the blob centre is (8, 6) + k VELOCITY: the phase track is it (a symmetric wrapped blob)
    n = np.array(SHAPE, dtype=float)
    centre = [8, 6] + (block.k0 - 1 + h[:, None]) * VELOCITY
    np.testing.assert_allclose((block.track_mean - centre + n / 2) % n - n / 2, 0.0, atol=1e-3)
    shape = basis.lift(np.repeat(block.latent[block.k0 - 1:block.k0], block.n_forecast, axis=0), shifts=None)
    members = block.placement(shape)[2]
    for m in range(members.shape[0]):
        placed = lab_frame_members(shape, members[m:m + 1])[0]
        np.testing.assert_allclose((phase_positions(placed) - block.member_shifts[m] + n / 2) % n - n / 2, 0.0,
                                   atol=1e-9)
    # the alignment method on the same run keeps its own (alignment-shift) track
    assert ForecastBlock.prepare(basis, run, config(ensemble_size=3), seed_length=1,
                                 track_model=track_model(np.zeros((2, 2)))).track_method == "alignment"


def test_the_block_asks_the_track_law_for_the_seed_concentration(basis):
    """The covariate that picks the empirical law's analogs is the concentration of the last seed
    frame's reconstruction, passed to both the mean law and the members."""
    from rom_pipeline.evaluation.track import phase_concentration

    seen = []

    class Recording:
        def __init__(self, model):
            self.model = model

        def displacement_law(self, observed, n, covariate=None):
            seen.append(("law", covariate))
            return self.model.displacement_law(observed, n)

        def sample_displacements(self, observed, n, m, seed, covariate=None):
            seen.append(("members", covariate))
            return self.model.sample_displacements(observed, n, m, seed)

    run = rigid_blob_run()
    block = ForecastBlock.prepare(basis, run, config(ensemble_size=3), seed_length=1,
                                  track_model=Recording(track_model(np.zeros((2, 2)))))
    expected = phase_concentration(basis.lift(block.latent[block.k0 - 1:block.k0], shifts=None))[0]
    assert [kind for kind, _ in seen] == ["law", "members"]
    assert all(c == pytest.approx(expected, abs=1e-12) for _, c in seen)
    assert 0.3 < expected < 1.0  # a blob of width 2.2 cells on a 16 x 24 grid


def test_bad_input_is_refused_before_any_work(basis):
    run = rigid_blob_run()
    with pytest.raises(ValueError, match="eval.ensemble_size is 0"):
        config(ensemble_size=0)
    with pytest.raises(ValueError, match="eval.shift_modes is"):
        EvaluationConfig(forecast_start=0.6, shift_modes=("lab_frame",))
    with pytest.raises(ValueError, match="needs a track model"):
        evaluate_forecaster(MeanStateForecaster(), basis, run, config())
    unaligned = PODBasis(fixed_modes=2).fit([run.density])
    with pytest.raises(ValueError, match="without alignment the forecast already lives in the lab frame"):
        evaluate_forecaster(MeanStateForecaster(), unaligned, run, config(), track_model=track_model(np.eye(2)))


def test_ensemble_scores_reach_summary_json_and_mlflow_metrics():
    import json

    import pandas as pd

    from rom_pipeline.evaluation.plots_skill import skill_by_lead
    from rom_pipeline.evaluation.report import summary_dict
    from rom_pipeline.framework.tracking import summary_metrics

    rng = np.random.default_rng(2)
    lead = np.arange(6) * 1.0  # frames at 0..5 s, windows [0, 2), [2, end]
    curves, results = [], []
    for run in ("a", "b"):
        frame = pd.DataFrame({
            "model": "MVAR", "run_id": run, "shift_mode": "lab_ensemble", "lead_time": lead, "r2": rng.random(6),
            **{c: rng.random(6) + 0.5 for c in ("crps", "crps_climatology", "crps_hold", "energy",
                                                 "energy_climatology", "energy_hold", "ensemble_variance",
                                                 "ensemble_mean_mse")},
        })
        curves.append(frame)
        for mode in ("oracle", "lab_ensemble"):
            ens = mode == "lab_ensemble"
            results.append({"model": "MVAR", "run_id": run, "shift_mode": mode, "diverged": False,
                            "r2_pooled": rng.random(),
                            "crps_skill_climatology": rng.random() if ens else np.nan,
                            "spread_skill": rng.random() if ens else np.nan})
    curves, results = pd.concat(curves, ignore_index=True), pd.DataFrame(results)
    table = skill_by_lead(curves, (0.0, 2.0), n_members=20)
    summary = json.loads(json.dumps(summary_dict(results, None, skill_by_lead=table)))  # JSON-ready
    block = summary["models"]["MVAR"]
    early = curves[curves.lead_time < 2]
    late = curves[curves.lead_time >= 2]
    expected = 1 - early.crps.sum() / early.crps_climatology.sum()
    assert block["crps_skill_climatology_lead_mean"]["lab_ensemble"]["0_2"] == pytest.approx(expected, rel=1e-12)
    expected = 1 - late.energy.sum() / late.energy_hold.sum()
    assert block["energy_skill_hold_lead_mean"]["lab_ensemble"]["2_end"] == pytest.approx(expected, rel=1e-12)
    spread = np.sqrt(21 / 20 * late.ensemble_variance.mean()) / np.sqrt(late.ensemble_mean_mse.mean())
    assert block["spread_skill_lead_mean"]["lab_ensemble"]["2_end"] == pytest.approx(spread, rel=1e-12)
    whole = results[results.shift_mode == "lab_ensemble"].crps_skill_climatology.mean()
    assert block["crps_skill_climatology_mean"] == {"oracle": None, "lab_ensemble": pytest.approx(whole)}
    metrics = summary_metrics(summary)
    assert metrics["MVAR.crps_skill_climatology_lead_mean.lab_ensemble.0_2"] == pytest.approx(
        block["crps_skill_climatology_lead_mean"]["lab_ensemble"]["0_2"])
    assert metrics["MVAR.spread_skill_mean.lab_ensemble"] == pytest.approx(
        results[results.shift_mode == "lab_ensemble"].spread_skill.mean())
    assert "MVAR.spread_skill_mean.oracle" not in metrics  # no ensemble in the other modes
    # no ensemble table (lab_ensemble not scored): no lead entries
    assert "crps_skill_climatology_lead_mean" not in summary_dict(results, None)["models"]["MVAR"]
