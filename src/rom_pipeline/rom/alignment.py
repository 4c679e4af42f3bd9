"""Shift alignment of density frames onto one reference frame before POD (science.md §4).

A frame ``rho`` (ny, nx) is translated by the periodic shift ``s = (dy, dx)`` that maximises its
cross-correlation with the reference (:func:`rom_pipeline.rom.shifts.estimate_shifts`): whole cells
(``method="integer"``, a roll) or a continuous Fourier shift (``"subpixel"``). The reference is
built from the raw training frames:

- ``"first"``: the first frame of the first run;
- ``"mean"``: the temporal mean of all frames, ``sum_i sum_t rho_it / sum_i T_i``;
- ``"median"``: the pixel-wise median over runs of each run's pixel-wise temporal median (the
  exact median for a single run; computed this way so that building it streams over runs).

For ``"mean"``/``"median"`` every run contributes a small statistic (:meth:`ShiftAlignment.run_statistic`,
computable on a worker) and :meth:`ShiftAlignment.reference_from_statistics` combines them in run order.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from rom_pipeline.rom.shifts import align_densities, apply_shifts, check_shift_method, estimate_shifts

REFERENCE_KINDS = ("mean", "first", "median")


class ShiftAlignment:
    """Align frames (T, ny, nx) onto ``reference_`` (ny, nx) by periodic shifts.

    Args:
        reference_kind: ``"mean"``, ``"first"`` or ``"median"`` (see the module doc).
        method: ``"integer"`` or ``"subpixel"`` (:mod:`rom_pipeline.rom.shifts`).

    Attributes (once the reference is set):
        reference_: (ny, nx) raw reference frame.
    """

    def __init__(self, reference_kind: str = "mean", method: str = "integer", reference: np.ndarray | None = None):
        if reference_kind not in REFERENCE_KINDS:
            raise ValueError(f"rom.shift_align_ref must be one of {REFERENCE_KINDS}, got {reference_kind!r}")
        self.reference_kind = reference_kind
        self.method = check_shift_method(method)
        if reference is not None:
            self.reference_ = np.asarray(reference, dtype=np.float64)

    @property
    def needs_reference_pass(self) -> bool:
        """True when building the reference takes one pass over all runs (``mean``/``median``)."""
        return self.reference_kind in ("mean", "median")

    # ------------------------------------------------------------------ building the reference
    def run_statistic(self, frames: np.ndarray) -> Any:
        """One run's share of the reference: ``(sum over frames (ny, nx), T)`` for ``"mean"``, the
        pixel-wise temporal median (ny, nx) for ``"median"``."""
        if self.reference_kind == "mean":
            return frames.sum(axis=0), frames.shape[0]
        if self.reference_kind == "median":
            return np.median(frames, axis=0)
        raise ValueError("the 'first' reference needs no per-run statistic: use reference_from_first_run")

    def reference_from_statistics(self, statistics: Iterable[Any]) -> ShiftAlignment:
        """Combine the runs' :meth:`run_statistic` values, in run order, into ``reference_``."""
        statistics = iter(statistics)
        if self.reference_kind == "mean":
            total, count = next(statistics)
            for run_sum, run_count in statistics:
                total = total + run_sum
                count += run_count
            self.reference_ = total / count
        else:
            self.reference_ = np.median(np.stack(list(statistics)), axis=0)
        return self

    def reference_from_first_run(self, frames: np.ndarray) -> ShiftAlignment:
        """``reference_`` = the first frame of ``frames`` (T, ny, nx) (the ``"first"`` kind)."""
        self.reference_ = frames[0].copy()
        return self

    # ------------------------------------------------------------------ using it
    def _check_reference(self) -> np.ndarray:
        if not hasattr(self, "reference_"):
            raise RuntimeError("the alignment reference is not set: build it from the training runs first")
        return self.reference_

    def shifts(self, frames: np.ndarray) -> np.ndarray:
        """(T, ny, nx) raw frames -> (T, 2) shifts onto the reference (int64 for the integer
        method, float64 for sub-pixel)."""
        return estimate_shifts(frames, self._check_reference(), self.method)

    def align(self, frames: np.ndarray, shifts: np.ndarray | None = None) -> np.ndarray:
        """(T, ny, nx) frames translated by ``shifts`` (estimated when None) onto the reference."""
        if shifts is None:
            shifts = self.shifts(frames)
        return align_densities(frames, shifts, self.method)

    def unalign(self, frames: np.ndarray, shifts: np.ndarray) -> np.ndarray:
        """Undo :meth:`align`: (T, ny, nx) frames translated by ``-shifts``."""
        return apply_shifts(frames, shifts, inverse=True, method=self.method)
