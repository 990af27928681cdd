"""Karpenter-aware capacity end to end, over signed Slack HTTP to a real `infer-bot serve`: the test
cluster gets Karpenter's CRDs and NodePools, and the emulator's Karpenter (NodeClaims that become
Nodes, insufficient capacity on demand, `spec.limits`) answers its Pending pods.

- a deploy whose NodeClaim hits insufficient capacity: the rollout thread says so, with the fix;
- a scale past a NodePool's `nvidia.com/gpu` limit: the thread names the NodePool and the field;
- `instance=` no NodePool allows: refused at the card with the NodePools and what they allow;
- no `instance=`: the cheapest type a NodePool allows that fits.
"""

from __future__ import annotations

import base64
import json

import pytest

from bot.sandbox import operators
from ops.helm import BUNDLED_CHART
from tests.support.binaries import needs_helm
from tests.support.slack import APPROVER, OPERATOR, card_for, op_id_of, text_of


def with_karpenter(kube, *pools) -> None:
    for crd in operators.CRDS:
        if crd["spec"]["group"] == "karpenter.sh":
            kube.put(crd)
    for pool in pools:
        kube.put(pool)


@pytest.fixture
def hf_token(kube):
    kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "default"},
              "type": "Opaque", "data": {"token": base64.b64encode(b"hf_test_value").decode()}})


def in_thread(slack, card, *words: str, timeout: float = 30):
    """The first message posted or edited in the card's thread that says all of `words`."""
    ts = card.response["ts"]
    posted = {c.response.get("ts") for c in slack.calls
              if c.method == "chat.postMessage" and c.params.get("thread_ts") == ts and c.response}

    def says(c) -> bool:
        if not all(w in text_of(c) for w in words):
            return False
        if c.method == "chat.postMessage":
            return c.params.get("thread_ts") == ts
        if c.method == "chat.update":  # a progress message edited in place
            posted.update(x.response.get("ts") for x in slack.calls if x.method == "chat.postMessage"
                          and x.params.get("thread_ts") == ts and x.response)
            return c.params.get("ts") in posted
        return False

    return slack.wait_for(says, timeout=timeout)


@needs_helm
def test_an_insufficient_capacity_launch_is_diagnosed_in_the_deploy_thread(make_bot, slack, kube, hf_token):
    with_karpenter(kube, operators.nodepool("gpu", ["g5", "g6"], limits={"nvidia.com/gpu": 8}))
    kube.controller.insufficient_capacity = {"g5.xlarge"}  # EC2 has no g5.xlarge in any zone
    kube.controller.ice_retry = 60  # the failed NodeClaim stays while the rollout watches
    bot = make_bot(chart={"path": str(BUNDLED_CHART)}, cluster={"rollout_timeout_seconds": 8})
    # Three replicas: two fit the test cluster's free GPUs, the third needs a new g5.xlarge.
    bot.slash("deploy qwen3-1.7b-vllm name=q replicas=3 instance=g5.xlarge", user=OPERATOR)
    card = card_for(slack)
    assert "Fits on `g5.xlarge`" in text_of(card)
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])

    told = text_of(in_thread(slack, card, "insufficient capacity (ICE) for g5.xlarge"))
    assert "Karpenter, for pod `q-" in told
    # The zones Karpenter's (truncated) launch error names; the NodePool restricts none, so no zone advice.
    assert ("could not launch: insufficient capacity (ICE) for g5.xlarge in us-west-2a. "
            "Fix: wait for EC2 capacity") in told
    assert "or deploy with `instance=` another family the NodePools allow: `g6.xlarge` (NodePool `gpu`)" in told
    failed = text_of(in_thread(slack, card, "Failed"))
    assert "2/3 ready after 8 s" in failed and "insufficient capacity (ICE) for g5.xlarge" in failed


