"""The centred snapshot matrix kept in memory as an implicit operator (the "krylov" POD route).

Snapshot rows ``x`` (length ``n_grid``) arrive run by run and are kept *by reference*, as given
(never copied, centred or otherwise modified): memory is the snapshot matrix once, and nothing
when the caller already holds it. The centred matrix ``X_c = X - 1 mu^T`` (n_snapshots, n_grid) is
never formed; what an iterative eigensolver needs is the product

    A V = X_c^T (X_c V),  V (n_grid, b),

computed in one read of ``X`` per product: every row slab ``R`` (at most ``_TASK_BYTES``, a few
MB, so it stays in cache between the two products) is centred into a per-thread buffer
``C = R - 1 mu^T`` and contributes ``C^T (C V)``. Slabs run on a pool of threads, each with a
single-threaded BLAS (small products on a threaded BLAS pay a synchronisation per call that
dominates on shared cores); the partial products are added in slab order, so ``A V`` is
bit-identical whatever the number of threads.

The exact mean and the exact total energy ``||X_c||_F^2`` (all a POD energy rule needs besides the
leading singular values) are accumulated when the rows are added, about a provisional centre
``m0`` (the mean of the first block): ``mu = m0 + d`` with ``d = mean(x - m0)`` and
``||X_c||_F^2 = sum ||x - m0||^2 - n d.d``.
"""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import ThreadpoolController

# Largest row slab of one task: small enough that the slab and its centred copy stay in cache
# between C V and C^T (C V) (about 256 rows of a 64 x 64 grid).
_TASK_BYTES = 8 * 2**20


def blas_threads() -> int:
    """Threads the BLAS would use now (threadpoolctl's view, honouring OMP/OPENBLAS limits)."""
    counts = [info["num_threads"] for info in ThreadpoolController().info() if info["user_api"] == "blas"]
    return max(1, max(counts, default=1))


class KeptSnapshots:
    """Snapshot rows kept in memory, exposed as the operator ``V -> X_c^T X_c V``.

    Attributes:
        n_snapshots: rows added so far.
        n_grid: row length.
        route: ``"krylov"``.
    """

    route = "krylov"

    def __init__(self) -> None:
        self.n_snapshots = 0
        self.n_grid: int | None = None
        self._rows: list[np.ndarray] = []
        self._m0 = None
        self._deviation_sum = None
        self._square_sum = 0.0

    def add(self, x: np.ndarray) -> None:
        """Keep snapshot rows x (T, n_grid) float64 by reference (x must not change until the solve
        is done) and update the mean and energy sums."""
        x = np.ascontiguousarray(x, dtype=np.float64)
        if self._m0 is None:
            self.n_grid = int(x.shape[1])
            self._m0 = x.mean(axis=0)
            self._deviation_sum = np.zeros(self.n_grid)
        elif x.shape[1] != self.n_grid:
            raise ValueError(f"snapshot rows have length {x.shape[1]}, earlier ones {self.n_grid}")
        for start in range(0, x.shape[0], self._slab_rows()):
            deviation = x[start : start + self._slab_rows()] - self._m0
            self._deviation_sum += deviation.sum(axis=0)
            self._square_sum += float(np.einsum("ij,ij->", deviation, deviation))
        self.n_snapshots += x.shape[0]
        self._rows.append(x)

    def _slab_rows(self) -> int:
        return max(1, _TASK_BYTES // (8 * self.n_grid))

    def _shift(self) -> np.ndarray:
        return self._deviation_sum / self.n_snapshots

    def mean(self) -> np.ndarray:
        """(n_grid,) exact mean ``mu`` of all rows."""
        return self._m0 + self._shift()

    def total_energy(self) -> float:
        """``||X_c||_F^2 = sum_k s_k^2``, the denominator of the POD energy rule."""
        shift = self._shift()
        return self._square_sum - self.n_snapshots * float(shift @ shift)

    def rows(self) -> list[np.ndarray]:
        """The kept row blocks, as added."""
        return list(self._rows)

    def slabs(self) -> list[np.ndarray]:
        """The kept rows as row slabs (views) of at most ``_TASK_BYTES``, in row order."""
        step = self._slab_rows()
        return [rows[start : start + step] for rows in self._rows for start in range(0, rows.shape[0], step)]

    def apply(self, v: np.ndarray) -> np.ndarray:
        """``X_c^T (X_c v)`` for v (n_grid, b) float64: one read of the kept rows, exact centring."""
        v = np.ascontiguousarray(v, dtype=np.float64)
        mu = self.mean()
        local = threading.local()

        def product(rows: np.ndarray) -> np.ndarray:
            buffer = getattr(local, "buffer", None)
            if buffer is None or buffer.shape[0] < rows.shape[0]:
                buffer = local.buffer = np.empty((self._slab_rows(), self.n_grid))
            centred = np.subtract(rows, mu, out=buffer[: rows.shape[0]])
            return centred.T @ (centred @ v)

        out = np.zeros((self.n_grid, v.shape[1]))
        workers = blas_threads()
        with ThreadpoolController().limit(limits=1, user_api="blas"):
            if workers == 1:
                for part in map(product, self.slabs()):
                    out += part
            else:
                with ThreadPoolExecutor(workers) as pool:
                    for part in pool.map(product, self.slabs()):  # slab order: bit-reproducible
                        out += part
        return out

    def release(self) -> None:
        """Drop the references to the rows (after the solve)."""
        self._rows = []
