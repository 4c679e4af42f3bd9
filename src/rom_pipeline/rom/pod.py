"""Proper orthogonal decomposition of density movies (science.md §4).

Pipeline for one density frame ``rho`` (ny, nx):

1. optional shift alignment: translate the frame by the shift ``(dy, dx)`` that maximises its
   periodic cross-correlation with a reference frame (temporal mean, first or median frame of the
   training data): whole cells (``shift_method="integer"``, a roll) or a continuous shift applied
   in Fourier space (``"subpixel"``); see :mod:`rom_pipeline.rom.shifts`;
2. optional pointwise transform ``x = T(rho)``: ``raw`` (``x = rho``), ``sqrt``
   (``x = sqrt(rho + eps)``) or ``log`` (``x = log(rho + eps)``);
3. centring with the global temporal mean ``mu`` of all transformed, aligned training frames;
4. exact thin SVD of the centred snapshot matrix ``X_c = U S V^T`` (rows = snapshots). The POD
   basis ``Phi_r`` holds the first ``r`` right singular vectors (columns, length ny*nx).

Restriction ``y = Phi_r^T (x - mu)``; lifting ``x_hat = Phi_r y + mu`` followed by the inverse
transform and the inverse shift.

Fitting streams over the training runs (each run is loaded, used and dropped), so the stacked
snapshot matrix never exists in memory. One pass aligns, transforms and accumulates the centred
second moment (:class:`_CentredSecondMoment`): while there are fewer snapshots than grid cells
the centred snapshots are kept and the method of snapshots is used ("snapshots" route, Gram
``n_snapshots x n_snapshots``); once there are at least as many snapshots as cells they are
folded into the ``n_grid x n_grid`` Gram matrix ``sum (x - mu)(x - mu)^T``, accumulated with BLAS
``dsyrk`` ("gram" route). The mean is exact although it is only known at the end: rows are
shifted by a provisional centre ``m0`` and ``sum (x - mu)(x - mu)^T = sum (x - m0)(x - m0)^T
- n d d^T`` with ``d = mu - m0``. A mean or median alignment reference needs one extra pass
before that. The per-run work (loading, alignment, transform, reference statistics) may run on
Dask workers (``fit(runs, execution=...)``); its results are added here in run order, so the basis
is bit-identical whatever the number of workers.

Both routes are exact eigendecompositions (LAPACK), not randomised sketches. The eigenvalues of
the Gram matrix are ``s_k^2``; the full spectrum is computed from one tridiagonal reduction that
also yields the leading eigenvectors. Because the Gram matrix squares the singular values, a
singular value is resolved to about ``sqrt(eps) * s_1`` in absolute terms (~1e-8 relative to the
largest one); the leading modes agree with ``numpy.linalg.svd`` to rounding.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
from scipy.linalg import blas, eigh_tridiagonal, eigvalsh_tridiagonal, lapack

from rom_pipeline.execution.parallel import ExecutionConfig, keep_cluster, map_ordered
from rom_pipeline.rom.shifts import align_densities, apply_shifts, check_shift_method, estimate_shifts

logger = logging.getLogger(__name__)

TRANSFORM_KINDS = ("raw", "sqrt", "log")
SOLVERS = ("gram", "krylov")
REFERENCE_KINDS = ("mean", "first", "median")
# Rows of the snapshot buffer handed to one dsyrk call (about 64 MB at 64 x 64 grids).
_BUFFER_BYTES = 64 * 2**20
# Rows of the kept snapshots multiplied at once by the Krylov solver (fits a core's L2/L3 share).
_SLAB_BYTES = 2 * 2**20


class DensityTransform:
    """Pointwise invertible transform of densities applied before POD.

    ``raw``: ``x = rho``; ``sqrt``: ``x = sqrt(rho + eps)``, inverse ``rho = x^2 - eps``;
    ``log``: ``x = log(rho + eps)``, inverse ``rho = exp(x) - eps``.

    Args:
        kind: ``"raw"``, ``"sqrt"`` or ``"log"``.
        eps: offset ``eps >= 0`` (must be > 0 for ``log``) in density units.
    """

    def __init__(self, kind: str = "raw", eps: float = 1e-10):
        if kind not in TRANSFORM_KINDS:
            raise ValueError(
                f"transform kind must be one of {TRANSFORM_KINDS}, got {kind!r}: "
                "set rom.transform to 'raw', 'sqrt' or 'log'"
            )
        eps = float(eps)
        if not np.isfinite(eps) or eps < 0:
            raise ValueError(f"transform eps must be a finite number >= 0, got {eps!r}: fix rom.transform_eps")
        if kind == "log" and eps == 0:
            raise ValueError("the log transform needs eps > 0 (log(0) = -inf): set rom.transform_eps, e.g. 1e-10")
        self.kind = kind
        self.eps = eps

    def forward(self, rho: np.ndarray) -> np.ndarray:
        """Density (any shape) -> transformed field of the same shape (float64)."""
        rho = np.asarray(rho, dtype=np.float64)
        if self.kind == "raw":
            return rho
        lowest = float(rho.min()) + self.eps if rho.size else 0.0
        if self.kind == "sqrt":
            if lowest < 0:
                raise ValueError(
                    f"sqrt transform needs rho + eps >= 0 but min(rho) + eps = {lowest:.3g}: clip negative "
                    "densities or raise rom.transform_eps"
                )
            return np.sqrt(rho + self.eps)
        if lowest <= 0:
            raise ValueError(
                f"log transform needs rho + eps > 0 but min(rho) + eps = {lowest:.3g}: clip negative "
                "densities or raise rom.transform_eps"
            )
        return np.log(rho + self.eps)

    def inverse(self, x: np.ndarray) -> np.ndarray:
        """Transformed field (any shape) -> density of the same shape (float64)."""
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "raw":
            return x
        if self.kind == "sqrt":
            return x * x - self.eps
        with np.errstate(over="ignore"):
            return np.exp(x) - self.eps

    def __repr__(self) -> str:
        return f"DensityTransform(kind={self.kind!r}, eps={self.eps!r})"


def _as_frames(frames: Any, name: str = "frames") -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 3:
        raise ValueError(f"{name} must have shape (T, ny, nx), got {frames.shape}")
    return frames


def _top_eigenpairs(
    gram: np.ndarray, choose_k: Callable[[np.ndarray], int]
) -> tuple[np.ndarray, np.ndarray]:
    """All eigenvalues and the leading eigenvectors of a symmetric matrix (lower triangle used).

    One Householder tridiagonalisation ``G = Q T Q^T`` (LAPACK ``dsytrd``); all eigenvalues of
    ``T`` by ``dsterf``; the ``k = choose_k(eigenvalues)`` largest eigenpairs of ``T`` by
    ``dstemr``; eigenvectors mapped back with the Householder reflectors (``dormqr``). This costs one
    reduction, where ``eigvalsh`` followed by ``eigh(subset_by_index=...)`` would cost two.

    Args:
        gram: (n, n) float64, Fortran order; overwritten.
        choose_k: maps the eigenvalues (descending) to the number of eigenvectors wanted.

    Returns:
        eigenvalues (n,) descending and eigenvectors (n, k).
    """
    n = gram.shape[0]
    lwork = int(lapack.dsytrd_lwork(n, lower=1)[0])
    a, diag, off, tau, info = lapack.dsytrd(gram, lower=1, lwork=lwork, overwrite_a=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"dsytrd failed with info={info}")
    if n == 1:
        return diag.copy(), np.ones((1, 1))
    eigenvalues = eigvalsh_tridiagonal(diag, off, lapack_driver="sterf")[::-1].copy()
    k = int(choose_k(eigenvalues))
    _, z = eigh_tridiagonal(diag, off, select="i", select_range=(n - k, n - 1), lapack_driver="stemr")
    z = np.asfortranarray(z[:, ::-1])
    # Q = H(0) ... H(n-2); with uplo L the reflectors are those of a QR factorisation stored in
    # a[1:, :n-1], acting on rows 1.. (this is what LAPACK dormtr does), so dormqr applies Q.
    reflectors = a[1:, : n - 1]
    lwork = int(lapack.dormqr("L", "N", reflectors, tau, z[1:], lwork=-1)[1][0])
    applied, _, info = lapack.dormqr("L", "N", reflectors, tau, z[1:], lwork=max(lwork, 1))
    if info != 0:
        raise np.linalg.LinAlgError(f"dormqr failed with info={info}")
    z[1:] = applied
    return eigenvalues, z


def _orthonormal_extension(
    basis: np.ndarray, block: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """(n, b) orthonormal columns spanning ``block`` minus its part in span(basis), topped up with
    random directions where ``block`` adds none (an invariant or rank-deficient Krylov space).

    Classical Gram-Schmidt twice against ``basis`` then an SVD of the remainder: directions whose
    remainder is at rounding level are dropped, since normalising them would break orthogonality.
    """
    scale = max(np.linalg.norm(block, axis=0).max(), np.finfo(np.float64).tiny)
    for _ in range(2):
        block = block - basis @ (basis.T @ block)
    u, sigma, _ = np.linalg.svd(block, full_matrices=False)
    kept = u[:, sigma > 1e-10 * scale]
    while kept.shape[1] < block.shape[1]:
        fresh = rng.standard_normal((block.shape[0], block.shape[1] - kept.shape[1]))
        known = np.hstack([basis, kept])
        for _ in range(2):
            fresh = fresh - known @ (known.T @ fresh)
        u, sigma, _ = np.linalg.svd(fresh, full_matrices=False)
        kept = np.hstack([kept, u[:, sigma > 1e-10]])
    return kept


def _top_eigenpairs_krylov(
    chunks: list[np.ndarray], k: int, seed: int = 0, tol: float = 1e-10, max_dim: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Leading k eigenpairs of ``A = X^T X`` for the row chunks of X (kept in memory), exactly.

    Block Krylov subspace ``span{V, A V, A^2 V, ...}`` (block size ``b = k + max(10, k // 2)``,
    random start from ``seed``, blocks orthonormalised against all previous ones) with
    Rayleigh-Ritz after each block: ``H = K^T (A K)``, ``H u = theta u``. ``A`` is applied as
    ``X^T (X V)``, one pass over the chunks per block, never formed. Iteration stops when the
    Davis-Kahan bound on the largest principal angle between the top-k Ritz space and the exact
    top-k eigenspace, ``||A U - U Theta||_F / (theta_k - theta_{k+1})``, is below ``tol``, or when
    the residual reaches float64 rounding level (``8 eps sqrt(n k) theta_1``, or it stops halving
    once below ``1e-10 theta_1``), where the angle is as small as float64 arithmetic on this data
    makes it (``~ residual / gap``, the same order as the dense Gram route's rounding error).

    Args:
        chunks: row blocks (m_i, n) of the centred snapshot matrix X, float64.
        k: number of eigenpairs (k < n).
        seed: seed of the random start block (the result does not depend on it beyond ``tol``).
        tol: angle bound to reach.
        max_dim: cap on the Krylov dimension; reaching it raises ``np.linalg.LinAlgError``.

    Returns:
        eigenvalues (k,) descending and eigenvectors (n, k) orthonormal.
    """
    n = chunks[0].shape[1]
    b = min(k + max(10, k // 2), n - k)
    if b < 1 or k + b > n:
        raise np.linalg.LinAlgError(f"k={k} leaves no room for a Krylov block in dimension {n}")

    # rows per product: X_s^T (X_s v) re-reads the slab X_s from cache, not from memory
    slab = max(1, _SLAB_BYTES // (8 * n))

    def apply(v: np.ndarray) -> np.ndarray:
        out = np.zeros_like(v)
        for chunk in chunks:  # fixed order: bit-reproducible
            for start in range(0, chunk.shape[0], slab):
                rows = chunk[start : start + slab]
                out += rows.T @ (rows @ v)
        return out

    # the residual of A applied in float64 cannot go below about eps ||A|| sqrt(n k): reaching
    # that floor is convergence too (the angle is then eps ||A|| / gap, the accuracy of any
    # float64 eigensolver, the dense Gram route and numpy.linalg.svd included)
    floor = 8.0 * np.finfo(np.float64).eps * np.sqrt(n * k)
    previous = np.inf
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((n, b)))[0]
    images = apply(basis)
    while True:
        h = basis.T @ images
        theta, u = np.linalg.eigh(0.5 * (h + h.T))
        theta, u = theta[::-1], u[:, ::-1]
        ritz = basis @ u[:, :k]
        residual = images @ u[:, :k] - ritz * theta[:k]
        gap = theta[k - 1] - theta[k]
        residual_norm = np.linalg.norm(residual)
        bound = residual_norm / gap if gap > 0 else np.inf
        stagnant = residual_norm <= 1e-10 * theta[0] and residual_norm > 0.5 * previous
        # a basis of the whole space makes this a dense eigendecomposition: nothing left to add
        if bound <= tol or residual_norm <= floor * theta[0] or stagnant or basis.shape[1] == n:
            logger.info(
                "POD: block Krylov (block %d) converged at dimension %d, %d passes over the "
                "snapshots; residual %.1e theta_1, angle bound %.1e rad",
                b, basis.shape[1], basis.shape[1] // b + (basis.shape[1] % b > 0),
                residual_norm / theta[0], bound,
            )
            return theta[:k], ritz
        previous = residual_norm
        if basis.shape[1] >= max_dim:
            raise np.linalg.LinAlgError(
                f"block Krylov did not reach the angle bound {tol:g} (at {bound:.2e}) within "
                f"dimension {basis.shape[1]}"
            )
        block = _orthonormal_extension(basis, images[:, -b:][:, : n - basis.shape[1]], rng)
        basis = np.hstack([basis, block])
        images = np.hstack([images, apply(block)])


class _CentredSecondMoment:
    """Streaming mean and centred second moment of snapshot rows (one pass, exact centring).

    Rows are shifted by a provisional centre ``m0`` (the mean of the first block) before they are
    accumulated; at the end ``mu = m0 + d`` with ``d = mean(x - m0)`` and
    ``sum (x - mu)(x - mu)^T = sum (x - m0)(x - m0)^T - n d d^T``. Since ``m0`` is a typical
    snapshot mean, the correction does not cancel digits the way an uncentred Gram would.

    Snapshots are kept (method of snapshots) until there are as many as grid cells; from then on
    the ``n_grid x n_grid`` Gram matrix is cheaper in memory and flops, so the kept rows are folded
    into it with ``dsyrk`` and further rows go through a fixed-size buffer.

    With ``keep_rows`` (the "krylov" route) every centred row is kept instead, packed into chunks
    of about ``_BUFFER_BYTES`` so that products with the snapshot matrix are a few large GEMMs;
    memory is then the snapshot matrix once, plus less than one chunk.
    """

    def __init__(self, keep_rows: bool = False) -> None:
        self.keep_rows = keep_rows
        self.n_snapshots = 0
        self.n_grid = None
        self.route = "krylov" if keep_rows else "snapshots"
        self._chunks: list[np.ndarray] = []
        self._chunk_filled = 0
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
        if self.keep_rows:
            self._keep(x)
            return
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

    def _keep(self, x: np.ndarray) -> None:
        """Copy rows x - m0 into the chunk list, summing them for the exact mean."""
        rows_per_chunk = max(1, _BUFFER_BYTES // (8 * self.n_grid))
        start = 0
        while start < x.shape[0]:
            if not self._chunks or self._chunk_filled == self._chunks[-1].shape[0]:
                self._chunks.append(np.empty((rows_per_chunk, self.n_grid)))
                self._chunk_filled = 0
            chunk = self._chunks[-1]
            take = min(chunk.shape[0] - self._chunk_filled, x.shape[0] - start)
            target = chunk[self._chunk_filled : self._chunk_filled + take]
            np.subtract(x[start : start + take], self._m0, out=target)
            self._deviation_sum += target.sum(axis=0)
            self._chunk_filled += take
            start += take

    def centred_chunks(self) -> list[np.ndarray]:
        """Row chunks (m_i, n_grid) of the centred snapshot matrix ``x - mu`` ("krylov" route)."""
        shift = self._shift()
        chunks, self._chunks = self._chunks, []
        chunks[-1] = chunks[-1][: self._chunk_filled]
        for chunk in chunks:
            chunk -= shift
        return chunks

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


def _aligned_rows(
    frames: np.ndarray, reference: np.ndarray | None, transform: DensityTransform, shift_method: str = "integer"
) -> np.ndarray:
    """(T, ny, nx) raw frames -> (T, ny*nx) snapshot rows: shifted onto ``reference`` (when
    given) and transformed."""
    if reference is not None:
        frames = align_densities(frames, estimate_shifts(frames, reference, shift_method), shift_method)
    return transform.forward(frames.reshape(frames.shape[0], -1))


def _load_aligned_rows(
    item: tuple[int, Callable[[], Any]],
    grid_shape: tuple[int, int],
    reference: np.ndarray | None,
    transform: DensityTransform,
    shift_method: str = "integer",
) -> np.ndarray:
    """Load run ``i`` of ``item = (i, load)`` and return its snapshot rows (T_i, ny*nx)."""
    i, load = item
    return _aligned_rows(PODBasis._load_run(load, i, grid_shape), reference, transform, shift_method)


def _run_statistic(frames: np.ndarray, kind: str) -> Any:
    """One run's share of the alignment reference: ``(sum over frames (ny, nx), T)`` for
    ``"mean"``, the pixel-wise temporal median (ny, nx) for ``"median"``."""
    if kind == "mean":
        return frames.sum(axis=0), frames.shape[0]
    return np.median(frames, axis=0)


def _load_run_statistic(
    item: tuple[int, Callable[[], Any]], grid_shape: tuple[int, int], kind: str
) -> Any:
    i, load = item
    return _run_statistic(PODBasis._load_run(load, i, grid_shape), kind)


class PODBasis:
    """Exact POD basis of (optionally shift-aligned and transformed) density frames.

    Args:
        fixed_modes: keep exactly this many modes (has priority over ``pod_energy``).
        pod_energy: otherwise keep the smallest ``r`` with ``sum_{k<=r} s_k^2 / sum s^2 >= pod_energy``.
        transform: ``"raw"``, ``"sqrt"`` or ``"log"`` (see :class:`DensityTransform`).
        transform_eps: ``eps`` of the transform.
        shift_align: align frames by periodic shifts before the transform.
        shift_align_ref: reference for alignment: ``"mean"`` (temporal mean of all raw training
            frames), ``"first"`` (first frame of the first run) or ``"median"`` (pixel-wise median
            over runs of each run's pixel-wise temporal median; exact median for a single run,
            computed this way so fitting stays streaming).
        solver: ``"gram"`` (default): the whole spectrum from a dense eigendecomposition of the
            second moment (routes "gram"/"snapshots"). ``"krylov"``: only the leading
            ``fixed_modes`` eigenpairs, by block Krylov iteration on the snapshot matrix kept in
            memory (:func:`_top_eigenpairs_krylov`; route "krylov"): the same basis to < 1e-10 rad
            at a fraction of the cost, but ``singular_values_`` then holds only the leading modes
            (``cumulative_energy_`` is still relative to the exact total energy), ``rank_`` counts
            only those, and ``fixed_modes`` is required.
        shift_method: ``"integer"`` (whole-cell rolls) or ``"subpixel"`` (continuous shifts,
            Fourier-space translation); see :mod:`rom_pipeline.rom.shifts`.

    Attributes (after ``fit``):
        grid_shape_: (ny, nx).
        n_modes_: r.
        modes_: (ny*nx, r) orthonormal columns ``Phi_r``.
        singular_values_: (min(n_snapshots, ny*nx),) full spectrum of the centred snapshot matrix,
            descending.
        cumulative_energy_: same length, ``cumsum(s^2) / sum(s^2)``.
        mean_: (ny*nx,) temporal mean ``mu`` in transformed, aligned space.
        reference_: (ny, nx) raw alignment reference, or None without shift alignment.
        rank_: numerical rank of the centred snapshot matrix (``s_k^2 > s_1^2 max(shape) eps``).
        n_snapshots_: number of training frames.
        route_: ``"gram"`` (grid Gram) or ``"snapshots"`` (method of snapshots).
        fit_seconds_: wall time of ``fit``.
    """

    def __init__(
        self,
        fixed_modes: int | None = None,
        pod_energy: float = 0.99,
        transform: str = "raw",
        transform_eps: float = 1e-10,
        shift_align: bool = False,
        shift_align_ref: str = "mean",
        solver: str = "gram",
        shift_method: str = "integer",
    ):
        self.fixed_modes = fixed_modes
        self.pod_energy = pod_energy
        self.transform = transform
        self.transform_eps = transform_eps
        self.shift_align = shift_align
        self.shift_align_ref = shift_align_ref
        self.solver = solver
        self.shift_method = shift_method

    # ------------------------------------------------------------------ validation helpers
    def _validate_params(self) -> DensityTransform:
        if self.fixed_modes is not None:
            if isinstance(self.fixed_modes, bool) or int(self.fixed_modes) != self.fixed_modes or self.fixed_modes < 1:
                raise ValueError(
                    f"rom.fixed_modes must be a positive integer or null, got {self.fixed_modes!r}"
                )
        energy = float(self.pod_energy)
        if not 0.0 < energy <= 1.0:
            raise ValueError(f"rom.pod_energy must lie in (0, 1], got {self.pod_energy!r} (e.g. 0.99)")
        if self.solver not in SOLVERS:
            raise ValueError(f"the POD solver must be one of {SOLVERS}, got {self.solver!r}")
        if self.solver == "krylov" and self.fixed_modes is None:
            raise ValueError(
                "the 'krylov' POD solver computes only the leading modes, so it needs "
                "rom.fixed_modes (the pod_energy rule needs the whole spectrum): set fixed_modes "
                "or use solver='gram'"
            )
        if self.shift_align_ref not in REFERENCE_KINDS:
            raise ValueError(
                f"rom.shift_align_ref must be one of {REFERENCE_KINDS}, got {self.shift_align_ref!r}"
            )
        check_shift_method(self.shift_method)
        return DensityTransform(self.transform, self.transform_eps)

    def _check_fitted(self) -> None:
        if not hasattr(self, "modes_"):
            raise RuntimeError("this PODBasis is not fitted yet: call fit(runs) or from_arrays(...) first")

    def _check_frames(self, frames: Any, what: str = "frames") -> np.ndarray:
        frames = _as_frames(frames, what)
        if frames.shape[1:] != self.grid_shape_:
            raise ValueError(
                f"{what} have grid {frames.shape[1:]} but the basis was fitted on {self.grid_shape_}"
            )
        return frames

    @staticmethod
    def _loaders(runs: Any) -> list[Callable[[], Any]]:
        if isinstance(runs, np.ndarray) and runs.ndim == 3:
            raise ValueError(
                "runs must be a sequence of runs, got one (T, ny, nx) array: pass [frames] for a single run"
            )
        if not isinstance(runs, (Sequence, np.ndarray)) or isinstance(runs, (str, bytes)):
            raise TypeError(
                f"runs must be a sequence of zero-argument callables or of (T, ny, nx) arrays, got {type(runs).__name__}"
            )
        if len(runs) == 0:
            raise ValueError("runs is empty: POD needs at least one training run")
        return [run if callable(run) else (lambda run=run: run) for run in runs]

    # ------------------------------------------------------------------ fitting
    def fit(
        self,
        runs: Sequence[Callable[[], np.ndarray]] | Sequence[np.ndarray],
        execution: ExecutionConfig | None = None,
    ) -> PODBasis:
        """Fit the basis by streaming over the training runs.

        Args:
            runs: one entry per training run, either a zero-argument callable returning the run's
                density frames (T_i, ny, nx) (already time-subsampled) or the array itself. A
                callable is invoked once, or twice when the alignment reference is the ``"mean"``
                or ``"median"`` of the data (one extra pass builds it); its result is not kept.
            execution: where the per-run work (loading, alignment, transform, reference
                statistics) runs; ``None`` or one worker = in this process. With a cluster the
                callables must be picklable (cloudpickle). The per-run results are reduced here
                in run order (:func:`rom_pipeline.execution.parallel.map_ordered`), so the basis is
                bit-identical to the serial fit whatever the number of workers.

        Returns:
            self.
        """
        t_start = time.perf_counter()
        transform = self._validate_params()
        loaders = self._loaders(runs)
        execution = execution or ExecutionConfig()
        with keep_cluster(execution):  # one cluster for the reference pass and the main pass
            reference, grid_shape, moment = self._accumulate(loaders, transform, execution, t_start)
        n_snapshots, n_grid = moment.n_snapshots, moment.n_grid
        t_moment = time.perf_counter()
        logger.info(
            "POD: %d runs, %d snapshots on a %dx%d grid, %s route, second moment in %.2f s",
            len(loaders), n_snapshots, grid_shape[0], grid_shape[1], moment.route, t_moment - t_start,
        )

        def choose(eigenvalues: np.ndarray) -> int:
            return self._choose_rank(eigenvalues, n_snapshots, n_grid)[0]

        mean, route = moment.mean(), moment.route
        total_energy = None
        if route == "krylov":
            chunks = moment.centred_chunks()
            total_energy = float(sum(np.einsum("ij,ij->", c, c) for c in chunks))
            k = int(self.fixed_modes)
            if k + 1 >= min(n_snapshots, n_grid):
                raise ValueError(
                    f"rom.fixed_modes={k} leaves no room for the 'krylov' solver on "
                    f"{n_snapshots} snapshots x {n_grid} cells: use solver='gram'"
                )
            eigenvalues, modes = _top_eigenpairs_krylov(chunks, k)
            del chunks
        elif route == "gram":
            eigenvalues, modes = _top_eigenpairs(moment.centred_gram(), choose)
        else:
            snapshots = moment.centred_snapshots()
            small = np.zeros((n_snapshots, n_snapshots), order="F")
            # snapshots.T is (n_grid, n) in Fortran order; trans=1 gives snapshots @ snapshots.T
            blas.dsyrk(1.0, snapshots.T, beta=0.0, c=small, trans=1, lower=1, overwrite_c=1)
            eigenvalues, vectors = _top_eigenpairs(small, choose)
            sigma = np.sqrt(np.clip(eigenvalues[: vectors.shape[1]], 0.0, None))
            modes = (snapshots.T @ vectors) / sigma
            # X^T v / s loses orthogonality like eps s_1^2 / s_k^2; a QR restores it without
            # changing the spanned subspaces
            q, rr = np.linalg.qr(modes)
            modes = q * np.sign(np.diag(rr))
        del moment

        n_modes, rank = self._choose_rank(eigenvalues, n_snapshots, n_grid)
        modes = modes[:, :n_modes]
        # deterministic signs: the largest-magnitude entry of every mode is positive
        pivot = np.abs(modes).argmax(axis=0)
        modes = modes * np.where(modes[pivot, np.arange(n_modes)] < 0, -1.0, 1.0)

        lam = np.clip(eigenvalues, 0.0, None)
        cumulative = np.cumsum(lam)
        self.grid_shape_ = (int(grid_shape[0]), int(grid_shape[1]))
        self.n_modes_ = int(n_modes)
        self.modes_ = np.ascontiguousarray(modes)
        self.singular_values_ = np.sqrt(lam)
        # with only the leading eigenvalues known, energy is relative to the exact total ||X_c||_F^2
        self.cumulative_energy_ = cumulative / (cumulative[-1] if total_energy is None else total_energy)
        self.mean_ = mean
        self.reference_ = reference
        self.rank_ = int(rank)
        self.n_snapshots_ = int(n_snapshots)
        self.route_ = route
        self.fit_seconds_ = time.perf_counter() - t_start
        logger.info(
            "POD: kept r=%d modes (energy %.6f, rank %d); eigendecomposition %.2f s, fit %.2f s",
            n_modes, self.cumulative_energy_[n_modes - 1], rank, time.perf_counter() - t_moment, self.fit_seconds_,
        )
        return self

    def _accumulate(
        self,
        loaders: list[Callable[[], Any]],
        transform: DensityTransform,
        execution: ExecutionConfig,
        t_start: float,
    ) -> tuple[np.ndarray | None, tuple[int, int], _CentredSecondMoment]:
        """Alignment reference, grid shape and centred second moment of all training runs."""
        reference = None
        grid_shape = None
        if self.shift_align and self.shift_align_ref in ("mean", "median"):
            reference, grid_shape = self._reference_pass(loaders, execution)
            logger.info("POD: alignment reference (%s) built in %.2f s", self.shift_align_ref, time.perf_counter() - t_start)

        moment = _CentredSecondMoment(keep_rows=self.solver == "krylov")
        # Run 0 fixes the grid and, for the "first" reference, the reference frame; the other
        # runs are prepared independently (possibly on workers) and added in run order.
        frames = self._load_run(loaders[0], 0, grid_shape)
        grid_shape = frames.shape[1:]
        if self.shift_align and reference is None:  # "first": the first frame of the first run
            reference = frames[0].copy()
        moment.add(_aligned_rows(frames, reference if self.shift_align else None, transform, self.shift_method))
        del frames
        prepare = partial(
            _load_aligned_rows, grid_shape=grid_shape,
            reference=reference if self.shift_align else None, transform=transform,
            shift_method=self.shift_method,
        )
        for rows in map_ordered(prepare, list(enumerate(loaders))[1:], execution, label="POD runs"):
            moment.add(rows)
        return reference, grid_shape, moment

    def _reference_pass(
        self, loaders: list[Callable[[], Any]], execution: ExecutionConfig
    ) -> tuple[np.ndarray, tuple[int, int]]:
        """Raw alignment reference: temporal mean of all frames, or median of per-run medians.

        Per-run statistics (frame sum and count, or pixel-wise median) may be computed on
        workers; they are combined here in run order.
        """
        frames = self._load_run(loaders[0], 0, None)
        grid_shape = frames.shape[1:]
        first = _run_statistic(frames, self.shift_align_ref)
        del frames
        statistic = partial(_load_run_statistic, grid_shape=grid_shape, kind=self.shift_align_ref)
        rest = map_ordered(statistic, list(enumerate(loaders))[1:], execution, label="POD reference")
        if self.shift_align_ref == "mean":
            total, count = first
            for run_sum, run_count in rest:
                total = total + run_sum
                count += run_count
            return total / count, grid_shape
        run_medians = [first, *rest]
        return np.median(np.stack(run_medians), axis=0), grid_shape

    @staticmethod
    def _load_run(load: Callable[[], Any], i: int, grid_shape: tuple[int, int] | None) -> np.ndarray:
        frames = np.asarray(load(), dtype=np.float64)
        if frames.ndim != 3 or frames.shape[0] == 0:
            raise ValueError(f"run {i} has shape {frames.shape}; each run must be (T, ny, nx) with T >= 1")
        if grid_shape is not None and frames.shape[1:] != grid_shape:
            raise ValueError(f"run {i} has grid {frames.shape[1:]} but run 0 has {grid_shape}: all runs must share one grid")
        if not np.isfinite(frames.sum()):  # a sum is finite iff every term is (for sane magnitudes)
            raise ValueError(f"run {i} contains non-finite densities; fix the density stage before POD")
        return frames

    def _choose_rank(self, eigenvalues: np.ndarray, n_snapshots: int, n_grid: int) -> tuple[int, int]:
        """(r, numerical rank) from the Gram eigenvalues (descending)."""
        lam = np.clip(eigenvalues, 0.0, None)
        if lam[0] <= 0.0:
            raise ValueError(
                "the centred snapshot matrix is zero (all training frames are identical after alignment "
                "and transform): POD has no modes to find"
            )
        rank = int(np.count_nonzero(lam > lam[0] * max(n_snapshots, n_grid) * np.finfo(float).eps))
        if self.fixed_modes is not None:
            r = int(self.fixed_modes)
            if r > rank:
                raise ValueError(
                    f"rom.fixed_modes={r} exceeds the numerical rank {rank} of the centred snapshot "
                    f"matrix ({n_snapshots} snapshots x {n_grid} cells): choose rom.fixed_modes <= {rank} "
                    "or set it to null and use rom.pod_energy"
                )
            return r, rank
        cumulative = np.cumsum(lam)
        cumulative /= cumulative[-1]
        r = int(np.searchsorted(cumulative, float(self.pod_energy), side="left")) + 1
        return min(r, rank), rank

    # ------------------------------------------------------------------ using the basis
    def estimate_shifts(self, frames: np.ndarray) -> np.ndarray:
        """(T, ny, nx) raw frames -> (T, 2) shifts aligning them to ``reference_`` (int64 for the
        integer method, float64 for sub-pixel); zeros when ``shift_align`` is False."""
        self._check_fitted()
        frames = self._check_frames(frames)
        if not self.shift_align:
            return np.zeros((frames.shape[0], 2), dtype=np.int64)
        return estimate_shifts(frames, self.reference_, self.shift_method)

    def restrict(self, frames: np.ndarray, shifts: np.ndarray | None = None) -> np.ndarray:
        """Latent coordinates ``y = Phi_r^T (T(align(rho)) - mu)``.

        Args:
            frames: (T, ny, nx) raw densities.
            shifts: (T, 2) alignment shifts to apply; if None they are estimated when
                ``shift_align`` is on (and no shift is applied otherwise).

        Returns:
            (T, r) latent trajectory.
        """
        self._check_fitted()
        frames = self._check_frames(frames)
        if shifts is None and self.shift_align:
            shifts = estimate_shifts(frames, self.reference_, self.shift_method)
        if shifts is not None:
            frames = align_densities(frames, shifts, self.shift_method)
        x = DensityTransform(self.transform, self.transform_eps).forward(frames.reshape(frames.shape[0], -1))
        return (x - self.mean_) @ self.modes_

    def lift(self, y: np.ndarray, shifts: np.ndarray | None = None) -> np.ndarray:
        """Densities ``rho_hat = unshift(T^{-1}(Phi_r y + mu))``.

        Args:
            y: (T, r) latent states.
            shifts: (T, 2) shifts that were (or would be) applied by ``restrict``; the lifted frame
                is rolled back by ``-shifts``. If None, frames are returned in the aligned
                (co-moving) frame, which is the lab frame when ``shift_align`` is off.

        Returns:
            (T, ny, nx) densities.
        """
        self._check_fitted()
        y = np.asarray(y, dtype=np.float64)
        if y.ndim != 2 or y.shape[1] != self.n_modes_:
            raise ValueError(f"y must have shape (T, {self.n_modes_}), got {y.shape}")
        x = y @ self.modes_.T + self.mean_
        rho = DensityTransform(self.transform, self.transform_eps).inverse(x).reshape(
            (y.shape[0],) + self.grid_shape_
        )
        if shifts is not None:
            rho = apply_shifts(rho, shifts, inverse=True, method=self.shift_method)
        return rho

    # ------------------------------------------------------------------ persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        """Hyper-parameters and learned state as plain arrays (``np.savez(..., allow_pickle=False)``)."""
        self._check_fitted()
        ny, nx = self.grid_shape_
        return {
            "fixed_modes": np.array(-1 if self.fixed_modes is None else int(self.fixed_modes), dtype=np.int64),
            "pod_energy": np.array(float(self.pod_energy)),
            "transform": np.array(str(self.transform)),
            "transform_eps": np.array(float(self.transform_eps)),
            "shift_align": np.array(bool(self.shift_align)),
            "shift_align_ref": np.array(str(self.shift_align_ref)),
            "solver": np.array(str(self.solver)),
            "shift_method": np.array(str(self.shift_method)),
            "grid_shape": np.array([ny, nx], dtype=np.int64),
            "n_modes": np.array(self.n_modes_, dtype=np.int64),
            "modes": self.modes_,
            "singular_values": self.singular_values_,
            "cumulative_energy": self.cumulative_energy_,
            "mean": self.mean_,
            "reference": np.zeros((0, 0)) if self.reference_ is None else self.reference_,
            "rank": np.array(self.rank_, dtype=np.int64),
            "n_snapshots": np.array(self.n_snapshots_, dtype=np.int64),
            "route": np.array(self.route_),
        }  # no wall time: identical fits give identical files (fit_seconds_ goes to pod_summary)

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> PODBasis:
        """Rebuild a fitted basis from :meth:`to_arrays` output (or an ``np.load`` of it)."""
        required = (
            "fixed_modes", "pod_energy", "transform", "transform_eps", "shift_align", "shift_align_ref",
            "grid_shape", "n_modes", "modes", "singular_values", "cumulative_energy", "mean", "reference",
            "rank", "n_snapshots", "route",
        )
        missing = [key for key in required if key not in arrays]
        if missing:
            raise ValueError(f"POD arrays lack {missing}; they must come from PODBasis.to_arrays()")
        fixed = int(arrays["fixed_modes"])
        basis = cls(
            fixed_modes=None if fixed < 0 else fixed,
            pod_energy=float(arrays["pod_energy"]),
            transform=str(arrays["transform"]),
            transform_eps=float(arrays["transform_eps"]),
            shift_align=bool(arrays["shift_align"]),
            shift_align_ref=str(arrays["shift_align_ref"]),
            solver=str(arrays["solver"]) if "solver" in arrays else "gram",  # older files: gram
            # bases saved before sub-pixel tracks existed were aligned by whole cells
            shift_method=str(arrays["shift_method"]) if "shift_method" in arrays else "integer",
        )
        basis._validate_params()
        ny, nx = (int(v) for v in arrays["grid_shape"])
        basis.grid_shape_ = (ny, nx)
        basis.n_modes_ = int(arrays["n_modes"])
        basis.modes_ = np.asarray(arrays["modes"], dtype=np.float64)
        if basis.modes_.shape != (ny * nx, basis.n_modes_):
            raise ValueError(f"modes have shape {basis.modes_.shape}; expected {(ny * nx, basis.n_modes_)}")
        basis.singular_values_ = np.asarray(arrays["singular_values"], dtype=np.float64)
        basis.cumulative_energy_ = np.asarray(arrays["cumulative_energy"], dtype=np.float64)
        basis.mean_ = np.asarray(arrays["mean"], dtype=np.float64)
        reference = np.asarray(arrays["reference"], dtype=np.float64)
        basis.reference_ = None if reference.size == 0 else reference
        basis.rank_ = int(arrays["rank"])
        basis.n_snapshots_ = int(arrays["n_snapshots"])
        basis.route_ = str(arrays["route"])
        basis.fit_seconds_ = float("nan")  # wall times are not stored with the basis
        return basis
