"""Speed of the ensemble scores behind the forecaster blend (``eval.ensemble_blend``).

The blend's held-out weight fit and every ``lab_ensemble`` evaluation score, chunk by chunk, the
mixture components of a 20-member forecast ensemble and a 20-member climatology ensemble
(:func:`~rom_pipeline.evaluation.scores.mixture_components`) and the fair CRPS / energy score of
the forecast (:func:`~rom_pipeline.evaluation.scores.frame_scores`). Default-experiment size: a
chunk of 32 frames of 64 x 64, 20 + 20 members.

Baseline, in the same run: the previous kernels, scoringrules' fair estimators (``crps_ensemble``
and ``es_ensemble``, ``estimator="fair"``, numba backend: O(M^2) pair loops per pixel / frame) on
F, C and the pooled F u C. Fast path: the current module (NumPy-sorted members + scoringrules'
PWM estimator for the CRPS, one centred Gram matrix of the pooled members for the energy pairs).
Both must agree to 1e-10 relative in every component; the script fails otherwise. Prints CPU
seconds (single-threaded BLAS, best of 3) and their ratio.

    .venv/bin/python benchmarks/bench_scores.py [--quick]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import scoringrules as sr  # noqa: E402

from rom_pipeline.evaluation.scores import frame_scores, mixture_components  # noqa: E402


def _fair_crps(truth, members):
    return sr.crps_ensemble(truth, np.ascontiguousarray(np.moveaxis(members, 0, -1)), estimator="fair",
                            backend="numba")


def _fair_energy(truth, members):
    M, n = members.shape[:2]
    return sr.es_ensemble(truth.reshape(n, -1), np.moveaxis(members.reshape(M, n, -1), 0, 1), estimator="fair",
                          backend="numba")


def baseline_components(truth, forecast, reference):
    """The pair terms of mixture_components as computed before: fair scores of F, C and F u C."""
    m, mc = forecast.shape[0], reference.shape[0]
    pooled = np.concatenate([forecast, reference])
    out = {}
    for kind, score, absolute in (
        ("crps", _fair_crps, lambda x: np.abs(x - truth).mean(axis=0).mean(axis=(1, 2))),
        ("energy", _fair_energy, lambda x: np.linalg.norm((x - truth).reshape(*x.shape[:2], -1), axis=2).mean(axis=0)),
    ):
        reduce = (lambda v: v.mean(axis=(1, 2))) if kind == "crps" else (lambda v: v)
        a_f, a_c = absolute(forecast), absolute(reference)
        a_u = (m * a_f + mc * a_c) / (m + mc)
        ff = 2 * (a_f - reduce(score(truth, forecast)))
        cc = 2 * (a_c - reduce(score(truth, reference)))
        uu = 2 * (a_u - reduce(score(truth, pooled)))
        out[f"{kind}_pair_ff"], out[f"{kind}_pair_cc"] = ff, cc
        out[f"{kind}_pair_fc"] = (uu * (m + mc) * (m + mc - 1) - ff * m * (m - 1) - cc * mc * (mc - 1)) / (2 * m * mc)
    return out


def baseline_frame_scores(truth, members):
    return {"crps": _fair_crps(truth, members).mean(axis=(1, 2)), "energy": _fair_energy(truth, members)}


def cpu_best(fn, repeats=3):
    fn()  # warm-up: numba compilation, page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        out = fn()
        best = min(best, time.process_time() - start)
    return best, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small case (smoke test)")
    args = parser.parse_args()
    n, grid, m, mc = (8, 16, 6, 6) if args.quick else (32, 64, 20, 20)
    rng = np.random.default_rng(0)
    truth = rng.random((n, grid, grid))
    forecast = truth + 0.3 * rng.standard_normal((m, n, grid, grid))
    reference = rng.random((mc, n, grid, grid))
    failed = False
    for label, base, fast in (
        (f"mixture components (F, C, F u C), {m}+{mc} members", lambda: baseline_components(truth, forecast, reference),
         lambda: mixture_components(truth, forecast, reference)),
        (f"frame scores (F), {m} members", lambda: baseline_frame_scores(truth, forecast), lambda: frame_scores(truth, forecast)),
    ):
        t_base, ref = cpu_best(base)
        t_fast, out = cpu_best(fast)
        worst = max(float(np.max(np.abs(out[k] - v) / np.maximum(np.abs(v), 1e-300))) for k, v in ref.items())
        ok = worst <= 1e-10
        failed |= not ok
        print(f"{label}, {n} frames of {grid}x{grid}: scoringrules fair {t_base * 1e3:.0f} ms CPU, "
              f"current {t_fast * 1e3:.0f} ms CPU -> {t_base / t_fast:.1f}x; max rel. difference {worst:.1e}"
              f"{'' if ok else '  FAILED (> 1e-10)'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
