"""Results across thread counts (the default runner uses every core, a Dask worker one thread).

Documented tolerance: MVAR and POD (NumPy/SciPy, float64) are bit-identical for 1 and 2 BLAS
threads here. The LSTM pins its torch threads (``lstm.num_threads``, default 1) while it fits and
predicts, so its weights are bit-identical whatever the runner's thread count; with
``num_threads: null`` (torch's global setting) they agree within 1e-6 absolute (PyTorch float32
reductions whose order follows the thread count; measured 3e-8 after 3 epochs).
"""
import numpy as np
import pytest

LSTM_TOLERANCE = 1e-6


def _trajectories():
    rng = np.random.default_rng(0)
    return [np.cumsum(rng.normal(size=(50, 6)), axis=0) * 0.1 for _ in range(3)]


def test_mvar_and_pod_are_bit_identical_for_one_and_two_blas_threads():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    from rom_pipeline.rom.mvar import MVARForecaster
    from rom_pipeline.rom.pod import PODBasis

    frames = [np.random.default_rng(k).random((30, 16, 16)) for k in range(3)]
    fits = []
    for threads in (1, 2):
        with threadpoolctl.threadpool_limits(limits=threads):
            mvar = MVARForecaster(lag=3, ridge_alpha=1e-4).fit(_trajectories())
            pod = PODBasis(fixed_modes=4).fit(frames)
        fits.append((mvar.coef_, np.abs(pod.modes_), pod.singular_values_))
    for one, two in zip(*fits):
        assert np.array_equal(one, two)


def test_lstm_weights_agree_within_the_documented_tolerance_across_thread_counts():
    torch = pytest.importorskip("torch")
    from rom_pipeline.rom.lstm import LSTMForecaster

    before = torch.get_num_threads()
    weights = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for pinned in (None, 1):
                model = LSTMForecaster(lag=3, hidden_units=16, num_layers=1, max_epochs=2,
                                       patience=2, batch_size=32, device="cpu", seed=0,
                                       num_threads=pinned).fit(_trajectories())
                weights.append({k: v.detach().cpu().numpy().copy()
                                for k, v in model.module_.state_dict().items()})
    finally:
        torch.set_num_threads(before)
    free_1, pinned_1, free_2, pinned_2 = weights
    worst = max(float(np.max(np.abs(free_1[k] - free_2[k]))) for k in free_1)
    assert worst <= LSTM_TOLERANCE
    assert all(np.array_equal(pinned_1[k], pinned_2[k]) for k in pinned_1)  # pinned: exact
    weights = [pinned_1]
    # the comparison is not vacuous: a different seed moves the weights far beyond the tolerance
    other = LSTMForecaster(lag=3, hidden_units=16, num_layers=1, max_epochs=2, patience=2,
                           batch_size=32, device="cpu", seed=1).fit(_trajectories())
    far = max(float(np.max(np.abs(weights[0][k] - v.detach().cpu().numpy())))
              for k, v in other.module_.state_dict().items())
    assert far > 1000 * LSTM_TOLERANCE


def test_identical_fits_give_identical_artifact_bytes():
    """Wall times live in the summaries, not in the stored models, so repeated work is byte-equal."""
    import io

    from rom_pipeline.rom.mvar import MVARForecaster
    from rom_pipeline.rom.pod import PODBasis

    frames = [np.random.default_rng(k).random((30, 16, 16)) for k in range(3)]

    def stored(make) -> bytes:
        buffer = io.BytesIO()
        np.savez(buffer, **make().to_arrays())
        return buffer.getvalue()

    for make in (lambda: MVARForecaster(lag=3, ridge_alpha=1e-4).fit(_trajectories()),
                 lambda: PODBasis(fixed_modes=4).fit(frames)):
        assert stored(make) == stored(make)


def test_importing_the_package_shortens_the_openmp_spin_unless_the_user_set_it():
    """``import rom_pipeline`` sets GOMP_SPINCOUNT=1000 before PyTorch loads GNU OpenMP (threads
    that spin at barriers make shared cores slow, benchmarks/bench_lstm_threads.py) and leaves a
    value the user chose alone."""
    import os
    import subprocess
    import sys

    code = "import os, rom_pipeline; print(os.environ['GOMP_SPINCOUNT'])"
    base = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"}
    for env, expected in ((base, "1000"), ({**base, "GOMP_SPINCOUNT": "77"}, "77")):
        proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert proc.stdout.strip() == expected
