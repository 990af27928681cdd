"""The digest's data: per-deployment numbers from Prometheus and the Kubernetes API, cost from the
instance table, and the advisor's suggestions. Slack-agnostic; handlers/digest_blocks.py renders it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from ops import instances
from ops.advisor import Facts, Suggestion, Thresholds, advise
from ops.errors import OpsError
from ops.metrics import ClusterMetrics, DeploymentMetrics, Key, QuerySettings, Target, collect
from ops.metrics.nodes import NODE_TYPES, NodeTypes

log = logging.getLogger(__name__)

# The inference chart labels what it deploys; a Deployment with this label is a model server even
# before Prometheus has a single sample of it.
CHART_LABEL = ("app.kubernetes.io/component", "inference")
KUBE_TIMEOUT = (5, 20)


class KubeReader(Protocol):
    """What the digest reads from a cluster's API (ops.kube.KubeCluster provides `core` and `apps`)."""

    name: str

    @property
    def core(self) -> Any: ...

    @property
    def apps(self) -> Any: ...


@dataclass(frozen=True)
class ClusterSource:
    """One cluster as the digest sees it."""

    name: str
    prometheus_url: str | None
    region: str = instances.DEFAULT_REGION
    max_replicas: int = 20
    kube: KubeReader | None = None  # None: no start-up times, no chart-labelled discovery, no Node types


@dataclass(frozen=True)
class DeploymentReport:
    metrics: DeploymentMetrics
    price_per_device_hour: float | None
    cost_per_day: float | None
    idle_cost_per_day: float | None
    suggestions: tuple[Suggestion, ...] = ()

    @property
    def severity(self) -> int:
        return max((s.severity for s in self.suggestions), default=0)


@dataclass(frozen=True)
class ClusterStatus:
    name: str
    error: str | None
    warnings: tuple[str, ...]
    deployments: int
    queries: int


@dataclass(frozen=True)
class Digest:
    start: datetime
    end: datetime
    clusters: tuple[ClusterStatus, ...]
    deployments: tuple[DeploymentReport, ...]  # most severe first, then the most expensive
    thresholds: Thresholds
    queries: int
    build_seconds: float = 0.0
    idle_util_pct: float = 10.0  # what "idle" meant for idle cost

    @property
    def window_hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    @property
    def util_mean(self) -> float | None:
        """Accelerator utilization weighted by accelerator-hours, over every measured deployment."""
        pairs = [(r.metrics.util_mean, r.metrics.device_hours or 0) for r in self.deployments
                 if r.metrics.util_mean is not None]
        weight = sum(w for _, w in pairs)
        if not pairs:
            return None
        if weight <= 0:
            return sum(u for u, _ in pairs) / len(pairs)
        return sum(u * w for u, w in pairs) / weight

    @property
    def cost_per_day(self) -> float | None:
        costs = [r.cost_per_day for r in self.deployments if r.cost_per_day is not None]
        return sum(costs) if costs else None

    @property
    def idle_cost_per_day(self) -> float | None:
        costs = [r.idle_cost_per_day for r in self.deployments if r.idle_cost_per_day is not None]
        return sum(costs) if costs else None

    @property
    def worst_latency(self) -> DeploymentReport | None:
        measured = [r for r in self.deployments if r.metrics.e2e_p95 is not None]
        return max(measured, key=lambda r: r.metrics.e2e_p95 or 0) if measured else None

    @property
    def suggestions(self) -> list[Suggestion]:
        every = [s for r in self.deployments for s in r.suggestions]
        return sorted(every, key=lambda s: (-s.severity, -(s.saving_per_day or 0)))

    @property
    def down(self) -> list[ClusterStatus]:
        return [c for c in self.clusters if c.error]


# ---- prices ----------------------------------------------------------------------------------------


def price_per_device_hour(instance_type: str | None, region: str, resource: str | None = None) -> float | None:
    """USD per accelerator-hour (per NeuronCore-hour when the pods request cores), or None if unknown."""
    if not instance_type:
        return None
    try:
        inst = instances.instance(instance_type)
        price = instances.hourly_price(instance_type, region) / inst.devices
    except OpsError:
        return None
    if resource and resource.endswith("neuroncore"):
        price /= inst.cores_per_device
    return price


