"""LSTM training speed at thesis scale: LSTMForecaster.fit against a bare PyTorch loop.

Latent set: 340 runs × 167 frames of a stable random VAR(1) in r = 19 modes, lag 5 → 55,080
windows; 2 × 128 LSTM, batch 512. ``fit`` holds out 20 % of the runs (68) and validates them
every ``validate_every`` epochs (one-step loss and one batched full-length closed-loop rollout of
all held-out runs); the baseline trains the same module on the same normalised training windows
with Adam and nothing else. Both are timed in this run, on this device, with the same number of
torch threads:

    ratio = (fit seconds per epoch) / (bare-loop seconds per epoch)      target ≤ 1.5
    time to early stop ≤ max_epochs × median fit seconds per epoch       target ≤ 10 min (CPU)

Usage::

    .venv/bin/python benchmarks/bench_lstm.py                 # thesis scale, CPU, ~2–3 min
    .venv/bin/python benchmarks/bench_lstm.py --quick         # smoke test, a few seconds
    .venv/bin/python benchmarks/bench_lstm.py --device cuda   # same on a GPU
    .venv/bin/python benchmarks/bench_lstm.py --full          # also train to the early stop
    .venv/bin/python benchmarks/bench_lstm.py --threads 2     # both sides on 2 threads (default 1)
"""
from __future__ import annotations

import argparse
import logging
import statistics
import time

import numpy as np
import torch

from rom_pipeline.rom.latent import latent_windows
from rom_pipeline.rom.lstm import LSTMForecaster, SequenceToOneLSTM, held_out_runs
from rom_pipeline.rom.lstm.training import full_fp32


