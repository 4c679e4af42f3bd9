"""The POD building blocks, each on its own: density transform, shift alignment, streaming second
moment, eigen-solvers and nested truncation, and the injected map callable."""
from __future__ import annotations

import ast
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import subspace_angles

import rom_pipeline.rom.second_moment as second_moment
from rom_pipeline.rom.alignment import ShiftAlignment
from rom_pipeline.rom.density_transform import DensityTransform
from rom_pipeline.rom.eigensolvers import solve_pod
from rom_pipeline.rom.modal_basis import ModalBasis
from rom_pipeline.rom.pod import PODBasis
from rom_pipeline.rom.second_moment import StreamingSecondMoment
from rom_pipeline.rom.snapshot_operator import KeptSnapshots
from tests.rom.test_pod import structured_runs, svd_oracle


# ----------------------------------------------------------------- density transform
@pytest.mark.parametrize("kind,eps", [("raw", 0.0), ("sqrt", 1e-6), ("log", 1e-3)])
def test_density_transform_round_trips_and_matches_its_definition(kind, eps):
    rho = np.random.default_rng(0).gamma(2.0, 1.5, size=(7, 5, 6))
    transform = DensityTransform(kind, eps)
    x = transform.forward(rho)
    expected = {"raw": rho, "sqrt": np.sqrt(rho + eps), "log": np.log(rho + eps)}[kind]
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_allclose(transform.inverse(x), rho, rtol=1e-12, atol=1e-12)
    # in place (as PODBasis.lift does) equals the formula of the inverse, bit for bit
    formula = {"raw": x, "sqrt": x * x - eps, "log": np.exp(x) - eps}[kind]
    np.testing.assert_array_equal(transform.inverse(x), formula)
    inplace = x.copy()
    assert transform.inverse(inplace, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, formula)


# ----------------------------------------------------------------- shift alignment
def _bump(ny: int, nx: int) -> np.ndarray:
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    return 1.0 + np.exp(-((yy - 5.0) ** 2 / 6.0 + (xx - 9.0) ** 2 / 3.0))


def test_alignment_recovers_known_integer_shifts_and_undoes_them():
    reference = _bump(16, 20)
    moves = np.array([[0, 0], [3, -2], [-5, 7], [8, 10], [-1, 1]])
    # frame t is the reference translated by -moves[t]: aligning it means translating by +moves[t]
    frames = np.stack([np.roll(reference, tuple(-m), axis=(0, 1)) for m in moves])
    alignment = ShiftAlignment("first", "integer").reference_from_first_run(frames)
    shifts = alignment.shifts(frames)
    wrapped = (moves + np.array([8, 10]) - 1) % np.array([16, 20]) - np.array([8, 10]) + 1  # (-n/2, n/2]
    np.testing.assert_array_equal(shifts, wrapped)
    aligned = alignment.align(frames)
    np.testing.assert_array_equal(aligned, np.broadcast_to(reference, frames.shape))
    np.testing.assert_array_equal(alignment.unalign(aligned, shifts), frames)


def test_alignment_subpixel_recovers_a_fractional_shift():
    n = 32
    k = 2 * np.pi * np.fft.fftfreq(n)
    reference = 2.0 + np.real(np.fft.ifft2(np.exp(-2.0 * (k[:, None] ** 2 + k[None, :] ** 2))))
    shift = np.array([2.3, -1.6])  # move the reference by -shift with an exact Fourier phase
    phase = np.exp(2j * np.pi * (np.fft.fftfreq(n)[:, None] * shift[0] + np.fft.fftfreq(n)[None, :] * shift[1]))
    moved = np.real(np.fft.ifft2(np.fft.fft2(reference) * phase))
    alignment = ShiftAlignment("first", "subpixel").reference_from_first_run(reference[None])
    np.testing.assert_allclose(alignment.shifts(moved[None])[0], shift, atol=1e-6)


def test_alignment_reference_from_statistics_equals_the_stacked_mean_and_median():
    rng = np.random.default_rng(1)
    runs = [rng.random((t, 4, 5)) for t in (3, 7, 2)]
    mean = ShiftAlignment("mean")
    mean.reference_from_statistics(mean.run_statistic(run) for run in runs)
    np.testing.assert_allclose(mean.reference_, np.concatenate(runs).mean(axis=0), rtol=1e-14)
    median = ShiftAlignment("median")
    median.reference_from_statistics([median.run_statistic(runs[1])])
    np.testing.assert_array_equal(median.reference_, np.median(runs[1], axis=0))  # one run: exact
    with pytest.raises(ValueError, match="shift_align_ref"):
        ShiftAlignment("last")
    with pytest.raises(ValueError, match="shift_method"):
        ShiftAlignment("mean", "nearest")
    with pytest.raises(RuntimeError, match="reference is not set"):
        ShiftAlignment("mean").shifts(runs[0])


# ----------------------------------------------------------------- streaming second moment
def _random_split(rng, n_rows):
    cuts = np.sort(rng.choice(np.arange(1, n_rows), size=rng.integers(0, 8), replace=False))
    return np.split(np.arange(n_rows), cuts)


