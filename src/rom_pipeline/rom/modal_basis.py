"""The POD basis as plain learned state: modes, spectrum, mean; nested truncation (science.md §4).

``Phi_r`` (n_grid, r) holds the leading right singular vectors of the centred snapshot matrix
``X_c = U S V^T``, in descending order of ``s_k``. Modes are nested: the first ``r' <= r`` columns
of ``Phi_r`` are the basis ``Phi_r'`` a fit with ``r'`` modes finds (up to rounding and the sign
convention), so :meth:`ModalBasis.truncated` gives a smaller basis without a new decomposition.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np


def choose_rank(
    eigenvalues: np.ndarray, n_snapshots: int, n_grid: int, fixed_modes: int | None, pod_energy: float
) -> tuple[int, int]:
    """(r, numerical rank) from the Gram eigenvalues ``s_k^2`` (descending).

    The numerical rank counts ``s_k^2 > s_1^2 max(n_snapshots, n_grid) eps``. ``r = fixed_modes``
    when given (it may not exceed the rank), else the smallest ``r`` with
    ``sum_{k<=r} s_k^2 / sum s^2 >= pod_energy``, capped at the rank.
    """
    lam = np.clip(eigenvalues, 0.0, None)
    if lam[0] <= 0.0:
        raise ValueError(
            "the centred snapshot matrix is zero (all training frames are identical after alignment "
            "and transform): POD has no modes to find"
        )
    rank = int(np.count_nonzero(lam > lam[0] * max(n_snapshots, n_grid) * np.finfo(float).eps))
    if fixed_modes is not None:
        r = int(fixed_modes)
        if r > rank:
            raise ValueError(
                f"rom.fixed_modes={r} exceeds the numerical rank {rank} of the centred snapshot "
                f"matrix ({n_snapshots} snapshots x {n_grid} cells): choose rom.fixed_modes <= {rank} "
                "or set it to null and use rom.pod_energy"
            )
        return r, rank
    cumulative = np.cumsum(lam)
    cumulative /= cumulative[-1]
    r = int(np.searchsorted(cumulative, float(pod_energy), side="left")) + 1
    return min(r, rank), rank


@dataclass(frozen=True)
class ModalBasis:
    """Leading POD modes of a centred snapshot matrix with its spectrum.

    Attributes:
        modes: (n_grid, r) orthonormal columns ``Phi_r``; the largest-magnitude entry of each is
            positive.
        singular_values: (n_spectrum,) descending singular values ``s_k`` of ``X_c`` (the whole
            spectrum for the dense routes, the leading ``r`` for "krylov").
        cumulative_energy: (n_spectrum,) ``cumsum(s^2) / ||X_c||_F^2``.
        mean: (n_grid,) snapshot mean ``mu``.
        rank: numerical rank of ``X_c`` (counted over ``singular_values``).
        n_snapshots: number of snapshot rows.
        route: how it was computed: "gram", "snapshots" or "krylov".
    """

    modes: np.ndarray
    singular_values: np.ndarray
    cumulative_energy: np.ndarray
    mean: np.ndarray
    rank: int
    n_snapshots: int
    route: str

    @property
    def n_modes(self) -> int:
        return int(self.modes.shape[1])

    def truncated(self, n_modes: int) -> ModalBasis:
        """The basis of the first ``n_modes`` modes (1 <= n_modes <= r); spectrum and mean shared."""
        n_modes = int(n_modes)
        if not 1 <= n_modes <= self.n_modes:
            raise ValueError(
                f"a truncated basis needs 1 <= r' <= r = {self.n_modes} modes, got r' = {n_modes}: modes "
                "are nested, so a smaller basis is a truncation but a larger one needs a new fit"
            )
        return dataclasses.replace(self, modes=np.ascontiguousarray(self.modes[:, :n_modes]))