def cheaper_instance(instance_type: str | None, region: str,
                     headroom: float) -> Callable[[float], tuple[str, float] | None]:
    """For the advisor: the cheapest instance (per device-hour) of the same kind holding `peak MiB × headroom`."""

    def find(peak_mib: float) -> tuple[str, float] | None:
        if not instance_type:
            return None
        try:
            current = instances.instance(instance_type)
            current_price = instances.hourly_price(instance_type, region) / current.devices
        except OpsError:
            return None
        best: tuple[str, float] | None = None
        need_gib = peak_mib * headroom / 1024
        for inst in instances.load_instances().values():
            if inst.accelerator_kind != current.accelerator_kind or inst.memory_per_device_gib < need_gib:
                continue
            if inst.devices > current.devices:
                continue  # a bigger box is not a smaller instance
            price = inst.prices.get(region)
            if price is None:
                continue
            per_device = price / inst.devices
            if per_device < current_price * 0.95 and (best is None or per_device < best[1]):
                best = (inst.name, per_device)
        return best

    return find


# ---- the Kubernetes API: start-up times, chart-labelled deployments ------------------------------------


@dataclass(frozen=True)
class KubeFacts:
    startup: dict[Key, float]  # slowest current pod per deployment: start → Ready, seconds
    labelled: dict[Key, int]  # chart-labelled Deployments → desired replicas
    error: str | None = None


