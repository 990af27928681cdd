"""Replica schedules over signed HTTP: one approval card with the next runs and the saving, then runs
that need no approval, run once across replicas, queue behind a running change and step aside for
a person's change.

Crontab's smallest step is a minute, so a test that needs a run uses `* * * * *` and waits for the
next minute boundary (the bots look for due slots every few seconds): at most about a minute each.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from kubernetes import client, config

from bot.sandbox.environment import node
from tests.support.botproc import Database
from tests.support.cluster import model, scale_patches
from tests.support.prometheus import main_dataset
from tests.support.slack import ADMIN, APPROVER, APPROVER2, OPERATOR, card_for, op_id_of, text_of
from tests.support.waiting import wait_until

EVERY_MINUTE = 'cron="* * * * *"'
RUN_WAIT = 100  # the next minute boundary, the bots' poll and the run itself


def in_thread(slack, ts: str, needle: str, timeout: float = 30, unlike: str = "\0"):
    return slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("thread_ts") == ts
                          and needle in text_of(c) and unlike not in text_of(c), timeout=timeout)


def thread(slack, ts: str) -> list[str]:
    return [text_of(c) for c in slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]


def reply_to(slack, user: str, needle: str, timeout: float = 15):
    return slack.wait_for(lambda c: c.method == "response_url" and needle in text_of(c), timeout=timeout)


def approve_schedule(bot, slack, n: int = 1, approver: str = APPROVER):
    card = card_for(slack, n=n)
    ts = card.response["ts"]
    bot.click("op_approve", op_id_of(card), user=approver, message_ts=ts)
    in_thread(slack, ts, "is active")
    return card, ts


def early_in_a_minute(needed: float = 25) -> None:
    """Wait for the next minute when fewer than `needed` seconds are left of this one: a test that must
    act before a schedule's first run starts right after a boundary, not just before one."""
    now = datetime.now(UTC)
    left = 60 - now.second - now.microsecond / 1e6
    if left < needed:
        time.sleep(left + 1)


def kube_api(kube, bot) -> client.AppsV1Api:
    """What `kubectl` would use: the real client against the emulator, as a person at a terminal."""
    path = kube.write_kubeconfig(Path(bot.workdir) / "person-kubeconfig")
    return client.AppsV1Api(config.new_client_from_config(config_file=str(path)))


def test_a_schedule_is_approved_once_then_runs_exactly_once_across_three_replicas(make_bot, slack, kube, postgres):
    url = postgres.new_database()
    replicas = [make_bot(database_url=url) for _ in range(3)]
    db = Database(url)
    replicas[0].slash(f"schedule qwen replicas=0 {EVERY_MINUTE} tz=Europe/Paris", user=OPERATOR)
    card = card_for(slack)
    shown = text_of(card)
    # The card: five next runs in the schedule's zone, and the saving priced from the node's instance type.
    assert shown.count("Europe/Paris\n") + shown.endswith("Europe/Paris") >= 4
    runs = [line for line in shown.splitlines() if line.startswith("• ") and "Europe/Paris" in line]
    assert len(runs) == 5
    assert "Expected saving over the next 7 days" in shown and "g5.xlarge" in shown and "$" in shown
    assert "replicas → 0" in shown and kube.get("apps/v1", "Deployment", "default", "qwen")["spec"]["replicas"] == 1
    assert db.rows("SELECT status FROM replica_schedules") == [{"status": "pending"}]

    ts = card.response["ts"]
    replicas[1].click("op_approve", op_id_of(card), user=APPROVER, message_ts=ts)
    in_thread(slack, ts, "schedule #1 is active")
    # The first run: an operation of its own, reported in the schedule's thread, no new approval.
    in_thread(slack, ts, "Run of", timeout=RUN_WAIT)
    done = in_thread(slack, ts, "Succeeded", timeout=30, unlike="is active")
    assert "0/0 replicas available" in text_of(done)
    assert kube.get("apps/v1", "Deployment", "default", "qwen")["spec"]["replicas"] == 0

    replicas[2].slash("unschedule 1", user=OPERATOR)  # the creator: removed at once
    reply_to(slack, OPERATOR, "Schedule #1")
    in_thread(slack, ts, "removed by")
    # Every run that was claimed has finished: a second execution of a slot would have started by then.
    ops = wait_until(lambda: (rows := db.rows("SELECT id, status, params FROM operations WHERE kind = "
                                              "'scheduled_scale' ORDER BY id"))
                     and all(r["status"] in ("succeeded", "failed") for r in rows) and rows,
                     timeout=30, what="the schedule's runs to finish")
    slots = db.rows("SELECT slot, operation_id FROM schedule_runs WHERE slot <> 'baseline'")
    assert len(ops) == len(slots) >= 1  # one operation per slot, whichever replicas saw it
    assert len(scale_patches(kube)) == 1  # later slots found it at 0 already
    started = Counter(r["operation_id"] for r in db.rows("SELECT operation_id FROM audit_log WHERE action = 'started'"))
    assert all(started[op["id"]] == 1 for op in ops)
    assert len([t for t in thread(slack, ts) if "Run of" in t]) == 1
    assert db.rows("SELECT status FROM replica_schedules") == [{"status": "removed"}]


