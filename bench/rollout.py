"""Kubernetes API requests per change, counted at the API server (the emulator): a watch, not polling.

Today's change is `scale` (1 → 3 replicas, through the whole pipeline). Deploy joins when it lands.

    .venv/bin/python bench/rollout.py [--quick]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import common  # noqa: F401  (puts the repo on sys.path)

from bot.sandbox.environment import deployment, node
from bot.sandbox.kubeapi import KubeEmulator
from bot.sandbox.slack.webapi import LocalSlack
from tests.support.botproc import BOT_TOKEN, BotProcess


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--ready-delay", type=float, default=2.0,
                        help="seconds the emulated pods take to become ready (longer = more chances to poll)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, KubeEmulator() as kube, LocalSlack(bot_token=BOT_TOKEN) as slack:
        kube.controller.ready_delay = 0.2 if args.quick else args.ready_delay
        workdir = Path(tmp)
        for i in range(3):
            kube.put(node({"name": f"gpu-{i}", "instance_type": "g5.xlarge", "gpus": 1}))
        kube.put(deployment({"name": "qwen", "model": "Qwen/Qwen3-1.7B", "image": "vllm:bench", "replicas": 1,
                             "gpus": 1}))
        config = {"roles": {"operator": ["U0OP"]},
                  "clusters": [{"name": "dev", "kubeconfig": str(kube.write_kubeconfig(workdir / "kc")),
                                "approvals": 0}]}
        bot = BotProcess(workdir, config, slack, f"sqlite:///{workdir / 'r.sqlite3'}").start()
        try:
            before = len(kube.requests)
            began = time.perf_counter()
            bot.slash("scale qwen 3", user="U0OP", channel="C0BENCH")
            slack.wait_for(lambda c: "Succeeded" in str(c.params.get("text", "")), timeout=120)
            elapsed = time.perf_counter() - began
            calls = kube.requests[before:]
        finally:
            bot.stop()
    kinds = Counter(("WATCH" if q.get("watch") in ("true", "1") else m) + " " + p.rsplit("/", 2)[-2] + "/"
                    + p.rsplit("/", 1)[-1] for m, p, q in calls)
    print(f"scale 1 → 3 with pods ready after {kube.controller.ready_delay:.1f} s: {len(calls)} API requests "
          f"in {elapsed:.1f} s")
    for kind, count in sorted(kinds.items()):
        print(f"  {count:>3}  {kind}")
    watches = sum(count for kind, count in kinds.items() if kind.startswith("WATCH"))
    print(f"target: a small constant per change, a watch not polling → {len(calls)} API requests, "
          f"{watches} of them watches (run with a longer --ready-delay: the count must not grow)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
