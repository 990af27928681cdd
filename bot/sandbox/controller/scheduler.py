"""The scheduler: binds pending pods to the first node that fits (taints, node affinity, capacity),
or records FailedScheduling in kube-scheduler's words."""

from __future__ import annotations

import collections
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from bot.sandbox.controller.karpenter import Karpenter
from bot.sandbox.controller.kubelet import container_status, not_ready_message
from bot.sandbox.objects import (
    Obj,
    is_active,
    make_condition,
    meta_of,
    parse_quantity,
    pod_requests,
    status_of,
    utc_now,
)


def _tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    operator = toleration.get("operator") or "Equal"
    if not toleration.get("key"):
        return operator == "Exists"
    if toleration["key"] != taint.get("key"):
        return False
    return operator == "Exists" or (toleration.get("value") or "") == (taint.get("value") or "")


def _untolerated_taint(pod: Mapping[str, Any], node: Mapping[str, Any]) -> Obj | None:
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not any(_tolerates(t, taint) for t in tolerations):
            return taint
    return None


def _expression_matches(expr: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    key, values = expr.get("key", ""), [str(v) for v in expr.get("values") or []]
    value = labels.get(key)
    match expr.get("operator"):
        case "In":
            return value in values
        case "NotIn":
            return value not in values
        case "Exists":
            return value is not None
        case "DoesNotExist":
            return value is None
        case "Gt" | "Lt" if value is not None and values and value.isdigit() and values[0].isdigit():
            return int(value) > int(values[0]) if expr["operator"] == "Gt" else int(value) < int(values[0])
        case _:
            return False


def _node_matches(pod: Mapping[str, Any], node: Mapping[str, Any]) -> bool:
    """nodeSelector and required node affinity (terms are ORed, expressions ANDed)."""
    spec = pod.get("spec") or {}
    labels = {**(meta_of(node).get("labels") or {}), "metadata.name": meta_of(node).get("name", "")}
    if any(labels.get(k) != v for k, v in (spec.get("nodeSelector") or {}).items()):
        return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    return not terms or any(
        all(_expression_matches(e, labels) for e in [*(t.get("matchExpressions") or []), *(t.get("matchFields") or [])])
        for t in terms
    )


def _allocatable(node: Mapping[str, Any], resource: str) -> Decimal:
    status = status_of(node)
    amount = (status.get("allocatable") or {}).get(resource, (status.get("capacity") or {}).get(resource))
    return parse_quantity(amount)


def _fit_problems(
    pod: Mapping[str, Any], node: Mapping[str, Any], requests: Mapping[str, Decimal], used: Mapping[str, Decimal]
) -> list[str]:
    """Why ``pod`` cannot go to ``node``, in the scheduler's words and filter order."""
    if (node.get("spec") or {}).get("unschedulable"):
        return ["node(s) were unschedulable"]
    if (taint := _untolerated_taint(pod, node)) is not None:
        return [f"node(s) had untolerated taint {{{taint.get('key')}: {taint.get('value') or ''}}}"]
    if not _node_matches(pod, node):
        return ["node(s) didn't match Pod's node affinity/selector"]
    problems = []
    if "pods" in (status_of(node).get("allocatable") or {}) and used.get("pods", 0) + 1 > _allocatable(node, "pods"):
        problems.append("Too many pods")
    for name, amount in sorted(requests.items()):
        if amount > 0 and used.get(name, Decimal(0)) + amount > _allocatable(node, name):
            problems.append(f"Insufficient {name}")
    return problems


class Scheduler(Karpenter):
    """kube-scheduler, simplified; what it cannot place goes to Karpenter when the cluster has it."""

    def _schedule_pending(self) -> None:
        pods = self.api.list("v1", "Pod")
        pending = sorted(
            (p for p in pods if not (p.get("spec") or {}).get("nodeName") and is_active(p)),
            key=lambda p: (
                meta_of(p).get("creationTimestamp", ""), meta_of(p).get("namespace", ""), meta_of(p)["name"]
            ),
        )
        if not pending:
            return
        nodes = sorted(self.api.list("v1", "Node"), key=lambda n: meta_of(n)["name"])
        if not nodes:  # no Node objects: the sandbox's capacity is unlimited
            for pod in pending:
                self._bind(pod, self.virtual_node, None)
            return
        used = self._node_usage(pods)
        unschedulable = []
        for pod in pending:
            node, message = self._pick_node(pod, nodes, used)
            if node is None:
                self._mark_unschedulable(pod, message)
                unschedulable.append(pod)
                continue
            node_name = meta_of(node)["name"]
            for resource, amount in pod_requests(pod).items():
                used[node_name][resource] += amount
            used[node_name]["pods"] += 1
            self._bind(pod, node_name, node)
        self._provision(unschedulable)

    @staticmethod
    def _node_usage(pods: list[Obj]) -> dict[str, collections.defaultdict[str, Decimal]]:
        used: dict[str, collections.defaultdict[str, Decimal]] = collections.defaultdict(
            lambda: collections.defaultdict(Decimal)
        )
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name and is_active(pod):
                for resource, amount in pod_requests(pod).items():
                    used[node_name][resource] += amount
                used[node_name]["pods"] += 1
        return used

    @staticmethod
    def _pick_node(pod: Obj, nodes: list[Obj], used: Mapping[str, Mapping[str, Decimal]]) -> tuple[Obj | None, str]:
        requests = pod_requests(pod)
        reasons: collections.Counter[str] = collections.Counter()
        for node in nodes:
            problems = _fit_problems(pod, node, requests, used.get(meta_of(node)["name"], {}))
            if not problems:
                return node, ""
            reasons.update(problems)
        listed = ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
        return None, f"0/{len(nodes)} nodes are available: {listed}."

    def _mark_unschedulable(self, pod: Obj, message: str) -> None:
        status = status_of(pod)
        scheduled: Obj = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
        if (scheduled.get("status"), scheduled.get("message")) == ("False", message):
            return  # already reported; do not churn the pod or the event on every retry
        condition = make_condition([], "PodScheduled", "False", "Unschedulable", message)
        condition["lastProbeTime"] = None
        pod["status"] = {**status, "phase": "Pending", "conditions": [condition]}
        self.api.put(pod)
        self._recorder.record(pod, "Warning", "FailedScheduling", message, "default-scheduler")

    def _bind(self, pod: Obj, node_name: str, node: Obj | None) -> None:
        meta = meta_of(pod)
        pod["spec"]["nodeName"] = node_name
        now = utc_now()
        containers = (pod.get("spec") or {}).get("containers") or []
        pod["status"] = {
            **status_of(pod),
            "phase": "Pending",
            "hostIP": self._host_ip(node),
            "startTime": now,
            "conditions": [
                make_condition([], "PodScheduled", "True", "", ""),
                make_condition([], "Initialized", "True", "", ""),
                make_condition([], "Ready", "False", "ContainersNotReady", not_ready_message(containers)),
                make_condition([], "ContainersReady", "False", "ContainersNotReady", not_ready_message(containers)),
            ],
            "containerStatuses": [
                container_status(c, ready=False, state={"waiting": {"reason": "ContainerCreating"}})
                for c in containers
            ],
        }
        self.api.put(pod)
        message = f"Successfully assigned {meta.get('namespace')}/{meta['name']} to {node_name}"
        self._recorder.record(pod, "Normal", "Scheduled", message, "default-scheduler")
        self._bound_at[meta["uid"]] = time.monotonic()
        self._later(self.ready_delay, ("Pod", meta.get("namespace") or "", meta["name"]))

    @staticmethod
    def _host_ip(node: Obj | None) -> str:
        for address in status_of(node or {}).get("addresses") or []:
            if address.get("type") == "InternalIP":
                return str(address.get("address"))
        return "10.0.0.1"
