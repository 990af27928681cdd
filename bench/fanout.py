"""Fan-out: one digest to 50 channels through the local Slack enforcing 1 message/second/channel.

The mock (bot/sandbox/slack/webapi.py `per_channel_limit(1)`, burst 1) answers HTTP 429 with Retry-After
beyond the limit, like Slack's chat.postMessage. The bot's real path posts: `digests:` schedules in
the config fire through the bot's DigestScheduler (bot/scheduler.py → handlers/digest.py
post_digest), each channel claims its slot in the database, and the digest is built from a real
Prometheus and posted — what happens at 09:00. Two runs side by side:

* 1 channel: the time one digest takes (build, messages at 1/s, chart) — the reference;
* 50 channels firing at once: served in parallel, the total stays close to the reference.

In each channel, just before the bot's first post, a neighbour's message (another replica, an
approval card) takes the channel's one message of that second, so every channel's first post is
answered 429 / Retry-After 1 by the mock's own bucket: the retry path is exercised and checked in
every channel, not only the pacing.

Measured: total time from firing to the last message, against the busiest channel's floor (at
1 message/s, a channel whose neighbour posted once and that gets k messages needs k s); messages
lost (per channel, what the bot's own render says it sends vs what arrived, files included); and
429s honoured (after a 429 with Retry-After R at time t in a channel, no chat.postMessage to that
channel before t + R).

Prometheus is real (the product's generator, bot/sandbox/metrics_data.py): the five hand-shaped
deployments of the tests (so there are suggestions) plus look-alikes, enough for thread messages.

    .venv/bin/python bench/fanout.py [--channels 50] [--deployments 45] [--quick]
"""

from __future__ import annotations

import argparse
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import common

from bot.app import Runtime, build_runtime, make_client
from bot.config import Settings, parse_config
from bot.sandbox.kubeapi import KubeEmulator
from bot.sandbox.metrics_data import aligned_now, binaries, dataset_at, serve_dataset
from bot.sandbox.slack.webapi import LocalSlack
from handlers import digest as digest_handler
from handlers.digest_blocks import render_digest
from tests.support.botproc import BOT_TOKEN, Database
from tests.support.prometheus import CASES, fleet

INTERVAL = 300  # seconds between generated samples; the digest steps with them


class CountingSlack(LocalSlack):
    """The local Slack with a neighbour in every channel, noting every 429 it answers.

    `limited` holds (channel, wall time, Retry-After seconds): Call records keep the request, not the
    reply's headers, and Retry-After is what the honour check needs.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limited: list[tuple[str, float, int]] = []
        self._neighboured: set[str] = set()

    def _api(self, method: str, params: dict[str, Any], headers: Mapping[str, str]) -> Any:
        channel = str(params.get("channel") or "")
        if method == "chat.postMessage" and channel:
            with self._lock:
                if channel not in self._neighboured:
                    # Someone else's post just now: it spends the channel's token like a real one would.
                    self._neighboured.add(channel)
                    self._take_channel_token(channel)
        reply = super()._api(method, params, headers)
        if method == "chat.postMessage" and reply.status == 429:
            with self._lock:
                self.limited.append((channel, time.time(), int(reply.headers.get("Retry-After", "0"))))
        return reply


@dataclass
class Run:
    label: str
    channels: int
    seconds: float  # firing → the last message or file of the digests arrived
    expected: int  # the bot's messages per channel (main + thread + files), from the bench's own render
    busiest: int  # the most of the bot's messages that arrived in one channel
    lost: dict[str, int] = field(default_factory=dict)  # channel → expected − arrived (when > 0)
    extra: dict[str, int] = field(default_factory=dict)  # channel → arrived − expected (duplicates)
    failed: int = 0  # digests the bot recorded as failed
    limited: int = 0  # 429s answered
    early: list[str] = field(default_factory=list)  # 429s not honoured, described
    first_post: list[float] = field(default_factory=list)  # firing → each channel's first message

    @property
    def floor(self) -> float:
        """Seconds the busiest channel needs at 1 message/s: its messages after the neighbour's one."""
        return float(self.busiest)


