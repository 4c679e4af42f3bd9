"""Typed experiment parameters, validated before any work starts.

The blocks mirror what users already write (``sim``, ``test_sim``, ``model``, ``params``, ``noise``,
``forces``, ``alignment``, ``density``, ``train_ic``, ``test_ic``, ``execution``: the simulation;
``rom``: the POD; ``latent_dataset``; one block per registered forecaster, ``mvar``, ``lstm``, ...;
``eval``; ``search``), one ``conf/base/parameters_<pipeline>.yml`` per pipeline. The forecaster
blocks and the per-model search blocks come from :mod:`rom_pipeline.registry`, so
:class:`ExperimentConfig` and :class:`SearchConfig` are built from it on first use.
Every model forbids unknown keys, so a typo is an error, never silently
ignored. :func:`validate_parameters` turns pydantic's errors into one message that names the key,
the offending value and how to fix it.
"""
from __future__ import annotations

import itertools
import math
import re
import typing
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    Field,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)


from rom_pipeline.config_blocks import (  # noqa: F401  (re-exported: part of the contract)
    ConfigError,
    LSTMConfig,
    MVARConfig,
    PositiveFloat,
    _accepts_bool,
    _Block,
    _holds_bool,
    forecaster_config,
)


# --------------------------------------------------------------------------- simulation
class SimConfig(_Block):
    """``sim``: the training simulations' domain, horizon and time step."""

    N: int = Field(100, gt=0, description="number of agents")
    T: float = Field(20.0, gt=0, description="horizon of a training run [s]")
    dt: float = Field(0.04, gt=0, description="integration time step [s]")
    Lx: float = Field(25.0, gt=0)
    Ly: float = Field(25.0, gt=0)
    bc: Literal["periodic", "reflecting"] = "periodic"
    save_every: int = Field(1, ge=1, description="keep every k-th step as a frame")
    seed_base: int = Field(0, ge=0, description="training run k uses seed seed_base + k")

    @property
    def n_steps(self) -> int:
        return int(round(self.T / self.dt))


class TestSimConfig(_Block):
    """``test_sim``: the unseen test runs (longer horizon: forecasts go beyond training)."""

    T: float = Field(50.0, gt=0, description="horizon of a test run [s]")
    seed_base: int = Field(1000, ge=0, description="test run k uses seed seed_base + k")


class ModelConfig(_Block):
    """``model``: which particle model and speed law."""

    type: Literal["discrete", "dorsogna"] = "discrete"
    speed: float = Field(3.0, gt=0, description="v0 (discrete model)")
    speed_mode: Literal["constant", "constant_with_forces", "variable"] = "constant_with_forces"
    integrator: Literal["rk4", "semi_implicit_euler"] = "rk4"


class InteractionParams(_Block):
    """``params``: interaction radius (alignment) and D'Orsogna self-propulsion."""

    R: float = Field(4.0, gt=0, description="alignment radius")
    alpha: float = Field(1.5, gt=0, description="D'Orsogna self-propulsion")
    beta: float = Field(0.5, gt=0, description="D'Orsogna friction")


class NoiseConfig(_Block):
    kind: Literal["uniform", "gaussian"] = "gaussian"
    eta: float = Field(1.5, ge=0)
    match_variance: bool = True


class MorseParams(_Block):
    Ca: float = Field(0.5, ge=0)
    Cr: float = Field(0.2, ge=0)
    la: float = Field(1.5, gt=0)
    lr: float = Field(0.5, gt=0)
    mu_t: float = Field(0.3, ge=0)
    rcut_factor: float = Field(5.0, gt=0)


class ForcesConfig(_Block):
    enabled: bool = True
    type: Literal["morse"] = "morse"
    params: MorseParams = MorseParams()


class AlignmentConfig(_Block):
    enabled: bool = True
    strength: float = Field(0.0, ge=0, description="D'Orsogna alignment strength (discrete model: unused)")


class DensityConfig(_Block):
    nx: int = Field(64, ge=4)
    ny: int = Field(64, ge=4)
    bandwidth: float = Field(5.0, gt=0, description="Gaussian KDE bandwidth in grid cells")


