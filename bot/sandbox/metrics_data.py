"""Generated Prometheus data: model servers with known, hand-computable behaviour, backfilled with
`promtool tsdb create-blocks-from openmetrics` and served by a real `prometheus` on loopback.

It lives in the product (not only the tests) because the local sandbox serves it too: there,
`/infer digest now` and `/infer metrics` read a real Prometheus over this data. The tests reuse the
same generator (tests/support/prometheus.py) with their own deployments and assert every figure.

The data imitates what a default ai-on-eks install scrapes (METRICS.md names and label shapes): DCGM
per GPU (with the `exported_*` spelling where asked); neuron-monitor per NeuronCore labelled as its
exporter labels it (EC2 labels only: `instance_id`, `neuroncore`, … — the scrape adds the
DaemonSet pod's `namespace`/`pod`, not the model server's), or, where asked, from inside the model
server's pod; vLLM per pod under the names of its version (0.11 renamed TPOT, and finishes failed
requests with `finished_reason="error"`); kube-state-metrics as installed by default (pod →
ReplicaSet → Deployment owners, requests with the node, `kube_node_info` with the EC2 provider id,
replicas, restarts; `kube_node_labels` with the instance type only for a DataSet that allow-lists
it). The Nodes themselves (instance-type label, providerID) are `DataSet.nodes()`, for the
Kubernetes API. Plus noise the digest must ignore (coredns, an unassigned GPU, a NeuronCore busy on
a node where no pod requests Neuron devices).

Every value is a constant, a two-level step or a straight line over the window, and counters grow
linearly, so `rate()` is exact and each expected figure is a short formula (`DataSet.expected`).
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.sandbox.promserver import (  # noqa: F401  (re-exported: the tests and benches import them from here)
    INSTALL_HINT,
    PrometheusServer,
    backfill,
    binaries,
    find_binaries,
    free_port,
)

E2E_BUCKETS = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)
TTFT_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0)
TPOT_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.4)
BLOCK = 7200  # promtool cuts 2-hour blocks; one input file per block keeps it to a single pass each


# ---- the deployments -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """One deployment's behaviour over the 24 h window. Per-pod values unless said otherwise."""

    name: str
    instance_type: str
    replicas: int
    accelerator: str = "gpu"  # gpu | neuron
    namespace: str = "default"
    util: float = 50.0  # percent, per GPU (Neuron: per core, see core_utils)
    low_util: float | None = None  # value during the first `low_hours` of the window
    low_hours: float = 0.0
    core_utils: tuple[float, ...] = ()  # Neuron: ratio per NeuronCore (0–1)
    exported: bool = False  # DCGM labels as exported_namespace / exported_pod
    fb_used: float = 8192.0  # MiB per GPU
    fb_free: float = 16384.0
    rps: float = 1.0  # finished requests per second per pod
    abort: float = 0.0  # share of finished requests that were aborted
    e2e: tuple[tuple[float, float], ...] = ((1.0, 0.4), (2.0, 0.4), (4.0, 0.2))  # (upper bound, share)
    ttft: tuple[tuple[float, float], ...] = ((0.25, 0.8), (0.5, 0.2))
    tpot: tuple[tuple[float, float], ...] = ((0.05, 0.5), (0.1, 0.5))
    e2e_mean: float = 1.5
    ttft_mean: float = 0.2
    tpot_mean: float = 0.06
    queue: tuple[float, float] = (0.0, 0.0)  # waiting requests per pod at window start, at window end
    running: float = 4.0
    kv: tuple[float, float] = (0.3, 0.3)  # KV-cache use in the first, the second half of the window
    preemptions_per_s: float = 0.0
    restarts_at_hours: tuple[float, ...] = ()  # restarts of the first pod, hours into the window
    # What owns the pods, as the inference chart's frameworks make them: a Deployment (vllm, triton,
    # aibrix, diffusers, nim), a LeaderWorkerSet (lws-vllm: one StatefulSet of leaders named after it)
    # or a RayService (ray-vllm: the pods belong to its RayCluster `<name>-raycluster-<hash>`).
    workload: str = "Deployment"
    # vLLM's `model_name` label: the served model name, which is the model id given to `vllm serve`
    # (upstream's chart sets no --served-model-name). Empty: the case's name, as with
    # `--served-model-name <name>`.
    model: str = ""
    vllm: str = "0.10.2"  # the model server's vLLM version: which metric names it exports
    error: float = 0.0  # share of finished requests that failed in the engine (vLLM ≥ 0.11 only)
    # Neuron: "exporter" = neuron-monitor's DaemonSet (EC2 labels only, attributed through the node);
    # "pod" = neuron-monitor inside the model server's pod (its scrape labels name that pod).
    neuron_labels: str = "exporter"
    # Pod i runs on nodes[i % len(nodes)] (other cases may name the same nodes); none: a node of its own per pod.
    nodes: tuple[str, ...] = ()
    requests_per_pod: int = 1  # accelerators (Neuron: devices, or cores with neuron_resource) per pod
    neuron_resource: str = "aws_amazon_com_neuron"  # or aws_amazon_com_neuroncore

    def __post_init__(self) -> None:
        if self.error and not self.new_vllm:
            raise ValueError(f"{self.name}: vLLM {self.vllm} has no finished_reason=\"error\" (0.11 added it)")

    @property
    def resource(self) -> str:
        return self.neuron_resource if self.accelerator == "neuron" else "nvidia_com_gpu"

    @property
    def vllm_version(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.vllm.split(".")[:3])

    @property
    def new_vllm(self) -> bool:
        return self.vllm_version >= (0, 11)

    @property
    def tpot_names(self) -> tuple[str, ...]:
        """vLLM 0.11 renamed TPOT and still exports the old name (deprecated); 0.12 hides it."""
        old, new = "vllm:time_per_output_token_seconds", "vllm:inter_token_latency_seconds"
        if not self.new_vllm:
            return (old,)
        return (new, old) if self.vllm_version < (0, 12) else (new,)

    @property
    def group_size(self) -> int:
        """Pods (each with one accelerator) per replica: a LeaderWorkerSet group is a leader and a worker."""
        return 2 if self.workload == "LeaderWorkerSet" else 1

    def pods(self) -> list[Pod]:
        if self.workload == "LeaderWorkerSet":
            # The leaders are the StatefulSet <lws>'s pods <lws>-<group>; each group's workers are the
            # StatefulSet <lws>-<group>'s pods <lws>-<group>-<n>. Only the leader serves (vLLM metrics).
            return [pod for i in range(self.replicas) for pod in (
                Pod(f"{self.name}-{i}", "StatefulSet", self.name, serves=True),
                Pod(f"{self.name}-{i}-1", "StatefulSet", f"{self.name}-{i}", serves=False))]
        if self.workload == "RayService":
            cluster = f"{self.name}-raycluster-{_hash(self.name, 5)}"
            return [Pod(f"{cluster}-gpu-group-worker-{_hash(self.name + str(i), 5)}", "RayCluster", cluster)
                    for i in range(self.replicas)]
        rs = f"{self.name}-{_hash(self.name, 10)}"
        return [Pod(f"{rs}-{_hash(self.name + str(i), 5)}", "ReplicaSet", rs) for i in range(self.replicas)]


