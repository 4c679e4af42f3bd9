"""Speed of the Vicsek-Morse simulator: compiled cell list vs the KD-tree path vs a Python loop.

Regimes of science.md §1.4 (L = 25, R = 4, dt = 0.04, gaussian noise with match_variance,
mu_t = 0.3, speed mode "constant_with_forces"): gas with N = 100 and crystal with N = 300, from a
uniform IC. For each regime it prints ms per step and particle-steps per second of
``simulate_vicsek`` with the default ``neighbour_method="cell_list"`` (numba kernel, compiled
and cached before timing), both over the first steps from the IC and in the settled state that
follows (the crystal contracts into one cluster, where every pair is within the force cut-off),
and two ratios measured in the same run on the same states: against the previous default
``neighbour_method="kdtree"`` (SciPy KD-tree + sparse sums; timed interleaved with the cell list,
best of ``repeats``, in wall time and in CPU time of this process, the robust one on a shared
machine) and against the naive loop of ``tests/physics/naive_reference.py`` (a few
steps timed and extrapolated per step). Single-threaded BLAS, one process.

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


METHODS = ("cell_list", "kdtree")


def _time_vectorised(x0, theta0, regime, n_steps, repeats):
    """Best wall and CPU seconds per step of each neighbour method (runs interleaved, so load
    drifts on a shared machine hit both alike), and the cell-list run's output. Both methods run
    in this one thread (single-threaded BLAS), so CPU time is their cost even when other
    processes share the cores."""
    best, cpu, out = dict.fromkeys(METHODS, math.inf), dict.fromkeys(METHODS, math.inf), None
    for _ in range(repeats):
        for method in METHODS:
            start, start_cpu = time.perf_counter(), time.process_time()
            result = simulate_vicsek(
                x0, theta0, n_steps=n_steps, v0=regime["v0"], eta=regime["eta"],
                forces=regime["forces"], rng=np.random.default_rng(0), save_every=n_steps,
                neighbour_method=method, **COMMON,
            )
            best[method] = min(best[method], time.perf_counter() - start)
            cpu[method] = min(cpu[method], time.process_time() - start_cpu)
            if method == "cell_list":
                out = result
    return ({method: seconds / n_steps for method, seconds in best.items()},
            {method: seconds / n_steps for method, seconds in cpu.items()}, out)


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

    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    # compile (or load from the numba cache) before anything is timed
    warm = np.random.default_rng(2)
    simulate_vicsek(sample_positions("uniform", 10, 25.0, 25.0, warm), sample_headings(10, warm),
                    n_steps=2, v0=2.0, eta=0.1, forces=REGIMES["gas"]["forces"], rng=warm, **COMMON)
    print(f"{'regime':<8} {'N':>4} {'phase':<9} {'ms/step':>8} {'particle-steps/s':>17} "
          f"{'kdtree ms/step':>15} {'vs kdtree':>10} {'CPU vs kdtree':>14} {'naive ms/step':>14} "
          f"{'vs naive':>9}")
    for name, regime in REGIMES.items():
        n = regime["n"] // 4 if args.quick else regime["n"]
        rng = np.random.default_rng(1)
        x0 = sample_positions("uniform", n, COMMON["Lx"], COMMON["Ly"], rng)
        theta0 = sample_headings(n, rng)
        naive = _time_naive(x0, theta0, regime, naive_steps)
        first, first_cpu, out = _time_vectorised(x0, theta0, regime, n_steps, repeats)
        x_settled = out["positions"][-1]
        v = out["velocities"][-1]
        settled, settled_cpu, _ = _time_vectorised(x_settled, np.arctan2(v[:, 1], v[:, 0]), regime,
                                                   n_steps, repeats)
        for phase, per_step, cpu in (("from IC", first, first_cpu), ("settled", settled, settled_cpu)):
            fast, tree = per_step["cell_list"], per_step["kdtree"]
            print(f"{name:<8} {n:>4} {phase:<9} {fast * 1e3:>8.3f} {n / fast:>17,.0f} "
                  f"{tree * 1e3:>15.3f} {tree / fast:>9.2f}x "
                  f"{cpu['kdtree'] / cpu['cell_list']:>13.2f}x {naive * 1e3:>14.1f} "
                  f"{naive / fast:>8.0f}x")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
