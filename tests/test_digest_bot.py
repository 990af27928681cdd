"""Digests end to end: a real `infer-bot serve` over signed HTTP, the local Slack, the Kubernetes emulator
and a real Prometheus over the generated data set."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import yaml

from bot.config import Settings
from bot.local_slack import LocalSlack, block_kit_errors
from bot.sandbox.environment import node
from tests.conftest import APPROVER, CHANNEL, OPERATOR, VIEWER, card_for, model, op_id_of, text_of, wait_until
from tests.support.botproc import BOT_TOKEN, Database
from tests.support.prometheus import closed_port, main_dataset


@pytest.fixture(scope="module")
def prom():
    return main_dataset()


def reply_to(slack, command: str, timeout: float = 20):
    return slack.wait_for(lambda c: c.method == "response_url" and c.target.endswith(command), timeout=timeout)


def digest_message(slack, channel: str = CHANNEL, timeout: float = 30):
    return slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("channel") == channel
                          and not c.params.get("thread_ts") and "Inference digest" in str(c.params.get("text")),
                          timeout=timeout)


def test_subscribe_is_stored_and_listed(make_bot, slack, prom):
    _, server = prom
    bot = make_bot(cluster={"prometheus_url": server.url})
    db = Database(bot.database_url)
    bot.slash('digest subscribe "0 9 * * *" tz=Europe/Paris', user=OPERATOR)
    told = reply_to(slack, 'digest subscribe "0 9 * * *" tz=Europe/Paris')
    assert told.params.get("response_type") == "ephemeral"
    assert "`0 9 * * *` (Europe/Paris)" in text_of(told) and "Next:" in text_of(told)
    [row] = db.rows("SELECT * FROM digest_subscriptions")
    assert (row["channel_id"], row["cron"], row["timezone"], row["created_by"]) == (
        CHANNEL, "0 9 * * *", "Europe/Paris", OPERATOR)
    bot.slash("digest list", user=VIEWER)
    listed = text_of(reply_to(slack, "digest list"))
    assert "`0 9 * * *` (Europe/Paris)" in listed and f"subscribed by <@{OPERATOR}>" in listed and "next 20" in listed
    bot.slash("digest subscribe 0 9 * * 1-5 tz=Mars/Olympus", user=OPERATOR)
    assert "not a time zone I know" in text_of(reply_to(slack, "tz=Mars/Olympus"))
    bot.slash("digest subscribe 0 9 * * 1-5", user=VIEWER)
    assert "operator" in text_of(reply_to(slack, "digest subscribe 0 9 * * 1-5"))
    assert len(db.rows("SELECT * FROM digest_subscriptions")) == 1
    bot.slash("digest unsubscribe", user=OPERATOR)
    assert "Unsubscribed" in text_of(reply_to(slack, "digest unsubscribe"))
    assert db.rows("SELECT * FROM digest_subscriptions") == []
    assert [r["action"] for r in db.audit() if r["action"].startswith("digest.")] == [
        "digest.subscribe", "digest.unsubscribe"]


def test_metrics_of_one_deployment_is_ephemeral_with_its_numbers(make_bot, slack, prom):
    _, server = prom
    bot = make_bot(cluster={"prometheus_url": server.url})
    bot.slash("metrics busy-qwen", user=VIEWER)
    reply = reply_to(slack, "metrics busy-qwen")
    assert reply.params.get("response_type") == "ephemeral"
    shown = text_of(reply)
    assert "30.0 s" in shown and "TTFT p95 3.80 s" in shown and "Scale busy-qwen 2 → 4" in shown
    assert block_kit_errors(reply.params["blocks"]) == []
    bot.slash("metrics nothing-here", user=VIEWER)
    assert "no metrics for `nothing-here`" in text_of(reply_to(slack, "metrics nothing-here"))
    assert slack.calls_to("chat.postMessage") == []  # nothing public


def test_digest_now_posts_headline_chart_in_thread_and_reports_a_dead_prometheus(make_bot, slack, prom, tmp_path):
    _, server = prom
    kubeconfig = str(tmp_path / "kubeconfig")
    bot = make_bot(clusters=[
        {"name": "dev", "kubeconfig": kubeconfig, "prometheus_url": server.url, "approvals": 1},
        {"name": "eu", "kubeconfig": kubeconfig, "prometheus_url": closed_port(), "approvals": 1}])
    bot.slash("digest now", user=OPERATOR)
    posted = digest_message(slack)
    blocks = posted.params["blocks"]
    assert len(blocks) <= 50 and block_kit_errors(blocks) == []
    shown = text_of(posted)
    assert "Accelerator utilization" in shown and "target 70 %" in shown
    assert ":warning: *eu*: no data" in shown and "connection refused" in shown
    assert "busy-qwen" in shown and "idle-llama" in shown
    ts = posted.response["ts"]
    # The chart: files upload v2 (get an upload URL, upload, complete) into the digest's thread.
    complete = slack.wait_for(lambda c: c.method == "files.completeUploadExternal", timeout=20)
    assert [c.method for c in slack.calls if c.method.startswith(("files.", "upload_url"))] == [
        "files.getUploadURLExternal", "upload_url", "files.completeUploadExternal"]
    assert complete.params.get("thread_ts") == ts and complete.params.get("channel_id") == CHANNEL
    [chart] = slack.files
    assert chart.completed and chart.filename == "digest.png" and chart.content.startswith(b"\x89PNG")
    assert chart.thread_ts == ts


def test_posting_honours_one_message_per_second_per_channel(tmp_path, prom, monkeypatch):
    """Overflow goes to the thread: every post is paced, and a 429 is retried after Retry-After."""
    import handlers.digest_blocks as digest_blocks
    from bot.app import build_runtime, make_client
    from bot.config import parse_config
    from handlers.digest import post_digest

    _, server = prom
    monkeypatch.setattr(digest_blocks, "MAIN_DEPLOYMENTS", 1)
    monkeypatch.setattr(digest_blocks, "THREAD_SECTIONS", 1)  # four more deployments: four thread messages
    config = parse_config({"clusters": [{"name": "dev", "prometheus_url": server.url}]}, "test")
    with LocalSlack(bot_token=BOT_TOKEN) as slack:
        slack.per_channel_limit(1, burst=1)
        settings = Settings(infer_bot_database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                            slack_api_url=slack.api_url, slack_bot_token=BOT_TOKEN)
        runtime = build_runtime(config, settings, client=make_client(settings))
        try:
            slack.rate_limit("chat.postMessage", 1, retry_after=1)  # Slack says "slow down" once anyway
            began = time.monotonic()
            posted = post_digest(runtime.client, runtime.deps, "C0PACE", (), None)
            elapsed = time.monotonic() - began
        finally:
            runtime.close()
        posts = slack.calls_to("chat.postMessage")
        assert [c.status for c in posts].count(429) == 1  # only the injected one: the pacing kept under the limit
        ok = [c for c in posts if c.status == 200]
        assert len(ok) == 5 and posted.summary["thread_messages"] == 4
        assert all(c.params.get("thread_ts") == posted.ts for c in ok[1:])
        gaps = [b.at - a.at for a, b in zip(ok, ok[1:], strict=False)]
        assert min(gaps) >= 0.9 and elapsed >= 4


def test_apply_creates_a_normal_approval_card_and_approval_scales(make_bot, slack, kube, prom):
    _, server = prom
    for i in range(3, 6):
        kube.put(node({"name": f"gpu-node-{i}", "instance_type": "g5.xlarge", "gpus": 1}))
    kube.put(model("idle-llama", replicas=3))
    wait_until(lambda: (kube.get("apps/v1", "Deployment", "default", "idle-llama") or {})
               .get("status", {}).get("readyReplicas") == 3, what="idle-llama ready")
    bot = make_bot(cluster={"prometheus_url": server.url})
    db = Database(bot.database_url)
    bot.slash("digest now", user=OPERATOR)
    posted = digest_message(slack)
    [button] = [b["accessory"] for b in posted.params["blocks"]
                if b.get("accessory", {}).get("action_id") == "suggestion_apply"
                and "Scale idle-llama 3 → 1" in b["text"]["text"]]
    digest_ts = posted.response["ts"]
    bot.click("suggestion_apply", button["value"], user=OPERATOR, message_ts=digest_ts)
    card = card_for(slack)
    assert "replicas 3 → 1" in text_of(card) and "deployment/idle-llama" in text_of(card)
    told = reply_to(slack, "")
    assert f"operation #{op_id_of(card)}" in text_of(told) and told.params.get("response_type") == "ephemeral"
    # A second click (or a colleague's) does not request it twice.
    bot.click("suggestion_apply", button["value"], user=APPROVER, message_ts=digest_ts)
    wait_until(lambda: any("already applied" in text_of(c) for c in slack.calls_to("response_url")), what="told")
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 1
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
    slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"] and "Succeeded" in text_of(c), timeout=30)
    assert kube.get("apps/v1", "Deployment", "default", "idle-llama")["spec"]["replicas"] == 1
    [row] = db.rows("SELECT * FROM digest_suggestions WHERE id = :id", id=int(button["value"]))
    assert row["status"] == "applied" and row["operation_id"] == int(op_id_of(card))
    assert row["applied_by"] == OPERATOR
    actions = [r["action"] for r in db.audit(int(op_id_of(card)))]
    assert actions[:1] == ["scale.requested"] and "succeeded" in actions


def test_cli_digest_now_posts_once_and_exits(tmp_path, prom):
    _, server = prom
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"clusters": [{"name": "dev", "prometheus_url": server.url}]}))
    with LocalSlack(bot_token=BOT_TOKEN) as slack:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "INFER_BOT_"))}
        env.update(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_API_URL=slack.api_url, INFER_BOT_CONFIG=str(config),
                   INFER_BOT_DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
        proc = subprocess.run([sys.executable, "-m", "bot.cli", "digest", "--channel", "C0CLI", "--now"], env=env,
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "posted to C0CLI" in proc.stdout and "14 PromQL queries" in proc.stdout
        assert len([m for m in slack.messages("C0CLI") if m.get("thread_ts") in (None, m["ts"])]) == 1
