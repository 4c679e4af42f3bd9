"""LSTM epochs on one or two torch threads, alone and with the cores shared, by OpenMP spin count.

The thesis LSTM (2 × 128, lag 5, batch 512) trains ``LSTMForecaster.fit`` epochs on a thesis-size
latent set (bench_lstm.py's stable VAR: 340 runs × 167 frames, r = 19, 20 % held out and
validated every epoch). Each measurement is a fresh process, so GNU OpenMP (PyTorch's CPU
runtime) reads its ``GOMP_SPINCOUNT`` at start; all of them run in this one invocation:

    alone:   1 thread                  against  2 threads               (spin 1000)
    shared:  two 1-thread fits at once against  two 2-thread fits at once,
             with GNU OpenMP's default spin count (300,000) and with 1000 (rom_pipeline's default)

    ratio = seconds per epoch / seconds per epoch of the 1-thread fit in the same setting

Two threads pay on an idle machine; with GNU OpenMP's default spin count, threads that wait at a
barrier keep spinning on cores another process needs, and shared cores make every epoch slower.
``import rom_pipeline`` sets ``GOMP_SPINCOUNT=1000`` unless the user set it.

    .venv/bin/python benchmarks/bench_lstm_threads.py            # ~3 min on 2 cores
    .venv/bin/python benchmarks/bench_lstm_threads.py --quick    # smoke test (alone only), ~15 s
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOMP_DEFAULT_SPIN = "300000"  # libgomp's documented spin count when OMP_WAIT_POLICY is unset


def child(threads: int, epochs: int, quick: bool) -> None:
    """One fit; prints {"seconds": [per-epoch seconds]} as JSON on the last line."""
    import logging

    sys.path.insert(0, str(HERE))
    from bench_lstm import stable_var_runs

    from rom_pipeline.rom.lstm import LSTMForecaster

    logging.basicConfig(level=logging.WARNING)
    n_runs, n_frames, hidden = (40, 60, 32) if quick else (340, 167, 128)
    runs = stable_var_runs(n_runs, n_frames, 19)
    model = LSTMForecaster(lag=5, hidden_units=hidden, num_layers=2, dropout=0.1, batch_size=512,
                           learning_rate=7e-4, max_epochs=epochs, patience=epochs,
                           selection="one_step", device="cpu", seed=0, num_threads=threads)
    model.fit(runs)
    print(json.dumps({"seconds": model.training_log_["seconds"].tolist()}))


def launch(threads: int, spin: str, epochs: int, quick: bool) -> subprocess.Popen:
    env = {**os.environ, "GOMP_SPINCOUNT": spin, "KEDRO_DISABLE_TELEMETRY": "1"}
    cmd = [sys.executable, __file__, "--child", str(threads), "--epochs", str(epochs)]
    return subprocess.Popen(cmd + (["--quick"] if quick else []), env=env, text=True,
                            stdout=subprocess.PIPE)


def per_epoch(procs: list[subprocess.Popen]) -> float:
    """Median seconds per epoch over every process, the first (warm-up) epoch left out."""
    seconds = []
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode != 0:
            raise SystemExit(f"a benchmark fit failed (exit {proc.returncode})")
        seconds += json.loads(out.strip().splitlines()[-1])["seconds"][1:]
    return statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny problem, a smoke test")
    parser.add_argument("--epochs", type=int, default=None, help="epochs per fit (default 4)")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    epochs = args.epochs or (2 if args.quick else 4)
    if args.child is not None:
        child(args.child, epochs, args.quick)
        return
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}; {epochs} epochs per "
          "fit, the first left out; seconds per epoch are medians")
    runs = {  # name: (threads, spin count, concurrent fits)
        "alone, 1 thread": (1, "1000", 1),
        "alone, 2 threads, spin 1000": (2, "1000", 1),
        "shared, 1 thread each": (1, "1000", 2),
        f"shared, 2 threads each, spin {GOMP_DEFAULT_SPIN} (GNU default)": (2, GOMP_DEFAULT_SPIN, 2),
        "shared, 2 threads each, spin 1000": (2, "1000", 2),
    }
    if args.quick:  # a smoke test: the two runs alone
        runs = {name: spec for name, spec in runs.items() if name.startswith("alone")}
    result = {}
    for name, (threads, spin, n) in runs.items():
        result[name] = per_epoch([launch(threads, spin, epochs, args.quick) for _ in range(n)])
    alone = result["alone, 1 thread"]
    shared = result.get("shared, 1 thread each", alone)
    for name, seconds in result.items():
        base = alone if name.startswith("alone") else shared
        print(f"{name:<52} {seconds:6.2f} s/epoch   ratio to 1 thread {seconds / base:5.2f}x")
    print(f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
