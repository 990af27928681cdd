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


def new_destroy(store: Store, approvals: int = 2):
    return store.create_operation(kind="destroy", cluster="prod", namespace="default", target="prod",
                                  params={}, plan={"change": "destroy 4"}, requested_by="UREQ", channel_id="C1",
                                  approvals_needed=approvals, ttl=timedelta(hours=1), lock_key="terraform:prod")


def test_a_destroy_needs_an_admin_by_the_policys_rule_and_a_scale_does_not(store):
    assert new_destroy(store).admin_needed
    assert not new_op(store).admin_needed


def test_approver_first_then_admin_approves(store):
    op = new_destroy(store)
    first = store.approve(op.id, "UAPP", admin=False)
    assert (first.outcome, first.approvals) == (ApproveOutcome.RECORDED, 1)
    assert store.admin_approvers(op.id) == []
    assert store.approve(op.id, "UADMIN", admin=True).outcome is ApproveOutcome.APPROVED
    assert store.get(op.id).status == "approved"
    assert (store.approvers(op.id), store.admin_approvers(op.id)) == (["UAPP", "UADMIN"], ["UADMIN"])


def test_admin_first_then_approver_approves(store):
    op = new_destroy(store)
    assert store.approve(op.id, "UADMIN", admin=True).outcome is ApproveOutcome.RECORDED
    assert store.approve(op.id, "UAPP", admin=False).outcome is ApproveOutcome.APPROVED
    assert store.get(op.id).status == "approved"


def test_two_non_admins_leave_the_last_slot_to_an_admin(store):
    op = new_destroy(store)
    assert store.approve(op.id, "UAPP", admin=False).outcome is ApproveOutcome.RECORDED
    second = store.approve(op.id, "UAPP2", admin=False)
    assert (second.outcome, second.approvals) == (ApproveOutcome.NEEDS_ADMIN, 1)
    assert store.get(op.id).status == "pending_approval"
    assert store.approvers(op.id) == ["UAPP"]  # the refused approval was not recorded
    refused = [e for e in store.audit_tail(10) if e.operation_id == op.id and e.outcome == "refused"]
    assert [(e.actor, e.action) for e in refused] == [("UAPP2", "approve")]
    assert "needs an admin's approval" in refused[0].detail
    assert store.approve(op.id, "UADMIN", admin=True).outcome is ApproveOutcome.APPROVED


def test_non_admins_fill_at_most_n_minus_one_slots(store):
    op = new_destroy(store, approvals=3)
    assert store.approve(op.id, "UAPP", admin=False).outcome is ApproveOutcome.RECORDED
    assert store.approve(op.id, "UAPP2", admin=False).outcome is ApproveOutcome.RECORDED
    assert store.approve(op.id, "UAPP3", admin=False).outcome is ApproveOutcome.NEEDS_ADMIN
    assert store.approve(op.id, "UADMIN", admin=True).outcome is ApproveOutcome.APPROVED


def test_two_admins_satisfy_the_rule(store):
    op = new_destroy(store)
    assert store.approve(op.id, "UADMIN", admin=True).outcome is ApproveOutcome.RECORDED
    assert store.approve(op.id, "UADMIN2", admin=True).outcome is ApproveOutcome.APPROVED


def test_an_admin_clicking_twice_counts_once(store):
    op = new_destroy(store)
    assert store.approve(op.id, "UADMIN", admin=True).outcome is ApproveOutcome.RECORDED
    assert store.approve(op.id, "UADMIN", admin=True).outcome is ApproveOutcome.ALREADY
    assert store.get(op.id).status == "pending_approval"
    assert store.approve(op.id, "UAPP", admin=False).outcome is ApproveOutcome.APPROVED


def test_an_operation_that_needs_an_admin_is_never_approved_by_policy_alone(store):
    op = store.create_operation(kind="destroy", cluster="prod", namespace="default", target="prod", params={},
                                plan={}, requested_by="UREQ", channel_id="C1", approvals_needed=0,
                                ttl=timedelta(hours=1))
    assert store.approve_by_policy(op.id) is None
    assert store.approve(op.id, "UAPP", admin=False).outcome is ApproveOutcome.NEEDS_ADMIN
    assert store.approve(op.id, "UADMIN", admin=True).outcome is ApproveOutcome.APPROVED


def test_concurrent_non_admin_clicks_never_approve_without_an_admin(store):
    """Two replicas, many approvers at once: the slot kept for the admin is never given away."""
    op = new_destroy(store, approvals=3)
    results: list[ApproveOutcome] = []

    def click(user: str, admin: bool) -> None:
        results.append(store.approve(op.id, user, admin=admin).outcome)

    threads = [threading.Thread(target=click, args=(f"UAPP{i % 6}", False)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get(op.id).status == "pending_approval"
    assert len(store.approvers(op.id)) == 2 and store.admin_approvers(op.id) == []
    assert results.count(ApproveOutcome.RECORDED) == 2
    threads = [threading.Thread(target=click, args=(user, admin))
               for user, admin in [("UADMIN", True), ("UAPP9", False)] * 6]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(ApproveOutcome.APPROVED) == 1
    assert store.get(op.id).status == "approved"
    assert store.admin_approvers(op.id) == ["UADMIN"] and "UAPP9" not in store.approvers(op.id)


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
    assert claimed is None and queued.id == second.id
    assert queued.result == f"queued behind #{first.id} (scale of `q`); it starts when that finishes"
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
