"""Smoke tests: every benchmark runs in its ``--quick`` mode and prints its figure and ratio."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT

BENCHES = sorted(p.name for p in (PROJECT / "benchmarks").glob("bench_*.py"))


@pytest.mark.slow
@pytest.mark.parametrize("bench", BENCHES)
def test_benchmark_quick_mode_runs(bench: str, tmp_path: Path):
    args = [sys.executable, str(PROJECT / "benchmarks" / bench), "--quick"]
    if bench == "bench_thesis_regime.py":  # the tiny environment, end to end
        args += ["test", "--data-root", str(tmp_path)]
    proc = subprocess.run(args, cwd=PROJECT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    # each benchmark prints its ratio against the baseline it measured, e.g. "14.0x" or "23–46×"
    assert re.search(r"\d+(\.\d+)?\s*[x×]", out), out[-2000:]
