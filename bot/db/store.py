"""The database: engine set-up, migrations, and every state transition of an operation.

Each transition is one conditional UPDATE (compare-and-set on `status`) inside a transaction that
also writes its audit row, so double clicks, Slack retries and several replicas cannot act twice.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, delete, event, exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from bot.db import locks
from bot.db.tables import Approval, AuditEntry, Delivery, Lock, Operation, OpStatus, utcnow
from bot.policy import needs_admin

log = logging.getLogger(__name__)



def changed_rows(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE matched: the compare-and-set's verdict (1 = this caller won)."""
    # Session.execute is typed as returning Result; for DML it is a CursorResult, which counts rows.
    return cast("CursorResult[Any]", result).rowcount or 0


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
            # Reads (health checks, listings) must not queue behind writers for the write lock.
            read_only = conn.get_execution_options().get("infer_bot_read", False)
            conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

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
        # One head (0004_merge joined the early feature branches); new migrations revise the latest.
        command.upgrade(cfg, "head")


class ApproveOutcome(enum.Enum):
    APPROVED = "approved"  # this click completed the approvals: the operation is now approved
    RECORDED = "recorded"  # counted, more approvals are still needed
    ALREADY = "already"  # this user already approved this operation
    SELF = "self"  # the requester cannot approve their own operation
    NEEDS_ADMIN = "needs_admin"  # every slot but the admin's is filled: only an admin's approval counts now
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
        self._readers = sessionmaker(engine.execution_options(infer_bot_read=True), expire_on_commit=False)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """A transaction that only reads (on SQLite it does not take the write lock)."""
        with self._readers.begin() as session:
            yield session

    # ---- audit -------------------------------------------------------------------------------

    @staticmethod
    def _audit(session: Session, actor: str, action: str, outcome: str = "ok", *,
               operation: Operation | None = None, operation_id: int | None = None, cluster: str | None = None,
               channel_id: str | None = None, detail: str = "") -> None:
        session.add(AuditEntry(
            actor=actor[:100], action=action, outcome=outcome,
            operation_id=operation.id if operation else operation_id,
            cluster=cluster or (operation.cluster if operation else None),
            channel_id=channel_id or (operation.channel_id if operation else None),
            detail=detail[:4000],
        ))

    def audit(self, actor: str, action: str, outcome: str = "ok", *, cluster: str | None = None,
              channel_id: str | None = None, operation_id: int | None = None, detail: str = "") -> None:
        with self.session() as s:
            self._audit(s, actor, action, outcome, operation_id=operation_id, cluster=cluster,
                        channel_id=channel_id, detail=detail)

    def audit_tail(self, n: int) -> list[AuditEntry]:
        with self.reading() as s:
            rows = s.scalars(select(AuditEntry).order_by(AuditEntry.id.desc()).limit(n)).all()
        return list(rows)

    def audit_for(self, operation_id: int) -> list[AuditEntry]:
        with self.reading() as s:
            q = select(AuditEntry).where(AuditEntry.operation_id == operation_id).order_by(AuditEntry.id)
            return list(s.scalars(q).all())

    def open_operations(self, lock_key: str, kinds: Sequence[str], statuses: Sequence[str]) -> list[Operation]:
        """Operations of these kinds and states that take `lock_key`, oldest first."""
        with self.reading() as s:
            q = (select(Operation)
                 .where(Operation.lock_key == lock_key, Operation.kind.in_(kinds), Operation.status.in_(statuses))
                 .order_by(Operation.id))
            return list(s.scalars(q).all())

    # ---- deliveries (Slack retry de-duplication) ----------------------------------------------

    def first_delivery(self, key: str) -> bool:
        """True the first time a Slack delivery key is seen, False for every retry of it."""
        try:
            with self.session() as s:
                s.add(Delivery(key=key[:255]))
        except IntegrityError:
            # The one trace a dropped repeat leaves: how often Slack retries shows here, not twice in the cluster.
            log.info("delivery %s was acted on already (a Slack retry or a replay); not acting again", key[:255])
            return False
        return True

    def prune_deliveries(self, older_than: timedelta) -> int:
        """Slack retries within minutes; keys older than that only take space."""
        with self.session() as s:
            return changed_rows(s.execute(delete(Delivery).where(Delivery.at < utcnow() - older_than)))

    # ---- creating and reading operations -------------------------------------------------------

    def create_operation(self, *, kind: str, cluster: str, namespace: str, target: str,
                         params: dict[str, Any], plan: dict[str, Any], requested_by: str,
                         channel_id: str, approvals_needed: int, ttl: timedelta,
                         lock_key: str | None = None, admin_needed: bool | None = None) -> Operation:
        """A new operation, always `pending_approval`: nothing can run it before its card exists.

        With no approval needed, the caller posts the card and then calls `approve_by_policy`.
        `admin_needed` defaults to the policy's rule for the kind (a destroy needs an admin).
        """
        now = utcnow()
        admin = needs_admin(kind) if admin_needed is None else admin_needed
        with self.session() as s:
            op = Operation(kind=kind, cluster=cluster, namespace=namespace, target=target, params=params,
                           plan=plan, status=OpStatus.PENDING, requested_by=requested_by, channel_id=channel_id,
                           approvals_needed=approvals_needed, admin_needed=admin, created_at=now, updated_at=now,
                           expires_at=now + ttl, lock_key=lock_key)
            s.add(op)
            s.flush()
            self._audit(s, requested_by, f"{kind}.requested", operation=op,
                        detail=f"{target}: {plan.get('change', '')}")
        return op

    def approve_by_policy(self, op_id: int) -> Operation | None:
        """pending → approved for an operation that needs no approval; None if it is not such a one."""
        with self.session() as s:
            op = s.get(Operation, op_id)
            if op is None or op.approvals_needed > 0 or op.admin_needed:
                return None
            ok = self._transition(s, op, OpStatus.PENDING, OpStatus.APPROVED, actor="policy", action="approved",
                                  detail="no approval needed here", decided_at=utcnow())
            return op if ok else None

    def get(self, op_id: int) -> Operation | None:
        with self.reading() as s:
            return s.get(Operation, op_id)

    def set_card(self, op_id: int, ts: str) -> None:
        with self.session() as s:
            s.execute(update(Operation).where(Operation.id == op_id).values(card_ts=ts))

    def approvers(self, op_id: int) -> list[str]:
        with self.reading() as s:
            q = select(Approval.user_id).where(Approval.operation_id == op_id).order_by(Approval.id)
            return list(s.scalars(q).all())

    def admin_approvers(self, op_id: int) -> list[str]:
        """The approvers who were admins when they approved."""
        with self.reading() as s:
            q = (select(Approval.user_id).where(Approval.operation_id == op_id, Approval.admin.is_(True))
                 .order_by(Approval.id))
            return list(s.scalars(q).all())

    def list_operations(self, statuses: Sequence[str] | None = None, limit: int = 20) -> list[Operation]:
        with self.reading() as s:
            q = select(Operation).order_by(Operation.id.desc()).limit(limit)
            if statuses:
                q = q.where(Operation.status.in_(statuses))
            return list(s.scalars(q).all())

    def count_by_status(self) -> dict[str, int]:
        with self.reading() as s:
            rows = s.execute(select(Operation.status, func.count()).group_by(Operation.status)).all()
        return {status: count for status, count in rows}

    # ---- decisions -----------------------------------------------------------------------------

    def approve(self, op_id: int, user: str, *, admin: bool = False) -> ApproveResult:
        """Record `user`'s approval (`admin`: they hold the admin role now); approve once all are in.

        An operation that needs an admin takes the approvals in any order, but approvers who are not
        admins fill at most N−1 slots: once those are taken and no admin has approved, another
        non-admin is turned away (NEEDS_ADMIN, audited) and nothing is recorded.
        """
        now = utcnow()
        with self.session() as s:
            # Row lock (PostgreSQL) so that concurrent approvers of an N-approval operation count
            # each other's approvals; SQLite's BEGIN IMMEDIATE serialises the same way.
            op = s.scalars(select(Operation).where(Operation.id == op_id).with_for_update()).first()
            if op is None:
                return ApproveResult(ApproveOutcome.NOT_FOUND, None)
            if op.status != OpStatus.PENDING:
                return ApproveResult(ApproveOutcome.NOT_PENDING, op)
            if op.expires_at <= now:
                self._transition(s, op, OpStatus.PENDING, OpStatus.EXPIRED, actor=user, action="expired")
                return ApproveResult(ApproveOutcome.EXPIRED, op)
            if user == op.requested_by:
                self._audit(s, user, "approve", "refused", operation=op, detail="requester cannot approve")
                return ApproveResult(ApproveOutcome.SELF, op)
            given = s.execute(select(Approval.user_id, Approval.admin).where(Approval.operation_id == op_id)).all()
            if any(who == user for who, _ in given):
                return ApproveResult(ApproveOutcome.ALREADY, op, len(given))
            admins = sum(1 for _, was_admin in given if was_admin)
            if op.admin_needed and not admin and not admins and len(given) >= op.approvals_needed - 1:
                self._audit(s, user, "approve", "refused", operation=op,
                            detail=f"needs an admin's approval: {len(given)} of {op.approvals_needed} are in, "
                                   "none from an admin")
                return ApproveResult(ApproveOutcome.NEEDS_ADMIN, op, len(given))
            s.add(Approval(operation_id=op_id, user_id=user, at=now, admin=admin))
            s.flush()
            count, admins = len(given) + 1, admins + admin
            self._audit(s, user, "approval", operation=op,
                        detail=f"{count} of {op.approvals_needed}" + (" (admin)" if admin else ""))
            if count < op.approvals_needed or (op.admin_needed and not admins):
                return ApproveResult(ApproveOutcome.RECORDED, op, count)
            if not self._transition(s, op, OpStatus.PENDING, OpStatus.APPROVED, actor=user, action="approved",
                                    decided_by=user, decided_at=now):
                return ApproveResult(ApproveOutcome.NOT_PENDING, op, count)
            return ApproveResult(ApproveOutcome.APPROVED, op, count)

    def reject(self, op_id: int, user: str, reason: str) -> Operation | None:
        """Returns the rejected operation, or None when it was no longer pending (nothing changed)."""
        now = utcnow()
        with self.session() as s:
            op = s.scalars(select(Operation).where(Operation.id == op_id).with_for_update()).first()
            if op is None or op.status != OpStatus.PENDING:
                return None
            ok = self._transition(s, op, OpStatus.PENDING, OpStatus.REJECTED, actor=user, action="rejected",
                                  decided_by=user, decided_at=now, reason=reason, detail=reason)
            return op if ok else None

    def expire_due(self) -> list[Operation]:
        now = utcnow()
        expired: list[Operation] = []
        with self.session() as s:
            due = s.scalars(select(Operation).where(Operation.status == OpStatus.PENDING, Operation.expires_at <= now))
            for op in due.all():
                if self._transition(s, op, OpStatus.PENDING, OpStatus.EXPIRED, actor="scheduler", action="expired"):
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
        if changed_rows(res) != 1:
            return False
        # Mirror the new values on the loaded row without marking it dirty: the conditional
        # UPDATE above is the only write this transition makes.
        set_committed_value(op, "status", new)
        for key, value in values.items():
            set_committed_value(op, key, value)
        self._audit(s, actor, action, outcome, operation=op, detail=detail)
        return True

    # ---- the worker's side ---------------------------------------------------------------------

    def claim(self, worker_id: str, lease: timedelta,
              kinds: Collection[str] | None = None) -> tuple[Operation | None, Operation | None]:
        """Claim the oldest approved operation of a kind this worker can run.

        Returns (claimed, queued): at most one is set. An operation whose lock is held by another
        operation is moved to `queued` (and returned as such) instead of running.
        """
        with self.session() as s:
            self._dequeue_orphans(s, worker_id)
            query = select(Operation).where(Operation.status == OpStatus.APPROVED).order_by(Operation.id).limit(5)
            if kinds is not None:
                query = query.where(Operation.kind.in_(list(kinds)))
            candidates = s.scalars(query).all()
            for op in candidates:
                # A savepoint per candidate: if we do not end up starting it, the lock row we may
                # have inserted goes away with the savepoint (never a delete of someone's lock).
                attempt = s.begin_nested()
                holder = locks.try_lock(s, op.lock_key, op.id) if op.lock_key else op.id
                if holder is None:
                    attempt.rollback()
                    continue
                if holder != op.id:
                    ahead = s.get(Operation, holder)
                    # Said on the card and in its thread: what it waits for, so nobody approves it again.
                    waits = (f"queued behind #{holder} ({ahead.kind} of `{ahead.target}`); it starts when that "
                             "finishes" if ahead is not None else f"queued behind #{holder}")
                    if self._transition(s, op, OpStatus.APPROVED, OpStatus.QUEUED, actor=worker_id, action="queued",
                                        result=waits, detail=f"behind #{holder}"):
                        attempt.commit()
                        return None, op
                    attempt.rollback()
                    continue
                now = utcnow()
                if self._transition(s, op, OpStatus.APPROVED, OpStatus.RUNNING, actor=worker_id, action="started",
                                    worker_id=worker_id, started_at=now, lease_until=now + lease):
                    attempt.commit()
                    return op, None
                attempt.rollback()  # another replica claimed it between our read and our update
        return None, None

    def _dequeue_orphans(self, s: Session, actor: str) -> None:
        """Queued operations whose lock is free go back to approved.

        The holder releases and dequeues in its own transaction; one that was queued concurrently
        (committed just after that) would otherwise wait forever.
        """
        free = ~exists().where(Lock.key == Operation.lock_key)
        for op in s.scalars(select(Operation).where(Operation.status == OpStatus.QUEUED, free)).all():
            self._transition(s, op, OpStatus.QUEUED, OpStatus.APPROVED, actor=actor, action="dequeued",
                             detail="its lock is free", result=None)

    def renew(self, op_ids: Sequence[int], worker_id: str, lease: timedelta) -> set[int]:
        """Extend this worker's leases; returns the ids still ours (a missing one was taken away)."""
        if not op_ids:
            return set()
        with self.session() as s:
            renewed = s.scalars(update(Operation)
                                .where(Operation.id.in_(op_ids), Operation.worker_id == worker_id,
                                       Operation.status == OpStatus.RUNNING)
                                .values(lease_until=utcnow() + lease)
                                .returning(Operation.id)
                                .execution_options(synchronize_session=False)).all()
        return set(renewed)

    def finish(self, op: Operation, worker_id: str, status: str, result: str) -> bool:
        with self.session() as s:
            ok = self._transition(s, op, OpStatus.RUNNING, status, actor=worker_id, action=status,
                                  outcome="ok" if status == OpStatus.SUCCEEDED else "failed", detail=result,
                                  extra_where=Operation.worker_id == worker_id,
                                  result=result, finished_at=utcnow(), lease_until=None)
            if ok:
                self._release(s, op)
        return ok

    def interrupt_abandoned(self, actor: str, own: Collection[int] = ()) -> list[Operation]:
        """Mark `running` operations whose lease ran out (their process died) as interrupted.

        `own` are the operations this process is running: a late heartbeat of our own is not death.
        Leases compare clocks of different hosts, so replicas need synchronised clocks (NTP, as on EKS).
        """
        now = utcnow()
        found: list[Operation] = []
        with self.session() as s:
            stale = s.scalars(select(Operation).where(Operation.status == OpStatus.RUNNING, Operation.lease_until < now,
                                                      Operation.id.not_in(list(own)))).all()
            for op in stale:
                previous = op.worker_id
                if self._transition(s, op, OpStatus.RUNNING, OpStatus.INTERRUPTED, actor=actor, action="interrupted",
                                    outcome="failed", extra_where=Operation.lease_until < now,
                                    detail=f"worker {previous} stopped renewing its lease",
                                    result=f"the bot process running it ({previous}) stopped",
                                    finished_at=now):
                    self._release(s, op)
                    found.append(op)
        return found

    def _release(self, s: Session, op: Operation) -> None:
        """Free op's lock and make the oldest operation queued behind it claimable again."""
        if not op.lock_key:
            return
        locks.unlock(s, op.lock_key, op.id)
        nxt = s.scalars(select(Operation).where(Operation.status == OpStatus.QUEUED, Operation.lock_key == op.lock_key)
                        .order_by(Operation.id).limit(1)).first()
        if nxt is not None:
            self._transition(s, nxt, OpStatus.QUEUED, OpStatus.APPROVED, actor="scheduler", action="dequeued",
                             detail=f"#{op.id} finished", result=None)