def expected_messages(runtime: Runtime) -> int:
    """Messages one channel gets for this data: main, thread messages, chart and CSV files."""
    assert runtime.deps is not None
    d = digest_handler.build_digest(runtime.deps)
    render = render_digest(d, {})
    chart = any(r.metrics.util_series or r.metrics.latency_series for r in d.deployments)
    return 1 + len(render.thread) + int(chart) + int(render.table_csv is not None)


def settle(slack: LocalSlack, db: Database, channels: list[str], deadline: float) -> None:
    """Wait until the bot has finished (posted or failed) one digest per channel."""
    wanted = set(channels)
    while time.monotonic() < deadline:
        rows = db.rows("SELECT channel_id, status FROM digest_posts")
        if wanted <= {r["channel_id"] for r in rows if r["status"] in ("posted", "failed")}:
            return
        time.sleep(0.1)
    raise TimeoutError("the digests did not all finish in time")


def tally(label: str, slack: CountingSlack, db: Database, channels: list[str], began: float,
          expected: int) -> Run:
    arrivals: dict[str, list[float]] = defaultdict(list)
    wanted = set(channels)
    for call in slack.calls:
        if call.method in ("chat.postMessage", "files.completeUploadExternal") and call.ok:
            channel = str(call.params.get("channel") or call.params.get("channel_id") or "")
            if channel in wanted:
                arrivals[channel].append(call.at)
    counts = {ch: len(slack.messages(ch)) for ch in channels}  # posts and file shares, threads included
    last = max((t for ts in arrivals.values() for t in ts), default=began)
    run = Run(label, len(channels), last - began, expected, max(counts.values(), default=0))
    for ch, n in counts.items():
        if n < expected:
            run.lost[ch] = expected - n
        elif n > expected:
            run.extra[ch] = n - expected
    run.failed = sum(1 for r in db.rows("SELECT channel_id, status FROM digest_posts")
                     if r["channel_id"] in wanted and r["status"] == "failed")
    run.first_post = [min(ts) - began for ts in arrivals.values() if ts]
    posts: dict[str, list[float]] = defaultdict(list)
    for call in slack.calls_to("chat.postMessage"):
        posts[str(call.params.get("channel") or "")].append(call.at)
    limited = [x for x in slack.limited if x[0] in wanted]
    run.limited = len(limited)
    for channel, at, retry_after in limited:
        later = [t for t in posts[channel] if t > at]
        if later and min(later) < at + retry_after:
            run.early.append(f"{channel}: next post {min(later) - at:.3f} s after a 429 with Retry-After "
                             f"{retry_after}")
    return run


