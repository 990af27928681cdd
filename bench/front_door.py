"""The public endpoint under hostile connections: signed acks while stalled connections are held, and
how long a body announced as 256 MiB takes to be refused.

Two `infer-bot serve` processes run side by side in the same run: one with the `server:` config
set to waitress' defaults (what the bot ran with before: 100 connections, 120 s channel timeout,
1 GiB body limit), one with the bot's defaults. Each stalled connection sends headers announcing a
body, part of it, then nothing.

    .venv/bin/python bench/front_door.py [--quick]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import requests
from common import machine  # noqa: F401  (puts the repository on sys.path)

from bot.sandbox.kubeapi import KubeEmulator
from bot.sandbox.slack.webapi import LocalSlack
from tests.support.botproc import BOT_TOKEN, BotProcess

WAITRESS_DEFAULTS = {"connection_limit": 100, "read_timeout_seconds": 120, "max_body_bytes": 1 << 30}
STALL = (b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/x-www-form-urlencoded\r\n"
         b"Content-Length: 4000\r\n\r\ncommand=%2Finfer&text=sta")
GIVE_UP = 5.0  # Slack waits 3 s for an ack; past 5 s we count the request as lost


LOST_IN_A_ROW = 5  # then the server is taken as stalled: waiting GIVE_UP for each of the rest proves nothing


def acks(bot: BotProcess, n: int) -> tuple[list[float], int]:
    """Latency of up to n signed `/infer help` requests, one after the other; and how many got no answer."""
    took, lost = [], 0
    for _ in range(n):
        if lost >= LOST_IN_A_ROW and not took:
            break
        body, headers = bot.requests.slash("help", user_id="U0OPERATOR", channel_id="C0OPS")
        began = time.perf_counter()
        try:
            ok = requests.post(f"{bot.url}/slack/events", data=body, headers=headers, timeout=GIVE_UP).ok
        except requests.RequestException:
            ok = False
        if ok:
            took.append(time.perf_counter() - began)
        else:
            lost += 1
    return took, lost


def refuse_huge_body(bot: BotProcess) -> str:
    with socket.create_connection(("127.0.0.1", bot.port), timeout=GIVE_UP) as sock:
        began = time.perf_counter()
        sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Length: 268435456\r\n\r\n")
        try:
            answer = sock.recv(64)
        except TimeoutError:
            return f"no answer within {GIVE_UP:.0f} s (waiting for the body)"
        return f"{answer.split(b' ')[1].decode()} after {(time.perf_counter() - began) * 1000:.1f} ms, body unread"


def row(name: str, bot: BotProcess, stalled: int, requests_n: int) -> str:
    with ExitStack() as stack:
        held = 0
        for _ in range(stalled):
            try:
                sock = stack.enter_context(socket.create_connection(("127.0.0.1", bot.port), timeout=2))
                sock.sendall(STALL)
                held += 1
            except OSError:
                break
        took, lost = acks(bot, requests_n)
    if not took:
        return (f"{name:<16} {stalled:>5} stalled ({held} held): the first {lost} signed requests all lost"
                f" (> {GIVE_UP:.0f} s each), the rest not tried")
    p50, p99 = statistics.median(took), sorted(took)[min(len(took) - 1, int(0.99 * (len(took) - 1)))]
    return (f"{name:<16} {stalled:>5} stalled ({held} held): ack p50 {p50 * 1000:6.1f} ms, p99 {p99 * 1000:6.1f} ms,"
            f" lost {lost}/{requests_n}")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n = 5 if args.quick else 100
    loads = (0, 300) if args.quick else (0, 300, 1000)
    with tempfile.TemporaryDirectory() as tmp, KubeEmulator() as kube, LocalSlack(bot_token=BOT_TOKEN) as slack:
        root = Path(tmp)
        kubeconfig = str(kube.write_kubeconfig(root / "kc"))
        bots = {}
        for name, server in (("waitress default", WAITRESS_DEFAULTS), ("infer-bot", {})):
            workdir = root / name.replace(" ", "-")
            workdir.mkdir()
            config = {"clusters": [{"name": "dev", "kubeconfig": kubeconfig}], "server": server}
            bots[name] = BotProcess(workdir, config, slack, f"sqlite:///{workdir / 'db.sqlite3'}").start()
        try:
            lines = []
            for stalled in loads:
                for name, bot in bots.items():
                    lines.append(row(name, bot, stalled, n))
                    # The stalled connections were closed by the client; let the server notice before the next row.
                    time.sleep(1)
            lines += [f"{name:<16} 256 MiB announced: {refuse_huge_body(bot)}" for name, bot in bots.items()]
        finally:
            for bot in bots.values():
                bot.stop()
    print("\n".join(lines))
    ours = [line for line in lines if line.startswith("infer-bot") and f"{max(loads)} stalled" in line]
    print(f"target: signed acks < 1 s with {max(loads)} stalled connections → {ours[0].split(':', 1)[1].strip()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
