"""The change pipeline end to end, through signed HTTP to a real `infer-bot serve` process:
command → policy → approval card → click → worker → Kubernetes (emulator) → thread → audit."""

from __future__ import annotations

import html
import json
import time
from concurrent.futures import ThreadPoolExecutor

from bot.sandbox.environment import node
from tests.support.cluster import model, scale_patches
from tests.support.slack import ADMIN, APPROVER, APPROVER2, CHANNEL, OPERATOR, VIEWER, card_for, op_id_of, text_of
from tests.support.waiting import wait_until


def replicas_of(kube, name: str = "qwen") -> dict:
    dep = kube.get("apps/v1", "Deployment", "default", name) or {}
    return {"spec": dep.get("spec", {}).get("replicas"), "ready": dep.get("status", {}).get("readyReplicas")}


def thread_texts(slack, card_ts: str) -> list[str]:
    return [text_of(c) for c in slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == card_ts]


def test_scale_from_command_to_ready_replicas_with_audit(bot, slack, kube, db):
    started = time.monotonic()
    resp = bot.slash("scale qwen 3", user=OPERATOR)
    assert resp.status_code == 200
    assert time.monotonic() - started < 3  # acknowledged well inside Slack's limit

    card = card_for(slack)
    shown = text_of(card)
    assert "replicas 1 → 3" in shown and "dev" in shown and "deployment/qwen" in shown
    assert f"<@{OPERATOR}>" in shown and "0 of 1" in shown
    assert replicas_of(kube)["spec"] == 1  # nothing happens before approval

    op_id = op_id_of(card)
    assert bot.click("op_approve", op_id, user=APPROVER, message_ts=card.response["ts"]).status_code == 200
    done = slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"]
                          and "Succeeded" in text_of(c), timeout=30)
    assert "3/3 replicas available" in text_of(done)
    assert replicas_of(kube) == {"spec": 3, "ready": 3}

    final_card = [c for c in slack.calls_to("chat.update") if c.params.get("ts") == card.response["ts"]][-1]
    assert op_id_of(final_card) is None  # buttons gone once decided
    assert f"Approved by <@{APPROVER}>" in text_of(final_card) and "Succeeded" in text_of(final_card)
    actions = [row["action"] for row in db.audit(int(op_id))]
    assert actions == ["scale.requested", "approval", "approved", "started", "succeeded"]
    assert db.operation(int(op_id))["status"] == "succeeded"


def test_requester_cannot_approve_their_own_operation(bot, slack, kube, db):
    bot.slash("scale qwen 2", user=ADMIN)
    card = card_for(slack)
    bot.click("op_approve", op_id_of(card), user=ADMIN)
    told = slack.wait_for(lambda c: c.method == "chat.postEphemeral" and c.params.get("user") == ADMIN)
    assert "someone else has to approve" in told.params["text"]
    # The refusal was audited in the click's transaction and the operation is still pending: the worker
    # only ever claims approved operations, so nothing can have reached the Deployment.
    assert any(r["outcome"] == "refused" and r["action"] == "approve" for r in db.audit(int(op_id_of(card))))
    assert db.operation(int(op_id_of(card)))["status"] == "pending_approval"
    assert scale_patches(kube) == []


def test_viewer_cannot_scale_and_the_refusal_is_audited(bot, slack, kube, db):
    bot.slash("scale qwen 2", user=VIEWER)
    reply = slack.wait_for(lambda c: c.method == "response_url")
    assert "needs the *operator* role" in text_of(reply) and reply.params.get("response_type") == "ephemeral"
    assert not [c for c in slack.calls_to("chat.postMessage")]
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    refused = [r for r in db.audit() if r["outcome"] == "refused"]
    assert refused and refused[-1]["actor"] == VIEWER and refused[-1]["action"] == "scale"


def test_approver_without_the_role_cannot_approve(bot, slack, db):
    bot.slash("scale qwen 2", user=OPERATOR)
    card = card_for(slack)
    bot.click("op_approve", op_id_of(card), user=VIEWER)
    told = slack.wait_for(lambda c: c.method == "chat.postEphemeral" and c.params.get("user") == VIEWER)
    assert "needs the *approver* role" in told.params["text"]
    assert db.operation(int(op_id_of(card)))["status"] == "pending_approval"


