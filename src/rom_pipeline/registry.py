"""The one list of latent forecasters: everything the project knows about each model.

An entry names a forecaster once: its parameters block, pipeline and namespace (``mvar``), its
class (a :class:`~rom_pipeline.rom.forecaster.LatentForecaster`; its ``name`` labels results
and the output folder ``<experiment>/<NAME>/``), the pydantic model of its block, how its fitted
state is stored and rebuilt, the table and summary its training writes, its extra plots and its
default hyper-parameter search. Config (:mod:`rom_pipeline.config`), the search
(:mod:`rom_pipeline.evaluation.search`), the hooks, the pipeline registry, the model template
(:mod:`rom_pipeline.pipelines.models`), lineage and the catalog (``{forecaster}.*`` entries of
``conf/base/catalog_models.yml``, expanded by :mod:`rom_pipeline.settings`) all read
:data:`FORECASTERS`.

Adding a forecaster: write its module (a class with ``fit(trajectories) -> self``,
``predict_next``, ``rollout``, ``lag``, ``name``, ``to_arrays``/``from_arrays``), one parameters
block ``conf/base/parameters_<name>.yml`` and one line in :data:`FORECASTERS` below.

The built-in entries name their class as ``"module:Class"`` and give its label: the class (and
with it PyTorch, about 1–3 s of imports) is imported when a model is built, trained, loaded or
scored, not by every ``kedro run`` that only reads the registry (the catalog, the pipelines, the
parameter checks of a simulation stage). An entry may also hold the class itself.
"""
from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from rom_pipeline.config_blocks import LSTMConfig, MVARConfig, forecaster_config

#: How a fitted forecaster is stored: Kedro dataset type, file name, save and load.
ARTIFACT_FORMATS: dict[str, tuple[str, str]] = {
    "npz": ("rom_pipeline.datasets.NpzDataset", "{name}_model.npz"),
    "torch": ("rom_pipeline.datasets.TorchPayloadDataset", "{name}_state_dict.pt"),
}


@dataclass(frozen=True)
class PlotNode:
    """An extra figure of one model: ``function(*inputs) -> Figure``, saved as ``<name>.<output>``.

    ``inputs`` are names inside the model's namespace: ``model`` (the stored artifact),
    ``training_table``, ``training_summary``."""

    function: Callable[..., Any]
    inputs: tuple[str, ...]
    output: str


