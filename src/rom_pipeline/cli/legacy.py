"""Bring users' legacy experiment YAML files into the project as Kedro environments.

The users' old files (``shared/seed/configs``) use the same block names as this project's
parameters, but the old loader read several keys wrongly or not at all. :func:`convert_legacy`
maps an old file to what its authors *meant*, and reports every decision:

- ``sim.v0`` / ``sim.R`` / ``sim.eta`` are ``model.speed`` / ``params.R`` / ``noise.eta`` (the old
  loader ignored them and used v0 0.5, R 1.0 and uniform noise η 0.5; the noise *law* of a file
  without a ``noise`` block therefore stays ``uniform``);
- the ``density`` block wins over ``outputs.density_*``;
- ``rom.fixed_modes`` has priority over ``pod_energy`` / ``energy_threshold``;
- grid IC families run grid × ``n_samples_per_config``: their ``n_runs`` is reported, not used
  (``uniform``'s ``n_runs`` / ``n_samples`` is its count). Lists of equal length > 1 are paired
  element-wise (``pairing: zip``) when the authors' ``n_runs`` equals that count, or when the
  Cartesian product would repeat configurations; otherwise they form a Cartesian product;
- ``evaluation.*`` is ``eval.*``; ``test_ic.test_T`` is ``test_sim.T``; ``rom.mass_postprocess``
  is ``eval.mass_postprocess``; ``rom.eigenvalue_threshold`` and the old top-level ``mvar`` block fill
  ``mvar`` (the forecaster blocks are top-level: ``rom.models.<model>`` becomes ``<model>``,
  ``rom.lag`` becomes ``latent_dataset.lag``) where it is not set; ``eval.clamp_mode: C0`` is ``none``;
- everything else the project does not understand is listed as ``ignored: key = value (reason)``
  (extrapolation ICs as ``unsupported``), never dropped silently.

The result is complete (every parameter explicit), so an environment written from it does not
inherit anything from ``conf/base`` by accident.

Command line (also the ``rom-legacy`` console script)::

    python -m rom_pipeline.cli.legacy convert OLD.yaml [--env NAME] [--force]
    python -m rom_pipeline.cli.legacy run OLD.yaml [--env NAME] [--force] [kedro run options]
"""
from __future__ import annotations

import itertools
import json
import math
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import click
import yaml
from pydantic import AliasChoices, BaseModel

from rom_pipeline.config import (
    AlignmentConfig,
    ConfigError,
    DensityConfig,
    EvalConfig,
    ExecutionBlock,
    ForcesConfig,
    GaussianIC,
    InteractionParams,
    LSTMConfig,
    ModelConfig,
    MVARConfig,
    NoiseConfig,
    RingIC,
    ROMConfig,
    SimConfig,
    TestSimConfig,
    TwoClustersIC,
    UniformIC,
    validate_parameters,
)

__all__ = [
    "LegacyConversionError",
    "cli",
    "convert_file",
    "convert_legacy",
    "environment_name",
    "load_legacy_file",
    "render_environment",
    "write_environment",
]


class LegacyConversionError(ValueError):
    """The old file is unreadable or contradicts itself; the message lists every problem."""


_NOT_UNDERSTOOD = "not understood by rom_pipeline"
_CATALOG = "outputs are defined by the Kedro data catalog"
_FAMILIES: dict[str, type[BaseModel]] = {
    "gaussian": GaussianIC,
    "uniform": UniformIC,
    "ring": RingIC,
    "two_clusters": TwoClustersIC,
}
_GRID_LISTS = {
    "gaussian": ("positions_x", "positions_y", "variances"),
    "ring": ("radii", "widths"),
    "two_clusters": ("separations", "sigmas"),
}
_CLAMP_MODES = {"C0": "none"}
_PHYSICS_BLOCKS = ("sim", "test_sim", "model", "params", "noise", "forces", "alignment", "density")
_UNSET = object()


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _field_names(model: type[BaseModel]) -> dict[str, str]:
    """Every accepted spelling (field name and validation aliases) -> field name."""
    names: dict[str, str] = {}
    for name, info in model.model_fields.items():
        names[name] = name
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    names[choice] = name
        elif isinstance(alias, str):
            names[alias] = name
    return names


def _nested_model(model: type[BaseModel], field: str) -> type[BaseModel] | None:
    annotation = model.model_fields[field].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in d.items():
        path = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat


