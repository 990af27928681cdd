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
from bot.sandbox.environment import node
from bot.sandbox.slack.webapi import LocalSlack, block_kit_errors
from tests.support.binaries import needs_helm
from tests.support.botproc import BOT_TOKEN, Database
from tests.support.cluster import model
from tests.support.prometheus import closed_port, main_dataset, node_api, put_nodes
from tests.support.slack import APPROVER, CHANNEL, OPERATOR, VIEWER, card_for, op_id_of, text_of
from tests.support.waiting import wait_until


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


def test_digest_now_posts_headline_chart_in_thread_and_reports_a_dead_prometheus(make_bot, slack, kube, prom,
                                                                                 tmp_path):
    dataset, server = prom
    put_nodes(kube, dataset)  # the nodes the model servers run on: their instance types price them
    kubeconfig = str(tmp_path / "kubeconfig")
    bot = make_bot(clusters=[
        {"name": "dev", "kubeconfig": kubeconfig, "prometheus_url": server.url, "approvals": 1},
        {"name": "eu", "kubeconfig": kubeconfig, "prometheus_url": closed_port(), "approvals": 1}])
    bot.slash("digest now sort=cost", user=OPERATOR)
    posted = digest_message(slack)
    blocks = posted.params["blocks"]
    assert len(blocks) <= 50 and block_kit_errors(blocks) == []
    shown = text_of(posted)
    # Most expensive first: 3 × g5.xlarge, 2 × g5.2xlarge, 2 × g6.xlarge, 1 × g5.xlarge, 1 × inf2.xlarge.
    names = ["idle-llama", "busy-qwen", "healthy-mistral", "unused-phi", "neuron-llama"]
    positions = [shown.index(f"*{name}* · dev/") for name in names]
    assert positions == sorted(positions) and "sorted by cost" in shown
    assert "*neuron-llama* · dev/default · `inf2.xlarge` × 1 Neuron" in shown and "Neuron util 50 % mean" in shown
    # Σ devices × 24 h × price per device: 3 + 1 g5.xlarge, 2 g5.2xlarge, 2 g6.xlarge, 1 inf2.xlarge.
    assert "*Cost*\n$211.58/day" in shown
    assert "*neuron-llama* · dev/default · `inf2.xlarge` × 1 Neuron · *$18.20/day*" in shown
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


@pytest.fixture
def runtime_on(tmp_path, prom):
    """A bot runtime (no HTTP server) whose client talks to the given local Slack; closed afterwards.

    Its cluster's API holds the nodes the data set's model servers run on (their instance types price
    them) and nothing else.
    """
    from bot.app import build_runtime, make_client
    from bot.config import parse_config

    dataset, server = prom
    made = []
    with node_api(dataset, tmp_path) as (_, emulator):
        kubeconfig = str(emulator.write_kubeconfig(tmp_path / "runtime-kubeconfig"))

        def make(slack: LocalSlack, **config):
            cluster = {"name": "dev", "prometheus_url": server.url, "kubeconfig": kubeconfig}
            cfg = parse_config({"clusters": [cluster], **config}, "test")
            settings = Settings(infer_bot_database_url=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                                slack_api_url=slack.api_url, slack_bot_token=BOT_TOKEN)
            made.append(build_runtime(cfg, settings, client=make_client(settings)))
            return made[-1]

        yield make
        for runtime in made:
            runtime.close()


def test_posting_honours_one_message_per_second_per_channel(runtime_on):
    """Overflow goes to the thread: every post is paced, and a 429 is retried after Retry-After."""
    from handlers.digest import post_digest
    from handlers.digest_blocks import Layout

    with LocalSlack(bot_token=BOT_TOKEN) as slack:
        slack.per_channel_limit(1, burst=1)
        runtime = runtime_on(slack)
        slack.rate_limit("chat.postMessage", 1, retry_after=1)  # Slack says "slow down" once anyway
        began = time.monotonic()
        # One deployment in the message, one per thread message: four more deployments, four thread messages.
        posted = post_digest(runtime.client, runtime.deps, "C0PACE", (), None,
                             layout=Layout(main_deployments=1, thread_sections=1))
        elapsed = time.monotonic() - began
        posts = slack.calls_to("chat.postMessage")
        assert [c.status for c in posts].count(429) == 1  # only the injected one: the pacing kept under the limit
        ok = [c for c in posts if c.status == 200]
        assert len(ok) == 5 and posted.summary["thread_messages"] == 4
        assert "…and 4 more deployments in the thread." in text_of(ok[0])
        assert all(c.params.get("thread_ts") == posted.ts for c in ok[1:])
        assert [text_of(c).count("* · dev/default") for c in ok] == [1, 1, 1, 1, 1]  # every deployment, once
        gaps = [b.at - a.at for a, b in zip(ok, ok[1:], strict=False)]
        assert min(gaps) >= 0.9 and elapsed >= 4


