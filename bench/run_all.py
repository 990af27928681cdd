"""Run every benchmark, print their figures, and (with --write) keep them in BENCHMARKS.md.

    .venv/bin/python bench/run_all.py [--quick] [--write BENCHMARKS.md]

--quick checks that each benchmark still works (few samples, no thresholds); CI runs that.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from common import ROOT, machine

NOTES = ROOT / "bench" / "NOTES.md"  # "## What limits the missed targets", written by whoever analysed them
BENCHMARKS = [
    ("Ack latency (signed HTTP, ratio to a bare Bolt app on the same server stack)", "ack_latency.py"),
    ("Digest cost (real Prometheus, ratio to a naive per-deployment reader)", "digest_cost.py"),
    ("Fan-out (50 channels, local Slack at 1 message/s/channel with 429s)", "fanout.py"),
    ("Footprint", "footprint.py"),
    ("Kubernetes API requests per change (rollout watch)", "rollout.py"),
    ("The public endpoint (stalled connections, oversized bodies; beside waitress' defaults)", "front_door.py"),
]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", type=Path, help="write the results as Markdown to this file")
    parser.add_argument("--only", nargs="+", metavar="SCRIPT", help="run only these (e.g. fanout.py)")
    args = parser.parse_args()
    sections = [f"Machine: {machine()}", f"Run: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
                + (" (quick mode: too few samples to quote)" if args.quick else "")]
    failed = []
    targets: list[str] = []
    for title, script in BENCHMARKS:
        if args.only and script not in args.only:
            continue
        began = time.perf_counter()
        run = subprocess.run([sys.executable, str(ROOT / "bench" / script), *(["--quick"] if args.quick else [])],
                             capture_output=True, text=True, timeout=3600)
        took = time.perf_counter() - began
        output = run.stdout.strip() if run.returncode == 0 else f"FAILED ({run.returncode}):\n{run.stderr[-3000:]}"
        if run.returncode:
            failed.append(script)
        sections.append(f"## {title}\n\n`bench/{script}`, {took:.0f} s\n\n```\n{output}\n```")
        targets += [f"`{script}`: {line.removeprefix('target:').strip()}" for line in output.splitlines()
                    if line.startswith("target:")]
    if targets and not args.quick:  # the targets, one line each, where a reader looks first
        sections.insert(2, "## Targets\n\nEach benchmark's own `target:` line, measured in this run:\n\n"
                        + "\n".join(f"- {line}" for line in targets))
        if NOTES.exists():  # why a target is missed: analysis kept by hand, dated, next to the figures
            sections.insert(3, NOTES.read_text(encoding="utf-8").strip())
    text = "\n\n".join(sections) + "\n"
    print(text)
    if args.write:
        args.write.write_text("# Benchmarks\n\nProduced by `make bench` (`bench/run_all.py --write BENCHMARKS.md`)."
                              " Figures are ratios measured side by side in the same run, plus absolute numbers"
                              " for this machine.\n\n" + text, encoding="utf-8")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
