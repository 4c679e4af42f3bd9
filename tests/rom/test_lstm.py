"""LSTMForecaster: parameter count, leak-free run split, learning a linear system, persistence,
determinism, early stopping and argument checks. Models are tiny so the file runs in seconds."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rom_pipeline.rom.forecaster import LatentForecaster
from rom_pipeline.rom.latent import latent_windows
from rom_pipeline.rom.lstm import (
    LOG_COLUMNS,
    LSTMForecaster,
    closed_loop_r2,
    closed_loop_skill,
    count_lstm_parameters,
    training,
)
from rom_pipeline.rom.lstm.training import unrolled_loss

TINY = dict(hidden_units=8, num_layers=1, batch_size=32, max_epochs=2, device="cpu")


def _oscillator() -> np.ndarray:
    """Stable 3-mode linear map: a damped rotation (ρ = 0.95) driving a slow mode (0.9)."""
    theta, rho = 0.3, 0.95
    A = np.zeros((3, 3))
    A[:2, :2] = rho * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    A[2, 2] = 0.9
    A[2, 0] = 0.1
    return A


def _simulate(A: np.ndarray, n_runs: int, K: int, noise: float, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    runs = []
    for _ in range(n_runs):
        y = np.zeros((K, A.shape[0]))
        y[0] = rng.normal(size=A.shape[0])
        for k in range(1, K):
            y[k] = A @ y[k - 1] + noise * rng.normal(size=A.shape[0])
        runs.append(y)
    return runs


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    # Tiny models gain nothing from intra-op threads, and on a shared machine a busy-waiting
    # second thread makes every step slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def runs() -> list[np.ndarray]:
    # Per-run offsets 0.01·2^i in mode 2 make the mean of any subset of runs identifiable.
    out = _simulate(_oscillator(), n_runs=10, K=40, noise=0.02, seed=1)
    return [y + np.array([0.0, 0.0, 0.01 * 2**i]) for i, y in enumerate(out)]


@pytest.fixture(scope="module")
def fitted(runs) -> LSTMForecaster:
    return LSTMForecaster(lag=3, validation_fraction=0.3, seed=4, **TINY).fit(runs)


# --------------------------------------------------------------------------- parameter count
@pytest.mark.parametrize("r, h, layers", [(3, 8, 1), (19, 128, 2), (5, 16, 3)])
def test_parameter_count_formula_matches_torch(r, h, layers):
    by_hand = 4 * (r * h + h * h) + 8 * h + (layers - 1) * (4 * (h * h + h * h) + 8 * h)
    torch_count = sum(p.numel() for p in torch.nn.LSTM(r, h, layers).parameters())
    assert count_lstm_parameters(r, h, layers) == by_hand == torch_count


@pytest.mark.parametrize("use_layer_norm", [True, False])
def test_model_parameter_count_is_lstm_plus_norm_plus_head(runs, use_layer_norm):
    r, h = 3, 6
    model = LSTMForecaster(lag=2, hidden_units=h, num_layers=2, max_epochs=1, device="cpu",
                           use_layer_norm=use_layer_norm).fit(runs)
    expected = count_lstm_parameters(r, h, 2) + (2 * h if use_layer_norm else 0) + h * r + r
    assert model.n_parameters_ == expected
    assert model.n_parameters_ == sum(p.numel() for p in model.module_.parameters())
    assert isinstance(model, LatentForecaster) and model.name == "LSTM"


# --------------------------------------------------------------------------- run split
def test_validation_holds_out_whole_runs(runs, fitted):
    n = len(runs)
    assert len(fitted.validation_runs_) == math.ceil(0.3 * n)
    assert set(fitted.validation_runs_).isdisjoint(fitted.training_runs_)
    assert sorted(fitted.validation_runs_ + fitted.training_runs_) == list(range(n))
    # Oracle: z-score statistics of the training runs' windows only. Each run has its own
    # offset in mode 2, so any held-out window among the training windows would shift them.
    X_train, _, _ = latent_windows([runs[i] for i in fitted.training_runs_], fitted.lag)
    frames = X_train.reshape(-1, 3)
    np.testing.assert_allclose(fitted.mean_, frames.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(fitted.std_, frames.std(axis=0), rtol=1e-12)
    X_all = latent_windows(runs, fitted.lag)[0].reshape(-1, 3)
    assert abs(X_all.mean(axis=0)[2] - fitted.mean_[2]) > 0.05
    # The logged one-step validation loss is the normalised MSE on the held-out runs' windows.
    X_val, Y_val, _ = latent_windows([runs[i] for i in fitted.validation_runs_], fitted.lag)
    mse = np.mean(((fitted.predict_next(X_val) - Y_val) / fitted.std_) ** 2)
    logged = fitted.training_log_.set_index("epoch").loc[fitted.best_epoch_, "val_loss"]
    assert logged == pytest.approx(mse, rel=1e-4)


def test_split_is_seeded_and_explicit_validation_uses_all_runs(runs):
    a = LSTMForecaster(lag=3, seed=4, validation_fraction=0.3, **TINY).fit(runs)
    b = LSTMForecaster(lag=3, seed=5, validation_fraction=0.3, **TINY).fit(runs)
    assert a.validation_runs_ != b.validation_runs_
    permutation = torch.randperm(10, generator=torch.Generator().manual_seed(4))
    assert a.validation_runs_ == sorted(permutation[:3].tolist())
    explicit = LSTMForecaster(lag=3, seed=4, **TINY).fit(runs[:7], validation_trajectories=runs[7:])
    assert explicit.validation_runs_ == [] and explicit.training_runs_ == list(range(7))
    frames = latent_windows(runs[:7], 3)[0].reshape(-1, 3)
    np.testing.assert_allclose(explicit.mean_, frames.mean(axis=0), rtol=1e-12)
    assert explicit.training_log_["val_rollout_r2"].notna().all()


# --------------------------------------------------------------------------- learning
def _least_squares_ar(trajectories, lag):
    """Independent baseline: y_k = c + Σ_j A_j y_{k−j} by ordinary least squares."""
    X, Y, _ = latent_windows(trajectories, lag)
    design = np.hstack([np.ones((len(X), 1)), X.reshape(len(X), -1)])
    coef, *_ = np.linalg.lstsq(design, Y, rcond=None)

    def rollout(seed, n_steps):
        window, out = seed.copy(), []
        for _ in range(n_steps):
            nxt = np.concatenate([[1.0], window.ravel()]) @ coef
            out.append(nxt)
            window = np.vstack([window[1:], nxt])
        return np.array(out)

    return rollout


def test_learns_noisy_stable_linear_system():
    A = _oscillator()
    train = _simulate(A, n_runs=10, K=60, noise=0.02, seed=1)
    test = _simulate(A, n_runs=5, K=60, noise=0.02, seed=2)
    lag = 2
    model = LSTMForecaster(lag=lag, hidden_units=16, num_layers=1, batch_size=32,
                           learning_rate=5e-3, max_epochs=150, patience=30, device="cpu",
                           seed=0).fit(train)
    truth = [y[lag:] for y in test]
    lstm = [model.rollout(y[:lag], len(y) - lag) for y in test]
    true_system = [np.array([np.linalg.matrix_power(A, k + 1) @ y[lag - 1]
                             for k in range(len(y) - lag)]) for y in test]
    ar = _least_squares_ar(train, lag)
    ar_forecast = [ar(y[:lag], len(y) - lag) for y in test]

    def sse(forecast):
        return sum(float(np.sum((t - f) ** 2)) for t, f in zip(truth, forecast))

    assert sse(lstm) <= 1.5 * sse(true_system)
    assert closed_loop_r2(truth, lstm) >= closed_loop_r2(truth, ar_forecast) - 0.05
    assert closed_loop_r2(truth, lstm) > 0.85


def test_closed_loop_r2_definition():
    truth = [np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[1.0, 1.0], [1.0, 3.0]])]
    forecast = [np.array([[0.0, 1.0], [1.0, 3.0]]), np.array([[1.0, 2.0], [1.0, 3.0]])]
    # SSE = 1 + 1; per-run deviations from each run's own mean: (1+1+1+1) + (0+0+1+1) = 6.
    assert closed_loop_r2(truth, forecast) == pytest.approx(1 - 2 / 6)
    assert closed_loop_r2(truth, [forecast[0], np.full((2, 2), np.nan)]) == -math.inf


# --------------------------------------------------------------------------- prediction
def test_rollout_feeds_predictions_back(runs, fitted):
    seed = runs[0][:3]
    by_hand, window = [], seed.copy()
    for _ in range(6):
        nxt = fitted.predict_next(window[None])[0]
        by_hand.append(nxt)
        window = np.vstack([window[1:], nxt])
    np.testing.assert_allclose(fitted.rollout(seed, 6), np.array(by_hand), rtol=1e-5, atol=1e-6)
    batch = fitted.rollout_batch(np.stack([runs[0][:3], runs[1][5:8]]), 6)
    np.testing.assert_allclose(batch[1], fitted.rollout(runs[1][5:8], 6), rtol=1e-5, atol=1e-6)
    assert fitted.rollout(seed, 0).shape == (0, 3)


@pytest.mark.parametrize("residual", [True, False])
def test_residual_output_adds_increment_to_last_input(runs, residual):
    model = LSTMForecaster(lag=3, residual=residual, **TINY).fit(runs)
    with torch.no_grad():
        model.module_.head.weight.zero_()
        model.module_.head.bias.zero_()
    windows = latent_windows(runs, 3)[0][:20]
    # A zero head predicts a zero normalised increment (residual: ŷ = last input) or a zero
    # normalised state (direct: ŷ = mean of the training windows).
    expected = windows[:, -1] if residual else np.broadcast_to(model.mean_, (20, 3))
    np.testing.assert_allclose(model.predict_next(windows), expected, rtol=1e-6, atol=1e-6)


def test_diverging_rollout_returns_non_finite_without_raising(runs):
    model = LSTMForecaster(lag=3, residual=True, clip_rollout=None, **TINY).fit(runs)
    with torch.no_grad():
        model.module_.head.bias.fill_(3e38)  # near float32 max: overflows on the 2nd step
    forecast = model.rollout(runs[0][:3], 5)
    assert forecast.shape == (5, 3)
    assert not np.all(np.isfinite(forecast[1:]))


# --------------------------------------------------------------------------- persistence
def test_payload_round_trip_is_exact(tmp_path, runs, fitted):
    path = tmp_path / "lstm.pt"
    torch.save(fitted.save_payload(), path)
    loaded = LSTMForecaster.from_payload(torch.load(path, weights_only=True), device="cpu")
    windows = latent_windows(runs, 3)[0]
    assert np.array_equal(loaded.predict_next(windows), fitted.predict_next(windows))
    assert np.array_equal(loaded.rollout(runs[2][:3], 30), fitted.rollout(runs[2][:3], 30))
    assert loaded.get_hyperparameters() == fitted.get_hyperparameters()
    assert np.array_equal(loaded.mean_, fitted.mean_) and np.array_equal(loaded.std_, fitted.std_)
    # the stored log leaves out the wall times, so identical fits give identical payloads
    assert loaded.training_log_.drop(columns="seconds").equals(fitted.training_log_.drop(columns="seconds"))
    assert loaded.training_log_["seconds"].isna().all() and "fit_seconds" not in fitted.save_payload()
    assert (loaded.best_epoch_, loaded.n_parameters_, loaded.validation_runs_) == (
        fitted.best_epoch_, fitted.n_parameters_, fitted.validation_runs_)


def test_payload_format_and_state_dict_keys_are_stable(runs):
    """Stored models must keep loading: the payload's format tag, its keys and the network's
    parameter names are the ones every earlier payload was written with."""
    model = LSTMForecaster(lag=3, linear_skip=True, **{**TINY, "num_layers": 2}).fit(runs)
    payload = model.save_payload()
    assert payload["format"] == "rom_pipeline.LSTMForecaster/1"
    assert sorted(payload) == sorted([
        "format", "state_dict", "hyperparameters", "n_modes", "mean", "std", "lower", "upper",
        "climatology", "best_epoch", "n_parameters", "validation_runs", "training_runs",
        "device", "training_log"])
    lstm = [f"lstm.{kind}_{gate}_l{layer}" for layer in (0, 1) for kind in ("weight", "bias")
            for gate in ("ih", "hh")]
    assert sorted(payload["state_dict"]) == sorted(
        lstm + ["norm.weight", "norm.bias", "head.weight", "head.bias", "skip.weight"])


# --------------------------------------------------------------------------- determinism
def test_same_seed_gives_bit_identical_weights(runs):
    kwargs = dict(lag=3, hidden_units=8, num_layers=2, dropout=0.2, noise_std=0.1, multi_step=2,
                  batch_size=16, max_epochs=3, device="cpu")
    a = LSTMForecaster(seed=7, **kwargs).fit(runs)
    b = LSTMForecaster(seed=7, **kwargs).fit(runs)
    c = LSTMForecaster(seed=8, **kwargs).fit(runs)
    sa, sb, sc = (m.module_.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.training_log_.drop(columns="seconds").equals(b.training_log_.drop(columns="seconds"))


# --------------------------------------------------------------------------- early stopping
@pytest.mark.parametrize("selection", ["rollout", "one_step"])
def test_early_stopping_restores_best_checkpoint(selection):
    runs = _simulate(_oscillator(), n_runs=10, K=40, noise=0.02, seed=1)
    patience = 3
    model = LSTMForecaster(lag=3, hidden_units=8, num_layers=1, batch_size=16,
                           learning_rate=0.05, max_epochs=200, patience=patience, lr_patience=1,
                           lr_factor=0.5, selection=selection, validation_fraction=0.3,
                           device="cpu", seed=1).fit(runs)
    log = model.training_log_.set_index("epoch")
    assert list(model.training_log_.columns) == LOG_COLUMNS
    assert len(log) == model.best_epoch_ + patience < 200  # stopped early, after `patience`
    assert model.best_epoch_ > 1
    val_runs = [runs[i] for i in model.validation_runs_]
    column = "val_rollout_r2" if selection == "rollout" else "val_loss"
    # The last epoch was worse, so the recomputed metric below checks the restore, not the end.
    assert log[column].iloc[-1] != log.loc[model.best_epoch_, column]
    if selection == "rollout":
        assert log.loc[model.best_epoch_, "val_rollout_r2"] == log["val_rollout_r2"].max()
        forecast = model.rollout_batch(np.stack([y[:3] for y in val_runs]), 37)
        recomputed = closed_loop_r2([y[3:] for y in val_runs], list(forecast))
        assert recomputed == pytest.approx(log.loc[model.best_epoch_, "val_rollout_r2"], abs=1e-9)
    else:
        assert log.loc[model.best_epoch_, "val_loss"] == log["val_loss"].min()
        X_val, Y_val, _ = latent_windows(val_runs, 3)
        mse = np.mean(((model.predict_next(X_val) - Y_val) / model.std_) ** 2)
        assert mse == pytest.approx(log.loc[model.best_epoch_, "val_loss"], rel=1e-4)
    # ReduceLROnPlateau only ever multiplies the rate by lr_factor.
    steps = np.log(log["lr"].to_numpy() / 0.05) / np.log(0.5)
    np.testing.assert_allclose(steps, np.round(steps), atol=1e-9)
    assert np.all(np.diff(log["lr"].to_numpy()) <= 0)


def test_rollout_horizon_limits_validation_rollouts(runs):
    model = LSTMForecaster(lag=3, rollout_horizon=5, validation_fraction=0.3, **TINY).fit(runs)
    val_runs = [runs[i] for i in model.validation_runs_]
    forecast = model.rollout_batch(np.stack([y[:3] for y in val_runs]), 5)
    expected = closed_loop_r2([y[3:8] for y in val_runs], list(forecast))
    assert model.training_log_["val_rollout_r2"].iloc[model.best_epoch_ - 1] == pytest.approx(
        expected, abs=1e-9)


def test_multi_step_loss_is_mean_of_unrolled_errors(runs, fitted):
    # Oracle: the k-step loss equals the mean normalised MSE of the public closed-loop rollout.
    seq = np.stack([runs[0][k:k + 5] for k in range(10)])  # 3 inputs + 2 targets
    normalise = lambda a: torch.as_tensor((a - fitted.mean_) / fitted.std_, dtype=torch.float32)
    with torch.no_grad():
        loss = unrolled_loss(fitted.module_, normalise(seq[:, :3]), normalise(seq[:, 3:]), 2)
    forecast = fitted.rollout_batch(seq[:, :3], 2)
    expected = np.mean(((forecast - seq[:, 3:]) / fitted.std_) ** 2)
    assert float(loss) == pytest.approx(expected, rel=1e-4)


# --------------------------------------------------------------------------- argument checks
@pytest.mark.parametrize(
    "key, value",
    [("lag", 0), ("hidden_units", 2.5), ("num_layers", 0), ("dropout", 1.0), ("batch_size", 0),
     ("learning_rate", 0.0), ("weight_decay", -1e-3), ("max_epochs", 0), ("patience", 0),
     ("gradient_clip", 0.0), ("lr_patience", -1), ("lr_factor", 1.0), ("validation_fraction", 1.0),
     ("rollout_horizon", 0), ("selection", "loss"), ("multi_step", 0), ("noise_std", -0.1),
     ("device", "tpu"), ("seed", -1), ("residual", "yes")],
)
def test_bad_hyperparameters_raise_naming_them(key, value):
    with pytest.raises(ValueError, match=key):
        LSTMForecaster(**{key: value})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only behaviour")
def test_cuda_request_without_cuda_raises_and_auto_falls_back(runs):
    with pytest.raises(ValueError, match="CUDA is not available"):
        LSTMForecaster(device="cuda")
    auto = LSTMForecaster(lag=3, hidden_units=4, num_layers=1, max_epochs=1, device="auto")
    assert auto.fit(runs).device_ == "cpu"


def test_bad_data_raises(runs, fitted):
    with pytest.raises(ValueError, match="validation_fraction"):
        LSTMForecaster(validation_fraction=0.5, **TINY).fit(runs[:1])
    with pytest.raises(ValueError, match="lag"):
        LSTMForecaster(lag=40, **TINY).fit(runs)
    with pytest.raises(ValueError, match="multi_step"):
        LSTMForecaster(lag=30, multi_step=15, **TINY).fit(runs)
    with pytest.raises(ValueError, match=r"trajectories\[1\]"):
        LSTMForecaster(**TINY).fit([runs[0], np.full((40, 3), np.nan)])
    with pytest.raises(ValueError, match="seed_window"):
        fitted.rollout(runs[0][:2], 4)
    with pytest.raises(RuntimeError, match="not fitted"):
        LSTMForecaster().predict_next(np.zeros((1, 5, 3)))


def test_clip_rollout_keeps_closed_loop_states_inside_the_widened_training_range():
    """An exploding model: without the bound its rollout leaves the data by orders of magnitude;
    with clip_rollout=0.1 every state stays within the training range ± 10 % of it."""
    rng = np.random.default_rng(3)
    runs = [np.cumsum(rng.normal(size=(40, 2)), axis=0) * 0.1 for _ in range(4)]
    free = LSTMForecaster(lag=2, hidden_units=4, num_layers=1, max_epochs=1, seed=0,
                          clip_rollout=None).fit(runs)
    bounded = LSTMForecaster.from_payload(
        {**free.save_payload(), "hyperparameters": {**free.get_hyperparameters(), "clip_rollout": 0.1}}
    )
    with torch.no_grad():  # make the head explode: a large gain on the last hidden state
        for module in (free.module_, bounded.module_):
            module.head.weight.mul_(1e3)
    seed = runs[0][:2]
    assert np.abs(free.rollout(seed, 30)).max() > 10 * np.abs(np.concatenate(runs)).max()
    out = bounded.rollout(seed, 30)
    span = bounded.upper_ - bounded.lower_
    assert np.all(out >= bounded.lower_ - 0.1 * span - 1e-5)
    assert np.all(out <= bounded.upper_ + 0.1 * span + 1e-5)
    assert np.isclose(out, bounded.upper_ + 0.1 * span, atol=1e-4).any() or np.isclose(
        out, bounded.lower_ - 0.1 * span, atol=1e-4).any()
    # the range comes from the training runs' windows only (held-out runs never widen it)
    train = np.concatenate([runs[i] for i in bounded.training_runs_])
    assert np.all(bounded.lower_ >= train.min(axis=0)) and np.all(bounded.upper_ <= train.max(axis=0))
    # one-step predictions are not clamped
    np.testing.assert_allclose(bounded.predict_next(seed[None]), free.predict_next(seed[None]), rtol=1e-6)


# --------------------------------------------------------------------------- difference form
def test_difference_form_keeps_every_constant_state_and_reads_only_increments(runs):
    # no bound: the constant states below lie outside the training range on purpose
    model = LSTMForecaster(lag=3, differences=True, dropout=0.0, clip_rollout=None,
                           **TINY).fit(runs)
    rng = np.random.default_rng(3)
    for level in rng.normal(scale=2.0, size=(4, 3)):  # any constant state, seen in training or not
        seed = np.repeat(level[None], 3, axis=0)
        # exact up to the float32 rounding of the state itself
        np.testing.assert_allclose(model.rollout(seed, 25), np.repeat(level[None], 25, axis=0),
                                   rtol=1e-6, atol=1e-6)
    # the prediction is the last state plus a function of the increments only
    windows = latent_windows(runs, 3)[0][:20]
    offset = np.array([5.0, -3.0, 1.0])
    np.testing.assert_allclose(model.predict_next(windows + offset),
                               model.predict_next(windows) + offset, rtol=0, atol=1e-4)
    direct = LSTMForecaster(lag=3, **TINY).fit(runs)
    assert not np.allclose(direct.predict_next(windows + offset),
                           direct.predict_next(windows) + offset, atol=1e-2)


def test_difference_form_round_trips_and_learns_a_damped_increment_system():
    rng = np.random.default_rng(8)
    runs = []
    for _ in range(12):  # y_k - y_{k-1} = 0.8 (y_{k-1} - y_{k-2}): each run settles at its own level
        y = np.zeros((40, 2))
        y[0], y[1] = rng.normal(size=2), rng.normal(size=2)
        for k in range(2, 40):
            y[k] = y[k - 1] + 0.8 * (y[k - 1] - y[k - 2])
        runs.append(y)
    model = LSTMForecaster(lag=3, differences=True, hidden_units=16, num_layers=1, batch_size=32,
                           max_epochs=60, patience=60, learning_rate=1e-2, selection="one_step",
                           device="cpu", seed=0).fit(runs)
    log = model.training_log_
    assert log["val_loss"].min() < 0.05 * log["val_loss"].iloc[0]
    payload = LSTMForecaster.from_payload(model.save_payload())
    assert payload.differences and payload.module_.differences
    np.testing.assert_array_equal(payload.rollout(runs[0][:3], 10), model.rollout(runs[0][:3], 10))


@pytest.mark.parametrize("kwargs, message", [
    ({"differences": True, "residual": True}, "residual and differences are both true"),
    ({"differences": True, "lag": 1}, "differences needs lag >= 2"),
    ({"differences": "yes"}, "differences must be True or False"),
])
def test_difference_form_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LSTMForecaster(**kwargs)


# --------------------------------------------------------------------------- closed-loop training
def test_closed_loop_skill_definition():
    truth = [np.array([[0.0, 1.0], [2.0, 3.0]]), np.array([[1.0, 1.0], [1.0, 3.0]])]
    forecast = [np.array([[0.0, 1.0], [1.0, 3.0]]), np.array([[1.0, 2.0], [1.0, 3.0]])]
    c = np.array([1.0, 2.0])
    # SSE = 1 + 1; deviations from c: (1+1+1+1) + (0+1+0+1) = 6.
    assert closed_loop_skill(truth, forecast, c) == pytest.approx(1 - 2 / 6)
    # Forecasting the climatology scores exactly 0, whatever the truth.
    assert closed_loop_skill(truth, [np.broadcast_to(c, y.shape) for y in truth], c) == 0.0
    assert closed_loop_skill(truth, [forecast[0], np.full((2, 2), np.inf)], c) == -math.inf


def test_skill_selection_restores_the_checkpoint_of_best_skill_against_the_climatology():
    runs = _simulate(_oscillator(), n_runs=10, K=40, noise=0.02, seed=1)
    model = LSTMForecaster(lag=3, hidden_units=8, num_layers=1, batch_size=16,
                           learning_rate=0.05, max_epochs=30, patience=4, selection="skill",
                           validation_fraction=0.3, device="cpu", seed=1).fit(runs)
    train = [runs[i] for i in model.training_runs_]
    # Oracle climatology: the mean of every frame of the training runs (not of the windows).
    np.testing.assert_allclose(model.climatology_, np.concatenate(train).mean(axis=0),
                               rtol=1e-12)
    log = model.training_log_.set_index("epoch")
    assert log.loc[model.best_epoch_, "val_rollout_skill"] == log["val_rollout_skill"].max()
    val = [runs[i] for i in model.validation_runs_]
    forecast = model.rollout_batch(np.stack([y[:3] for y in val]), 37)
    sse = sum(np.sum((y[3:] - f) ** 2) for y, f in zip(val, forecast))
    sst = sum(np.sum((y[3:] - np.concatenate(train).mean(axis=0)) ** 2) for y in val)
    assert log.loc[model.best_epoch_, "val_rollout_skill"] == pytest.approx(1 - sse / sst,
                                                                            abs=1e-9)
    assert log.loc[model.best_epoch_, "val_rollout_skill"] > 0.5  # learnt: beats climatology


def test_input_noise_is_gaussian_in_units_of_each_modes_std_and_spares_the_targets(monkeypatch):
    # Constant runs z-score to exactly 0, so whatever reaches the network in training is the
    # injected noise alone; the targets must stay the clean zeros.
    runs = [np.tile([1.0, -2.0], (30, 1)) for _ in range(4)]
    seen = []
    original = training.unrolled_loss

    def record(module, window, targets, *args):
        seen.append((window.detach().clone(), targets.detach().clone()))
        return original(module, window, targets, *args)

    monkeypatch.setattr(training, "unrolled_loss", record)
    LSTMForecaster(lag=3, noise_std=0.4, validation_fraction=0.0, **TINY).fit(runs)
    inputs = torch.cat([w for w, _ in seen]).numpy()
    assert inputs.size == 2 * 4 * 27 * 3 * 2  # 2 epochs of every window
    assert np.std(inputs) == pytest.approx(0.4, rel=0.05)
    assert abs(np.mean(inputs)) < 0.02
    assert all(torch.count_nonzero(t) == 0 for _, t in seen)
    seen.clear()
    LSTMForecaster(lag=3, noise_std=0.0, validation_fraction=0.0, **TINY).fit(runs)
    assert all(torch.count_nonzero(w) == 0 for w, _ in seen)


def test_scheduled_sampling_mixes_true_and_predicted_frames(runs, fitted):
    seq = np.stack([runs[0][k:k + 6] for k in range(12)])  # 3 inputs + 3 targets
    normalise = lambda a: torch.as_tensor((a - fitted.mean_) / fitted.std_, dtype=torch.float32)
    x, y = normalise(seq[:, :3]), normalise(seq[:, 3:])
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        free = unrolled_loss(fitted.module_, x, y, 3)
        always_model = unrolled_loss(fitted.module_, x, y, 3, 1.0, gen)
        teacher = unrolled_loss(fitted.module_, x, y, 3, 0.0, gen)
    assert float(always_model) == pytest.approx(float(free), rel=1e-6)
    # p = 0 feeds the true frames back: the mean of three one-step errors (teacher forcing).
    one_step = [np.mean(((fitted.predict_next(seq[:, j:j + 3]) - seq[:, j + 3]) / fitted.std_)
                        ** 2) for j in range(3)]
    assert float(teacher) == pytest.approx(np.mean(one_step), rel=1e-4)
    assert abs(float(teacher) - float(free)) > 1e-4  # the two unrolls differ on this model


def test_scheduled_sampling_probability_rises_linearly_over_the_epochs(runs, monkeypatch):
    probabilities = []
    original = training.unrolled_loss

    def record(module, window, targets, k_steps, p_model=None, generator=None, *rest):
        probabilities.append(p_model)
        return original(module, window, targets, k_steps, p_model, generator, *rest)

    monkeypatch.setattr(training, "unrolled_loss", record)
    kwargs = {**TINY, "max_epochs": 5, "batch_size": 1000}  # one batch per epoch
    LSTMForecaster(lag=3, multi_step=2, scheduled_sampling=0.8, patience=10, **kwargs).fit(runs)
    np.testing.assert_allclose(probabilities, [0.0, 0.2, 0.4, 0.6, 0.8])


def test_validate_every_validates_only_every_kth_and_the_last_epoch(runs, monkeypatch):
    calls = []
    original = LSTMForecaster.rollout_batch

    def count(self, seeds, n_steps):
        calls.append(len(seeds))
        return original(self, seeds, n_steps)

    monkeypatch.setattr(LSTMForecaster, "rollout_batch", count)
    model = LSTMForecaster(lag=3, validate_every=3, patience=50, validation_fraction=0.3,
                           **{**TINY, "max_epochs": 7}).fit(runs)
    log = model.training_log_.set_index("epoch")
    validated = log.index[log["val_rollout_skill"].notna()].tolist()
    assert validated == [3, 6, 7]
    assert log.loc[validated, "val_loss"].notna().all() and log["val_loss"].notna().sum() == 3
    # one batched rollout of all 3 held-out runs per validation
    assert calls == [3, 3, 3]
    assert model.best_epoch_ in validated


@pytest.mark.parametrize(
    "kwargs, message",
    [({"scheduled_sampling": 0.5}, "scheduled_sampling=0.5 needs multi_step > 1"),
     ({"scheduled_sampling": 1.5, "multi_step": 2}, "scheduled_sampling must be in"),
     ({"validate_every": 0}, "validate_every must be an integer >= 1"),
     ({"selection": "r2"}, "selection must be one of 'skill', 'rollout', 'one_step'")],
)
def test_closed_loop_training_arguments_are_checked(kwargs, message):
    with pytest.raises(ValueError, match=message):
        LSTMForecaster(**kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_fit_matches_its_cpu_reload(runs):
    model = LSTMForecaster(lag=3, hidden_units=8, num_layers=1, batch_size=32, max_epochs=2,
                           device="cuda").fit(runs)
    assert model.device_.startswith("cuda")
    assert next(model.module_.parameters()).is_cuda
    on_cpu = LSTMForecaster.from_payload(model.save_payload(), device="cpu")
    np.testing.assert_allclose(model.rollout(runs[0][:3], 20), on_cpu.rollout(runs[0][:3], 20),
                               rtol=1e-4, atol=1e-5)
    assert np.isfinite(model.training_log_["val_rollout_skill"]).all()


@pytest.mark.parametrize("differences", [False, True])
def test_linear_skip_adds_a_linear_map_of_the_read_window(runs, differences):
    model = LSTMForecaster(lag=3, linear_skip=True, differences=differences, **TINY).fit(runs)
    plain = LSTMForecaster(lag=3, differences=differences, **TINY).fit(runs)
    read = 2 if differences else 3  # frames the network reads: increments or states
    assert model.n_parameters_ - plain.n_parameters_ == read * 3 * 3
    with torch.no_grad():
        model.module_.head.weight.zero_()
        model.module_.head.bias.zero_()
    A = model.module_.skip.weight.detach().numpy().astype(np.float64)  # (r, read·r)
    windows = latent_windows(runs, 3)[0][:20]
    z = (windows - model.mean_) / model.std_
    seq = np.diff(z, axis=1) if differences else z
    # Oracle: with a zero head the network is exactly the linear map of the flattened sequence
    # (the difference form adds it to the last state and subtracts its value at zero: nothing).
    out = seq.reshape(20, -1) @ A.T + (z[:, -1] if differences else 0.0)
    np.testing.assert_allclose(model.predict_next(windows), out * model.std_ + model.mean_,
                               rtol=1e-5, atol=1e-5)


def test_num_threads_applies_while_fitting_and_is_restored(runs, monkeypatch):
    seen = []
    original = training.unrolled_loss

    def record(module, *args):
        seen.append(torch.get_num_threads())
        return original(module, *args)

    monkeypatch.setattr(training, "unrolled_loss", record)
    before = torch.get_num_threads()  # 1 under this module's fixture
    torch.set_num_threads(2)
    try:
        LSTMForecaster(lag=3, num_threads=1, **TINY).fit(runs)
        assert set(seen) == {1} and torch.get_num_threads() == 2
        seen.clear()
        LSTMForecaster(lag=3, num_threads=None, **TINY).fit(runs)
        assert set(seen) == {2}
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="num_threads must be an integer >= 1"):
        LSTMForecaster(num_threads=0)


def _tf32_flags() -> tuple[bool, bool]:
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


def test_fit_and_rollout_run_without_tf32_and_restore_the_setting(runs, monkeypatch):
    """cuDNN's TF32 (on by default) would make a GPU fit roll out away from its CPU reload."""
    seen = []
    original = training.unrolled_loss

    def record(module, *args):
        seen.append(_tf32_flags())
        return original(module, *args)

    monkeypatch.setattr(training, "unrolled_loss", record)
    previous = _tf32_flags()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        model = LSTMForecaster(lag=3, **TINY).fit(runs)
        assert seen and set(seen) == {(False, False)} and _tf32_flags() == (True, True)
        seen.clear()
        model.module_.register_forward_pre_hook(lambda module, args: seen.append(_tf32_flags()))
        model.rollout(runs[0][:3], 4)
        model.predict_next(runs[0][None, :3])
        assert len(seen) == 5 and set(seen) == {(False, False)} and _tf32_flags() == (True, True)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


