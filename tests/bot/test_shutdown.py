"""A replica told to stop (a rollout, a scale-in) leaves the load balancer and lets running
operations finish, instead of leaving them for another replica to report as interrupted."""

from __future__ import annotations

import psycopg
import requests

from tests.support.botproc import Database
from tests.support.slack import APPROVER, OPERATOR, card_for, op_id_of, text_of
from tests.support.waiting import wait_until


def test_sigterm_drains_running_operations_then_exits(make_bot, slack, kube):
    kube.controller.ready_delay = 2.5  # the new replica takes a while, so the scale is still running
    bot = make_bot(operations={"poll_seconds": 0.2, "lease_seconds": 5, "shutdown_grace_seconds": 20})
    db = Database(bot.database_url)
    bot.slash("scale qwen 2", user=OPERATOR)
    card = card_for(slack)
    bot.click("op_approve", op_id_of(card), user=APPROVER)
    op_id = int(op_id_of(card))
    wait_until(lambda: db.operation(op_id)["status"] == "running", what="operation running")

    assert bot.proc is not None
    bot.proc.terminate()
    # Draining: not ready (the load balancer stops sending Slack traffic), still alive.
    wait_until(lambda: requests.get(f"{bot.url}/healthz", timeout=2).status_code == 503, what="not ready")
    assert requests.get(f"{bot.url}/livez", timeout=2).status_code == 200

    assert bot.proc.wait(30) == 0
    assert db.operation(op_id)["status"] == "succeeded"
    replies = [text_of(c) for c in slack.calls if c.params.get("thread_ts") == card.response["ts"]]
    assert any("Succeeded" in r for r in replies) and not any("Interrupted" in r for r in replies)
    assert db.rows("SELECT count(*) AS n FROM locks")[0]["n"] == 0


def test_liveness_does_not_depend_on_the_database(make_bot, postgres):
    url = postgres.new_database()
    bot = make_bot(database_url=url)
    assert requests.get(f"{bot.url}/healthz", timeout=2).json()["database"] == "ok"
    # The database goes away under the running bot.
    name = url.rsplit("/", 1)[1]
    with psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=postgres dbname=postgres",
                         autocommit=True) as conn:
        conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    ready = requests.get(f"{bot.url}/healthz", timeout=10)
    assert ready.status_code == 503 and ready.json()["database"] == "unreachable"
    # Out of the load balancer, but not restarted: a database outage is no reason to kill every replica.
    assert requests.get(f"{bot.url}/livez", timeout=2).json() == {"ok": True}