def test_a_run_steps_aside_when_the_deployment_was_changed_by_hand_or_is_gone(make_bot, slack, kube, db):
    kube.put(model("gone", gpus=0))
    bot = make_bot()
    early_in_a_minute()  # the person's changes must come before the first run
    bot.slash(f"schedule qwen replicas=0 {EVERY_MINUTE}", user=OPERATOR)
    _, changed_ts = approve_schedule(bot, slack, n=1)
    bot.slash(f"schedule gone replicas=0 {EVERY_MINUTE}", user=OPERATOR)
    _, gone_ts = approve_schedule(bot, slack, n=2)

    apps = kube_api(kube, bot)
    apps.patch_namespaced_deployment_scale("qwen", "default", {"spec": {"replicas": 2}})  # `kubectl scale`
    apps.delete_namespaced_deployment("gone", "default")
    wait_until(lambda: kube.get("apps/v1", "Deployment", "default", "gone") is None, what="gone deleted")

    skipped = in_thread(slack, changed_ts, "Skipped", timeout=RUN_WAIT)
    assert "changed by hand" in text_of(skipped) and "2 replicas (then 1)" in text_of(skipped)
    assert "no longer exists" in text_of(in_thread(slack, gone_ts, "Skipped", timeout=30))
    assert kube.get("apps/v1", "Deployment", "default", "qwen")["spec"]["replicas"] == 2
    assert len(scale_patches(kube)) == 1  # the person's; none from the bot
    skips = db.rows("SELECT detail FROM audit_log WHERE action = 'scheduled_scale.skipped'")
    assert any("changed by hand" in r["detail"] for r in skips)
    assert any("no longer exists" in r["detail"] for r in skips)


def test_a_run_queues_behind_a_running_change_of_the_same_deployment(make_bot, slack, kube, db):
    bot = make_bot(cluster={"rollout_timeout_seconds": 120})
    early_in_a_minute()  # the manual scale must be running when the first run comes
    bot.slash(f"schedule qwen replicas=1 {EVERY_MINUTE}", user=OPERATOR)
    _, ts = approve_schedule(bot, slack)
    # A manual scale that needs a 4th GPU node: it holds the Deployment's lock across the next minute.
    bot.slash("scale qwen 4", user=OPERATOR)
    manual = card_for(slack, n=2)
    bot.click("op_approve", op_id_of(manual), user=APPROVER2, message_ts=manual.response["ts"])
    wait_until(lambda: db.operation(int(op_id_of(manual)))["status"] == "running", what="manual scale running")

    queued = in_thread(slack, ts, "Queued", timeout=RUN_WAIT)
    assert f"#{op_id_of(manual)}" in text_of(queued)
    kube.put(node({"name": "gpu-node-3", "instance_type": "g5.xlarge", "gpus": 1}))
    in_thread(slack, manual.response["ts"], "Succeeded", timeout=60)
    # The person's scale ran to the end first; then the run started, and stepped aside for it.
    assert "changed by hand" in text_of(in_thread(slack, ts, "Skipped", timeout=30))
    run = db.rows("SELECT operation_id FROM schedule_runs WHERE slot <> 'baseline' ORDER BY id")[0]["operation_id"]
    finished = [r["id"] for r in db.audit(int(op_id_of(manual))) if r["action"] == "succeeded"][0]
    started = [r["id"] for r in db.audit(run) if r["action"] == "started"][0]
    assert started > finished
    assert kube.get("apps/v1", "Deployment", "default", "qwen")["spec"]["replicas"] == 4