def test_forged_signature_and_stale_timestamp_are_rejected(bot, slack, db):
    body, headers = bot.requests.slash("scale qwen 2", user_id=OPERATOR, channel_id=CHANNEL)
    forged = dict(headers, **{"X-Slack-Signature": "v0=" + "0" * 64})
    assert bot.post(body, forged).status_code == 401
    old_body, old_headers = bot.requests.slash("scale qwen 2", user_id=OPERATOR, channel_id=CHANNEL,
                                               timestamp=int(time.time()) - 6 * 60)
    assert bot.post(old_body, old_headers).status_code == 401
    # The 401 is the refusal: the signature is checked before any listener runs or any work is queued.
    # A genuine request sent after them is the only one acted on.
    assert bot.post(*bot.requests.slash("scale qwen 2", user_id=OPERATOR, channel_id=CHANNEL)).status_code == 200
    card_for(slack)
    assert len(slack.calls_to("chat.postMessage")) == 1
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 1


def test_slack_retry_of_a_command_does_not_run_it_twice(bot, slack, db):
    body, headers = bot.requests.slash("scale qwen 2", user_id=OPERATOR, channel_id=CHANNEL)
    assert bot.post(body, headers).status_code == 200
    retry = dict(headers, **{"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"})
    assert bot.post(body, retry).status_code == 200
    card_for(slack)
    # Whichever of the two got there second says so when it drops out, and then nothing more.
    wait_until(lambda: "not acting again" in bot.log(), what="the repeated delivery dropped")
    assert len([c for c in slack.calls_to("chat.postMessage") if op_id_of(c)]) == 1
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 1


def test_twenty_concurrent_approvals_scale_exactly_once(bot, slack, kube, db):
    bot.slash("scale qwen 2", user=OPERATOR)
    card = card_for(slack)
    op_id = op_id_of(card)
    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(lambda i: bot.click("op_approve", op_id, user=(APPROVER, APPROVER2)[i % 2])
                              .status_code, range(20)))
    assert codes == [200] * 20
    slack.wait_for(lambda c: "Succeeded" in text_of(c) and c.params.get("thread_ts"), timeout=30)
    # Every click has had its answer (one approved it, nineteen were told it was decided already), and the
    # operation is over with its lock released: nothing is left that could run it a second time.
    wait_until(lambda: len([c for c in slack.calls_to("chat.postEphemeral") if f"#{op_id} is already" in text_of(c)])
               == 19, what="the other 19 clicks answered")
    assert db.operation(int(op_id))["status"] == "succeeded"
    assert db.rows("SELECT count(*) AS n FROM locks")[0]["n"] == 0
    assert len(scale_patches(kube)) == 1
    audit = db.audit(int(op_id))
    assert [r["action"] for r in audit].count("approved") == 1
    assert [r["action"] for r in audit].count("started") == 1


def test_usage_errors_are_ephemeral_name_the_problem_and_change_nothing(bot, slack, db):
    cases = {
        "scael qwen 2": "scale",  # the closest verb is suggested
        "scale qwen": "missing",
        "scale qwen 99": "from 0 to 20",
        "scale Qwen_Bad 2": "not a valid release name",
        "scale qwen 2 colour=red": "colour",
    }
    for text, expected in cases.items():
        resp = bot.slash(text, user=OPERATOR)
        assert resp.status_code == 200
        payload = resp.json()
        assert payload["response_type"] == "ephemeral"
        shown = payload["text"] + json.dumps(payload.get("blocks", []))
        assert expected.lower() in shown.lower(), (text, shown)
        assert "Usage" in shown or "help" in shown
    assert slack.calls_to("chat.postMessage") == []
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    # The refusal is audited just after the ack that showed it.
    wait_until(lambda: len([r for r in db.audit() if r["outcome"] == "refused"]) == len(cases), what="audit")


def test_unknown_deployment_is_refused_before_any_card(bot, slack, db):
    bot.slash("scale nope 2", user=OPERATOR)
    reply = slack.wait_for(lambda c: c.method == "response_url")
    assert "no Deployment `nope`" in text_of(reply) and "/infer status" in text_of(reply)
    assert slack.calls_to("chat.postMessage") == []