# --------------------------------------------------------------------------- initial conditions
Pairing = Literal["product", "zip"]


def _pair(lists: dict[str, list[float]], pairing: str, where: str) -> list[dict[str, float]]:
    """Combine parameter lists into configurations: Cartesian product or element-wise zip.

    With ``zip`` lists of length 1 broadcast; other lengths must agree.
    """
    names = list(lists)
    values = [lists[n] for n in names]
    if pairing == "product":
        combos = itertools.product(*values)
    else:
        lengths = {len(v) for v in values if len(v) != 1}
        if len(lengths) > 1:
            raise ValueError(
                f"{where}: pairing 'zip' needs lists of equal length (or length 1), got "
                + ", ".join(f"{n}={len(v)}" for n, v in zip(names, values))
                + "; make them equal or use pairing: product"
            )
        n = lengths.pop() if lengths else 1
        combos = zip(*[v * n if len(v) == 1 else v for v in values])
    return [dict(zip(names, c)) for c in combos]


class _Family(_Block):
    enabled: bool = True
    n_samples_per_config: int = Field(1, ge=1)
    pairing: Pairing = "product"

    def grid(self) -> dict[str, list[float]]:  # overridden
        return {}

    def configurations(self, where: str) -> list[dict[str, float]]:
        grid = self.grid()
        for name, values in grid.items():
            if len(values) == 0:
                raise ValueError(f"{where}.{name} is an empty list: give at least one value")
        return _pair(grid, self.pairing, where)

    def run_count(self, where: str = "ic") -> int:
        return len(self.configurations(where)) * self.n_samples_per_config if self.enabled else 0


class GaussianIC(_Family):
    positions_x: list[float] = Field(
        [12.5], min_length=1, validation_alias=AliasChoices("positions_x", "test_positions_x")
    )
    positions_y: list[float] = Field(
        [12.5], min_length=1, validation_alias=AliasChoices("positions_y", "test_positions_y")
    )
    variances: list[float] = Field(
        [2.5], min_length=1, validation_alias=AliasChoices("variances", "test_variances")
    )

    @field_validator("variances")
    @classmethod
    def _positive(cls, v: list[float]) -> list[float]:
        if any(x <= 0 for x in v):
            raise ValueError("every variance must be > 0")
        return v

    def grid(self) -> dict[str, list[float]]:
        return {"center_x": self.positions_x, "center_y": self.positions_y, "variance": self.variances}


class UniformIC(_Family):
    n_runs: int = Field(1, ge=0, validation_alias=AliasChoices("n_runs", "n_samples"))

    def grid(self) -> dict[str, list[float]]:
        return {}

    def configurations(self, where: str) -> list[dict[str, float]]:
        return [{} for _ in range(self.n_runs)]


class RingIC(_Family):
    radii: list[float] = Field([5.0], min_length=1, validation_alias=AliasChoices("radii", "test_radii"))
    widths: list[float] = Field([0.8], min_length=1, validation_alias=AliasChoices("widths", "test_widths"))

    def grid(self) -> dict[str, list[float]]:
        return {"radius": self.radii, "width": self.widths}


class TwoClustersIC(_Family):
    separations: list[float] = Field(
        [7.0], min_length=1, validation_alias=AliasChoices("separations", "test_separations")
    )
    sigmas: list[float] = Field([2.0], min_length=1, validation_alias=AliasChoices("sigmas", "test_sigmas"))

    def grid(self) -> dict[str, list[float]]:
        return {"separation": self.separations, "sigma": self.sigmas}


class ICConfig(_Block):
    """``train_ic`` / ``test_ic``: the IC families, each a parameter grid × samples."""

    gaussian: GaussianIC = GaussianIC(enabled=False)
    uniform: UniformIC = UniformIC(enabled=False)
    ring: RingIC = RingIC(enabled=False)
    two_clusters: TwoClustersIC = TwoClustersIC(enabled=False)

    def families(self) -> dict[str, _Family]:
        return {
            "gaussian": self.gaussian,
            "uniform": self.uniform,
            "ring": self.ring,
            "two_clusters": self.two_clusters,
        }

    def run_count(self, where: str) -> int:
        return sum(f.run_count(f"{where}.{n}") for n, f in self.families().items())