def test_list_and_removal_of_someone_elses_schedule_needs_approval(make_bot, slack, kube, db):
    bot = make_bot()
    bot.slash('schedule qwen replicas=0 cron="0 20 * * 1-5" tz=Europe/Paris until=2099-12-31', user=OPERATOR)
    approve_schedule(bot, slack)
    bot.slash('schedule qwen replicas=1 cron="0 8 * * 1-5" tz=Europe/Paris', user=OPERATOR)
    second = card_for(slack, n=2)
    # The pair saves nights and weekends: the second card counts the first schedule in.
    assert "together with this workload's other schedule (#1)" in text_of(second)
    bot.slash("schedule list", user=APPROVER)
    listed = reply_to(slack, APPROVER, "#1")
    assert "#2" in text_of(listed) and "awaiting approval" in text_of(listed) and "saves" in text_of(listed)
    assert "until" in text_of(listed)

    bot.slash("unschedule 1", user=ADMIN)  # not theirs: an approval card, nothing removed yet
    removal = card_for(slack, n=3)
    assert "remove" in text_of(removal) and "schedule #1" in text_of(removal)
    assert db.rows("SELECT status FROM replica_schedules WHERE id = 1") == [{"status": "active"}]
    bot.click("op_approve", op_id_of(removal), user=APPROVER, message_ts=removal.response["ts"])
    in_thread(slack, removal.response["ts"], "Succeeded")
    assert db.rows("SELECT status FROM replica_schedules WHERE id = 1") == [{"status": "removed"}]
    bot.slash("schedule list cluster=dev", user=APPROVER)
    after = slack.wait_for(lambda c: c.method == "response_url" and "Replica schedules on `dev`" in text_of(c))
    assert "#1" not in text_of(after)


def test_bad_schedules_are_refused_naming_the_field_and_audited(bot, slack, kube, db):
    cases = [
        ('schedule qwen replicas=0 cron="0 25 * * *"', "cron hour 25"),
        ('schedule qwen replicas=0 cron="0 20 * * 1-5" tz=Mars/Olympus', "`tz=Mars/Olympus` is not a time zone"),
        ('schedule qwen replicas=0 cron="0 20 * * 1-5" until=2020-01-01', "`until=2020-01-01` is in the past"),
        ('schedule qwen replicas=0 cron="0 20 * * 1-5" until=tomorrow', "`until=tomorrow` is not a date"),
        ('schedule qwen replicas=99 cron="0 20 * * 1-5"', "replicas must be a whole number from 0 to"),
        ("schedule qwen replicas=0", "missing required option `cron=`"),
        ('schedule nope replicas=0 cron="0 20 * * *"', "no Deployment `nope`"),
        ("unschedule 7", "no active schedule #7"),
    ]
    for text, expected in cases:
        resp = bot.slash(text, user=OPERATOR)
        payload = resp.json() if resp.content else {}
        if payload.get("text"):  # the grammar refuses inside the ack
            shown = payload["text"] + json.dumps(payload.get("blocks", []))
            assert payload["response_type"] == "ephemeral" and expected in shown, (text, shown)
        else:  # the handler refuses after reading the clock, the zone database or the cluster
            answer = slack.wait_for(lambda c, e=expected: c.method == "response_url" and e in text_of(c), timeout=15)
            assert answer.params.get("response_type") == "ephemeral"
            shown = text_of(answer)
        assert "Usage" in shown or "schedule list" in shown or "status" in shown, shown
    wait_until(lambda: len([r for r in db.audit() if r["outcome"] == "refused"]) == len(cases), what="audited")
    assert db.rows("SELECT count(*) AS n FROM replica_schedules")[0]["n"] == 0
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    assert not [c for c in slack.calls_to("chat.postMessage")]


def test_the_digest_lists_active_schedules_and_what_they_save(make_bot, slack, kube, db):
    _, server = main_dataset()
    bot = make_bot(cluster={"prometheus_url": server.url})
    bot.slash('schedule qwen replicas=0 cron="0 20 * * 1-5" tz=Europe/Paris', user=OPERATOR)
    approve_schedule(bot, slack)
    bot.slash('schedule qwen replicas=1 cron="0 8 * * 1-5" tz=Europe/Paris', user=OPERATOR)  # not approved yet
    card_for(slack, n=2)
    bot.slash("digest now", user=OPERATOR)
    digest = slack.wait_for(lambda c: c.method == "chat.postMessage" and not c.params.get("thread_ts")
                            and "Inference digest" in str(c.params.get("text")), timeout=60)
    shown = text_of(digest)
    assert "*Replica schedules* (1 workload)" in shown
    line = next(x for x in shown.splitlines() if "`qwen` (dev/default) saves" in x)
    assert "GPU hours ≈ $" in line and "#1 → 0 on `0 20 * * 1-5` (Europe/Paris)" in line and "#2" not in line
