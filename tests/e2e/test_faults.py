"""Faults survived: Slack and Kubernetes errors are retried only where a retry cannot act twice,
and a cluster that is down gets a clear message while the others keep working."""

from __future__ import annotations

from bot.sandbox.slack.webapi import Call
from tests.support.botproc import Database, free_port
from tests.support.cluster import scale_patches
from tests.support.config import base_config
from tests.support.slack import APPROVER, OPERATOR, card_for, op_id_of, text_of
from tests.support.waiting import wait_until


def test_kubernetes_5xx_on_patch_and_watch_is_retried_and_the_scale_succeeds(bot, slack, kube):
    kube.fail_next("PATCH", r"/deployments/qwen/scale$", 500, times=1)
    kube.fail_next("GET", r"/namespaces/default/deployments$", 503, times=2)  # the watch stream
    bot.slash("scale qwen 2", user=OPERATOR)
    card = card_for(slack)
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
    slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"] and "Succeeded" in text_of(c),
                   timeout=30)
    assert len(scale_patches(kube)) == 2  # the failed one and its retry; the same absolute value
    assert kube.get("apps/v1", "Deployment", "default", "qwen")["status"]["readyReplicas"] == 2


def test_a_409_conflict_on_the_scale_patch_is_sent_again_and_applies_once(bot, slack, kube):
    kube.fail_next("PATCH", r"/deployments/qwen/scale$", 409, times=1)  # someone changed it meanwhile
    bot.slash("scale qwen 3", user=OPERATOR)
    card = card_for(slack)
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
    slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"] and "Succeeded" in text_of(c),
                   timeout=30)
    assert len(scale_patches(kube)) == 2
    assert kube.get("apps/v1", "Deployment", "default", "qwen")["spec"]["replicas"] == 3


def test_card_update_is_retried_after_a_slack_5xx(bot, slack):
    bot.slash("scale qwen 2", user=OPERATOR)
    card = card_for(slack)
    slack.fail("chat.update", times=1, status=500)
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
    slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"] and "Succeeded" in text_of(c),
                   timeout=30)
    # The failed update is retried after a back-off; by then the worker has finished. The retry
    # must not put the stale "approved" card back over "succeeded". Three refreshes of the card
    # follow the approval (the click's, the worker's at start and at the end), and each stops at
    # its first 200: once three have landed, nothing else is going to touch the card.
    def card_updates() -> list[Call]:
        return [u for u in slack.calls_to("chat.update") if u.params.get("ts") == card.response["ts"]]

    wait_until(lambda: len([u for u in card_updates() if u.status == 200]) >= 3,
               what="the click's retried card update and the worker's two")
    updates = slack.calls_to("chat.update")
    assert updates[0].status == 500 and all(u.status == 200 for u in updates[1:])
    shown = slack.find_message("C0OPS", card.response["ts"])  # what the channel shows now
    assert "Succeeded" in str(shown["blocks"]) and "op_approve" not in str(shown["blocks"])
    replies = [m["text"] for m in slack.thread("C0OPS", card.response["ts"])]
    assert "Succeeded" in replies[-1]  # and the thread ends with the result


def test_a_card_post_that_fails_is_not_retried_and_nothing_is_pending(bot, slack, kube):
    slack.fail("chat.postMessage", times=1, status=500)
    bot.slash("scale qwen 2", user=OPERATOR)
    told = slack.wait_for(lambda c: c.method == "response_url")
    assert "could not post the approval card" in text_of(told) and "nothing was changed" in text_of(told)
    posts = slack.calls_to("chat.postMessage")
    assert [c.status for c in posts] == [500]  # a 5xx may have posted: never post the card twice
    db = Database(bot.database_url)
    wait_until(lambda: db.rows("SELECT status FROM operations") == [{"status": "rejected"}], what="rejected")
    assert scale_patches(kube) == []


def test_a_cluster_that_is_down_does_not_stop_the_others(make_bot, slack, kube, tmp_path):
    config = base_config(kube.write_kubeconfig(tmp_path / "kubeconfig"))
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text((tmp_path / "kubeconfig").read_text().replace(kube.url, f"http://127.0.0.1:{free_port()}"))
    config["clusters"].append({"name": "down", "kubeconfig": str(dead), "namespace": "default"})
    bot = make_bot(config)
    bot.slash("status cluster=down", user=OPERATOR)
    down = slack.wait_for(lambda c: c.method == "response_url")
    assert "cannot reach the Kubernetes API of cluster `down`" in text_of(down)
    bot.slash("clusters", user=OPERATOR)
    listing = slack.wait_for(lambda c: c.method == "response_url" and "Clusters" in text_of(c), timeout=30)
    assert "*dev*" in text_of(listing) and "reachable (v1." in text_of(listing)
    assert "*down*" in text_of(listing) and "unreachable" in text_of(listing)
    bot.slash("status cluster=dev", user=OPERATOR)
    slack.wait_for(lambda c: c.method == "response_url" and "1/1 ready" in text_of(c))


def test_a_card_post_whose_answer_is_lost_is_not_posted_twice(bot, slack, kube, db):
    slack.drop_response("chat.postMessage")
    bot.slash("scale qwen 2", user=OPERATOR)
    told = slack.wait_for(lambda c: c.method == "response_url", timeout=20)
    assert "connection lost" in text_of(told) and "it is void" in text_of(told)
    cards = [m for m in slack.messages("C0OPS") if "op_approve" in str(m.get("blocks"))]
    assert len(cards) == 1  # it landed once, and was not sent again
    wait_until(lambda: db.rows("SELECT status FROM operations") == [{"status": "rejected"}], what="rejected")
    bot.click("op_approve", "1", user=APPROVER, message_ts=cards[0]["ts"])  # the void card's button
    refused = slack.wait_for(lambda c: c.method == "chat.postEphemeral")
    assert "already rejected" in refused.params["text"]
    assert scale_patches(kube) == []
