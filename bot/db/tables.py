"""Every database table, with the states its status column takes.

Alembic migrations (bot/db/migrations) create and evolve them; `tests/bot/test_schema.py` checks that
the two agree. Status values are StrEnums, one per table, so "failed" of a digest post cannot be
mistaken for "failed" of an operation."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC and always hands back an aware datetime (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        utc = value.astimezone(UTC)
        return utc.replace(tzinfo=None) if dialect.name == "sqlite" else utc

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, datetime: UTCDateTime}



class OpStatus(StrEnum):
    """An operation's states (docs/architecture.md draws the machine)."""

    PENDING = "pending_approval"
    APPROVED = "approved"
    QUEUED = "queued"  # approved, waiting for the lock another operation holds
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    REJECTED = "rejected"
    EXPIRED = "expired"


FINAL = frozenset({OpStatus.SUCCEEDED, OpStatus.FAILED, OpStatus.INTERRUPTED, OpStatus.REJECTED, OpStatus.EXPIRED})


class PostStatus(StrEnum):
    """A digest post: claimed (this row's holder is posting it) → posted | failed."""

    CLAIMED = "claimed"
    POSTED = "posted"
    FAILED = "failed"


class SuggestionStatus(StrEnum):
    """open → applying (one click won) → applied | open again (the request was refused)."""

    OPEN = "open"
    APPLYING = "applying"
    APPLIED = "applied"


class ClusterStatus(StrEnum):
    """A cluster the bot provisioned."""

    PROVISIONED = "provisioned"
    DESTROYED = "destroyed"
    FAILED = "failed"  # an apply that failed part-way: some resources may exist


class RevisionStatus(StrEnum):
    """A release revision."""

    APPLIED = "applied"  # applied, rollout not (yet) confirmed
    READY = "ready"
    FAILED = "failed"
    REMOVED = "removed"  # the release was undeployed after this revision


class Operation(Base):
    __tablename__ = "operations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(32))
    cluster: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    target: Mapped[str] = mapped_column(String(253))
    # What the command asked for, and what the card showed (before → after); the worker acts on params.
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(20), index=True)
    requested_by: Mapped[str] = mapped_column(String(32))
    channel_id: Mapped[str] = mapped_column(String(32))
    card_ts: Mapped[str | None] = mapped_column(String(32), default=None)
    approvals_needed: Mapped[int] = mapped_column(Integer, default=1)
    # One of the approvals must be an admin's (policy.needs_admin); the others fill at most N−1 slots.
    admin_needed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    decided_by: Mapped[str | None] = mapped_column(String(32), default=None)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    reason: Mapped[str | None] = mapped_column(Text, default=None)
    lock_key: Mapped[str | None] = mapped_column(String(300), default=None, index=True)
    worker_id: Mapped[str | None] = mapped_column(String(100), default=None)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    result: Mapped[str | None] = mapped_column(Text, default=None)


