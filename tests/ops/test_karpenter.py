"""ops/karpenter.py's pure logic: which instance types NodePools allow, which requirement excludes
one, and the diagnosis of Pending pods from NodeClaims and Karpenter's Events in upstream's shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bot.sandbox.operators import nodepool
from ops import karpenter

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
GPU = nodepool("gpu", ["g5", "g6"], limits={"nvidia.com/gpu": 4})
NEURON = nodepool("inferentia", ["inf2"])


def ts(seconds_ago: int) -> str:
    return (NOW - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name: str, instance: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "vllm", "resources": {"limits": {"nvidia.com/gpu": 1}}}]}
    if instance:
        spec["nodeSelector"] = {"node.kubernetes.io/instance-type": instance}
    return {"metadata": {"name": name, "uid": f"uid-{name}"}, "spec": spec,
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                          "reason": "Unschedulable"}]}}


def event(pod_name: str, reason: str, message: str, seconds_ago: int = 5) -> dict[str, Any]:
    return {"involvedObject": {"kind": "Pod", "name": pod_name, "uid": f"uid-{pod_name}"}, "reason": reason,
            "message": message, "source": {"component": "karpenter"}, "lastTimestamp": ts(seconds_ago)}


def claim(name: str, *, launched: tuple[str, str, str] | None = None, node: str | None = None,
          itype: str = "g5.xlarge", zone: str = "us-west-2a", age: int = 42) -> dict[str, Any]:
    conditions = []
    labels = {"karpenter.sh/nodepool": "gpu"}
    if launched:
        status, reason, message = launched
        conditions.append({"type": "Launched", "status": status, "reason": reason, "message": message})
        if status == "True":
            labels.update({"node.kubernetes.io/instance-type": itype, "topology.kubernetes.io/zone": zone})
    if node:
        conditions += [{"type": "Registered", "status": "True"}, {"type": "Initialized", "status": "False"}]
    return {"metadata": {"name": name, "labels": labels, "creationTimestamp": ts(age)},
            "spec": {"requirements": [{"key": "node.kubernetes.io/instance-type", "operator": "In",
                                       "values": [itype]}]},
            "status": {"conditions": conditions, **({"nodeName": node} if node else {})}}


def test_the_requirement_that_excludes_an_instance_type_and_what_nodepools_allow():
    assert karpenter.excluding(GPU, "g5.xlarge") is None
    assert karpenter.excluding(GPU, "p4d.24xlarge") == {"key": "karpenter.k8s.aws/instance-family",
                                                       "operator": "In", "values": ["g5", "g6"]}
    allowed = karpenter.allowed_instances([GPU, NEURON])
    assert allowed["g6.xlarge"] == ["gpu"] and allowed["inf2.xlarge"] == ["inferentia"]
    assert "p4d.24xlarge" not in allowed and "g6e.xlarge" not in allowed
    assert karpenter.what_allows(GPU) == "karpenter.k8s.aws/instance-family In [g5, g6]"
    assert karpenter.not_allowed([GPU, NEURON], "p4d.24xlarge", "dev") == (
        "`p4d.24xlarge` is not an instance type any Karpenter NodePool on `dev` allows (NodePool `gpu` allows "
        "karpenter.k8s.aws/instance-family In [g5, g6]; NodePool `inferentia` allows "
        "karpenter.k8s.aws/instance-family In [inf2])")


def test_a_launching_and_a_registered_nodeclaim_are_described_with_type_zone_and_age():
    events = [event("a", "Nominated", "Pod should schedule on: nodeclaim/gpu-x7k2p")]
    [line] = karpenter.diagnose([pod("a")], [GPU], [claim("gpu-x7k2p", launched=("True", "Launched", ""))],
                                events, NOW)
    assert line == ("Karpenter, for pod `a`: NodeClaim `gpu-x7k2p` (g5.xlarge, us-west-2a, 42s old, NodePool `gpu`) "
                    "launched; waiting for its node to register.")
    registered = claim("gpu-x7k2p", launched=("True", "Launched", ""), node="ip-10-0-1-2")
    [line] = karpenter.diagnose([pod("a")], [GPU], [registered], events, NOW)
    assert line.endswith("registered as node `ip-10-0-1-2`; waiting for it to initialize.")


def test_an_insufficient_capacity_launch_failure_names_zones_and_other_families():
    message = ("creating instance, insufficient capacity, with fleet error(s), InsufficientInstanceCapacity: We "
               "currently do not have sufficient g5.xlarge capacity in the Availability Zone you requested "
               "(us-west-2a). Our system will be working on provisioning additional capacity.; "
               "InsufficientInstanceCapacity: We currently do not have sufficient g5.xlarge capacity in the "
               "Availability Zone you requested (us-west-2b).")
    ice = claim("gpu-abcde", launched=("False", "InsufficientCapacity", message))
    events = [event(p, "Nominated", "Pod should schedule on: nodeclaim/gpu-abcde") for p in ("a", "b")]
    [line] = karpenter.diagnose([pod("a", "g5.xlarge"), pod("b", "g5.xlarge")], [GPU, NEURON], [ice], events, NOW)
    assert line.startswith("Karpenter, for pods `a`, `b`: NodeClaim `gpu-abcde` (NodePool `gpu`, 42s old) could not "
                           "launch: insufficient capacity (ICE) for g5.xlarge in us-west-2a, us-west-2b. Fix: ")
    assert "allow more zones" not in line  # the NodePool restricts no zone
    zoned = nodepool("gpu", ["g5", "g6"], zones=["us-west-2a", "us-west-2b"])
    [line] = karpenter.diagnose([pod("a", "g5.xlarge")], [zoned], [ice], events, NOW)
    assert "Fix: wait for EC2 capacity, allow more zones in NodePool `gpu` (its topology.kubernetes.io/zone " \
           "requirement)" in line
    assert line.endswith("; or deploy with `instance=` another family the NodePools allow: `g6.xlarge` (NodePool "
                         "`gpu`).")


def test_a_nodepool_at_its_limits_and_an_instance_no_nodepool_allows():
    full = {**GPU, "status": {"resources": {"nvidia.com/gpu": "4", "cpu": "16"}}}
    limited = event("a", "FailedScheduling",
                    'Failed to schedule pod, all available instance types exceed limits for nodepool: "gpu"')
    [line] = karpenter.diagnose([pod("a")], [full], [], [limited], NOW)
    assert line == ("Karpenter, for pod `a`: NodePool `gpu` is at its limits (nvidia.com/gpu 4 in use of 4), so "
                    "Karpenter launches no node for it. Fix: raise `spec.limits` `nvidia.com/gpu` of NodePool `gpu`, "
                    "or free capacity (scale another model down).")
    incompatible = event("b", "FailedScheduling", 'Failed to schedule pod, incompatible with nodepool "gpu", '
                         'daemonset overhead={}, no instance type satisfied resources {"nvidia.com/gpu":"1"} and '
                         'requirements karpenter.k8s.aws/instance-family In [g5 g6], node.kubernetes.io/instance-type '
                         'In [p4d.24xlarge]; incompatible with nodepool "inferentia", ...')
    [line] = karpenter.diagnose([pod("b", "p4d.24xlarge")], [GPU, NEURON], [], [incompatible], NOW)
    assert line == ("Karpenter, for pod `b`: no instance type satisfied the requirements: no NodePool allows "
                    "p4d.24xlarge (NodePool `gpu` requires `karpenter.k8s.aws/instance-family In [g5, g6]`; "
                    "NodePool `inferentia` requires `karpenter.k8s.aws/instance-family In [inf2]`). Fix: add p4d to "
                    "a NodePool's `spec.template.spec.requirements` (karpenter.k8s.aws/instance-family), or deploy "
                    "with `instance=` one they allow: `g6.xlarge`, `g5.xlarge`.")


def test_nothing_from_karpenter_says_nothing():
    assert karpenter.diagnose([pod("a")], [GPU], [], [], NOW) == []
    other = {**event("a", "FailedScheduling", "0/3 nodes are available"), "source": {"component": "default-scheduler"}}
    assert karpenter.diagnose([pod("a")], [GPU], [], [other], NOW) == []
