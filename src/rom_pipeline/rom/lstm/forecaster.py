"""The LSTM latent forecaster: normalisation, fitting on whole runs, one-step and closed-loop
prediction, and the stored payload (science.md §7).

The forecaster z-scores each mode, z = (y − m) / s (m, s from the training windows only), trains a
:class:`~rom_pipeline.rom.lstm.network.SequenceToOneLSTM` with
:func:`~rom_pipeline.rom.lstm.training.train_network` (the equations of the network and of the
training methods are in those modules) and predicts ŷ_k = m + s ⊙ ẑ_k.
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

import numpy as np
import pandas as pd
import torch

from rom_pipeline.rom.latent import latent_windows
from rom_pipeline.rom.lstm._checks import check_int, check_range, resolve_device
from rom_pipeline.rom.lstm.network import SequenceToOneLSTM
from rom_pipeline.rom.lstm.training import (
    LOG_COLUMNS,
    PREDICT_CHUNK,
    SELECTIONS,
    TrainingSettings,
    closed_loop_r2,
    closed_loop_skill,
    full_fp32,
    held_out_runs,
    one_step_mse,
    seeded_training,
    torch_threads,
    train_network,
)

logger = logging.getLogger(__name__)

#: closed loops of fewer sequences than this run on one torch thread (see ``rollout_batch``)
ONE_THREAD_BELOW = 32

PAYLOAD_FORMAT = "rom_pipeline.LSTMForecaster/1"
LINEAR_FITS = ("training", "all")


class LSTMForecaster:
    """Latent forecaster y_k = F(y_{k−w}, …, y_{k−1}) with a sequence-to-one LSTM.

    Satisfies :class:`rom_pipeline.rom.forecaster.LatentForecaster`.

    Args:
        lag: window length w.
        hidden_units, num_layers, dropout: LSTM width, depth and dropout between layers.
        use_layer_norm: LayerNorm on the last hidden state before the head.
        residual: predict the normalised increment z_k − z_{k−1} instead of z_k.
        differences: read the window's increments and predict an increment that is zero for a
            constant window (:mod:`~rom_pipeline.rom.lstm.network`); needs lag >= 2, excludes ``residual``.
        num_threads: torch intra-op CPU threads while fitting and predicting (restored after;
            ``None``: leave torch's setting). A pinned count makes the weights independent of
            the runner's threads; default 1, the fastest when fits share the cores (test workers,
            a catalogue's regimes). A 2 x 128 LSTM trains 1.7x faster on 2 threads than on 1 on an idle
            2-core machine, hence 2 in the thesis environments; with the cores shared, GNU
            OpenMP's default spinning made 2 threads 2.6x slower than 1, which
            ``import rom_pipeline`` avoids by setting ``GOMP_SPINCOUNT`` (benchmarks/bench_lstm_threads.py).
        linear_skip: add a linear autoregressive path A · vec(window) (no bias) beside the LSTM's
            head, trained jointly: the model is a linear MVAR plus a nonlinear LSTM correction.
            Training starts from the least-squares linear model of the training windows (A and
            the head's bias from ``numpy.linalg.lstsq``, the head's weight 0).
        freeze_linear: with ``linear_skip``, keep the linear path (A and the head's bias) at its
            least-squares start: only the LSTM's correction W · LayerNorm(h_T) is trained, a
            nonlinear residual on top of the fixed autoregression.
        linear_fit: runs the least-squares start of ``linear_skip`` is fitted on: ``"training"``
            (the training runs only) or ``"all"`` (the held-out validation runs too, as the
            MVAR uses every run; the LSTM itself still never trains on them). With
            ``freeze_linear`` and ``"all"`` the linear path is the MVAR's least-squares fit, and
            the held-out runs choose only how much nonlinear correction to keep.
        correction_penalty: λ ≥ 0; the training loss gains λ · mean(c²), c the network's
            nonlinear correction in normalised units (:mod:`~rom_pipeline.rom.lstm.training`).
        select_initial: validate the untrained network too (epoch 0 of the log; with
            ``linear_skip`` the least-squares autoregression) and keep it if no trained epoch
            beats it on the held-out runs.
        normalize_input: per-mode z-score from the training windows (else m = 0, s = 1).
        batch_size, learning_rate, weight_decay: Adam mini-batch training.
        max_epochs, patience: epoch budget and early-stopping patience (epochs without an
            improvement of the selection metric).
        gradient_clip: max global gradient 2-norm (``None`` disables clipping).
        lr_patience, lr_factor: ``ReduceLROnPlateau`` on the selection metric.
        validation_fraction: share of whole runs held out when no validation trajectories are
            given: ceil(fraction · n_runs) runs picked by a permutation seeded with ``seed``.
        rollout_horizon: closed-loop validation steps per held-out run (``None``: the whole run).
        selection: checkpoint selection and early stopping on the held-out runs: ``"skill"``
            (closed-loop skill against the training climatology, maximised; :mod:`~rom_pipeline.rom.lstm.training`),
            ``"rollout"`` (closed-loop latent R² against each run's own mean, maximised) or
            ``"one_step"`` (one-step validation MSE, minimised; the closed-loop scores are then
            logged every 5th validation and for the selected checkpoint only).
        multi_step: k > 1 trains on k-step unrolled predictions, loss averaged over the k steps,
            gradient through the whole unroll.
        noise_std: std σ of the Gaussian noise added to the training inputs, in normalised units
            (σ × each mode's training std); targets are never noised.
        scheduled_sampling: final probability p ∈ [0, 1] that a fed-back frame of the k-step
            unroll is the model's prediction rather than the true frame (needs multi_step > 1).
            The probability rises linearly from 0 (teacher forcing) in epoch 1 to p at
            ``max_epochs``. ``None``: every fed-back frame is a prediction from the first epoch.
        validate_every: validate (one-step loss and closed-loop rollouts) every k-th epoch and
            at the last one; ``patience`` and ``lr_patience`` stay counted in epochs.
        clip_rollout: if set, every closed-loop state is clamped per mode to the training range
            [min, max] widened by ``clip_rollout`` × (max − min) on each side, so a rollout can
            leave the data it was trained on only by that margin (None: no bound). One-step
            predictions are never clamped.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        seed: seeds weight initialisation, batch order, the run split and the input noise.

    Attributes (after ``fit``):
        module_: the trained :class:`SequenceToOneLSTM` (best checkpoint restored).
        mean_, std_: (r,) normalisation statistics of the training windows.
        climatology_: (r,) mean latent state of all frames of the training runs, the reference
            forecast of ``selection="skill"``.
        training_log_: one row per epoch with columns ``LOG_COLUMNS``.
        best_epoch_: epoch (1-based; 0: the untrained network, ``select_initial``) of the
            restored checkpoint.
        n_parameters_: parameter count of the network.
        validation_runs_, training_runs_: indices into ``trajectories`` of the held-out and
            training runs (``validation_runs_`` is empty when validation trajectories are given).
        fit_seconds_: wall time of ``fit``.
        device_: device the model lives on, as a string.
    """

    name = "LSTM"

    def __init__(
        self,
        lag: int = 5,
        hidden_units: int = 64,
        num_layers: int = 2,
        dropout: float = 0.0,
        use_layer_norm: bool = True,
        residual: bool = False,
        differences: bool = False,
        normalize_input: bool = True,
        batch_size: int = 256,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        max_epochs: int = 60,
        patience: int = 12,
        gradient_clip: float | None = 1.0,
        lr_patience: int = 5,
        lr_factor: float = 0.5,
        validation_fraction: float = 0.2,
        rollout_horizon: int | None = None,
        selection: str = "skill",
        multi_step: int = 1,
        noise_std: float = 0.0,
        clip_rollout: float | None = 0.1,
        device: str = "auto",
        seed: int = 0,
        scheduled_sampling: float | None = None,
        validate_every: int = 1,
        linear_skip: bool = False,
        num_threads: int | None = 1,
        freeze_linear: bool = False,
        correction_penalty: float = 0.0,
        select_initial: bool = False,
        linear_fit: str = "training",
    ) -> None:
        self.lag = lag
        self.hidden_units = hidden_units
        self.num_layers = num_layers
        self.dropout = dropout
        self.use_layer_norm = use_layer_norm
        self.residual = residual
        self.differences = differences
        self.normalize_input = normalize_input
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.gradient_clip = gradient_clip
        self.lr_patience = lr_patience
        self.lr_factor = lr_factor
        self.validation_fraction = validation_fraction
        self.rollout_horizon = rollout_horizon
        self.selection = selection
        self.multi_step = multi_step
        self.noise_std = noise_std
        self.clip_rollout = clip_rollout
        self.device = device
        self.seed = seed
        self.scheduled_sampling = scheduled_sampling
        self.validate_every = validate_every
        self.linear_skip = linear_skip
        self.num_threads = num_threads
        self.freeze_linear = freeze_linear
        self.correction_penalty = correction_penalty
        self.select_initial = select_initial
        self.linear_fit = linear_fit
        self._check_hyperparameters()

    # ------------------------------------------------------------------ hyper-parameters
    def get_hyperparameters(self) -> dict[str, Any]:
        """The ``__init__`` arguments as plain Python values."""
        return {key: getattr(self, key) for key in _HYPERPARAMETERS}

    def _check_hyperparameters(self) -> None:
        for key in ("lag", "hidden_units", "num_layers", "batch_size", "max_epochs", "patience",
                    "multi_step", "validate_every"):
            check_int(key, getattr(self, key), minimum=1)
        check_int("lr_patience", self.lr_patience, minimum=0)
        check_int("seed", self.seed, minimum=0)
        if self.rollout_horizon is not None:
            check_int("rollout_horizon", self.rollout_horizon, minimum=1)
        if self.num_threads is not None:
            check_int("num_threads", self.num_threads, minimum=1)
        for key in ("use_layer_norm", "residual", "differences", "normalize_input",
                    "linear_skip", "freeze_linear", "select_initial"):
            if not isinstance(getattr(self, key), (bool, np.bool_)):
                raise ValueError(f"{key} must be True or False, got {getattr(self, key)!r}")
        if self.differences and self.residual:
            raise ValueError(
                "residual and differences are both true: differences already predicts an "
                "increment; set residual false"
            )
        if self.differences and isinstance(self.lag, int) and self.lag < 2:
            raise ValueError(
                f"differences needs lag >= 2 (the window's increments), got lag = {self.lag}"
            )
        check_range("dropout", self.dropout, 0.0, 1.0, "[0, 1)", hi_open=True)
        check_range("learning_rate", self.learning_rate, 0.0, math.inf, "> 0", lo_open=True)
        check_range("weight_decay", self.weight_decay, 0.0, math.inf, ">= 0")
        check_range("lr_factor", self.lr_factor, 0.0, 1.0, "in (0, 1)", lo_open=True,
                     hi_open=True)
        check_range("validation_fraction", self.validation_fraction, 0.0, 1.0, "in [0, 1)",
                     hi_open=True)
        check_range("noise_std", self.noise_std, 0.0, math.inf, ">= 0")
        check_range("correction_penalty", self.correction_penalty, 0.0, math.inf, ">= 0")
        if self.linear_fit not in LINEAR_FITS:
            raise ValueError(f"linear_fit must be one of {', '.join(map(repr, LINEAR_FITS))}, "
                             f"got {self.linear_fit!r}")
        if self.freeze_linear and not self.linear_skip:
            raise ValueError("freeze_linear=True needs linear_skip=True (it keeps the linear "
                             "path at its least-squares start); set linear_skip or drop "
                             "freeze_linear")
        if self.clip_rollout is not None:
            check_range("clip_rollout", self.clip_rollout, 0.0, math.inf,
                         ">= 0 (or None for no bound)")
        if self.gradient_clip is not None:
            check_range("gradient_clip", self.gradient_clip, 0.0, math.inf,
                         "> 0 (or None to disable clipping)", lo_open=True)
        if self.selection not in SELECTIONS:
            raise ValueError(
                f"selection must be one of {', '.join(map(repr, SELECTIONS))}, got "
                f"{self.selection!r}"
            )
        if self.scheduled_sampling is not None:
            check_range("scheduled_sampling", self.scheduled_sampling, 0.0, 1.0,
                         "in [0, 1] (or None: always feed the predictions back)")
            if self.multi_step == 1:
                raise ValueError(
                    f"scheduled_sampling={self.scheduled_sampling!r} needs multi_step > 1 (it "
                    "chooses between true and predicted frames inside the k-step unroll); set "
                    "multi_step >= 2 or scheduled_sampling None"
                )
        resolve_device(self.device)

    def _new_module(self, n_modes: int) -> SequenceToOneLSTM:
        read_frames = self.lag - 1 if self.differences else self.lag
        return SequenceToOneLSTM(n_modes, self.hidden_units, self.num_layers, self.dropout,
                                 self.use_layer_norm, self.residual, self.differences,
                                 linear_skip_frames=read_frames if self.linear_skip else 0)

    def _training_settings(self) -> TrainingSettings:
        return TrainingSettings(**{f.name: getattr(self, f.name) for f in fields(TrainingSettings)})

    # ------------------------------------------------------------------ training
    def fit(
        self,
        trajectories: Sequence[np.ndarray],
        validation_trajectories: Sequence[np.ndarray] | None = None,
        progress: Any = None,
    ) -> LSTMForecaster:
        """Train on latent runs, each (K_i, r), and keep the best validation checkpoint.

        Args:
            trajectories: per-run latent trajectories (K_i, r).
            validation_trajectories: held-out runs (K_j, r). When ``None``,
                ceil(validation_fraction · n_runs) whole runs of ``trajectories`` are held out
                (never a split of overlapping windows, which would leak).
            progress: optional callback, called with no argument after every epoch.

        Returns:
            self, with ``module_`` holding the best checkpoint. One row per epoch
            (``LOG_COLUMNS``; validation columns NaN on epochs that are not validated) is logged
            and kept in ``training_log_``; losses are MSEs in normalised units.

        Raises:
            ValueError: on non-finite or mis-shaped runs, runs not longer than the lag (plus
                ``multi_step`` − 1), or a split that leaves no training run.
        """
        with torch_threads(self.num_threads), full_fp32():
            return self._fit(trajectories, validation_trajectories, progress)

    def _fit(
        self,
        trajectories: Sequence[np.ndarray],
        validation_trajectories: Sequence[np.ndarray] | None = None,
        progress: Any = None,
    ) -> LSTMForecaster:
        """:meth:`fit` under the forecaster's torch thread setting."""
        started = time.perf_counter()
        self._check_hyperparameters()
        runs = _as_runs("trajectories", trajectories)
        r = runs[0].shape[1]
        if validation_trajectories is None:
            validation_runs = held_out_runs(len(runs), self.validation_fraction, self.seed)
            train_idx = [i for i in range(len(runs)) if i not in set(validation_runs)]
            val_runs = [runs[i] for i in validation_runs]
        else:
            validation_runs = []
            train_idx = list(range(len(runs)))
            val_runs = _as_runs("validation_trajectories", validation_trajectories)
            if val_runs[0].shape[1] != r:
                raise ValueError(
                    f"validation_trajectories have r = {val_runs[0].shape[1]} modes but "
                    f"trajectories have r = {r}; pass latent runs of the same POD basis"
                )
        train_runs = [runs[i] for i in train_idx]
        if not val_runs:
            logger.warning(
                "LSTM: no validation runs (validation_fraction=0 and no validation_trajectories); "
                "checkpoints are selected on the training loss"
            )

        device = torch.device(resolve_device(self.device))
        self.n_modes_ = r
        X_one, _, _ = latent_windows(train_runs, self.lag)
        self._set_normalisation(X_one.reshape(-1, r), device)
        self.climatology_ = np.concatenate(train_runs).mean(axis=0)
        del X_one
        # Multi-step targets: windows of length w + k - 1 plus their target give the k-step
        # sequences [z_{k-w} ... z_{k+k'-1}]; windows still never cross runs.
        seq_lag = self.lag + self.multi_step - 1
        too_short = [i for i, run in zip(train_idx, train_runs) if run.shape[0] <= seq_lag]
        if self.multi_step > 1 and too_short:
            raise ValueError(
                f"multi_step={self.multi_step} with lag={self.lag} needs runs of more than "
                f"{seq_lag} frames, but runs {too_short} are shorter: lower multi_step"
            )
        X_seq, Y_seq, _ = latent_windows(train_runs, seq_lag)
        train_seq = self._to_normalised_tensor(
            np.concatenate([X_seq, Y_seq[:, None]], axis=1), device
        )
        del X_seq, Y_seq
        val_windows = val_targets = validate = None
        if val_runs:
            X_val, Y_val, _ = latent_windows(val_runs, self.lag)
            val_windows = self._to_normalised_tensor(X_val, device)
            val_targets = self._to_normalised_tensor(Y_val, device)

            def validate(closed_loop: bool) -> tuple[float, float, float]:
                loss = one_step_mse(self.module_, val_windows, val_targets)
                if not closed_loop:
                    return loss, math.nan, math.nan
                return (loss, *self._closed_loop_scores(val_runs))

        with seeded_training(self.seed, device):
            self.module_ = self._new_module(r).to(device)
            if self.linear_skip:
                windows, targets = train_seq[:, :self.lag], train_seq[:, self.lag]
                if self.linear_fit == "all" and val_runs:
                    windows = torch.cat((windows, val_windows))
                    targets = torch.cat((targets, val_targets))
                self._init_linear_path(windows, targets)
            frozen = ([self.module_.skip.weight, self.module_.head.bias]
                      if self.freeze_linear else [])
            for parameter in frozen:
                parameter.requires_grad_(False)
            result = train_network(self.module_, train_seq, self.lag, self._training_settings(),
                                   validate, progress)
            for parameter in frozen:
                parameter.requires_grad_(True)
        self.best_epoch_, self.training_log_ = result.best_epoch, result.log

        self.n_parameters_ = sum(p.numel() for p in self.module_.parameters())
        self.validation_runs_ = list(validation_runs)
        self.training_runs_ = train_idx
        self.device_ = str(device)
        self.fit_seconds_ = time.perf_counter() - started
        logger.info(
            "LSTM: %d parameters, best epoch %d of %d, fit in %.1f s on %s",
            self.n_parameters_, self.best_epoch_, int(self.training_log_["epoch"].max()),
            self.fit_seconds_,
            self.device_,
        )
        return self

    @torch.no_grad()
    def _init_linear_path(self, windows: torch.Tensor, targets: torch.Tensor) -> None:
        """Start ``linear_skip`` from the least-squares linear model of the training windows.

        With the sequence the network reads, s (n, m·r) flattened (the window, or its increments
        for ``differences``), and the head's target t = ẑ_k (direct) or ẑ_k − z_{k−1}
        (``residual``/``differences``), [A b] = argmin ‖[s 1][A b]ᵀ − t‖² (``numpy.linalg.lstsq``).
        The skip weight is set to A, the head's bias to b and its weight to 0, so the untrained
        network is that linear autoregression and the LSTM learns a correction to it.
        """
        w = windows.double().cpu().numpy()
        t = targets.double().cpu().numpy()
        seq = np.diff(w, axis=1) if self.differences else w
        if self.residual or self.differences:
            t = t - w[:, -1]
        design = np.hstack([seq.reshape(len(seq), -1), np.ones((len(seq), 1))])
        coef, *_ = np.linalg.lstsq(design, t, rcond=None)
        module = self.module_
        module.skip.weight.copy_(torch.as_tensor(coef[:-1].T, dtype=module.skip.weight.dtype))
        module.head.weight.zero_()
        module.head.bias.copy_(torch.as_tensor(coef[-1], dtype=module.head.bias.dtype))

    def _closed_loop_scores(self, runs: Sequence[np.ndarray]) -> tuple[float, float]:
        """(closed-loop latent R², skill against the climatology) over the held-out runs.

        Every run is seeded with its first true window and rolled out ``rollout_horizon`` steps
        (default: to its end), all runs in one batched rollout. R² is :func:`closed_loop_r2`
        (against each run's own mean), skill is :func:`closed_loop_skill` against
        ``climatology_``; both −inf when a rollout is non-finite.
        """
        horizons = [run.shape[0] - self.lag for run in runs]
        if self.rollout_horizon is not None:
            horizons = [min(h, self.rollout_horizon) for h in horizons]
        seeds = np.stack([run[: self.lag] for run in runs])
        forecast = self.rollout_batch(seeds, max(horizons))
        truth = [run[self.lag:self.lag + h] for run, h in zip(runs, horizons)]
        predicted = [forecast[i, :h] for i, h in enumerate(horizons)]
        return (closed_loop_r2(truth, predicted),
                closed_loop_skill(truth, predicted, self.climatology_))

    # ------------------------------------------------------------------ normalisation
    def _set_normalisation(self, frames: np.ndarray, device: torch.device) -> None:
        r = frames.shape[1]
        if self.normalize_input:
            mean = frames.mean(axis=0)
            std = frames.std(axis=0)
            constant = ~(std > 1e-12 * max(float(np.max(np.abs(frames))), 1e-300))
            if constant.any():
                logger.warning("LSTM: modes %s are constant in the training windows; their "
                               "std is set to 1", np.flatnonzero(constant).tolist())
                std = np.where(constant, 1.0, std)
        else:
            mean, std = np.zeros(r), np.ones(r)
        self.mean_ = np.asarray(mean, dtype=np.float64)
        self.std_ = np.asarray(std, dtype=np.float64)
        self.lower_ = frames.min(axis=0).astype(np.float64)
        self.upper_ = frames.max(axis=0).astype(np.float64)
        self._set_normalisation_tensors(device)

    def _set_normalisation_tensors(self, device: torch.device) -> None:
        self._mean_t = torch.as_tensor(self.mean_, dtype=torch.float32, device=device)
        self._std_t = torch.as_tensor(self.std_, dtype=torch.float32, device=device)
        self._bounds_t = None
        if self.clip_rollout is not None:
            # closed-loop states are kept inside the training range of each mode, widened on
            # both sides by clip_rollout x that range (in normalised units)
            margin = self.clip_rollout * (self.upper_ - self.lower_)
            lo = (self.lower_ - margin - self.mean_) / self.std_
            hi = (self.upper_ + margin - self.mean_) / self.std_
            self._bounds_t = (torch.as_tensor(lo, dtype=torch.float32, device=device),
                              torch.as_tensor(hi, dtype=torch.float32, device=device))

    def _to_normalised_tensor(self, values: np.ndarray, device: torch.device) -> torch.Tensor:
        tensor = torch.as_tensor(np.ascontiguousarray(values), dtype=torch.float32, device=device)
        return (tensor - self._mean_t) / self._std_t

    def _to_physical(self, tensor: torch.Tensor) -> np.ndarray:
        return (tensor * self._std_t + self._mean_t).cpu().numpy().astype(np.float64)

    # ------------------------------------------------------------------ prediction
    def _check_fitted(self) -> None:
        if not hasattr(self, "module_"):
            raise RuntimeError("this LSTMForecaster is not fitted: call fit(trajectories) or "
                               "LSTMForecaster.from_payload(payload) first")

    def _check_windows(self, key: str, windows: np.ndarray, ndim: int) -> np.ndarray:
        windows = np.asarray(windows, dtype=np.float64)
        expected = (self.lag, self.n_modes_) if ndim == 2 else ("n", self.lag, self.n_modes_)
        if windows.ndim != ndim or windows.shape[-2:] != (self.lag, self.n_modes_):
            raise ValueError(
                f"{key} has shape {windows.shape}; expected {expected} (oldest frame first, "
                "with the lag and number of POD modes the model was fitted with)"
            )
        if not np.all(np.isfinite(windows)):
            raise ValueError(f"{key} contains non-finite values; seed with true latent states")
        return windows

    @torch.inference_mode()
    def predict_next(self, windows: np.ndarray) -> np.ndarray:
        """One-step prediction: windows (n, lag, r), oldest first -> next states (n, r)."""
        self._check_fitted()
        windows = self._check_windows("windows", windows, ndim=3)
        self.module_.eval()
        device = self._mean_t.device
        out = []
        with torch_threads(self.num_threads), full_fp32():
            for start in range(0, windows.shape[0], PREDICT_CHUNK):
                z = self._to_normalised_tensor(windows[start:start + PREDICT_CHUNK], device)
                out.append(self._to_physical(self.module_(z)))
        return np.concatenate(out) if out else np.zeros((0, self.n_modes_))

    def rollout(self, seed_window: np.ndarray, n_steps: int) -> np.ndarray:
        """Closed-loop forecast: seed (lag, r) of true states -> (n_steps, r).

        Each prediction becomes the newest input. Divergence gives non-finite values, never an
        exception.
        """
        self._check_fitted()
        seed_window = self._check_windows("seed_window", seed_window, ndim=2)
        return self.rollout_batch(seed_window[None], n_steps)[0]

    @torch.inference_mode()
    def rollout_batch(self, seed_windows: np.ndarray, n_steps: int) -> np.ndarray:
        """Batched closed loop: seeds (B, lag, r) -> forecasts (B, n_steps, r).

        Fewer than ``ONE_THREAD_BELOW`` sequences run on one torch thread whatever
        ``num_threads``: each step is then a few tiny products, which a second thread only
        slows (thesis LSTM, 1663 steps of one sequence: 0.48 s on one thread, 0.58 s on two on an
        idle machine, up to 20 s on two with the cores shared; 68 sequences: 0.29 s against 0.19 s).
        """
        self._check_fitted()
        check_int("n_steps", n_steps, minimum=0)
        seed_windows = self._check_windows("seed_windows", seed_windows, ndim=3)
        self.module_.eval()
        window = self._to_normalised_tensor(seed_windows, self._mean_t.device)
        out = torch.empty((window.shape[0], int(n_steps), self.n_modes_),
                          dtype=window.dtype, device=window.device)
        threads = 1 if window.shape[0] < ONE_THREAD_BELOW else self.num_threads
        with torch_threads(threads), full_fp32():
            for step in range(int(n_steps)):
                prediction = self.module_(window)
                if self._bounds_t is not None:
                    prediction = torch.clamp(prediction, *self._bounds_t)
                out[:, step] = prediction
                window = torch.cat((window[:, 1:], prediction[:, None]), dim=1)
        return self._to_physical(out)

    # ------------------------------------------------------------------ persistence
    def save_payload(self) -> dict[str, Any]:
        """Everything needed to rebuild the fitted model, loadable with
        ``torch.load(path, weights_only=True)`` (tensors and plain Python values only)."""
        self._check_fitted()
        log = self.training_log_
        state = self.module_.state_dict()
        return {
            "format": PAYLOAD_FORMAT,
            "state_dict": {key: value.detach().cpu().clone() for key, value in state.items()},
            "hyperparameters": _plain(self.get_hyperparameters()),
            "n_modes": int(self.n_modes_),
            "mean": torch.as_tensor(self.mean_, dtype=torch.float64),
            "std": torch.as_tensor(self.std_, dtype=torch.float64),
            "lower": torch.as_tensor(self.lower_, dtype=torch.float64),
            "upper": torch.as_tensor(self.upper_, dtype=torch.float64),
            "climatology": torch.as_tensor(self.climatology_, dtype=torch.float64),
            "best_epoch": int(self.best_epoch_),
            "n_parameters": int(self.n_parameters_),
            "validation_runs": [int(i) for i in self.validation_runs_],
            "training_runs": [int(i) for i in self.training_runs_],
            "device": str(self.device_),
            # no wall times (fit_seconds_, the log's seconds): identical fits give identical
            # payloads; the times go to the training summary and training_log.csv
            "training_log": {c: [_plain(v) for v in log[c].tolist()] for c in LOG_COLUMNS
                             if c != "seconds"},
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], device: str = "cpu") -> LSTMForecaster:
        """Rebuild a fitted forecaster from :meth:`save_payload` output on ``device``."""
        if not isinstance(payload, dict) or payload.get("format") != PAYLOAD_FORMAT:
            raise ValueError(
                f"payload is not an LSTMForecaster payload (format "
                f"{payload.get('format') if isinstance(payload, dict) else type(payload)!r}, "
                f"expected {PAYLOAD_FORMAT!r}); create it with LSTMForecaster.save_payload()"
            )
        hyper = dict(payload["hyperparameters"])
        hyper["device"] = device
        model = cls(**hyper)
        torch_device = torch.device(resolve_device(device))
        r = int(payload["n_modes"])
        model.module_ = model._new_module(r)
        model.module_.load_state_dict(payload["state_dict"])
        model.module_.to(torch_device).eval()
        model.n_modes_ = r
        model.mean_ = payload["mean"].numpy().astype(np.float64)
        model.std_ = payload["std"].numpy().astype(np.float64)
        model.lower_ = payload["lower"].numpy().astype(np.float64)
        model.upper_ = payload["upper"].numpy().astype(np.float64)
        # payloads written before the climatology was stored: the training windows' mean
        model.climatology_ = payload.get("climatology", payload["mean"]).numpy().astype(np.float64)
        model._set_normalisation_tensors(torch_device)
        model.best_epoch_ = int(payload["best_epoch"])
        model.n_parameters_ = int(payload["n_parameters"])
        model.validation_runs_ = list(payload["validation_runs"])
        model.training_runs_ = list(payload["training_runs"])
        model.fit_seconds_ = float("nan")  # wall times are not stored with the model
        model.device_ = str(torch_device)
        model.training_log_ = pd.DataFrame(payload["training_log"], columns=LOG_COLUMNS)  # seconds: NaN
        return model


_HYPERPARAMETERS = (
    "lag", "hidden_units", "num_layers", "dropout", "use_layer_norm", "residual", "differences",
    "normalize_input", "batch_size", "learning_rate", "weight_decay", "max_epochs", "patience",
    "gradient_clip", "lr_patience", "lr_factor", "validation_fraction", "rollout_horizon",
    "selection", "multi_step", "noise_std", "clip_rollout", "device", "seed",
    "scheduled_sampling", "validate_every", "linear_skip", "num_threads", "freeze_linear",
    "correction_penalty", "select_initial", "linear_fit",
)

def _as_runs(key: str, trajectories: Sequence[np.ndarray]) -> list[np.ndarray]:
    if isinstance(trajectories, np.ndarray) and trajectories.ndim == 2:
        raise ValueError(f"{key} must be a sequence of (K_i, r) runs, got one array of shape "
                         f"{trajectories.shape}; wrap a single run in a list")
    runs = [np.asarray(run, dtype=np.float64) for run in trajectories]
    if not runs:
        raise ValueError(f"{key} is empty; pass at least one (K, r) latent run")
    for i, run in enumerate(runs):
        if run.ndim != 2:
            raise ValueError(f"{key}[{i}] has shape {run.shape}; expected (K, r)")
        if not np.all(np.isfinite(run)):
            raise ValueError(f"{key}[{i}] contains non-finite values")
    return runs


def _plain(value: Any) -> Any:
    """NumPy scalars -> Python scalars (torch.load(weights_only=True) refuses NumPy objects)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
