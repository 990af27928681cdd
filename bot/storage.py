"""The database: engine set-up, migrations, and every state transition of an operation.

Each transition is one conditional UPDATE (compare-and-set on `status`) inside a transaction that
also writes its audit row, so double clicks, Slack retries and several replicas cannot act twice.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from bot.models import Approval, AuditEntry, Delivery, Lock, Operation, utcnow

log = logging.getLogger(__name__)

PENDING = "pending_approval"
APPROVED = "approved"
QUEUED = "queued"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"
INTERRUPTED = "interrupted"
REJECTED = "rejected"
EXPIRED = "expired"
FINAL = frozenset({SUCCEEDED, FAILED, INTERRUPTED, REJECTED, EXPIRED})


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        # pysqlite's own transaction handling starts transactions lazily and deferred, so two
        # writers can both read and then deadlock on upgrade. BEGIN IMMEDIATE takes the write lock
        # up front; together with the busy timeout, concurrent writers simply queue.
        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None
            dbapi_conn.execute("PRAGMA journal_mode=WAL")
            dbapi_conn.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent; skips an fsync per commit
            dbapi_conn.execute("PRAGMA foreign_keys=ON")

        @event.listens_for(engine, "begin")
        def _begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine
    return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest Alembic revision (idempotent; safe for concurrent replicas)."""
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("migrations")))
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            # Several replicas starting together must not run the same migration twice.
            conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7277310)")
        cfg.attributes["connection"] = conn
        # "heads": feature branches of the schema (one per capability) may each add a head.
        command.upgrade(cfg, "heads")


class ApproveOutcome(enum.Enum):
    APPROVED = "approved"  # this click completed the approvals: the operation is now approved
    RECORDED = "recorded"  # counted, more approvals are still needed
    ALREADY = "already"  # this user already approved this operation
    SELF = "self"  # the requester cannot approve their own operation
    NOT_PENDING = "not_pending"  # decided, expired or finished: nothing changed
    EXPIRED = "expired"  # this click found it past its deadline and marked it expired
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class ApproveResult:
    outcome: ApproveOutcome
    operation: Operation | None
    approvals: int = 0


