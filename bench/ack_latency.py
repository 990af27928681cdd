"""Ack latency of `/infer status` and `/infer scale` over HTTP, against a bare Bolt app on the same stack.

Both servers are separate processes on loopback served by waitress; requests are signed exactly as
Slack signs them. The figure that matters is the ratio to the bare app, measured in the same run.
The local Slack and the Kubernetes emulator run in a third process (World), so that the load
generator's threads do not slow down the bot's own calls to them. "card posted" is the time from
sending `/infer scale` to its approval card arriving at the local Slack (wall clock, one channel per
request), each client waiting for its card before it sends the next: the latency a user sees.

    .venv/bin/python bench/ack_latency.py [--requests 2000] [--concurrency 1 8 32] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from common import machine  # noqa: E402

from bot.sandbox.environment import deployment, node  # noqa: E402
from bot.sandbox.kubeapi import KubeEmulator  # noqa: E402
from bot.sandbox.slack.webapi import Call, LocalSlack, SlackRequests  # noqa: E402
from tests.support.botproc import BOT_TOKEN, SIGNING_SECRET, BotProcess, free_port  # noqa: E402
from tests.support.postgres import PostgresServer  # noqa: E402

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
    """When each channel's first approval card arrived at the local Slack (wall-clock seconds, which the
    load generator's process shares)."""

    def __init__(self) -> None:
        self.posted: dict[str, float] = {}

    def __call__(self, call: Call) -> None:
        if call.method == "chat.postMessage" and not call.params.get("thread_ts"):
            self.posted.setdefault(str(call.params.get("channel")), time.time())


def _serve_world(conn: Connection, workdir: str) -> None:
    """The child process: the local Slack and the Kubernetes emulator, answering the parent over `conn`."""
    clock = CardClock()
    with KubeEmulator() as kube, LocalSlack(bot_token=BOT_TOKEN, on_call=clock) as slack:
        kube.put(node({"name": "gpu-0", "instance_type": "g5.xlarge", "gpus": 64}))
        kube.put(deployment({"name": "qwen", "model": "Qwen/Qwen3-1.7B", "image": "vllm:bench",
                             "replicas": 1, "gpus": 1}))
        conn.send((slack.api_url, slack.app_token, str(kube.write_kubeconfig(Path(workdir) / "kc"))))
        while True:
            what, arg = conn.recv()
            if what == "urls":  # response_urls bound to (channel, user), as Slack hands them out
                conn.send([slack.response_url(f"r-{ch}", channel=ch, user=user) for ch, user in arg])
            elif what == "cards":
                conn.send({ch: clock.posted[ch] for ch in arg if ch in clock.posted})
            else:
                break


class World:
    """The local Slack and the Kubernetes emulator in a process of their own.

    In the load generator's process they would share its interpreter lock with up to 32 client
    threads, and the bot's calls to them (cards, replies) would wait on the benchmark, not on the
    bot. Has `api_url` and `app_token` like LocalSlack, which is all BotProcess uses of it.
    """

    def __init__(self, workdir: Path) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_serve_world, args=(child, str(workdir)), daemon=True)
        self._proc.start()
        self.api_url, self.app_token, self.kubeconfig = self._conn.recv()

    def response_urls(self, pairs: list[tuple[str, str]]) -> list[str]:
        self._conn.send(("urls", pairs))
        return list(self._conn.recv())

    def cards(self, channels: list[str]) -> dict[str, float]:
        self._conn.send(("cards", channels))
        return dict(self._conn.recv())

    def stop(self) -> None:
        self._conn.send(("stop", None))
        self._proc.join(10)
        if self._proc.is_alive():
            self._proc.terminate()


class PreparedRequests(SlackRequests):
    """Signed slash commands whose response_urls were made beforehand in the world's process."""

    def __init__(self, signing_secret: str) -> None:
        super().__init__(signing_secret)
        self.urls: dict[str, str] = {}

    def _response_url(self, name: str, channel_id: str, message_ts: str | None, user_id: str) -> str:
        return self.urls.pop(channel_id)


USER = "U0OPERATOR"


