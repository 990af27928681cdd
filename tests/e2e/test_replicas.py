"""Several `infer-bot serve` replicas on one database (PostgreSQL, and SQLite for the single-host
default): every click, approval and operation acts exactly once, whichever replica Slack reaches."""

from __future__ import annotations

import shutil
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest

from bot.sandbox.environment import node
from tests.support.binaries import needs_terraform
from tests.support.botproc import Database
from tests.support.cluster import model
from tests.support.slack import ADMIN, APPROVER, APPROVER2, OPERATOR, card_for, op_id_of, text_of
from tests.support.terraform import MODULE, apply_card
from tests.support.waiting import wait_until


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.sqlite3'}"
    return request.getfixturevalue("postgres").new_database()


def test_a_hundred_clicks_over_three_replicas_scale_once(make_bot, slack, kube, database_url):
    replicas = [make_bot(database_url=database_url) for _ in range(3)]
    db = Database(database_url)
    replicas[0].slash("scale qwen 3", user=OPERATOR)
    card = card_for(slack)
    op_id = op_id_of(card)

    def click(i: int) -> int:
        bot = replicas[i % 3]  # a load balancer spreading Slack's requests
        return bot.click("op_approve", op_id, user=(APPROVER, APPROVER2)[i % 2],
                         message_ts=card.response["ts"]).status_code

    with ThreadPoolExecutor(max_workers=32) as pool:
        codes = list(pool.map(click, range(100)))
    assert codes == [200] * 100
    slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"] and "Succeeded" in text_of(c),
                   timeout=60)
    # Every click has had its answer (one approved it, the others were told it was decided already) and
    # the operation is over with its lock released: nothing is left that could run it a second time.
    wait_until(lambda: len([c for c in slack.calls_to("chat.postEphemeral") if f"#{op_id} is already" in text_of(c)])
               == 99, timeout=60, what="the other 99 clicks answered")
    assert db.operation(int(op_id))["status"] == "succeeded"
    assert db.rows("SELECT count(*) AS n FROM locks")[0]["n"] == 0
    patches = [r for r in kube.requests if r[0] == "PATCH" and r[1].endswith("/deployments/qwen/scale")]
    assert len(patches) == 1
    actions = Counter(r["action"] for r in db.audit(int(op_id)))
    assert actions["approved"] == 1 and actions["started"] == 1 and actions["succeeded"] == 1
    assert len([c for c in slack.calls_to("chat.postMessage") if "Succeeded" in text_of(c)]) == 1


def test_every_approved_operation_is_claimed_by_exactly_one_replica(make_bot, slack, kube, database_url):
    names = [f"model-{i}" for i in range(8)]
    for name in names:
        kube.put(model(name, gpus=0))
    replicas = [make_bot(database_url=database_url, cluster={"approvals": 0}) for _ in range(3)]
    db = Database(database_url)
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: replicas[i % 3].slash(f"scale {names[i]} 2", user=OPERATOR), range(len(names))))
    wait_until(lambda: len(db.rows("SELECT id FROM operations WHERE status = 'succeeded'")) == len(names),
               timeout=60, what="all operations succeeded")
    started = db.rows("SELECT operation_id, actor FROM audit_log WHERE action = 'started'")
    assert sorted(Counter(r["operation_id"] for r in started).values()) == [1] * len(names)
    for name in names:
        dep = kube.get("apps/v1", "Deployment", "default", name)
        assert dep["spec"]["replicas"] == 2


def test_a_queued_operation_starts_exactly_once_when_the_lock_frees(make_bot, slack, kube, database_url):
    replicas = [make_bot(database_url=database_url, cluster={"approvals": 0}) for _ in range(3)]
    db = Database(database_url)
    replicas[0].slash("scale qwen 4", user=OPERATOR)  # 3 GPUs: holds the Deployment's lock until a node comes
    wait_until(lambda: db.rows("SELECT status FROM operations WHERE id = 1") == [{"status": "running"}],
               what="first running")
    replicas[1].slash("scale qwen 2", user=OPERATOR)
    wait_until(lambda: db.rows("SELECT status FROM operations WHERE id = 2") == [{"status": "queued"}],
               what="second queued")
    kube.put(node({"name": "gpu-node-3", "instance_type": "g5.xlarge", "gpus": 1}))
    wait_until(lambda: [r["status"] for r in db.rows("SELECT status FROM operations ORDER BY id")]
               == ["succeeded", "succeeded"], timeout=60, what="both finished")
    second = Counter(r["action"] for r in db.audit(2))
    assert second["started"] == 1 and second["succeeded"] == 1
    assert db.rows("SELECT count(*) AS n FROM locks")[0]["n"] == 0
    assert kube.get("apps/v1", "Deployment", "default", "qwen")["spec"]["replicas"] == 2