class Store:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # ---- audit -------------------------------------------------------------------------------

    @staticmethod
    def _audit(session: Session, actor: str, action: str, outcome: str = "ok", *,
               operation: Operation | None = None, cluster: str | None = None,
               channel_id: str | None = None, detail: str = "") -> None:
        session.add(AuditEntry(
            actor=actor, action=action, outcome=outcome,
            operation_id=operation.id if operation else None,
            cluster=cluster or (operation.cluster if operation else None),
            channel_id=channel_id or (operation.channel_id if operation else None),
            detail=detail[:4000],
        ))

    def audit(self, actor: str, action: str, outcome: str = "ok", *, cluster: str | None = None,
              channel_id: str | None = None, operation_id: int | None = None, detail: str = "") -> None:
        with self.session() as s:
            s.add(AuditEntry(actor=actor, action=action, outcome=outcome, cluster=cluster,
                             channel_id=channel_id, operation_id=operation_id, detail=detail[:4000]))

    def audit_tail(self, n: int) -> list[AuditEntry]:
        with self.session() as s:
            rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(n)).all()
        return list(rows)

    def audit_for(self, operation_id: int) -> list[AuditEntry]:
        with self.session() as s:
            q = select(AuditEntry).where(AuditEntry.operation_id == operation_id).order_by(AuditEntry.id)
            return list(s.scalars(q).all())

    # ---- deliveries (Slack retry de-duplication) ----------------------------------------------

    def first_delivery(self, key: str) -> bool:
        """True the first time a Slack delivery key is seen, False for every retry of it."""
        try:
            with self.session() as s:
                s.add(Delivery(key=key[:255]))
        except IntegrityError:
            return False
        return True

    # ---- creating and reading operations -------------------------------------------------------

    def create_operation(self, *, kind: str, cluster: str, namespace: str, target: str,
                         params: dict[str, Any], plan: dict[str, Any], requested_by: str,
                         channel_id: str, approvals_needed: int, ttl: timedelta,
                         lock_key: str | None = None) -> Operation:
        now = utcnow()
        status = PENDING if approvals_needed > 0 else APPROVED
        with self.session() as s:
            op = Operation(kind=kind, cluster=cluster, namespace=namespace, target=target, params=params,
                           plan=plan, status=status, requested_by=requested_by, channel_id=channel_id,
                           approvals_needed=approvals_needed, created_at=now, updated_at=now,
                           expires_at=now + ttl, lock_key=lock_key)
            s.add(op)
            s.flush()
            self._audit(s, requested_by, f"{kind}.requested", operation=op,
                        detail=f"{target}: {plan.get('summary', '')}")
            if status == APPROVED:
                self._audit(s, "policy", "approved", operation=op, detail="no approval needed here")
        return op

    def get(self, op_id: int) -> Operation | None:
        with self.session() as s:
            return s.get(Operation, op_id)

    def set_card(self, op_id: int, ts: str) -> None:
        with self.session() as s:
            s.execute(update(Operation).where(Operation.id == op_id).values(card_ts=ts))

    def approvers(self, op_id: int) -> list[str]:
        with self.session() as s:
            q = select(Approval.user_id).where(Approval.operation_id == op_id).order_by(Approval.id)
            return list(s.scalars(q).all())

    def list_operations(self, statuses: Sequence[str] | None = None, limit: int = 20) -> list[Operation]:
        with self.session() as s:
            q = select(Operation).order_by(Operation.id.desc()).limit(limit)
            if statuses:
                q = q.where(Operation.status.in_(statuses))
            return list(s.scalars(q).all())

    def count_by_status(self) -> dict[str, int]:
        with self.session() as s:
            rows = s.execute(select(Operation.status, func.count()).group_by(Operation.status)).all()
        return {status: count for status, count in rows}

    # ---- decisions -----------------------------------------------------------------------------

    def approve(self, op_id: int, user: str) -> ApproveResult:
        now = utcnow()
        with self.session() as s:
            # Row lock (PostgreSQL) so that concurrent approvers of an N-approval operation count
            # each other's approvals; SQLite's BEGIN IMMEDIATE serialises the same way.
            op = s.scalars(select(Operation).where(Operation.id == op_id).with_for_update()).first()
            if op is None:
                return ApproveResult(ApproveOutcome.NOT_FOUND, None)
            if op.status != PENDING:
                return ApproveResult(ApproveOutcome.NOT_PENDING, op)
            if op.expires_at <= now:
                self._transition(s, op, PENDING, EXPIRED, actor=user, action="expired")
                return ApproveResult(ApproveOutcome.EXPIRED, op)
            if user == op.requested_by:
                self._audit(s, user, "approve", "refused", operation=op, detail="requester cannot approve")
                return ApproveResult(ApproveOutcome.SELF, op)
            if s.scalar(select(Approval.id).where(Approval.operation_id == op_id, Approval.user_id == user)):
                return ApproveResult(ApproveOutcome.ALREADY, op, self._count(s, op_id))
            s.add(Approval(operation_id=op_id, user_id=user, at=now))
            s.flush()
            count = self._count(s, op_id)
            self._audit(s, user, "approval", operation=op, detail=f"{count} of {op.approvals_needed}")
            if count < op.approvals_needed:
                return ApproveResult(ApproveOutcome.RECORDED, op, count)
            if not self._transition(s, op, PENDING, APPROVED, actor=user, action="approved",
                                    decided_by=user, decided_at=now):
                return ApproveResult(ApproveOutcome.NOT_PENDING, op, count)
            return ApproveResult(ApproveOutcome.APPROVED, op, count)

    @staticmethod
    def _count(s: Session, op_id: int) -> int:
        return s.scalar(select(func.count()).select_from(Approval).where(Approval.operation_id == op_id)) or 0

    def reject(self, op_id: int, user: str, reason: str) -> Operation | None:
        """Returns the rejected operation, or None when it was no longer pending (nothing changed)."""
        now = utcnow()
        with self.session() as s:
            op = s.scalars(select(Operation).where(Operation.id == op_id).with_for_update()).first()
            if op is None or op.status != PENDING:
                return None
            ok = self._transition(s, op, PENDING, REJECTED, actor=user, action="rejected",
                                  decided_by=user, decided_at=now, reason=reason, detail=reason)
            return op if ok else None

    def expire_due(self) -> list[Operation]:
        now = utcnow()
        expired: list[Operation] = []
        with self.session() as s:
            due = s.scalars(select(Operation).where(Operation.status == PENDING, Operation.expires_at <= now))
            for op in due.all():
                if self._transition(s, op, PENDING, EXPIRED, actor="scheduler", action="expired"):
                    expired.append(op)
        return expired

    def _transition(self, s: Session, op: Operation, old: str, new: str, *, actor: str, action: str,
                    outcome: str = "ok", detail: str = "", extra_where: Any = None, **values: Any) -> bool:
        """Compare-and-set op.status old → new; writes the audit row only when this call won."""
        q = update(Operation).where(Operation.id == op.id, Operation.status == old)
        if extra_where is not None:
            q = q.where(extra_where)
        values["updated_at"] = utcnow()
        res = s.execute(q.values(status=new, **values).execution_options(synchronize_session=False))
        if res.rowcount != 1:
            return False
        op.status = new
        for key, value in values.items():
            setattr(op, key, value)
        self._audit(s, actor, action, outcome, operation=op, detail=detail)
        return True

    # ---- the worker's side ---------------------------------------------------------------------

    def claim(self, worker_id: str, lease: timedelta) -> tuple[Operation | None, Operation | None]:
        """Claim the oldest approved operation.

        Returns (claimed, queued): at most one is set. An operation whose lock is held by another
        operation is moved to `queued` (and returned as such) instead of running.
        """
        with self.session() as s:
            candidates = s.scalars(select(Operation).where(Operation.status == APPROVED)
                                   .order_by(Operation.id).limit(5)).all()
            for op in candidates:
                if op.lock_key:
                    holder = self._try_lock(s, op.lock_key, op.id)
                    if holder is not None and holder != op.id:
                        if self._transition(s, op, APPROVED, QUEUED, actor=worker_id, action="queued",
                                            result=f"queued behind #{holder}", detail=f"behind #{holder}"):
                            return None, op
                        continue
                now = utcnow()
                if self._transition(s, op, APPROVED, RUNNING, actor=worker_id, action="started",
                                    worker_id=worker_id, started_at=now, lease_until=now + lease):
                    return op, None
                if op.lock_key:  # somebody else claimed it between our read and write
                    s.execute(delete(Lock).where(Lock.key == op.lock_key, Lock.operation_id == op.id))
        return None, None

    @staticmethod
    def _try_lock(s: Session, key: str, op_id: int) -> int | None:
        """Take `key` for op_id; returns the holder's operation id (op_id itself when taken)."""
        try:
            with s.begin_nested():
                s.add(Lock(key=key, operation_id=op_id))
        except IntegrityError:
            return s.scalar(select(Lock.operation_id).where(Lock.key == key))
        return op_id

    def renew(self, op_ids: Sequence[int], worker_id: str, lease: timedelta) -> None:
        if not op_ids:
            return
        with self.session() as s:
            s.execute(update(Operation)
                      .where(Operation.id.in_(op_ids), Operation.worker_id == worker_id,
                             Operation.status == RUNNING)
                      .values(lease_until=utcnow() + lease)
                      .execution_options(synchronize_session=False))

    def finish(self, op: Operation, worker_id: str, status: str, result: str) -> bool:
        with self.session() as s:
            ok = self._transition(s, op, RUNNING, status, actor=worker_id, action=status,
                                  outcome="ok" if status == SUCCEEDED else "failed", detail=result,
                                  extra_where=Operation.worker_id == worker_id,
                                  result=result, finished_at=utcnow(), lease_until=None)
            if ok:
                self._release(s, op)
        return ok

    def interrupt_abandoned(self, actor: str) -> list[Operation]:
        """Mark `running` operations whose lease ran out (their process died) as interrupted."""
        now = utcnow()
        found: list[Operation] = []
        with self.session() as s:
            stale = s.scalars(select(Operation).where(Operation.status == RUNNING,
                                                      Operation.lease_until < now)).all()
            for op in stale:
                previous = op.worker_id
                if self._transition(s, op, RUNNING, INTERRUPTED, actor=actor, action="interrupted",
                                    outcome="failed", extra_where=Operation.lease_until < now,
                                    detail=f"worker {previous} stopped renewing its lease",
                                    result=f"the bot process running it ({previous}) stopped",
                                    finished_at=now):
                    self._release(s, op)
                    found.append(op)
        return found

    def _release(self, s: Session, op: Operation) -> None:
        """Free op's lock and hand it to the oldest operation queued behind it."""
        if not op.lock_key:
            return
        s.execute(delete(Lock).where(Lock.key == op.lock_key, Lock.operation_id == op.id))
        nxt = s.scalars(select(Operation).where(Operation.status == QUEUED, Operation.lock_key == op.lock_key)
                        .order_by(Operation.id).limit(1)).first()
        if nxt is not None:
            self._transition(s, nxt, QUEUED, APPROVED, actor="scheduler", action="dequeued",
                             detail=f"#{op.id} finished", result=None)
