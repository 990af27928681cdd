"""Replica schedules after approval: activating one, firing its runs, and each run's executor.

Every replica looks for due slots every few seconds (`ScheduleRunner.tick`); a due slot is claimed
through the unique (schedule, slot) key together with the operation that runs it, so one replica
creates it and the worker of whichever replica claims that operation runs it, under the workload's
lock like any change (it queues behind a manual scale in progress).

A run changes nothing when a person changed the Deployment since a schedule last looked at it. The
signal is `metadata.generation`, which the API server bumps on every change of the spec (a scale
through the scale subresource included) and never for status updates, so unlike `resourceVersion`
it is not moved by the controller reporting pods. The replica count is compared too, for the message.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from slack_sdk import WebClient

from bot.clusters import Clusters
from bot.config import Config
from bot.db.schedules import ScheduleStore, workload_key
from bot.db.store import Store
from bot.db.tables import Operation, ReplicaSchedule, ScheduleRunStatus, ScheduleStatus, utcnow
from bot.runs.progress import Outcome, Progress
from bot.runs.scale import run_scale
from handlers import cards
from ops.cron import latest_fire, next_runs
from ops.schedules import read_workload

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0  # how late after its minute a run starts, at most (plus the worker's poll)


def when(at: datetime, timezone: str) -> str:
    return f"{at.astimezone(ZoneInfo(timezone)):%a %Y-%m-%d %H:%M} {timezone}"


def _thread_of(store: Store, schedule: ReplicaSchedule) -> Operation | None:
    """The schedule's approval operation: its card is the thread every run reports in."""
    return store.get(schedule.operation_id) if schedule.operation_id else None


class ScheduleRunner:
    def __init__(self, config: Config, store: Store, client: WebClient, wake: Callable[[], None],
                 claimer: str) -> None:
        self.store = store
        self.schedules = ScheduleStore(store)
        self.client = client
        self.wake = wake
        self.claimer = claimer
        # A run missed by up to the grace (the bot restarted at 20:00) still runs; older ones do not.
        self.grace = timedelta(seconds=config.metrics.misfire_grace_seconds)
        self.ttl = timedelta(hours=config.operations.approval_timeout_hours)
        self._seen: dict[int, datetime] = {}  # the last slot this process tried, per schedule

    def tick_quietly(self) -> None:
        try:
            self.tick()
        except Exception:  # the database may be briefly away; the next tick catches up
            log.exception("cannot look for due schedule runs")

    def tick(self, now: datetime | None = None) -> list[int]:
        """Claim every due slot; returns the operations this process created."""
        now = now or utcnow()
        created: list[int] = []
        for schedule in self.schedules.active():
            try:
                op_id = self._due(schedule, now)
            except Exception:
                log.exception("schedule #%s: cannot run its due slot", schedule.id)
                continue
            if op_id is not None:
                created.append(op_id)
        if created:
            self.wake()
        return created

    def _due(self, schedule: ReplicaSchedule, now: datetime) -> int | None:
        activated = schedule.activated_at or now
        upto = now if schedule.until is None else min(now, schedule.until - timedelta(microseconds=1))
        slot = latest_fire(schedule.cron, schedule.timezone, upto, max(activated, now - self.grace))
        op_id = None
        if slot is not None and self._seen.get(schedule.id) != slot:
            approval = _thread_of(self.store, schedule)
            op = self.schedules.claim_run(schedule, slot, self.claimer,
                                          thread_ts=approval.card_ts if approval else None, ttl=self.ttl)
            # Claimed here or by another replica: either way this slot is settled for this process.
            # (A database error raised above; the next tick tries the slot again.)
            self._seen[schedule.id] = slot
            if op is not None:
                log.info("schedule #%s: claimed the run of %s as operation #%s", schedule.id, slot, op.id)
                op_id = op.id
        if schedule.until is not None and now >= schedule.until:
            ended = self.schedules.end(schedule.id, "scheduler", ScheduleStatus.ENDED, "its until= time passed")
            approval = _thread_of(self.store, schedule)
            if ended is not None and approval is not None:
                cards.post_in_thread(self.client, approval, f":checkered_flag: Schedule #{schedule.id} ended: its "
                                     f"`until=` time ({when(schedule.until, schedule.timezone)}) has passed.")
        return op_id


# ---- executors (bot/runs/worker.py maps operation kinds to these) ----------------------------------