def stable_var_runs(n_runs: int, n_frames: int, r: int, seed: int = 0) -> list[np.ndarray]:
    """Runs of y_{k+1} = A y_k + ε_k, A = 0.97·Q (Q random orthogonal, so ρ(A) = 0.97),
    ε ~ N(0, 0.05² diag(s²)) with POD-like mode scales s_i = 1 / (i + 1)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(r, r)))
    A = 0.97 * Q
    scale = 1.0 / np.arange(1, r + 1)
    runs = []
    for _ in range(n_runs):
        y = np.empty((n_frames, r))
        y[0] = scale * rng.normal(size=r)
        noise = 0.05 * scale * rng.normal(size=(n_frames, r))
        for k in range(1, n_frames):
            y[k] = A @ y[k - 1] + noise[k]
        runs.append(y)
    return runs


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop_epoch_seconds(model: LSTMForecaster, train_runs, epochs: int) -> list[float]:
    """Seconds per epoch of a plain loop with ``model``'s hyper-parameters: the same module on
    the same z-scored training windows, Adam and MSE; no clipping, validation or schedule. In full
    fp32 (TF32 off on CUDA) like ``fit``, so both sides do the same arithmetic."""
    with full_fp32():
        return _bare_loop(model, train_runs, epochs)


def _bare_loop(model: LSTMForecaster, train_runs, epochs: int) -> list[float]:
    device = torch.device(model.device if model.device != "auto" else
                          ("cuda" if torch.cuda.is_available() else "cpu"))
    X, Y, _ = latent_windows(train_runs, model.lag)
    frames = X.reshape(-1, X.shape[2])
    mean = torch.as_tensor(frames.mean(axis=0), dtype=torch.float32, device=device)
    std = torch.as_tensor(frames.std(axis=0), dtype=torch.float32, device=device)
    X = (torch.as_tensor(X, dtype=torch.float32, device=device) - mean) / std
    Y = (torch.as_tensor(Y, dtype=torch.float32, device=device) - mean) / std
    torch.manual_seed(model.seed)
    module = SequenceToOneLSTM(X.shape[2], model.hidden_units, model.num_layers, model.dropout,
                               model.use_layer_norm, model.residual).to(device)
    optimizer = torch.optim.Adam(module.parameters(), lr=model.learning_rate,
                                 weight_decay=model.weight_decay)
    generator = torch.Generator().manual_seed(model.seed)
    seconds = []
    for _ in range(epochs):
        _sync(device)
        tic = time.perf_counter()
        order = torch.randperm(X.shape[0], generator=generator).to(device)
        for start in range(0, X.shape[0], model.batch_size):
            idx = order[start:start + model.batch_size]
            loss = torch.nn.functional.mse_loss(module(X[idx]), Y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        _sync(device)
        seconds.append(time.perf_counter() - tic)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny problem, a few seconds")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | auto (default cpu)")
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per method")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads for both sides (default 1, the LSTM's "
                        "num_threads default)")
    parser.add_argument("--validate-every", type=int, default=None,
                        help="fit's validate_every (default: the LSTMForecaster default)")
    parser.add_argument("--full", action="store_true",
                        help="also train with max_epochs=100 until the early stop")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)

    if args.quick:
        n_runs, n_frames, r, hidden, batch, epochs = 40, 40, 19, 32, 512, args.epochs or 2
    else:
        n_runs, n_frames, r, hidden, batch, epochs = 340, 167, 19, 128, 512, args.epochs or 4
    lag = 5
    runs = stable_var_runs(n_runs, n_frames, r)
    n_windows = n_runs * (n_frames - lag)
    print(f"latent set: {n_runs} runs x {n_frames} frames, r = {r}, lag {lag} -> "
          f"{n_windows} windows; LSTM 2x{hidden}, batch {batch}; device {args.device}, "
          f"torch threads {torch.get_num_threads()}")

    hyper = dict(lag=lag, hidden_units=hidden, num_layers=2, batch_size=batch,
                 learning_rate=1e-3, device=args.device, seed=0, num_threads=args.threads)
    if args.validate_every is not None:
        hyper["validate_every"] = args.validate_every
    # The split is a pure function of the seed, so the baseline can train on the same runs as fit.
    probe = LSTMForecaster(max_epochs=1, **hyper)
    train_runs = [runs[i] for i in range(n_runs)
                  if i not in set(held_out_runs(n_runs, probe.validation_fraction, probe.seed))]
    before = bare_loop_epoch_seconds(probe, train_runs, epochs + 1)
    # One warm-up epoch is discarded from every timing (allocator, kernel selection).
    tic = time.perf_counter()
    model = LSTMForecaster(max_epochs=epochs + 1, patience=epochs + 1, **hyper).fit(runs)
    fit_wall = time.perf_counter() - tic
    fit_times = model.training_log_["seconds"].tolist()[1:]
    n_train = sum(runs[i].shape[0] - lag for i in model.training_runs_)
    print(f"LSTMForecaster.fit: {n_train} training windows, {len(model.validation_runs_)} held-out "
          f"runs validated every {model.validate_every} epoch(s) (one-step loss + one batched "
          f"closed-loop rollout); {epochs + 1} "
          f"epochs in {fit_wall:.1f} s on {model.device_}; {model.n_parameters_} parameters")
    # The baseline is timed once before and once after the fit, so load from other processes
    # on a shared machine weighs on both sides alike.
    bare_times = before[1:] + bare_loop_epoch_seconds(model, train_runs, epochs + 1)[1:]
    print("  per-epoch seconds, fit: " + " ".join(f"{x:.2f}" for x in fit_times)
          + " | bare loop (same module/tensors, Adam, no validation): "
          + " ".join(f"{x:.2f}" for x in bare_times))
    # Best-of timing is the figure least disturbed by other processes; the median is shown too.
    fit_epoch, bare_epoch = min(fit_times), min(bare_times)
    ratio = fit_epoch / bare_epoch
    median_ratio = statistics.median(fit_times) / statistics.median(bare_times)
    verdict = ("smoke test; the target applies at thesis scale" if args.quick
               else "met" if ratio <= 1.5 else "NOT met")
    print(f"seconds per epoch (best of {len(fit_times)} / {len(bare_times)}): fit {fit_epoch:.3f}, "
          f"bare loop {bare_epoch:.3f}")
    print(f"ratio fit / bare loop: {ratio:.2f}x  (target <= 1.5x: {verdict}); "
          f"ratio of medians {median_ratio:.2f}x")

    max_epochs = LSTMForecaster().max_epochs
    typical = statistics.median(fit_times)
    bound = max_epochs * typical
    verdict = "met" if bound <= 600 else "NOT met"
    print(f"time to early stop <= max_epochs x median s/epoch = {max_epochs} x {typical:.3f} = "
          f"{bound / 60:.1f} min  (target <= 10 min on CPU: {verdict})")

    if args.full:
        tic = time.perf_counter()
        full = LSTMForecaster(max_epochs=max_epochs, **hyper).fit(runs)
        elapsed = time.perf_counter() - tic
        best_r2 = full.training_log_["val_rollout_r2"].max()
        print(f"full fit: stopped after {len(full.training_log_)} epochs (best {full.best_epoch_}, "
              f"val_rollout_r2 {best_r2:.4f}) in {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
