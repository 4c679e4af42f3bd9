"""Speed of the Vicsek-Morse simulator against a pure-Python per-particle loop.

Regimes of science.md §1.4 (L = 25, R = 4, dt = 0.04, gaussian noise with match_variance,
mu_t = 0.3, speed mode "constant_with_forces"): gas with N = 100 and crystal with N = 300, from a
uniform IC. For each regime it prints ms per step and particle-steps per second of
``simulate_vicsek``, both over the first steps from the IC and in the settled state that follows
(the crystal contracts into one cluster, where every pair is within the force cut-off), and the
ratio against the naive loop of ``tests/physics/naive_reference.py`` (a few steps timed and
extrapolated per step) measured in the same run. Single-threaded BLAS, one process.

    .venv/bin/python benchmarks/bench_simulation.py [--quick]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rom_pipeline.physics.initial_conditions import sample_headings, sample_positions  # noqa: E402
from rom_pipeline.physics.vicsek import simulate_vicsek  # noqa: E402
from tests.physics.naive_reference import naive_vicsek_step  # noqa: E402

COMMON = dict(dt=0.04, R=4.0, Lx=25.0, Ly=25.0, boundary="periodic", noise_kind="gaussian",
              match_variance=True, speed_mode="constant_with_forces")
REGIMES = {
    "gas": dict(n=100, v0=3.0, eta=1.5, forces=dict(Ca=0.5, Cr=0.2, la=1.5, lr=0.5, mu_t=0.3)),
    "crystal": dict(n=300, v0=2.0, eta=0.10, forces=dict(Ca=3.0, Cr=3.0, la=2.0, lr=0.5, mu_t=0.3)),
}


def _time_vectorised(x0, theta0, regime, n_steps, repeats):
    best, out = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = simulate_vicsek(
            x0, theta0, n_steps=n_steps, v0=regime["v0"], eta=regime["eta"],
            forces=regime["forces"], rng=np.random.default_rng(0), save_every=n_steps, **COMMON,
        )
        best = min(best, time.perf_counter() - start)
    return best / n_steps, out


def _time_naive(x0, theta0, regime, n_steps):
    forces = dict(regime["forces"], rcut=5.0 * max(regime["forces"]["la"], regime["forces"]["lr"]))
    x = [list(p) for p in x0]
    headings = [[math.cos(t), math.sin(t)] for t in theta0]
    speeds = [regime["v0"]] * len(x)
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    for _ in range(n_steps):
        dtheta = rng.normal(0.0, regime["eta"] / math.sqrt(12.0), size=len(x))
        x, headings, speeds = naive_vicsek_step(
            x, headings, speeds, dtheta, dt=COMMON["dt"], R=COMMON["R"], Lx=COMMON["Lx"],
            Ly=COMMON["Ly"], periodic=True, speed_mode=COMMON["speed_mode"], forces=forces,
        )
    return (time.perf_counter() - start) / n_steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    args = parser.parse_args()
    n_steps, naive_steps, repeats = (40, 1, 1) if args.quick else (500, 3, 3)

    print(f"{'regime':<8} {'N':>4} {'phase':<9} {'ms/step':>8} {'particle-steps/s':>17} "
          f"{'naive ms/step':>14} {'speed-up':>9}")
    for name, regime in REGIMES.items():
        n = regime["n"] // 4 if args.quick else regime["n"]
        rng = np.random.default_rng(1)
        x0 = sample_positions("uniform", n, COMMON["Lx"], COMMON["Ly"], rng)
        theta0 = sample_headings(n, rng)
        naive = _time_naive(x0, theta0, regime, naive_steps)
        first, out = _time_vectorised(x0, theta0, regime, n_steps, repeats)
        x_settled = out["positions"][-1]
        v = out["velocities"][-1]
        settled, _ = _time_vectorised(x_settled, np.arctan2(v[:, 1], v[:, 0]), regime, n_steps,
                                      repeats)
        for phase, per_step in (("from IC", first), ("settled", settled)):
            print(f"{name:<8} {n:>4} {phase:<9} {per_step * 1e3:>8.3f} {n / per_step:>17,.0f} "
                  f"{naive * 1e3:>14.1f} {naive / per_step:>8.0f}x")


if __name__ == "__main__":
    main()
