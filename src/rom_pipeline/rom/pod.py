"""Proper orthogonal decomposition of density movies (science.md §4): the ``PODBasis`` facade.

Pipeline for one density frame ``rho`` (ny, nx), each step its own object:

1. optional shift alignment onto a reference frame (:class:`~rom_pipeline.rom.alignment.ShiftAlignment`;
   temporal mean, first or median frame of the training data; whole-cell or sub-pixel shifts);
2. optional pointwise transform ``x = T(rho)`` (:class:`~rom_pipeline.rom.density_transform.DensityTransform`:
   ``raw``, ``sqrt`` or ``log``);
3. centring with the global temporal mean ``mu`` and the centred second moment, streamed over the
   runs (:class:`~rom_pipeline.rom.second_moment.StreamingSecondMoment`);
4. the exact leading eigenvectors of ``X_c^T X_c`` (:func:`~rom_pipeline.rom.eigensolvers.solve_pod`),
   i.e. the first ``r`` right singular vectors of ``X_c = U S V^T``, held by a
   :class:`~rom_pipeline.rom.modal_basis.ModalBasis` (nested: ``truncated(r')``).

Restriction ``y = Phi_r^T (x - mu)``; lifting ``x_hat = Phi_r y + mu`` followed by the inverse
transform and the inverse shift.

Fitting streams over the training runs (each run is loaded, used and dropped), so the stacked
snapshot matrix never exists in memory (except on the "krylov" route, which keeps the rows once,
by reference). The
per-run work (loading, alignment, transform, reference statistics) goes through a map callable
``map_fn(func, items) -> iterable of results in item order`` (default: the built-in ``map``; the
pipeline passes a Dask map built from its execution block); the results are added here in run
order, so the basis is bit-identical whatever the map.
"""
from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import numpy as np

from rom_pipeline.rom.alignment import REFERENCE_KINDS, ShiftAlignment
from rom_pipeline.rom.density_transform import TRANSFORM_KINDS, DensityTransform
from rom_pipeline.rom.eigensolvers import SOLVERS, solve_pod
from rom_pipeline.rom.modal_basis import ModalBasis
from rom_pipeline.rom.second_moment import StreamingSecondMoment
from rom_pipeline.rom.snapshot_operator import KeptSnapshots
from rom_pipeline.rom.shifts import align_densities, apply_shifts, check_shift_method, estimate_shifts

__all__ = [
    "DensityTransform", "MapFn", "ModalBasis", "PODBasis", "REFERENCE_KINDS", "SOLVERS", "ShiftAlignment",
    "TRANSFORM_KINDS", "apply_shifts", "estimate_shifts",
]

logger = logging.getLogger(__name__)

# map_fn(func, items) -> func(item) for every item, in item order (built-in map, a thread pool's
# map, rom_pipeline.execution.parallel.map_ordered bound to an execution config, ...)
MapFn = Callable[[Callable[[Any], Any], Sequence[Any]], Iterable[Any]]


def _as_frames(frames: Any, name: str = "frames") -> np.ndarray:
    frames = np.asarray(frames, dtype=np.float64)
    if frames.ndim != 3:
        raise ValueError(f"{name} must have shape (T, ny, nx), got {frames.shape}")
    return frames


def load_run(load: Callable[[], Any], i: int, grid_shape: tuple[int, int] | None) -> np.ndarray:
    """Run ``i``'s frames (T, ny, nx) float64 from its loader, checked: T >= 1, the grid of run 0,
    finite."""
    frames = np.asarray(load(), dtype=np.float64)
    if frames.ndim != 3 or frames.shape[0] == 0:
        raise ValueError(f"run {i} has shape {frames.shape}; each run must be (T, ny, nx) with T >= 1")
    if grid_shape is not None and frames.shape[1:] != grid_shape:
        raise ValueError(f"run {i} has grid {frames.shape[1:]} but run 0 has {grid_shape}: all runs must share one grid")
    if not np.isfinite(frames.sum()):  # a sum is finite iff every term is (for sane magnitudes)
        raise ValueError(f"run {i} contains non-finite densities; fix the density stage before POD")
    return frames


