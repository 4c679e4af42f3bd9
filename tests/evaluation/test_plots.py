"""Figures carry exactly the data they were given; the GIF has the promised frames and size."""
from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageSequence

from rom_pipeline.evaluation import plots
from rom_pipeline.evaluation.report import METRIC_COLUMNS


def _image_axes(fig: Figure):
    return [ax for ax in fig.axes if ax.images]


def _line(ax, label):
    found = [line for line in ax.get_lines() if line.get_label() == label]
    assert len(found) == 1, [line.get_label() for line in ax.get_lines()]
    return found[0]


# --------------------------------------------------------------------------- POD
def test_pod_spectrum_marks_selected_rank():
    sigma = np.array([10.0, 5.0, 2.0, 1.0, 0.1])
    energy = np.cumsum(sigma**2) / np.sum(sigma**2)
    fig = plots.plot_pod_spectrum(sigma, energy, n_modes=3, energy_threshold=0.99)
    ax_sigma, ax_energy = fig.axes
    assert ax_sigma.get_yscale() == "log"
    np.testing.assert_array_equal(ax_sigma.get_lines()[0].get_ydata(), sigma)
    np.testing.assert_array_equal(ax_energy.get_lines()[0].get_xdata(), np.arange(1, 6))
    np.testing.assert_allclose(ax_energy.get_lines()[0].get_ydata(), energy)
    for ax in (ax_sigma, ax_energy):
        assert list(_line(ax, "r = 3").get_xdata()) == [3, 3]
    assert list(_line(ax_energy, "threshold 0.99").get_ydata()) == [0.99, 0.99]
    assert ax_sigma.get_xlim() == (0.5, 5.5)  # 5 modes: all shown
    with pytest.raises(ValueError, match="n_modes"):
        plots.plot_pod_spectrum(sigma, energy, n_modes=6)
    with pytest.raises(ValueError, match="cumulative_energy"):
        plots.plot_pod_spectrum(sigma, energy[:4], n_modes=2)


@pytest.mark.parametrize("r, expected", [(19, 95), (2, 10), (300, 993)])
def test_pod_spectrum_shows_a_few_r_modes_so_the_cut_is_visible(r, expected):
    # 1,000 modes decaying slowly (99.9 % of the energy only near k = 990): the window stops
    # at 5r, or at k_99.9 = 993 when that is below 5r, never the whole spectrum
    sigma = 1.0 / np.sqrt(np.arange(1, 1001))
    energy = np.cumsum(sigma**2) / np.sum(sigma**2)
    assert np.flatnonzero(energy >= 0.999)[0] + 1 > 5 * 19
    assert plots.spectrum_window(energy, r) == expected
    fig = plots.plot_pod_spectrum(sigma, energy, r)
    for ax in fig.axes:
        lo, hi = ax.get_xlim()
        assert lo == 0.5 and hi == expected + 0.5
        assert r < hi  # the cut sits inside the view
        assert list(_line(ax, f"r = {r}").get_xdata()) == [r, r]
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_ydata(), sigma[:expected])
    assert f"first {expected} of 1000" in fig.axes[0].get_title()


def test_pod_spectrum_window_follows_a_fast_spectrum_to_99_9_percent():
    shares = np.array([50.0, 20.0, 10.0, 8.0, 5.0, 4.0, 2.95, 0.02, 0.01, 0.01, 0.005, 0.005])  # σ_k², sum 100
    energy = np.cumsum(shares) / np.sum(shares)
    assert np.flatnonzero(energy >= 0.999)[0] + 1 == 7
    assert plots.spectrum_window(energy, 1) == 6  # max(3, 1 + 5, min(7, 5)) = 6
    assert plots.spectrum_window(energy, 2) == 7  # 3r = 6 < r + 5 = 7 = k_99.9
    assert plots.spectrum_window(energy, 3) == 9  # 3r = 9 > k_99.9
    assert plots.spectrum_window(energy, 5) == 12  # capped at n


