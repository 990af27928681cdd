"""The console, run the way a newcomer runs it."""

from __future__ import annotations

import shutil
import subprocess
import sys


def run_console(script: str) -> str:
    exe = shutil.which("infer-bot") or ""
    cmd = [exe, "console", "--sandbox"] if exe else [sys.executable, "-m", "bot.cli", "console", "--sandbox"]
    run = subprocess.run(cmd, input=script, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Traceback" not in run.stdout + run.stderr
    return run.stdout
