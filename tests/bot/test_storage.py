"""Operation state transitions on the database: each happens once, whoever tries twice."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import text

from bot.db.store import ApproveOutcome, Store, make_engine, migrate


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> Store:
    url = (f"sqlite:///{tmp_path / 'db.sqlite3'}" if request.param == "sqlite"
           else request.getfixturevalue("postgres").new_database())
    engine = make_engine(url)
    migrate(engine)
    yield Store(engine)
    engine.dispose()


KINDS = ("scale",)
# As long as a Kubernetes pod name plus a pid: worker ids are audit actors.
WORKER = "infer-bot-5c9d8f7b6-abcde.default.svc:123456:a1b2c3"


def new_op(store: Store, approvals: int = 1, ttl: float = 3600, lock: str | None = "deployment:dev/default/q"):
    op = store.create_operation(kind="scale", cluster="dev", namespace="default", target="q",
                                params={"replicas": 2}, plan={"change": "replicas 1 → 2"}, requested_by="UREQ",
                                channel_id="C1", approvals_needed=approvals, ttl=timedelta(seconds=ttl),
                                lock_key=lock)
    assert op.status == "pending_approval"  # nothing runs before its card is posted
    if approvals == 0:
        assert store.approve_by_policy(op.id).status == "approved"
    return op


def test_migrating_again_keeps_the_data_and_the_version(tmp_path):
    """Every replica migrates on start: a second run must neither fail nor touch what is stored."""
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate(engine)
    op = new_op(Store(engine))
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all() == [version]
    assert Store(engine).get(op.id).status == "pending_approval"


def test_approval_outcomes(store):
    op = new_op(store, approvals=2)
    assert store.approve(op.id, "UREQ").outcome is ApproveOutcome.SELF
    assert store.approve(op.id, "UA").outcome is ApproveOutcome.RECORDED
    assert store.approve(op.id, "UA").outcome is ApproveOutcome.ALREADY
    assert store.approve(op.id, "UB").outcome is ApproveOutcome.APPROVED
    assert store.approve(op.id, "UC").outcome is ApproveOutcome.NOT_PENDING
    assert store.approve(999, "UC").outcome is ApproveOutcome.NOT_FOUND
    assert store.approvers(op.id) == ["UA", "UB"]


def test_concurrent_approvals_from_many_threads_approve_once(store):
    op = new_op(store, approvals=2)
    results: list[ApproveOutcome] = []

    def click(user: str) -> None:
        results.append(store.approve(op.id, user).outcome)

    threads = [threading.Thread(target=click, args=(f"U{i % 4}",)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(ApproveOutcome.APPROVED) == 1
    assert store.get(op.id).status == "approved"


def test_expired_operation_cannot_be_approved(store):
    op = new_op(store, ttl=-1)
    assert store.approve(op.id, "UA").outcome is ApproveOutcome.EXPIRED
    assert store.get(op.id).status == "expired"


def test_claim_runs_once_and_queues_behind_a_held_lock(store):
    first, second = new_op(store, approvals=0), new_op(store, approvals=0)
    lease = timedelta(seconds=30)
    claimed, queued = store.claim(WORKER, lease, KINDS)
    assert claimed.id == first.id and queued is None
    claimed, queued = store.claim("w2", lease, KINDS)
    assert claimed is None and queued.id == second.id and queued.result == f"queued behind #{first.id}"
    assert store.claim("w2", lease, KINDS) == (None, None)
    assert store.finish(first, WORKER, "succeeded", "done")
    assert store.get(second.id).status == "approved"  # the lock is free again
    claimed, _ = store.claim("w2", lease, KINDS)
    assert claimed.id == second.id


def test_a_queued_operation_whose_lock_is_free_is_not_left_waiting(store):
    holder, waiting = new_op(store, approvals=0), new_op(store, approvals=0)
    store.claim("w1", timedelta(seconds=30), KINDS)
    store.claim("w2", timedelta(seconds=30), KINDS)
    assert store.get(waiting.id).status == "queued"
    # The holder finishes in a transaction that did not yet see the queued row (another replica).
    with store.session() as s:
        s.execute(text("DELETE FROM locks"))
        s.execute(text("UPDATE operations SET status = 'succeeded' WHERE id = :id"), {"id": holder.id})
    claimed, _ = store.claim("w3", timedelta(seconds=30), KINDS)
    assert claimed.id == waiting.id


def test_claim_only_takes_kinds_this_worker_can_run(store):
    new_op(store, approvals=0)
    assert store.claim("w1", timedelta(seconds=30), ("provision",)) == (None, None)
    claimed, _ = store.claim("w1", timedelta(seconds=30), KINDS)
    assert claimed is not None


def test_finish_by_a_worker_that_lost_its_lease_changes_nothing(store):
    op = new_op(store, approvals=0, lock=None)
    claimed, _ = store.claim("w1", timedelta(seconds=-1), KINDS)  # lease already over: process "died"
    assert [o.id for o in store.interrupt_abandoned("w2")] == [op.id]
    assert store.renew([op.id], "w1", timedelta(seconds=30)) == set()  # w1 learns it lost it
    assert not store.finish(claimed, "w1", "succeeded", "late")
    assert store.get(op.id).status == "interrupted"


def test_a_live_lease_is_never_interrupted(store):
    op = new_op(store, approvals=0, lock=None)
    store.claim("w1", timedelta(seconds=30), KINDS)
    assert store.interrupt_abandoned("w2") == []
    assert store.renew([op.id], "w1", timedelta(seconds=30)) == {op.id}
    assert store.get(op.id).status == "running"


def test_own_late_heartbeat_is_not_taken_for_death(store):
    op = new_op(store, approvals=0, lock=None)
    store.claim("w1", timedelta(seconds=-1), KINDS)
    assert store.interrupt_abandoned("w1", own={op.id}) == []


def test_a_slack_delivery_is_acted_on_once(store):
    assert store.first_delivery("trigger-1")
    assert not store.first_delivery("trigger-1")
    assert store.first_delivery("trigger-2")
