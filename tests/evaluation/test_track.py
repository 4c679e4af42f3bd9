"""Track model and lab-frame ensemble (evaluation/track.py)."""
import numpy as np
import pytest
from statsmodels.tsa.api import VAR

from rom_pipeline.evaluation.protocol import EvaluationConfig
from rom_pipeline.evaluation.track import (
    TrackModel,
    check_track_method,
    lab_frame_mean,
    lab_frame_members,
    phase_positions,
    phase_track,
    track_increments,
    translated_ensemble_scores,
)

GRID = (40, 48)


def simulate_track(n, c, A, Sigma, seed, start=(0.0, 0.0)):
    """Alignment shifts whose increments follow d_k = c + A d_{k-1} + e_k, wrapped onto the grid."""
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(Sigma)
    d = np.zeros(2)
    s = [np.array(start, dtype=float)]
    for _ in range(n):
        d = c + A @ d + chol @ rng.standard_normal(2)
        s.append(s[-1] + d)
    s = np.array(s)
    n_grid = np.array(GRID, dtype=float)
    return np.mod(s + n_grid / 2, n_grid) - n_grid / 2  # wrapped like estimated shifts


C_TRUE = np.array([0.05, -0.02])
A_TRUE = np.array([[0.6, 0.1], [-0.05, 0.4]])
SIGMA_TRUE = np.array([[0.04, 0.01], [0.01, 0.09]])


def test_increments_take_the_minimal_periodic_image():
    shifts = np.array([[19.5, -23.0], [-19.5, 23.5], [-18.0, 22.0]])
    np.testing.assert_allclose(track_increments(shifts, GRID), [[1.0, -1.5], [1.5, -1.5]])


def test_fit_matches_statsmodels_var_on_one_run():
    track = simulate_track(600, C_TRUE, A_TRUE, SIGMA_TRUE, seed=0, start=(15.0, -20.0))
    inc = track_increments(track, GRID)
    model = TrackModel(order=2).fit([track], GRID)
    oracle = VAR(inc).fit(2, trend="c")
    np.testing.assert_allclose(model.intercept_, oracle.intercept, atol=1e-10)
    np.testing.assert_allclose(model.coefs_, oracle.coefs, atol=1e-10)
    np.testing.assert_allclose(model.noise_cov_, oracle.sigma_u, atol=1e-10)


def test_pooled_fit_recovers_the_generating_process():
    tracks = [simulate_track(400, C_TRUE, A_TRUE, SIGMA_TRUE, seed=s) for s in range(10)]
    model = TrackModel(order=1).fit(tracks, GRID)
    np.testing.assert_allclose(model.coefs_[0], A_TRUE, atol=0.05)
    np.testing.assert_allclose(model.noise_cov_, SIGMA_TRUE, atol=0.01)
    assert model.n_obs_ == 10 * 399


def test_displacement_law_is_exact_for_a_random_walk_and_matches_its_samples():
    model = TrackModel(order=1)
    model.intercept_ = np.array([0.3, -0.1])
    model.coefs_ = np.zeros((1, 2, 2))
    model.noise_cov_ = SIGMA_TRUE.copy()
    model.grid_shape_ = GRID
    model.n_obs_ = 1
    cond = np.array([[0.0, 0.0], [1.0, 1.0]])
    mean, cov = model.displacement_law(cond, 5)
    h = np.arange(1, 6)
    np.testing.assert_allclose(mean, h[:, None] * model.intercept_[None], atol=1e-14)
    np.testing.assert_allclose(cov, h[:, None, None] * SIGMA_TRUE[None], atol=1e-14)
    # a persistent process: the exact law against 40 000 sampled paths
    model.coefs_ = A_TRUE[None].copy()
    mean, cov = model.displacement_law(cond, 6)
    paths = model.sample_displacements(cond, 6, 40000, seed=3)
    np.testing.assert_allclose(paths.mean(axis=0), mean, atol=0.03)
    emp_cov = np.einsum("mhi,mhj->hij", paths - paths.mean(0), paths - paths.mean(0)) / (len(paths) - 1)
    np.testing.assert_allclose(emp_cov, cov, rtol=0.05, atol=0.005)
    assert mean[0] == pytest.approx(model.intercept_ + A_TRUE @ np.array([1.0, 1.0]))
    # seeded: reproducible
    np.testing.assert_array_equal(model.sample_displacements(cond, 6, 3, seed=7), model.sample_displacements(cond, 6, 3, seed=7))


