"""The benchmarks still run (quick mode: a handful of samples, no thresholds — timing is not a test)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"


def test_every_benchmark_runs_in_quick_mode():
    run = subprocess.run([sys.executable, str(BENCH / "run_all.py"), "--quick"], capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    assert "p99/bare" in run.stdout and "MiB resident" in run.stdout and "API requests" in run.stdout
    assert "naive/bot" in run.stdout and "429s honoured" in run.stdout  # digest cost, fan-out
    assert "stalled" in run.stdout and "256 MiB announced: 413" in run.stdout  # the public endpoint