def test_pod_modes_images_are_reshaped_columns():
    ny, nx, r = 4, 5, 3
    modes = np.random.default_rng(0).normal(size=(ny * nx, r))
    fig = plots.plot_pod_modes(modes, (ny, nx), n_show=6)
    image_axes = _image_axes(fig)
    assert len(image_axes) == r
    for k, ax in enumerate(image_axes):
        np.testing.assert_array_equal(ax.images[0].get_array(), modes[:, k].reshape(ny, nx))
        vmin, vmax = ax.images[0].get_clim()
        assert vmax == pytest.approx(np.abs(modes[:, k]).max()) and vmin == -vmax
    assert "3 of 3 POD modes" in fig.get_suptitle()
    with pytest.raises(ValueError, match="grid_shape"):
        plots.plot_pod_modes(modes, (5, 5))


def test_latent_trajectories_lines_equal_input():
    rng = np.random.default_rng(1)
    trajs = [rng.normal(size=(12, 5)) for _ in range(4)]
    t = np.linspace(0.0, 1.1, 12)
    fig = plots.plot_latent_trajectories(trajs, times=t, n_modes=2, n_runs=3)
    assert len(fig.axes) == 2
    for j, ax in enumerate(fig.axes):
        assert len(ax.get_lines()) == 3
        for i in range(3):
            line = _line(ax, f"run {i}")
            np.testing.assert_array_equal(line.get_xdata(), t)
            np.testing.assert_array_equal(line.get_ydata(), trajs[i][:, j])
    fig = plots.plot_latent_trajectories(trajs[:1], n_modes=10)
    assert len(fig.axes) == 5
    np.testing.assert_array_equal(fig.axes[0].get_lines()[0].get_xdata(), np.arange(12))
    with pytest.raises(ValueError, match="times"):
        plots.plot_latent_trajectories(trajs, times=t[:5])


# --------------------------------------------------------------------------- forecasts
def _r2_vs_time() -> pd.DataFrame:
    times = np.array([0.0, 0.5, 1.0])
    rows = []
    family = {0: "gaussian", 1: "gaussian", 2: "uniform"}
    for mode in ("oracle", "hold"):
        for m, model in enumerate(("MVAR", "LSTM")):
            for run in range(3):
                for k, t in enumerate(times):
                    rows.append(dict(
                        model=model, run_id=run, family=family[run], shift_mode=mode, time=t,
                        r2=1.0 - 0.1 * k * (run + 1) - 0.05 * m - (0.2 if mode == "hold" else 0.0),
                        r2_cumulative=0.9 - 0.01 * k, r2_pod_ceiling=0.99 - 0.01 * run - 0.001 * k,
                        rel_l2=0.1 * k, polarisation=0.2 + 0.1 * k, milling=0.5,
                        nematic=0.3 + 0.05 * k + 0.0 * m,
                    ))
    return pd.DataFrame(rows)


def test_r2_curves_are_run_means_with_pod_ceiling():
    frame = _r2_vs_time()
    fig = plots.plot_r2_curves(frame, shift_mode="oracle")
    ax_gauss, ax_uniform = fig.axes[:2]
    assert "gaussian" in ax_gauss.get_title() and "uniform" in ax_uniform.get_title()
    # gaussian, MVAR: runs 0, 1 -> r2 = 1 - 0.1 k (run+1) -> mean 1 - 0.15 k
    mvar = _line(ax_gauss, "MVAR")
    np.testing.assert_array_equal(mvar.get_xdata(), [0.0, 0.5, 1.0])
    np.testing.assert_allclose(mvar.get_ydata(), [1.0, 0.85, 0.70])
    np.testing.assert_allclose(_line(ax_gauss, "LSTM").get_ydata(), [0.95, 0.80, 0.65])
    np.testing.assert_allclose(_line(ax_uniform, "MVAR").get_ydata(), [1.0, 0.7, 0.4])
    ceiling = _line(ax_gauss, plots.POD_CEILING_LABEL)
    assert ceiling.get_linestyle() == "--"
    np.testing.assert_allclose(ceiling.get_ydata(), [0.985, 0.984, 0.983])
    # hold mode is a different set of numbers
    fig = plots.plot_r2_curves(frame, shift_mode="hold")
    np.testing.assert_allclose(_line(fig.axes[0], "MVAR").get_ydata(), [0.8, 0.65, 0.50])
    # per run panels, another metric, no ceiling
    fig = plots.plot_r2_curves(frame, shift_mode="oracle", metric="rel_l2", by="run_id")
    assert len([ax for ax in fig.axes if ax.get_lines()]) == 3
    assert [line.get_label() for line in fig.axes[2].get_lines()] == [
        "MVAR", "LSTM", f"{plots.FORECAST_START_LABEL} (t = 0.00 s)"
    ]
    np.testing.assert_allclose(fig.axes[2].get_lines()[0].get_ydata(), [0.0, 0.1, 0.2])
    with pytest.raises(ValueError, match="predicted"):
        plots.plot_r2_curves(frame, shift_mode="predicted")
    with pytest.raises(ValueError, match="r2_bogus"):
        plots.plot_r2_curves(frame, metric="r2_bogus")