# --------------------------------------------------------------------------- ROM
class ROMConfig(_Block):
    subsample: int = Field(1, ge=1)
    fixed_modes: int | None = Field(None, ge=1)
    pod_energy: float = Field(
        0.99, gt=0, le=1, validation_alias=AliasChoices("pod_energy", "energy_threshold")
    )
    density_transform: Literal["raw", "sqrt", "log"] = "raw"
    density_transform_eps: float = Field(1e-10, gt=0)
    shift_align: bool = False
    shift_align_ref: Literal["mean", "first", "median"] = "mean"
    shift_method: Literal["integer", "subpixel"] = Field(
        "integer", description="integer: whole-cell rolls; subpixel: continuous shifts applied in "
        "Fourier space (rom_pipeline.rom.shifts)",
    )


class LatentDatasetConfig(_Block):
    """``latent_dataset``: the windows of the shared latent dataset."""

    lag: int | None = Field(
        None, ge=1, description="lag of the shared latent dataset (null: the first registered "
        "forecaster's integer lag, i.e. the MVAR lag, else the LSTM lag)"
    )


# Lead-time windows of the reports (s after the forecast start): 0-2, 2-5, 5-10, 10-20, 20-end.
STANDARD_LEAD_WINDOWS = (0.0, 2.0, 5.0, 10.0, 20.0)


class EvalConfig(_Block):
    forecast_start: float | None = Field(
        None, gt=0, description="seconds from the start of a test run; default sim.T"
    )
    clamp_mode: Literal["none", "clamp", "clamp_renormalise"] = "none"
    mass_postprocess: Literal["none", "scale", "simplex"] = "none"
    shift_modes: list[Literal["oracle", "hold", "extrapolate", "lab_ensemble"]] = ["oracle", "hold"]
    valid_r2_threshold: float = 0.5
    snapshot_times: list[float] = Field(
        [], description="times [s] shown in the snapshot grid (default: 4 evenly spaced)"
    )
    animation_max_frames: int = Field(120, ge=2)
    order_parameters: bool = True
    ensemble_size: int = Field(20, ge=1, description="members of the lab_ensemble shift mode")
    ensemble_seed: int = Field(0, description="seed of the sampled tracks and climatology positions")
    track_order: int = Field(4, ge=1, description="VAR order of the track model (track increments)")
    track_method: Literal["alignment", "phase"] = Field(
        "phase", description="the track the lab_ensemble track model forecasts: alignment (the POD "
        "alignment shifts) | phase (the circular centre of mass of the reconstructed density; the "
        "forecast shape is placed on it)",
    )
    track_calibration: Literal["none", "heldout", "empirical"] = Field(
        "empirical", description="per-lead law of the track: none (the VAR's) | heldout (variances "
        "measured on held-out training runs from the forecast start) | empirical (the held-out "
        "error paths themselves)",
    )
    track_conditioning: Literal["none", "analogs", "scale"] = Field(
        "scale", description="empirical track law by the seed's concentration: none | analogs (the "
        "error paths of the nearest quarter of the training runs) | scale (every path rescaled by "
        "the fitted error scale at that concentration)",
    )
    ensemble_blend: Literal["none", "heldout"] = Field(
        "heldout", description="lab_ensemble blended with climatology: none (the forecast ensemble "
        "alone) | heldout (per-lead-window weights fitted on held-out training runs; "
        "rom_pipeline.evaluation.blend)",
    )
    blend_folds: int = Field(3, ge=2, description="folds of training runs of the heldout blend fit")
    blend_max_spread_skill: float | None = Field(
        1.0, gt=0, description="heldout blend: each window's weight minimises the held-out CRPS "
        "among those whose held-out spread/skill is at most max(this, that of the forecast ensemble "
        "alone); null: the CRPS-optimal weight, unconstrained",
    )
    lead_windows: list[float] | None = Field(
        None, description="edges [s after the forecast start] of the lead-time R2 windows "
        "[e0, e1), ..., [e_last, end]; null: 0, 2, 5, 10, 20 without the edges past the horizon",
    )


