"""Truth-vs-prediction animations (GIF) written through the catalog."""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import ImagePreview


class ComparisonAnimationDataset(AbstractDataset[dict, list]):
    """A folder of GIFs, one per test run: ``save({name: spec})``.

    Each ``spec`` is ``{"truth": (T,ny,nx), "predictions": {model: (T,ny,nx)}, "times": (T,),
    "title": str}``; the file ``<path>/<name>.gif`` is written atomically, with the normal mode
    of a new file, by :func:`rom_pipeline.evaluation.plots.write_comparison_animation`.
    ``load`` lists the files.
    """

    def __init__(self, *, path: str, fps: int = 10, max_frames: int = 120,
                 metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self._fps = fps
        self._max_frames = max_frames
        self.metadata = metadata

    def save(self, data: dict[str, dict[str, Any]]) -> None:
        from rom_pipeline.evaluation.plots import write_comparison_animation

        self._path.mkdir(parents=True, exist_ok=True)
        for name, spec in data.items():
            write_comparison_animation(
                spec["truth"], spec["predictions"], spec["times"], self._path / f"{name}.gif",
                fps=self._fps, max_frames=spec.get("max_frames", self._max_frames),  # eval.animation_max_frames
                title=spec.get("title", name),
            )

    def load(self) -> list[Path]:
        files = sorted(self._path.glob("*.gif"))
        if not files:
            raise DatasetError(f"No animations in {self._path}: run the evaluation pipeline")
        return files

    def _exists(self) -> bool:
        return any(self._path.glob("*.gif"))

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path), "fps": self._fps}

    def preview(self, frame: float = 0.5) -> ImagePreview:
        """kedro-viz image preview: one frame of the first animation as a base64 PNG (kedro-viz
        shows previews as PNG), ``frame`` the fraction of the movie (0 first, 1 last)."""
        from PIL import Image

        with Image.open(self.load()[0]) as gif:
            gif.seek(min(gif.n_frames - 1, max(0, round(frame * (gif.n_frames - 1)))))
            buffer = io.BytesIO()
            gif.convert("RGB").save(buffer, format="PNG")
        return ImagePreview(base64.b64encode(buffer.getvalue()).decode("ascii"))
