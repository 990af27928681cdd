"""Scheduled digests: APScheduler 3 in each bot process, the database deciding who posts.

Every replica runs the same schedules (from `digests:` in the config and from the subscriptions
table, re-read every `sync_seconds`). When a schedule fires, the process works out which slot it
stands for (the latest cron time at or before now, in UTC), claims (channel, slot) through a
unique key in the database, and only the process that got the claim builds and posts the digest.
APScheduler's FAQ is explicit that schedulers must not share a job store; they share nothing here.

Every trigger gets an explicit time zone (a bare CronTrigger would use the machine's), crontab's
day-of-week and day-field rules are translated by ops/cron.py, and a fire time missed by up to
`misfire_grace_seconds` (a restart at 09:00) still posts; older ones are coalesced into one.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.config import Config
from bot.db.digests import DigestStore
from bot.db.tables import PostStatus
from ops.cron import make_trigger

log = logging.getLogger(__name__)


class Posted(Protocol):
    @property
    def ts(self) -> str | None: ...
    @property
    def summary(self) -> dict[str, Any]: ...


# post(channel, cluster names (empty = all), digest post id) → what was posted. Raises on failure.
PostDigest = Callable[[str, Sequence[str], int], Posted]


def latest_fire_time(trigger: BaseTrigger, now: datetime, lookback: timedelta) -> datetime | None:
    """The last time `trigger` fired at or before `now`, looking back at most `lookback`."""
    fire = trigger.get_next_fire_time(None, now - lookback)
    last = None
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return last


def period_key(trigger: BaseTrigger, now: datetime, grace: timedelta) -> str:
    """The slot a run stands for: the same string in every process that runs this schedule now."""
    for lookback in (grace + timedelta(minutes=1), timedelta(days=32)):
        fired = latest_fire_time(trigger, now, lookback)
        if fired is not None:
            return fired.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%MZ")


@dataclass(frozen=True)
class Schedule:
    job_id: str
    channel: str
    cron: str
    timezone: str
    clusters: tuple[str, ...]
    source: str  # "config" | "subscription"



class DigestScheduler:
    def __init__(self, config: Config, digests: DigestStore, post: PostDigest, *, sync_seconds: float = 30,
                 workers: int | None = None) -> None:
        """`workers`: digests posted at the same time (default `metrics.digest_workers`).

        Slack lets one channel have one message per second, so a digest is mostly waiting; with
        APScheduler's default pool of 10, fifty channels subscribed at 09:00 would post ten at a
        time. Each channel gets its own thread up to `workers`; the build is shared
        (the Runtime's SharedBuilds, bot/pacing.py), so more threads do not mean more PromQL.
        """
        self.config = config
        self.digests = digests
        self.post = post
        self.grace = timedelta(seconds=config.metrics.misfire_grace_seconds)
        self.sync_seconds = sync_seconds
        self.workers = workers or config.metrics.digest_workers
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._scheduler = BackgroundScheduler(
            timezone=UTC, executors={"default": ThreadPoolExecutor(max_workers=self.workers)},
            job_defaults={"coalesce": True, "max_instances": 1,
                          "misfire_grace_time": int(self.grace.total_seconds())})
        self._schedules: dict[str, Schedule] = {}
        self._triggers: dict[str, BaseTrigger] = {}

    # ---- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        for index, digest in enumerate(self.config.digests):
            self._put(Schedule(f"config:{index}:{digest.channel}", digest.channel, digest.cron, digest.timezone,
                               tuple(digest.clusters), "config"))
        self.sync()
        self._scheduler.add_job(self._sync_quietly, IntervalTrigger(seconds=self.sync_seconds, timezone=UTC),
                                id="sync-subscriptions", replace_existing=True)
        self._catch_up(datetime.now(UTC))
        self._scheduler.start()

    def _catch_up(self, now: datetime) -> None:
        """Post the digests whose time passed less than the misfire grace ago (a restart at 09:00).

        The job store is in memory, so APScheduler's own misfire_grace_time only covers a process
        that was running but late; a process that starts at 09:05 would wait for tomorrow. The run
        claims the slot it stands for like any other, so a slot another replica posted is not
        posted again.
        """
        for schedule in list(self._schedules.values()):
            trigger = self._triggers.get(schedule.job_id)
            if trigger is None or latest_fire_time(trigger, now, self.grace) is None:
                continue
            log.info("digest for %s: its time passed %s ago at most, posting it now", schedule.channel, self.grace)
            self._scheduler.add_job(self.run, DateTrigger(now, timezone=UTC), args=(schedule, trigger),
                                    id=f"catch-up:{schedule.job_id}", replace_existing=True,
                                    name=f"late digest {schedule.channel}")

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def add_cron(self, job_id: str, cron: str, timezone: str, fn: Callable[[], Any]) -> None:
        """Another scheduled task (e.g. a drift check) on the same scheduler, same cron rules."""
        self._scheduler.add_job(fn, make_trigger(cron, timezone), id=job_id, replace_existing=True)

    def add_interval(self, job_id: str, seconds: float, fn: Callable[[], Any]) -> None:
        """A task every `seconds` on the same scheduler (e.g. looking for due replica-schedule runs)."""
        self._scheduler.add_job(fn, IntervalTrigger(seconds=seconds, timezone=UTC), id=job_id, replace_existing=True)

    # ---- schedules ---------------------------------------------------------------------------------

    @property
    def schedules(self) -> list[Schedule]:
        return list(self._schedules.values())

    def next_run(self, job_id: str) -> datetime | None:
        job = self._scheduler.get_job(job_id)
        return getattr(job, "next_run_time", None) if job else None

    def sync(self) -> None:
        """Bring the subscription jobs in line with the database (added, changed, removed)."""
        wanted = {f"sub:{row.channel_id}": Schedule(f"sub:{row.channel_id}", row.channel_id, row.cron, row.timezone,
                                                    tuple(row.clusters or ()), "subscription")
                  for row in self.digests.subscriptions()}
        for job_id, schedule in list(self._schedules.items()):
            if schedule.source == "subscription" and job_id not in wanted:
                self._scheduler.remove_job(job_id)
                del self._schedules[job_id]
                self._triggers.pop(job_id, None)
        for job_id, schedule in wanted.items():
            if self._schedules.get(job_id) != schedule:
                self._put(schedule)

    def _sync_quietly(self) -> None:
        try:
            self.sync()
        except Exception:  # the database may be briefly away; the next sync catches up
            log.exception("cannot re-read digest subscriptions")

    def _put(self, schedule: Schedule) -> None:
        try:
            trigger = make_trigger(schedule.cron, schedule.timezone)
        except (ValueError, KeyError) as exc:
            log.error("digest schedule %s (%r, %s) is invalid: %s", schedule.job_id, schedule.cron,
                      schedule.timezone, exc)
            return
        self._scheduler.add_job(self.run, trigger, args=(schedule, trigger), id=schedule.job_id,
                                replace_existing=True, name=f"digest {schedule.channel}")
        self._schedules[schedule.job_id] = schedule
        self._triggers[schedule.job_id] = trigger

    def fire_now(self, job_id: str) -> None:
        """Run a schedule's job at once (tests, and operators who want to see the next digest now)."""
        self._scheduler.modify_job(job_id, next_run_time=datetime.now(UTC))

    # ---- one run -----------------------------------------------------------------------------------

    def run(self, schedule: Schedule, trigger: BaseTrigger, now: datetime | None = None) -> int | None:
        """Claim this slot for the channel and post; returns the digest post id, None when not ours."""
        period = period_key(trigger, now or datetime.now(UTC), self.grace)
        post_id = self.digests.claim_post(schedule.channel, period, self.id)
        if post_id is None:
            log.info("digest for %s at %s: another process has it", schedule.channel, period)
            return None
        try:
            posted = self.post(schedule.channel, schedule.clusters, post_id)
        except Exception as exc:
            log.exception("digest for %s at %s failed", schedule.channel, period)
            self.digests.finish_post(post_id, PostStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
            return post_id
        self.digests.finish_post(post_id, PostStatus.POSTED, ts=posted.ts, summary=posted.summary)
        return post_id