def test_r2_curves_title_forecast_start_and_off_scale_marks():
    frame = _r2_vs_time()
    frame["time"] = frame["time"] + 2.0  # forecast frames at 2.0, 2.5, 3.0 s
    frame["lead_time"] = frame["time"] - 2.0
    frame.loc[(frame["model"] == "LSTM") & (frame["run_id"] == 2) & (frame["time"] == 3.0), "r2"] = -40.0
    fig = plots.plot_r2_curves(frame, shift_mode="oracle")
    title = fig.get_suptitle()
    assert "R²(t)" in title and "oracle" in title and title != "r2 vs time, shift mode oracle"
    for ax in fig.axes[:2]:
        start = [line for line in ax.get_lines() if line.get_label().startswith(plots.FORECAST_START_LABEL)]
        assert len(start) == 1 and list(start[0].get_xdata()) == [2.0, 2.0]
        lo, hi = ax.get_xlim()
        assert lo < 2.0 < hi and hi >= 3.0  # the marker is inside the panel, not on its edge
    ax_uniform = fig.axes[1]
    assert ax_uniform.get_ylim()[0] == plots.R2_FLOOR
    # the LSTM curve leaves the panel at t = 3.0 (R² = -40): a marker on the floor says so
    marks = _line(ax_uniform, f"LSTM {plots.OFF_SCALE_LABEL}")
    assert list(marks.get_xdata()) == [3.0] and list(marks.get_ydata()) == [plots.R2_FLOOR]
    np.testing.assert_allclose(_line(ax_uniform, "LSTM").get_ydata()[-1], -40.0)  # data not clipped
    assert not [line for line in fig.axes[0].get_lines() if plots.OFF_SCALE_LABEL in line.get_label()]
    assert "1 run)" in ax_uniform.get_title() and "mean of 2 runs" in fig.axes[0].get_title()
    # without lead_time the first time is the forecast start
    fig = plots.plot_r2_curves(frame.drop(columns=["lead_time"]), shift_mode="oracle")
    assert plots.forecast_start_time(frame.drop(columns=["lead_time"])) == 2.0