def _ts(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def startup_times(pods: Sequence[Mapping[str, Any]]) -> dict[Key, float]:
    """Per Deployment, the slowest pod that is Ready now: Ready transition − pod start.

    The owner chain is read from the pod alone: its ReplicaSet is `<deployment>-<pod-template-hash>`.
    """
    out: dict[Key, float] = {}
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        owner = next((o for o in meta.get("ownerReferences") or [] if o.get("kind") == "ReplicaSet"), None)
        template_hash = (meta.get("labels") or {}).get("pod-template-hash")
        if owner is None or not template_hash or not str(owner.get("name", "")).endswith(f"-{template_hash}"):
            continue
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        if not ready or ready.get("status") != "True":
            continue
        started = _ts(status.get("startTime")) or _ts(meta.get("creationTimestamp"))
        became_ready = _ts(ready.get("lastTransitionTime"))
        if started is None or became_ready is None or became_ready < started:
            continue
        key = (meta.get("namespace", ""), owner["name"][: -len(template_hash) - 1])
        out[key] = max(out.get(key, 0.0), became_ready - started)
    return out


def _raw(api_call: Callable[..., Any]) -> dict[str, Any]:
    resp = api_call(_preload_content=False, _request_timeout=KUBE_TIMEOUT)
    try:
        return json.loads(resp.data)
    finally:
        resp.release_conn()


def kube_facts(kube: KubeReader) -> KubeFacts:
    try:
        pods = _raw(kube.core.list_pod_for_all_namespaces).get("items", [])
        deployments = _raw(lambda **kw: kube.apps.list_deployment_for_all_namespaces(
            label_selector=f"{CHART_LABEL[0]}={CHART_LABEL[1]}", **kw)).get("items", [])
    except OpsError as exc:
        return KubeFacts({}, {}, exc.message)
    except Exception as exc:  # the API client raises many types; the digest goes on without these facts
        return KubeFacts({}, {}, f"cannot read the Kubernetes API of `{kube.name}` ({type(exc).__name__})")
    labelled = {}
    for dep in deployments:
        meta = dep.get("metadata") or {}
        replicas = (dep.get("spec") or {}).get("replicas")
        labelled[(meta.get("namespace", ""), meta.get("name", ""))] = int(1 if replicas is None else replicas)
    return KubeFacts(startup_times(pods), labelled)


# ---- building --------------------------------------------------------------------------------------


def build(sources: Sequence[ClusterSource], end: datetime, settings: QuerySettings = QuerySettings(),
          thresholds: Thresholds = Thresholds(), *, disabled: Sequence[str] = (),
          scope: Key | None = None, node_types: NodeTypes = NODE_TYPES, **collect_kwargs: Any) -> Digest:
    """Read every cluster (Prometheus and Kubernetes concurrently) and turn the numbers into a Digest."""
    began = time.perf_counter()
    targets = [Target(s.name, s.prometheus_url) for s in sources]
    with ThreadPoolExecutor(max_workers=max(1, len(sources)), thread_name_prefix="kube-facts") as pool:
        facts_futures = {s.name: pool.submit(kube_facts, s.kube) for s in sources if s.kube is not None}
        clusters = collect(targets, end, settings, scope=scope, **collect_kwargs)
        facts = {name: future.result() for name, future in facts_futures.items()}
        # Only where kube_node_labels left instance types unknown: one Node list per cluster.
        typed_futures = {s.name: pool.submit(type_from_nodes, cm, s.kube, node_types)
                         for s, cm in zip(sources, clusters, strict=True) if s.kube is not None and _untyped(cm)}
        typed = {name: future.result() for name, future in typed_futures.items()}
    reports: list[DeploymentReport] = []
    statuses: list[ClusterStatus] = []
    for source, cm in zip(sources, clusters, strict=True):
        kube = facts.get(source.name)
        warnings = list(cm.warnings)
        if kube is not None and kube.error:
            warnings.append(f"kubernetes: {kube.error}")
        if source.name in typed:
            cm, node_error = typed[source.name]
            if node_error:
                warnings.append(f"kubernetes: {node_error}")
        merged = _merge(cm, kube, scope)
        statuses.append(ClusterStatus(source.name, cm.error, tuple(warnings), len(merged), cm.queries))
        for m in merged:
            reports.append(report_for(m, source, thresholds, disabled,
                                      window_hours=settings.window.total_seconds() / 3600))
    reports.sort(key=lambda r: (-r.severity, -(r.cost_per_day or 0), r.metrics.cluster, r.metrics.name))
    return Digest(start=end - settings.window, end=end, clusters=tuple(statuses), deployments=tuple(reports),
                  thresholds=thresholds, queries=sum(c.queries for c in clusters),
                  build_seconds=time.perf_counter() - began, idle_util_pct=settings.idle_util_pct)


def _untyped(cm: ClusterMetrics) -> bool:
    return any(m.instance_type is None and m.untyped_nodes for m in cm.deployments)


def instance_type_on(nodes: Sequence[tuple[str, float]], types: Mapping[str, str]) -> str | None:
    """The instance type holding most of a deployment's accelerators (nodes → requested count)."""
    held: dict[str, float] = {}
    for node, count in nodes:
        if node in types:
            held[types[node]] = held.get(types[node], 0.0) + count
    return max(sorted(held), key=lambda t: held[t]) if held else None


def type_from_nodes(cm: ClusterMetrics, kube: KubeReader | None,
                    node_types: NodeTypes = NODE_TYPES) -> tuple[ClusterMetrics, str | None]:
    """cm with the instance types that kube_node_labels did not give read from the Node objects."""
    if kube is None:
        return cm, None
    try:
        types = node_types.get(kube)
    except OpsError as exc:
        return cm, f"no instance types, so no cost: {exc.message}"
    except Exception as exc:  # the API client raises many types; the digest goes on without cost
        return cm, (f"no instance types, so no cost: cannot list the Nodes of `{kube.name}` "
                    f"({_api_reason(exc)})")
    deployments = [replace(m, instance_type=instance_type_on(m.untyped_nodes, types))
                   if m.instance_type is None and m.untyped_nodes else m for m in cm.deployments]
    return replace(cm, deployments=deployments), None


def _api_reason(exc: Exception) -> str:
    status = getattr(exc, "status", None)
    if status == 403:
        return "HTTP 403: the bot's role needs `list` on `nodes`"
    return f"HTTP {status}" if status else type(exc).__name__


def _merge(cm: ClusterMetrics, kube: KubeFacts | None, scope: Key | None) -> list[DeploymentMetrics]:
    by_key = {m.key: m for m in cm.deployments}
    if kube is not None:
        for key, seconds in kube.startup.items():
            if key in by_key:
                by_key[key] = replace(by_key[key], startup_seconds=seconds)
        if cm.ok:  # a chart-labelled Deployment that Prometheus knows nothing of yet
            for key, replicas in kube.labelled.items():
                if key not in by_key and (scope is None or key == scope):
                    by_key[key] = DeploymentMetrics(cluster=cm.name, namespace=key[0], name=key[1],
                                                    replicas_desired=replicas, startup_seconds=kube.startup.get(key))
    return list(by_key.values())


def report_for(m: DeploymentMetrics, source: ClusterSource, thresholds: Thresholds,
               disabled: Sequence[str] = (), *, window_hours: float = 24.0) -> DeploymentReport:
    price = price_per_device_hour(m.instance_type, source.region, m.device_resource)
    cost = idle = None
    if price is not None and m.device_hours is not None:
        # device_hours covers the window; a digest speaks in days.
        cost = m.device_hours * price * (24.0 / window_hours)
        idle = cost * m.idle_share if m.idle_share is not None else None
    facts = Facts(m=m, price_per_device_hour=price, max_replicas=source.max_replicas,
                  cheaper=cheaper_instance(m.instance_type, source.region, thresholds.memory_headroom))
    return DeploymentReport(metrics=m, price_per_device_hour=price, cost_per_day=cost, idle_cost_per_day=idle,
                            suggestions=tuple(advise(facts, thresholds, disabled)))
