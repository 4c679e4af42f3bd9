"""Proper ensemble scores (evaluation/scores.py) against brute-force formulas."""
import os
import subprocess
import sys

import numpy as np
import pytest
from scipy import integrate

from rom_pipeline.evaluation.scores import crps_fair, energy_score_fair, frame_scores, skill, spread_skill_ratio


def brute_crps_fair(y, xs):
    M = len(xs)
    return sum(abs(x - y) for x in xs) / M - sum(abs(a - b) for a in xs for b in xs) / (2 * M * (M - 1))


def test_crps_fair_matches_the_brute_force_sums_and_the_integral_definition():
    rng = np.random.default_rng(0)
    truth = rng.normal(size=(2, 3))
    members = rng.normal(size=(4, 2, 3))
    out = crps_fair(truth, members)
    for idx in np.ndindex(truth.shape):
        xs = members[(slice(None),) + idx]
        assert out[idx] == pytest.approx(brute_crps_fair(truth[idx], xs), abs=1e-12)
        # the fair estimator = the empirical-CDF integral + the finite-ensemble correction
        y = truth[idx]
        cdf = lambda t: np.mean(xs <= t)  # noqa: E731
        knots = np.sort(np.append(xs, y))
        integral = sum(
            integrate.quad(lambda t: (cdf(t) - (y <= t)) ** 2, a, b)[0] for a, b in zip(knots[:-1], knots[1:])
        )
        correction = sum(abs(a - b) for a in xs for b in xs) / (2 * 4**2) - sum(abs(a - b) for a in xs for b in xs) / (2 * 4 * 3)
        assert out[idx] == pytest.approx(integral + correction, abs=1e-9)
    # one member: the absolute error
    np.testing.assert_allclose(crps_fair(truth, members[:1]), np.abs(members[0] - truth))


def test_energy_score_fair_matches_brute_force():
    rng = np.random.default_rng(1)
    truth = rng.normal(size=(3, 2, 2))
    members = rng.normal(size=(5, 3, 2, 2))
    out = energy_score_fair(truth, members)
    for t in range(3):
        xs = [m[t].ravel() for m in members]
        y = truth[t].ravel()
        M = len(xs)
        brute = sum(np.linalg.norm(x - y) for x in xs) / M - sum(
            np.linalg.norm(a - b) for a in xs for b in xs
        ) / (2 * M * (M - 1))
        assert out[t] == pytest.approx(brute, abs=1e-12)
    np.testing.assert_allclose(
        energy_score_fair(truth, members[:1]), np.linalg.norm((members[0] - truth).reshape(3, -1), axis=1)
    )


@pytest.mark.parametrize("members_kind", ["spread", "ties", "identical"])
def test_fast_estimators_equal_scoringrules_fair_estimators(members_kind):
    """The sorted-PWM CRPS and the Gram-matrix energy score are scoringrules' fair estimators
    (its O(M^2) pair loops), also with tied and with identical members (zero spread)."""
    import scoringrules as sr

    rng = np.random.default_rng(7)
    truth = rng.random((6, 5, 4))
    members = rng.random((9, 6, 5, 4)) * 3.0
    if members_kind == "ties":
        members[3:6] = members[0]
        members = np.round(members, 1)
    elif members_kind == "identical":
        members[:] = members[0]
    ref_crps = sr.crps_ensemble(truth, np.moveaxis(members, 0, -1), estimator="fair", backend="numba")
    np.testing.assert_allclose(crps_fair(truth, members), ref_crps, rtol=1e-12, atol=1e-14)
    flat = np.moveaxis(members.reshape(9, 6, -1), 0, 1)
    ref_es = sr.es_ensemble(truth.reshape(6, -1), flat, estimator="fair", backend="numba")
    np.testing.assert_allclose(energy_score_fair(truth, members), ref_es, rtol=1e-12, atol=1e-12)


