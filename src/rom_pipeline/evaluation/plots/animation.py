"""Truth-versus-forecast GIF animations (matplotlib figure, Pillow GIF with a fixed palette)."""
from __future__ import annotations

import io
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from rom_pipeline.evaluation.plots._common import (
    DENSITY_CMAP,
    ERROR_CMAP,
    _check_movies,
    _colour_limits,
    _image,
)

logger = logging.getLogger(__name__)

def animation_frames(n_frames: int, max_frames: int) -> np.ndarray:
    """Indices of ``min(n_frames, max_frames)`` frames evenly spread over 0..n_frames-1,
    always including the first and last."""
    if int(max_frames) != max_frames or max_frames < 1:
        raise ValueError(f"max_frames must be a positive integer, got {max_frames!r}")
    n = min(int(n_frames), int(max_frames))
    # For n <= n_frames consecutive targets are >= 1 apart, so the rounded indices are distinct.
    return np.round(np.linspace(0, n_frames - 1, n)).astype(int)


GIF_LEVELS = 100  # colour levels per colour map in a GIF; with greys the palette fits in 256
GIF_ERROR_PERCENTILE = 99.0


def gif_palette(levels: int = GIF_LEVELS) -> np.ndarray:
    """The fixed GIF palette, (K, 3) uint8 with K ≤ 256: ``levels`` colours of the density map,
    ``levels`` of the error map (the exact colours of the maps resampled to ``levels``) and
    the greys that text, spines and anti-aliasing on white need."""
    n_grey = 256 - 2 * int(levels)
    if n_grey < 2:
        raise ValueError(f"levels must leave room for greys in a 256-colour palette, got {levels!r}")
    colours = [
        mpl.colormaps[DENSITY_CMAP].resampled(levels)(np.arange(levels))[:, :3],
        mpl.colormaps[ERROR_CMAP].resampled(levels)(np.arange(levels))[:, :3],
        np.repeat(np.linspace(0.0, 1.0, n_grey)[:, None], 3, axis=1),
    ]
    return np.round(np.concatenate(colours) * 255).astype(np.uint8)