def test_a_nodepool_at_its_gpu_limit_is_diagnosed_in_the_scale_thread(make_bot, slack, kube):
    with_karpenter(kube, operators.nodepool("gpu", ["g5", "g6"], limits={"nvidia.com/gpu": 1}))
    bot = make_bot(cluster={"rollout_timeout_seconds": 6})
    # qwen has 1 of the 3 GPUs: 2 more replicas fit, Karpenter adds one node, the NodePool's limit stops the 5th.
    bot.slash("scale qwen 5", user=OPERATOR)
    card = card_for(slack)
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])

    failed = text_of(in_thread(slack, card, "Failed"))
    assert "4 of 5 replicas available after 6 s" in failed
    assert ("NodePool `gpu` is at its limits (nvidia.com/gpu 1 in use of 1), so Karpenter launches no node for it. "
            "Fix: raise `spec.limits` `nvidia.com/gpu` of NodePool `gpu`, or free capacity (scale another model "
            "down).") in failed
    [claim] = kube.list("karpenter.sh/v1", "NodeClaim")  # the one node the limit allowed
    assert claim["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "g6.xlarge"


def test_an_instance_no_nodepool_allows_is_refused_at_the_card(make_bot, slack, kube, db):
    with_karpenter(kube, operators.nodepool("gpu", ["g5", "g6"]), operators.nodepool("inferentia", ["inf2"]))
    bot = make_bot(chart={"path": str(BUNDLED_CHART)})
    bot.slash("deploy qwen3-1.7b-vllm instance=p4d.24xlarge", user=OPERATOR)

    reply = slack.wait_for(lambda c: c.method == "response_url")
    assert reply.params.get("response_type") == "ephemeral"
    assert text_of(reply).startswith(
        ":no_entry: `p4d.24xlarge` is not an instance type any Karpenter NodePool on `dev` allows (NodePool `gpu` "
        "allows karpenter.k8s.aws/instance-family In [g5, g6]; NodePool `inferentia` allows "
        "karpenter.k8s.aws/instance-family In [inf2]). Use `instance=g6.xlarge` (the cheapest they allow that fits "
        "`qwen3-1.7b-vllm`), or add p4d to a NodePool's `spec.template.spec.requirements` "
        "(karpenter.k8s.aws/instance-family). Nothing was changed.")
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    refused = [r for r in db.audit() if r["action"] == "deploy" and r["outcome"] == "refused"]
    assert refused and "p4d.24xlarge" in refused[-1]["detail"]
    assert not [r for r in kube.requests if r[0] in ("PATCH", "POST", "PUT")]


def proposed(slack, db) -> tuple[str, str]:
    """The deploy card's text, and the instance type its approved Deployment would select."""
    card = card_for(slack)
    op = db.operation(int(op_id_of(card)))
    [dep] = [o for o in json.loads(op["params"])["objects"] if o["kind"] == "Deployment"]
    return text_of(card), dep["spec"]["template"]["spec"]["nodeSelector"]["node.kubernetes.io/instance-type"]


@needs_helm
def test_the_default_instance_is_the_cheapest_a_nodepool_allows(make_bot, slack, kube, db):
    # The preset's own g6.xlarge is cheaper, but the only NodePool launches g5 only.
    with_karpenter(kube, operators.nodepool("g5-only", ["g5"]))
    bot = make_bot(chart={"path": str(BUNDLED_CHART)})
    bot.slash("deploy qwen3-1.7b-vllm name=q", user=OPERATOR)

    shown, selected = proposed(slack, db)
    assert "Fits on `g5.xlarge`" in shown and "vllm on `g5.xlarge` × 1" in shown
    assert selected == "g5.xlarge"


@needs_helm
def test_a_cheaper_type_a_nodepool_allows_wins_over_the_presets_own(make_bot, slack, kube, db):
    # Upstream's values pin g5.48xlarge for this preset; a g6 NodePool launches g6.48xlarge, which
    # fits the same tensor parallelism for less, so the card proposes that.
    with_karpenter(kube, operators.nodepool("g5-nvidia", ["g5"]), operators.nodepool("g6-nvidia", ["g6"]))
    bot = make_bot(chart={"path": str(BUNDLED_CHART)})
    bot.slash("deploy llama-4-scout-17b-vllm name=scout", user=OPERATOR)

    shown, selected = proposed(slack, db)
    assert "Fits on `g6.48xlarge`" in shown and "vllm on `g6.48xlarge` × 1" in shown
    assert selected == "g6.48xlarge"
