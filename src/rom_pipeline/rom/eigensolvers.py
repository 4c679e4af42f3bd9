"""Eigen-solvers that turn a streamed second moment into a POD basis (science.md §4).

The POD modes are the leading eigenvectors of ``A = X_c^T X_c`` (n_grid x n_grid) and the
singular values are ``s_k = sqrt(lambda_k(A))``. Three routes, all exact (not randomised sketches):

- "gram": a dense eigendecomposition of ``A`` accumulated by :class:`StreamingSecondMoment`
  (:func:`top_eigenpairs_dense`: one tridiagonal reduction gives the whole spectrum and the leading
  eigenvectors);
- "snapshots": the method of snapshots, the same on ``X_c X_c^T`` (n_snapshots x n_snapshots) when
  there are fewer snapshots than cells, modes ``X_c^T v / s``;
- "krylov": only the leading ``r`` eigenpairs, by block Krylov iteration with Rayleigh-Ritz on the
  kept rows (:func:`top_eigenpairs_krylov`), ``A`` never formed.

Because the Gram matrix squares the singular values, a singular value is resolved to about
``sqrt(eps) * s_1`` in absolute terms (~1e-8 relative to the largest one); the leading modes agree
with ``numpy.linalg.svd`` to rounding.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

import numpy as np
from scipy.linalg import blas, eigh_tridiagonal, eigvalsh_tridiagonal, lapack
from threadpoolctl import ThreadpoolController

from rom_pipeline.rom.modal_basis import ModalBasis, choose_rank
from rom_pipeline.rom.second_moment import StreamingSecondMoment
from rom_pipeline.rom.snapshot_operator import KeptSnapshots

logger = logging.getLogger(__name__)

SOLVERS = ("gram", "krylov")


def top_eigenpairs_dense(
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


def _orthonormal_range(block: np.ndarray, threshold: float) -> np.ndarray:
    """Orthonormal columns spanning the directions of ``block`` (n, b) whose singular value is
    above ``threshold``: the left singular vectors, from a Householder QR ``block = Q R`` and the
    SVD of the small ``R`` (b x b), which is far cheaper than an SVD of the tall block."""
    q, r = np.linalg.qr(block)
    u, sigma, _ = np.linalg.svd(r)
    return q @ u[:, sigma > threshold]


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
    kept = _orthonormal_range(block, 1e-10 * scale)
    while kept.shape[1] < block.shape[1]:
        fresh = rng.standard_normal((block.shape[0], block.shape[1] - kept.shape[1]))
        known = np.hstack([basis, kept])
        for _ in range(2):
            fresh = fresh - known @ (known.T @ fresh)
        kept = np.hstack([kept, _orthonormal_range(fresh, 1e-10)])
    return kept


def top_eigenpairs_krylov(
    operator: KeptSnapshots, k: int, seed: int = 0, tol: float = 1e-10,
    max_dim: int | None = None, block: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Leading k eigenpairs of ``A = X^T X`` for the snapshot matrix X kept in memory, exactly.

    Block Krylov subspace ``span{V, A V, A^2 V, ...}`` (block size ``b = k + max(10, k // 2)``;
    smaller blocks need a smaller Krylov dimension on the 56,780 x 4,096 benchmark, 220 at b = 20
    against 261 at b = 29, but lose directions below the extension's rank threshold on
    near-degenerate spectra, see tests/rom/test_pod.py),
    random start from ``seed``, blocks orthonormalised against all previous ones) with
    Rayleigh-Ritz after each block: ``H = K^T (A K)``, ``H u = theta u``. ``A`` is applied as
    ``X^T (X V)``, one pass over X per block, never formed. Iteration stops when the
    Davis-Kahan bound on the largest principal angle between the top-k Ritz space and the exact
    top-k eigenspace, ``||A U - U Theta||_F / (theta_k - theta_{k+1})``, is below ``tol``, or when
    the residual reaches float64 rounding level (``8 eps sqrt(n k) theta_1``, or it stops halving
    once below ``1e-10 theta_1``), where the angle is as small as float64 arithmetic on this data
    makes it (``~ residual / gap``, the same order as the dense Gram route's rounding error).

    Args:
        operator: the rows of X, :class:`~rom_pipeline.rom.snapshot_operator.KeptSnapshots`
            (its ``apply`` is ``A``, its ``n_grid`` is n).
        k: number of eigenpairs (k < n).
        seed: seed of the random start block (the result does not depend on it beyond ``tol``).
        tol: angle bound to reach.
        max_dim: cap on the Krylov dimension (default ``max(1024, 8 (k + b))``); reaching it
            raises ``np.linalg.LinAlgError``.
        block: block size ``b`` (default ``k + max(10, k // 2)``).

    Returns:
        eigenvalues (k,) descending and eigenvectors (n, k) orthonormal.
    """
    n, apply = operator.n_grid, operator.apply

    b = min(k + max(10, k // 2) if block is None else int(block), n - k)
    if b < 1 or k + b > n:
        raise np.linalg.LinAlgError(f"k={k} leaves no room for a Krylov block in dimension {n}")
    max_dim = max(1024, 8 * (k + b)) if max_dim is None else int(max_dim)

    # the residual of A applied in float64 cannot go below about eps ||A|| sqrt(n k): reaching
    # that floor is convergence too (the angle is then eps ||A|| / gap, the accuracy of any
    # float64 eigensolver, the dense Gram route and numpy.linalg.svd included)
    floor = 8.0 * np.finfo(np.float64).eps * np.sqrt(n * k)
    previous = np.inf
    rng = np.random.default_rng(seed)
    # The passes over X are large GEMMs that use every BLAS thread; the rest (orthonormalising a
    # block, Rayleigh-Ritz on the small projected matrix) are small dense operations that run
    # 10-400x slower on threads when the cores are shared (speed_pod.txt), so they run on one.
    one_thread = partial(ThreadpoolController().limit, limits=1, user_api="blas")
    with one_thread():
        basis = np.linalg.qr(rng.standard_normal((n, b)))[0]
    images = apply(basis)
    while True:
        with one_thread():
            h = basis.T @ images
            theta, u = np.linalg.eigh(0.5 * (h + h.T))
            theta, u = theta[::-1], u[:, ::-1]
            ritz = basis @ u[:, :k]
            residual = images @ u[:, :k] - ritz * theta[:k]
            # (a basis of at most k columns has no gap to measure yet)
            gap = theta[k - 1] - theta[k] if basis.shape[1] > k else 0.0
            residual_norm = np.linalg.norm(residual)
            bound = residual_norm / gap if gap > 0 else np.inf
            stagnant = residual_norm <= 1e-10 * theta[0] and residual_norm > 0.5 * previous
            # a basis of the whole space makes this a dense eigendecomposition: nothing left to add
            if (basis.shape[1] > k and (bound <= tol or residual_norm <= floor * theta[0] or stagnant)) \
                    or basis.shape[1] == n:
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


# first number of leading modes the "krylov" route computes under the energy rule (doubled until
# the rule is met), and the most it computes before asking for the dense route
_ENERGY_RULE_START, _ENERGY_RULE_MAX = 16, 256


def _krylov_modes(
    operator: KeptSnapshots, total_energy: float, n_snapshots: int, n_grid: int,
    fixed_modes: int | None, pod_energy: float,
) -> tuple[np.ndarray, np.ndarray] | None:
    """Leading eigenpairs of ``X_c^T X_c`` by :func:`top_eigenpairs_krylov`: ``fixed_modes`` of
    them, or, under the energy rule, k = 16, 32, ... until ``sum_{j<=k} s_j^2 >= pod_energy
    ||X_c||_F^2`` (the rule needs only the total energy and the leading spectrum). ``None`` when
    the Krylov route cannot: ``fixed_modes`` leaves no room for a gap (``k + 1 <
    min(n_snapshots, n_grid)`` is needed), or the energy rule needs more than ``_ENERGY_RULE_MAX``
    modes or the matrix is too small; the whole spectrum is then computed densely."""
    limit = min(n_snapshots, n_grid) - 2  # k + 1 < min(n_snapshots, n_grid): room for the gap
    if fixed_modes is not None:
        k = int(fixed_modes)
        return top_eigenpairs_krylov(operator, k) if k <= limit else None
    limit = min(limit, _ENERGY_RULE_MAX)
    k = min(_ENERGY_RULE_START, limit)
    while True:
        if k < 1:
            return None
        eigenvalues, modes = top_eigenpairs_krylov(operator, k)
        captured = float(np.sum(np.clip(eigenvalues, 0.0, None))) / total_energy
        # rank reached: the remaining eigenvalues are rounding noise
        exhausted = eigenvalues[-1] <= eigenvalues[0] * max(n_snapshots, n_grid) * np.finfo(float).eps
        if captured >= pod_energy or exhausted:
            return eigenvalues, modes
        if k == limit:
            logger.info("POD: the %d leading modes capture %.6f < rom.pod_energy=%s: computing the "
                        "whole spectrum densely instead", k, captured, pod_energy)
            return None
        k = min(2 * k, limit)


def solve_pod(
    moment: StreamingSecondMoment | KeptSnapshots, fixed_modes: int | None = None, pod_energy: float = 0.99
) -> ModalBasis:
    """The POD basis of the rows accumulated in ``moment`` (consumed: its buffers are released).

    The route is the moment's ("krylov" when it kept the rows, else "gram" or "snapshots"). The
    number of modes follows :func:`choose_rank` (on the "krylov" route the energy rule uses the
    exact total energy and the leading eigenvalues, see :func:`_krylov_modes`). Kept rows are
    solved densely instead (the "gram"/"snapshots" route, with its rank check and messages) when
    the Krylov route cannot: ``fixed_modes + 1 >= min(n_snapshots, n_grid)`` (no room for a gap),
    or an energy rule that needs more than ``_ENERGY_RULE_MAX`` modes. Signs are fixed so that the
    largest-magnitude entry of every mode is positive.
    """
    n_snapshots, n_grid = moment.n_snapshots, moment.n_grid

    def choose(eigenvalues: np.ndarray) -> int:
        return choose_rank(eigenvalues, n_snapshots, n_grid, fixed_modes, pod_energy)[0]

    mean, route = moment.mean(), moment.route
    total_energy = None
    if route == "krylov":
        total_energy = moment.total_energy()
        found = _krylov_modes(moment, total_energy, n_snapshots, n_grid, fixed_modes, pod_energy)
        if found is None:  # the Krylov route cannot: the whole spectrum from the kept rows
            dense = StreamingSecondMoment()
            for rows in moment.rows():
                dense.add(rows)
            moment.release()
            return solve_pod(dense, fixed_modes, pod_energy)
        eigenvalues, modes = found
        moment.release()
    elif route == "gram":
        eigenvalues, modes = top_eigenpairs_dense(moment.centred_gram(), choose)
    else:
        snapshots = moment.centred_snapshots()
        small = np.zeros((n_snapshots, n_snapshots), order="F")
        # snapshots.T is (n_grid, n) in Fortran order; trans=1 gives snapshots @ snapshots.T
        blas.dsyrk(1.0, snapshots.T, beta=0.0, c=small, trans=1, lower=1, overwrite_c=1)
        eigenvalues, vectors = top_eigenpairs_dense(small, choose)
        sigma = np.sqrt(np.clip(eigenvalues[: vectors.shape[1]], 0.0, None))
        modes = (snapshots.T @ vectors) / sigma
        # X^T v / s loses orthogonality like eps s_1^2 / s_k^2; a QR restores it without
        # changing the spanned subspaces
        q, rr = np.linalg.qr(modes)
        modes = q * np.sign(np.diag(rr))

    if route == "krylov" and fixed_modes is None:  # energy relative to the exact total
        captured = np.cumsum(np.clip(eigenvalues, 0.0, None)) / total_energy
        r = int(np.searchsorted(captured, float(pod_energy), side="left")) + 1
        rank = choose_rank(eigenvalues, n_snapshots, n_grid, 1, pod_energy)[1]
        n_modes = min(r, rank)
    else:
        n_modes, rank = choose_rank(eigenvalues, n_snapshots, n_grid, fixed_modes, pod_energy)
    modes = modes[:, :n_modes]
    # deterministic signs: the largest-magnitude entry of every mode is positive
    pivot = np.abs(modes).argmax(axis=0)
    modes = modes * np.where(modes[pivot, np.arange(n_modes)] < 0, -1.0, 1.0)

    lam = np.clip(eigenvalues, 0.0, None)
    cumulative = np.cumsum(lam)
    return ModalBasis(
        modes=np.ascontiguousarray(modes),
        singular_values=np.sqrt(lam),
        # with only the leading eigenvalues known, energy is relative to the exact total ||X_c||_F^2
        cumulative_energy=cumulative / (cumulative[-1] if total_energy is None else total_energy),
        mean=mean,
        rank=int(rank),
        n_snapshots=int(n_snapshots),
        route=route,
    )