def run_activate(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    """`schedule` after approval: the schedule becomes active; the Deployment's state is the first reference."""
    repo = ScheduleStore(progress.store)
    schedule = repo.get(int(op.params["schedule_id"]))
    cluster = config.cluster(op.cluster)
    if schedule is None or cluster is None:
        return Outcome(False, "the schedule or its cluster is no longer known; nothing was activated")
    current = read_workload(clusters.get(cluster), op.target, op.namespace)
    if current is None:
        return Outcome(False, f"`deployment/{op.target}` no longer exists in `{op.namespace}` on `{op.cluster}`; "
                              "the schedule was not activated")
    row = repo.activate(schedule.id, op.decided_by or "policy", saving=dict(schedule.saving),
                        replicas=current.replicas, generation=current.generation)
    if row is None:
        return Outcome(False, f"schedule #{schedule.id} is no longer pending; nothing was activated")
    upcoming = next_runs(row.cron, row.timezone, utcnow(), 1, row.until)
    nxt = f"next run {when(upcoming[0], row.timezone)}" if upcoming else "no run left before its `until=`"
    return Outcome(True, f"schedule #{row.id} is active, {nxt}. Each run is reported in this thread; "
                         f"`/infer unschedule {row.id}` removes it.")


def run_unschedule(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    """`unschedule` of someone else's schedule, after approval."""
    repo = ScheduleStore(progress.store)
    schedule_id = int(op.params["schedule_id"])
    row = repo.end(schedule_id, op.decided_by or "policy", ScheduleStatus.REMOVED,
                   f"removed at the request of {op.requested_by} (operation #{op.id})")
    if row is None:
        return Outcome(True, f"schedule #{schedule_id} was no longer active; nothing to remove")
    approval = _thread_of(progress.store, row)
    if approval is not None:
        cards.post_in_thread(progress.client, approval, f":wastebasket: Schedule #{row.id} removed "
                             f"(operation #{op.id}); it will not run again.")
    return Outcome(True, f"schedule #{row.id} removed; it will not run again")


def run_scheduled_scale(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    """One fire of a schedule: scale like `/infer scale`, unless the Deployment is gone or was changed by hand."""
    repo = ScheduleStore(progress.store)
    schedule = repo.get(int(op.params["schedule_id"]))
    run_id = int(op.params["run_id"])
    fired = str(op.params.get("when", ""))
    target = int(op.params["replicas"])
    obj = f"deployment/{op.target}"

    def skip(reason: str, replicas: int | None = None, generation: int | None = None) -> Outcome:
        repo.finish_run(run_id, ScheduleRunStatus.SKIPPED, replicas=replicas, generation=generation, detail=reason)
        progress.store.audit(f"schedule#{op.params['schedule_id']}", f"{op.kind}.skipped", cluster=op.cluster,
                             channel_id=op.channel_id, operation_id=op.id, detail=reason)
        progress(f":fast_forward: Skipped the run of {fired}: {reason}")
        return Outcome(True, f"skipped: {reason}", quiet=True)

    if schedule is None or schedule.status != ScheduleStatus.ACTIVE:
        return skip(f"schedule #{op.params['schedule_id']} was removed before this run started. Nothing was changed.")
    cluster = config.cluster(op.cluster)
    if cluster is None:
        return Outcome(False, f"cluster `{op.cluster}` is no longer configured")
    current = read_workload(clusters.get(cluster), op.target, op.namespace)
    if current is None:
        return skip(f"`{obj}` no longer exists in `{op.namespace}` on `{op.cluster}`. Nothing was changed; "
                    f"`/infer unschedule {schedule.id}` removes this schedule.")
    ref = repo.reference(workload_key(schedule), before_run=run_id)
    if ref is not None and (ref.generation != current.generation or ref.replicas != current.replicas):
        since = "this schedule was approved" if ref.slot == "baseline" and ref.schedule_id == schedule.id else (
            "a schedule last looked at it")
        return skip(f"`{obj}` was changed by hand since {since} ({ref.finished_at:%Y-%m-%d %H:%M} UTC): it has "
                    f"{current.replicas} replicas (then {ref.replicas}), generation {current.generation} "
                    f"(then {ref.generation}). Nothing was changed; the next run starts from what it is now.",
                    current.replicas, current.generation)
    if current.replicas == target:
        repo.finish_run(run_id, ScheduleRunStatus.RAN, replicas=current.replicas, generation=current.generation,
                        detail="already at the count")
        return Outcome(True, f"`{obj}` already has {target} replicas; nothing to change")
    progress(f":alarm_clock: Run of {fired} (schedule #{schedule.id}): scaling `{obj}` "
             f"{current.replicas} → {target}.")
    outcome = run_scale(op, config, clusters, progress)
    after = read_workload(clusters.get(cluster), op.target, op.namespace)
    repo.finish_run(run_id, ScheduleRunStatus.RAN if outcome.ok else ScheduleRunStatus.FAILED,
                    replicas=after.replicas if after else None, generation=after.generation if after else None,
                    detail=outcome.message)
    return outcome

