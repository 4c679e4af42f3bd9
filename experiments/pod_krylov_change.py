"""Side by side, same data, same process: the block Krylov solver before this change (commit
f08a72d: 2 MB slab products, all dense steps on the BLAS thread pool, SVD of each tall block) and
now (64 MB products, small dense steps on one BLAS thread, QR + small SVD). Alternating fits,
median of ``--repeat`` each.

    PYTHONPATH=src .venv/bin/python experiments/pod_krylov_change.py --runs 40 --repeat 3

Needs the old module: ``git show f08a72d:src/rom_pipeline/rom/pod.py > /tmp/pod_f08a72d.py``.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time

import numpy as np
from scipy.linalg import subspace_angles

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks"))
from bench_pod import smooth_random_fields  # noqa: E402

from rom_pipeline.rom.eigensolvers import top_eigenpairs_krylov  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--old", default="/tmp/pod_f08a72d.py")
    args = parser.parse_args()
    spec = importlib.util.spec_from_file_location("pod_f08a72d", args.old)
    old = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(old)
    x = smooth_random_fields(args.runs, 167, 64)
    x -= x.mean(axis=0)
    chunks = [x[i : i + 2048] for i in range(0, len(x), 2048)]
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; X {x.shape}")
    times = {"before": [], "now": []}
    bases = {}
    for _ in range(args.repeat):
        for name, solve in (("before", old._top_eigenpairs_krylov), ("now", top_eigenpairs_krylov)):
            t = time.perf_counter()
            _, bases[name] = solve(chunks, 19)
            times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        print(f"{name}: median {np.median(ts):.2f} s of {', '.join(f'{t:.2f}' for t in ts)}")
    print(f"speed-up now vs before (same run): {np.median(times['before']) / np.median(times['now']):.1f}x; "
          f"max principal angle between the two bases: {subspace_angles(bases['before'], bases['now']).max():.1e} rad")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
