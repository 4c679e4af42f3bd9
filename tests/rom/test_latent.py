"""Latent windows (science.md §5) against an explicit per-run loop."""
from __future__ import annotations

import numpy as np
import pytest

from rom_pipeline.rom.latent import latent_windows


def tagged_runs(lengths, r=2):
    """Run i, frame k, coordinate c holds 1000 i + k + c/10, so every value names its origin."""
    return [1000.0 * i + np.arange(K)[:, None] + np.arange(r)[None, :] / 10 for i, K in enumerate(lengths)]


@pytest.mark.parametrize("lag", [1, 3, 6])
def test_windows_match_explicit_loop_and_never_straddle_runs(lag):
    lengths = (7, 12, 9)
    runs = tagged_runs(lengths)
    X, Y, run_index = latent_windows(runs, lag)
    n = sum(K - lag for K in lengths)
    assert X.shape == (n, lag, 2) and Y.shape == (n, 2) and run_index.shape == (n,)

    expected_X, expected_Y, expected_idx = [], [], []
    for i, y in enumerate(runs):
        for k in range(lag, len(y)):
            expected_X.append(y[k - lag : k])  # oldest first
            expected_Y.append(y[k])
            expected_idx.append(i)
    np.testing.assert_array_equal(X, np.array(expected_X))
    np.testing.assert_array_equal(Y, np.array(expected_Y))
    np.testing.assert_array_equal(run_index, expected_idx)

    origin_run = np.floor(np.concatenate([X[..., 0], Y[:, :1]], axis=1) / 1000)
    assert np.all(origin_run == run_index[:, None])  # every window and its target come from one run
    frame = np.concatenate([X[..., 0], Y[:, :1]], axis=1) % 1000
    np.testing.assert_array_equal(np.diff(frame, axis=1), 1.0)  # consecutive frames


def test_windows_are_independent_copies():
    runs = tagged_runs((5,))
    X, _, _ = latent_windows(runs, 2)
    X[0, 0, 0] = -1.0
    assert runs[0][0, 0] == 0.0


def test_invalid_inputs_are_rejected():
    runs = tagged_runs((5, 6))
    with pytest.raises(ValueError, match="lag must be a positive integer"):
        latent_windows(runs, 0)
    with pytest.raises(ValueError, match="run 0 has 5 latent frames"):
        latent_windows(runs, 5)
    with pytest.raises(ValueError, match="expected"):
        latent_windows([runs[0], np.zeros((6, 3))], 2)
    with pytest.raises(ValueError, match="at least one"):
        latent_windows([], 2)
