"""Figures and animations of every stage (plain matplotlib, no Kedro, no pyplot state).

One module per stage, every public name re-exported here (``plots.plot_pod_spectrum`` and
``plots.pod.plot_pod_spectrum`` both work):

- :mod:`~rom_pipeline.evaluation.plots.pod`: POD spectrum, modes, latent trajectories;
- :mod:`~rom_pipeline.evaluation.plots.models`: MVAR eigenvalues and lag scan, LSTM training log;
- :mod:`~rom_pipeline.evaluation.plots.comparison`: R²(t) curves, snapshot grid, metric bars,
  order parameters on the test runs;
- :mod:`~rom_pipeline.evaluation.plots.animation`: truth-versus-forecast GIFs;
- :mod:`~rom_pipeline.evaluation.plots.search`: held-out search scores per searched parameter.

Every ``plot_*`` function builds a fresh :class:`matplotlib.figure.Figure` and returns it; the
caller (a Kedro ``MatplotlibDataset``) saves it. Nothing goes through ``pyplot``, so figures
never leak between calls or need closing.

Density fields are arrays (T, ny, nx) with row index y, drawn with ``origin="lower"``;
``extent`` is matplotlib's ``(x_min, x_max, y_min, y_max)`` of the domain. POD modes are
columns of a (ny*nx, r) matrix, each reshaped in C order to (ny, nx) — the same order as
``density.reshape(T, -1)``.

Colour scales of density comparisons are shared per row type: truth and predictions use the
truth's range (a diverging forecast is clipped rather than washing out the truth), and
``|error|`` runs from 0 to the largest finite error (snapshot grid) or its 99th percentile
(animations), capped at the truth's range.
"""
from rom_pipeline.evaluation.plots import animation, comparison, models, pod, search
from rom_pipeline.evaluation.plots._common import DENSITY_CMAP, ERROR_CMAP, MODE_CMAP, POD_CEILING_LABEL
from rom_pipeline.evaluation.plots.animation import (
    GIF_ERROR_PERCENTILE,
    GIF_LEVELS,
    animation_frames,
    comparison_animation_figure,
    comparison_animation_gif,
    gif_palette,
    to_palette_indices,
    write_comparison_animation,
    write_file_atomically,
)
from rom_pipeline.evaluation.plots.comparison import (
    FORECAST_START_LABEL,
    METRIC_LABELS,
    OFF_SCALE_LABEL,
    ORDER_PARAMETERS,
    R2_FLOOR,
    forecast_start_time,
    plot_metric_bars,
    plot_order_parameters,
    plot_r2_curves,
    plot_snapshot_grid,
)
from rom_pipeline.evaluation.plots.models import LAG_CRITERIA, plot_eigenvalues, plot_lag_scan, plot_training_log
from rom_pipeline.evaluation.plots.pod import (
    plot_latent_trajectories,
    plot_pod_modes,
    plot_pod_spectrum,
    spectrum_window,
)
from rom_pipeline.evaluation.plots.search import plot_search_scores

__all__ = [
    "DENSITY_CMAP", "ERROR_CMAP", "FORECAST_START_LABEL", "GIF_ERROR_PERCENTILE", "GIF_LEVELS",
    "LAG_CRITERIA", "METRIC_LABELS", "MODE_CMAP", "OFF_SCALE_LABEL", "ORDER_PARAMETERS",
    "POD_CEILING_LABEL", "R2_FLOOR", "animation", "animation_frames", "comparison",
    "comparison_animation_figure", "comparison_animation_gif", "forecast_start_time", "gif_palette", "models",
    "plot_eigenvalues", "plot_lag_scan", "plot_latent_trajectories", "plot_metric_bars",
    "plot_order_parameters", "plot_pod_modes", "plot_pod_spectrum", "plot_r2_curves", "plot_search_scores", "search",
    "plot_snapshot_grid", "plot_training_log", "pod", "spectrum_window", "to_palette_indices",
    "write_comparison_animation", "write_file_atomically",
]