def test_spread_skill_ratio_is_one_for_a_calibrated_ensemble_and_flags_overconfidence():
    rng = np.random.default_rng(2)
    n, M = 4000, 5
    centre = rng.normal(size=(n, 1, 1))  # predictable part, known to the forecast
    truth = centre + rng.normal(size=(n, 2, 2))
    calibrated = centre[None] + rng.normal(size=(M, n, 2, 2))
    parts = frame_scores(truth, calibrated)
    assert spread_skill_ratio(parts["variance"], parts["mse_mean"], M) == pytest.approx(1.0, abs=0.03)
    narrow = centre[None] + 0.5 * rng.normal(size=(M, n, 2, 2))
    parts = frame_scores(truth, narrow)
    # members with spread 0.5: E s^2 = 0.25, E (xbar - y)^2 = 1 + 0.25 / M
    expected = np.sqrt((M + 1) / M * 0.25) / np.sqrt(1 + 0.25 / M)
    assert spread_skill_ratio(parts["variance"], parts["mse_mean"], M) == pytest.approx(expected, rel=0.03)


def test_frame_scores_and_skill_by_hand():
    truth = np.zeros((1, 1, 2))
    members = np.array([[[[1.0, 0.0]]], [[[3.0, 0.0]]]])  # M = 2
    parts = frame_scores(truth, members)
    # pixel 0: (1 + 3)/2 - (2*2)/(2*2*1) = 1; pixel 1: 0
    assert parts["crps"][0] == pytest.approx(0.5)
    # ||x1|| = 1, ||x2|| = 3, ||x1 - x2|| = 2: (1 + 3)/2 - 2*2/(2*2) = 1
    assert parts["energy"][0] == pytest.approx(1.0)
    assert parts["mse_mean"][0] == pytest.approx(2.0)  # mean (2, 0): (4 + 0) / 2
    assert parts["variance"][0] == pytest.approx(1.0)  # var(1, 3; ddof=1) = 2 at pixel 0, 0 at pixel 1
    assert skill(0.5, 2.0) == pytest.approx(0.75)
    assert np.isnan(skill(1.0, 0.0))
    with pytest.raises(ValueError, match="at least 2 members"):
        spread_skill_ratio(parts["variance"], parts["mse_mean"], 1)
    with pytest.raises(ValueError, match=r"members must have shape"):
        frame_scores(truth, members[0])


def test_scoringrules_is_imported_only_when_an_ensemble_is_scored():
    """Importing the protocol (every ``kedro run`` does, through the pipeline registry) must not
    pay scoringrules' numba compilation; the first ensemble score imports it."""
    code = ("import sys; import rom_pipeline.evaluation.protocol; assert 'scoringrules' not in sys.modules; "
            "import numpy as np; from rom_pipeline.evaluation.scores import crps_fair; "
            "crps_fair(np.zeros(3), np.ones((2, 3))); assert 'scoringrules' in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_first_scoringrules_import_waits_for_the_machine_wide_lock(tmp_path):
    """Two processes writing numba's cache of scoringrules' gufuncs at once can corrupt it (numba
    issue #10128): a process's first import waits while another holds the import lock."""
    from filelock import FileLock

    from rom_pipeline.evaluation import scores

    lock = FileLock(tmp_path / "import.lock")
    code = ("import numpy as np; from rom_pipeline.evaluation import scores; from pathlib import Path; "
            f"scores.SCORINGRULES_IMPORT_LOCK = Path({str(tmp_path / 'import.lock')!r}); "
            "scores.crps_fair(np.zeros(3), np.ones((2, 3))); print('scored')")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    with lock:
        proc = subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        try:
            proc.wait(timeout=20)  # importing rom_pipeline takes a few seconds; then it must block
        except subprocess.TimeoutExpired:
            pass
        assert proc.poll() is None, "scoringrules was imported while another process held the lock"
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.strip() == "scored"
    assert scores.SCORINGRULES_IMPORT_LOCK.name == "rom_pipeline_scoringrules_import.lock"
