"""The evaluation nodes read the truth the protocol scored instead of re-slicing the runs."""
from __future__ import annotations

import numpy as np

from rom_pipeline.pipelines.evaluation import nodes


def test_movies_use_the_truth_the_protocol_returned():
    truth = np.arange(2 * 3 * 3, dtype=np.float32).reshape(2, 3, 3)
    times = np.array([0.6, 0.72])
    mvar = {"r0": truth + 1, "r0__times": times, "r0__truth": truth}
    lstm = {"r0": truth + 2, "r0__times": times, "r0__truth": truth}
    runs = {"r0": {"family": "ring"}}  # no density: the node must not read the run again
    ((run_id, family, got, preds, got_times),) = nodes._movies(
        runs, [{"model": "MVAR"}, {"model": "LSTM"}], [mvar, lstm])
    assert (run_id, family) == ("r0", "ring")
    np.testing.assert_array_equal(got, truth)
    np.testing.assert_array_equal(got_times, times)
    np.testing.assert_array_equal(preds["LSTM"], truth + 2)
