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
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bot.local_slack import Call, LocalSlack, SlackRequests  # noqa: E402
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


class CardClock:
    """When each channel's first approval card arrived at the local Slack (perf_counter seconds)."""

    def __init__(self) -> None:
        self.posted: dict[str, float] = {}

    def __call__(self, call: Call) -> None:
        if call.method == "chat.postMessage" and not call.params.get("thread_ts"):
            self.posted.setdefault(str(call.params.get("channel")), time.perf_counter())


def measure(url: str, signer: SlackRequests, text: str, n: int, concurrency: int,
            cards: CardClock | None = None) -> tuple[list[float], list[float]]:
    """(ack latencies, card latencies) in ms; card latencies only when `cards` is given."""
    local = threading.local()
    sent: dict[str, float] = {}

    def one(i: int) -> float:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        channel = f"C{uuid.uuid4().hex[:10].upper()}"  # one channel per request: its card is its own
        body, headers = signer.slash(text, user_id="U0OPERATOR", channel_id=channel)
        began = time.perf_counter()
        sent[channel] = began
        resp = local.session.post(url, data=body, headers=headers, timeout=10)
        elapsed = time.perf_counter() - began
        assert resp.status_code == 200, resp.status_code
        return elapsed * 1000

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        acks = list(pool.map(one, range(n)))
    if cards is None:
        return acks, []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not all(ch in cards.posted for ch in sent):
        time.sleep(0.05)
    return acks, [(cards.posted[ch] - t) * 1000 for ch, t in sent.items() if ch in cards.posted]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--quick", action="store_true", help="a few requests: check that it works")
    args = parser.parse_args()
    n = 20 if args.quick else args.requests

    cards = CardClock()
    with tempfile.TemporaryDirectory() as tmp, KubeEmulator() as kube, \
            LocalSlack(bot_token=BOT_TOKEN, on_call=cards) as slack:
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
            print(f"requests per row: {n}")
            print(f"{'target':<30}{'conc':>5}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'p99/bare':>10}")

            def row(label: str, conc: int, values: list[float], base_p99: float) -> None:
                p99 = percentile(values, 99)
                print(f"{label:<30}{conc:>5}{statistics.median(values):>9.1f}{percentile(values, 95):>9.1f}"
                      f"{p99:>9.1f}{p99 / base_p99:>10.2f}")

            for concurrency in args.concurrency:
                measure(bare_url, signer, "status", min(n, 50), concurrency)  # warm up both
                measure(f"{bot.url}/slack/events", signer, "status", min(n, 50), concurrency)
                base, _ = measure(bare_url, signer, "status", n, concurrency)
                base_p99 = percentile(base, 99)
                row("bare Bolt ack", concurrency, base, base_p99)
                status, _ = measure(f"{bot.url}/slack/events", signer, "status", n, concurrency)
                row("/infer status ack", concurrency, status, base_p99)
                scale, card = measure(f"{bot.url}/slack/events", signer, "scale qwen 2", n, concurrency, cards)
                row("/infer scale ack", concurrency, scale, base_p99)
                row("/infer scale → card posted", concurrency, card, base_p99)
        finally:
            bare.terminate()
            bot.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