@pytest.mark.parametrize("n_rows,route", [(30, "snapshots"), (90, "gram")])
@pytest.mark.parametrize("seed", range(4))
def test_streaming_moment_equals_one_shot_second_moment_for_any_split(monkeypatch, n_rows, route, seed):
    rng = np.random.default_rng(seed)
    n_grid = 40
    x = 7.0 + rng.standard_normal((n_rows, n_grid)) * np.linspace(3.0, 0.1, n_grid)
    if seed % 2:
        monkeypatch.setattr(second_moment, "_BUFFER_BYTES", 8 * n_grid * 11)  # 11-row buffers
    moment = StreamingSecondMoment()
    for rows in _random_split(rng, n_rows):
        moment.add(x[rows])
    mu = x.mean(axis=0)
    centred = x - mu
    oracle = centred.T @ centred
    assert moment.route == route and moment.n_snapshots == n_rows and moment.n_grid == n_grid
    np.testing.assert_allclose(moment.mean(), mu, rtol=1e-14)
    scale = np.abs(oracle).max()
    if route == "gram":
        gram = moment.centred_gram()
        lower = np.tril_indices(n_grid)
        assert np.max(np.abs(gram[lower] - oracle[lower])) < 1e-12 * scale
    else:
        kept = moment.centred_snapshots()
        assert np.max(np.abs(kept.T @ kept - oracle)) < 1e-12 * scale


# ----------------------------------------------------------------- solvers and the nested basis
def _moment(runs, keep_rows):
    moment = KeptSnapshots() if keep_rows else StreamingSecondMoment()
    for run in runs:
        moment.add(run.reshape(len(run), -1))
    return moment


@pytest.mark.parametrize("keep_rows", [False, True])
def test_solve_pod_equals_numpy_svd(keep_rows):
    runs = structured_runs(np.random.default_rng(5), 3, 60, 10, 10, noise=1e-3)
    basis = solve_pod(_moment(runs, keep_rows), fixed_modes=5)
    mu, s, v = svd_oracle(runs)
    assert basis.route == ("krylov" if keep_rows else "gram") and basis.n_modes == 5
    assert np.max(subspace_angles(basis.modes, v[:, :5])) < 1e-8
    np.testing.assert_allclose(basis.singular_values[:5], s[:5], rtol=1e-10)
    np.testing.assert_allclose(basis.mean, mu, rtol=1e-14)
    pivot = np.abs(basis.modes).argmax(axis=0)
    assert np.all(basis.modes[pivot, np.arange(5)] > 0)  # sign convention


@pytest.mark.parametrize("solver", ["gram", "krylov"])
def test_truncated_basis_equals_a_fresh_fit_with_fewer_modes(solver):
    runs = structured_runs(np.random.default_rng(9), 3, 50, 12, 12, n_modes=12, noise=1e-3)
    big = PODBasis(fixed_modes=10, solver=solver).fit(runs)
    small = big.truncated(4)
    fresh = PODBasis(fixed_modes=4, solver=solver).fit(runs)
    assert small.n_modes_ == small.fixed_modes == 4 and big.n_modes_ == 10  # the original is untouched
    np.testing.assert_allclose(small.modes_, fresh.modes_, atol=1e-9)
    np.testing.assert_array_equal(small.modes_, big.modes_[:, :4])
    np.testing.assert_array_equal(small.mean_, fresh.mean_)
    frames = runs[1]
    latent = big.restrict(frames)
    # the same numbers up to GEMM blocking (a 4-column product rounds differently from a 10-column one)
    np.testing.assert_allclose(small.restrict(frames), latent[:, :4], rtol=0, atol=1e-13 * np.abs(latent).max())
    np.testing.assert_allclose(small.restrict(frames), fresh.restrict(frames), atol=1e-9 * np.abs(frames).max())
    rebuilt = PODBasis.from_arrays(small.to_arrays())
    np.testing.assert_array_equal(rebuilt.modes_, small.modes_)
    with pytest.raises(ValueError, match="r' = 11"):
        big.truncated(11)
    with pytest.raises(ValueError, match="r' = 0"):
        big.basis_.truncated(0)
    assert isinstance(big.basis_.truncated(3), ModalBasis)


# ----------------------------------------------------------------- the injected map
@pytest.mark.parametrize("reference", ["mean", "median", "first"])
def test_serial_and_thread_pool_maps_give_bit_identical_bases(reference):
    runs = structured_runs(np.random.default_rng(4), 6, 30, 10, 10, noise=1e-2)
    runs = [np.roll(run, (i, -i), axis=(1, 2)) for i, run in enumerate(runs)]
    settings = dict(fixed_modes=5, transform="sqrt", shift_align=True, shift_align_ref=reference)
    calls = []

    def thread_map(func, items):
        items = list(items)
        calls.append(len(items))
        with ThreadPoolExecutor(max_workers=3) as pool:
            return list(pool.map(func, items))

    serial = PODBasis(**settings).fit(runs)
    threaded = PODBasis(**settings).fit(runs, map_fn=thread_map)
    assert calls == ([5, 5] if reference != "first" else [5])  # runs 1.. go through the map, per pass
    for attr in ("modes_", "singular_values_", "cumulative_energy_", "mean_", "reference_"):
        np.testing.assert_array_equal(getattr(serial, attr), getattr(threaded, attr), err_msg=attr)


def test_science_modules_import_neither_kedro_nor_the_execution_layer():
    rom = Path(__file__).parents[2] / "src" / "rom_pipeline" / "rom"
    for name in ("pod", "alignment", "density_transform", "second_moment", "eigensolvers", "modal_basis"):
        tree = ast.parse((rom / f"{name}.py").read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert not any(m.startswith("kedro") or m.startswith("rom_pipeline.execution") for m in imported), (name, imported)