def measure(url: str, signer: PreparedRequests, world: World, text: str, n: int, concurrency: int,
            cards: bool = False) -> tuple[list[float], list[float]]:
    """(ack latencies, card latencies) in ms; card latencies only when `cards` is asked for."""
    local = threading.local()
    channels = [f"C{uuid.uuid4().hex[:10].upper()}" for _ in range(n)]  # one per request: its card is its own
    signer.urls.update(zip(channels, world.response_urls([(ch, USER) for ch in channels]), strict=True))
    sent: dict[str, float] = {}

    def one(i: int) -> float:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        body, headers = signer.slash(text, user_id=USER, channel_id=channels[i])
        sent[channels[i]] = time.time()
        began = time.perf_counter()
        resp = local.session.post(url, data=body, headers=headers, timeout=10)
        elapsed = time.perf_counter() - began
        assert resp.status_code == 200, resp.status_code
        return elapsed * 1000

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        acks = list(pool.map(one, range(n)))
    if not cards:
        return acks, []
    # The cards are posted after the ack, by the bot's work pool: give a long run time to drain.
    deadline = time.monotonic() + 60 + n / 5
    posted = world.cards(channels)
    while time.monotonic() < deadline and len(posted) < n:
        time.sleep(0.2)
        posted = world.cards(channels)
    return acks, [(posted[ch] - t) * 1000 for ch, t in sent.items() if ch in posted]