def test_snapshot_grid_layout_and_frames():
    rng = np.random.default_rng(2)
    T, ny, nx = 10, 6, 7
    truth = rng.random((T, ny, nx))
    predictions = {"MVAR": truth + 0.1 * rng.normal(size=truth.shape), "LSTM": truth * 0.5}
    times = 2.0 + 0.5 * np.arange(T)
    snapshot_times = [2.0, 3.6, 6.5]  # nearest frames 0, 3, 9
    fig = plots.plot_snapshot_grid(truth, predictions, times, snapshot_times, extent=(0, 1, 0, 1))
    n_rows, n_cols = 1 + 2 * len(predictions), len(snapshot_times)
    image_axes = _image_axes(fig)
    assert len(image_axes) == n_rows * n_cols
    assert image_axes == fig.axes[: n_rows * n_cols]
    frames = [0, 3, 9]
    expected_rows = [truth, predictions["MVAR"], predictions["LSTM"],
                     np.abs(predictions["MVAR"] - truth), np.abs(predictions["LSTM"] - truth)]
    for row, movie in enumerate(expected_rows):
        for col, frame in enumerate(frames):
            image = image_axes[row * n_cols + col].images[0]
            np.testing.assert_allclose(image.get_array(), movie[frame])
    # shared colour scale per row type
    density_clims = {image_axes[i].images[0].get_clim() for i in range(3 * n_cols)}
    error_clims = {image_axes[i].images[0].get_clim() for i in range(3 * n_cols, 5 * n_cols)}
    assert density_clims == {(truth[frames].min(), truth[frames].max())}
    assert len(error_clims) == 1 and next(iter(error_clims))[0] == 0.0
    assert "test run r0 (gaussian)" not in fig.get_suptitle() and "forecast from t = 2.00 s" in fig.get_suptitle()
    titled = plots.plot_snapshot_grid(truth, predictions, times, snapshot_times, run_label="r0 (gaussian)")
    assert "test run r0 (gaussian)" in titled.get_suptitle()
    with pytest.raises(ValueError, match="snapshot time 20"):
        plots.plot_snapshot_grid(truth, predictions, times, [20.0])
    with pytest.raises(ValueError, match="LSTM"):
        plots.plot_snapshot_grid(truth, {"LSTM": truth[:5]}, times, [2.0])


def _test_results() -> pd.DataFrame:
    rows = []
    values = {("MVAR", 0): 0.9, ("MVAR", 1): 0.7, ("MVAR", 2): 0.4,
              ("LSTM", 0): 0.6, ("LSTM", 1): 0.8, ("LSTM", 2): 0.2}
    family = {0: "gaussian", 1: "gaussian", 2: "uniform"}
    for (model, run), value in values.items():
        row = {m: np.nan for m in METRIC_COLUMNS}
        row.update(model=model, run_id=run, family=family[run], shift_mode="oracle",
                   r2_pooled=value, diverged=False)
        rows.append(row)
    return pd.DataFrame(rows)


def test_metric_bars_heights_and_error_bars():
    fig = plots.plot_metric_bars(_test_results(), metric="r2_pooled", shift_mode="oracle")
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["gaussian\n(2 runs)", "uniform\n(1 run)", "all\n(3 runs)"]
    bars = {c.get_label(): c for c in ax.containers if hasattr(c, "patches")}
    np.testing.assert_allclose([p.get_height() for p in bars["MVAR"].patches], [0.8, 0.4, 2.0 / 3])
    np.testing.assert_allclose([p.get_height() for p in bars["LSTM"].patches], [0.7, 0.2, 1.6 / 3])
    # the error bar of MVAR on gaussian spans mean ± sample std
    segments = bars["MVAR"].errorbar.lines[2][0].get_segments()
    std = np.std([0.9, 0.7], ddof=1)
    np.testing.assert_allclose(segments[0][:, 1], [0.8 - std, 0.8 + std])
    # uniform holds one run: no error bar (not a bar of height 0 posing as a measured spread)
    assert len(segments) == 3 and np.isnan(segments[1]).all()
    assert "no error bar: one run" in ax.get_title()
    with pytest.raises(ValueError, match="hold"):
        plots.plot_metric_bars(_test_results(), shift_mode="hold")


def test_order_parameters_lines_per_run():
    frame = _r2_vs_time()
    fig = plots.plot_order_parameters(frame, run_id=1, shift_mode="oracle")
    ax_pol, ax_mill, ax_nem, ax_r2 = fig.axes
    np.testing.assert_allclose(ax_pol.get_lines()[0].get_ydata(), [0.2, 0.3, 0.4])
    np.testing.assert_allclose(ax_nem.get_lines()[0].get_ydata(), [0.3, 0.35, 0.4])
    np.testing.assert_allclose(_line(ax_r2, "LSTM").get_ydata(), [0.95, 0.75, 0.55])
    with pytest.raises(ValueError, match="run_id=7"):
        plots.plot_order_parameters(frame, run_id=7)