@functools.cache
def import_class(reference: str) -> type:
    """The class ``"package.module:Class"`` names (imported once)."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@functools.cache
def _derived_config(estimator: type | str) -> type:
    """:func:`forecaster_config` of a class, or of the class ``"module:Class"`` names (built once)."""
    return forecaster_config(import_class(estimator) if isinstance(estimator, str) else estimator)


@dataclass(frozen=True)
class Forecaster:
    """One registered forecaster (see the module doc).

    ``estimator_ref``: the class, or ``"module:Class"`` (imported on first use of
    :attr:`estimator`); ``config_ref``: the pydantic model of its block, or ``None`` for the one
    :func:`forecaster_config` derives from the class's constructor; ``label_name``: the class's
    ``name``, given so that reading a label imports nothing (a test checks the two agree)."""

    name: str
    estimator_ref: type | str
    config_ref: type | None = None
    artifact: str = "npz"
    training_table: str = "training_log"
    summary: Callable[[Any, dict[str, Any]], dict[str, Any]] | None = None
    fit: Callable[[Any, list[np.ndarray]], Any] | None = None
    plots: tuple[PlotNode, ...] = ()
    search_grid: Mapping[str, Any] = field(default_factory=dict)
    search_exclude: tuple[str, ...] = ()
    label_name: str | None = None

    @property
    def estimator(self) -> type:
        """The forecaster's class."""
        ref = self.estimator_ref
        return import_class(ref) if isinstance(ref, str) else ref

    @property
    def config(self) -> type:
        """The pydantic model of its parameters block."""
        return self.config_ref if self.config_ref is not None else _derived_config(self.estimator_ref)

    @property
    def label(self) -> str:
        """The model's name in results and reports (``MVAR``), its class's ``name``."""
        return self.label_name if self.label_name is not None else str(self.estimator.name)

    @property
    def folder(self) -> str:
        """Its output folder under ``<experiment>/``: the label in capitals (``MVAR``)."""
        return self.label.upper()

    @property
    def artifact_type(self) -> str:
        return ARTIFACT_FORMATS[self.artifact][0]

    @property
    def artifact_file(self) -> str:
        return ARTIFACT_FORMATS[self.artifact][1].format(name=self.name)

    def options(self, block: Mapping[str, Any]) -> dict[str, Any]:
        """Constructor arguments from the parameters block: validated by :attr:`config` (its
        defaults are the constructor's), without ``enabled``."""
        return self.config.model_validate(dict(block)).model_dump(exclude={"enabled"})

    def train(self, block: Mapping[str, Any], trajectories: Sequence[np.ndarray]) -> Any:
        """A fitted estimator from the block's options and the training trajectories (K_i, r)."""
        model = self.estimator(**self.options(block))
        return self.fit(model, list(trajectories)) if self.fit else model.fit(list(trajectories))

    def save(self, model: Any) -> Any:
        return model.save_payload() if self.artifact == "torch" else model.to_arrays()

    def load(self, artifact: Any) -> Any:
        if self.artifact == "torch":
            return self.estimator.from_payload(artifact)
        return self.estimator.from_arrays(artifact)

    def table(self, model: Any) -> pd.DataFrame:
        """The fitted model's ``<training_table>_`` attribute (empty when it has none)."""
        table = getattr(model, f"{self.training_table}_", None)
        return pd.DataFrame() if table is None else pd.DataFrame(table)

    def training_summary(self, model: Any, block: Mapping[str, Any]) -> dict[str, Any]:
        """``training_summary.json``: the entry's own summary, else the model, its lag, its
        hyper-parameters, every scalar it learned (attributes ending in ``_``, e.g. a chosen
        penalty or the training R²) and the fit time."""
        options = self.options(block)
        if self.summary is not None:
            return self.summary(model, options)
        learned = {
            name.removesuffix("_"): value.item() if isinstance(value, np.generic) else value
            for name, value in sorted(vars(model).items())
            if name.endswith("_") and not name.startswith("_") and name != "fit_seconds_"
            and isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
        }
        seconds = getattr(model, "fit_seconds_", None)
        return {"model": self.label, "lag": int(model.lag), "hyperparameters": options,
                "learned": learned, "fit_seconds": None if seconds is None else float(seconds)}

    def search_keys(self) -> tuple[str, ...]:
        """Hyper-parameters a search grid may vary: the keys of its block (in the block's order;
        each is a constructor argument, :meth:`options`), all but ``enabled`` and
        ``search_exclude``. Read from the block's model, so checking a grid imports no class."""
        return tuple(k for k in self.config.model_fields
                     if k != "enabled" and k not in self.search_exclude)


# ---------------------------------------------------------------------- MVAR and LSTM specifics
def _mvar_summary(model: Any, options: dict[str, Any]) -> dict[str, Any]:
    return {
        "model": model.name,
        "lag": int(model.lag),
        "lag_rule": model.lag_rule_,
        "ridge_alpha": options["ridge_alpha"],
        "n_windows": int(model.n_windows_),
        "train_r2": float(model.train_r2_),
        "train_rmse": float(model.train_rmse_),
        "spectral_radius": float(model.spectral_radius_),
        "spectral_radius_before_enforcement": (
            None if model.spectral_radius_before_ is None else float(model.spectral_radius_before_)
        ),
        "eigenvalue_threshold": options["eigenvalue_threshold"],
        "coint_rank": options["coint_rank"],
        "fit_seconds": float(model.fit_seconds_),
    }


def _lstm_fit(model: Any, trajectories: list[np.ndarray]) -> Any:
    from rom_pipeline.execution.progress import progress_bar

    with progress_bar("LSTM epochs", total=model.max_epochs) as advance:
        return model.fit(trajectories, progress=advance)