@dataclass(frozen=True)
class Pod:
    name: str
    owner_kind: str  # kube_pod_owner's owner_kind / owner_name
    owner_name: str
    serves: bool = True  # exposes the vLLM metrics (an LWS worker does not)


ZONE = "us-west-2a"
REGION = "us-west-2"


def instance_id_of(node: str) -> str:
    """The EC2 instance behind a node name, stable: what its providerID and neuron-monitor's labels carry."""
    return "i-0" + hashlib.sha256(node.encode()).hexdigest()[:16]


def provider_id_of(node: str) -> str:
    return f"aws:///{ZONE}/{instance_id_of(node)}"


def generated_node(index: int) -> str:
    return f"ip-10-0-{index // 250}-{index % 250}.us-west-2.compute.internal"


@dataclass(frozen=True)
class Placement:
    case: Case
    index: int  # the pod's index within its case
    pod: Pod
    node: str


@dataclass(frozen=True)
class NodeSpec:
    """A Node of the data set, as the Kubernetes API holds it (bot.sandbox.environment.node builds one)."""

    name: str
    instance_type: str
    accelerator: str  # gpu | neuron
    provider_id: str


def _hash(text: str, n: int) -> str:
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    digest = hashlib.sha256(text.encode()).digest()
    return "".join(alphabet[b % len(alphabet)] for b in digest[:n])