class _Converter:
    def __init__(self, old: dict[str, Any]):
        self.old = old
        self.out: dict[str, Any] = {}
        self.source: dict[str, str] = {}
        self.report: list[str] = []
        self.problems: list[str] = []
        self.invalid: str | None = None
        self._rom_threshold: tuple[str, Any] | None = None

    # ------------------------------------------------------------------ bookkeeping
    def ignored(self, key: str, value: Any, reason: str) -> None:
        self.report.append(f"ignored: {key} = {_fmt(value)} ({reason})")

    def mapped(self, old_key: str, value: Any, new_key: str, reason: str = "") -> None:
        tail = f" ({reason})" if reason else ""
        self.report.append(f"mapped: {old_key} = {_fmt(value)} -> {new_key}{tail}")

    def get(self, path: str, default: Any = _UNSET) -> Any:
        node: Any = self.out
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def set(self, path: str, value: Any, source: str, fallback: bool = False) -> bool:
        """Set ``path`` from old key ``source``.

        A second source for the same path must agree (else a problem is recorded), unless
        ``fallback``: then the value already set wins and the fallback is reported as ignored.
        Returns whether the value was taken.
        """
        current = self.get(path)
        if current is not _UNSET:
            if current == value:
                if source != self.source[path]:
                    self.report.append(
                        f"agrees: {source} = {_fmt(value)} (same as {self.source[path]})"
                    )
                return False
            if fallback:
                self.ignored(source, value, f"{self.source[path]} = {_fmt(current)} takes priority")
            else:
                self.problems.append(
                    f"{self.source[path]} = {_fmt(current)} and {source} = {_fmt(value)} both set "
                    f"{path}: keep one of them"
                )
            return False
        node = self.out
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
        self.source[path] = source
        return True

    def block(self, key: str) -> dict[str, Any] | None:
        value = self.old.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            self.problems.append(f"{key} = {_fmt(value)}: expected a mapping of keys")
            return None
        return value

    def passthrough(
        self,
        old: dict[str, Any],
        old_prefix: str,
        new_prefix: str,
        model: type[BaseModel],
        special: dict[str, Any] | None = None,
        ignore: dict[str, str] | None = None,
        fallback: bool = False,
    ) -> None:
        """Copy keys the schema knows (any accepted spelling), dispatching special ones."""
        special = special or {}
        ignore = ignore or {}
        names = _field_names(model)
        for key, value in old.items():
            where = f"{old_prefix}.{key}"
            if key in special:
                special[key](where, value)
            elif key in ignore:
                self.ignored(where, value, ignore[key])
            elif key in names:
                field = names[key]
                target = f"{new_prefix}.{field}"
                nested = _nested_model(model, field)
                if nested is not None and isinstance(value, dict):
                    self.passthrough(value, where, target, nested, fallback=fallback)
                else:
                    took = self.set(target, value, where, fallback=fallback)
                    # test_positions_x etc. are the test spelling of the same key: not a mapping
                    same = where == target or (
                        key == f"test_{field}" and old_prefix == new_prefix
                    )
                    if took and not same:
                        self.mapped(where, value, target)
            else:
                self.ignored(where, value, _NOT_UNDERSTOOD)

    # ------------------------------------------------------------------ blocks
    def convert(self) -> None:
        order = [
            ("model", self._plain(ModelConfig)), ("params", self._plain(InteractionParams)),
            ("noise", self._plain(NoiseConfig)), ("forces", self._plain(ForcesConfig)),
            ("alignment", self._plain(AlignmentConfig)), ("sim", self._sim),
            ("test_sim", self._plain(TestSimConfig)), ("density", self._density),
            ("train_ic", self._ic), ("test_ic", self._ic), ("rom", self._rom),
            ("eval", self._eval), ("evaluation", self._eval),
            ("execution", self._plain(ExecutionBlock)),
            # lower-priority sources last: they only fill what the blocks above left unset
            ("outputs", self._outputs), ("mvar", self._mvar_block),
        ]
        handled = {name for name, _ in order} | {"experiment_name"}
        for name, handler in order:
            block = self.block(name)
            if block is not None:
                handler(name, block)
        if "experiment_name" in self.old:
            self.report.append(
                f"mapped: experiment_name = {_fmt(self.old['experiment_name'])} -> the default "
                "environment / experiment name (outputs under data/<name>/)"
            )
        for key, value in self.old.items():
            if key not in handled:
                self.ignored(key, value, _NOT_UNDERSTOOD)
        self._finish()

    def _plain(self, model: type[BaseModel]):
        def handler(name: str, block: dict[str, Any]) -> None:
            self.passthrough(block, name, name, model)
        return handler

    def _sim(self, name: str, block: dict[str, Any]) -> None:
        def moved(target: str):
            def handler(where: str, value: Any) -> None:
                self.mapped(where, value, target, "the old loader ignored it; the written value is meant")
                self.set(target, value, where)
            return handler

        def integrator(where: str, value: Any) -> None:
            model_type = self.get("model.type", "discrete")
            if model_type == "discrete":
                self.ignored(where, value, "the discrete Vicsek model is a map with no integrator; "
                             "model.integrator applies to the D'Orsogna model only")
            else:
                self.mapped(where, value, "model.integrator")
                self.set("model.integrator", value, where)

        special = {"v0": moved("model.speed"), "R": moved("params.R"), "eta": moved("noise.eta"),
                   "integrator": integrator}
        ignore = {"neighbor_rebuild": "neighbours are searched every step with a periodic "
                                      "KD-tree; there is no rebuild interval"}
        self.passthrough(block, name, name, SimConfig, special=special, ignore=ignore)
        if "eta" in block and "noise" not in self.old:
            self.set("noise.kind", "uniform", "sim.eta")
            self.report.append(
                "default: noise.kind = uniform (the file has no noise block; uniform was the old "
                "loader's noise law, only its eta was wrong)"
            )

    def _density(self, name: str, block: dict[str, Any]) -> None:
        ignore = {"enabled": "density fields are always computed",
                  "method": "the density is the cell-averaged Gaussian KDE: histogram + Gaussian filter"}
        self.passthrough(block, name, name, DensityConfig, ignore=ignore)

    def _outputs(self, name: str, block: dict[str, Any]) -> None:
        reasons = {
            "run_name": "the environment name sets the output folder data/<name>/",
            "fps": "animation speed is fixed; eval.animation_max_frames limits the frames",
            "save_npz": _CATALOG,
        }
        for key, value in block.items():
            where = f"{name}.{key}"
            if key in ("density_resolution", "density_bandwidth"):
                fields = ("nx", "ny") if key == "density_resolution" else ("bandwidth",)
                given = [f"density.{f} = {_fmt(self.get(f'density.{f}'))}" for f in fields
                         if self.get(f"density.{f}") is not _UNSET]
                if given:
                    self.ignored(where, value, f"the density block wins: {', '.join(given)}")
                else:
                    targets = ", ".join(f"density.{f}" for f in fields)
                    self.mapped(where, value, targets, "the file has no density block value")
                    for f in fields:
                        self.set(f"density.{f}", value, where)
            elif key == "order_parameters":
                if self.set("eval.order_parameters", value, where, fallback=True):
                    self.mapped(where, value, "eval.order_parameters")
            elif key in reasons:
                self.ignored(where, value, reasons[key])
            elif key.startswith("save_"):
                self.ignored(where, value, _CATALOG)
            else:
                self.ignored(where, value, _NOT_UNDERSTOOD)

    # ------------------------------------------------------------------ initial conditions
    def _ic(self, name: str, block: dict[str, Any]) -> None:
        for key, value in block.items():
            where = f"{name}.{key}"
            if key == "type":
                self.ignored(where, value, "the mix is given by each family's enabled flag")
            elif key == "test_T" and name == "test_ic":
                self.mapped(where, value, "test_sim.T")
                self.set("test_sim.T", value, where)
            elif key in _FAMILIES:
                if isinstance(value, dict):
                    self._family(name, key, value)
                else:
                    self.problems.append(f"{where} = {_fmt(value)}: expected a mapping of keys")
            else:
                self.ignored(where, value, _NOT_UNDERSTOOD)

    def _family(self, block: str, family: str, old: dict[str, Any]) -> None:
        prefix = f"{block}.{family}"
        model = _FAMILIES[family]
        grid = family in _GRID_LISTS
        n_runs_old = old.get("n_runs") if grid else None
        extrapolation = {k: v for k, v in old.items() if k.startswith("extrapolation_")}
        rest = {k: v for k, v in old.items()
                if k not in extrapolation and not (grid and k == "n_runs")}
        self.passthrough(rest, prefix, prefix, model)
        for key, value in extrapolation.items():
            self.report.append(
                f"unsupported: {prefix}.{key} = {_fmt(value)} (extrapolation ICs outside the "
                "training grid are not supported; these runs are not generated)"
            )
        enabled = self.get(f"{prefix}.enabled", True)
        if "enabled" not in old:
            self.report.append(f"default: {prefix}.enabled = true (the family block is present)")
        if not grid:
            if enabled:
                self.report.append(f"count: {prefix} = {self.get(f'{prefix}.n_runs', 1)} runs "
                                   "(uniform's n_runs / n_samples is its count)")
            return
        if not enabled:
            if n_runs_old is not None:
                self.ignored(f"{prefix}.n_runs", n_runs_old, "the family is disabled")
            return
        lists = {}
        for field in _GRID_LISTS[family]:
            value = self.get(f"{prefix}.{field}", model.model_fields[field].default)
            lists[field] = list(value) if isinstance(value, (list, tuple)) else [value]
        samples = self.get(f"{prefix}.n_samples_per_config", 1)
        if not isinstance(samples, int) or any(len(v) == 0 for v in lists.values()):
            if n_runs_old is not None:  # validation names the bad value
                self.ignored(f"{prefix}.n_runs", n_runs_old, "grid families run grid x "
                             "n_samples_per_config")
            return
        explicit = self.get(f"{prefix}.pairing", None)
        n_extra = math.prod(len(v) if isinstance(v, list) else 1 for v in extrapolation.values()) \
            if extrapolation else 0
        if explicit is None:
            pairing, why = _choose_pairing(prefix, lists, samples, n_runs_old)
            self.set(f"{prefix}.pairing", pairing, f"{prefix} (list pairing)")
            if why:
                self.report.append(why)
        else:
            pairing = explicit
        count = (max(len(v) for v in lists.values()) if pairing == "zip"
                 else math.prod(len(v) for v in lists.values())) * samples
        if n_runs_old is not None:
            reason = f"grid families run grid x n_samples_per_config = {count} runs"
            if n_runs_old == count:
                reason += ", as the authors counted"
            elif extrapolation and n_runs_old == count + n_extra:
                reason += (f"; the authors' n_runs counted {n_extra} extrapolation runs too, "
                           "which are not generated")
            else:
                reason += f"; the authors' n_runs = {n_runs_old} differs and is not used"
            self.ignored(f"{prefix}.n_runs", n_runs_old, reason)

    # ------------------------------------------------------------------ ROM and evaluation
    def _rom(self, name: str, block: dict[str, Any]) -> None:
        def mass(where: str, value: Any) -> None:
            self.mapped(where, value, "eval.mass_postprocess")
            self.set("eval.mass_postprocess", value, where)

        def threshold(where: str, value: Any) -> None:
            # applied after rom.models (the specific key wins)
            self._rom_threshold = (where, value)

        def models(where: str, value: Any) -> None:
            if not isinstance(value, dict):
                self.problems.append(f"{where} = {_fmt(value)}: expected a mapping of keys")
                return
            for key, sub in value.items():
                sub_where = f"{where}.{key}"
                if key == "mvar" and isinstance(sub, dict):
                    def order(w: str, v: Any) -> None:
                        self.mapped(w, v, "mvar.lag")
                        self.set("mvar.lag", v, w)
                    self.passthrough(sub, sub_where, "mvar", MVARConfig,
                                     special={"order": order})
                elif key == "lstm" and isinstance(sub, dict):
                    ignore = {
                        "activation": "the LSTM cell's activations are fixed: sigmoid "
                                      "gates, tanh cell",
                        "loss": "the LSTM is trained on the MSE of the next latent state",
                    }
                    self.passthrough(sub, sub_where, "lstm", LSTMConfig, ignore=ignore)
                elif key in ("mvar", "lstm"):
                    self.problems.append(f"{sub_where} = {_fmt(sub)}: expected a mapping of keys")
                else:
                    self.ignored(sub_where, sub, _NOT_UNDERSTOOD)

        def shared_lag(where: str, value: Any) -> None:
            self.mapped(where, value, "latent_dataset.lag")
            self.set("latent_dataset.lag", value, where)

        special = {"mass_postprocess": mass, "eigenvalue_threshold": threshold, "models": models,
                   "lag": shared_lag}
        ignore = {"save_unaligned_pod": _CATALOG}
        self.passthrough(block, name, name, ROMConfig, special=special, ignore=ignore)
        if self._rom_threshold is not None:
            where, value = self._rom_threshold
            if self.set("mvar.eigenvalue_threshold", value, where, fallback=True):
                self.mapped(where, value, "mvar.eigenvalue_threshold",
                            "MVAR stability: companion spectral radius enforced at this threshold")
        fixed = self.get("rom.fixed_modes", None)
        if fixed is not None and self.get("rom.pod_energy", _UNSET) is not _UNSET:
            self.report.append(
                f"inactive: {self.source['rom.pod_energy']} = {_fmt(self.get('rom.pod_energy'))} "
                f"(rom.fixed_modes = {fixed} takes priority)"
            )

    def _mvar_block(self, name: str, block: dict[str, Any]) -> None:
        targets = {"order": "lag", "lag": "lag", "ridge_alpha": "ridge_alpha",
                   "eigenvalue_threshold": "eigenvalue_threshold", "max_lag": "max_lag",
                   "enabled": "enabled"}
        enforce = _UNSET
        for key, value in block.items():
            where = f"{name}.{key}"
            if key in targets:
                target = f"mvar.{targets[key]}"
                if self.set(target, value, where, fallback=True):
                    self.mapped(where, value, target, "top-level mvar block fills what rom.models.mvar leaves unset")
            elif key == "enforce_stability":
                enforce = (where, value)
            elif key == "train_fraction":
                self.ignored(where, value, "MVAR is fitted on every training run; only the LSTM "
                                           "holds runs out, lstm.validation_fraction")
            else:
                self.ignored(where, value, _NOT_UNDERSTOOD)
        if enforce is not _UNSET:
            where, value = enforce
            threshold = self.get("mvar.eigenvalue_threshold", None)
            if value and threshold is not None:
                self.mapped(where, value, "mvar.eigenvalue_threshold",
                            f"stability enforced at spectral radius {threshold}")
            elif value:
                self.ignored(where, value, "no eigenvalue_threshold given: the project enforces "
                             "stability only at mvar.eigenvalue_threshold")
            elif threshold is not None:
                node = self.out["mvar"]
                node["eigenvalue_threshold"] = None
                self.source["mvar.eigenvalue_threshold"] = where
                self.mapped(where, value, "mvar.eigenvalue_threshold = null",
                            f"threshold {threshold} reported but not enforced")
            else:
                self.ignored(where, value, "stability is not enforced without an eigenvalue_threshold")

    def _eval(self, name: str, block: dict[str, Any]) -> None:
        def clamp(where: str, value: Any) -> None:
            mode = _CLAMP_MODES.get(value, value) if isinstance(value, str) else value
            if mode != value:
                self.mapped(where, value, f"eval.clamp_mode = {mode}",
                            "legacy C0 = no clamping of the lifted density")
            elif where != "eval.clamp_mode":
                self.mapped(where, value, "eval.clamp_mode")
            self.set("eval.clamp_mode", mode, where)

        def forecast_end(where: str, value: Any) -> None:
            self.ignored(where, value, "forecasts run to the end of each test run, test_sim.T")

        ignore = {
            "metrics": "every metric is always computed: pooled R2, R2(t), RMSE, mass error, "
                       "valid-prediction time",
            "forecast_dt": "forecasts advance by the ROM step sim.dt x sim.save_every x rom.subsample",
        }
        special = {"clamp_mode": clamp, "forecast_end": forecast_end}
        for key in block:
            if key.startswith("save_"):
                ignore[key] = _CATALOG
        self.passthrough(block, name, "eval", EvalConfig, special=special, ignore=ignore)

    # ------------------------------------------------------------------ result
    def _finish(self) -> None:
        if self.problems:
            return
        try:
            cfg = validate_parameters(self.out)
        except ConfigError as exc:
            renamed = [line for line in self.report if line.startswith("mapped: ")]
            message = str(exc).replace("Invalid experiment parameters:",
                                       "the converted parameters are invalid:", 1)
            if renamed:
                message += "\nThe errors name this project's keys; the old file's keys were renamed:\n" \
                    + "\n".join(f"  {line}" for line in renamed)
            self.invalid = message
            return
        full = cfg.model_dump()
        flat_set = set(_flatten(self.out))
        irrelevant = set()
        if cfg.model.type == "discrete":  # D'Orsogna-only keys
            irrelevant |= {"model.integrator", "params.alpha", "params.beta", "alignment.strength"}
        if not cfg.forces.enabled:
            irrelevant |= {f"forces.params.{k}" for k in full["forces"]["params"]} | {"forces.type"}
        for block in _PHYSICS_BLOCKS:
            defaults = [
                f"{path} = {_fmt(value)}"
                for path, value in _flatten({block: full[block]}).items()
                if path not in flat_set and path not in irrelevant
                and not any(p.startswith(path + ".") for p in flat_set)
            ]
            if defaults:
                self.report.append(f"default: {', '.join(defaults)} (not in the old file; project defaults)")
        if cfg.eval.forecast_start is None:
            self.report.append(
                f"default: eval.forecast_start = null (forecasts start at sim.T = {cfg.sim.T:g} s "
                "of each test run, as in the old loader)"
            )
        for block in ("train_ic", "test_ic"):
            ic = getattr(cfg, block)
            parts = [f"{n} {f.run_count()}" for n, f in ic.families().items() if f.enabled]
            self.report.append(f"runs: {block} {ic.run_count(block)} = {' + '.join(parts)}")
        self.result = full