def test_reject_asks_for_a_reason_and_leaves_the_deployment_alone(bot, slack, kube, db):
    bot.slash("scale qwen 3", user=OPERATOR)
    card = card_for(slack)
    op_id = op_id_of(card)
    bot.click("op_reject", op_id, user=APPROVER, message_ts=card.response["ts"])
    opened = slack.wait_for(lambda c: c.method == "views.open")
    view = opened.params["view"]
    assert view["callback_id"] == "reject_reason" and view["private_metadata"] == op_id
    values = {"reason": {"value": {"type": "plain_text_input", "value": "not during the launch <!channel>"}}}
    body, headers = bot.requests.view_submission("reject_reason", values, user_id=APPROVER,
                                                 private_metadata=op_id)
    assert bot.post(body, headers).status_code == 200
    updated = slack.wait_for(lambda c: c.method == "chat.update" and "Rejected" in text_of(c))
    assert op_id_of(updated) is None and "not during the launch" in text_of(updated)
    assert "<!channel>" not in text_of(updated)  # user text never pings a channel
    assert db.operation(int(op_id))["status"] == "rejected"
    assert replicas_of(kube)["spec"] == 1
    bot.click("op_approve", op_id, user=APPROVER2)
    told = slack.wait_for(lambda c: c.method == "chat.postEphemeral" and c.params.get("user") == APPROVER2)
    assert "already rejected" in told.params["text"]


def test_two_approvals_need_two_distinct_approvers(make_bot, slack, kube):
    bot = make_bot(cluster={"approvals": 2})
    bot.slash("scale qwen 2", user=OPERATOR)
    card = card_for(slack)
    op_id = op_id_of(card)
    bot.click("op_approve", op_id, user=APPROVER)
    told = slack.wait_for(lambda c: c.method == "chat.postEphemeral")
    assert "needs 1 more" in told.params["text"]
    bot.click("op_approve", op_id, user=APPROVER)
    slack.wait_for(lambda c: c.method == "chat.postEphemeral" and "already approved" in c.params["text"])
    assert replicas_of(kube)["spec"] == 1
    bot.click("op_approve", op_id, user=APPROVER2)
    slack.wait_for(lambda c: "Succeeded" in text_of(c) and c.params.get("thread_ts"), timeout=30)
    assert replicas_of(kube)["spec"] == 2


def test_pending_approval_expires_and_late_clicks_change_nothing(make_bot, slack, kube):
    bot = make_bot(operations={"approval_timeout_hours": 3 / 3600})
    bot.slash("scale qwen 2", user=OPERATOR)
    card = card_for(slack)
    expired = slack.wait_for(lambda c: c.method == "chat.update" and "Expired" in text_of(c), timeout=15)
    assert op_id_of(expired) is None
    bot.click("op_approve", op_id_of(card), user=APPROVER)
    told = slack.wait_for(lambda c: c.method == "chat.postEphemeral")
    assert "expired" in told.params["text"]
    assert replicas_of(kube)["spec"] == 1 and scale_patches(kube) == []


def test_channel_allow_list_and_user_group_approvers(make_bot, slack, kube):
    slack.user_groups["S0APPROVERS"] = ["U0GROUPIE"]
    bot = make_bot(cluster={"channels": ["C0PROD"]})
    bot.slash("scale qwen 2", user=OPERATOR, channel="C0OPS")
    reply = slack.wait_for(lambda c: c.method == "response_url")
    assert "only in <#C0PROD>" in text_of(reply)
    bot.slash("scale qwen 2", user=OPERATOR, channel="C0PROD")
    card = card_for(slack, channel="C0PROD")
    bot.click("op_approve", op_id_of(card), user="U0GROUPIE", channel="C0PROD")
    slack.wait_for(lambda c: "Succeeded" in text_of(c) and c.params.get("thread_ts"), timeout=30)
    assert replicas_of(kube)["spec"] == 2


def test_a_card_clicked_from_another_channel_is_refused(bot, slack, db):
    bot.slash("scale qwen 2", user=OPERATOR)
    card = card_for(slack)
    bot.click("op_approve", op_id_of(card), user=APPROVER, channel="C0ELSEWHERE")
    told = slack.wait_for(lambda c: c.method == "chat.postEphemeral")
    assert "another channel" in told.params["text"]
    bot.click("op_approve", "12abc", user=APPROVER)
    told = slack.wait_for(lambda c: c.method == "chat.postEphemeral" and "does not name" in c.params["text"])
    assert db.operation(int(op_id_of(card)))["status"] == "pending_approval"