def _lstm_summary(model: Any, options: dict[str, Any]) -> dict[str, Any]:
    log = model.training_log_
    best = log.loc[log["epoch"] == model.best_epoch_].iloc[0]
    return {
        "model": model.name,
        "lag": options["lag"],
        "hyperparameters": options,
        "n_parameters": int(model.n_parameters_),
        "best_epoch": int(model.best_epoch_),
        "epochs_run": int(log["epoch"].max()),
        "best_val_loss": float(best["val_loss"]),
        "best_val_rollout_r2": float(best["val_rollout_r2"]),
        "best_val_rollout_skill": float(best["val_rollout_skill"]),
        "validation_runs": [int(i) for i in model.validation_runs_],
        "device": str(model.device_),
        "fit_seconds": float(model.fit_seconds_),
    }


def plot_eigenvalues(model: dict, training_summary: dict):
    """Companion-matrix eigenvalues of a stored MVAR, with its stability threshold."""
    from rom_pipeline.evaluation import plots
    from rom_pipeline.rom.mvar import MVARForecaster

    fitted = MVARForecaster.from_arrays(model)
    return plots.plot_eigenvalues(np.linalg.eigvals(fitted.companion_matrix()),
                                  training_summary["eigenvalue_threshold"])


def plot_lag_scan(lag_scan: pd.DataFrame, training_summary: dict):
    """The lag scan with the lag the fitted model uses marked (a note when nothing was scanned)."""
    from matplotlib.figure import Figure

    from rom_pipeline.evaluation import plots

    if lag_scan.empty:
        figure = Figure(figsize=(6, 2))
        figure.text(0.5, 0.5, f"no lag scan (mvar.max_lag: null); lag {training_summary['lag']}",
                    ha="center")
        return figure
    return plots.plot_lag_scan(lag_scan, chosen_lag=training_summary["lag"],
                               rule=training_summary.get("lag_rule"))


def plot_training_log(training_log: pd.DataFrame, training_summary: dict):
    """The training history with the epoch whose weights were kept marked."""
    from rom_pipeline.evaluation import plots

    return plots.plot_training_log(training_log, chosen_epoch=training_summary["best_epoch"])


# ---------------------------------------------------------------------- the registry
_ENTRIES = (
    Forecaster(
        "mvar", "rom_pipeline.rom.mvar:MVARForecaster", MVARConfig, label_name="MVAR",
        artifact="npz", training_table="lag_scan",
        summary=_mvar_summary,
        plots=(PlotNode(plot_eigenvalues, ("model", "training_summary"), "eigenvalues_plot"),
               PlotNode(plot_lag_scan, ("training_table", "training_summary"), "lag_scan_plot")),
        # a small default grid (conf/base/parameters_hyperparameter_search.yml documents it)
        search_grid={"grid": {"lag": [2, 3, 5], "ridge_alpha": [1e-6, 1e-4, 1e-2]}},
        search_exclude=("max_lag",),  # the search needs no lag scan
    ),
    Forecaster(
        "lstm", "rom_pipeline.rom.lstm:LSTMForecaster", LSTMConfig, label_name="LSTM",
        artifact="torch", training_table="training_log",
        summary=_lstm_summary, fit=_lstm_fit,
        plots=(PlotNode(plot_training_log, ("training_table", "training_summary"), "training_plot"),),
        search_grid={"pairing": "zip", "grid": {"hidden_units": [16, 32], "num_layers": [1, 2],
                                                "max_epochs": [25], "patience": [6]},
                     "modes": {"fixed_modes": [], "pod_energy": []}},
    ),
    Forecaster("opinf", "rom_pipeline.rom.opinf:OpInfForecaster", label_name="OPINF",
               training_table="regularisation_scan"),
)

#: name -> entry, in registration order (the order of reports and of the default pipeline).
FORECASTERS: dict[str, Forecaster] = {entry.name: entry for entry in _ENTRIES}

__all__ = ["ARTIFACT_FORMATS", "FORECASTERS", "Forecaster", "PlotNode", "forecaster_config",
           "import_class"]