# --------------------------------------------------------------------------- diagnostics
def test_eigenvalues_scatter_and_circles():
    lam = np.array([0.5 + 0.5j, 0.5 - 0.5j, -0.9, 1.1])
    fig = plots.plot_eigenvalues(lam, threshold=0.99)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.c_[lam.real, lam.imag])
    unit = _line(ax, "|λ| = 1")
    np.testing.assert_allclose(np.hypot(unit.get_xdata(), unit.get_ydata()), 1.0)
    thr = _line(ax, "|λ| = 0.99")
    np.testing.assert_allclose(np.hypot(thr.get_xdata(), thr.get_ydata()), 0.99)
    assert "1.1000" in ax.get_title()


def test_training_log_lines_skip_nan():
    log = pd.DataFrame({
        "epoch": [3, 1, 2, 4],
        "train_loss": [0.3, 1.0, 0.5, 0.2],
        "val_loss": [0.4, 1.2, 0.6, 0.35],
        "val_rollout_r2": [np.nan, 0.1, np.nan, 0.7],
        "lr": [1e-3, 1e-3, 1e-3, 5e-4],
    })
    fig = plots.plot_training_log(log)
    ax_loss, ax_r2, ax_lr = fig.axes
    np.testing.assert_array_equal(_line(ax_loss, "train_loss").get_ydata(), [1.0, 0.5, 0.3, 0.2])
    np.testing.assert_array_equal(_line(ax_loss, "val_loss").get_xdata(), [1, 2, 3, 4])
    assert ax_loss.get_yscale() == "log"
    r2 = _line(ax_r2, "val_rollout_r2")
    np.testing.assert_array_equal(r2.get_xdata(), [1, 4])
    np.testing.assert_array_equal(r2.get_ydata(), [0.1, 0.7])
    np.testing.assert_array_equal(_line(ax_lr, "lr").get_ydata(), [1e-3, 1e-3, 1e-3, 5e-4])
    with pytest.raises(ValueError, match="train_loss"):
        plots.plot_training_log(log.drop(columns=["train_loss"]))
    fig = plots.plot_training_log(log, chosen_epoch=4)
    for ax in fig.axes:
        assert list(_line(ax, "chosen epoch 4").get_xdata()) == [4, 4]
    assert "epoch 4" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="chosen_epoch=9"):
        plots.plot_training_log(log, chosen_epoch=9)


def test_lag_scan_marks_minimum_per_criterion():
    table = pd.DataFrame({
        "lag": [1, 2, 3, 4],
        "aic": [-10.0, -12.0, -11.0, -10.5],
        "bic": [-9.0, -9.5, -9.2, -8.0],
        "hqic": [-9.5, -11.0, -11.5, -11.2],
        "fpe": [0.5, 0.4, 0.3, 0.35],
    })
    fig = plots.plot_lag_scan(table)
    axes = [ax for ax in fig.axes if ax.get_lines()]
    assert [ax.get_ylabel() for ax in axes] == ["AIC", "BIC", "HQIC", "FPE"]
    for ax, criterion, best_lag in zip(axes, ["aic", "bic", "hqic", "fpe"], [2, 2, 3, 3]):
        np.testing.assert_array_equal(_line(ax, criterion.upper()).get_ydata(), table[criterion])
        star = _line(ax, f"min at lag {best_lag}")
        assert list(star.get_xdata()) == [best_lag]
    assert not [line for ax in axes for line in ax.get_lines() if "chosen" in line.get_label()]
    fig = plots.plot_lag_scan(table, chosen_lag=3, rule="fixed")
    for ax in [ax for ax in fig.axes if ax.get_lines()]:
        assert list(_line(ax, "chosen lag 3 (fixed)").get_xdata()) == [3, 3]
    assert "lag 3" in fig.get_suptitle()


