"""The shared rules of every parameters block (:class:`_Block`), the error they raise, and the
forecasters' own blocks (``mvar``, ``lstm``, and :func:`forecaster_config` for a forecaster that
brings no pydantic model of its own).

They live apart from :mod:`rom_pipeline.config` because the forecaster registry
(:mod:`rom_pipeline.registry`) needs them, and :mod:`rom_pipeline.config` builds the whole tree's
model from the registry: config -> registry -> config_blocks, no import circle.
"""
from __future__ import annotations

import typing
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """Raised when experiment parameters are invalid; the message lists every problem."""


def _accepts_bool(annotation: Any) -> bool:
    """Whether a field annotation admits a boolean (``bool``, ``Any``, or a union/container of them)."""
    if annotation is bool or annotation is Any:
        return True
    return any(_accepts_bool(arg) for arg in typing.get_args(annotation) if not isinstance(arg, str))


def _holds_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, (list, tuple)) and any(isinstance(v, bool) for v in value)


class _Block(BaseModel):
    """Shared rules of every block: unknown keys are errors, every float must be finite
    (``inf``/``nan`` are refused), and a boolean is never read as a number (pydantic would take
    ``true`` as 1)."""

    model_config = ConfigDict(
        extra="forbid", populate_by_name=True, frozen=True, allow_inf_nan=False
    )

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _holds_bool(value) and not _accepts_bool(field.annotation):
            raise ValueError(
                "a boolean where a number or name is wanted (true/false would be read as 1/0): "
                "write the number itself"
            )
        return value


PositiveFloat = Field(gt=0)


# --------------------------------------------------------------------------- forecasters
class MVARConfig(_Block):
    """``mvar``: the :class:`~rom_pipeline.rom.mvar.MVARForecaster` arguments (every default
    here equals the constructor's; tests/test_registry.py checks it)."""

    enabled: bool = True
    lag: int | Literal["aic", "bic", "hqic", "fpe"] = 5
    ridge_alpha: float = Field(1e-4, ge=0)
    eigenvalue_threshold: float | None = Field(None, gt=0)
    coint_rank: int | None = Field(
        None, ge=0,
        description="null: unrestricted levels MVAR; k: error-correction form of rank k (k "
        "directions mean-reverting, r - k neutral; 0 = VAR in differences), see rom/mvar.py",
    )
    max_lag: int | None = Field(
        None, ge=1, description="largest lag of the lag scan (lag_scan.csv; capped at half the "
        "shortest run); null: no scan, except that a criterion lag scans up to 20",
    )

    @field_validator("lag")
    @classmethod
    def _lag_positive(cls, v: Any) -> Any:
        if isinstance(v, int) and v < 1:
            raise ValueError("lag must be >= 1 (or one of aic, bic, hqic, fpe)")
        return v