@pytest.mark.parametrize("residual", [False, True])
def test_linear_skip_starts_from_the_least_squares_autoregression(runs, residual):
    # A learning rate of 1e-12 leaves the initial network in place after one epoch.
    model = LSTMForecaster(lag=3, linear_skip=True, residual=residual, learning_rate=1e-12,
                           validation_fraction=0.3, **{**TINY, "max_epochs": 1}).fit(runs)
    train = [runs[i] for i in model.training_runs_]
    # Oracle: ordinary least squares y_k = c + Σ_j A_j y_{k−j} in physical units (a z-score
    # is an affine change of variables, so both fits predict the same states).
    X, Y, _ = latent_windows(train, 3)
    design = np.hstack([np.ones((len(X), 1)), X.reshape(len(X), -1)])
    coef, *_ = np.linalg.lstsq(design, Y, rcond=None)
    X_val = latent_windows([runs[i] for i in model.validation_runs_], 3)[0]
    expected = np.hstack([np.ones((len(X_val), 1)), X_val.reshape(len(X_val), -1)]) @ coef
    np.testing.assert_allclose(model.predict_next(X_val), expected, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------- residual on the linear path
def _least_squares_prediction(train, windows, lag):
    """Oracle: ordinary least squares y_k = c + Σ_j A_j y_{k−j} on ``train``, applied to windows."""
    X, Y, _ = latent_windows(train, lag)
    design = np.hstack([np.ones((len(X), 1)), X.reshape(len(X), -1)])
    coef, *_ = np.linalg.lstsq(design, Y, rcond=None)
    return np.hstack([np.ones((len(windows), 1)), windows.reshape(len(windows), -1)]) @ coef


def test_freeze_linear_trains_only_the_correction_on_top_of_the_least_squares_path(runs):
    kwargs = dict(lag=3, linear_skip=True, learning_rate=1e-2, validation_fraction=0.3,
                  **{**TINY, "max_epochs": 3})
    frozen = LSTMForecaster(freeze_linear=True, **kwargs).fit(runs)
    free = LSTMForecaster(**kwargs).fit(runs)
    start = LSTMForecaster(**{**kwargs, "learning_rate": 1e-12, "max_epochs": 1}).fit(runs)
    f, g, s = (m.module_.state_dict() for m in (frozen, free, start))
    # the linear path is exactly its least-squares start; the LSTM and the head's weight trained
    assert torch.equal(f["skip.weight"], s["skip.weight"]) and torch.equal(f["head.bias"], s["head.bias"])
    assert not torch.equal(g["skip.weight"], s["skip.weight"])
    assert not torch.equal(f["lstm.weight_hh_l0"], s["lstm.weight_hh_l0"])
    assert torch.count_nonzero(f["head.weight"]) > 0
    assert frozen.n_parameters_ == free.n_parameters_
    assert all(p.requires_grad for p in frozen.module_.parameters())
    # with its correction removed, the frozen network is the least-squares autoregression
    with torch.no_grad():
        frozen.module_.head.weight.zero_()
    X_val = latent_windows([runs[i] for i in frozen.validation_runs_], 3)[0]
    train = [runs[i] for i in frozen.training_runs_]
    np.testing.assert_allclose(frozen.predict_next(X_val), _least_squares_prediction(train, X_val, 3),
                               rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="freeze_linear=True needs linear_skip=True"):
        LSTMForecaster(freeze_linear=True)


def test_correction_is_the_prediction_minus_the_linear_path(runs, fitted):
    model = LSTMForecaster(lag=3, linear_skip=True, residual=True, **TINY).fit(runs)
    z = torch.as_tensor((latent_windows(runs, 3)[0][:20] - model.mean_) / model.std_,
                        dtype=torch.float32)
    with torch.no_grad():
        prediction, correction = model.module_.forward_with_correction(z)
        # oracle linear path by hand from the weights: last frame + A vec(window) + b
        A = model.module_.skip.weight.numpy().astype(np.float64)
        b = model.module_.head.bias.numpy().astype(np.float64)
    linear = z[:, -1].numpy() + z.flatten(1).numpy() @ A.T + b
    np.testing.assert_allclose(prediction.numpy() - linear, correction.numpy(), atol=1e-5)
    assert torch.equal(prediction, model.module_(z))


def test_correction_penalty_adds_lambda_times_the_mean_square_correction(runs, fitted):
    seq = np.stack([runs[0][k:k + 5] for k in range(10)])  # 3 inputs + 2 targets
    normalise = lambda a: torch.as_tensor((a - fitted.mean_) / fitted.std_, dtype=torch.float32)
    x, y = normalise(seq[:, :3]), normalise(seq[:, 3:])
    with torch.no_grad():
        plain = unrolled_loss(fitted.module_, x, y, 2)
        penalised = unrolled_loss(fitted.module_, x, y, 2, correction_penalty=0.7)
        # oracle: the corrections along the same closed-loop unroll, step by step
        c1 = fitted.module_.forward_with_correction(x)[1]
        x2 = torch.cat((x[:, 1:], fitted.module_(x)[:, None]), dim=1)
        c2 = fitted.module_.forward_with_correction(x2)[1]
    expected = 0.7 * (float(c1.pow(2).mean()) + float(c2.pow(2).mean())) / 2
    assert float(penalised) - float(plain) == pytest.approx(expected, rel=1e-4)
    # trained with a heavy penalty, the network's correction shrinks towards zero (without the
    # linear path the correction W · LayerNorm(h_T) carries the whole prediction)
    kwargs = dict(lag=3, learning_rate=1e-2, **{**TINY, "max_epochs": 4})
    z = normalise(latent_windows(runs, 3)[0])
    mean_square = []
    for penalty in (0.0, 100.0):
        model = LSTMForecaster(correction_penalty=penalty, **kwargs).fit(runs)
        with torch.no_grad():
            mean_square.append(float(model.module_.forward_with_correction(z)[1].pow(2).mean()))
    assert mean_square[1] < 0.1 * mean_square[0]
    with pytest.raises(ValueError, match="correction_penalty must be >= 0"):
        LSTMForecaster(correction_penalty=-1.0)


def test_select_initial_keeps_the_untrained_network_when_training_only_hurts(runs):
    # A learning rate of 0.5 wrecks the least-squares start, so no trained epoch beats epoch 0.
    kwargs = dict(lag=3, linear_skip=True, learning_rate=0.5, validation_fraction=0.3, patience=3,
                  gradient_clip=None, **{**TINY, "max_epochs": 4})
    kept = LSTMForecaster(select_initial=True, **kwargs).fit(runs)
    trained = LSTMForecaster(**kwargs).fit(runs)
    log = kept.training_log_.set_index("epoch")
    assert log.index[0] == 0 and np.isnan(log.loc[0, "train_loss"])
    assert kept.best_epoch_ == 0 and trained.best_epoch_ >= 1
    assert log.loc[0, "val_rollout_skill"] == log["val_rollout_skill"].max()
    # the restored weights are the least-squares autoregression (oracle: numpy lstsq) ...
    val = [runs[i] for i in kept.validation_runs_]
    X_val = latent_windows(val, 3)[0]
    train = [runs[i] for i in kept.training_runs_]
    np.testing.assert_allclose(kept.predict_next(X_val), _least_squares_prediction(train, X_val, 3),
                               rtol=1e-4, atol=1e-4)
    # ... and the logged epoch-0 skill is their closed-loop skill on the held-out runs
    forecast = kept.rollout_batch(np.stack([y[:3] for y in val]), 37)
    skill = closed_loop_skill([y[3:] for y in val], list(forecast), kept.climatology_)
    assert log.loc[0, "val_rollout_skill"] == pytest.approx(skill, abs=1e-9)
    # epochs 1.. are the same training as without select_initial (it draws no random numbers;
    # patience counts from epoch 0, so it may stop sooner)
    columns = ["train_loss", "val_rollout_skill"]
    np.testing.assert_array_equal(log.loc[1:, columns].to_numpy(),
                                  trained.training_log_[columns].to_numpy()[:len(log) - 1])


def test_linear_fit_all_starts_the_linear_path_from_every_run_held_out_ones_included(runs):
    kwargs = dict(lag=3, linear_skip=True, learning_rate=1e-12, validation_fraction=0.3,
                  **{**TINY, "max_epochs": 1})
    every_run = LSTMForecaster(linear_fit="all", **kwargs).fit(runs)
    training_only = LSTMForecaster(**kwargs).fit(runs)
    assert every_run.validation_runs_ == training_only.validation_runs_ != []
    X = latent_windows(runs, 3)[0]
    oracle_all = _least_squares_prediction(runs, X, 3)
    np.testing.assert_allclose(every_run.predict_next(X), oracle_all, rtol=1e-4, atol=1e-4)
    # the default fits the training runs only, a different linear model (the per-run offsets
    # of mode 2 make every subset's fit distinct)
    train = [runs[i] for i in training_only.training_runs_]
    np.testing.assert_allclose(training_only.predict_next(X), _least_squares_prediction(train, X, 3),
                               rtol=1e-4, atol=1e-4)
    assert np.abs(training_only.predict_next(X) - oracle_all).max() > 1e-3
    # the normalisation still comes from the training runs only
    np.testing.assert_array_equal(every_run.mean_, training_only.mean_)
    with pytest.raises(ValueError, match="linear_fit must be one of 'training', 'all'"):
        LSTMForecaster(linear_fit="everything")


def test_one_step_selection_rolls_out_every_fifth_validation_and_the_selected_checkpoint(runs, monkeypatch):
    """Closed-loop scores select nothing under one_step: they are logged every 5th validated
    epoch and for the selected checkpoint, whose scores equal a rollout of the restored weights,
    and the weights are those of a fit that rolls out at every epoch."""
    import rom_pipeline.rom.lstm.training as training

    kwargs = dict(lag=3, selection="one_step", patience=50, validation_fraction=0.3,
                  **{**TINY, "max_epochs": 12})
    model = LSTMForecaster(**kwargs).fit(runs)
    log = model.training_log_.set_index("epoch")
    logged = log.index[log["val_rollout_skill"].notna()].tolist()
    assert set(logged) == {5, 10, model.best_epoch_} and log["val_loss"].notna().all()
    val_runs = [runs[i] for i in model.validation_runs_]
    forecast = model.rollout_batch(np.stack([y[:3] for y in val_runs]), max(len(y) for y in val_runs) - 3)
    truth = [y[3:] for y in val_runs]
    predicted = [forecast[i, :len(t)] for i, t in enumerate(truth)]
    assert log.loc[model.best_epoch_, "val_rollout_r2"] == pytest.approx(
        closed_loop_r2(truth, predicted), abs=1e-9)
    monkeypatch.setattr(training, "ONE_STEP_ROLLOUT_EVERY", 1)
    every = LSTMForecaster(**kwargs).fit(runs)
    assert every.training_log_["val_rollout_skill"].notna().all()
    assert every.best_epoch_ == model.best_epoch_
    for key, value in model.module_.state_dict().items():
        assert torch.equal(value, every.module_.state_dict()[key])


def test_short_batches_roll_out_on_one_thread_and_long_ones_on_num_threads(runs):
    """A closed loop of fewer than ONE_THREAD_BELOW sequences runs on one torch thread (a second
    only slows its tiny products); a larger batch uses ``num_threads``; the caller's setting is
    restored either way."""
    from rom_pipeline.rom.lstm.forecaster import ONE_THREAD_BELOW

    model = LSTMForecaster(lag=3, num_threads=2, **TINY).fit(runs)
    seen = []
    model.module_.register_forward_hook(lambda *_: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    small = model.rollout_batch(np.stack([runs[0][:3]] * (ONE_THREAD_BELOW - 1)), 2)
    assert set(seen) == {1}
    seen.clear()
    large = model.rollout_batch(np.stack([runs[0][:3]] * ONE_THREAD_BELOW), 2)
    assert set(seen) == {2} and torch.get_num_threads() == before
    np.testing.assert_allclose(small[0], large[0], rtol=1e-6, atol=1e-9)  # the same forecast