def to_palette_indices(rgb: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """Index of the nearest palette colour (Euclidean in RGB) of every pixel, exactly.

    Args:
        rgb: (H, W, 3) uint8 image; palette: (K, 3) uint8 colours, K ≤ 256.

    Returns:
        (H, W) uint8 indices into ``palette``.
    """
    return PaletteMapper(palette)(rgb)


class PaletteMapper:
    """Maps RGB frames to the exact nearest colour of a fixed palette, remembering every colour
    it has seen in a lookup table of all 2^24 colours (so a movie's frames, which repeat the
    same colours, cost one table look-up per pixel).

    Pillow's own fixed-palette conversion looks colours up in a reduced-precision cache (white
    becomes 250, 250, 250) and its default GIF conversion picks an adaptive palette per frame,
    which bands smooth colour bars and makes colours flicker between frames.
    """

    _UNSEEN = np.iinfo(np.uint16).max

    def __init__(self, palette: np.ndarray):
        self.palette = np.asarray(palette, dtype=np.uint8)
        if self.palette.ndim != 2 or self.palette.shape[1] != 3 or not 1 <= len(self.palette) <= 256:
            raise ValueError(f"palette must have shape (K, 3) with 1 <= K <= 256, got {self.palette.shape}")
        self._table = np.full(1 << 24, self._UNSEEN, dtype=np.uint16)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        rgb = np.asarray(rgb, dtype=np.uint8)
        packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
        index = self._table[packed]
        unseen = index == self._UNSEEN
        if unseen.any():
            colours = np.unique(packed[unseen])
            unique_rgb = np.stack([(colours >> 16) & 255, (colours >> 8) & 255, colours & 255], axis=1)
            distance = ((unique_rgb[:, None, :].astype(np.int64)
                         - self.palette[None, :, :].astype(np.int64)) ** 2).sum(axis=2)
            self._table[colours] = np.argmin(distance, axis=1)
            index = self._table[packed]
        return index.astype(np.uint8)

    def pil_palette(self) -> list[int]:
        """The palette as Pillow's flat 768-value list, padded with an existing colour."""
        flat = np.empty((256, 3), dtype=np.uint8)
        flat[: len(self.palette)] = self.palette
        flat[len(self.palette):] = self.palette[-1]
        return flat.ravel().tolist()


def _file_mode() -> int:
    """The mode ``open()`` gives a new file here: 0o666 less the process umask."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def comparison_animation_figure(
    truth, predictions: Mapping[str, np.ndarray], times, frames, title: str = "",
    dpi: int = 80, panel_inches: float = 2.5,
):
    """The figure of :func:`write_comparison_animation` and a function that draws frame k.

    Args:
        truth: (T, ny, nx); predictions: {model: (T, ny, nx)}; times: (T,) seconds.
        frames: (F,) frame indices to animate (e.g. :func:`animation_frames`).
        title, dpi, panel_inches: see :func:`write_comparison_animation`.

    Returns:
        ``(figure, draw)``: the laid-out, frozen figure (2 × (1 + M) axes, row-major: truth,
        the M forecasts, the caption axes, the M |error| panels; then the two colour bars) and
        ``draw(k)`` that sets every image and the caption to ``frames[k]``; ``draw.artists``
        lists those artists (the only ones that change between frames).
    """
    truth, predictions, times = _check_movies(truth, predictions, times)
    frames = np.asarray(frames, dtype=int)
    names = list(predictions)
    errors = {name: np.abs(predictions[name][frames] - truth[frames]) for name in names}
    density_limits, error_limits = _colour_limits(
        truth[frames], list(errors.values()), error_percentile=GIF_ERROR_PERCENTILE
    )
    density_cmap = mpl.colormaps[DENSITY_CMAP].resampled(GIF_LEVELS)
    error_cmap = mpl.colormaps[ERROR_CMAP].resampled(GIF_LEVELS)

    n_cols = 1 + len(names)
    fig = Figure(figsize=(panel_inches * n_cols, panel_inches * 2), dpi=dpi, layout="constrained")
    axes = fig.subplots(2, n_cols, squeeze=False)
    first = frames[0]
    truth_image = _image(axes[0, 0], truth[first], None, density_cmap, density_limits)
    axes[0, 0].set_title("truth", fontsize="small")
    model_images, error_images = [], []
    for j, name in enumerate(names, start=1):
        model_images.append(_image(axes[0, j], predictions[name][first], None, density_cmap, density_limits))
        axes[0, j].set_title(name, fontsize="small")
        error_images.append(_image(axes[1, j], errors[name][0], None, error_cmap, error_limits))
        axes[1, j].set_title(f"|error| {name}", fontsize="small")
    fig.colorbar(truth_image, ax=axes[0, :].tolist(), shrink=0.8, label="density")
    error_max = max((float(np.nanmax(e)) for e in errors.values() if np.isfinite(e).any()), default=0.0)
    fig.colorbar(error_images[0], ax=axes[1, 1:].tolist(), shrink=0.8, label="|error|",
                 extend="max" if error_max > error_limits[1] else "neither")
    caption_ax = axes[1, 0]
    caption_ax.set_axis_off()
    caption = caption_ax.text(0.0, 0.5, "", transform=caption_ax.transAxes, ha="left", va="center",
                              fontsize="small")

    def caption_text(frame: int) -> str:
        return (f"{title}\n" if title else "") + (
            f"t = {times[frame]:.2f} s\nlead {times[frame] - times[0]:.2f} s\n"
            f"frame {frame + 1}/{truth.shape[0]}"
        )

    def draw(k: int) -> None:
        frame = frames[k]
        truth_image.set_data(truth[frame])
        for name, model_image, error_image in zip(names, model_images, error_images):
            model_image.set_data(predictions[name][frame])
            error_image.set_data(errors[name][k])
        # The frame number keeps consecutive GIF frames distinct (Pillow merges equal ones).
        caption.set_text(caption_text(frame))

    # Lay out once, with the last (longest) caption, and freeze it so panels do not jitter.
    draw(len(frames) - 1)
    fig.draw_without_rendering()
    fig.set_layout_engine("none")
    draw(0)
    # What changes per frame, in drawing order: the images, then the frames of their axes
    # (drawn over the images, as a full draw does), then the caption.
    images = [truth_image, *model_images, *error_images]
    spines = [spine for image in images for spine in image.axes.spines.values()]
    draw.artists = [*images, *spines, caption]
    return fig, draw


def _render_frames(fig: Figure, draw, n_frames: int, mapper: PaletteMapper) -> list:
    """Every frame of the animation as a palette ("P") Pillow image.

    Blitting: the static part (axes, colour bars, titles) is drawn once; each frame restores
    it and redraws only ``draw.artists`` (the images and the caption), which is what changes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from PIL import Image

    canvas = FigureCanvasAgg(fig)
    for artist in draw.artists:
        artist.set_animated(True)  # left out of the full draw: the background is what stays
    canvas.draw()
    background = canvas.copy_from_bbox(fig.bbox)
    palette = mapper.pil_palette()
    images = []
    for k in range(n_frames):
        draw(k)
        canvas.restore_region(background)
        for artist in draw.artists:
            fig.draw_artist(artist)
        rgb = np.asarray(canvas.buffer_rgba())[..., :3]
        image = Image.fromarray(mapper(rgb), mode="P")
        image.putpalette(palette)
        images.append(image)
    return images


def comparison_animation_gif(
    truth,
    predictions: Mapping[str, np.ndarray],
    times,
    fps: float = 10,
    max_frames: int = 120,
    title: str = "",
    dpi: int = 80,
    panel_inches: float = 2.5,
) -> bytes:
    """The GIF of truth beside each model's forecast, with each model's |error| underneath, as
    bytes (what :func:`write_comparison_animation` writes; the evaluation node renders these and
    the catalog's animation dataset writes them).

    Layout: a 2 × (1 + M) grid; top row truth then the M forecasts, bottom row |error| of each
    model under its forecast, and bottom-left a caption with ``title``, the frame's time, its
    lead since the first forecast frame and its number (no figure title to collide with the
    panel titles). Frames are :func:`animation_frames` (at most ``max_frames``, evenly
    spaced). Colour scales are fixed over the movie: density on the truth's range, |error| on
    [0, 99th percentile of all animated errors] (capped at the truth's range; the colour bar's
    arrow marks larger errors), so one diverging frame does not wash out the others. Frames
    are mapped onto one fixed palette (:func:`gif_palette`, colour maps resampled to
    :data:`GIF_LEVELS` levels) so colour bars do not band; only the images and the caption are
    redrawn per frame (:func:`_render_frames`).

    Args:
        truth: (T, ny, nx); predictions: {model: (T, ny, nx)}; times: (T,) seconds.
        fps: frames per second of the GIF.
        max_frames: upper bound on the number of frames.
        title: first line of the caption.
        dpi, panel_inches: each frame is ``(1 + M) * panel_inches * dpi`` by
            ``2 * panel_inches * dpi`` pixels (rounded down).
    """
    truth, predictions, times = _check_movies(truth, predictions, times)
    if not fps > 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    frames = animation_frames(truth.shape[0], max_frames)
    fig, draw = comparison_animation_figure(truth, predictions, times, frames, title, dpi, panel_inches)
    gif_frames = _render_frames(fig, draw, len(frames), PaletteMapper(gif_palette()))
    buffer = io.BytesIO()
    gif_frames[0].save(buffer, format="GIF", save_all=True, append_images=gif_frames[1:],
                       duration=int(1000 / fps), loop=0)
    logger.info("rendered %d-frame comparison animation of %s", len(frames), list(predictions))
    return buffer.getvalue()


def write_file_atomically(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder (created if
    needed), given the normal mode of a new file (0o666 less the umask) and moved into place
    with :func:`os.replace`, so ``path`` never holds a partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        # mkstemp creates 0600; a result file gets the mode any new file would get.
        os.chmod(temp_name, _file_mode())
        os.replace(temp_name, path)
    except BaseException:
        Path(temp_name).unlink(missing_ok=True)
        raise
    return path


def write_comparison_animation(
    truth,
    predictions: Mapping[str, np.ndarray],
    times,
    path: str | os.PathLike,
    fps: float = 10,
    max_frames: int = 120,
    title: str = "",
    dpi: int = 80,
    panel_inches: float = 2.5,
) -> Path:
    """:func:`comparison_animation_gif` written to ``path`` (a ``.gif``) with
    :func:`write_file_atomically`, so ``path`` never holds a partial file.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"path must end in .gif (the animation is a GIF), got {str(path)!r}")
    data = comparison_animation_gif(truth, predictions, times, fps, max_frames, title, dpi, panel_inches)
    write_file_atomically(path, data)
    logger.info("wrote comparison animation of %s to %s", list(predictions), path)
    return path