class LSTMConfig(_Block):
    """``lstm``: the :class:`~rom_pipeline.rom.lstm.LSTMForecaster` arguments.

    Every default here equals the constructor's (tests/test_registry.py checks it). The base
    YAML sets only the default experiment's selected departures from them, never a default.
    """

    enabled: bool = True
    lag: int = Field(5, ge=1)
    hidden_units: int = Field(64, ge=1)
    num_layers: int = Field(2, ge=1)
    dropout: float = Field(0.0, ge=0, lt=1)
    use_layer_norm: bool = True
    residual: bool = False
    differences: bool = Field(
        False, description="read the window's increments, predict an increment that is zero for "
        "a constant window (every shape neutral; lag >= 2, not with residual), see rom/lstm/network.py",
    )
    normalize_input: bool = True
    batch_size: int = Field(256, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    max_epochs: int = Field(60, ge=1)
    patience: int = Field(12, ge=1, description="epochs without a better selection metric")
    gradient_clip: float | None = Field(1.0, gt=0, description="null: no clipping")
    lr_patience: int = Field(5, ge=0, description="epochs before the plateau schedule cuts the LR")
    lr_factor: float = Field(0.5, gt=0, lt=1)
    validation_fraction: float = Field(0.2, gt=0, lt=1)
    selection: Literal["skill", "rollout", "one_step"] = Field(
        "skill", description="checkpoint: closed-loop skill vs the training climatology "
        "(skill), closed-loop latent R2 (rollout) or one-step validation loss (one_step)",
    )
    rollout_horizon: int | None = Field(
        None, ge=1, description="closed-loop validation steps per held-out run (null: whole run)"
    )
    multi_step: int = Field(
        1, ge=1, description="k: train on the mean loss of k closed-loop steps (backprop "
        "through the unroll)",
    )
    noise_std: float = Field(
        0.0, ge=0, description="Gaussian noise on the training inputs, in units of each "
        "mode's training std",
    )
    clip_rollout: float | None = Field(
        0.1, ge=0, description="bound closed-loop states to the training range +- this fraction"
    )
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = Field(0, ge=0)
    scheduled_sampling: float | None = Field(
        None, ge=0, le=1, description="with multi_step > 1: final probability (reached "
        "linearly) that a fed-back frame is the prediction, not the truth; null: always",
    )
    validate_every: int = Field(
        1, ge=1, description="closed-loop validation every k epochs (and at the last)"
    )
    linear_skip: bool = Field(
        False, description="add a linear autoregressive path A vec(window) beside the LSTM head"
    )
    num_threads: int | None = Field(
        1, ge=1, description="torch CPU threads while fitting/predicting (null: torch's choice)"
    )
    freeze_linear: bool = Field(
        False, description="with linear_skip: keep the linear path at its least-squares start, "
        "train only the LSTM's nonlinear correction on top of it",
    )
    correction_penalty: float = Field(
        0.0, ge=0, description="lambda: the loss gains lambda * mean(c^2), c the LSTM's "
        "nonlinear correction (normalised units)",
    )
    select_initial: bool = Field(
        False, description="the untrained network (with linear_skip: the least-squares "
        "autoregression) is a checkpoint candidate, epoch 0",
    )
    linear_fit: Literal["training", "all"] = Field(
        "training", description="runs the least-squares start of linear_skip is fitted on: the "
        "training runs, or all (the held-out validation runs too, as the MVAR)",
    )

    @model_validator(mode="after")
    def _differences_form(self) -> LSTMConfig:
        if self.differences and self.residual:
            raise ValueError("differences = true already predicts an increment: set residual = false")
        if self.differences and self.lag < 2:
            raise ValueError(f"differences = true needs lag >= 2 (the window's increments), got {self.lag}")
        if self.scheduled_sampling is not None and self.multi_step == 1:
            raise ValueError(f"scheduled_sampling = {self.scheduled_sampling} needs multi_step >= 2 "
                             "(it mixes true and predicted frames in the k-step unroll); set "
                             "multi_step or scheduled_sampling = null")
        if self.freeze_linear and not self.linear_skip:
            raise ValueError("freeze_linear = true needs linear_skip = true (it keeps the linear "
                             "path at its least-squares start)")
        return self


def forecaster_config(estimator: type) -> type[_Block]:
    """The parameters block of a forecaster that brings no pydantic model of its own: one field
    per constructor argument (its annotation and default), plus ``enabled``. Unknown keys, inf/nan
    and booleans for numbers are refused as in every block; the defaults live in the constructor
    only."""
    import inspect

    hints = typing.get_type_hints(estimator.__init__)
    fields: dict[str, Any] = {"enabled": (bool, True)}
    for name, parameter in inspect.signature(estimator).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        default = ... if parameter.default is parameter.empty else parameter.default
        fields[name] = (hints.get(name, Any), default)
    return create_model(f"{estimator.__name__}Config", __base__=_Block, __module__="rom_pipeline.config", **fields)