def gaussian_density(centre, cov, grid=GRID):
    """Normalised anisotropic Gaussian, summed over periodic images, sampled on the grid."""
    ny, nx = grid
    y = np.arange(ny)[:, None, None, None] + ny * np.arange(-1, 2)[None, None, :, None]
    x = np.arange(nx)[None, :, None, None] + nx * np.arange(-1, 2)[None, None, None, :]
    dy, dx = y - centre[0], x - centre[1]
    inv = np.linalg.inv(cov)
    q = inv[0, 0] * dy**2 + 2 * inv[0, 1] * dy * dx + inv[1, 1] * dx**2
    return (np.exp(-q / 2) / (2 * np.pi * np.sqrt(np.linalg.det(cov)))).sum(axis=(2, 3))


def test_lab_frame_mean_is_the_exact_gaussian_convolution():
    shape = gaussian_density((20.0, 24.0), 2.5**2 * np.eye(2))[None]
    mu = np.array([[3.3, -5.6]])
    C = np.array([[[1.5, 0.4], [0.4, 0.8]]])
    mean = lab_frame_mean(shape, mu, C)
    # placing by -s: the blob moves to centre - mu and its covariance grows by C
    expected = gaussian_density((20.0 - 3.3, 24.0 + 5.6), 2.5**2 * np.eye(2) + C[0])
    assert np.max(np.abs(mean - expected[None])) < 1e-8 * expected.max()
    assert mean.sum() == pytest.approx(shape.sum(), rel=1e-13)
    # zero covariance: the mean is the shape translated by -mu
    members = lab_frame_members(shape, mu[None])
    np.testing.assert_allclose(lab_frame_mean(shape, mu, np.zeros((1, 2, 2))), members[0], atol=1e-13)


def test_lab_frame_mean_is_the_limit_of_the_members():
    shape = gaussian_density((10.0, 30.0), np.array([[4.0, 1.0], [1.0, 6.0]]))[None].repeat(2, axis=0)
    rng = np.random.default_rng(5)
    mu = np.array([[1.0, 2.0], [-3.0, 0.5]])
    C = np.array([[[2.0, 0.3], [0.3, 1.0]], [[0.5, 0.0], [0.0, 3.0]]])
    draws = mu[None] + np.einsum("hij,mhj->mhi", np.linalg.cholesky(C), rng.standard_normal((4000, 2, 2)))
    members = lab_frame_members(shape, draws)
    np.testing.assert_allclose(members.sum(axis=(2, 3)), shape.sum(axis=(1, 2))[None].repeat(4000, 0), rtol=1e-12)
    mean = lab_frame_mean(shape, mu, C)
    assert np.max(np.abs(members.mean(axis=0) - mean)) < 0.03 * mean.max()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="eval.track_order must be a positive integer"):
        TrackModel(order=0)
    model = TrackModel(order=3).fit([simulate_track(50, C_TRUE, A_TRUE, SIGMA_TRUE, seed=1)], GRID)
    with pytest.raises(ValueError, match="needs 4 conditioning shifts.*eval.forecast_start"):
        model.displacement_law(np.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match="eval.ensemble_size must be an integer >= 1, got 0"):
        model.sample_displacements(np.zeros((5, 2)), 4, 0, seed=0)
    with pytest.raises(ValueError, match="lower eval.track_order"):
        TrackModel(order=2).fit([np.zeros((4, 2))], GRID)
    rebuilt = TrackModel.from_arrays(model.to_arrays())
    np.testing.assert_array_equal(rebuilt.coefs_, model.coefs_)


