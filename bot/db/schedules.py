"""Replica schedules in the database: the schedule rows, the (schedule, slot) claim, and each run's record.

Every write that must happen once is a compare-and-set on `status` or a unique key, so several
bot replicas sharing the database agree without talking to each other: a slot claimed by one
replica is not run by another, an approval activates a schedule once, a removal removes it once.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot.db.store import Store, changed_rows
from bot.db.tables import (
    AuditEntry,
    Operation,
    OpStatus,
    ReplicaSchedule,
    ScheduleRun,
    ScheduleRunStatus,
    ScheduleStatus,
    utcnow,
)
from ops import lock_keys

RUN_KIND = "scheduled_scale"


def workload_key(schedule: ReplicaSchedule) -> str:
    return lock_keys.workload(schedule.cluster, schedule.namespace, schedule.name)


def actor(schedule: ReplicaSchedule) -> str:
    """Who the audit log names for what a schedule does on its own."""
    return f"schedule#{schedule.id}"


@dataclass(frozen=True)
class Listed:
    schedule: ReplicaSchedule
    approval_status: str | None  # the status of its approval operation


class ScheduleStore:
    def __init__(self, store: Store) -> None:
        self.store = store

    # ---- schedules -------------------------------------------------------------------------------

    def create(self, *, cluster: str, namespace: str, name: str, replicas: int, cron: str, timezone: str,
               until: datetime | None, channel: str, user: str, saving: dict[str, Any]) -> ReplicaSchedule:
        """A new schedule awaiting its approval card; nothing fires before it is active."""
        with self.store.session() as s:
            row = ReplicaSchedule(cluster=cluster, namespace=namespace, name=name, replicas=replicas, cron=cron,
                                  timezone=timezone, until=until, status=ScheduleStatus.PENDING, channel_id=channel,
                                  created_by=user, created_at=utcnow(), saving=saving)
            s.add(row)
            s.flush()
            return row

    def attach(self, schedule_id: int, operation_id: int) -> None:
        with self.store.session() as s:
            s.execute(update(ReplicaSchedule).where(ReplicaSchedule.id == schedule_id)
                      .values(operation_id=operation_id))

    def get(self, schedule_id: int) -> ReplicaSchedule | None:
        with self.store.reading() as s:
            return s.get(ReplicaSchedule, schedule_id)

    def active(self) -> list[ReplicaSchedule]:
        with self.store.reading() as s:
            q = (select(ReplicaSchedule).where(ReplicaSchedule.status == ScheduleStatus.ACTIVE)
                 .order_by(ReplicaSchedule.id))
            return list(s.scalars(q).all())

    def of_workload(self, cluster: str, namespace: str, name: str) -> list[ReplicaSchedule]:
        """The active schedules of one Deployment, oldest first."""
        with self.store.reading() as s:
            q = (select(ReplicaSchedule)
                 .where(ReplicaSchedule.status == ScheduleStatus.ACTIVE, ReplicaSchedule.cluster == cluster,
                        ReplicaSchedule.namespace == namespace, ReplicaSchedule.name == name)
                 .order_by(ReplicaSchedule.id))
            return list(s.scalars(q).all())

    def listing(self, clusters: Sequence[str] | None = None) -> list[Listed]:
        """Active schedules, and pending ones whose card still waits for approval."""
        with self.store.reading() as s:
            q = (select(ReplicaSchedule, Operation.status)
                 .join(Operation, Operation.id == ReplicaSchedule.operation_id, isouter=True)
                 .where(ReplicaSchedule.status.in_([ScheduleStatus.ACTIVE, ScheduleStatus.PENDING]))
                 .order_by(ReplicaSchedule.id))
            if clusters is not None:
                q = q.where(ReplicaSchedule.cluster.in_(list(clusters)))
            rows = s.execute(q).all()
        return [Listed(row, status) for row, status in rows
                if row.status == ScheduleStatus.ACTIVE or status == OpStatus.PENDING]

    def activate(self, schedule_id: int, who: str, *, saving: dict[str, Any], replicas: int | None,
                 generation: int | None) -> ReplicaSchedule | None:
        """pending → active once; records the workload as it is now, which the first run compares with."""
        now = utcnow()
        with self.store.session() as s:
            res = s.execute(update(ReplicaSchedule)
                            .where(ReplicaSchedule.id == schedule_id, ReplicaSchedule.status == ScheduleStatus.PENDING)
                            .values(status=ScheduleStatus.ACTIVE, activated_at=now, saving=saving)
                            .execution_options(synchronize_session=False))
            if changed_rows(res) != 1:
                return None
            row = s.get(ReplicaSchedule, schedule_id)
            assert row is not None
            s.refresh(row)
            s.add(ScheduleRun(schedule_id=row.id, workload=workload_key(row), slot="baseline",
                              status=ScheduleRunStatus.BASELINE, claimed_by=who, claimed_at=now, finished_at=now,
                              replicas=replicas, generation=generation, detail="the Deployment when approved"))
            s.add(AuditEntry(actor=who[:100], action="schedule.activated", outcome="ok",
                             operation_id=row.operation_id, cluster=row.cluster, channel_id=row.channel_id,
                             detail=f"#{row.id} {row.name}: replicas={row.replicas} on {row.cron} ({row.timezone})"))
            return row

    def end(self, schedule_id: int, who: str, status: ScheduleStatus, detail: str) -> ReplicaSchedule | None:
        """active → removed | ended, once; None when it was not active (someone else got there first)."""
        with self.store.session() as s:
            res = s.execute(update(ReplicaSchedule)
                            .where(ReplicaSchedule.id == schedule_id, ReplicaSchedule.status == ScheduleStatus.ACTIVE)
                            .values(status=status, ended_at=utcnow(), ended_by=who[:100])
                            .execution_options(synchronize_session=False))
            if changed_rows(res) != 1:
                return None
            row = s.get(ReplicaSchedule, schedule_id)
            assert row is not None
            s.refresh(row)
            s.add(AuditEntry(actor=who[:100], action=f"schedule.{status}", outcome="ok",
                             operation_id=row.operation_id, cluster=row.cluster, channel_id=row.channel_id,
                             detail=f"#{row.id} {row.name}: {detail}"))
            return row

    def remove(self, schedule_id: int, who: str, detail: str) -> ReplicaSchedule | None:
        return self.end(schedule_id, who, ScheduleStatus.REMOVED, detail)

    # ---- runs ------------------------------------------------------------------------------------

    def claim_run(self, schedule: ReplicaSchedule, slot: datetime, claimer: str, *, thread_ts: str | None,
                  ttl: timedelta) -> Operation | None:
        """Claim (schedule, slot) and create its operation in one transaction; None when already claimed.

        The operation is approved from the start: the schedule's approval covers every run. It
        reports in the schedule's thread (it has no card of its own) and takes the workload's lock.
        """
        now = utcnow()
        key = slot.strftime("%Y-%m-%dT%H:%MZ")
        when = f"{slot.astimezone(ZoneInfo(schedule.timezone)):%a %Y-%m-%d %H:%M} {schedule.timezone}"
        try:
            with self.store.session() as s:
                run = ScheduleRun(schedule_id=schedule.id, workload=workload_key(schedule), slot=key,
                                  status=ScheduleRunStatus.CLAIMED, claimed_by=claimer[:100], claimed_at=now)
                s.add(run)
                s.flush()
                op = Operation(
                    kind=RUN_KIND, cluster=schedule.cluster, namespace=schedule.namespace, target=schedule.name,
                    params={"replicas": schedule.replicas, "schedule_id": schedule.id, "run_id": run.id,
                            "slot": key, "when": when},
                    plan={"object": f"deployment/{schedule.name}", "change": f"replicas → {schedule.replicas}",
                          "details": f"Schedule #{schedule.id}, run of {when}", "in_thread": True},
                    status=OpStatus.APPROVED, requested_by=schedule.created_by, channel_id=schedule.channel_id,
                    card_ts=thread_ts, approvals_needed=0, created_at=now, updated_at=now, expires_at=now + ttl,
                    decided_by=actor(schedule), decided_at=now, lock_key=workload_key(schedule))
                s.add(op)
                s.flush()
                run.operation_id = op.id
                for action, detail in ((f"{RUN_KIND}.requested", f"{schedule.name}: replicas → {schedule.replicas} "
                                                                  f"(schedule #{schedule.id}, slot {key})"),
                                       ("approved", f"approved once with schedule #{schedule.id}")):
                    s.add(AuditEntry(actor=actor(schedule), action=action, outcome="ok", operation_id=op.id,
                                     cluster=schedule.cluster, channel_id=schedule.channel_id, detail=detail))
                return op
        except IntegrityError:
            return None

    def run_of(self, operation_id: int) -> ScheduleRun | None:
        with self.store.reading() as s:
            return s.scalars(select(ScheduleRun).where(ScheduleRun.operation_id == operation_id)).first()

    def reference(self, workload: str, before_run: int | None = None) -> ScheduleRun | None:
        """The last state a schedule saw of this Deployment: its last run, skip or approval (any schedule)."""
        with self.store.reading() as s:
            q = (select(ScheduleRun).where(ScheduleRun.workload == workload, ScheduleRun.generation.is_not(None))
                 .order_by(ScheduleRun.finished_at.desc(), ScheduleRun.id.desc()).limit(1))
            if before_run is not None:
                q = q.where(ScheduleRun.id != before_run)
            return s.scalars(q).first()

    def finish_run(self, run_id: int, status: ScheduleRunStatus, *, replicas: int | None = None,
                   generation: int | None = None, detail: str = "") -> None:
        with self.store.session() as s:
            s.execute(update(ScheduleRun).where(ScheduleRun.id == run_id)
                      .values(status=status, finished_at=utcnow(), replicas=replicas, generation=generation,
                              detail=detail[:4000]))

    def runs(self, schedule_id: int) -> list[ScheduleRun]:
        with self.store.reading() as s:
            q = select(ScheduleRun).where(ScheduleRun.schedule_id == schedule_id).order_by(ScheduleRun.id)
            return list(s.scalars(q).all())

