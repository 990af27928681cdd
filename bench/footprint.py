"""Footprint: resident memory of an idle `infer-bot serve`, and the wall time of `infer-bot --help`.

    .venv/bin/python bench/footprint.py [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repo on sys.path)

from bot.sandbox.kubeapi import KubeEmulator
from bot.sandbox.slack.webapi import LocalSlack
from tests.support.botproc import BOT_TOKEN, BotProcess


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    runs = 2 if args.quick else 10
    exe = [sys.executable, "-m", "bot.cli", "--help"]
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(exe, check=True, capture_output=True)
        times.append(time.perf_counter() - began)
    bare = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - began)
    help_s = statistics.median(times)
    print(f"infer-bot --help: median {help_s:.2f} s over {runs} runs "
          f"(bare interpreter start {statistics.median(bare):.2f} s; target <= 1 s)")

    with tempfile.TemporaryDirectory() as tmp, KubeEmulator() as kube, LocalSlack(bot_token=BOT_TOKEN) as slack:
        workdir = Path(tmp)
        config = {"clusters": [{"name": "dev", "kubeconfig": str(kube.write_kubeconfig(workdir / "kc"))}]}
        bot = BotProcess(workdir, config, slack, f"sqlite:///{workdir / 'fp.sqlite3'}").start()
        try:
            time.sleep(1 if args.quick else 5)  # idle: worker and heartbeat threads ticking
            assert bot.proc is not None
            rss = rss_mib(bot.proc.pid)
            print(f"idle infer-bot serve: {rss:.0f} MiB resident (target <= 150 MiB)")
        finally:
            bot.stop()
    print(f"target: idle RSS ≤ 150 MiB → {rss:.0f} MiB ({'met' if rss <= 150 else f'MISSED by {rss - 150:.0f} MiB'}); "
          f"--help ≤ 1 s → {help_s:.2f} s ({'met' if help_s <= 1 else f'MISSED by {help_s - 1:.2f} s'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
