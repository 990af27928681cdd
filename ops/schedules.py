"""What a replica schedule costs or saves: the week it produces, and the workload's price per replica-hour.

A schedule only says "set replicas to N at these times"; what it saves depends on the other
schedules of the same workload (the 08:00 scale-up that ends the 20:00 scale-down's night). So the
saving is computed for the workload's schedules together, over the next seven days from now,
against running around the clock the most replicas it has now or any of them sets.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from ops import cron
from ops.catalog import INSTANCE_TYPE_LABELS
from ops.digest import price_per_device_hour
from ops.errors import OpsError
from ops.kube import DeploymentInfo, KubeCluster

WEEK = timedelta(days=7)
# Accelerators a model server's pods request; a replica's GPU hours count these devices.
DEVICE_RESOURCES = ("nvidia.com/gpu", "aws.amazon.com/neuron", "aws.amazon.com/neuroncore")


@dataclass(frozen=True)
class Rule:
    """One schedule of a workload: set `replicas` at every fire of `cron` in `timezone`, before `until`."""

    replicas: int
    cron: str
    timezone: str
    until: datetime | None = None


@dataclass(frozen=True)
class Footprint:
    """What one replica of a workload occupies, and what an hour of it costs (None: unknown)."""

    devices: int  # accelerators per replica
    resource: str | None  # the device resource it requests: nvidia.com/gpu, …
    instance_type: str | None
    usd_per_device_hour: float | None

    @property
    def why_unknown(self) -> str:
        if not self.devices:
            return "its pods request no GPU or Neuron device"
        if not self.instance_type:
            return "its instance type is unknown (no node selector, no running pod)"
        return f"I have no price for `{self.instance_type}`"


@dataclass(frozen=True)
class Saving:
    device_hours: float  # accelerator hours saved over the week (negative: the schedules add hours)
    usd: float | None  # None when the price is unknown
    baseline: int  # the replica count the saving is measured against
    note: str = ""  # why usd is None
    devices: int = 0  # per replica
    usd_per_device_hour: float | None = None

    def describe(self) -> str:
        hours = f"{self.device_hours:,.0f} GPU hours"
        if self.usd is None:
            return f"{hours}; saving unknown ({self.note})"
        return f"{hours} ≈ ${self.usd:,.2f}"

    def as_dict(self) -> dict[str, Any]:
        return {"device_hours": round(self.device_hours, 2), "usd": None if self.usd is None else round(self.usd, 2),
                "baseline": self.baseline, "note": self.note, "devices": self.devices,
                "usd_per_device_hour": self.usd_per_device_hour}


def saving_of(rules: Sequence[Rule], stored: dict[str, Any], start: datetime) -> Saving:
    """The saving of a workload's schedules now, from what its last card recorded (no cluster call):
    the replicas it ran then, its devices per replica and their price."""
    devices = int(stored.get("devices") or 0)
    rate = stored.get("usd_per_device_hour")
    top = baseline(rules, int(stored.get("baseline") or 0))
    device_hours = replica_hours_saved(rules, top, start) * devices
    if not devices or rate is None:
        return Saving(device_hours, None, top, str(stored.get("note") or "no price recorded"), devices, None)
    return Saving(device_hours, device_hours * float(rate), top, "", devices, float(rate))


def baseline(rules: Sequence[Rule], current: int) -> int:
    """What the workload would run without schedules: the most replicas it has now or any rule sets."""
    return max([current, *(rule.replicas for rule in rules)])


def replica_hours_saved(rules: Sequence[Rule], current: int, start: datetime, span: timedelta = WEEK) -> float:
    """Replica-hours below the baseline over [start, start + span), starting at `current` replicas,
    when every rule fires as scheduled.

    Fires of several rules at the same instant apply in the order given (the later one wins), as
    they would when the scheduler runs them one after the other.
    """
    end = start + span
    events: list[tuple[datetime, int, int]] = []
    for order, rule in enumerate(rules):
        stop = min(end, rule.until) if rule.until else end
        for fire in cron.next_runs(rule.cron, rule.timezone, start, 10_000, stop):
            events.append((fire, order, rule.replicas))
    events.sort(key=lambda e: (e[0], e[1]))
    top = baseline(rules, current)
    saved, level, at = 0.0, current, start
    for fire, _, replicas in events:
        saved += (top - level) * (fire - at).total_seconds() / 3600
        level, at = replicas, fire
    saved += (top - level) * (end - at).total_seconds() / 3600
    return saved


def weekly_saving(rules: Sequence[Rule], current: int, footprint: Footprint, start: datetime) -> Saving:
    replica_hours = replica_hours_saved(rules, current, start)
    device_hours = replica_hours * footprint.devices
    top = baseline(rules, current)
    rate = footprint.usd_per_device_hour
    if not footprint.devices or rate is None:
        return Saving(device_hours, None, top, footprint.why_unknown, footprint.devices, None)
    return Saving(device_hours, device_hours * rate, top, "", footprint.devices, rate)


def read_workload(kube: KubeCluster, name: str, namespace: str) -> DeploymentInfo | None:
    """The Deployment as it is now, or None when it no longer exists (a 404, not an unreachable API)."""
    try:
        resp: Any = kube.apps.read_namespaced_deployment_with_http_info(name, namespace, _preload_content=False)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise OpsError(f"cannot read deployment {namespace}/{name} on `{kube.name}` ({exc.status})",
                       status=exc.status) from None
    except (HTTPError, OSError) as exc:
        raise OpsError(f"cannot reach the Kubernetes API of cluster `{kube.name}` ({type(exc).__name__})") from None
    raw = resp[0] if isinstance(resp, tuple) else resp
    try:
        return DeploymentInfo.from_raw(json.loads(raw.data))
    finally:
        raw.release_conn()


def _devices(pod_spec: Any) -> tuple[int, str | None]:
    total, resource = 0, None
    for container in pod_spec.containers or []:
        res = container.resources
        wanted = {**((res.requests or {}) if res else {}), **((res.limits or {}) if res else {})}
        for name in DEVICE_RESOURCES:
            if str(wanted.get(name, "0")).isdigit() and int(wanted.get(name, 0)):
                total += int(wanted[name])
                resource = name
    return total, resource


def footprint(kube: KubeCluster, name: str, namespace: str, region: str) -> Footprint:
    """Devices per replica from the pod template; the instance type from its node selector, else from
    the nodes its pods run on (the `node.kubernetes.io/instance-type` label the kubelet sets)."""
    try:
        dep = kube.apps.read_namespaced_deployment(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            raise OpsError(f"no Deployment `{name}` in namespace `{namespace}` of cluster `{kube.name}`. "
                           f"`/infer status cluster={kube.name}` lists what runs there.") from None
        raise OpsError(f"cannot read deployment {namespace}/{name} on `{kube.name}` ({exc.status})") from None
    pod_spec: Any = dep.spec.template.spec
    devices, resource = _devices(pod_spec)
    selector = pod_spec.node_selector or {}
    instance_type = next((selector[k] for k in INSTANCE_TYPE_LABELS if k in selector), None)
    if instance_type is None:
        instance_type = _instance_of_pods(kube, namespace, dict(dep.spec.selector.match_labels or {}))
    price = price_per_device_hour(instance_type, region, resource) if devices else None
    return Footprint(devices, resource, instance_type, price)


def _instance_of_pods(kube: KubeCluster, namespace: str, labels: dict[str, str]) -> str | None:
    if not labels:
        return None
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    try:
        pods = kube.core.list_namespaced_pod(namespace, label_selector=selector).items
        for pod in pods:
            if pod.spec and pod.spec.node_name:
                node: Any = kube.core.read_node(pod.spec.node_name)
                node_labels = node.metadata.labels or {}
                found = next((node_labels[k] for k in INSTANCE_TYPE_LABELS if k in node_labels), None)
                if found:
                    return str(found)
    except ApiException:
        return None  # a price is a nicety on the card; an unreadable node leaves it unknown
    return None