# --------------------------------------------------------------------------- search
# The keys a search grid may vary are each registered forecaster's constructor arguments
# (``SEARCH_KEYS``, built from rom_pipeline.registry on first use).


class SearchModesConfig(_Block):
    """POD mode counts r' to search; every r' must be at most the r of the stored basis.

    Both lists empty: the stored r only. ``pod_energy`` values become r' through the stored
    cumulative energy (smallest r' with energy >= the value, the POD stage's own rule).
    """

    fixed_modes: list[int] = []
    pod_energy: list[float] = []

    @field_validator("fixed_modes")
    @classmethod
    def _modes_positive(cls, v: list[int]) -> list[int]:
        if any(r < 1 for r in v):
            raise ValueError("every fixed_modes entry must be >= 1")
        return v

    @field_validator("pod_energy")
    @classmethod
    def _energy_range(cls, v: list[float]) -> list[float]:
        if any(not 0 < e <= 1 for e in v):
            raise ValueError("every pod_energy entry must be in (0, 1]")
        return v


class SearchModelConfig(_Block):
    """``search.<model>``: a grid of forecaster hyper-parameters (unlisted ones: the ``<model>``
    block)."""

    enabled: bool = True
    pairing: Pairing = "product"
    grid: dict[str, list[Any]] = {}
    modes: SearchModesConfig | None = Field(
        None, description="POD modes for this model only (null: search.modes)"
    )

    def configurations(self, where: str) -> list[dict[str, Any]]:
        """The grid's hyper-parameter sets (product or zip of the lists)."""
        if self.enabled and not self.grid:
            raise ValueError(
                f"{where}.grid is empty: give at least one hyper-parameter list (e.g. "
                f"{where}.grid.lag: [2, 3]; one value scores the configured model) or set "
                f"{where}.enabled: false"
            )
        for name, values in self.grid.items():
            if len(values) == 0:
                raise ValueError(f"{where}.grid.{name} is an empty list: give at least one value")
        return _pair(self.grid, self.pairing, f"{where}.grid") if self.grid else [{}]


class SearchPODConfig(_Block):
    """``search.pod``: POD settings to search (product of the lists). Each value needs a POD of its
    own, fitted per fold on the fitting runs only and shared by every model setting of that value;
    both lists empty: the stored basis only."""

    transform: list[Literal["raw", "sqrt", "log"]] = []
    shift_method: list[Literal["integer", "subpixel"]] = []

    def grid(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in (("transform", self.transform),
                                         ("shift_method", self.shift_method)) if v}