# --------------------------------------------------------------------------- animation
def test_animation_frames_even_and_distinct():
    np.testing.assert_array_equal(plots.animation_frames(5, 120), np.arange(5))
    idx = plots.animation_frames(100, 7)
    assert len(idx) == len(set(idx)) == 7 and idx[0] == 0 and idx[-1] == 99
    assert np.ptp(np.diff(idx)) <= 1


@pytest.mark.parametrize("T, max_frames", [(7, 120), (13, 5)])
def test_comparison_animation_frames_size_and_atomic_write(tmp_path, T, max_frames):
    rng = np.random.default_rng(3)
    truth = rng.random((T, 8, 9))
    predictions = {"MVAR": truth * 0.9, "LSTM": truth + 0.05}
    times = 0.1 * np.arange(T)
    path = tmp_path / "movies" / "run0.gif"
    out = plots.write_comparison_animation(
        truth, predictions, times, path, fps=5, max_frames=max_frames, title="run 0",
        dpi=40, panel_inches=2.0,
    )
    assert out == path and path.is_file()
    with Image.open(path) as gif:
        n_frames = sum(1 for _ in ImageSequence.Iterator(gif))
        assert gif.size == (3 * 80, 2 * 80)
    assert n_frames == min(T, max_frames)
    assert os.listdir(path.parent) == ["run0.gif"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600


def test_comparison_animation_gif_keeps_every_colour_bar_level(tmp_path):
    """The GIF holds each resampled colour-map level exactly (no adaptive-palette banding) and
    white stays white."""
    rng = np.random.default_rng(5)
    truth = rng.random((6, 10, 10))
    path = plots.write_comparison_animation(
        truth, {"MVAR": truth + 0.3 * rng.random(truth.shape)}, np.arange(6.0), tmp_path / "a.gif",
        dpi=60, panel_inches=3.0,
    )
    palette = plots.gif_palette()
    density_levels = {tuple(c) for c in palette[: plots.GIF_LEVELS]}
    error_levels = {tuple(c) for c in palette[plots.GIF_LEVELS: 2 * plots.GIF_LEVELS]}
    with Image.open(path) as gif:
        for frame in ImageSequence.Iterator(gif):
            rgb = np.asarray(frame.convert("RGB")).reshape(-1, 3)
            colours = {tuple(c) for c in np.unique(rgb, axis=0)}
            assert density_levels <= colours and error_levels <= colours  # both colour bars whole
            assert colours <= {tuple(c) for c in palette}
            assert tuple(rgb[0]) == (255, 255, 255)  # the corner is the white background


def test_palette_indices_are_the_exact_nearest_colour():
    rng = np.random.default_rng(6)
    palette = rng.integers(0, 256, size=(40, 3), dtype=np.uint8)
    rgb = rng.integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    rgb[0, 0] = palette[17]
    index = plots.to_palette_indices(rgb, palette)
    brute = np.argmin(((rgb[:, :, None, :].astype(int) - palette[None, None].astype(int)) ** 2).sum(-1), axis=-1)
    np.testing.assert_array_equal(index, brute)
    assert index[0, 0] == 17


def test_comparison_animation_layout_caption_and_robust_error_scale():
    T = 100
    truth = 1.0 + 0.01 * np.arange(T)[:, None, None] * np.ones((T, 6, 6))  # range [1, 1.99]
    good = truth + 0.1 * np.random.default_rng(7).random((T, 6, 6))  # |error| <= 0.1
    bad = good.copy()
    bad[-1] += 1e6  # one diverging frame: 0.5 % of the animated errors
    for predictions in ({"MVAR": good}, {"MVAR": good, "LSTM": bad}):
        frames = plots.animation_frames(T, 120)
        fig, draw = plots.comparison_animation_figure(truth, predictions, np.arange(T) * 0.1, frames,
                                                      title="run 7")
        n_cols = 1 + len(predictions)
        axes = fig.axes[: 2 * n_cols]
        assert not fig.get_suptitle()  # no figure title to collide with the panel titles
        caption_ax = axes[n_cols]  # bottom-left: the caption, not an empty cell
        assert caption_ax.texts[0].get_text().startswith("run 7\nt = 0.00 s")
        draw(10)
        assert "t = 1.00 s" in caption_ax.texts[0].get_text() and "frame 11/100" in caption_ax.texts[0].get_text()
        renderer = FigureCanvasAgg(fig).get_renderer()
        caption_box = caption_ax.texts[0].get_window_extent(renderer)
        for ax in axes:
            if ax is not caption_ax:
                assert not caption_box.overlaps(ax.title.get_window_extent(renderer))
                assert not caption_box.overlaps(ax.get_window_extent(renderer))
        error_clim = axes[n_cols + 1].images[0].get_clim()
        all_errors = np.concatenate([np.abs(p - truth).ravel() for p in predictions.values()])
        assert error_clim == (0.0, pytest.approx(np.percentile(all_errors, plots.GIF_ERROR_PERCENTILE)))
        assert 0.09 < error_clim[1] <= 0.1  # the 1e6 frame does not set the scale
        np.testing.assert_array_equal(axes[n_cols + 1].images[0].get_array(), np.abs(good - truth)[10])


def test_comparison_animation_failure_leaves_no_file(tmp_path, monkeypatch):
    truth = np.random.default_rng(4).random((4, 5, 5))
    path = tmp_path / "broken.gif"

    calls = []
    real = plots.animation.PaletteMapper.__call__

    def fail_on_third_frame(self, rgb):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return real(self, rgb)

    monkeypatch.setattr(plots.animation.PaletteMapper, "__call__", fail_on_third_frame)
    with pytest.raises(RuntimeError, match="disk full"):
        plots.write_comparison_animation(truth, {"MVAR": truth}, np.arange(4.0), path)
    assert os.listdir(tmp_path) == [] and len(calls) == 3
    with pytest.raises(ValueError, match="gif"):
        plots.write_comparison_animation(truth, {"MVAR": truth}, np.arange(4.0), tmp_path / "x.mp4")


def test_blitted_gif_frames_equal_full_redraws(tmp_path):
    """Each GIF frame (only images and caption redrawn) equals a full draw of that frame."""
    from rom_pipeline.evaluation.plots.animation import PaletteMapper

    rng = np.random.default_rng(8)
    truth = rng.random((5, 7, 7))
    predictions = {"MVAR": truth + 0.2 * rng.random(truth.shape), "LSTM": truth[::-1].copy()}
    times = 0.5 + 0.25 * np.arange(5)
    path = plots.write_comparison_animation(truth, predictions, times, tmp_path / "m.gif", title="run 3",
                                            dpi=50, panel_inches=2.0)
    frames = plots.animation_frames(5, 120)
    fig, draw = plots.comparison_animation_figure(truth, predictions, times, frames, "run 3", 50, 2.0)
    canvas = FigureCanvasAgg(fig)
    mapper = PaletteMapper(plots.gif_palette())
    with Image.open(path) as gif:
        decoded = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
    assert len(decoded) == 5
    for k in range(5):
        draw(k)
        canvas.draw()
        full = mapper.palette[mapper(np.asarray(canvas.buffer_rgba())[..., :3])]
        np.testing.assert_array_equal(decoded[k], full)


def test_palette_mapper_remembers_colours_and_refuses_bad_palettes():
    from rom_pipeline.evaluation.plots.animation import PaletteMapper

    mapper = PaletteMapper(np.array([[0, 0, 0], [255, 255, 255], [200, 10, 10]], dtype=np.uint8))
    rgb = np.array([[[250, 250, 250], [190, 20, 0], [10, 10, 10]]], dtype=np.uint8)
    np.testing.assert_array_equal(mapper(rgb), [[1, 2, 0]])
    np.testing.assert_array_equal(mapper(rgb[:, ::-1]), [[0, 2, 1]])  # from the table now
    assert len(mapper.pil_palette()) == 768 and mapper.pil_palette()[-3:] == [200, 10, 10]
    with pytest.raises(ValueError, match="palette"):
        PaletteMapper(np.zeros((300, 3), dtype=np.uint8))
