"""Streaming mean and centred second moment of snapshot rows (science.md §4).

Snapshot rows ``x`` (length ``n_grid``, one per training frame) arrive run by run; nothing else
is kept than what the chosen POD route needs:

- "snapshots": while there are fewer snapshots than grid cells the centred rows are kept (method
  of snapshots, ``n_snapshots x n_snapshots`` Gram);
- "gram": from then on the ``n_grid x n_grid`` Gram ``sum (x - mu)(x - mu)^T``, accumulated with
  BLAS ``dsyrk`` through a fixed-size buffer.

The "krylov" route keeps the rows themselves instead
(:class:`~rom_pipeline.rom.snapshot_operator.KeptSnapshots`).

The result does not depend on how the rows are split into runs beyond rounding (the provisional
centre is the mean of the first block added, and the route switch happens at a block boundary).
"""
from __future__ import annotations

import numpy as np
from scipy.linalg import blas

# Rows of the snapshot buffer handed to one dsyrk call (about 64 MB at 64 x 64 grids).
_BUFFER_BYTES = 64 * 2**20


class StreamingSecondMoment:
    """Streaming mean and centred second moment of snapshot rows (one pass, exact centring).

    Rows are shifted by a provisional centre ``m0`` (the mean of the first block) before they are
    accumulated; at the end ``mu = m0 + d`` with ``d = mean(x - m0)`` and
    ``sum (x - mu)(x - mu)^T = sum (x - m0)(x - m0)^T - n d d^T``. Since ``m0`` is a typical
    snapshot mean, the correction does not cancel digits the way an uncentred Gram would.

    Snapshots are kept (method of snapshots) until there are as many as grid cells; from then on
    the ``n_grid x n_grid`` Gram matrix is cheaper in memory and flops, so the kept rows are folded
    into it with ``dsyrk`` and further rows go through a fixed-size buffer.
    """

    def __init__(self) -> None:
        self.n_snapshots = 0
        self.n_grid = None
        self.route = "snapshots"
        self._m0 = None
        self._deviation_sum = None
        self._kept: list[np.ndarray] = []
        self._gram = None
        self._buffer = None
        self._filled = 0

    def add(self, x: np.ndarray) -> None:
        """Accumulate snapshot rows x (T, n_grid); x is not modified."""
        if self._m0 is None:
            self.n_grid = x.shape[1]
            self._m0 = x.mean(axis=0)
            self._deviation_sum = np.zeros(self.n_grid)
        self.n_snapshots += x.shape[0]
        if self.route == "gram":
            self._push(x, centre=True)
            return
        deviation = x - self._m0
        self._deviation_sum += deviation.sum(axis=0)
        self._kept.append(deviation)
        if self.n_snapshots >= self.n_grid:
            self.route = "gram"
            self._gram = np.zeros((self.n_grid, self.n_grid), order="F")
            self._buffer = np.empty((max(1, _BUFFER_BYTES // (8 * self.n_grid)), self.n_grid))
            self._deviation_sum[:] = 0.0  # from now on summed per flushed buffer
            kept, self._kept = self._kept, []
            while kept:
                self._push(kept.pop(0), centre=False)

    def _push(self, rows: np.ndarray, centre: bool) -> None:
        """Copy rows (minus m0 when ``centre``) into the buffer, flushing it whenever it fills."""
        start = 0
        while start < rows.shape[0]:
            take = min(self._buffer.shape[0] - self._filled, rows.shape[0] - start)
            target = self._buffer[self._filled : self._filled + take]
            if centre:
                np.subtract(rows[start : start + take], self._m0, out=target)
            else:
                target[...] = rows[start : start + take]
            self._filled += take
            start += take
            if self._filled == self._buffer.shape[0]:
                self._flush()

    def _flush(self) -> None:
        if self._filled:
            rows = self._buffer[: self._filled]
            self._deviation_sum += rows.sum(axis=0)
            # rows.T is (n_grid, m) in Fortran order (no copy); lower triangle of rows^T rows
            blas.dsyrk(1.0, rows.T, beta=1.0, c=self._gram, trans=0, lower=1, overwrite_c=1)
            self._filled = 0

    def _shift(self) -> np.ndarray:
        if self.route == "gram" and self._buffer is not None:
            self._flush()  # buffered rows are summed when flushed
        return self._deviation_sum / self.n_snapshots

    def mean(self) -> np.ndarray:
        """(n_grid,) exact mean of all rows."""
        return self._m0 + self._shift()

    def centred_gram(self) -> np.ndarray:
        """(n_grid, n_grid) lower triangle of ``sum (x - mu)(x - mu)^T``, Fortran order (gram route)."""
        self._flush()
        self._buffer = None
        gram, self._gram = self._gram, None
        blas.dsyr(-float(self.n_snapshots), self._shift(), lower=1, a=gram, overwrite_a=1)
        return gram

    def centred_snapshots(self) -> np.ndarray:
        """(n_snapshots, n_grid) rows ``x - mu`` (snapshots route)."""
        snapshots = np.concatenate(self._kept)
        self._kept = []
        snapshots -= self._shift()
        return snapshots