def test_translated_ensemble_scores_equal_the_scores_of_the_full_ensemble():
    from rom_pipeline.evaluation.scores import frame_scores

    rng = np.random.default_rng(9)
    shape = rng.random((7, 8, 10))
    truth = rng.random((7, 8, 10))
    shifts = rng.normal(scale=3.0, size=(4, 7, 2))
    double = lambda x: 2.0 * x  # noqa: E731
    chunked = translated_ensemble_scores(truth, shape, shifts, postprocess=double, chunk=3)
    full = frame_scores(truth, 2.0 * lab_frame_members(shape, shifts))
    for key in ("crps", "energy", "mse_mean", "variance"):
        np.testing.assert_allclose(chunked[key], full[key], rtol=1e-12)
    # one shape for every frame
    one = translated_ensemble_scores(truth, shape[0], shifts, chunk=5)
    np.testing.assert_allclose(one["crps"], frame_scores(truth, lab_frame_members(np.repeat(shape[:1], 7, 0), shifts))["crps"], rtol=1e-12)


# ---------------------------------------------------------------- held-out calibration
def wrap(x, grid=GRID):
    n = np.asarray(grid, dtype=float)
    return np.mod(x + n / 2, n) - n / 2


def test_wrapped_lead_variance_recovers_a_wrapped_normal_and_the_uniform_limit():
    from rom_pipeline.evaluation.track import wrapped_lead_variance

    rng = np.random.default_rng(11)
    sigma2 = np.array([[1.0, 4.0], [9.0, 16.0], [30.0, 60.0]])  # (H, 2); 60 > (48/2)^2/12-ish: wraps
    errors = wrap(np.sqrt(sigma2)[None] * rng.standard_normal((20000, 3, 2)))
    errors[:3000, 2] = np.nan  # a lead with fewer runs
    v = wrapped_lead_variance(errors, GRID)
    np.testing.assert_allclose(v, sigma2, rtol=0.06)
    # uniform errors carry no information: the uniform limit n^2, and v never decreases with the lead
    uniform = rng.uniform(-0.5, 0.5, size=(400, 2, 2)) * np.array(GRID)
    v2 = wrapped_lead_variance(np.concatenate([errors[3000:3400, :1], uniform], axis=1), GRID)
    np.testing.assert_allclose(v2[1:], np.array(GRID, dtype=float)[None] ** 2 * np.ones((2, 1)))
    assert np.all(np.diff(v2, axis=0) >= 0)


