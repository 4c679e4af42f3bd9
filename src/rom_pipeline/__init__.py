"""rom_pipeline

Importing the package sets one environment default before PyTorch is loaded: ``GOMP_SPINCOUNT``
(GNU OpenMP, the runtime of PyTorch's CPU wheels) to 1000 spins, unless the user set it. With
GNU OpenMP's default, a thread that waits at a parallel region's barrier spins 300,000 times
before it sleeps; when two threaded processes share two cores (a catalogue's regimes, a test
worker) the spinning threads steal each other's cores and an LSTM epoch measured 2.6x slower than
on one thread. With 1000 spins two threads still train 1.7x faster than one on an idle 2-core
machine, and about 1.2x slower than one when the cores are shared
(benchmarks/results/speed_lstm_regimes.md). It has no effect once PyTorch is imported.
"""
import os

os.environ.setdefault("GOMP_SPINCOUNT", "1000")

__version__ = "0.1"