def test_many_deployments_overflow_into_a_csv_file_in_the_thread(runtime_on):
    from handlers.digest import post_digest
    from handlers.digest_blocks import Layout

    with LocalSlack(bot_token=BOT_TOKEN) as slack:
        runtime = runtime_on(slack)
        posted = post_digest(runtime.client, runtime.deps, "C0CSV", (), None,
                             layout=Layout(main_deployments=2, file_threshold=3))
        [main] = [c for c in slack.calls_to("chat.postMessage") if c.status == 200]
        assert "…and 3 more deployments in the CSV file in the thread." in text_of(main)
        assert posted.summary["files"] == ["digest.png", "digest.csv"] and posted.summary["thread_messages"] == 0
        chart, table = slack.files
        assert chart.filename == "digest.png" and table.filename == "digest.csv"
        assert table.completed and table.thread_ts == posted.ts
        rows = table.content.decode().splitlines()
        assert rows[0].startswith("cluster,namespace,name,instance_type") and len(rows) == 1 + 5
        busy = next(r for r in rows if ",busy-qwen," in r)
        assert busy.startswith("dev,default,busy-qwen,g5.2xlarge,2,") and "Scale busy-qwen 2 → 4" in busy


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


@needs_helm
def test_apply_of_a_cheaper_instance_redeploys_the_release_through_approval(make_bot, slack, kube):
    """An idle single-GPU release on g5.2xlarge: the advisor names g6.xlarge; Apply asks for a deploy of
    the release's own preset there, which the approvers see as a change of the node selector."""
    from bot.sandbox.metrics_data import Case, dataset_at
    from ops.helm import BUNDLED_CHART
    from tests.support.prometheus import shared

    dataset, server = shared("solo", lambda: dataset_at([
        Case("solo", "g5.2xlarge", 1, util=5.0, fb_used=4000, fb_free=20576, rps=0.1, running=0.2, kv=(0.05, 0.05)),
        Case("handmade", "g5.2xlarge", 1, util=5.0, fb_used=4000, fb_free=20576, rps=0.1, running=0.2,
             kv=(0.05, 0.05))]))
    for i, instance in enumerate(("g5.2xlarge", "g6.xlarge")):
        kube.put(node({"name": f"node-{instance}-{i}", "instance_type": instance, "gpus": 1}))
    put_nodes(kube, dataset)  # where the metrics say solo and handmade run: g5.2xlarge
    kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "default"},
              "type": "Opaque", "data": {"token": "aGZfdGVzdA=="}})
    kube.put(model("handmade"))  # installed by hand: advice, but no button
    bot = make_bot(cluster={"prometheus_url": server.url}, chart={"path": str(BUNDLED_CHART)})
    bot.slash("deploy qwen3-1.7b-vllm name=solo instance=g5.2xlarge", user=OPERATOR)
    first = card_for(slack)
    bot.click("op_approve", op_id_of(first), user=APPROVER, message_ts=first.response["ts"])
    slack.wait_for(lambda c: c.params.get("thread_ts") == first.response["ts"] and "Succeeded" in text_of(c),
                   timeout=40)

    bot.slash("digest now", user=OPERATOR)
    posted = digest_message(slack)
    sections = {b["text"]["text"]: b.get("accessory") for b in posted.params["blocks"]
                if "a cheaper instance would do" in (b.get("text") or {}).get("text", "")}
    [(solo_text, button)] = [(t, a) for t, a in sections.items() if "solo" in t]
    [handmade] = [a for t, a in sections.items() if "handmade" in t]
    assert "`g6.xlarge`" in solo_text and button["action_id"] == "suggestion_apply"
    assert handmade is None or handmade.get("action_id") != "suggestion_apply"

    bot.click("suggestion_apply", button["value"], user=OPERATOR, message_ts=posted.response["ts"])
    card = slack.wait_for(lambda c: c.method == "chat.postMessage" and "Approve" in str(c.params.get("blocks"))
                          and c is not first)
    shown = text_of(card)
    assert "update `Deployment/solo`" in shown and "g6.xlarge" in shown and "g5.2xlarge" in shown
    told = reply_to(slack, "")
    assert "Requested `deploy qwen3-1.7b-vllm name=solo" in text_of(told) and "instance=g6.xlarge" in text_of(told)
    assert f"as operation #{op_id_of(card)}" in text_of(told)
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
    slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"] and "Succeeded" in text_of(c),
                   timeout=40)
    selector = kube.get("apps/v1", "Deployment", "default", "solo")["spec"]["template"]["spec"]["nodeSelector"]
    assert selector["node.kubernetes.io/instance-type"] == "g6.xlarge"