def test_pods_that_cannot_be_scheduled_fail_the_operation_with_the_reason(make_bot, slack, kube, db):
    bot = make_bot(cluster={"rollout_timeout_seconds": 3})
    bot.slash("scale qwen 5", user=OPERATOR)
    card = card_for(slack)
    bot.click("op_approve", op_id_of(card), user=APPROVER)
    failed = slack.wait_for(lambda c: "Failed" in text_of(c) and c.params.get("thread_ts"), timeout=30)
    assert "3 of 5 replicas available" in text_of(failed)
    assert "Insufficient nvidia.com/gpu" in text_of(failed)
    assert db.operation(int(op_id_of(card)))["status"] == "failed"


def test_second_scale_of_the_same_deployment_queues_behind_the_first(bot, slack, kube, db):
    bot.slash("scale qwen 4", user=OPERATOR)  # 3 GPUs: waits for a 4th node, holding the lock
    first = op_id_of(card_for(slack))
    bot.click("op_approve", first, user=APPROVER)
    wait_until(lambda: db.operation(int(first))["status"] == "running", what="first running")
    bot.slash("scale qwen 2", user=OPERATOR)
    second = card_for(slack, n=2)
    assert op_id_of(second) != first
    bot.click("op_approve", op_id_of(second), user=APPROVER)
    queued = slack.wait_for(lambda c: c.params.get("thread_ts") and "Queued" in text_of(c), timeout=10)
    assert f"queued behind #{first}" in text_of(queued)
    assert db.operation(int(op_id_of(second)))["status"] == "queued"
    kube.put(node({"name": "gpu-node-3", "instance_type": "g5.xlarge", "gpus": 1}))  # Karpenter adds one
    wait_until(lambda: [r["status"] for r in db.rows("SELECT status FROM operations ORDER BY id")]
               == ["succeeded", "succeeded"], timeout=30, what="both done, in order")
    assert replicas_of(kube) == {"spec": 2, "ready": 2}


def test_status_lists_deployments_with_readiness(bot, slack, kube):
    kube.put(model("llama", replicas=1))
    bot.slash("status", user=VIEWER)
    reply = slack.wait_for(lambda c: c.method == "response_url")
    shown = text_of(reply)
    assert "qwen" in shown and "llama" in shown and "1/1 ready" in shown


def test_help_lists_every_verb_or_explains_one(bot, slack):
    everything = bot.slash("help", user=VIEWER).json()
    assert everything["response_type"] == "ephemeral"
    shown = html.unescape(str(everything["blocks"]))  # what Slack shows of `&lt;name&gt;`
    assert all(verb in shown for verb in ("scale <name> <replicas>", "status", "approvals", "audit", "help <verb>"))
    assert all(len(b["text"]["text"]) <= 3000 for b in everything["blocks"] if b["type"] == "section")

    one = html.unescape(str(bot.slash("help scale", user=VIEWER).json()["blocks"]))
    assert "scale <name> <replicas>" in one and "operator role" in one and "audit" not in one
    wrong = bot.slash("help scael", user=VIEWER).json()
    assert "unknown verb" in str(wrong).lower() and "scale" in str(wrong)


def test_health_and_metrics_endpoints(bot, slack):
    import requests

    assert requests.get(f"{bot.url}/healthz", timeout=5).json() == {"ok": True, "database": "ok", "draining": False}
    bot.slash("help", user=VIEWER)
    metrics = requests.get(f"{bot.url}/metrics", timeout=5).text
    assert 'infer_bot_commands_total{outcome="ok",verb="help"} 1.0' in metrics
    assert "infer_bot_ack_seconds_count" in metrics
    assert 'infer_bot_operations{state="pending_approval"} 0.0' in metrics
    assert requests.get(f"{bot.url}/nope", timeout=5).status_code == 404


def test_rate_limited_card_post_is_retried_and_posted_once(bot, slack):
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)
    bot.slash("scale qwen 2", user=OPERATOR)
    card_for(slack, timeout=15)
    posts = slack.calls_to("chat.postMessage")
    assert [c.status for c in posts][:2] == [429, 200]
    assert len([c for c in posts if c.status == 200 and op_id_of(c)]) == 1
