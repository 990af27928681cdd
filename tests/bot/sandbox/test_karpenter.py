"""The Karpenter stand-in (bot/sandbox/controller/karpenter.py) as Karpenter v1 documents itself:
a NodeClaim per Pending pod that goes Launched → Registered → Initialized and becomes a Node, an
insufficient-capacity launch failure on demand, a NodePool at its `spec.limits`, and a pod no
NodePool's requirements allow — each with the Events Karpenter records."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bot.sandbox import operators
from bot.sandbox.environment import node
from bot.sandbox.kubeapi import KubeEmulator
from tests.support.waiting import wait_until


@pytest.fixture
def emu() -> Iterator[KubeEmulator]:
    with KubeEmulator() as emu:
        for crd in operators.CRDS:
            emu.put(crd)
        # One static node, full: every GPU pod below needs a node Karpenter makes.
        emu.put(node({"name": "static-0", "instance_type": "g5.xlarge", "gpus": 0}))
        yield emu


def gpu_pod(name: str, instance: str | None = None, gpus: int = 1) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "vllm", "image": "vllm:1", "resources": {
        "requests": {"nvidia.com/gpu": str(gpus)}, "limits": {"nvidia.com/gpu": str(gpus)}}}]}
    if instance:
        spec["nodeSelector"] = {"node.kubernetes.io/instance-type": instance}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec}


def events(emu: KubeEmulator, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in emu.list("v1", "Event", "default")
            if e["involvedObject"].get("name") == name and e["reason"] == reason]


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in obj.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def test_a_pending_pod_gets_a_nodeclaim_that_becomes_its_node(emu):
    emu.put(operators.nodepool("gpu", ["g5", "g6"], limits={"nvidia.com/gpu": 8}))
    emu.put(gpu_pod("a", instance="g5.2xlarge"))

    claim = wait_until(lambda: next(iter(emu.list("karpenter.sh/v1", "NodeClaim")), None), what="a NodeClaim")
    assert claim["metadata"]["labels"]["karpenter.sh/nodepool"] == "gpu"
    assert claim["metadata"]["ownerReferences"][0]["kind"] == "NodePool"
    reqs = {r["key"]: r for r in claim["spec"]["requirements"]}
    assert reqs["node.kubernetes.io/instance-type"] == {"key": "node.kubernetes.io/instance-type", "operator": "In",
                                                        "values": ["g5.2xlarge"]}
    assert reqs["karpenter.k8s.aws/instance-family"]["values"] == ["g5", "g6"]
    assert claim["spec"]["resources"]["requests"]["nvidia.com/gpu"] == "1"
    # Karpenter records the event after it creates the NodeClaim: wait for it too.
    [nominated] = wait_until(lambda: events(emu, "a", "Nominated"), what="the Nominated event")
    assert nominated["message"] == f"Pod should schedule on: nodeclaim/{claim['metadata']['name']}"
    assert nominated["source"]["component"] == "karpenter"

    name = claim["metadata"]["name"]
    ready = wait_until(lambda: (c := emu.get("karpenter.sh/v1", "NodeClaim", None, name))
                       and condition(c, "Initialized").get("status") == "True" and c, what="initialized")
    assert [condition(ready, t)["status"] for t in ("Launched", "Registered", "Initialized")] == ["True"] * 3
    assert ready["status"]["providerID"].startswith("aws:///us-west-2")
    new_node = emu.get("v1", "Node", None, ready["status"]["nodeName"])
    labels = new_node["metadata"]["labels"]
    assert labels["node.kubernetes.io/instance-type"] == "g5.2xlarge" and labels["karpenter.sh/nodepool"] == "gpu"
    assert labels["topology.kubernetes.io/zone"] == ready["metadata"]["labels"]["topology.kubernetes.io/zone"]
    assert labels["karpenter.sh/capacity-type"] == "on-demand"
    wait_until(lambda: emu.get("v1", "Pod", "default", "a")["spec"].get("nodeName") == new_node["metadata"]["name"],
               what="the pod bound to its node")
    pool = wait_until(lambda: (p := emu.get("karpenter.sh/v1", "NodePool", None, "gpu"))
                      and p.get("status", {}).get("resources", {}).get("nvidia.com/gpu") == "1" and p, what="status")
    assert pool["status"]["resources"]["cpu"] == "8"


def test_insufficient_capacity_fails_the_launch_until_capacity_returns(emu):
    emu.controller.insufficient_capacity = {"g5.xlarge"}
    emu.put(operators.nodepool("gpu", ["g5"], zones=["us-west-2a", "us-west-2b"]))
    emu.put(gpu_pod("b", instance="g5.xlarge"))

    failed = wait_until(lambda: next((c for c in emu.list("karpenter.sh/v1", "NodeClaim")
                                      if condition(c, "Launched").get("status") == "False"), None), what="an ICE")
    launched = condition(failed, "Launched")
    assert launched["reason"] == "InsufficientCapacity"
    assert launched["message"].startswith("creating instance, insufficient capacity, with fleet error(s), "
                                          "InsufficientInstanceCapacity: We currently do not have sufficient "
                                          "g5.xlarge capacity in the Availability Zone you requested (us-west-2a).")
    [event] = wait_until(lambda: events(emu, failed["metadata"]["name"], "InsufficientCapacityError"),
                         what="the InsufficientCapacityError event")
    assert event["message"].startswith(f"NodeClaim {failed['metadata']['name']} event: creating instance")
    assert event["type"] == "Warning"

    emu.controller.insufficient_capacity = set()  # EC2 has capacity again: the next NodeClaim launches
    wait_until(lambda: emu.get("v1", "Pod", "default", "b")["spec"].get("nodeName"), timeout=15,
               what="the pod on a node from a later NodeClaim")
    assert emu.get("karpenter.sh/v1", "NodeClaim", None, failed["metadata"]["name"]) is None


def test_a_nodepool_at_its_limits_makes_no_nodeclaim_and_says_so_on_the_pod(emu):
    emu.put(operators.nodepool("gpu", ["g5"], limits={"nvidia.com/gpu": 1}))
    emu.put(gpu_pod("c1"))
    wait_until(lambda: emu.get("v1", "Pod", "default", "c1")["spec"].get("nodeName"), what="the first pod placed")
    emu.put(gpu_pod("c2"))

    [event] = wait_until(lambda: events(emu, "c2", "FailedScheduling") and [
        e for e in events(emu, "c2", "FailedScheduling") if e["source"]["component"] == "karpenter"], what="event")
    assert event["message"] == 'Failed to schedule pod, all available instance types exceed limits for nodepool: "gpu"'
    assert len(emu.list("karpenter.sh/v1", "NodeClaim")) == 1
    pool = emu.get("karpenter.sh/v1", "NodePool", None, "gpu")
    assert pool["spec"]["limits"] == {"nvidia.com/gpu": "1"} and pool["status"]["resources"]["nvidia.com/gpu"] == "1"

    pool["spec"]["limits"]["nvidia.com/gpu"] = "2"  # raising the limit lets Karpenter launch for it
    emu.put(pool)
    wait_until(lambda: emu.get("v1", "Pod", "default", "c2")["spec"].get("nodeName"), what="the second pod placed")


def test_an_instance_type_no_nodepool_allows_is_incompatible_with_each(emu):
    emu.put(operators.nodepool("gpu", ["g5", "g6"]))
    emu.put(operators.nodepool("inferentia", ["inf2"]))
    emu.put(gpu_pod("d", instance="p4d.24xlarge"))

    [event] = wait_until(lambda: [e for e in events(emu, "d", "FailedScheduling")
                                  if e["source"]["component"] == "karpenter"], what="Karpenter's event")
    message = event["message"]
    assert message.startswith('Failed to schedule pod, incompatible with nodepool "gpu", daemonset overhead={}, no '
                              'instance type satisfied resources {"nvidia.com/gpu":"1","pods":"1"} and requirements ')
    assert "karpenter.k8s.aws/instance-family In [g5 g6]" in message
    assert "node.kubernetes.io/instance-type In [p4d.24xlarge]" in message
    assert '; incompatible with nodepool "inferentia"' in message
    assert emu.list("karpenter.sh/v1", "NodeClaim") == []