def drifting_tracks(n_runs, T, seed):
    """Runs with a random constant velocity each (sd 0.8 cells/frame) plus white jitter: the
    displacement variance grows like h^2, which a pooled VAR on increments cannot capture."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_runs):
        v = rng.normal(scale=0.8, size=2)
        s = np.cumsum(v[None] + rng.normal(scale=0.3, size=(T, 2)), axis=0)
        out.append(wrap(s))
    return out


def test_heldout_errors_use_a_model_fitted_without_the_held_out_runs():
    from rom_pipeline.evaluation.track import heldout_displacement_errors

    tracks = drifting_tracks(6, 25, seed=2)
    errors = heldout_displacement_errors(tracks, GRID, order=1, start=4, n_folds=3)
    assert errors.shape == (6, 21, 2)
    # brute force for run 3 (fold 2 = runs 2, 3): fit on runs 0, 1, 4, 5 only
    model = TrackModel(1).fit([tracks[i] for i in (0, 1, 4, 5)], GRID)
    mean, _ = model.displacement_law(tracks[3][:4], 21)
    true = np.cumsum(track_increments(tracks[3][3:], GRID), axis=0)
    np.testing.assert_allclose(errors[3], wrap(true - mean), atol=1e-12)


def test_heldout_calibration_matches_the_displacement_spread_of_new_runs():
    train = drifting_tracks(300, 30, seed=4)
    start = 5
    plain = TrackModel(1).fit(train, GRID, start=start)
    calibrated = TrackModel(1, calibration="heldout").fit(train, GRID, start=start)
    assert plain.lead_variance_ is None and calibrated.lead_variance_.shape == (25, 2)
    np.testing.assert_array_equal(calibrated.coefs_, plain.coefs_)  # same VAR, same mean
    # the spread of fresh runs' displacements about the VAR mean, at leads before wrapping matters
    fresh = drifting_tracks(3000, 30, seed=5)
    err = []
    for s in fresh:
        mean, _ = plain.displacement_law(s[:start], 8)
        err.append(wrap(np.cumsum(track_increments(s[start - 1:start + 8], GRID), axis=0) - mean))
    emp = np.var(np.array(err), axis=0)  # (8, 2)
    _, cov_plain = plain.displacement_law(fresh[0][:start], 8)
    _, cov_cal = calibrated.displacement_law(fresh[0][:start], 8)
    var_cal = np.diagonal(cov_cal, axis1=1, axis2=2)
    var_plain = np.diagonal(cov_plain, axis1=1, axis2=2)
    np.testing.assert_allclose(var_cal[:6], emp[:6], rtol=0.2)
    assert np.all(np.abs(var_plain[3:6] / emp[3:6] - 1) > 0.4)  # the VAR alone is off by > 40 %
    # correlation kept: C' = R C R
    corr = lambda c: c[:, 0, 1] / np.sqrt(c[:, 0, 0] * c[:, 1, 1])  # noqa: E731
    np.testing.assert_allclose(corr(cov_cal), corr(cov_plain), atol=1e-12)
    # members follow the calibrated law (per lead), about the same mean
    paths = calibrated.sample_displacements(fresh[0][:start], 8, 20000, seed=1)
    mean_cal, _ = calibrated.displacement_law(fresh[0][:start], 8)
    np.testing.assert_allclose(paths.mean(axis=0), mean_cal, atol=0.1)
    np.testing.assert_allclose(paths.var(axis=0), var_cal, rtol=0.05)
    # past the calibrated leads the last variance ratio is kept
    _, long_cov = calibrated.displacement_law(fresh[0][:start], 40)
    _, long_plain = plain.displacement_law(fresh[0][:start], 40)
    ratio = np.diagonal(long_cov, axis1=1, axis2=2) / np.diagonal(long_plain, axis1=1, axis2=2)
    np.testing.assert_allclose(ratio[25:], ratio[24][None].repeat(15, 0), rtol=1e-12)
    # round trip
    rebuilt = TrackModel.from_arrays(calibrated.to_arrays())
    np.testing.assert_array_equal(rebuilt.displacement_law(fresh[0][:start], 30)[1],
                                  calibrated.displacement_law(fresh[0][:start], 30)[1])


def test_bad_calibration_input_is_refused():
    with pytest.raises(ValueError, match="eval.track_calibration is 'wide'; use one of"):
        TrackModel(1, calibration="wide")
    with pytest.raises(ValueError, match="needs the forecast start index"):
        TrackModel(1, calibration="heldout").fit(drifting_tracks(4, 20, seed=0), GRID)
    with pytest.raises(ValueError, match="needs 3 conditioning shifts.*start leaves 2"):
        TrackModel(2, calibration="heldout").fit(drifting_tracks(4, 20, seed=0), GRID, start=2)


def test_empirical_law_is_the_var_mean_plus_the_held_out_error_paths():
    from rom_pipeline.evaluation.track import heldout_displacement_errors

    tracks = drifting_tracks(6, 25, seed=5) + [drifting_tracks(1, 12, seed=6)[0]]  # one short run
    model = TrackModel(1, calibration="empirical", n_folds=3).fit(tracks, GRID, start=4)
    errors = heldout_displacement_errors(tracks, GRID, order=1, start=4, n_folds=3)
    # the short run (8 leads) ends first: the common horizon is its length, and it is kept
    np.testing.assert_allclose(model.lead_errors_, errors[:, :8], atol=1e-12)
    conditioning = tracks[0][:4]
    mean, _ = model.displacement_law(conditioning, 20)
    paths = model.displacement_paths(conditioning, 20)
    assert paths.shape == (7, 20, 2)
    np.testing.assert_allclose(paths[:, :8], mean[None, :8] + errors[:, :8], atol=1e-12)
    np.testing.assert_allclose(paths[:, 8:], mean[None, 8:] + errors[:, 7:8], atol=1e-12)  # held past H
    # members: distinct paths of the law, seeded
    members = model.sample_displacements(conditioning, 20, 5, seed=3)
    match = [int(np.argmin(np.abs(paths - m[None]).max(axis=(1, 2)))) for m in members]
    np.testing.assert_allclose(members, paths[match], atol=0)
    assert len(set(match)) == 5
    np.testing.assert_array_equal(members, model.sample_displacements(conditioning, 20, 5, seed=3))
    assert model.sample_displacements(conditioning, 20, 9, seed=3).shape == (9, 20, 2)  # M > N: replacement
    # round trip
    again = TrackModel.from_arrays(model.to_arrays())
    np.testing.assert_array_equal(again.displacement_paths(conditioning, 20), paths)


def test_empirical_law_needs_runs_past_the_start():
    with pytest.raises(ValueError, match="track_calibration: empirical"):
        runs = drifting_tracks(3, 25, seed=1)
        TrackModel(1, calibration="empirical").fit([runs[0], runs[1][:4], runs[2][:4]], GRID, start=4)
    with pytest.raises(ValueError, match="track_calibration is 'gaussian'"):
        TrackModel(1, calibration="gaussian")


def _wrap(x, n):
    return (np.asarray(x) + np.asarray(n) / 2) % np.asarray(n) - np.asarray(n) / 2


def test_phase_positions_locate_a_point_mass_and_follow_any_translation():
    ny, nx = GRID
    point = np.zeros((1, ny, nx))
    point[0, 7, 30] = 2.5
    np.testing.assert_allclose(_wrap(phase_positions(point)[0] - [7, 30], GRID), 0.0, atol=1e-12)
    rng = np.random.default_rng(3)
    field = rng.random((1, ny, nx)) + 0.5
    for t in ([0.37, -4.81], [12.5, 20.25], [-0.01, 0.0]):
        moved = lab_frame_members(field, -np.array(t, dtype=float)[None, None])[0]  # S_{+t} field
        step = phase_positions(moved) - phase_positions(field)
        np.testing.assert_allclose(_wrap(step[0] - t, GRID), 0.0, atol=1e-9)
    # the concentration: 1 for a point mass, 0 for a uniform field, translation invariant
    from rom_pipeline.evaluation.track import phase_concentration

    np.testing.assert_allclose(phase_concentration(point), [1.0], atol=1e-12)
    np.testing.assert_allclose(phase_concentration(np.ones((1, ny, nx))), [0.0], atol=1e-12)
    np.testing.assert_allclose(phase_concentration(np.roll(field, (7, 11), axis=(1, 2))), phase_concentration(field),
                               rtol=1e-12)
    # an integer roll moves it by whole cells, exactly
    rolled = np.roll(field, (3, -5), axis=(1, 2))
    np.testing.assert_allclose(_wrap(phase_positions(rolled) - phase_positions(field) - [3, -5], GRID)[0], 0.0,
                               atol=1e-9)


@pytest.mark.parametrize("method", ["integer", "subpixel"])
def test_phase_track_is_the_centre_of_the_lab_frame_reconstruction(method):
    from rom_pipeline.rom.pod import PODBasis

    ny, nx = GRID
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    rng = np.random.default_rng(5)
    runs = []
    for _ in range(3):
        centre = rng.uniform(0, 40, 2)
        frames = []
        for k in range(12):
            cy, cx = centre + k * np.array([0.3, -0.7])
            width = 3.0 + 0.1 * k
            dy, dx = _wrap(yy - cy, ny), _wrap(xx - cx, nx)
            frames.append(np.exp(-(dy**2 + 0.7 * dx**2) / (2 * width**2)) + 0.02)
        runs.append(np.array(frames))
    pod = PODBasis(fixed_modes=None, pod_energy=0.999999, shift_align=True, shift_align_ref="mean", shift_method=method).fit(runs)
    for frames in runs:
        shifts = pod.estimate_shifts(frames)
        latent = pod.restrict(frames, shifts=shifts)
        expected = phase_positions(pod.lift(latent, shifts=shifts))
        np.testing.assert_allclose(_wrap(phase_track(pod, latent, shifts) - expected, GRID), 0.0, atol=1e-8)
        # and it follows the swarm: the reconstruction's centre is the blob's up to the POD error
        np.testing.assert_allclose(_wrap(np.diff(phase_track(pod, latent, shifts), axis=0) - [0.3, -0.7], GRID),
                                   0.0, atol=0.05)


def test_bad_track_method_is_refused():
    with pytest.raises(ValueError, match=r"eval.track_method is 'centroid'.*'alignment', 'phase'"):
        check_track_method("centroid")
    with pytest.raises(ValueError, match=r"eval.track_method is 'centroid'"):
        EvaluationConfig(forecast_start=0.6, track_method="centroid")
    with pytest.raises(ValueError, match=r"frames must have shape \(T, ny, nx\)"):
        phase_positions(np.zeros((4, 4)))


def _two_populations(seed=11):
    """40 runs: even ones 'diffuse' (covariate ~0.1, track noise variance 0.81), odd ones
    'concentrated' (~0.9, variance 0.01)."""
    rng = np.random.default_rng(seed)
    tracks, covariates = [], []
    for i in range(40):
        diffuse = i % 2 == 0
        sigma = np.eye(2) * (0.81 if diffuse else 0.01)
        tracks.append(simulate_track(30, C_TRUE, np.zeros((2, 2)), sigma, seed=100 + i))
        covariates.append((0.1 if diffuse else 0.9) + 0.01 * rng.standard_normal())
    return tracks, covariates


def test_empirical_law_with_covariates_uses_the_nearest_runs_error_paths():
    """conditioning='analogs' on :func:`_two_populations`: asked for a covariate, the law keeps the
    error paths of the nearest ANALOG_FRACTION of the runs (at least ANALOG_MIN), which are then
    the right half's."""
    from rom_pipeline.evaluation.track import ANALOG_FRACTION, ANALOG_MIN, heldout_displacement_errors, wrapped_lead_variance

    tracks, covariates = _two_populations()
    plain = TrackModel(1, calibration="empirical", n_folds=4).fit(tracks, GRID, start=4)
    model = TrackModel(1, calibration="empirical", n_folds=4, conditioning="analogs").fit(
        tracks, GRID, start=4, covariates=covariates)
    errors = heldout_displacement_errors(tracks, GRID, order=1, start=4, n_folds=4)
    k = max(ANALOG_MIN, int(np.ceil(ANALOG_FRACTION * 40)))
    conditioning = tracks[1][:4]
    for target in (0.9, 0.1):
        nearest = np.sort(np.argsort(np.abs(np.array(covariates) - target), kind="stable")[:k])
        assert all((covariates[i] > 0.5) == (target > 0.5) for i in nearest)
        mean, cov = model.displacement_law(conditioning, 20, covariate=target)
        paths = model.displacement_paths(conditioning, 20, covariate=target)
        np.testing.assert_allclose(paths, mean[None] + errors[nearest, :20], atol=1e-12)
        expected = wrapped_lead_variance(errors[nearest], GRID)[:20]
        np.testing.assert_allclose(np.diagonal(cov, axis1=1, axis2=2), expected, rtol=1e-10)
        members = model.sample_displacements(conditioning, 20, 6, seed=2, covariate=target)
        assert all(np.abs(paths - m[None]).max(axis=(1, 2)).min() == 0 for m in members)
    # the concentrated runs' law is far narrower than the pooled one, the diffuse runs' wider
    pooled = np.diagonal(plain.displacement_law(conditioning, 20)[1], axis1=1, axis2=2)[-1]
    tight = np.diagonal(model.displacement_law(conditioning, 20, covariate=0.9)[1], axis1=1, axis2=2)[-1]
    wide = np.diagonal(model.displacement_law(conditioning, 20, covariate=0.1)[1], axis1=1, axis2=2)[-1]
    assert np.all(tight < 0.1 * pooled) and np.all(wide > pooled)
    # without a covariate, or fitted without covariates, the law is the pooled one
    np.testing.assert_array_equal(model.displacement_paths(conditioning, 20), plain.displacement_paths(conditioning, 20))
    np.testing.assert_array_equal(plain.displacement_paths(conditioning, 20, covariate=0.9),
                                  plain.displacement_paths(conditioning, 20))
    again = TrackModel.from_arrays(model.to_arrays())
    np.testing.assert_array_equal(again.displacement_paths(conditioning, 20, covariate=0.9),
                                  model.displacement_paths(conditioning, 20, covariate=0.9))
    with pytest.raises(ValueError, match="covariates must be 40 finite numbers"):
        TrackModel(1, calibration="empirical").fit(tracks, GRID, start=4, covariates=covariates[:-1])