def test_a_running_operation_always_holds_its_lock(make_bot, slack, kube, database_url):
    replicas = [make_bot(database_url=database_url, cluster={"approvals": 0}) for _ in range(3)]
    db = Database(database_url)
    with ThreadPoolExecutor(max_workers=6) as pool:
        list(pool.map(lambda i: replicas[i % 3].slash(f"scale qwen {i % 2 + 2}", user=OPERATOR), range(6)))
    seen_running = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        running = db.rows("SELECT id, lock_key FROM operations WHERE status = 'running'")
        assert len(running) <= 1, f"two changes of one Deployment at once: {running}"
        held = {r["key"]: r["operation_id"] for r in db.rows("SELECT key, operation_id FROM locks")}
        for op in running:
            still = db.rows("SELECT status FROM operations WHERE id = :id", id=op["id"])[0]["status"]
            assert still != "running" or held.get(op["lock_key"]) == op["id"]
        seen_running += len(running)
        statuses = [r["status"] for r in db.rows("SELECT status FROM operations")]
        # A request that finds the Deployment already at its count creates no operation.
        if time.monotonic() > deadline - 55 and statuses and all(s in ("succeeded", "failed") for s in statuses):
            break
        time.sleep(0.05)
    statuses = [r["status"] for r in db.rows("SELECT status FROM operations")]
    assert seen_running and len(statuses) >= 2 and set(statuses) == {"succeeded"}


def test_a_scheduled_digest_is_posted_once_by_three_replicas(make_bot, slack, kube, postgres, tmp_path):
    # Both databases in one test, so the suite waits for one cron slot, not two.
    urls = {"C0DIGESTPG": postgres.new_database(), "C0DIGESTSQ": f"sqlite:///{tmp_path / 'shared.sqlite3'}"}
    # The first minute boundary at least 20 s ahead, so all replicas are up when it fires.
    slot = (datetime.now(UTC) + timedelta(seconds=80)).replace(second=0, microsecond=0)
    bots = {}
    for channel, url in urls.items():
        digests = [{"channel": channel, "cron": f"{slot.minute} {slot.hour} * * *", "timezone": "UTC"}]
        bots[channel] = [make_bot(database_url=url, digests=digests) for _ in range(3)]
    for channel, url in urls.items():
        db = Database(url)
        wait_until(lambda db=db: db.rows("SELECT status FROM digest_posts WHERE status <> 'claimed'"),
                   timeout=max(0, (slot - datetime.now(UTC)).total_seconds()) + 40, what=f"the digest in {channel}")
        # The other two replicas tried the same slot and stood down: each says so in its log.
        lost = f"digest for {channel} at {slot.strftime('%Y-%m-%dT%H:%MZ')}: another process has it"
        wait_until(lambda channel=channel, lost=lost: sum(lost in b.log() for b in bots[channel]) == 2,
                   what=f"the other replicas standing down in {channel}")
    for channel, url in urls.items():
        posts = [c for c in slack.calls_to("chat.postMessage")
                 if c.params.get("channel") == channel and not c.params.get("thread_ts")]
        assert len(posts) == 1 and "digest" in text_of(posts[0]).lower(), channel
        rows = Database(url).rows("SELECT period, status FROM digest_posts")
        assert rows == [{"period": slot.strftime("%Y-%m-%dT%H:%MZ"), "status": "posted"}], channel


@needs_terraform
def test_a_queued_terraform_run_starts_exactly_once_across_replicas(make_bot, slack, kube, database_url, tmp_path):
    module = tmp_path / "module"
    shutil.copytree(MODULE, module)
    terraform = {"root": str(module), "workdir": str(tmp_path / "ws"), "name_var": "cluster_name",
                 "progress_seconds": 0.3}
    replicas = [make_bot(database_url=database_url, terraform=terraform) for _ in range(3)]
    db = Database(database_url)
    replicas[0].slash("provision alpha var.delay_seconds=3", user=ADMIN)
    first = apply_card(slack)
    replicas[1].click("op_approve", op_id_of(first), user=APPROVER, message_ts=first.response["ts"])
    wait_until(lambda: db.operation(int(op_id_of(first)))["status"] == "running", what="first apply running")
    replicas[2].slash("provision alpha var.nodes=1", user=ADMIN)  # waits for the workspace's lock
    second = apply_card(slack, n=2, timeout=60)
    replicas[0].click("op_approve", op_id_of(second), user=APPROVER, message_ts=second.response["ts"])
    slack.wait_for(lambda c: c.params.get("thread_ts") == second.response["ts"] and "Succeeded" in text_of(c),
                   timeout=60)
    # The workspace's lock released and every operation in its final state: nothing can start again.
    wait_until(lambda: db.rows("SELECT count(*) AS n FROM locks")[0]["n"] == 0, what="the workspace's lock released")
    kinds = [(r["kind"], r["status"]) for r in db.rows("SELECT kind, status FROM operations ORDER BY id")]
    assert kinds == [("plan", "succeeded"), ("provision", "succeeded")] * 2
    started = db.rows("SELECT operation_id FROM audit_log WHERE action = 'started'")
    assert sorted(Counter(r["operation_id"] for r in started).values()) == [1, 1, 1, 1]
    assert db.rows("SELECT count(*) AS n FROM locks")[0]["n"] == 0
