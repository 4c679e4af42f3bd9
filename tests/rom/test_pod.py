"""POD basis against numpy.linalg.svd and analytic cases (science.md §4)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from scipy.linalg import subspace_angles
from threadpoolctl import threadpool_limits

from rom_pipeline.rom.pod import DensityTransform, PODBasis, apply_shifts, estimate_shifts


def _smooth_modes(rng, n_modes, ny, nx):
    """n_modes smooth fields (Gaussian bumps on a periodic grid), shape (n_modes, ny, nx)."""
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    fields = []
    for _ in range(n_modes):
        cy, cx = rng.uniform(0, ny), rng.uniform(0, nx)
        dy = np.minimum(np.abs(yy - cy), ny - np.abs(yy - cy))
        dx = np.minimum(np.abs(xx - cx), nx - np.abs(xx - cx))
        fields.append(np.exp(-(dy**2 + dx**2) / (2 * rng.uniform(1.5, 3.0) ** 2)))
    return np.array(fields)


def structured_runs(rng, n_runs, frames_per_run, ny, nx, n_modes=8, noise=1e-6):
    """Positive density-like runs: background + sum_k 2^-k a_k(t) phi_k + tiny noise."""
    modes = _smooth_modes(rng, n_modes, ny, nx)
    runs = []
    for _ in range(n_runs):
        amps = rng.standard_normal((frames_per_run, n_modes)) * 0.5 ** np.arange(n_modes)
        frames = 5.0 + np.einsum("tk,kyx->tyx", amps, modes)
        frames += noise * rng.standard_normal(frames.shape)
        runs.append(frames)
    return runs


def svd_oracle(runs, transform=lambda x: x):
    """(mu, singular values, right singular vectors as columns) of the centred stacked matrix."""
    snapshots = np.concatenate([transform(r.reshape(len(r), -1)) for r in runs])
    mu = snapshots.mean(axis=0)
    _, s, vt = np.linalg.svd(snapshots - mu, full_matrices=False)
    return mu, s, vt.T


CASES = {
    "random_tall": lambda rng: [rng.standard_normal((100, 8, 8)) for _ in range(3)],
    "random_wide": lambda rng: [rng.standard_normal((10, 12, 12)) for _ in range(3)],
    "structured_tall": lambda rng: structured_runs(rng, 3, 200, 16, 16),
    "structured_wide": lambda rng: structured_runs(rng, 3, 20, 16, 16),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_basis_equals_numpy_svd(case):
    rng = np.random.default_rng(7)
    runs = CASES[case](rng)
    r = 6
    basis = PODBasis(fixed_modes=r).fit([lambda run=run: run for run in runs])
    mu, s, v = svd_oracle(runs)

    n_snap, n_grid = sum(len(x) for x in runs), runs[0][0].size
    assert basis.route_ == ("gram" if n_snap >= n_grid else "snapshots")
    assert basis.n_snapshots_ == n_snap and basis.grid_shape_ == runs[0].shape[1:]
    assert basis.modes_.shape == (n_grid, r)
    assert np.max(subspace_angles(basis.modes_, v[:, :r])) < 1e-8
    # each mode individually, up to sign
    assert np.allclose(np.abs(np.sum(basis.modes_ * v[:, :r], axis=0)), 1.0, atol=1e-10)
    assert np.allclose(basis.modes_.T @ basis.modes_, np.eye(r), atol=1e-12)
    assert np.allclose(basis.mean_, mu, rtol=0, atol=1e-12 * np.abs(mu).max())
    # full spectrum: same length as thin SVD; leading values to rounding, the rest resolved to
    # sqrt(eps) * s_1 because the Gram squares them
    assert basis.singular_values_.shape == s.shape
    np.testing.assert_allclose(basis.singular_values_[:r], s[:r], rtol=1e-10)
    np.testing.assert_allclose(basis.singular_values_, s, rtol=0, atol=1e-7 * s[0])
    np.testing.assert_allclose(basis.cumulative_energy_, np.cumsum(s**2) / np.sum(s**2), atol=1e-12)


def test_arrays_and_callables_give_identical_basis_and_each_run_is_loaded_once():
    rng = np.random.default_rng(1)
    runs = structured_runs(rng, 4, 30, 10, 10)
    calls = [0] * len(runs)

    def loader(i):
        def load():
            calls[i] += 1
            return runs[i]

        return load

    from_callables = PODBasis(fixed_modes=5).fit([loader(i) for i in range(len(runs))])
    copies = [run.copy() for run in runs]
    from_arrays = PODBasis(fixed_modes=5).fit(runs)
    for run, copy in zip(runs, copies):
        np.testing.assert_array_equal(run, copy)  # the caller's arrays are left untouched
    assert calls == [1] * len(runs)
    np.testing.assert_array_equal(from_callables.modes_, from_arrays.modes_)


def test_fixed_modes_has_priority_over_pod_energy():
    rng = np.random.default_rng(2)
    runs = structured_runs(rng, 2, 100, 12, 12)
    by_energy = PODBasis(pod_energy=0.5).fit(runs)
    both = PODBasis(fixed_modes=7, pod_energy=0.5).fit(runs)
    assert by_energy.n_modes_ != 7
    assert both.n_modes_ == 7 and both.modes_.shape[1] == 7


@pytest.mark.parametrize("energy", [0.3, 0.75, 0.9, 0.99, 0.999999])
def test_energy_rule_picks_smallest_r(energy):
    rng = np.random.default_rng(3)
    runs = structured_runs(rng, 2, 150, 12, 12, noise=1e-3)
    basis = PODBasis(pod_energy=energy).fit(runs)
    _, s, _ = svd_oracle(runs)
    cumulative = np.cumsum(s**2) / np.sum(s**2)
    expected = int(np.flatnonzero(cumulative >= energy)[0]) + 1
    assert basis.n_modes_ == expected
    assert cumulative[expected - 1] >= energy
    assert expected == 1 or cumulative[expected - 2] < energy


def test_fixed_modes_above_rank_is_rejected():
    rng = np.random.default_rng(4)
    modes = _smooth_modes(rng, 3, 10, 10)
    frames = 1.0 + np.einsum("tk,kyx->tyx", rng.standard_normal((80, 3)), modes)  # rank 3
    basis = PODBasis(fixed_modes=3).fit([frames])
    assert basis.rank_ == 3
    with pytest.raises(ValueError, match="rom.fixed_modes"):
        PODBasis(fixed_modes=4).fit([frames])


def test_restrict_lift_is_the_orthogonal_projection():
    rng = np.random.default_rng(5)
    runs = structured_runs(rng, 2, 60, 12, 12, noise=1e-2)
    r = 5
    basis = PODBasis(fixed_modes=r).fit(runs)
    mu, _, v = svd_oracle(runs)
    test = structured_runs(rng, 1, 7, 12, 12, noise=1e-1)[0]
    x = test.reshape(7, -1)
    projected = basis.lift(basis.restrict(test)).reshape(7, -1)
    phi = v[:, :r]
    np.testing.assert_allclose(projected, (x - mu) @ phi @ phi.T + mu, atol=1e-10)
    again = basis.lift(basis.restrict(projected.reshape(test.shape)))
    np.testing.assert_allclose(again.reshape(7, -1), projected, atol=1e-10)
    y = rng.standard_normal((4, r))
    np.testing.assert_allclose(basis.restrict(basis.lift(y)), y, atol=1e-10)


def test_raw_lift_conserves_mass_for_any_latent_vector():
    rng = np.random.default_rng(6)
    runs = structured_runs(rng, 3, 40, 12, 12, noise=1e-2)
    mass = 144.0 * 7.0
    runs = [run / run.sum(axis=(1, 2), keepdims=True) * mass for run in runs]
    basis = PODBasis(fixed_modes=10).fit(runs)
    assert np.abs(basis.modes_.sum(axis=0)).max() < 1e-10
    y = 100.0 * rng.standard_normal((25, 10))
    lifted = basis.lift(y)
    np.testing.assert_allclose(lifted.sum(axis=(1, 2)), mass, rtol=1e-12)


@pytest.mark.parametrize(
    "kind, forward, inverse",
    [
        ("raw", lambda r, e: r, lambda x, e: x),
        ("sqrt", lambda r, e: np.sqrt(r + e), lambda x, e: x**2 - e),
        ("log", lambda r, e: np.log(r + e), lambda x, e: np.exp(x) - e),
    ],
)
def test_transforms_round_trip_and_match_definitions(kind, forward, inverse):
    rng = np.random.default_rng(8)
    rho = rng.uniform(0.0, 3.0, size=(5, 6, 7))
    rho[0, 0, 0] = 0.0
    eps = 1e-3
    transform = DensityTransform(kind, eps)
    x = transform.forward(rho)
    np.testing.assert_allclose(x, forward(rho, eps), rtol=1e-15)
    np.testing.assert_allclose(transform.inverse(x), rho, rtol=0, atol=1e-13)
    np.testing.assert_allclose(transform.inverse(x), inverse(x, eps), rtol=1e-15)


@pytest.mark.parametrize("kind", ["sqrt", "log"])
def test_transformed_basis_matches_svd_and_reconstructs_with_all_modes(kind):
    rng = np.random.default_rng(9)
    runs = structured_runs(rng, 2, 30, 4, 4, noise=1e-2)  # 60 snapshots, 16 cells: full rank 16
    eps = 1e-6
    transform = DensityTransform(kind, eps)
    basis = PODBasis(fixed_modes=16, transform=kind, transform_eps=eps).fit(runs)
    mu, s, v = svd_oracle(runs, transform.forward)
    np.testing.assert_allclose(basis.mean_, mu, atol=1e-12)
    np.testing.assert_allclose(basis.singular_values_, s, rtol=1e-9)
    assert np.max(subspace_angles(basis.modes_[:, :4], v[:, :4])) < 1e-8
    test = runs[1][:5]
    np.testing.assert_allclose(basis.lift(basis.restrict(test)), test, atol=1e-9)


def test_transform_rejects_bad_input():
    with pytest.raises(ValueError, match="rom.transform"):
        DensityTransform("cube")
    with pytest.raises(ValueError, match="eps"):
        DensityTransform("log", 0.0)
    with pytest.raises(ValueError, match="sqrt"):
        DensityTransform("sqrt", 1e-10).forward(np.array([[-1.0]]))


def test_estimate_shifts_recovers_known_integer_shifts():
    rng = np.random.default_rng(10)
    ny, nx = 20, 24
    reference = _smooth_modes(rng, 3, ny, nx).sum(axis=0) + 0.1 * rng.standard_normal((ny, nx))
    shifts = np.array([[0, 0], [3, -5], [-9, 12], [10, 1], [-4, -11], [7, 7]])
    frames = np.stack([np.roll(reference, (-dy, -dx), axis=(0, 1)) for dy, dx in shifts])
    estimated = estimate_shifts(frames, reference)
    assert estimated.dtype.kind == "i" and estimated.shape == (len(shifts), 2)
    np.testing.assert_array_equal(estimated, shifts)
    aligned = apply_shifts(frames, estimated)
    np.testing.assert_array_equal(aligned, np.broadcast_to(reference, frames.shape))
    np.testing.assert_array_equal(apply_shifts(aligned, estimated, inverse=True), frames)


def test_apply_shifts_equals_np_roll():
    rng = np.random.default_rng(11)
    frames = rng.standard_normal((4, 5, 6))
    shifts = np.array([[1, 2], [-3, 0], [7, -8], [0, 0]])
    expected = np.stack([np.roll(f, tuple(s), axis=(0, 1)) for f, s in zip(frames, shifts)])
    np.testing.assert_array_equal(apply_shifts(frames, shifts), expected)
    with pytest.raises(ValueError, match="shifts must have shape"):
        apply_shifts(frames, shifts[:2])


def _travelling_runs(rng, ny=16, nx=16):
    """Runs of a deforming pattern translated by known shifts; returns runs and their shifts."""
    pattern, wobble = _smooth_modes(rng, 2, ny, nx)
    runs, shifts = [], []
    for _ in range(2):
        amps = rng.uniform(-0.3, 0.3, size=40)
        s = rng.integers(-7, 9, size=(40, 2))
        s[0] = 0
        frames = [np.roll(2.0 + pattern + a * wobble, tuple(-sh), axis=(0, 1)) for a, sh in zip(amps, s)]
        runs.append(np.array(frames))
        shifts.append(s)
    return runs, shifts


@pytest.mark.parametrize("ref", ["mean", "first", "median"])
def test_shift_aligned_basis_equals_svd_of_aligned_snapshots(ref):
    rng = np.random.default_rng(12)
    runs, _ = _travelling_runs(rng)
    basis = PODBasis(fixed_modes=2, transform="sqrt", shift_align=True, shift_align_ref=ref).fit(runs)
    all_frames = np.concatenate(runs)
    expected_reference = {
        "mean": all_frames.mean(axis=0),
        "first": runs[0][0],
        "median": np.median(np.stack([np.median(r, axis=0) for r in runs]), axis=0),
    }[ref]
    np.testing.assert_allclose(basis.reference_, expected_reference, rtol=1e-13)
    aligned = [apply_shifts(r, estimate_shifts(r, expected_reference)) for r in runs]
    mu, s, v = svd_oracle(aligned, DensityTransform("sqrt", 1e-10).forward)
    np.testing.assert_allclose(basis.mean_, mu, atol=1e-12)
    np.testing.assert_allclose(basis.singular_values_[:2], s[:2], rtol=1e-9)
    assert np.max(subspace_angles(basis.modes_, v[:, :2])) < 1e-8


def test_shift_alignment_recovers_shifts_and_lift_unshifts():
    rng = np.random.default_rng(13)
    runs, shifts = _travelling_runs(rng)
    basis = PODBasis(fixed_modes=1, shift_align=True, shift_align_ref="first").fit(runs)
    # the first frame is unshifted, so shifts relative to it are the generating shifts
    np.testing.assert_array_equal(basis.estimate_shifts(runs[1]), shifts[1])
    y = basis.restrict(runs[1])
    np.testing.assert_allclose(y, basis.restrict(runs[1], shifts=shifts[1]), atol=1e-12)
    # one mode captures pattern + a * wobble exactly, so lifting with the shifts gives the frames back
    np.testing.assert_allclose(basis.lift(y, shifts=shifts[1]), runs[1], atol=1e-10)
    unaligned = PODBasis(fixed_modes=1).fit(runs)
    np.testing.assert_array_equal(unaligned.estimate_shifts(runs[1]), np.zeros((40, 2), dtype=int))


@pytest.mark.parametrize("shift_align", [False, True])
def test_to_arrays_from_arrays_round_trip_through_npz(shift_align):
    rng = np.random.default_rng(14)
    runs, _ = _travelling_runs(rng)
    basis = PODBasis(pod_energy=0.95, transform="log", transform_eps=1e-8, shift_align=shift_align).fit(runs)
    buffer = io.BytesIO()
    np.savez(buffer, **basis.to_arrays())
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as stored:
        rebuilt = PODBasis.from_arrays(dict(stored))
    for attribute in ("modes_", "singular_values_", "cumulative_energy_", "mean_"):
        np.testing.assert_array_equal(getattr(rebuilt, attribute), getattr(basis, attribute))
    assert (rebuilt.reference_ is None) == (not shift_align)
    for attribute in ("n_modes_", "grid_shape_", "n_snapshots_", "rank_", "route_"):
        assert getattr(rebuilt, attribute) == getattr(basis, attribute)
    assert "fit_seconds" not in basis.to_arrays()  # wall times stay out of the stored basis
    assert (rebuilt.fixed_modes, rebuilt.pod_energy, rebuilt.transform, rebuilt.transform_eps) == (
        None, 0.95, "log", 1e-8,
    )
    frames = runs[1][:6]
    np.testing.assert_array_equal(rebuilt.restrict(frames), basis.restrict(frames))
    y = basis.restrict(frames)
    np.testing.assert_array_equal(rebuilt.lift(y), basis.lift(y))


def test_fit_and_use_reject_bad_input():
    rng = np.random.default_rng(15)
    frames = rng.uniform(size=(10, 4, 4))
    with pytest.raises(ValueError, match=r"pass \[frames\]"):
        PODBasis().fit(frames)
    with pytest.raises(ValueError, match="grid"):
        PODBasis().fit([frames, rng.uniform(size=(10, 4, 5))])
    with pytest.raises(ValueError, match="rom.pod_energy"):
        PODBasis(pod_energy=1.5).fit([frames])
    with pytest.raises(ValueError, match="rom.shift_align_ref"):
        PODBasis(shift_align=True, shift_align_ref="last").fit([frames])
    broken = frames.copy()
    broken[3, 1, 1] = np.inf
    with pytest.raises(ValueError, match="run 1 contains non-finite"):
        PODBasis().fit([frames, broken])
    with pytest.raises(ValueError, match="identical"):
        PODBasis().fit([np.ones((5, 4, 4))])
    basis = PODBasis(fixed_modes=2).fit([frames])
    with pytest.raises(ValueError, match="fitted on"):
        basis.restrict(rng.uniform(size=(3, 5, 4)))
    with pytest.raises(ValueError, match=r"shape \(T, 2\)"):
        basis.lift(np.zeros((3, 3)))
    with pytest.raises(RuntimeError, match="not fitted"):
        PODBasis().restrict(frames)


def test_small_buffer_and_route_switch_mid_stream_give_the_same_basis(monkeypatch):
    import rom_pipeline.rom.second_moment as second_moment

    rng = np.random.default_rng(16)
    runs = structured_runs(rng, 5, 23, 8, 8, noise=1e-2)  # 64 cells: the switch happens in run 2
    reference = PODBasis(fixed_modes=6).fit(runs)
    monkeypatch.setattr(second_moment, "_BUFFER_BYTES", 8 * 64 * 7)  # 7-row buffer: many partial flushes
    streamed = PODBasis(fixed_modes=6).fit(runs)
    assert streamed.route_ == reference.route_ == "gram"
    np.testing.assert_allclose(streamed.modes_, reference.modes_, atol=1e-12)
    np.testing.assert_allclose(streamed.singular_values_[:6], reference.singular_values_[:6], rtol=1e-12)
    mu, s, v = svd_oracle(runs)
    assert np.max(subspace_angles(streamed.modes_, v[:, :6])) < 1e-8


# ----------------------------------------------------------------- the "krylov" solver (leading modes)
@pytest.mark.parametrize("case", sorted(CASES))
def test_krylov_solver_equals_numpy_svd(case):
    rng = np.random.default_rng(7)
    runs = CASES[case](rng)
    r = 6
    basis = PODBasis(fixed_modes=r, solver="krylov").fit([lambda run=run: run for run in runs])
    mu, s, v = svd_oracle(runs)
    assert basis.route_ == "krylov"
    assert np.max(subspace_angles(basis.modes_, v[:, :r])) < 1e-8
    assert np.allclose(np.abs(np.sum(basis.modes_ * v[:, :r], axis=0)), 1.0, atol=1e-10)
    assert np.allclose(basis.modes_.T @ basis.modes_, np.eye(r), atol=1e-12)
    assert np.allclose(basis.mean_, mu, rtol=0, atol=1e-12 * np.abs(mu).max())
    # only the leading spectrum is computed; its energy is relative to the exact total
    np.testing.assert_allclose(basis.singular_values_, s[:r], rtol=1e-10)
    np.testing.assert_allclose(basis.cumulative_energy_, (np.cumsum(s**2) / np.sum(s**2))[:r],
                               rtol=1e-12)


def test_krylov_solver_resolves_a_near_degenerate_pair_at_the_cut():
    # modes r and r+1 have nearly equal energy: the top-r subspace is ill-conditioned (gap 1e-3
    # relative), the case where a loose iterative solver drifts; the angle must still be < 1e-8
    rng = np.random.default_rng(21)
    n_cells, r = 144, 5
    q = np.linalg.qr(rng.standard_normal((n_cells, n_cells)))[0]
    scales = np.r_[10.0, 8.0, 6.0, 4.0, 3.0, 2.997, 2.0, 0.5 ** np.arange(n_cells - 7)]
    runs = []
    for _ in range(4):
        amplitudes = rng.standard_normal((400, n_cells))
        amplitudes = (amplitudes - amplitudes.mean(0)) / amplitudes.std(0)
        runs.append((amplitudes * scales) @ q.T.reshape(n_cells, 12, 12).reshape(n_cells, -1))
    runs = [run.reshape(400, 12, 12) + 3.0 for run in runs]
    mu, s, v = svd_oracle(runs)
    assert (s[r - 1] - s[r]) / s[0] < 1e-2
    basis = PODBasis(fixed_modes=r, solver="krylov").fit(runs)
    assert np.max(subspace_angles(basis.modes_, v[:, :r])) < 1e-8
    np.testing.assert_allclose(basis.singular_values_, s[:r], rtol=1e-10)


def test_krylov_chunks_and_runs_give_the_same_basis_bit_for_bit(monkeypatch):
    import rom_pipeline.rom.snapshot_operator as snapshot_operator

    rng = np.random.default_rng(16)
    runs = structured_runs(rng, 5, 23, 8, 8, noise=1e-2)
    reference = PODBasis(fixed_modes=6, solver="krylov").fit(runs)
    again = PODBasis(fixed_modes=6, solver="krylov").fit([lambda run=run: run for run in runs])
    np.testing.assert_array_equal(again.modes_, reference.modes_)  # reproducible
    # the slab products are summed in slab order: the thread count does not change a bit
    with threadpool_limits(limits=1, user_api="blas"):
        one_thread = PODBasis(fixed_modes=6, solver="krylov").fit(runs)
    monkeypatch.setattr(snapshot_operator, "blas_threads", lambda: 3)
    three_threads = PODBasis(fixed_modes=6, solver="krylov").fit(runs)
    np.testing.assert_array_equal(three_threads.modes_, one_thread.modes_)
    monkeypatch.setattr(snapshot_operator, "_TASK_BYTES", 8 * 64 * 7)  # 7-row slabs, split inside runs
    chunked = PODBasis(fixed_modes=6, solver="krylov").fit(runs)
    np.testing.assert_allclose(chunked.modes_, reference.modes_, atol=1e-11)
    mu, s, v = svd_oracle(runs)
    assert np.max(subspace_angles(chunked.modes_, v[:, :6])) < 1e-8
    np.testing.assert_allclose(chunked.mean_, mu, rtol=0, atol=1e-12 * np.abs(mu).max())


def test_krylov_solver_round_trips_and_rejects_what_it_cannot_do():
    rng = np.random.default_rng(17)
    runs = structured_runs(rng, 2, 40, 8, 8)
    basis = PODBasis(fixed_modes=4, solver="krylov").fit(runs)
    rebuilt = PODBasis.from_arrays(basis.to_arrays())
    assert rebuilt.solver == "krylov" and rebuilt.route_ == "krylov"
    np.testing.assert_array_equal(rebuilt.modes_, basis.modes_)
    legacy = {key: value for key, value in PODBasis(fixed_modes=4).fit(runs).to_arrays().items()
              if key != "solver"}
    assert PODBasis.from_arrays(legacy).solver == "gram"  # files written before the option
    with pytest.raises(ValueError, match=r"PODBasis solver must be one of \('gram', 'krylov'\), got 'lanczos'"):
        PODBasis(fixed_modes=4, solver="lanczos").fit(runs)
    # an energy rule past what the Krylov route computes: the whole spectrum, densely, as 'gram'
    flat = [rng.standard_normal((60, 8, 8))]
    whole = PODBasis(pod_energy=1.0, solver="krylov").fit(flat)
    gram = PODBasis(pod_energy=1.0, solver="gram").fit(flat)
    assert whole.route_ == gram.route_ == "snapshots" and whole.n_modes_ == gram.n_modes_ > 16
    np.testing.assert_allclose(whole.singular_values_, gram.singular_values_, rtol=1e-12)
    # no room for a Krylov gap (63 of 64 cells): solved densely, with the dense route's rank check
    with pytest.raises(ValueError, match="rom.fixed_modes=63 exceeds the numerical rank 44"):
        PODBasis(fixed_modes=63, solver="krylov").fit(runs)
    full_rank = [rng.standard_normal((40, 8, 8)) for _ in range(2)]
    dense = PODBasis(fixed_modes=63, solver="krylov").fit(full_rank)
    assert dense.route_ == "gram"
    mu, s, v = svd_oracle(full_rank)
    assert np.max(subspace_angles(dense.modes_, v[:, :63])) < 1e-8


@pytest.mark.parametrize("case", ["structured_tall", "structured_wide", "rank_deficient"])
@pytest.mark.parametrize("energy", [0.9, 0.99, 0.9999])
def test_krylov_energy_rule_picks_the_svd_r(case, energy):
    # the rule needs only ||X_c||_F^2 and the leading spectrum: same r, modes and energies as the
    # full SVD and the dense route, for r below, at and beyond the first Krylov batch of 16 modes
    rng = np.random.default_rng(31)
    if case == "rank_deficient":  # 5 independent directions in 12 x 12 = 144 cells, rank 5
        runs = [rng.standard_normal((50, 5)) @ rng.standard_normal((5, 144)) for _ in range(3)]
        runs = [2.0 + run.reshape(50, 12, 12) for run in runs]
    elif case == "structured_tall":
        runs = [run for run in structured_runs(rng, 3, 200, 16, 16, n_modes=40, noise=1e-3)]
    else:
        runs = CASES[case](rng)
    mu, s, v = svd_oracle(runs)
    energies = np.cumsum(s**2) / np.sum(s**2)
    rank = int(np.count_nonzero(s**2 > s[0] ** 2 * max(sum(map(len, runs)), 144) * np.finfo(float).eps))
    r = min(int(np.searchsorted(energies, energy)) + 1, rank)
    krylov = PODBasis(pod_energy=energy, solver="krylov").fit(runs)
    gram = PODBasis(pod_energy=energy, solver="gram").fit(runs)
    assert krylov.n_modes_ == gram.n_modes_ == r
    assert np.max(subspace_angles(krylov.modes_, v[:, :r])) < 1e-8
    np.testing.assert_allclose(krylov.singular_values_[:r], s[:r], rtol=1e-10)
    np.testing.assert_allclose(krylov.cumulative_energy_[:r], energies[:r], rtol=1e-12)


def test_krylov_rank_deficient_fixed_modes_and_rows_kept_unmodified():
    # rank 3 data, 3 modes asked: exact; the rows are kept by reference and never written to
    rng = np.random.default_rng(32)
    snapshots = 4.0 + rng.standard_normal((90, 3)) @ rng.standard_normal((3, 100))
    frozen = snapshots.copy()
    snapshots.setflags(write=False)  # any write raises
    runs = [snapshots[i : i + 30].reshape(30, 10, 10) for i in range(0, 90, 30)]
    basis = PODBasis(fixed_modes=3, solver="krylov").fit(runs)
    np.testing.assert_array_equal(snapshots, frozen)
    mu, s, v = svd_oracle(runs)
    assert np.max(subspace_angles(basis.modes_, v[:, :3])) < 1e-8
    np.testing.assert_allclose(basis.singular_values_, s[:3], rtol=1e-10)
    with pytest.raises(ValueError, match="exceeds the numerical rank 3"):
        PODBasis(fixed_modes=4, solver="krylov").fit(runs)



class _FakeRuns:
    """The part of a RunCollection the POD node's solver choice reads."""

    def __init__(self, n_runs, frames):
        self.run_ids = [f"r{i}" for i in range(n_runs)]
        self.frames = frames

    def __len__(self):
        return len(self.run_ids)

    def density(self, run_id):
        return {"density": self.frames}


