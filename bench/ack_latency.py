"""Ack latency of `/infer status` and `/infer scale` over HTTP, against a bare Bolt app on the same stack.

Both servers are separate processes on loopback served by waitress; requests are signed exactly as
Slack signs them. The figure that matters is the ratio to the bare app, measured in the same run.

    .venv/bin/python bench/ack_latency.py [--requests 2000] [--concurrency 1 8 32] [--quick]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.local_slack import LocalSlack, SlackRequests  # noqa: E402
from bot.sandbox.environment import deployment, node  # noqa: E402
from bot.sandbox.kubeapi import KubeEmulator  # noqa: E402
from tests.support.botproc import BOT_TOKEN, SIGNING_SECRET, BotProcess, free_port  # noqa: E402

BARE_APP = """
import sys
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from waitress import serve
client = WebClient(token=sys.argv[4], base_url=sys.argv[3])
app = App(client=client, signing_secret=sys.argv[2], token_verification_enabled=False)
app.command("/infer")(lambda ack: ack())
serve(SlackRequestHandler(app), host="127.0.0.1", port=int(sys.argv[1]), threads=16)
"""


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def measure(url: str, signer: SlackRequests, text: str, n: int, concurrency: int) -> list[float]:
    session_per_thread: dict[int, requests.Session] = {}

    def one(i: int) -> float:
        import threading

        s = session_per_thread.setdefault(threading.get_ident(), requests.Session())
        body, headers = signer.slash(text, user_id="U0OPERATOR", channel_id="C0BENCH")
        began = time.perf_counter()
        resp = s.post(url, data=body, headers=headers, timeout=10)
        elapsed = time.perf_counter() - began
        assert resp.status_code == 200, resp.status_code
        return elapsed * 1000

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, range(n)))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--quick", action="store_true", help="a few requests: check that it works")
    args = parser.parse_args()
    n = 20 if args.quick else args.requests

    with tempfile.TemporaryDirectory() as tmp, KubeEmulator() as kube, LocalSlack(bot_token=BOT_TOKEN) as slack:
        workdir = Path(tmp)
        kube.put(node({"name": "gpu-0", "instance_type": "g5.xlarge", "gpus": 64}))
        kube.put(deployment({"name": "qwen", "model": "Qwen/Qwen3-1.7B", "image": "vllm:bench",
                             "replicas": 1, "gpus": 1}))
        config = {"roles": {"operator": ["U0OPERATOR"]},
                  "clusters": [{"name": "dev", "kubeconfig": str(kube.write_kubeconfig(workdir / "kc"))}]}
        bot = BotProcess(workdir, config, slack, f"sqlite:///{workdir / 'bench.sqlite3'}").start()
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port), SIGNING_SECRET,
                                 slack.api_url, BOT_TOKEN],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            signer = SlackRequests(SIGNING_SECRET, response_slack=slack)
            bare_url = f"http://127.0.0.1:{bare_port}/slack/events"
            deadline = time.monotonic() + 20
            while True:
                try:
                    measure(bare_url, signer, "status", 1, 1)
                    break
                except requests.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
            print(f"{'target':<22}{'conc':>5}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'p99/bare':>10}")
            for concurrency in args.concurrency:
                measure(bare_url, signer, "status", min(n, 50), concurrency)  # warm up
                base = measure(bare_url, signer, "status", n, concurrency)
                base_p99 = percentile(base, 99)
                print(f"{'bare Bolt ack':<22}{concurrency:>5}{statistics.median(base):>9.1f}"
                      f"{percentile(base, 95):>9.1f}{base_p99:>9.1f}{1.0:>10.2f}")
                for text in ("status", "scale qwen 2"):
                    lat = measure(f"{bot.url}/slack/events", signer, text, n, concurrency)
                    p99 = percentile(lat, 99)
                    print(f"{'/infer ' + text:<22}{concurrency:>5}{statistics.median(lat):>9.1f}"
                          f"{percentile(lat, 95):>9.1f}{p99:>9.1f}{p99 / base_p99:>10.2f}")
        finally:
            bare.terminate()
            bot.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
