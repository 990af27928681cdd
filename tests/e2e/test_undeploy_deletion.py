"""Undeploy and rollback against deletion as kube-apiserver does it: a Foreground DELETE keeps the
owner (deletionTimestamp, `foregroundDeletion`) until the garbage collector removed its dependents,
and a finalizer holds an object until its controller lets go. The emulator's collector works with a
delay, as a real one does, so a bot that reads back right after its DELETE sees the objects still
there. Driven over signed HTTP; what the bot says is read from the local Slack Web API."""

from __future__ import annotations

import base64

import pytest

from ops.helm import BUNDLED_CHART
from tests.support.binaries import needs_helm
from tests.support.slack import APPROVER, OPERATOR, card_for, op_id_of, text_of
from tests.support.waiting import wait_until

pytestmark = needs_helm

GC_DELAY = 0.5  # seconds per link of the chain: a Deployment goes ~2 s after its Foreground DELETE


@pytest.fixture
def slow_gc(kube):
    kube.gc_delay = GC_DELAY
    kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "default"},
              "type": "Opaque", "data": {"token": base64.b64encode(b"hf_test_value").decode()}})
    return kube


def finished(bot, slack, card, timeout: float = 40) -> str:
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
    done = slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"]
                          and ("Succeeded" in text_of(c) or "Failed" in text_of(c)), timeout=timeout)
    return text_of(done)


def thread_texts(slack, card) -> list[str]:
    """Every text shown in the card's thread, edits of the progress message included."""
    posted = [c for c in slack.calls if c.method == "chat.postMessage"
              and c.params.get("thread_ts") == card.response["ts"]]
    ids = {c.response["ts"] for c in posted if c.response}
    edits = [c for c in slack.calls if c.method == "chat.update" and c.params.get("ts") in ids]
    return [text_of(c) for c in [*posted, *edits]]


def names(kube, api_version, kind, prefix) -> list[str]:
    return [o["metadata"]["name"] for o in kube.list(api_version, kind, "default")
            if o["metadata"]["name"].startswith(prefix)]


def test_undeploy_waits_for_foreground_deletion_and_reports_progress(make_bot, slack, slow_gc):
    # Old code: "Failed: still there after delete: `Deployment/gone`" (it read back at once).
    bot = make_bot(chart={"path": str(BUNDLED_CHART)})
    bot.slash("deploy qwen3-1.7b-vllm name=gone replicas=2", user=OPERATOR)
    assert "Succeeded" in finished(bot, slack, card_for(slack, n=1))

    bot.slash("undeploy gone", user=OPERATOR)
    card = card_for(slack, n=2)
    result = finished(bot, slack, card)
    assert "Succeeded" in result and "removed" in result and "`Deployment/gone`" in result
    # Everything is gone when the bot says so: the owner went last, after its ReplicaSet and pods.
    assert slow_gc.get("apps/v1", "Deployment", "default", "gone") is None
    assert slow_gc.get("v1", "Service", "default", "gone") is None
    assert names(slow_gc, "apps/v1", "ReplicaSet", "gone-") == [] and names(slow_gc, "v1", "Pod", "gone-") == []
    # ... and it said what it was waiting for meanwhile, in the card's thread
    shown = "\n".join(thread_texts(slack, card))
    assert "waiting for `Deployment/gone`" in shown and "foregroundDeletion" in shown
    assert slow_gc.get("apps/v1", "Deployment", "default", "qwen") is not None  # the other model is untouched


def test_rollback_prunes_an_autoscaler_and_waits_until_it_is_gone(make_bot, slack, slow_gc):
    # Old code: reported the HPA removed while the API server still held it (foregroundDeletion).
    slow_gc.gc_delay = 1.5
    bot = make_bot(chart={"path": str(BUNDLED_CHART)})
    bot.slash("deploy qwen3-1.7b-vllm name=chat", user=OPERATOR)
    assert "Succeeded" in finished(bot, slack, card_for(slack, n=1))
    bot.slash("autoscale chat min=1 max=2 metric=cpu", user=OPERATOR)
    assert "Succeeded" in finished(bot, slack, card_for(slack, n=2))

    bot.slash("rollback chat revision=1", user=OPERATOR)
    card = card_for(slack, n=3)
    assert "delete `HorizontalPodAutoscaler/chat`" in text_of(card)
    result = finished(bot, slack, card)
    assert "Succeeded" in result and "removed `HorizontalPodAutoscaler/chat`" in result
    assert slow_gc.get("autoscaling/v2", "HorizontalPodAutoscaler", "default", "chat") is None
    assert any("waiting for `HorizontalPodAutoscaler/chat`" in t for t in thread_texts(slack, card))


def test_undeploy_names_the_finalizer_that_holds_an_object(make_bot, slack, slow_gc, db):
    # Old code: "still there after delete: `Service/held`", without what holds it.
    bot = make_bot(chart={"path": str(BUNDLED_CHART)}, cluster={"rollout_timeout_seconds": 3})
    bot.slash("deploy qwen3-1.7b-vllm name=held", user=OPERATOR)
    assert "Succeeded" in finished(bot, slack, card_for(slack, n=1))
    service = slow_gc.get("v1", "Service", "default", "held")
    service["metadata"]["finalizers"] = ["example.com/protect"]  # what a foreign controller would add
    slow_gc.put(service)

    bot.slash("undeploy held", user=OPERATOR)
    card = card_for(slack, n=2)
    result = finished(bot, slack, card)
    assert "Failed" in result
    assert "Service held is held by finalizer example.com/protect" in result and "after 3 s" in result
    assert "`Deployment/held`" in result  # what did go is listed too
    assert slow_gc.get("apps/v1", "Deployment", "default", "held") is None
    assert slow_gc.get("v1", "Service", "default", "held")["metadata"]["deletionTimestamp"]
    # no "removed" revision is recorded for a release that is still partly there
    rows = db.rows("SELECT action FROM release_revisions WHERE name = 'held' ORDER BY revision")
    assert [r["action"] for r in rows] == ["deploy"]

    held = slow_gc.get("v1", "Service", "default", "held")
    held["metadata"]["finalizers"] = []  # the controller lets go: the object goes, as the bot said it would
    slow_gc.put(held)
    wait_until(lambda: slow_gc.get("v1", "Service", "default", "held") is None, what="service gone")
