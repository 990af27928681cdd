"""A bot process killed mid-operation: the operation is reported `interrupted`, never silently re-run,
and a second live replica never steals an operation that its owner is still running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import yaml

from tests.support.botproc import Database
from tests.support.slack import APPROVER, OPERATOR, card_for, op_id_of, text_of
from tests.support.waiting import wait_until


def test_killed_bot_leaves_an_interrupted_operation_reported_in_its_thread(make_bot, slack, kube):
    # 5 replicas cannot fit on 3 GPUs, so the operation stays `running` until we kill the bot.
    first = make_bot(cluster={"rollout_timeout_seconds": 600})
    db = Database(first.database_url)
    first.slash("scale qwen 5", user=OPERATOR)
    card = card_for(slack)
    op_id = int(op_id_of(card))
    first.click("op_approve", str(op_id), user=APPROVER)
    wait_until(lambda: db.operation(op_id)["status"] == "running", what="operation running")
    first_lease_end = _aware(db.operation(op_id)["lease_until"])
    lease = timedelta(seconds=yaml.safe_load(first.config_path.read_text())["operations"]["lease_seconds"])

    # A second replica on the same database, started while the first one is alive and renewing its
    # lease, must leave the operation alone: "running when I started" is not "abandoned".
    second = make_bot(cluster={"rollout_timeout_seconds": 600})
    # What proves it: the owner's renewal, in the database, made a second or more after its first
    # lease would have run out. The second replica sweeps for abandoned operations every poll
    # (0.2 s; the sweep that reports the operation interrupted below), so by then several of its
    # sweeps have met an operation whose first lease was over.
    def renewed_past_first_term() -> bool:
        op = db.operation(op_id)
        return op["status"] != "running" or _aware(op["lease_until"]) >= first_lease_end + timedelta(seconds=1) + lease

    wait_until(renewed_past_first_term, what="the owner's lease renewed past its first term")
    assert db.operation(op_id)["status"] == "running"

    first.kill()
    wait_until(lambda: db.operation(op_id)["status"] == "interrupted", timeout=20, what="interrupted")
    reported = slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"]
                              and "Interrupted" in text_of(c))
    assert "not re-run" in text_of(reported)
    actions = [r["action"] for r in db.audit(op_id)]
    assert actions[-1] == "interrupted" and actions.count("started") == 1
    assert db.rows("SELECT count(*) AS n FROM locks")[0]["n"] == 0  # the lock was released
    second.stop()

    # The next change of the same Deployment is not blocked by the dead run.
    third = make_bot()
    third.slash("scale qwen 2", user=OPERATOR)
    nxt = card_for(slack, n=2)
    third.click("op_approve", op_id_of(nxt), user=APPROVER)
    slack.wait_for(lambda c: c.params.get("thread_ts") == nxt.response["ts"] and "Succeeded" in text_of(c),
                   timeout=30)


def _aware(value: Any) -> datetime:
    """A timestamp column read with plain SQL: SQLite gives back naive UTC text, PostgreSQL a datetime."""
    at = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return at if at.tzinfo else at.replace(tzinfo=UTC)
