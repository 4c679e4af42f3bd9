"""Shift estimation and application on a periodic grid (rom/shifts.py)."""
import numpy as np
import pytest
from scipy import ndimage

from rom_pipeline.rom.shifts import SHIFT_METHODS, apply_shifts, estimate_shifts, fourier_shift


def periodic_gaussian(ny, nx, centre, sigma=2.5):
    """Sum of periodic images of a Gaussian bump centred at ``centre`` (cells), sampled on the grid."""
    y = np.arange(ny)[:, None]
    x = np.arange(nx)[None, :]
    out = np.zeros((ny, nx))
    for iy in (-1, 0, 1):
        for ix in (-1, 0, 1):
            out += np.exp(-((y - centre[0] + iy * ny) ** 2 + (x - centre[1] + ix * nx) ** 2) / (2 * sigma**2))
    return out


@pytest.mark.parametrize("shape", [(32, 32), (33, 40), (24, 31)])
def test_subpixel_estimate_recovers_fractional_translation(shape):
    ny, nx = shape
    centre = np.array([ny / 2 - 0.3, nx / 2 + 0.1])
    reference = periodic_gaussian(ny, nx, centre) + 0.5 * periodic_gaussian(ny, nx, centre + [3.0, -4.0], 1.8)
    rng = np.random.default_rng(0)
    moves = rng.uniform(-6.0, 6.0, size=(12, 2))  # the swarm moved by `moves`; aligning needs -moves
    frames = np.stack([
        periodic_gaussian(ny, nx, centre + m) + 0.5 * periodic_gaussian(ny, nx, centre + m + [3.0, -4.0], 1.8)
        for m in moves
    ])
    found = estimate_shifts(frames, reference, method="subpixel")
    assert found.dtype == np.float64
    assert np.max(np.abs(found + moves)) < 0.01
    # the integer method returns the nearest cell
    integer = estimate_shifts(frames, reference, method="integer")
    assert integer.dtype == np.int64
    assert np.max(np.abs(integer + moves)) < 0.6  # the grid argmax of a sampled correlation
    # and applying the found shift realigns the frame with the reference
    aligned = apply_shifts(frames, found, method="subpixel")
    assert np.max(np.abs(aligned - reference[None])) < 1e-3 * reference.max()


def test_fourier_shift_matches_the_continuous_translation_and_scipy():
    ny, nx = 33, 35  # odd: no Nyquist mode, so scipy's Fourier shift is the same operator
    f = periodic_gaussian(ny, nx, (10.0, 20.0))
    shifts = np.array([[0.37, -2.71], [-5.5, 0.25]])
    out = fourier_shift(np.stack([f, f]), shifts)
    for t, s in enumerate(shifts):
        analytic = periodic_gaussian(ny, nx, (10.0 + s[0], 20.0 + s[1]))
        assert np.max(np.abs(out[t] - analytic)) < 1e-6
        oracle = np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(f), s)).real
        np.testing.assert_allclose(out[t], oracle, atol=1e-12)


@pytest.mark.parametrize("shape", [(32, 32), (31, 24)])
def test_fourier_shift_conserves_mass_round_trips_and_equals_roll_for_integers(shape):
    rng = np.random.default_rng(1)
    frames = rng.random((6, *shape))  # rough fields: the Nyquist modes are populated
    shifts = rng.uniform(-10, 10, size=(6, 2))
    moved = apply_shifts(frames, shifts, method="subpixel")
    np.testing.assert_allclose(moved.sum(axis=(1, 2)), frames.sum(axis=(1, 2)), rtol=1e-13)
    back = apply_shifts(moved, shifts, inverse=True, method="subpixel")
    assert np.max(np.abs(back - frames)) < 1e-12
    whole = rng.integers(-20, 20, size=(6, 2))
    rolled = np.stack([np.roll(f, tuple(s), axis=(0, 1)) for f, s in zip(frames, whole)])
    np.testing.assert_allclose(apply_shifts(frames, whole, method="subpixel"), rolled, atol=1e-12)
    np.testing.assert_array_equal(apply_shifts(frames, whole, method="integer"), rolled)


def test_integer_method_is_the_brute_force_argmax_of_the_correlation():
    rng = np.random.default_rng(2)
    frames = rng.random((5, 6, 7))
    reference = rng.random((6, 7))
    found = estimate_shifts(frames, reference, "integer")
    for f, s in zip(frames, found):
        scores = {(dy, dx): np.sum(reference * np.roll(f, (dy, dx), axis=(0, 1))) for dy in range(-2, 4) for dx in range(-3, 4)}
        assert tuple(s) == max(scores, key=scores.get)


def test_pod_basis_with_subpixel_tracks_round_trips_and_persists():
    from rom_pipeline.rom.pod import PODBasis

    ny, nx = 24, 24
    moves = np.cumsum(np.full((30, 2), [0.37, -0.23]), axis=0)
    frames = np.stack([periodic_gaussian(ny, nx, (12 + m[0], 12 + m[1])) for m in moves])
    basis = PODBasis(fixed_modes=3, shift_align=True, shift_align_ref="first", shift_method="subpixel").fit([frames])
    shifts = basis.estimate_shifts(frames)
    np.testing.assert_allclose(shifts, -(moves - moves[0]), atol=0.01)
    # a translating rigid blob is one frame in the co-moving frame: the mean alone reproduces it
    lifted = basis.lift(basis.restrict(frames, shifts), shifts)
    assert np.max(np.abs(lifted - frames)) < 1e-3
    rebuilt = PODBasis.from_arrays(basis.to_arrays())
    assert rebuilt.shift_method == "subpixel"
    np.testing.assert_allclose(rebuilt.estimate_shifts(frames), shifts, atol=1e-12)
    legacy = {k: v for k, v in basis.to_arrays().items() if k != "shift_method"}
    assert PODBasis.from_arrays(legacy).shift_method == "integer"
    with pytest.raises(ValueError, match="rom.shift_method is 'nearest'"):
        PODBasis(fixed_modes=1, shift_align=True, shift_method="nearest").fit([frames])


def test_unknown_method_and_fractional_integer_shifts_are_refused():
    frames = np.zeros((1, 4, 4))
    with pytest.raises(ValueError, match=r"rom.shift_method is 'bilinear'.*integer.*subpixel"):
        estimate_shifts(frames, np.zeros((4, 4)), method="bilinear")
    with pytest.raises(ValueError, match="rom.shift_method is 'cubic'"):
        apply_shifts(frames, np.zeros((1, 2)), method="cubic")
    with pytest.raises(ValueError, match="set rom.shift_method: subpixel"):
        apply_shifts(frames, np.full((1, 2), 0.5), method="integer")
    assert SHIFT_METHODS == ("integer", "subpixel")


def test_sub_pixel_alignment_clips_the_fourier_ringing_of_a_sharp_density():
    from rom_pipeline.rom.shifts import align_densities

    frames = np.zeros((1, 16, 16))
    frames[0, 6:10, 6:10] = 1.0  # a box: its Fourier translation rings below zero
    ringing = apply_shifts(frames, np.array([[0.5, 0.3]]), method="subpixel")
    assert ringing.min() < -1e-3
    aligned = align_densities(frames, np.array([[0.5, 0.3]]), "subpixel")
    assert aligned.min() == 0.0
    np.testing.assert_array_equal(aligned, np.maximum(ringing, 0.0))
    np.testing.assert_array_equal(align_densities(frames, np.array([[2, 3]]), "integer"),
                                  apply_shifts(frames, np.array([[2, 3]])))