class Approval(Base):
    __tablename__ = "approvals"
    __table_args__ = (UniqueConstraint("operation_id", "user_id", name="uq_approval_per_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    operation_id: Mapped[int] = mapped_column(ForeignKey("operations.id"), index=True)
    user_id: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # the role when approving


class AuditEntry(Base):
    """Append-only: the code inserts rows and never updates or deletes them."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str] = mapped_column(String(100))  # a user id, or a worker id (host:pid:nonce)
    action: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))  # ok | refused | failed
    operation_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    cluster: Mapped[str | None] = mapped_column(String(63), default=None)
    channel_id: Mapped[str | None] = mapped_column(String(32), default=None)
    detail: Mapped[str] = mapped_column(Text, default="")


class Delivery(Base):
    """One row per Slack request we acted on (trigger_id or event_id): Slack retries find it and stop."""

    __tablename__ = "deliveries"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Lock(Base):
    """A held lock is a row; the primary key makes a second holder impossible across processes."""

    __tablename__ = "locks"

    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    operation_id: Mapped[int] = mapped_column(Integer)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---- digests ----

class DigestSubscription(Base):
    """A channel's digest schedule set with `/infer digest subscribe` (one per channel)."""

    __tablename__ = "digest_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(String(32), unique=True)
    cron: Mapped[str] = mapped_column(String(100))  # standard crontab, 5 fields (day-of-week 0/7 = Sunday)
    timezone: Mapped[str] = mapped_column(String(64))
    clusters: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty = every configured cluster
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DigestPost(Base):
    """One digest for one channel and period. The unique key is what makes several replicas post once."""

    __tablename__ = "digest_posts"
    __table_args__ = (UniqueConstraint("channel_id", "period", name="uq_digest_channel_period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    # The scheduled time it stands for (UTC, to the minute), or `manual:<uuid>` for `digest now`.
    period: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    claimed_by: Mapped[str] = mapped_column(String(100))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ts: Mapped[str | None] = mapped_column(String(32), default=None)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # headline numbers, for the record
    error: Mapped[str | None] = mapped_column(Text, default=None)


class DigestSuggestion(Base):
    """A suggestion shown with an Apply button; the button's value is this row's id."""

    __tablename__ = "digest_suggestions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    post_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    cluster: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    deployment: Mapped[str] = mapped_column(String(253))
    rule: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(Text)
    command: Mapped[str] = mapped_column(Text)  # the slash command text Apply requests (`scale x 1 …`)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=SuggestionStatus.OPEN)
    applied_by: Mapped[str | None] = mapped_column(String(32), default=None)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    operation_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---- provisioned clusters (infra) ----

class InfraCluster(Base):
    """A cluster the bot provisioned, and how to reach it: later commands take `cluster=<name>`."""

    __tablename__ = "infra_clusters"

    name: Mapped[str] = mapped_column(String(63), primary_key=True)
    status: Mapped[str] = mapped_column(String(20))  # provisioned | destroyed | failed
    # How its Kubernetes API is reached: "eks" (describe_cluster + tokens), "kubeconfig", or "none"
    # when the module's outputs do not say.
    reach: Mapped[str] = mapped_column(String(20), default="none")
    eks_name: Mapped[str | None] = mapped_column(String(100), default=None)
    region: Mapped[str | None] = mapped_column(String(32), default=None)
    endpoint: Mapped[str | None] = mapped_column(String(300), default=None)
    kubeconfig: Mapped[str | None] = mapped_column(String(1000), default=None)
    context: Mapped[str | None] = mapped_column(String(253), default=None)
    namespace: Mapped[str] = mapped_column(String(63), default="default")
    note: Mapped[str] = mapped_column(Text, default="")  # why it cannot be reached, when it cannot
    # Outputs of the last apply; sensitive ones are recorded by name only, never by value.
    outputs: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The `var.` values given with commands so far (config defaults stay in the config).
    vars: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    last_operation_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TerraformRun(Base):
    """One terraform plan or apply the bot ran: what it found or did, and how long it took."""

    __tablename__ = "terraform_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster: Mapped[str] = mapped_column(String(63), index=True)
    operation_id: Mapped[int] = mapped_column(Integer, index=True)
    action: Mapped[str] = mapped_column(String(16))  # plan | destroy-plan | drift | apply | destroy
    outcome: Mapped[str] = mapped_column(String(16))  # changes | no_changes | ok | failed
    headline: Mapped[str] = mapped_column(Text, default="")
    seconds: Mapped[float] = mapped_column(Float, default=0.0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---- model releases ----

class ReleaseRevision(Base):
    __tablename__ = "release_revisions"
    __table_args__ = (UniqueConstraint("cluster", "namespace", "name", "revision", name="uq_release_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster: Mapped[str] = mapped_column(String(63), index=True)
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # deploy | rollback | autoscale | undeploy
    preset: Mapped[str] = mapped_column(String(100), default="")
    # The objects exactly as applied (labels included), and the values helm rendered them from.
    manifests: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=RevisionStatus.APPLIED)
    note: Mapped[str] = mapped_column(Text, default="")  # rollback: "from revision 2"; failure reason
    operation_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


# ---- replica schedules ----

class ScheduleStatus(StrEnum):
    """pending (its card awaits approval) → active → removed | ended (its `until` passed)."""

    PENDING = "pending"
    ACTIVE = "active"
    REMOVED = "removed"
    ENDED = "ended"


class ScheduleRunStatus(StrEnum):
    """A schedule's slot: claimed (its operation exists) → ran | skipped | failed.

    `baseline` is not a slot: the workload's state when a schedule was approved, which the first
    run compares with, as later runs compare with the last run's."""

    CLAIMED = "claimed"
    RAN = "ran"
    SKIPPED = "skipped"
    FAILED = "failed"
    BASELINE = "baseline"


class ReplicaSchedule(Base):
    """`/infer schedule <name> replicas= cron=`: approved once, then every fire is an operation of its own."""

    __tablename__ = "replica_schedules"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(253))  # the Deployment
    replicas: Mapped[int] = mapped_column(Integer)
    cron: Mapped[str] = mapped_column(String(100))  # standard crontab, 5 fields
    timezone: Mapped[str] = mapped_column(String(64))
    until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)  # no fire at or after this
    status: Mapped[str] = mapped_column(String(16), index=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    operation_id: Mapped[int | None] = mapped_column(Integer, default=None)  # its approval; the card is its thread
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    activated_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    ended_by: Mapped[str | None] = mapped_column(String(100), default=None)
    saving: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # ops.schedules.Saving, when approved


class ScheduleRun(Base):
    """One fire of a schedule. The unique (schedule, slot) is what makes several replicas run it once."""

    __tablename__ = "schedule_runs"
    __table_args__ = (UniqueConstraint("schedule_id", "slot", name="uq_schedule_slot"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    schedule_id: Mapped[int] = mapped_column(ForeignKey("replica_schedules.id"), index=True)
    # The workload, copied so that "the last run on this Deployment" spans all of its schedules.
    workload: Mapped[str] = mapped_column(String(300), index=True)
    slot: Mapped[str] = mapped_column(String(64))  # the fire time (UTC, to the minute), or `baseline`
    status: Mapped[str] = mapped_column(String(16))
    operation_id: Mapped[int | None] = mapped_column(Integer, default=None)
    claimed_by: Mapped[str] = mapped_column(String(100))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # What the Deployment looked like when this run (or approval) left it: the next run compares.
    replicas: Mapped[int | None] = mapped_column(Integer, default=None)
    generation: Mapped[int | None] = mapped_column(Integer, default=None)
    detail: Mapped[str] = mapped_column(Text, default="")


# ---- the App Home tab ----

class HomeTab(Base):
    """A user who opened the bot's Home tab: only they get it published, and refreshed at most every few seconds.

    Slack sends no event when a tab closes, so "open" means opened within the last hours (bot/db/home.py).
    """

    __tablename__ = "home_tabs"

    user_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    opened_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # A digest of the operations part last published: a refresh publishes only when it differs.
    shown: Mapped[str | None] = mapped_column(String(64), default=None)


class InboxStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"


class InboxItem(Base):
    """A Slack request the acking process verified and answered, waiting for a worker process to do
    the rest (bot/db/inbox.py). Done items are deleted; the delivery key keeps retries single."""

    __tablename__ = "inbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    body: Mapped[str] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(16), default=InboxStatus.QUEUED, index=True)
    queued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(100), default=None)
    claimed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