def test_forged_or_foreign_suggestion_ids_are_refused_ephemerally_and_audited(make_bot, slack, prom):
    _, server = prom
    bot = make_bot(cluster={"prometheus_url": server.url})
    db = Database(bot.database_url)
    bot.slash("digest now", user=OPERATOR)
    posted = digest_message(slack)
    [real] = [b["accessory"]["value"] for b in posted.params["blocks"]
              if b.get("accessory", {}).get("action_id") == "suggestion_apply" and "idle-llama" in b["text"]["text"]]
    forged = {"424242": "does not name a suggestion I know", "1 OR 1=1": "does not name a suggestion I know",
              "-1": "does not name a suggestion I know", "９": "does not name a suggestion I know"}
    for value, refusal in forged.items():
        bot.click("suggestion_apply", value, user=OPERATOR, message_ts=posted.response["ts"])
        told = slack.wait_for(lambda c, v=value: c.method == "response_url" and c.target == f"suggestion_apply:{v}")
        assert refusal in text_of(told) and told.params.get("response_type") == "ephemeral", value
    # A real id clicked from another channel (a copied payload): refused there, not applied.
    bot.click("suggestion_apply", real, user=OPERATOR, channel="C0ELSEWHERE", message_ts="1.0")
    told = slack.wait_for(lambda c: c.method == "response_url" and c.target == f"suggestion_apply:{real}")
    assert "belongs to another channel" in text_of(told) and told.params.get("response_type") == "ephemeral"
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    [row] = db.rows("SELECT * FROM digest_suggestions WHERE id = :id", id=int(real))
    assert row["status"] == "open" and row["operation_id"] is None
    refused = [r for r in db.audit() if r["action"] == "suggestion.apply"]
    assert len(refused) == len(forged) + 1 and {r["outcome"] for r in refused} == {"refused"}
    assert slack.calls_to("chat.postMessage") == [posted]  # no card, nothing public


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


def test_post_digests_fans_out_to_many_channels_from_one_build(runtime_on, prom):
    """What a caller (the fan-out bench, a script) uses: N channels at once, one build, one failure isolated."""
    from handlers.digest import post_digests
    from ops.metrics import QUERIES

    _, server = prom
    channels = [f"C0MANY{i}" for i in range(6)]
    with LocalSlack(bot_token=BOT_TOKEN) as slack:
        slack.per_channel_limit(1, burst=1)
        runtime = runtime_on(slack)
        before = server.queries_logged()
        results = post_digests(runtime.client, runtime.deps, [*channels, ""])
        firsts = [min(c.at for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == channel)
                  for channel in channels]
        assert "channel_not_found" in str(results[""])  # that one failed, alone
        assert all(results[c].ts for c in channels)  # type: ignore[union-attr]
        for channel in channels:
            [top] = [m for m in slack.messages(channel) if m.get("thread_ts") in (None, m["ts"])]
            assert "Inference digest" in top["text"] and "busy-qwen" in str(top["blocks"])
        assert len([f for f in slack.files if f.completed and f.filename == "digest.png"]) == len(channels)
    assert server.queries_logged() - before == len(QUERIES)
    # Each channel posts its message and, a paced second later, its chart; the channels do not wait for
    # each other, so every digest went out within one pacing second of the first.
    assert max(firsts) - min(firsts) < 1.0, sorted(round(f - min(firsts), 2) for f in firsts)