def _choose_pairing(
    prefix: str, lists: dict[str, list], samples: int, n_runs: Any
) -> tuple[str, str | None]:
    """``product`` or ``zip`` for one family's lists, and the report line when there was a choice."""
    lengths = {len(v) for v in lists.values()}
    product_configs = list(itertools.product(*lists.values()))
    n_product = len(product_configs) * samples
    names = " and ".join(lists)
    if len(lists) < 2 or len(lengths) != 1 or lengths == {1}:
        return "product", None
    length = lengths.pop()
    zip_configs = list(zip(*lists.values()))
    n_zip = length * samples
    old = f"the old loader's Cartesian product gave {n_product}"
    if n_runs == n_zip and n_zip != n_product:
        return "zip", (f"chosen: {prefix} pairing zip: {names} paired element-wise, {length} "
                       f"configurations x {samples} = {n_zip} runs, matching the authors' "
                       f"n_runs = {n_runs} ({old})")
    repeated = [n for n, v in lists.items() if len(set(v)) < len(v)]
    if repeated and len(set(product_configs)) < len(product_configs) \
            and len(set(zip_configs)) == len(zip_configs):
        return "zip", (f"chosen: {prefix} pairing zip: {names} paired element-wise, {length} "
                       f"configurations x {samples} = {n_zip} runs, because the Cartesian product "
                       f"would repeat configurations ({', '.join(repeated)} repeat values; {old})")
    extra = f"; the authors' n_runs = {n_runs} matches neither" if n_runs not in (None, n_product) else ""
    return "product", (f"chosen: {prefix} pairing product: {names} have equal length {length} "
                       f"but nothing says they pair element-wise, {n_product} runs (zip would "
                       f"give {n_zip}){extra}")