def snapshot_rows(
    frames: np.ndarray, alignment: ShiftAlignment | None, transform: DensityTransform
) -> np.ndarray:
    """(T, ny, nx) raw frames -> (T, ny*nx) snapshot rows: aligned (when ``alignment`` is given)
    and transformed."""
    if alignment is not None:
        frames = alignment.align(frames)
    return transform.forward(frames.reshape(frames.shape[0], -1))


def _load_snapshot_rows(
    item: tuple[int, Callable[[], Any]],
    grid_shape: tuple[int, int],
    alignment: ShiftAlignment | None,
    transform: DensityTransform,
) -> np.ndarray:
    """Load run ``i`` of ``item = (i, load)`` and return its snapshot rows (T_i, ny*nx)."""
    i, load = item
    return snapshot_rows(load_run(load, i, grid_shape), alignment, transform)


def _load_run_statistic(
    item: tuple[int, Callable[[], Any]], grid_shape: tuple[int, int], alignment: ShiftAlignment
) -> Any:
    i, load = item
    return alignment.run_statistic(load_run(load, i, grid_shape))


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
            second moment, streamed over the runs (routes "gram"/"snapshots"; for data that do
            not fit in memory). ``"krylov"``: only the leading eigenpairs (``fixed_modes`` of
            them, or under the energy rule 16, 32, ... until the rule is met), by block Krylov
            iteration on the implicit centred operator over the rows kept in memory by
            reference (:class:`~rom_pipeline.rom.snapshot_operator.KeptSnapshots`,
            :func:`~rom_pipeline.rom.eigensolvers.top_eigenpairs_krylov`; route "krylov"): the
            same basis to < 1e-10 rad at a fraction of the cost, but ``singular_values_`` then
            holds only the computed leading modes (``cumulative_energy_`` is still relative to the
            exact total energy ``||X_c||_F^2``, so the energy rule picks the same r), and
            ``rank_`` counts only those. An energy rule that needs more than 256 modes, or a
            matrix too small for a Krylov gap, is solved densely from the kept rows instead
            (route "gram"/"snapshots", the whole spectrum).
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
        route_: ``"gram"`` (grid Gram), ``"snapshots"`` (method of snapshots) or ``"krylov"``.
        fit_seconds_: wall time of ``fit``.
        basis_: the above as a :class:`ModalBasis`; alignment_: the :class:`ShiftAlignment` or None.
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
            raise ValueError(
                f"PODBasis solver must be one of {SOLVERS}, got {self.solver!r}: use 'krylov' when "
                "the training snapshots fit in memory, else 'gram' (the pod pipeline picks it "
                "from the memory available)"
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
        map_fn: MapFn | None = None,
    ) -> PODBasis:
        """Fit the basis by streaming over the training runs.

        Args:
            runs: one entry per training run, either a zero-argument callable returning the run's
                density frames (T_i, ny, nx) (already time-subsampled) or the array itself. A
                callable is invoked once, or twice when the alignment reference is the ``"mean"``
                or ``"median"`` of the data (one extra pass builds it); its result is not kept.
            map_fn: ``map_fn(func, items)`` returning ``func(item)`` for every item in item order;
                runs the per-run work (loading, alignment, transform, reference statistics) of
                runs 1.. (run 0 is prepared here). ``None``: the built-in ``map``. A Dask map
                needs picklable callables (cloudpickle). The results are reduced here in run
                order, so the basis is bit-identical whatever the map.

        Returns:
            self.
        """
        t_start = time.perf_counter()
        transform = self._validate_params()
        loaders = self._loaders(runs)
        map_fn = map if map_fn is None else map_fn
        alignment = ShiftAlignment(self.shift_align_ref, self.shift_method) if self.shift_align else None
        grid_shape = None
        rest = list(enumerate(loaders))[1:]
        if alignment is not None and alignment.needs_reference_pass:
            frames = load_run(loaders[0], 0, None)
            grid_shape = frames.shape[1:]
            first = alignment.run_statistic(frames)
            del frames
            statistic = partial(_load_run_statistic, grid_shape=grid_shape, alignment=alignment)
            alignment.reference_from_statistics(_prepend(first, map_fn(statistic, rest)))
            logger.info("POD: alignment reference (%s) built in %.2f s", self.shift_align_ref,
                        time.perf_counter() - t_start)

        # "krylov": the rows are kept by reference (no copy) behind the implicit centred operator
        moment = KeptSnapshots() if self.solver == "krylov" else StreamingSecondMoment()
        # Run 0 fixes the grid and, for the "first" reference, the reference frame; the other
        # runs are prepared independently (possibly on workers) and added in run order.
        frames = load_run(loaders[0], 0, grid_shape)
        grid_shape = frames.shape[1:]
        if alignment is not None and not alignment.needs_reference_pass:
            alignment.reference_from_first_run(frames)
        moment.add(snapshot_rows(frames, alignment, transform))
        del frames
        prepare = partial(_load_snapshot_rows, grid_shape=grid_shape, alignment=alignment, transform=transform)
        for rows in map_fn(prepare, rest):
            moment.add(rows)
        t_moment = time.perf_counter()
        logger.info(
            "POD: %d runs, %d snapshots on a %dx%d grid, %s route, second moment in %.2f s",
            len(loaders), moment.n_snapshots, grid_shape[0], grid_shape[1], moment.route, t_moment - t_start,
        )
        basis = solve_pod(moment, self.fixed_modes, self.pod_energy)
        del moment

        self.grid_shape_ = (int(grid_shape[0]), int(grid_shape[1]))
        self._set_basis(basis)
        self.reference_ = None if alignment is None else alignment.reference_
        self.fit_seconds_ = time.perf_counter() - t_start
        logger.info(
            "POD: kept r=%d modes (energy %.6f, rank %d); eigendecomposition %.2f s, fit %.2f s",
            self.n_modes_, self.cumulative_energy_[self.n_modes_ - 1], self.rank_,
            time.perf_counter() - t_moment, self.fit_seconds_,
        )
        return self

    def _set_basis(self, basis: ModalBasis) -> None:
        self.n_modes_ = basis.n_modes
        self.modes_ = basis.modes
        self.singular_values_ = basis.singular_values
        self.cumulative_energy_ = basis.cumulative_energy
        self.mean_ = basis.mean
        self.rank_ = basis.rank
        self.n_snapshots_ = basis.n_snapshots
        self.route_ = basis.route

    @property
    def basis_(self) -> ModalBasis:
        """The learned modes, spectrum and mean as a :class:`ModalBasis`."""
        self._check_fitted()
        return ModalBasis(
            modes=self.modes_, singular_values=self.singular_values_, cumulative_energy=self.cumulative_energy_,
            mean=self.mean_, rank=self.rank_, n_snapshots=self.n_snapshots_, route=self.route_,
        )

    @property
    def alignment_(self) -> ShiftAlignment | None:
        """The fitted :class:`ShiftAlignment`, or None without shift alignment."""
        self._check_fitted()
        if not self.shift_align:
            return None
        return ShiftAlignment(self.shift_align_ref, self.shift_method, reference=self.reference_)

    def truncated(self, n_modes: int) -> PODBasis:
        """A copy keeping the first ``n_modes`` modes (nested, no new decomposition).

        ``modes_`` becomes ``modes_[:, :n_modes]`` and ``fixed_modes`` ``n_modes``; the mean,
        transform, alignment reference and spectrum are shared. ``restrict`` of the copy equals the
        first ``n_modes`` columns of this basis's ``restrict``.
        """
        basis = self.basis_.truncated(n_modes)
        truncated = copy.copy(self)
        truncated._set_basis(basis)
        truncated.fixed_modes = basis.n_modes
        return truncated

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
        x = y @ self.modes_.T
        x += self.mean_  # in place: a thesis-size lift is thousands of frames
        rho = DensityTransform(self.transform, self.transform_eps).inverse(x, out=x).reshape(
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


def _prepend(first: Any, rest: Iterable[Any]) -> Iterable[Any]:
    yield first
    yield from rest
