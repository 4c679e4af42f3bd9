"""The LSTM training loop: epochs of mini-batches, closed-loop training methods, validation every
k epochs, checkpoint selection by closed-loop skill, early stopping and the learning-rate schedule.

Training minimises the MSE in normalised units with Adam (weight decay), gradient-norm clipping and
a plateau learning-rate schedule. Three training methods target closed-loop (rollout) skill rather
than the one-step map (each a :class:`~rom_pipeline.rom.lstm.forecaster.LSTMForecaster` key and a
``lstm`` block / search key):

* ``noise_std`` σ: the training windows are corrupted, z̃ = z + σ ε with ε ~ N(0, I) in
  normalised units, i.e. noise of σ times each mode's training std, so the model learns to pull
  perturbed states back onto the data (targets stay clean);
* ``multi_step`` k: the loss is the mean MSE of k closed-loop steps, each prediction fed back as
  the newest input, with the gradient through all k steps (backpropagation through the rollout);
* ``scheduled_sampling`` p: with ``multi_step`` k > 1, each fed-back frame is the model's own
  prediction with probability p_e and the true frame otherwise, per window and step; p_e rises
  linearly from 0 in the first epoch to p at ``max_epochs`` (Bengio et al. 2015);
* ``correction_penalty`` λ: each step's loss gains λ · mean(c²), c the network's nonlinear
  correction (:meth:`~rom_pipeline.rom.lstm.network.SequenceToOneLSTM.forward_with_correction`),
  so the LSTM departs from the linear path (``linear_skip``) only where that pays on the data.

With ``select_initial`` the untrained network (epoch 0: with ``linear_skip`` the least-squares
autoregression) is validated before the first epoch and is a checkpoint like any other, so
training can only be kept where it beats its starting point on the held-out runs.

Checkpoints are selected, and training is stopped early, on held-out *whole runs*. The default
``selection="skill"`` scores the closed-loop rollouts of the held-out runs, each seeded with its
first true window, against the climatology forecast ȳ_clim (the mean latent state of the training
runs; ≈ 0 in centred POD coordinates)::

    skill = 1 − Σ_runs Σ_k ‖y_k − ŷ_k‖² / Σ_runs Σ_k ‖y_k − ȳ_clim‖²

so a checkpoint that predicts the mean scores 0 and only forecasts that beat the climatology score
above it. ``validate_every`` k validates every k-th epoch (and the last). The loop knows nothing of
normalisation or rollouts: the forecaster passes it a ``validate`` callable that returns the
one-step loss and, when asked, the closed-loop scores of the current weights.

With ``selection="one_step"`` the closed-loop scores select nothing: they are logged at every
``ONE_STEP_ROLLOUT_EVERY``-th validated epoch and for the selected checkpoint (computed on its
restored weights after training), which saves most of the rollouts' cost (about 10 % of an epoch
of the thesis LSTM) and leaves the selected weights unchanged.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

logger = logging.getLogger(__name__)

LOG_COLUMNS = ["epoch", "train_loss", "val_loss", "val_rollout_r2", "val_rollout_skill", "lr",
               "seconds"]
SELECTIONS = ("skill", "rollout", "one_step")
PREDICT_CHUNK = 16384
#: with selection "one_step", closed-loop scores are logged every this many validated epochs
ONE_STEP_ROLLOUT_EVERY = 5

#: validate(closed_loop) -> (one-step validation MSE, closed-loop latent R², closed-loop skill);
#: the last two NaN when ``closed_loop`` is False
Validation = Callable[[bool], tuple[float, float, float]]


@dataclass(frozen=True)
class TrainingSettings:
    """The training keys of :class:`~rom_pipeline.rom.lstm.forecaster.LSTMForecaster` (whose
    docstring defines each; the defaults live there only)."""

    batch_size: int
    learning_rate: float
    weight_decay: float
    max_epochs: int
    patience: int
    gradient_clip: float | None
    lr_patience: int
    lr_factor: float
    selection: str
    multi_step: int
    noise_std: float
    scheduled_sampling: float | None
    validate_every: int
    seed: int
    correction_penalty: float
    select_initial: bool


@dataclass(frozen=True)
class TrainingResult:
    """best_epoch: 1-based epoch whose weights were restored; log: one row per epoch
    (``LOG_COLUMNS``; validation columns NaN on epochs that were not validated)."""

    best_epoch: int
    log: pd.DataFrame


def train_network(module: nn.Module, sequences: torch.Tensor, lag: int,
                  settings: TrainingSettings, validate: Validation | None = None,
                  progress: Any = None) -> TrainingResult:
    """Train ``module`` in place and restore its best checkpoint.

    Args:
        module: maps windows (B, lag, r) to next states (B, r), normalised units.
        sequences: (n, lag + multi_step, r) normalised training sequences: the input window
            followed by the ``multi_step`` targets.
        lag: window length w.
        settings: epochs, batches, closed-loop methods, selection and schedule.
        validate: scores of the current weights on held-out runs (closed-loop scores when called
            with True, see the module docstring); ``None``: no validation runs,
            checkpoints are chosen (and training stopped) on the training loss.
        progress: optional callback, called with no argument after every epoch.

    The batch order is drawn from ``torch.Generator().manual_seed(seed)`` and the input noise and
    scheduled-sampling draws from a generator seeded with ``seed + 1`` on the sequences' device.
    """
    w, k_steps = lag, settings.multi_step
    device = sequences.device
    optimizer = torch.optim.Adam(module.parameters(), lr=settings.learning_rate,
                                 weight_decay=settings.weight_decay)
    has_validation = validate is not None
    maximise = settings.selection in ("skill", "rollout") and has_validation
    # patience and lr_patience are in epochs; the metric is seen every validate_every epochs
    every = settings.validate_every
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max" if maximise else "min", factor=settings.lr_factor,
        patience=math.ceil(settings.lr_patience / every),
    )
    order_gen = torch.Generator().manual_seed(settings.seed)
    noise_gen = torch.Generator(device=device).manual_seed(settings.seed + 1)
    n_train = sequences.shape[0]
    rows: list[dict[str, float]] = []
    best_metric, best_state, best_epoch, stale = None, None, 0, 0
    if settings.select_initial and has_validation:
        # epoch 0: the untrained network is a candidate checkpoint (no schedule step)
        tic = time.perf_counter()
        val_loss, val_r2, val_skill = validate(True)
        rows.append({"epoch": 0, "train_loss": math.nan, "val_loss": val_loss,
                     "val_rollout_r2": val_r2, "val_rollout_skill": val_skill,
                     "lr": settings.learning_rate, "seconds": time.perf_counter() - tic})
        best_metric = _selection_metric(settings.selection, val_loss, val_r2, val_skill)
        best_state = copy.deepcopy(module.state_dict())

    for epoch in range(1, settings.max_epochs + 1):
        tic = time.perf_counter()
        module.train()
        order = torch.randperm(n_train, generator=order_gen).to(device)
        # scheduled sampling: share of fed-back frames that are predictions, 0 -> p linearly
        p_model = None
        if settings.scheduled_sampling is not None:
            p_model = settings.scheduled_sampling * (
                (epoch - 1) / (settings.max_epochs - 1) if settings.max_epochs > 1 else 1.0)
        loss_sum = torch.zeros((), device=device)
        for start in range(0, n_train, settings.batch_size):
            batch = sequences[order[start:start + settings.batch_size]]
            window, targets = batch[:, :w], batch[:, w:]
            if settings.noise_std > 0:
                window = window + settings.noise_std * torch.randn(
                    window.shape, generator=noise_gen, device=device
                )
            loss = unrolled_loss(module, window, targets, k_steps, p_model, noise_gen,
                                 settings.correction_penalty)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if settings.gradient_clip is not None:
                nn.utils.clip_grad_norm_(module.parameters(), settings.gradient_clip)
            optimizer.step()
            loss_sum += loss.detach() * batch.shape[0]
        train_loss = float(loss_sum) / n_train

        validated = not has_validation or epoch % every == 0 or epoch == settings.max_epochs
        val_loss = val_r2 = val_skill = math.nan
        if has_validation and validated:
            closed_loop = (settings.selection != "one_step"
                           or (epoch // every) % ONE_STEP_ROLLOUT_EVERY == 0)
            val_loss, val_r2, val_skill = validate(closed_loop)
        lr = optimizer.param_groups[0]["lr"]
        row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
               "val_rollout_r2": val_r2, "val_rollout_skill": val_skill, "lr": lr,
               "seconds": time.perf_counter() - tic}
        rows.append(row)
        if progress is not None:
            progress()
        logger.debug(
            "LSTM epoch %3d  train_loss %.3e  val_loss %.3e  val_rollout_r2 %.4f  "
            "val_rollout_skill %.4f  lr %.1e  %.2f s", epoch, train_loss, val_loss, val_r2,
            val_skill, lr, row["seconds"],
        )
        if not math.isfinite(train_loss):
            logger.warning("LSTM: training loss is %s at epoch %d; stopping", train_loss, epoch)
            if best_state is None:
                best_state, best_epoch = copy.deepcopy(module.state_dict()), epoch
            break
        if not validated:
            continue

        if not has_validation:
            metric = train_loss
        else:
            metric = _selection_metric(settings.selection, val_loss, val_r2, val_skill)
        scheduler.step(metric)
        improved = best_metric is None or (metric > best_metric if maximise
                                           else metric < best_metric)
        if improved:
            best_metric, best_epoch, stale = metric, epoch, 0
            best_state = copy.deepcopy(module.state_dict())
        else:
            stale += every if has_validation else 1
        if stale >= settings.patience:
            logger.info("LSTM: early stop at epoch %d (no improvement for %d epochs)", epoch,
                        stale)
            break

    module.load_state_dict(best_state)
    module.eval()
    best_row = next((row for row in rows if row["epoch"] == best_epoch), None)
    if has_validation and best_row is not None and math.isnan(best_row["val_rollout_skill"]):
        # one_step selection: the selected checkpoint's closed-loop scores, on its own weights
        _, best_row["val_rollout_r2"], best_row["val_rollout_skill"] = validate(True)
    return TrainingResult(best_epoch, pd.DataFrame(rows, columns=LOG_COLUMNS))


def _selection_metric(selection: str, val_loss: float, val_r2: float, val_skill: float) -> float:
    """The held-out score ``selection`` ranks checkpoints by; non-finite scores rank last."""
    if selection == "skill":
        return val_skill if math.isfinite(val_skill) else -math.inf
    if selection == "rollout":
        return val_r2 if math.isfinite(val_r2) else -math.inf
    return val_loss if math.isfinite(val_loss) else math.inf


def unrolled_loss(module: nn.Module, window: torch.Tensor, targets: torch.Tensor, k_steps: int,
                  p_model: float | None = None, generator: torch.Generator | None = None,
                  correction_penalty: float = 0.0) -> torch.Tensor:
    """Mean loss of k closed-loop predictions from ``window`` (B, w, r) against targets (B, k, r)::

        L = (1/k) Σ_j [ mean((ẑ_j − z_j)²) + λ · mean(c_j²) ]

    with c_j the network's nonlinear correction at step j and λ = ``correction_penalty`` (the
    term is left out when λ = 0). Each step's prediction is fed back as the newest frame
    (gradient through the unroll); with ``p_model`` (scheduled sampling) each window of the batch
    feeds back its prediction with probability ``p_model`` and the true frame
    ``targets[:, step]`` otherwise.
    """
    loss = 0.0
    for step in range(k_steps):
        if correction_penalty > 0:
            prediction, correction = module.forward_with_correction(window)
            loss = loss + correction_penalty * correction.pow(2).mean()
        else:
            prediction = module(window)
        loss = loss + nn.functional.mse_loss(prediction, targets[:, step])
        if step + 1 < k_steps:
            fed_back = prediction
            if p_model is not None:
                use_model = torch.rand((window.shape[0], 1), generator=generator,
                                       device=window.device) < p_model
                fed_back = torch.where(use_model, prediction, targets[:, step])
            window = torch.cat((window[:, 1:], fed_back[:, None]), dim=1)
    return loss / k_steps


@torch.inference_mode()
def one_step_mse(module: nn.Module, windows: torch.Tensor, targets: torch.Tensor) -> float:
    """Mean squared one-step error of ``module`` on windows (n, w, r) against targets (n, r), in
    chunks of ``PREDICT_CHUNK`` windows, accumulated in float64."""
    module.eval()
    sq = torch.zeros((), dtype=torch.float64, device=windows.device)
    for start in range(0, windows.shape[0], PREDICT_CHUNK):
        pred = module(windows[start:start + PREDICT_CHUNK])
        sq += ((pred - targets[start:start + PREDICT_CHUNK]) ** 2).sum(dtype=torch.float64)
    return float(sq) / targets.numel()


# ---------------------------------------------------------------------- selection metrics
def _pooled_skill(truth: Sequence[np.ndarray], forecast: Sequence[np.ndarray], reference) -> float:
    """1 − Σ ‖y − ŷ‖² / Σ ‖y − reference(y)‖² over matching (H_i, r) blocks; −inf if any forecast
    value is non-finite; 1 or −inf when every truth equals its reference."""
    num = den = 0.0
    for y, y_hat in zip(truth, forecast):
        y_hat = np.asarray(y_hat, dtype=np.float64)
        if not np.all(np.isfinite(y_hat)):
            return -math.inf
        num += float(np.sum((y - y_hat) ** 2))
        den += float(np.sum((y - reference(y)) ** 2))
    if den <= 0.0:
        return 1.0 if num == 0.0 else -math.inf
    return 1.0 - num / den


def closed_loop_r2(truth: Sequence[np.ndarray], forecast: Sequence[np.ndarray]) -> float:
    """Pooled R² over runs: 1 − Σ ‖y − ŷ‖² / Σ ‖y − ȳ_run‖² (ȳ_run per-mode mean of each run).

    Args:
        truth, forecast: matching lists of (H_i, r) blocks.

    Returns:
        The pooled R²; −inf if any forecast value is non-finite.
    """
    return _pooled_skill(truth, forecast, lambda y: y.mean(axis=0))


def closed_loop_skill(truth: Sequence[np.ndarray], forecast: Sequence[np.ndarray],
                      climatology: np.ndarray) -> float:
    """Pooled skill against a climatology forecast: 1 − Σ ‖y − ŷ‖² / Σ ‖y − c‖².

    Args:
        truth, forecast: matching lists of (H_i, r) blocks.
        climatology: (r,) the constant reference forecast c (the training runs' mean state).

    Returns:
        The skill (1: perfect, 0: as good as forecasting c, < 0: worse); −inf if any forecast
        value is non-finite; 1 or −inf if every truth equals c.
    """
    c = np.asarray(climatology, dtype=np.float64)
    return _pooled_skill(truth, forecast, lambda y: c)


def held_out_runs(n_runs: int, fraction: float, seed: int) -> list[int]:
    """Sorted indices of the ceil(fraction · n_runs) validation runs: the first entries of a
    permutation of range(n_runs) drawn from ``torch.Generator().manual_seed(seed)``."""
    n_val = math.ceil(fraction * n_runs)
    if n_val == 0:
        return []
    if n_val >= n_runs:
        raise ValueError(
            f"validation_fraction={fraction} holds out {n_val} of {n_runs} runs, leaving none to "
            "train on: pass more runs, a smaller validation_fraction, or validation_trajectories"
        )
    perm = torch.randperm(n_runs, generator=torch.Generator().manual_seed(seed))
    return sorted(int(i) for i in perm[:n_val])


# ---------------------------------------------------------------------- torch state
@contextlib.contextmanager
def torch_threads(n_threads: int | None):
    """Run the block with ``torch.set_num_threads(n_threads)`` (None: unchanged), then restore."""
    previous = torch.get_num_threads()
    if n_threads is not None and n_threads != previous:
        torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


@contextlib.contextmanager
def full_fp32():
    """Run the block in full fp32 on CUDA: TF32 off in cuDNN (the LSTM kernels) and in CUDA
    matrix products, the caller's settings restored after (no effect on CPU).

    cuDNN's default TF32 rounds the recurrent products' inputs to a 10-bit mantissa. Measured on
    an H200 (benchmarks/results/lstm_cuda.md): a model fitted on the GPU rolled out up to 2e-3
    (relative) away from its own CPU reload after 20 steps with TF32, 1.4e-4 without; closed
    loops amplify such differences."""
    previous = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = previous


@contextlib.contextmanager
def seeded_training(seed: int, device: torch.device):
    """Run the block (build, initialise and train a network) reproducibly: torch's global RNG
    seeded with ``seed`` inside :func:`torch.random.fork_rng` (the caller's RNG state is left as
    it was) and, on CPU, deterministic algorithms (the caller's setting restored after)."""
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    cuda_devices = []
    if device.type == "cuda":
        cuda_devices = [torch.cuda.current_device() if device.index is None else device.index]
    try:
        if device.type == "cpu":
            torch.use_deterministic_algorithms(True)
        with torch.random.fork_rng(devices=cuda_devices):
            torch.manual_seed(seed)
            yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])