def _search_default(entry: Any) -> dict[str, Any]:
    """A registry entry's default ``search.<model>`` block: its ``search_grid``; a forecaster that
    declares none is not searched unless asked (``search.<model>.enabled: true``)."""
    return dict(entry.search_grid) or {"enabled": False}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` over ``base``, nested blocks merged key by key, except a given ``grid``, which
    replaces the default grid whole (``grid: {}`` is an empty grid, refused as such)."""
    out = dict(base)
    for key, value in override.items():
        if key != "grid" and isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class _SearchBase(_Block):
    """``search``: closed-loop validation of forecaster hyper-parameters and POD modes on held-out
    whole training runs (``kedro run --pipelines=hyperparameter_search``; see evaluation.search). One
    ``search.<model>`` block per registered forecaster (:class:`SearchConfig` adds them)."""

    validation: Literal["kfold", "holdout"] = "holdout"
    n_folds: int = Field(3, ge=2, description="kfold: runs split into this many held-out groups")
    holdout_fraction: float = Field(0.25, gt=0, lt=1, description="holdout: share of runs held out")
    seed: int = Field(0, ge=0, description="seeds the permutation of runs into folds")
    forecast_start: float | None = Field(
        None, gt=0, description="seconds; null: eval.forecast_start (both null: the largest lag), "
        "raised to the largest lag"
    )
    shift_mode: Literal["oracle", "hold", "extrapolate"] = "oracle"
    modes: SearchModesConfig = SearchModesConfig()
    pod: SearchPODConfig = SearchPODConfig()

    @model_validator(mode="before")
    @classmethod
    def _over_registry_defaults(cls, data: Any) -> Any:
        """A ``search.<model>`` block given in part keeps the rest of the registry's default
        (as the parameters files merge over conf/base), e.g. the LSTM's ``pairing: zip``."""
        from rom_pipeline.registry import FORECASTERS

        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, entry in FORECASTERS.items():
            if isinstance(data.get(name), dict):
                data[name] = _deep_merge(_search_default(entry), data[name])
        return data

    @model_validator(mode="after")
    def _known_grid_keys(self) -> _SearchBase:
        from rom_pipeline.registry import FORECASTERS

        problems = []
        for model, entry in FORECASTERS.items():
            allowed = entry.search_keys()
            block = getattr(self, model)
            unknown = sorted(set(block.grid) - set(allowed))
            if unknown:
                problems.append(
                    f"search.{model}.grid has unknown hyper-parameters {unknown}; choose from "
                    f"{', '.join(allowed)}"
                )
                continue
            try:
                combos = block.configurations(f"search.{model}")
            except ValueError as exc:
                problems.append(str(exc))
                continue
            for combo in combos:
                lag = combo.get("lag")
                if lag is not None and (isinstance(lag, bool) or not isinstance(lag, int)):
                    problems.append(f"search.{model}.grid.lag = {lag!r}: search lags must be integers")
                try:
                    entry.config.model_validate(combo)
                except ValidationError as exc:
                    problems.append(f"search.{model}.grid {combo}: " + "; ".join(
                        f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def enabled(self) -> list[str]:
        from rom_pipeline.registry import FORECASTERS

        return [name for name in FORECASTERS if getattr(self, name).enabled]


# --------------------------------------------------------------------------- experiment
class ExecutionBlock(_Block):
    """``execution``: where independent work runs (see :mod:`rom_pipeline.execution.parallel`)."""

    workers: int = Field(1, ge=1)
    scheduler_address: str | None = None
    cluster: Literal["local", "slurm"] = "local"
    slurm: dict[str, Any] = {}

    @field_validator("slurm")
    @classmethod
    def _safe_slurm(cls, value: dict[str, Any]) -> dict[str, Any]:
        from rom_pipeline.execution.parallel import check_slurm_options

        problems = check_slurm_options(value)
        if problems:
            raise ValueError("; ".join(problems))
        return value

    def to_execution(self):
        from rom_pipeline.execution.parallel import ExecutionConfig

        return ExecutionConfig(
            workers=self.workers, scheduler_address=self.scheduler_address,
            cluster=self.cluster, slurm=dict(self.slurm),
        )


def shared_lag(latent_dataset: LatentDatasetConfig, forecasters: typing.Iterable[_Block]) -> int:
    """``latent_dataset.lag``, else the first forecaster block (registration order) with an
    integer ``lag``: the MVAR lag, else (MVAR lag a criterion) the LSTM lag."""
    if latent_dataset.lag is not None:
        return latent_dataset.lag
    for block in forecasters:
        lag = getattr(block, "lag", None)
        if isinstance(lag, int) and not isinstance(lag, bool):
            return lag
    raise ValueError("no forecaster has an integer lag: set latent_dataset.lag")


class _ExperimentBase(_Block):
    """The whole parameter tree; :class:`ExperimentConfig` adds one block per registered
    forecaster (``mvar``, ``lstm``, ...) and the ``search`` block with its per-model blocks."""

    # ``kedro run --params experiment=NAME``: a named run, whose outputs go to <data_root>/NAME/
    # (rom_pipeline.settings.ExperimentConfigLoader); None: the environment's experiment. Not a
    # science parameter, so left out of dumps (config_used.yaml, generated environments).
    experiment: str | None = Field(None, exclude=True)
    sim: SimConfig = SimConfig()
    test_sim: TestSimConfig = TestSimConfig()
    model: ModelConfig = ModelConfig()
    params: InteractionParams = InteractionParams()
    noise: NoiseConfig = NoiseConfig()
    forces: ForcesConfig = ForcesConfig()
    alignment: AlignmentConfig = AlignmentConfig()
    density: DensityConfig = DensityConfig()
    train_ic: ICConfig = ICConfig(uniform=UniformIC(n_runs=4))
    test_ic: ICConfig = ICConfig(uniform=UniformIC(n_runs=1))
    rom: ROMConfig = ROMConfig()
    latent_dataset: LatentDatasetConfig = LatentDatasetConfig()
    eval: EvalConfig = EvalConfig()
    execution: ExecutionBlock = ExecutionBlock()

    @field_validator("experiment", mode="before")
    @classmethod
    def _experiment_name(cls, v: Any) -> Any:
        return None if v is None else validate_experiment_name(v)

    @property
    def dt_rom(self) -> float:
        return self.sim.dt * self.sim.save_every * self.rom.subsample

    @property
    def forecast_start(self) -> float:
        return self.eval.forecast_start if self.eval.forecast_start is not None else self.sim.T

    @property
    def lead_windows(self) -> tuple[float, ...]:
        """Edges of the lead-time windows: ``eval.lead_windows``, or (null) the standard
        ``STANDARD_LEAD_WINDOWS`` edges that fall inside the forecast horizon."""
        if self.eval.lead_windows is not None:
            return tuple(float(e) for e in self.eval.lead_windows)
        horizon = self.test_sim.T - self.forecast_start
        return tuple(e for e in STANDARD_LEAD_WINDOWS if e < horizon)

    def forecasters(self) -> dict[str, _Block]:
        """``{name: block}`` of every registered forecaster, in registration order."""
        from rom_pipeline.registry import FORECASTERS

        return {name: getattr(self, name) for name in FORECASTERS}

    def enabled_models(self) -> list[str]:
        """Names of the forecasters whose block has ``enabled: true``."""
        return [name for name, block in self.forecasters().items() if block.enabled]

    def shared_lag(self) -> int:
        """The lag of the shared latent dataset (:func:`shared_lag`)."""
        return shared_lag(self.latent_dataset, self.forecasters().values())

    @model_validator(mode="after")
    def _consistent(self) -> _ExperimentBase:
        problems: list[str] = []
        s = self.sim
        if self.model.type == "discrete" and self.model.speed * s.dt > self.params.R / 2:
            problems.append(
                f"model.speed * sim.dt = {self.model.speed} * {s.dt} = {self.model.speed * s.dt:g} "
                f"exceeds params.R / 2 = {self.params.R / 2:g}: agents would jump past their "
                "neighbours; lower sim.dt or model.speed, or raise params.R"
            )
        for key, horizon in (("sim.T", s.T), ("test_sim.T", self.test_sim.T)):
            steps = horizon / s.dt
            if not math.isclose(steps, round(steps), rel_tol=0, abs_tol=1e-6):
                below, above = math.floor(steps) * s.dt, math.ceil(steps) * s.dt
                problems.append(
                    f"{key} = {horizon} is not a whole number of steps of sim.dt = {s.dt} "
                    f"({steps:.4g} steps; it would be silently cut): use {below:g} or {above:g}"
                )
        for block, ic in (("train_ic", self.train_ic), ("test_ic", self.test_ic)):
            try:
                n = ic.run_count(block)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            if n == 0:
                problems.append(
                    f"{block} describes 0 runs: enable at least one family "
                    "(gaussian, uniform, ring, two_clusters) with non-empty lists"
                )
        if self.test_sim.T <= self.forecast_start:
            problems.append(
                f"test_sim.T = {self.test_sim.T} must be longer than eval.forecast_start = "
                f"{self.forecast_start} s (default sim.T): raise test_sim.T or lower eval.forecast_start"
            )
        frames_train = s.n_steps // (s.save_every * self.rom.subsample) + 1
        lags = {"latent_dataset.lag": self.shared_lag()}
        for m in self.enabled_models():
            lag = getattr(getattr(self, m), "lag", None)
            if isinstance(lag, int):
                lags[f"{m}.lag"] = lag
        for key, lag in lags.items():
            if lag >= frames_train:
                problems.append(
                    f"{key} = {lag} must be smaller than the {frames_train} ROM frames of a "
                    "training run (sim.T / (sim.dt * sim.save_every * rom.subsample) + 1): "
                    "lower the lag or rom.subsample"
                )
        rank = getattr(getattr(self, "mvar", None), "coint_rank", None)
        modes = self.rom.fixed_modes
        if "mvar" in self.enabled_models() and rank is not None and modes is not None and rank > modes:
            problems.append(
                f"mvar.coint_rank = {rank} exceeds rom.fixed_modes = {modes}: use "
                f"0..{modes}, or null for the unrestricted levels model"
            )
        if "lab_ensemble" in self.eval.shift_modes:
            if not self.rom.shift_align:
                problems.append(
                    "eval.shift_modes asks for 'lab_ensemble' but rom.shift_align is false: without "
                    "alignment the forecast already lives in the lab frame; drop 'lab_ensemble' or "
                    "set rom.shift_align: true"
                )
            if (self.eval.ensemble_blend == "heldout" and self.eval.blend_max_spread_skill is not None
                    and self.eval.ensemble_size < 2):
                problems.append(
                    f"eval.blend_max_spread_skill = {self.eval.blend_max_spread_skill} caps the blend's "
                    f"spread/skill ratio, which needs eval.ensemble_size >= 2 (it is "
                    f"{self.eval.ensemble_size}): raise eval.ensemble_size or set "
                    "eval.blend_max_spread_skill: null"
                )
            k0_track = int(round(self.forecast_start / self.dt_rom))
            if k0_track < self.eval.track_order + 1:
                problems.append(
                    f"eval.track_order = {self.eval.track_order} needs {self.eval.track_order + 1} "
                    f"conditioning frames but eval.forecast_start = {self.forecast_start} s gives "
                    f"{k0_track}: raise eval.forecast_start or lower eval.track_order"
                )
        if self.eval.lead_windows is not None:
            from rom_pipeline.evaluation.protocol import check_lead_windows

            try:
                check_lead_windows(self.eval.lead_windows, self.test_sim.T - self.forecast_start)
            except ValueError as exc:
                problems.append(str(exc))
        k0 = int(round(self.forecast_start / self.dt_rom))
        max_lag = max(v for v in lags.values())
        if k0 < max_lag:
            problems.append(
                f"eval.forecast_start = {self.forecast_start} s gives {k0} conditioning frames "
                f"at the ROM step {self.dt_rom:g} s but the models need {max_lag}: raise "
                f"eval.forecast_start to at least {max_lag * self.dt_rom:g} s"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def _format_errors(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(top level)"
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            lines.append(
                f"- {key} = {value!r}: unknown key; remove it or fix its spelling "
                "(see conf/base/parameters_*.yml for the accepted keys)"
            )
        elif err["type"] == "finite_number":
            lines.append(f"- {key} = {value!r}: must be a finite number (inf and nan are refused); "
                         "give a finite value")
        elif err["type"] in ("literal_error", "enum"):
            lines.append(f"- {key} = {value!r}: {err['msg']}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            shown = "" if isinstance(value, dict) else f" = {value!r}"
            lines.append(f"- {key}{shown}: {msg}")
    return "\n".join(lines)


EXPERIMENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def validate_experiment_name(name: Any, source: str = "globals.yml") -> str:
    """An experiment or run name (``globals.experiment``, or ``kedro run --params experiment=NAME``),
    checked: it becomes the folder ``<data_root>/<NAME>/`` and the MLflow run name, so it is one
    plain folder name (letters, digits, ``_``, ``.``, ``-``, starting with a letter or digit; no path
    separator, no ``..``, not empty).

    Raises:
        ConfigError: naming the value, where it came from (``source``) and the fix.
    """
    if not isinstance(name, str) or not EXPERIMENT_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(
            f"experiment = {name!r} ({source}): must be a simple folder name, i.e. a plain folder name "
            "(letters, digits, _ . -, starting with a letter or digit; no '/', no '..', not empty), "
            "because outputs go to <data_root>/<experiment>/; set e.g. `experiment: my_run` in "
            "conf/<env>/globals.yml, or name one run with --params experiment=my_run"
        )
    return name


# --------------------------------------------------------------------------- built from the registry
_BUILT: dict[tuple, tuple[type[_Block], type[_Block], tuple]] = {}


def _built() -> tuple[type[_Block], type[_Block]]:
    """(SearchConfig, ExperimentConfig) for the forecasters registered now (built once per
    registry: a test that registers a forecaster and restores the registry gets the original
    classes back, so models validated before and after compare equal). Each cached pair keeps
    its entries alive, so their ids in the key cannot be reused by other entries."""
    from rom_pipeline.registry import FORECASTERS

    key = tuple((name, id(entry)) for name, entry in FORECASTERS.items())
    if key not in _BUILT:
        search = create_model(
            "SearchConfig", __base__=_SearchBase, __module__=__name__,
            **{name: (SearchModelConfig, SearchModelConfig.model_validate(_search_default(e)))
               for name, e in FORECASTERS.items()},
        )
        experiment = create_model(
            "ExperimentConfig", __base__=_ExperimentBase, __module__=__name__,
            **{name: (e.config, e.config()) for name, e in FORECASTERS.items()},
            search=(search, search()),
        )
        _BUILT[key] = (search, experiment, tuple(FORECASTERS.values()))
    return _BUILT[key][:2]


def __getattr__(name: str) -> Any:
    """``ExperimentConfig``, ``SearchConfig`` and ``SEARCH_KEYS`` (built from the registry)."""
    if name == "ExperimentConfig":
        return _built()[1]
    if name == "SearchConfig":
        return _built()[0]
    if name == "SEARCH_KEYS":
        from rom_pipeline.registry import FORECASTERS

        return {n: e.search_keys() for n, e in FORECASTERS.items()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def moved_keys(params: dict[str, Any]) -> list[str]:
    """One message per key still at a place it moved from (the forecaster blocks left
    ``rom.models``, the shared lag left ``rom``), saying where it lives now."""
    rom = params.get("rom") if isinstance(params.get("rom"), dict) else {}
    messages = []
    for model, block in dict(rom.get("models") or {}).items():
        keys = ", ".join(f"{model}.{k}" for k in block) if isinstance(block, dict) else model
        messages.append(
            f"- rom.models.{model} = {block!r}: the forecaster blocks moved to the top level; write "
            f"`{model}:` (conf/base/parameters_{model}.yml), e.g. {keys}; on the command line "
            f"--params {model}.enabled=false instead of rom.models.{model}.enabled=false"
        )
    if "models" in rom and not rom.get("models"):
        messages.append("- rom.models: the forecaster blocks moved to the top level (mvar:, lstm:, ...)")
    if "lag" in rom:
        messages.append(
            f"- rom.lag = {rom['lag']!r}: the shared lag moved to latent_dataset.lag "
            "(conf/base/parameters_latent_dataset.yml)"
        )
    return messages


def validate_parameters(params: dict[str, Any]) -> ExperimentConfig:
    """Validate Kedro parameters into an :class:`ExperimentConfig`.

    Raises:
        ConfigError: listing every invalid key with its value and the fix.
    """
    experiment_config = _built()[1]
    known = set(experiment_config.model_fields)
    moved = moved_keys(params)
    if moved:
        raise ConfigError("Invalid experiment parameters:\n" + "\n".join(moved))
    # Kedro adds no keys of its own to ``params``; anything unknown is the user's.
    try:
        return experiment_config.model_validate(params)
    except ValidationError as exc:
        raise ConfigError(
            "Invalid experiment parameters:\n" + _format_errors(exc) + "\n(accepted top-level "
            f"blocks: {', '.join(sorted(known))})"
        ) from None