def measure_cards(url: str, signer: PreparedRequests, world: World, n: int, concurrency: int) -> list[float]:
    """ms from sending `/infer scale` to its approval card at the local Slack, each client waiting for its
    card before sending the next (a closed loop: the latency a user sees, not a backlog)."""
    local = threading.local()
    lock = threading.Lock()  # one pipe to the world's process
    channels = [f"C{uuid.uuid4().hex[:10].upper()}" for _ in range(n)]
    signer.urls.update(zip(channels, world.response_urls([(ch, USER) for ch in channels]), strict=True))

    def one(i: int) -> float | None:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        body, headers = signer.slash("scale qwen 2", user_id=USER, channel_id=channels[i])
        sent = time.time()
        assert local.session.post(url, data=body, headers=headers, timeout=10).status_code == 200
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                posted = world.cards([channels[i]])
            if posted:
                return (posted[channels[i]] - sent) * 1000
            time.sleep(0.01)
        return None

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return [ms for ms in pool.map(one, range(n)) if ms is not None]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--cards", type=int, default=300, help="closed-loop `scale → card posted` samples")
    parser.add_argument("--quick", action="store_true", help="a few requests: check that it works")
    parser.add_argument("--after-ack", nargs="+", choices=["inline", "queue"], default=["inline", "queue"],
                        help="server.after_ack of the bot: inline (work in serve's threads) or queue (workers)")
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql",
                        help="the bot's database (queue is meant for PostgreSQL: NOTIFY, no file lock)")
    parser.add_argument("--pin", action=argparse.BooleanOptionalAction, default=(os.cpu_count() or 1) >= 2,
                        help="serve (and the bare app) on CPU 0, everything else (load, world, database, "
                             "workers) on the others: how the Helm chart's serve pods get CPU of their own "
                             "(default with 2+ CPUs; --no-pin shares every CPU)")
    args = parser.parse_args()
    others = set(range(1, os.cpu_count() or 1))
    if args.pin:  # before anything starts: every process started from here inherits it
        os.sched_setaffinity(0, others)
    n = 20 if args.quick else args.requests
    # Card latency is measured in a closed loop (each client waits for its card), at ~10 cards/s here:
    # a few hundred samples per concurrency give stable percentiles in minutes, not a quarter hour.
    n_cards = min(n, args.cards)

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        world = World(workdir)
        postgres = PostgresServer().start() if args.database == "postgresql" else None
        bots = {}
        for mode in args.after_ack:
            config = {"roles": {"operator": [USER]}, "clusters": [{"name": "dev", "kubeconfig": world.kubeconfig}],
                      "server": {"after_ack": mode}}
            (workdir / mode).mkdir()
            # BotProcess only reads `api_url` and `app_token` of its Slack, which the world has.
            url = postgres.new_database() if postgres else f"sqlite:///{workdir / mode / 'bench.sqlite3'}"
            bots[mode] = BotProcess(workdir / mode, config, world, url).start()  # type: ignore[arg-type]
            if args.pin:  # serve only: the workers it started keep the others
                assert bots[mode].proc is not None
                os.sched_setaffinity(bots[mode].proc.pid, {0})
        bare_port = free_port()
        bare = subprocess.Popen([sys.executable, "-c", BARE_APP, str(bare_port), SIGNING_SECRET,
                                 world.api_url, BOT_TOKEN],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if args.pin:
            os.sched_setaffinity(bare.pid, {0})
        try:
            signer = PreparedRequests(SIGNING_SECRET)
            bare_url = f"http://127.0.0.1:{bare_port}/slack/events"
            deadline = time.monotonic() + 20
            while True:
                try:
                    measure(bare_url, signer, world, "status", 1, 1)
                    break
                except requests.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
            print(f"machine: {machine()}; database: {args.database}; "
                  + ("serve and the bare app pinned to CPU 0, the rest on the others" if args.pin
                     else "every process on every CPU"))
            print(f"requests per row: {n} (card posted: {n_cards}, each client waiting for its card)")
            print(f"{'target (after_ack)':<34}{'conc':>5}"
                  f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'p50/bare':>10}{'p99/bare':>10}")
            # (p99 ratio, p99 ms, concurrency) of each mode's acks; card p99s per mode
            worst: dict[str, list[tuple[float, float, int]]] = {mode: [] for mode in bots}
            card_p99: dict[str, list[float]] = {mode: [] for mode in bots}

            def row(label: str, conc: int, values: list[float], base: list[float]) -> float:
                p99, base_p99 = percentile(values, 99), percentile(base, 99)
                print(f"{label:<34}{conc:>5}{statistics.median(values):>9.1f}{percentile(values, 95):>9.1f}"
                      f"{p99:>9.1f}{statistics.median(values) / statistics.median(base):>10.2f}"
                      f"{p99 / base_p99:>10.2f}")
                return p99

            for concurrency in args.concurrency:
                measure(bare_url, signer, world, "status", min(n, 50), concurrency)  # warm up
                base, _ = measure(bare_url, signer, world, "status", n, concurrency)
                base_p99 = row("bare Bolt ack", concurrency, base, base)
                for mode, bot in bots.items():
                    url = f"{bot.url}/slack/events"
                    measure(url, signer, world, "status", min(n, 50), concurrency)
                    for verb, text in (("help", "help"), ("status", "status"), ("scale", "scale qwen 2")):
                        # `scale` waits until every card is posted, so the next row starts clean.
                        acks, backlog = measure(url, signer, world, text, n, concurrency, cards=verb == "scale")
                        p99 = row(f"/infer {verb} ack ({mode})", concurrency, acks, base)
                        worst[mode].append((p99 / base_p99, p99, concurrency))
                        if verb == "scale" and len(backlog) < n:  # a card that never came is a result
                            print(f"  only {len(backlog)} of {n} approval cards arrived")
                    card = measure_cards(url, signer, world, n_cards, concurrency)
                    if card:
                        card_p99[mode].append(row(f"/infer scale → card ({mode})", concurrency, card, base))
                    if len(card) < n_cards:
                        print(f"  only {len(card)} of {n_cards} approval cards arrived within 30 s")
            for mode in bots:
                ratio, p99, conc = max(worst[mode])
                top = max(p for _, p, c in worst[mode] if c == max(args.concurrency))
                cards_top = max(card_p99[mode], default=float("nan"))
                print(f"target: after_ack {mode}: ack p99 ≤ 1.5× the bare app at every concurrency → worst "
                      f"{ratio:.2f}× at {conc} ({'met' if ratio <= 1.5 else 'MISSED'}); p99 < 100 ms at "
                      f"{max(args.concurrency)} "
                      f"→ {top:.1f} ms ({'met' if top < 100 else f'MISSED by {top - 100:.0f} ms'}); card posted "
                      f"p99 ≤ 1 s → worst {cards_top:.0f} ms ({'met' if cards_top <= 1000 else 'MISSED'})")
        finally:
            bare.terminate()
            for bot in bots.values():
                bot.stop()
            world.stop()
            if postgres is not None:
                postgres.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