def convert_legacy(old: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Convert an old-format experiment mapping into complete, validated project parameters.

    Returns:
        ``(parameters, report)``: every parameter of :class:`~rom_pipeline.config.ExperimentConfig`
        made explicit, and one line per decision (``mapped``, ``ignored``, ``unsupported``,
        ``chosen``, ``default``, ``runs`` ...).

    Raises:
        LegacyConversionError: the file contradicts itself (two keys setting one parameter
            differently) or the converted parameters fail validation.
    """
    if not isinstance(old, dict):
        raise LegacyConversionError(f"a legacy configuration is a mapping of blocks, got {_fmt(old)}")
    conv = _Converter(old)
    conv.convert()
    if conv.problems:
        raise LegacyConversionError("Cannot convert the legacy configuration:\n"
                                    + "\n".join(f"- {p}" for p in conv.problems))
    if conv.invalid:
        raise LegacyConversionError(f"Cannot convert the legacy configuration: {conv.invalid}")
    return conv.result, conv.report


MAX_LEGACY_BYTES = 1_000_000  # an old configuration is a few KB
MAX_LEGACY_ALIASES = 100  # YAML aliases (*name) in one file
MAX_LEGACY_VALUES = 100_000  # values after aliases are expanded ("billion laughs" guard)


class _CountingLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses more than :data:`MAX_LEGACY_ALIASES` aliases."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen = getattr(self, "aliases_seen", 0) + 1
            if self.aliases_seen > MAX_LEGACY_ALIASES:
                raise LegacyConversionError(
                    f"more than {MAX_LEGACY_ALIASES} YAML aliases (*name): write the values out"
                )
        return super().compose_node(parent, index)


def _count_values(data: Any, limit: int) -> int:
    """Number of values in ``data`` with shared (aliased) parts counted each time; stops past ``limit``."""
    count, stack = 0, [data]
    while stack and count <= limit:
        item = stack.pop()
        count += 1
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return count


def load_legacy_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read an old-format YAML file (a mapping at the top level).

    Limits: at most :data:`MAX_LEGACY_BYTES` bytes, :data:`MAX_LEGACY_ALIASES` aliases and
    :data:`MAX_LEGACY_VALUES` values once aliases are expanded.
    """
    size = Path(path).stat().st_size
    if size > MAX_LEGACY_BYTES:
        raise LegacyConversionError(
            f"{path} is {size} bytes, over the {MAX_LEGACY_BYTES}-byte limit of a legacy configuration"
        )
    try:
        data = yaml.load(Path(path).read_text(), Loader=_CountingLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise LegacyConversionError(f"{path} is not valid YAML: {exc}") from None
    except LegacyConversionError as exc:
        raise LegacyConversionError(f"{path}: {exc}") from None
    if _count_values(data, MAX_LEGACY_VALUES) > MAX_LEGACY_VALUES:
        raise LegacyConversionError(
            f"{path} expands to more than {MAX_LEGACY_VALUES} values through YAML aliases: write "
            "the configuration out without nested aliases"
        )
    if not isinstance(data, dict):
        raise LegacyConversionError(f"{path} does not hold a mapping of blocks")
    return data


_ENV_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def environment_name(old: dict[str, Any], path: str | os.PathLike | None = None) -> str:
    """Default environment name: the old file's ``experiment_name``, else the file's stem."""
    name = old.get("experiment_name")
    if isinstance(name, str) and name:
        return name
    if path is None:
        raise LegacyConversionError("no experiment_name in the file: give an environment name")
    return Path(path).stem


def _check_env_name(name: str) -> None:
    if not _ENV_NAME.match(name) or name in ("base", "local"):
        raise LegacyConversionError(
            f"environment name {name!r} is not usable: use letters, digits, '_', '-', '.', "
            "and not 'base' or 'local'"
        )


class _Dumper(yaml.SafeDumper):
    """Block-style mappings, flow-style lists of scalars (``radii: [2.0, 3.0]``)."""


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(not isinstance(x, (dict, list)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def render_environment(name: str, parameters: dict[str, Any], header: list[str]) -> dict[str, str]:
    """Text of ``parameters.yml`` and ``globals.yml`` of environment ``name``.

    ``parameters`` is validated and written complete; ``header`` lines become comments on top.
    """
    _check_env_name(name)
    full = validate_parameters(parameters).model_dump()
    comment = "".join(f"# {line}".rstrip() + "\n" for line in header)
    body = yaml.dump(full, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)
    globals_text = (f"# Outputs of environment {name} go to <data_root>/{name}/ "
                    "(data_root: conf/base/globals.yml).\n"
                    f"experiment: {name}\n")
    return {"parameters.yml": comment + body, "globals.yml": globals_text}


def _atomic_write(path: Path, text: str) -> None:
    # Mode "x" on a fresh unique name, not mkstemp, whose 0600 mode the moved file would keep:
    # the environment gets the permissions of any file the user writes (0666 less the umask).
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex}.tmp"
    try:
        with open(tmp, "x") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_environment(conf_dir: str | os.PathLike, name: str, files: dict[str, str],
                      force: bool = False) -> list[Path]:
    """Write an environment's files atomically; refuse an existing environment unless ``force``."""
    _check_env_name(name)
    env_dir = Path(conf_dir) / name
    if env_dir.exists() and any(env_dir.iterdir()) and not force:
        raise FileExistsError(f"{env_dir} already exists; pass --force to overwrite it")
    created = not env_dir.exists()
    env_dir.mkdir(parents=True, exist_ok=True)
    written = []
    try:
        for filename, text in files.items():
            path = env_dir / filename
            _atomic_write(path, text)
            written.append(path)
    except BaseException:
        if created:
            for path in written:
                path.unlink(missing_ok=True)
            env_dir.rmdir()
        raise
    return written


def _conversion_header(source: Path, name: str, report: list[str]) -> list[str]:
    return [
        f"Kedro environment '{name}' (outputs under data/{name}/), converted from the legacy",
        f"configuration {source.name} by",
        f"  python -m rom_pipeline.cli.legacy convert {source.name} --env {name}",
        "Every parameter is explicit: nothing is inherited from conf/base. To change the experiment,",
        "edit the old file and convert it again with --force (or edit this file and drop this header).",
        "",
        "Conversion report:",
        *[f"  {line}" for line in report],
        "",
    ]


def convert_file(old_file: Path, env: str | None) -> tuple[str, dict[str, str], list[str]]:
    """Convert an old file: ``(environment name, {filename: text}, report)``; writes nothing."""
    old = load_legacy_file(old_file)
    name = env or environment_name(old, old_file)
    _check_env_name(name)
    parameters, report = convert_legacy(old)
    return name, render_environment(name, parameters, _conversion_header(old_file, name, report)), report


def _project_dir(given: str | None) -> Path:
    if given:
        return Path(given)
    from kedro.utils import find_kedro_project

    return find_kedro_project(Path.cwd()) or Path.cwd()


def report_summary(report: list[str]) -> tuple[str, list[str]]:
    """The report's last line, and the keys of the requests that cannot be honoured.

    Returns:
        ``("Summary: 3 default, 2 ignored, 12 mapped, 2 unsupported (cannot be honoured: ...)",
        ["test_ic.gaussian.extrapolation_positions", ...])``: one count per kind of decision
        (alphabetical, ``unsupported`` last); the unsupported keys are those of the ``unsupported:`` lines.
    """
    kinds: dict[str, int] = {}
    for line in report:
        kind = line.split(":", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    unsupported = [line.removeprefix("unsupported: ").split(" = ", 1)[0]
                   for line in report if line.startswith("unsupported: ")]
    order = sorted(kinds, key=lambda kind: (kind == "unsupported", kind))
    text = "Summary: " + (", ".join(f"{kinds[kind]} {kind}" for kind in order) or "nothing to report")
    if unsupported:
        text += f" (cannot be honoured: {', '.join(unsupported)})"
    return text, unsupported


def _refuse_partial(unsupported: list[str], allow_partial: bool, what: str) -> None:
    if unsupported and not allow_partial:
        raise click.ClickException(
            f"{len(unsupported)} setting(s) of the old file cannot be honoured "
            f"({', '.join(unsupported)}; see the report above); nothing was {what}. Rerun with "
            "--allow-partial to go ahead without them."
        )


# ---------------------------------------------------------------------- command line
@click.group(help="Convert or run users' legacy experiment YAML files as Kedro environments.")
def cli() -> None:
    pass


_allow_partial_option = click.option(
    "--allow-partial", is_flag=True,
    help="go ahead when some settings cannot be honoured (the report's 'unsupported' lines); "
         "without it the command stops with a non-zero exit status",
)

_project_option = click.option(
    "--project-dir", type=click.Path(file_okay=False), default=None,
    help="Kedro project root (default: found from the working directory); writes <root>/conf/<env>/.",
)


@cli.command(help="Convert OLD_FILE into conf/<env>/ (parameters.yml + globals.yml) and print the report.")
@click.argument("old_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--env", default=None, help="environment name (default: experiment_name, else the file stem)")
@click.option("--force", is_flag=True, help="overwrite an existing environment")
@_allow_partial_option
@_project_option
def convert(old_file: str, env: str | None, force: bool, allow_partial: bool,
            project_dir: str | None) -> None:
    root = _project_dir(project_dir)
    try:
        name, files, report = convert_file(Path(old_file), env)
    except (LegacyConversionError, ConfigError, FileExistsError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    summary, unsupported = report_summary(report)
    click.echo("\n".join([*report, summary]))
    _refuse_partial(unsupported, allow_partial, "written")
    try:
        written = write_environment(root / "conf", name, files, force=force)
    except (FileExistsError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    for path in written:
        click.echo(f"wrote {path}")


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    help="Convert OLD_FILE into conf/<env>/ (reusing an identical existing one), then run "
         "`kedro run --env <env>` with the remaining options.",
)
@click.argument("old_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--env", default=None, help="environment name (default: experiment_name, else the file stem)")
@click.option("--force", is_flag=True, help="overwrite an existing, different environment")
@_allow_partial_option
@_project_option
@click.argument("kedro_args", nargs=-1, type=click.UNPROCESSED)
def run(old_file: str, env: str | None, force: bool, allow_partial: bool,
        project_dir: str | None, kedro_args: tuple[str, ...]) -> None:
    root = _project_dir(project_dir)
    try:
        name, files, report = convert_file(Path(old_file), env)
        summary, unsupported = report_summary(report)
        env_dir = root / "conf" / name
        current = {f: (env_dir / f).read_text() for f in files if (env_dir / f).is_file()}
        if current == files:
            click.echo(f"{env_dir} is up to date")
            click.echo(summary)
            _refuse_partial(unsupported, allow_partial, "run")
        else:
            click.echo("\n".join([*report, summary]))
            _refuse_partial(unsupported, allow_partial, "written or run")
            write_environment(root / "conf", name, files, force=force)
            click.echo(f"wrote {env_dir}")
    except (LegacyConversionError, ConfigError, FileExistsError, OSError) as exc:
        raise click.ClickException(str(exc)) from None
    command = [sys.executable, "-m", "kedro", "run", "--env", name, *kedro_args]
    click.echo("running: " + " ".join(command[1:]))
    environ = {**os.environ, "KEDRO_ENV": name, "ROM_PIPELINE_PROJECT": str(root)}
    environ.setdefault("KEDRO_DISABLE_TELEMETRY", "1")
    completed = subprocess.run(command, cwd=root, env=environ, check=False)
    sys.exit(completed.returncode)


if __name__ == "__main__":
    cli()
