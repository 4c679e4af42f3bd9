"""Small versioned Kedro datasets that kedro-datasets lacks: NumPy ``.npz`` and PyTorch payloads.

Both write atomically (to a temporary name beside the target, then rename), so a killed run never
leaves a half-written artifact that a later run could load, and both load without untrusted
deserialisation (``numpy.load(allow_pickle=False)``, ``torch.load(weights_only=True)``).
"""
from __future__ import annotations

import io
import json
import re
import uuid
import zipfile
from copy import deepcopy
from pathlib import PurePosixPath
from typing import Any

import fsspec
import numpy as np
from kedro.io.core import (
    AbstractVersionedDataset,
    DatasetError,
    Version,
    get_filepath_str,
    get_protocol_and_path,
)
from kedro_datasets._typing import JSONPreview, TablePreview


PARTIAL_SUFFIX = re.compile(r"\.partial-[0-9a-f]{8}$")
LINEAGE_KEY = "_lineage"  # a 0-d string array (npz) or a str (torch payload): JSON, see lineage.py


def read_npz(source: Any, label: str, fix: str) -> dict[str, np.ndarray]:
    """Every array of an ``.npz`` (path or file object), read fully with ``allow_pickle=False``.

    A truncated, corrupt or pickle-holding file raises :class:`DatasetError` naming ``label`` and
    the ``fix``.
    """
    try:
        with np.load(source, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        # numpy reads any non-zip bytes as a would-be pickle: only an .npz archive holding an
        # object array really "holds pickled objects"
        if hasattr(source, "seek"):
            source.seek(0)
        is_archive = zipfile.is_zipfile(source)
        problem = (
            "holds pickled Python objects, which are never loaded (allow_pickle=False): this "
            "pipeline did not write it" if "allow_pickle" in str(exc) and is_archive
            else "is not a readable .npz file"
        )
        detail = exc if is_archive else "not an .npz (zip) archive"
        raise DatasetError(f"{label} {problem} ({detail}); {fix}") from exc


class _FileDataset(AbstractVersionedDataset):
    """fsspec plumbing shared by the byte-oriented datasets below."""

    def __init__(
        self,
        *,
        filepath: str,
        version: Version | None = None,
        credentials: dict[str, Any] | None = None,
        fs_args: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        protocol, path = get_protocol_and_path(filepath, version)
        fs_args = deepcopy(fs_args) or {}
        if protocol == "file":
            fs_args.setdefault("auto_mkdir", True)
        self._protocol = protocol
        self._fs = fsspec.filesystem(protocol, **(credentials or {}), **fs_args)
        self.metadata = metadata
        super().__init__(
            filepath=PurePosixPath(path),
            version=version,
            exists_function=self._fs.exists,
            glob_function=self._fs.glob,
        )

    _lineage: dict[str, Any] | None = None
    _require_finite: bool = False

    def stamp(self, record: dict[str, Any] | None, require_finite: bool = False) -> None:
        """Record ``record`` (see :mod:`rom_pipeline.framework.lineage`) in what this dataset saves next;
        with ``require_finite`` a save holding NaN or inf is refused."""
        self._lineage = record
        self._require_finite = require_finite

    def _read_bytes(self) -> bytes:
        path = get_filepath_str(self._get_load_path(), self._protocol)
        with self._fs.open(path, "rb") as f:
            return f.read()

    def _remove_orphans(self) -> None:
        """Delete temporary files a killed write left (``<name>.partial-<8 hex>``, this dataset's
        own naming scheme only), beside the file or inside any of its version folders."""
        base = get_filepath_str(self._filepath, self._protocol)
        name = self._filepath.name
        for pattern in (f"{base}.partial-*", f"{base}/*/{name}.partial-*"):
            for orphan in self._fs.glob(pattern):
                if PARTIAL_SUFFIX.search(str(orphan)) and str(orphan).rsplit("/", 1)[-1].startswith(name):
                    self._fs.rm(orphan)

    def _write_bytes(self, payload: bytes) -> None:
        self._remove_orphans()
        path = get_filepath_str(self._get_save_path(), self._protocol)
        parent = path.rsplit("/", 1)[0] if "/" in path else "."
        self._fs.makedirs(parent, exist_ok=True)
        tmp = f"{path}.partial-{uuid.uuid4().hex[:8]}"
        try:
            with self._fs.open(tmp, "wb") as f:
                f.write(payload)
            self._fs.mv(tmp, path)
        finally:
            if self._fs.exists(tmp):
                self._fs.rm(tmp)
        self._invalidate_cache()

    def _invalidate_cache(self) -> None:
        self._fs.invalidate_cache(get_filepath_str(self._filepath, self._protocol))

    def _exists(self) -> bool:
        try:
            path = get_filepath_str(self._get_load_path(), self._protocol)
        except DatasetError:
            return False
        return self._fs.exists(path)

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._filepath, "protocol": self._protocol, "version": self._version}


class NpzDataset(_FileDataset):
    """A dict of NumPy arrays in one uncompressed ``.npz`` file.

    ``save(dict[str, ndarray])``; ``load() -> dict[str, ndarray]`` (fully read, file closed).
    Object arrays are refused on both sides: everything must be loadable with NumPy alone.

    Example catalog entry::

        pod_basis:
          type: rom_pipeline.datasets.NpzDataset
          filepath: data/${globals:experiment}/rom_common/pod_basis.npz
          versioned: true
    """

    def load(self) -> dict[str, np.ndarray]:
        return read_npz(
            io.BytesIO(self._read_bytes()), str(self._filepath),
            "delete it and rerun the pipeline that produces it",
        )

    def save(self, data: dict[str, Any]) -> None:
        if not isinstance(data, dict):
            raise DatasetError(f"NpzDataset saves a dict of arrays, got {type(data).__name__}")
        arrays = {str(k): np.asarray(v) for k, v in data.items()}
        bad = [k for k, v in arrays.items() if v.dtype == object]
        if bad:
            raise DatasetError(f"NpzDataset refuses object arrays (keys {bad}): store numbers or strings")
        if self._require_finite:
            bad = [k for k, v in arrays.items() if v.dtype.kind in "fc" and not np.all(np.isfinite(v))]
            if bad:
                raise DatasetError(
                    f"{self._filepath}: arrays {bad} hold NaN or inf and are not written; the stage "
                    "that computed them failed numerically (check its inputs and parameters)"
                )
        if self._lineage is not None:
            arrays[LINEAGE_KEY] = np.array(json.dumps(self._lineage, sort_keys=True, default=float))
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        self._write_bytes(buf.getvalue())

    def read_lineage(self) -> dict[str, Any] | None:
        """The lineage record stored with the artifact at its load version (read without loading
        the other arrays), or ``None`` for an artifact written before lineage was recorded."""
        raw = self._read_bytes()
        try:
            with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
                if LINEAGE_KEY not in npz.files:
                    return None
                return json.loads(str(npz[LINEAGE_KEY]))
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise DatasetError(
                f"{self._filepath} is not a readable .npz file ({exc}); delete it and rerun the "
                "pipeline that produces it"
            ) from exc

    def preview(self, nrows: int = 50) -> TablePreview:
        """kedro-viz table preview: one row per array (the first ``nrows``) with its shape, dtype,
        its value when it is a scalar and, for numbers, min, max and mean (``None`` where not
        defined)."""
        rows = []
        for name, array in list(self.load().items())[:nrows]:
            numeric = array.dtype.kind in "biuf" and array.size > 0
            finite = array[np.isfinite(array)] if numeric else np.zeros(0)
            stats = [float(f(finite)) if finite.size else None for f in (np.min, np.max, np.mean)]
            value = array.item() if array.ndim == 0 else None
            if isinstance(value, float) and not np.isfinite(value):
                value = None
            rows.append([name, "×".join(map(str, array.shape)) or "scalar", str(array.dtype), value, *stats])
        return TablePreview({
            "index": list(range(len(rows))),
            "columns": ["array", "shape", "dtype", "value", "min", "max", "mean"],
            "data": rows,
        })


class TorchPayloadDataset(_FileDataset):
    """A ``torch.save`` payload of tensors and plain Python values (no pickled classes).

    Loading uses ``torch.load(weights_only=True)``, so a payload holding arbitrary objects is
    refused instead of executed.

    Why not kedro-datasets' experimental ``pytorch.PyTorchDataset``: that one saves a module's
    ``state_dict`` alone, to be loaded into a model class the caller rebuilds. The forecaster's
    payload also carries its hyper-parameters, normalisation, climatology, training log and the
    lineage record (:mod:`rom_pipeline.framework.lineage`) checked before any stage reads it, and is written
    atomically beside the other versioned artifacts (``_FileDataset``).
    """

    def load(self) -> dict[str, Any]:
        import torch

        raw = self._read_bytes()
        try:
            return torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for corrupt/unsafe files
            raise DatasetError(
                f"{self._filepath} could not be loaded safely ({exc}); delete it and rerun the "
                "lstm pipeline"
            ) from exc

    def read_lineage(self) -> dict[str, Any] | None:
        """The lineage record stored in the payload (``None`` if it predates lineage)."""
        payload = self.load()
        raw = payload.get(LINEAGE_KEY) if isinstance(payload, dict) else None
        return None if raw is None else json.loads(raw)

    def save(self, data: dict[str, Any]) -> None:
        import torch

        if self._lineage is not None and isinstance(data, dict):
            data = {**data, LINEAGE_KEY: json.dumps(self._lineage, sort_keys=True, default=float)}
        buf = io.BytesIO()
        torch.save(data, buf)
        self._write_bytes(buf.getvalue())

    def preview(self, max_depth: int = 3) -> JSONPreview:
        """kedro-viz JSON preview: the payload's structure, each tensor as ``{"shape", "dtype"}``
        and each plain value as itself (nested to ``max_depth`` levels, long lists shortened)."""
        import torch

        def describe(value: Any, depth: int) -> Any:
            if isinstance(value, torch.Tensor):
                return {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch.")}
            if isinstance(value, dict):
                if depth >= max_depth:
                    return f"{{{len(value)} entries}}"
                return {str(k): describe(v, depth + 1) for k, v in value.items()}
            if isinstance(value, list | tuple):
                shown = [describe(v, depth + 1) for v in value[:10]]
                return shown + ([f"... {len(value) - 10} more"] if len(value) > 10 else [])
            if isinstance(value, float):
                return value if np.isfinite(value) else str(value)  # JSON has no NaN
            if value is None or isinstance(value, bool | int | str):
                return value
            return repr(value)

        return JSONPreview(json.dumps(describe(self.load(), 0), default=str))