# ---- expected values (the formulas the tests compare against) ------------------------------------


def histogram_quantile(q: float, shares: Sequence[tuple[float, float]], bounds: Sequence[float]) -> float:
    """Prometheus' histogram_quantile on cumulative shares: linear inside the bucket."""
    cumulative = []
    total = 0.0
    for bound in bounds:
        total += sum(share for upper, share in shares if upper == bound)
        cumulative.append((bound, total))
    rank = q * total
    previous_bound, previous = 0.0, 0.0
    for bound, count in cumulative:
        if count >= rank:
            return previous_bound + (bound - previous_bound) * (rank - previous) / (count - previous)
        previous_bound, previous = bound, count
    raise AssertionError("rank above the last bucket")


def quantile(q: float, values: Sequence[float]) -> float:
    """Prometheus' quantile_over_time: linear interpolation between the closest ranks."""
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class DataSet:
    cases: tuple[Case, ...]
    end: datetime  # the window is (end − 24 h, end]; data runs on to end + `after`
    interval: int = 60  # seconds between samples
    step: int = 300  # the subquery step the expected values assume
    window: int = 24 * 3600
    before: int = 3600
    after: int = 3600
    # kube-state-metrics with --metric-labels-allowlist=nodes=[node.kubernetes.io/instance-type]: only
    # then is there a kube_node_labels series with the instance type (a default install has none).
    node_labels: bool = False

    @property
    def window_start(self) -> float:
        return self.end.timestamp() - self.window

    # -- where the pods run -------------------------------------------------------------------------

    def placements(self) -> list[Placement]:
        out = []
        counter = 0
        for case in self.cases:
            for index, pod in enumerate(case.pods()):
                counter += 1
                node = case.nodes[index % len(case.nodes)] if case.nodes else generated_node(counter)
                out.append(Placement(case, index, pod, node))
        return out

    def nodes(self) -> list[NodeSpec]:
        """Every node a pod of the data set runs on, once, as the Kubernetes API holds it."""
        seen: dict[str, NodeSpec] = {}
        for p in self.placements():
            spec = NodeSpec(p.node, p.case.instance_type, p.case.accelerator, provider_id_of(p.node))
            if seen.setdefault(p.node, spec).instance_type != spec.instance_type:
                raise ValueError(f"node {p.node} is given two instance types")
        return list(seen.values())

    def _neuron_cores(self) -> dict[str, list[float]]:
        """node → the utilization ratio of every NeuronCore neuron-monitor's DaemonSet reports there."""
        cores: dict[str, list[float]] = {}
        for p in self.placements():
            if p.case.accelerator == "neuron" and p.case.neuron_labels == "exporter":
                cores.setdefault(p.node, []).extend(p.case.core_utils)
        return cores

    def _neuron_requests(self) -> dict[str, float]:
        """node → Neuron resources requested there by every pod."""
        out: dict[str, float] = {}
        for p in self.placements():
            if p.case.accelerator == "neuron":
                out[p.node] = out.get(p.node, 0.0) + p.case.requests_per_pod
        return out

    # -- value functions of time (t in Unix seconds) ------------------------------------------------

    def hours_in(self, t: float) -> float:
        return (t - self.window_start) / 3600

    def util(self, case: Case, t: float) -> float:
        if case.low_util is not None and 0 < self.hours_in(t) <= case.low_hours:
            return case.low_util
        return case.util

    def queue(self, case: Case, t: float) -> float:
        start, end = case.queue
        return start + (end - start) * (t - self.window_start) / self.window

    def kv(self, case: Case, t: float) -> float:
        return case.kv[0] if self.hours_in(t) <= 12 else case.kv[1]

    def restarts(self, case: Case, t: float) -> int:
        return sum(1 for h in case.restarts_at_hours if self.hours_in(t) >= h)

    def steps(self) -> list[float]:
        start = self.window_start
        return [start + k * self.step for k in range(1, self.window // self.step + 1)]

    # -- what the digest must report ------------------------------------------------------------------

    def _neuron_expected(self, case: Case) -> tuple[float, float]:
        """(mean utilization %, idle share) of a Neuron case, as METRICS.md says to attribute it.

        In a pod's own series (neuron_labels="pod"): the mean of its cores. Through the node: each
        pod takes the share of its node's cores that it requested of the node's Neuron requests.
        """
        if case.neuron_labels == "pod":
            return (100 * sum(case.core_utils) / len(case.core_utils),
                    sum(1 for u in case.core_utils if u * 100 < 10) / len(case.core_utils))
        cores, requested = self._neuron_cores(), self._neuron_requests()
        total = samples = idle = 0.0
        for p in self.placements():
            if p.case is case:
                share = case.requests_per_pod / requested[p.node]
                total += share * sum(100 * u for u in cores[p.node])
                samples += share * len(cores[p.node])
                idle += share * sum(1 for u in cores[p.node] if u * 100 < 10)
        return total / samples, idle / samples

    def expected(self, name: str) -> dict[str, Any]:
        case = next(c for c in self.cases if c.name == name)
        steps = self.steps()
        n = case.replicas
        if case.accelerator == "neuron":
            mean, idle = self._neuron_expected(case)
            per_step = [mean] * len(steps)
        else:
            per_step = [self.util(case, t) for t in steps]
            idle = sum(1 for u in per_step if u < 10) / len(per_step)
        rps = case.rps * n
        queue = [self.queue(case, t) * n for t in steps]
        kv = [self.kv(case, t) for t in steps]
        has_traffic = rps > 0
        devices = n * case.group_size * case.requests_per_pod
        out: dict[str, Any] = {
            "accelerator": case.accelerator,
            "instance_type": case.instance_type,
            "devices": float(devices),
            "device_hours": float(devices * self.window / 3600),
            "util_mean": sum(per_step) / len(per_step),
            "util_p95": quantile(0.95, per_step),
            "idle_share": idle,
            "rps_mean": rps,
            "requests": rps * self.window,
            "abort_share": case.abort,
            "error_share": case.error if case.new_vllm else None,
            "failed_share": case.abort + case.error,
            "queue_mean": sum(queue) / len(queue),
            "queue_max": max(queue),
            "queue_slope_per_hour": (case.queue[1] - case.queue[0]) * n / (self.window / 3600),
            "kv_mean": sum(kv) / len(kv),
            "kv_max": max(kv),
            "preemptions": case.preemptions_per_s * n * self.window,
            # Replicas come from kube_deployment_*: a LeaderWorkerSet or RayService has none.
            "replicas_desired": n if case.workload == "Deployment" else None,
            "replicas_available": n if case.workload == "Deployment" else None,
            "restarts": len(case.restarts_at_hours),
        }
        if case.accelerator == "gpu":
            out["mem_used_mib"] = case.fb_used * n * case.group_size
            out["mem_total_mib"] = (case.fb_used + case.fb_free) * n * case.group_size
        if has_traffic:
            out.update(
                e2e_p50=histogram_quantile(0.5, case.e2e, E2E_BUCKETS),
                e2e_p95=histogram_quantile(0.95, case.e2e, E2E_BUCKETS),
                e2e_p99=histogram_quantile(0.99, case.e2e, E2E_BUCKETS),
                ttft_p95=histogram_quantile(0.95, case.ttft, TTFT_BUCKETS),
                tpot_mean=case.tpot_mean,
                tpot_p95=histogram_quantile(0.95, case.tpot, TPOT_BUCKETS),
            )
        return out

    # -- the series ---------------------------------------------------------------------------------

    def series(self) -> Iterator[tuple[str, dict[str, str], Callable[[float], float]]]:
        origin = self.window_start - self.before  # counters are 0 here and grow linearly

        def counter(per_s: float) -> Callable[[float], float]:
            return lambda t: per_s * (t - origin)

        def const(v: float) -> Callable[[float], float]:
            return lambda t: v

        ksm = {"job": "kube-state-metrics", "instance": "10.0.0.5:8080"}
        for spec in self.nodes():
            yield ("kube_node_info", {**ksm, "node": spec.name, "provider_id": spec.provider_id,
                                      "internal_ip": _internal_ip(spec.name), "kubelet_version": "v1.33.5-eks-113cf36",
                                      "container_runtime_version": "containerd://1.7.27",
                                      "os_image": "Amazon Linux 2023.8.20250818"}, const(1))
            if self.node_labels:
                yield ("kube_node_labels", {**ksm, "node": spec.name,
                                            "label_node_kubernetes_io_instance_type": spec.instance_type}, const(1))
        runtime = 0
        neuron_nodes = self._neuron_cores()
        core_index: dict[str, int] = {}
        for case in self.cases:
            if case.workload == "Deployment":  # kube-state-metrics knows no custom resources by default
                yield ("kube_replicaset_owner", {**ksm, "namespace": case.namespace,
                                                 "replicaset": case.pods()[0].owner_name,
                                                 "owner_kind": "Deployment", "owner_name": case.name,
                                                 "owner_is_controller": "true"}, const(1))
                dep = {**ksm, "namespace": case.namespace, "deployment": case.name}
                yield "kube_deployment_spec_replicas", dep, const(case.replicas)
                yield "kube_deployment_status_replicas_available", dep, const(case.replicas)
        for placement in self.placements():
            case, p, node = placement.case, placement.pod, placement.node
            who = {"namespace": case.namespace, "pod": p.name}
            yield ("kube_pod_owner", {**ksm, **who, "owner_kind": p.owner_kind, "owner_name": p.owner_name,
                                      "owner_is_controller": "true"}, const(1))
            req = {**ksm, **who, "container": "vllm", "node": node}
            yield ("kube_pod_container_resource_requests", {**req, "resource": case.resource,
                                                            "unit": "integer"}, const(case.requests_per_pod))
            yield "kube_pod_container_resource_requests", {**req, "resource": "cpu", "unit": "core"}, const(4)
            restarts = (lambda c: lambda t: float(self.restarts(c, t)))(case) if placement.index == 0 else const(0)
            yield ("kube_pod_container_status_restarts_total", {**ksm, **who, "container": "vllm"}, restarts)
            if case.accelerator == "neuron":
                runtime += 1
                first = core_index.get(node, 0)
                core_index[node] = first + len(case.core_utils)
                yield from self._neuron(case, who, node, first, runtime)
            else:
                yield from self._gpu(case, who, node)
            if p.serves:
                yield from self._vllm(case, who, counter, const)
        for node in neuron_nodes:  # neuron-monitor's DaemonSet pod on each Neuron node (a DaemonSet's: no model server)
            yield ("kube_pod_owner", {**ksm, "namespace": "kube-system", "pod": _monitor_pod(node),
                                      "owner_kind": "DaemonSet", "owner_name": "neuron-monitor",
                                      "owner_is_controller": "true"}, const(1))
        yield from self._noise()

    def _neuron(self, case: Case, who: dict[str, str], node: str, first_core: int, runtime: int
                ) -> Iterator[tuple[str, dict[str, str], Callable[[float], float]]]:
        # neuron-monitor-prometheus.py: the instance's labels, the runtime's tag, the core's index.
        ec2 = {"instance_id": instance_id_of(node), "instance_type": case.instance_type,
               "availability_zone": ZONE, "region": REGION, "subnet_id": "subnet-0a1b2c3d4e5f60718",
               "runtime_tag": str(1000 + runtime)}
        if case.neuron_labels == "pod":  # scraped from inside the model server's pod
            scrape = {"job": "neuron-monitor", "instance": f"{_internal_ip(node)}:8000", **who,
                      "container": "neuron-monitor"}
        else:  # the DaemonSet's pod on that node: its namespace and pod, not the model server's
            scrape = {"job": "neuron-monitor", "instance": f"{_internal_ip(node)}:8000", "namespace": "kube-system",
                      "pod": _monitor_pod(node), "container": "neuron-monitor", "endpoint": "metrics"}
        for offset, ratio in enumerate(case.core_utils):
            yield ("neuroncore_utilization_ratio", {**scrape, **ec2, "neuroncore": str(first_core + offset)},
                   _constant(ratio))

    def _gpu(self, case: Case, who: dict[str, str], node: str
             ) -> Iterator[tuple[str, dict[str, str], Callable[[float], float]]]:
        if case.exported:  # scraped through the exporter's pod, with honorLabels off
            owner = {"namespace": "monitoring", "pod": f"dcgm-exporter-{_hash(node, 5)}",
                     "exported_namespace": who["namespace"], "exported_pod": who["pod"], "exported_container": "vllm"}
        else:
            owner = {**who, "container": "vllm"}
        labels = {"job": "dcgm-exporter", "gpu": "0", "UUID": f"GPU-{_hash(who['pod'], 12)}", "device": "nvidia0",
                  "modelName": "NVIDIA A10G", "Hostname": node, **owner}
        yield "DCGM_FI_DEV_GPU_UTIL", labels, (lambda c: lambda t: self.util(c, t))(case)
        yield "DCGM_FI_DEV_FB_USED", labels, _constant(case.fb_used)
        yield "DCGM_FI_DEV_FB_FREE", labels, _constant(case.fb_free)

    def _vllm(self, case: Case, who: dict[str, str], counter: Callable[[float], Callable[[float], float]],
              const: Callable[[float], Callable[[float], float]]
              ) -> Iterator[tuple[str, dict[str, str], Callable[[float], float]]]:
        labels = {"job": "vllm", "instance": f"{who['pod']}:8000", "model_name": case.model or case.name, **who}
        histograms = [("vllm:e2e_request_latency_seconds", case.e2e, E2E_BUCKETS, case.e2e_mean),
                      ("vllm:time_to_first_token_seconds", case.ttft, TTFT_BUCKETS, case.ttft_mean)]
        histograms += [(name, case.tpot, TPOT_BUCKETS, case.tpot_mean) for name in case.tpot_names]
        for metric, shares, bounds, mean in histograms:
            cumulative = 0.0
            for bound in bounds:
                cumulative += sum(share for upper, share in shares if upper == bound)
                yield f"{metric}_bucket", {**labels, "le": f"{bound:g}"}, counter(case.rps * cumulative)
            yield f"{metric}_bucket", {**labels, "le": "+Inf"}, counter(case.rps)
            yield f"{metric}_count", labels, counter(case.rps)
            yield f"{metric}_sum", labels, counter(case.rps * mean)
        yield ("vllm:request_success_total", {**labels, "finished_reason": "stop"},
               counter(case.rps * (1 - case.abort - case.error)))
        yield "vllm:request_success_total", {**labels, "finished_reason": "abort"}, counter(case.rps * case.abort)
        if case.new_vllm:
            yield "vllm:request_success_total", {**labels, "finished_reason": "error"}, counter(case.rps * case.error)
        yield "vllm:num_preemptions_total", labels, counter(case.preemptions_per_s)
        yield "vllm:num_requests_running", labels, const(case.running)
        yield "vllm:num_requests_waiting", labels, (lambda c: lambda t: self.queue(c, t))(case)
        yield "vllm:kv_cache_usage_perc", labels, (lambda c: lambda t: self.kv(c, t))(case)

    def _noise(self) -> Iterator[tuple[str, dict[str, str], Callable[[float], float]]]:
        ksm = {"job": "kube-state-metrics", "instance": "10.0.0.5:8080"}
        yield ("kube_deployment_spec_replicas", {**ksm, "namespace": "kube-system", "deployment": "coredns"},
               lambda t: 2.0)
        yield ("kube_replicaset_owner", {**ksm, "namespace": "kube-system", "replicaset": "coredns-5d78c9869d",
                                         "owner_kind": "Deployment", "owner_name": "coredns"}, lambda t: 1.0)
        yield ("kube_pod_owner", {**ksm, "namespace": "kube-system", "pod": "coredns-5d78c9869d-abcde",
                                  "owner_kind": "ReplicaSet", "owner_name": "coredns-5d78c9869d"}, lambda t: 1.0)
        yield ("kube_pod_container_resource_requests", {**ksm, "namespace": "kube-system",
                                                        "pod": "coredns-5d78c9869d-abcde", "container": "coredns",
                                                        "node": "ip-10-0-9-9", "resource": "cpu", "unit": "core"},
               lambda t: 0.1)
        # A GPU no pod holds: the exporter's own pod (a DaemonSet's) must not count as a model server.
        yield ("kube_pod_owner", {**ksm, "namespace": "monitoring", "pod": "dcgm-exporter-zzzzz",
                                  "owner_kind": "DaemonSet", "owner_name": "dcgm-exporter"}, lambda t: 1.0)
        yield ("DCGM_FI_DEV_GPU_UTIL", {"job": "dcgm-exporter", "gpu": "1", "UUID": "GPU-unassigned",
                                        "Hostname": "ip-10-0-9-9", "namespace": "monitoring",
                                        "pod": "dcgm-exporter-zzzzz"}, lambda t: 0.0)
        # A NeuronCore busy on a node where no pod requests Neuron devices (a process outside Kubernetes'
        # accounting): it belongs to no deployment.
        lone = "ip-10-0-9-10.us-west-2.compute.internal"
        yield ("kube_node_info", {**ksm, "node": lone, "provider_id": provider_id_of(lone),
                                  "internal_ip": _internal_ip(lone)}, lambda t: 1.0)
        yield ("neuroncore_utilization_ratio", {
            "job": "neuron-monitor", "instance": f"{_internal_ip(lone)}:8000", "namespace": "kube-system",
            "pod": _monitor_pod(lone), "container": "neuron-monitor", "endpoint": "metrics",
            "instance_id": instance_id_of(lone), "instance_type": "inf2.xlarge", "availability_zone": ZONE,
            "region": REGION, "subnet_id": "subnet-0a1b2c3d4e5f60718", "runtime_tag": "999", "neuroncore": "0"},
            lambda t: 0.9)

    # -- files ----------------------------------------------------------------------------------------

    def write_openmetrics(self, directory: Path) -> list[Path]:
        """One OpenMetrics file per 2-hour block (promtool then reads each file once)."""
        directory.mkdir(parents=True, exist_ok=True)
        first = self.window_start - self.before
        last = self.end.timestamp() + self.after
        times = [first + i * self.interval for i in range(int((last - first) // self.interval) + 1)]
        chunks: dict[int, list[float]] = {}
        for t in times:
            chunks.setdefault(int(t) // BLOCK, []).append(t)
        series = [(_series_id(name, labels), fn) for name, labels, fn in self.series()]
        paths = []
        for block, ts in sorted(chunks.items()):
            path = directory / f"{block}.om"
            with path.open("w", encoding="utf-8") as out:
                for ident, fn in series:
                    out.write("".join(f"{ident} {fn(t):.6g} {t:.0f}\n" for t in ts))
                out.write("# EOF\n")
            paths.append(path)
        return paths


def _internal_ip(node: str) -> str:
    digest = hashlib.sha256(node.encode()).digest()
    return f"10.0.{digest[0]}.{digest[1]}"


def _monitor_pod(node: str) -> str:
    return f"neuron-monitor-{_hash(node, 5)}"


def _series_id(name: str, labels: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def aligned_now(step: int = 300) -> datetime:
    now = int(time.time())
    return datetime.fromtimestamp(now - now % step, UTC)


def serve_dataset(dataset: DataSet, workdir: Path) -> PrometheusServer:
    files = dataset.write_openmetrics(workdir / "openmetrics")
    backfill(files, workdir / "data")
    for path in files:
        path.unlink()
    return PrometheusServer(workdir / "data", workdir).start()


def dataset_at(cases: Sequence[Case], end: datetime | None = None, **kw: Any) -> DataSet:
    return DataSet(tuple(cases), end or aligned_now(), **kw)


# ---- the sandbox's data ---------------------------------------------------------------------------------

# How the sandbox's model servers behaved over the last day, by Deployment name, so that a digest
# there shows each kind of finding: one saturated (slow, a growing queue, KV cache full: Apply
# scales it up), one nearly idle on a GPU that a cheaper instance would do. Unknown names (a
# deployment added to seed.yaml) get a healthy profile.
SANDBOX_PROFILES: dict[str, dict[str, Any]] = {
    "qwen3-1-7b-vllm": dict(util=96.0, fb_used=21000, fb_free=3576, rps=1.5, abort=0.02,
                            e2e=((8.0, 0.1), (16.0, 0.5), (32.0, 0.4)), e2e_mean=15.0,
                            ttft=((2.0, 0.5), (4.0, 0.5)), ttft_mean=2.5, tpot=((0.1, 0.5), (0.2, 0.5)),
                            tpot_mean=0.12, queue=(0.0, 12.0), running=24.0, kv=(0.9, 0.99),
                            preemptions_per_s=0.005),
    "llama-32-1b-vllm": dict(util=6.0, fb_used=5000, fb_free=19576, rps=0.05, running=0.1, kv=(0.05, 0.05)),
}
HEALTHY_PROFILE: dict[str, Any] = dict(util=75.0, rps=1.0, kv=(0.5, 0.5))
SANDBOX_INSTANCE = "g5.xlarge"  # what the seed's GPU nodes mostly are
SANDBOX_INTERVAL = 120  # seconds between samples: a day of data backfills in about a second
SANDBOX_RATE_WINDOW = 4 * SANDBOX_INTERVAL  # what `rate()` needs at that interval (see MetricsConfig)


def vllm_version_of(image: str, default: str = "0.10.2") -> str:
    """`…/vllm:0.10.2-gpu-py312-ec2` → "0.10.2", `vllm/vllm-openai:v0.11.0` → "0.11.0": which names it exports."""
    found = re.search(r":v?(\d+\.\d+(?:\.\d+)?)", image.rsplit("/", 1)[-1])
    return found.group(1) if found else default


def sandbox_cases(deployments: Sequence[dict[str, Any]], namespace: str,
                  nodes: Sequence[dict[str, Any]] = ()) -> tuple[Case, ...]:
    """One Case per seed deployment (name, replicas, image), behaving as SANDBOX_PROFILES says.

    The pods run on the seed's SANDBOX_INSTANCE nodes, one GPU each, in order, so that a digest finds
    their instance type on the emulator's Node objects; the vLLM names follow the image's version.
    """
    free = [n["name"] for n in nodes if n.get("instance_type") == SANDBOX_INSTANCE]
    cases = []
    for spec in deployments:
        replicas = int(spec.get("replicas", 1))
        taken, free = tuple(free[:replicas]), free[replicas:]
        cases.append(Case(spec["name"], SANDBOX_INSTANCE, replicas, namespace=namespace, nodes=taken,
                          vllm=vllm_version_of(str(spec.get("image", ""))), model=str(spec.get("model") or ""),
                          **SANDBOX_PROFILES.get(spec["name"], HEALTHY_PROFILE)))
    return tuple(cases)


def sandbox_dataset(cases: Sequence[Case]) -> DataSet:
    # The data runs on for a while past start-up so that a console left open still has "now".
    return DataSet(tuple(cases), aligned_now(), interval=SANDBOX_INTERVAL, before=SANDBOX_INTERVAL * 4,
                   after=12 * 3600)


def _constant(value: float) -> Callable[[float], float]:
    """A series that holds one value at every time."""
    return lambda _t: value