def test_pod_node_keeps_the_rows_in_memory_only_when_twice_the_matrix_fits(monkeypatch):
    import rom_pipeline.pipelines.pod.nodes as pod_nodes

    # 10 runs of 30 frames subsampled by 3 -> 10 x 10 x 64 float64 = 51,200 bytes
    runs = _FakeRuns(10, np.zeros((30, 8, 8), dtype=np.float32))
    for available, solver in [(2 * 51_200, "krylov"), (2 * 51_200 - 1, "gram")]:
        monkeypatch.setattr(pod_nodes.psutil, "virtual_memory", lambda a=available: type("M", (), {"available": a}))
        assert pod_nodes.choose_pod_solver(runs, subsample=3) == solver


def test_krylov_energy_rule_past_its_mode_cap_falls_back_to_the_whole_spectrum(monkeypatch):
    """Kept rows whose energy rule needs more leading modes than the Krylov route computes
    (``_ENERGY_RULE_MAX``, lowered here) are solved densely: the basis of solver='gram'."""
    from rom_pipeline.rom import eigensolvers

    monkeypatch.setattr(eigensolvers, "_ENERGY_RULE_MAX", 16)
    runs = [np.random.default_rng(3).standard_normal((120, 8, 8))]  # flat spectrum, 64 cells
    krylov = PODBasis(pod_energy=0.9, solver="krylov").fit(runs)
    gram = PODBasis(pod_energy=0.9, solver="gram").fit(runs)
    assert krylov.route_ == gram.route_ == "gram" and krylov.n_modes_ == gram.n_modes_ > 16
    assert np.max(subspace_angles(krylov.modes_, gram.modes_)) < 1e-8