def fire(runtime: Runtime, slack: CountingSlack, db: Database, channels: list[str], expected: int,
         label: str) -> Run:
    """Every given channel's schedule fires at once; the bot's scheduler claims, builds and posts."""
    scheduler = runtime.scheduler
    assert scheduler is not None
    jobs = [s.job_id for s in scheduler.schedules if s.channel in channels]
    assert len(jobs) == len(channels), (jobs, channels)
    began = time.time()
    for job in jobs:
        scheduler.fire_now(job)
    settle(slack, db, channels, time.monotonic() + 600)
    return tally(label, slack, db, channels, began, expected)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--channels", type=int, default=50)
    parser.add_argument("--deployments", type=int, default=45, help="look-alikes added to the five shaped ones")
    parser.add_argument("--quick", action="store_true", help="5 channels, no look-alikes: check that it works")
    args = parser.parse_args()
    n_channels, extra = (5, 0) if args.quick else (args.channels, args.deployments)
    binaries()
    workdir = Path(tempfile.mkdtemp(prefix="infer-bot-bench-fanout-"))
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        dataset = dataset_at(CASES + fleet(extra), aligned_now(INTERVAL), interval=INTERVAL, step=INTERVAL,
                             before=4 * INTERVAL, after=2 * 3600)  # data runs past "now" for the digest
        server = serve_dataset(dataset, workdir / "prom")
        stack.callback(server.stop)
        one = ["C0ONE0000"]
        many = [f"C0FAN{i:04d}" for i in range(n_channels)]
        # The Kubernetes API emulator as the cluster's API: the digest reads pods for start-up times there
        # (without a kubeconfig the client would wander off to ~/.kube/config and time out).
        kube = stack.enter_context(KubeEmulator())
        # A cron that will not fire by itself during the run: the bench fires the jobs. The single channel
        # names its cluster and the fan-out does not, so that the two are different digests to the bot
        # (handlers.digest shares one build among the channels asking for the same clusters within a
        # minute): each run pays for its own build.
        never = {"cron": "0 3 1 1 *", "timezone": "UTC"}
        config = parse_config({
            "clusters": [{"name": "dev", "prometheus_url": server.url,
                          "kubeconfig": str(kube.write_kubeconfig(workdir / "kubeconfig"))}],
            "metrics": {"step_seconds": INTERVAL, "rate_window_seconds": 3 * INTERVAL},
            "digests": [{"channel": one[0], "clusters": ["dev"], **never}]
                       + [{"channel": ch, **never} for ch in many],
        }, "bench")
        url = f"sqlite:///{workdir / 'bot.sqlite3'}"
        slack = stack.enter_context(CountingSlack(bot_token=BOT_TOKEN))
        slack.per_channel_limit(1.0, burst=1)
        settings = Settings(infer_bot_database_url=url, slack_api_url=slack.api_url, slack_bot_token=BOT_TOKEN)
        runtime = build_runtime(config, settings, client=make_client(settings))
        stack.callback(runtime.close)
        db = Database(url)
        expected = expected_messages(runtime)
        runtime.start_scheduler()
        runs = [fire(runtime, slack, db, one, expected, "1 channel"),
                fire(runtime, slack, db, many, expected, f"{n_channels} channels at once")]

    print(f"machine: {common.machine()}")
    print(f"digest of {len(CASES) + extra} deployments from a real Prometheus: {expected} messages per channel "
          "(main, thread, files); local Slack at 1 message/s/channel (burst 1, 429 + Retry-After beyond); "
          "a neighbour posts in each channel just before the bot's first post (so that post gets a 429)")
    print(f"{'run':<22}{'total s':>8}{'floor s':>9}{'total/floor':>13}{'first msg p50/max s':>21}{'lost':>6}"
          f"{'dup':>5}{'429s':>6}{'honoured':>10}")
    for run in runs:
        first = run.first_post or [0.0]
        ratio = run.seconds / run.floor if run.floor > 0 else math.inf
        print(f"{run.label:<22}{run.seconds:>8.1f}{run.floor:>9.0f}{ratio:>12.2f}×"
              f"{statistics.median(first):>12.1f} / {max(first):<6.1f}{sum(run.lost.values()):>6}"
              f"{sum(run.extra.values()):>5}{run.limited:>6}{run.limited - len(run.early):>10}")
        for problem in run.early[:5]:
            print(f"  429 not honoured: {problem}")
        if run.lost or run.failed:
            print(f"  lost: {dict(list(run.lost.items())[:5])}, failed digests: {run.failed}")
    single, fan = runs
    # Channels whose first message came well after one channel's did waited for something shared: a
    # scheduler worker, the build, a lock. Their number says how parallel the fan-out really was.
    late = sum(1 for t in fan.first_post if t > max(single.first_post or [0.0]) + 2)
    workers = getattr(runtime.scheduler, "workers", None)
    print(f"{late} of {fan.channels} channels got their first message > 2 s after the single channel did "
          f"(the bot's digest scheduler runs {workers if workers else 'APScheduler default 10'} jobs at once)")
    print(f"floor = the busiest channel's messages at 1/s after the neighbour's one ({fan.floor:.0f} s); "
          f"{fan.channels} channels took {fan.seconds / single.seconds:.2f}× the time of 1 channel "
          f"(1× = served in parallel, {fan.channels}× = one after another)")
    # "Close to" the floor: what one channel alone needs beyond its floor (the build, slack_sdk's up-to-1 s
    # jitter on Retry-After), plus 2 s.
    close = fan.seconds <= fan.floor + (single.seconds - single.floor) + 2
    print(f"target: total close to the busiest channel's messages in seconds → {fan.seconds:.1f} s for a "
          f"{fan.floor:.0f} s floor, 1 channel alone {single.seconds:.1f} s "
          f"({'met' if close else 'MISSED'}); lost {sum(fan.lost.values())} "
          f"({'met' if not fan.lost and not fan.failed else 'MISSED'}); 429s honoured "
          f"{fan.limited - len(fan.early)}/{fan.limited} ({'met' if not fan.early else 'MISSED'})")
    ok = all(not r.lost and not r.failed and not r.early for r in runs)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
