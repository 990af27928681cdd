"""Operation state transitions on the database: each happens once, whoever tries twice."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from bot.storage import ApproveOutcome, Store, make_engine, migrate


@pytest.fixture
def store(tmp_path) -> Store:
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate(engine)
    return Store(engine)


def new_op(store: Store, approvals: int = 1, ttl: float = 3600, lock: str | None = "deployment:dev/default/q"):
    return store.create_operation(kind="scale", cluster="dev", namespace="default", target="q",
                                  params={"replicas": 2}, plan={"change": "replicas 1 → 2"}, requested_by="UREQ",
                                  channel_id="C1", approvals_needed=approvals, ttl=timedelta(seconds=ttl),
                                  lock_key=lock)


def test_migrations_are_idempotent(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite3'}")
    migrate(engine)
    migrate(engine)


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
    claimed, queued = store.claim("w1", lease)
    assert claimed.id == first.id and queued is None
    claimed, queued = store.claim("w2", lease)
    assert claimed is None and queued.id == second.id and queued.result == f"queued behind #{first.id}"
    assert store.claim("w2", lease) == (None, None)
    assert store.finish(first, "w1", "succeeded", "done")
    assert store.get(second.id).status == "approved"  # handed the lock
    claimed, _ = store.claim("w2", lease)
    assert claimed.id == second.id


def test_finish_by_a_worker_that_lost_its_lease_changes_nothing(store):
    op = new_op(store, approvals=0, lock=None)
    claimed, _ = store.claim("w1", timedelta(seconds=-1))  # lease already over: process "died"
    assert [o.id for o in store.interrupt_abandoned("w2")] == [op.id]
    assert not store.finish(claimed, "w1", "succeeded", "late")
    assert store.get(op.id).status == "interrupted"


def test_a_live_lease_is_never_interrupted(store):
    op = new_op(store, approvals=0, lock=None)
    store.claim("w1", timedelta(seconds=30))
    assert store.interrupt_abandoned("w2") == []
    store.renew([op.id], "w1", timedelta(seconds=30))
    assert store.get(op.id).status == "running"


def test_a_slack_delivery_is_acted_on_once(store):
    assert store.first_delivery("trigger-1")
    assert not store.first_delivery("trigger-1")
    assert store.first_delivery("trigger-2")
