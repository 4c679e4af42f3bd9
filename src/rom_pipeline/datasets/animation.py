"""Truth-vs-prediction animations (GIF) written through the catalog."""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset, DatasetError
from kedro_datasets._typing import ImagePreview


class ComparisonAnimationDataset(AbstractDataset[dict, list]):
    """A folder of GIFs, one per test run: ``save({name: gif_bytes})`` writes ``<path>/<name>.gif``.

    The evaluation node renders the GIFs (:func:`rom_pipeline.evaluation.plots.comparison_animation_gif`);
    this dataset only writes them, each atomically and with the normal mode of a new file
    (:func:`~rom_pipeline.evaluation.plots.write_file_atomically`). ``load`` lists the files.
    """

    def __init__(self, *, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def save(self, data: dict[str, bytes]) -> None:
        from rom_pipeline.evaluation.plots.animation import write_file_atomically

        bad = sorted(name for name, gif in data.items() if not isinstance(gif, bytes | bytearray))
        if bad:
            raise DatasetError(f"ComparisonAnimationDataset saves {{name: GIF bytes}}; {bad} are not "
                               "bytes (render them with rom_pipeline.evaluation.plots.comparison_animation_gif)")
        self._path.mkdir(parents=True, exist_ok=True)
        for name, gif in data.items():
            write_file_atomically(self._path / f"{name}.gif", bytes(gif))

    def load(self) -> list[Path]:
        files = sorted(self._path.glob("*.gif"))
        if not files:
            raise DatasetError(f"No animations in {self._path}: run the evaluation pipeline")
        return files

    def _exists(self) -> bool:
        return any(self._path.glob("*.gif"))

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}

    def preview(self, frame: float = 0.5) -> ImagePreview:
        """kedro-viz image preview: one frame of the first animation as a base64 PNG (kedro-viz
        shows previews as PNG), ``frame`` the fraction of the movie (0 first, 1 last)."""
        from PIL import Image

        with Image.open(self.load()[0]) as gif:
            gif.seek(min(gif.n_frames - 1, max(0, round(frame * (gif.n_frames - 1)))))
            buffer = io.BytesIO()
            gif.convert("RGB").save(buffer, format="PNG")
        return ImagePreview(base64.b64encode(buffer.getvalue()).decode("ascii"))