def test_log_error_slopes_recover_a_known_scale_law():
    from rom_pipeline.evaluation.track import _log_error_slopes

    rng = np.random.default_rng(4)
    c = rng.uniform(0, 1, 4000)
    beta = np.array([-3.0, -1.0, 0.0, 2.0])
    errors = 10.0 * np.exp(0.5 * beta[None, :, None] * c[:, None, None]) * rng.standard_normal((4000, 4, 2))
    np.testing.assert_allclose(_log_error_slopes(errors, c), beta, atol=0.12)
    assert np.all(_log_error_slopes(errors, np.full(4000, 0.3)) == 0.0)


def test_scale_conditioning_rescales_every_error_path_to_the_runs_covariate():
    """conditioning='scale' keeps all N paths, path i at lead h times exp(b_h (c - c_i) / 2)."""
    from rom_pipeline.evaluation.track import _log_error_slopes, wrapped_lead_variance

    tracks, covariates = _two_populations()
    plain = TrackModel(1, calibration="empirical", n_folds=4).fit(tracks, GRID, start=4)
    model = TrackModel(1, calibration="empirical", n_folds=4, conditioning="scale").fit(
        tracks, GRID, start=4, covariates=covariates)
    np.testing.assert_array_equal(model.lead_errors_, plain.lead_errors_)
    c_i = np.asarray(covariates)
    slope = _log_error_slopes(model.lead_errors_, c_i)
    np.testing.assert_allclose(model.lead_slope_, slope)
    assert np.all(slope[:5] < -1.5)  # the concentrated runs' errors are far smaller
    conditioning = tracks[1][:4]
    for target in (0.9, 0.1, 5.0):  # 5.0 lies outside the fitted range: clipped to its maximum
        c = min(target, c_i.max())
        expected = model.lead_errors_ * np.exp(0.5 * slope[None, :] * (c - c_i[:, None]))[:, :, None]
        mean, cov = model.displacement_law(conditioning, 20, covariate=target)
        np.testing.assert_allclose(model.displacement_paths(conditioning, 20, covariate=target),
                                   mean[None] + expected[:, :20], atol=1e-12)
        np.testing.assert_allclose(np.diagonal(cov, axis1=1, axis2=2),
                                   wrapped_lead_variance(expected, GRID)[:20], rtol=1e-10)
    pooled = np.diagonal(plain.displacement_law(conditioning, 20)[1], axis1=1, axis2=2)[-1]
    tight = np.diagonal(model.displacement_law(conditioning, 20, covariate=0.9)[1], axis1=1, axis2=2)[-1]
    wide = np.diagonal(model.displacement_law(conditioning, 20, covariate=0.1)[1], axis1=1, axis2=2)[-1]
    assert np.all(tight < 0.2 * pooled) and np.all(wide > pooled)
    again = TrackModel.from_arrays(model.to_arrays())
    assert again.conditioning == "scale"
    np.testing.assert_array_equal(again.displacement_paths(conditioning, 20, covariate=0.4),
                                  model.displacement_paths(conditioning, 20, covariate=0.4))
    # conditioning 'none' ignores covariates
    none = TrackModel(1, calibration="empirical", n_folds=4, conditioning="none").fit(
        tracks, GRID, start=4, covariates=covariates)
    np.testing.assert_array_equal(none.displacement_paths(conditioning, 20, covariate=0.9),
                                  plain.displacement_paths(conditioning, 20))
    with pytest.raises(ValueError, match="eval.track_conditioning is 'nearest'"):
        TrackModel(1, calibration="empirical", conditioning="nearest")
