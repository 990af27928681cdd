"""The PromQL of a digest: a fixed set of aggregated queries per cluster, built from QuerySettings.

Cost on Prometheus is the design constraint. Every query aggregates *all* model servers of a
cluster at once, grouped by (namespace, deployment), so a digest costs `len(QUERIES)` queries per
cluster whether the cluster runs 5 deployments or 500. Several statistics of one metric come back
from one query, told apart by a `stat` label that `label_replace` adds.

How series are tied to Deployments: kube-state-metrics' `kube_pod_owner` → `kube_replicaset_owner`,
taken over the whole window and pinned with `@ end()` so Prometheus evaluates the mapping once per
query (not once per step) and pods that came and went during the window still count. Per-series
window functions (`increase`, `avg_over_time`, …) run first and are joined once; only the two
statistics that need the deployment's total at each instant (utilization p95, queue max) join
inside a subquery.

Label spellings: `exported_namespace`/`exported_pod` (what a ServiceMonitor without honorLabels
makes of the DCGM exporter's own labels) are copied over `namespace`/`pod` before joining.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta

Key = tuple[str, str]  # (namespace, deployment)

# ---- PromQL building blocks ----------------------------------------------------------------------


def _norm(expr: str) -> str:
    """Prefer exported_namespace/exported_pod over namespace/pod when a series has them."""
    return (f'label_replace(label_replace({expr}, "namespace", "$1", "exported_namespace", "(.+)"), '
            f'"pod", "$1", "exported_pod", "(.+)")')


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _dur(td: timedelta) -> str:
    return f"{max(1, int(td.total_seconds()))}s"


@dataclass(frozen=True)
class QuerySettings:
    """How the window is read. `rate_window` must span at least two scrapes (4 × the interval is safe)."""

    window: timedelta = timedelta(hours=24)
    step: timedelta = timedelta(minutes=5)  # resolution of the per-instant statistics (p95, max, idle share)
    rate_window: timedelta = timedelta(minutes=5)
    timeout: float = 20.0  # seconds, per query (client side and Prometheus' own timeout=)
    idle_util_pct: float = 10.0  # accelerator time below this counts as idle
    chart_points: int = 96


class DigestQueries:
    """The PromQL of one digest, for one cluster (and optionally one deployment)."""

    def __init__(self, s: QuerySettings, scope: Key | None) -> None:
        self.s = s
        self.scope = scope
        self.W = _dur(s.window)  # range selectors: increase() over exactly the window
        # Subqueries: ranges are closed on the left before Prometheus 3 (24h:5m has 289 steps there,
        # 288 from 3.0 on); one millisecond less gives window/step steps in every version, and for
        # any end time (with a whole second less, an end within a second of a step lost one step).
        self.WS = f"{max(1, int(s.window.total_seconds() * 1000) - 1)}ms:{_dur(s.step)}"
        self.R = _dur(s.rate_window)
        self.owner = self._owner()

    def _owner(self) -> str:
        """(namespace, pod, deployment) = 1 for every pod a model-serving workload owned in the window.

        `deployment` is the workload's name whatever its kind, as the inference chart's frameworks
        make them: a Deployment (pod → ReplicaSet → Deployment); a LeaderWorkerSet, whose leaders
        belong to the StatefulSet named after it and each group's workers to a StatefulSet named
        after their leader pod; a RayService, whose pods belong to its RayCluster
        `<name>-raycluster-<suffix>`.
        """
        ns, exact, name = "", "", ""
        if self.scope is not None:  # `name` goes into regexes: its dots must be literal
            ns, exact, name = (_quote(self.scope[0]), _quote(self.scope[1]),
                               _quote(self.scope[1].replace(".", "\\.")))

        def owned(kind: str, owner: str = "") -> str:
            match = f'owner_kind="{kind}"'
            if self.scope is not None:
                match += f', namespace="{ns}"' + (f', owner_name=~"{owner}"' if owner else "")
            return _norm(f"max_over_time(kube_pod_owner{{{match}}}[{self.W}] @ end())")

        def named(expr: str, regex: str = "(.+)", source: str = "owner_name", target: str = "deployment") -> str:
            return f'label_replace({expr}, "{target}", "$1", "{source}", "{regex}")'

        rs_filter = 'owner_kind="Deployment"'
        if self.scope is not None:
            rs_filter += f', namespace="{ns}", owner_name="{exact}"'
        sets = _norm(f"max_over_time(kube_replicaset_owner{{{rs_filter}}}[{self.W}] @ end())")
        deployments = ("max by (namespace, pod, deployment) ("
                       f'{named(owned("ReplicaSet"), source="owner_name", target="replicaset")} '
                       "* on (namespace, replicaset) group_left (deployment) "
                       f"max by (namespace, replicaset, deployment) ({named(sets)}))")
        leader_pods = named(named(owned("StatefulSet", name)), source="pod", target="leader")
        leaders = f"max by (namespace, leader, deployment) ({leader_pods})"
        worker_pods = named(owned("StatefulSet", f"{name}-[0-9]+" if name else ""), target="leader")
        workers = ("max by (namespace, pod, deployment) ("
                   f"{worker_pods} * on (namespace, leader) group_left (deployment) {leaders})")
        direct = f"max by (namespace, pod, deployment) ({named(owned('StatefulSet', name))})"
        suffix = "(-raycluster-[a-z0-9]+)?"
        ray_pods = named(owned("RayCluster", f"{name}{suffix}" if name else ""), f"(.+?){suffix}")
        ray = f"max by (namespace, pod, deployment) ({ray_pods})"
        # `or on (namespace, pod)`: a worker already named after its LeaderWorkerSet is not also
        # counted under its own StatefulSet.
        return f"({deployments} or {workers} or on (namespace, pod) {direct} or {ray})"

    def join(self, expr: str) -> str:
        """expr's series with a `deployment` label; series of pods no Deployment owns drop out."""
        return f"({_norm(expr)} * on (namespace, pod) group_left (deployment) {self.owner})"

    def by_dep(self, agg: str, expr: str, extra: str = "") -> str:
        return f"{agg} by (namespace, deployment{extra}) ({self.join(expr)})"

    @staticmethod
    def stats(parts: Mapping[str, str]) -> str:
        return " or ".join(f'label_replace({expr}, "stat", "{name}", "", "")' for name, expr in parts.items())

    # -- accelerator utilization: DCGM for GPUs, neuron-monitor for Neuron (ratio → percent) ------------

    def _accel(self, fn: Callable[[str, float, float], str]) -> str:
        """fn(metric, scale to percent, idle threshold in the metric's unit) per accelerator kind."""
        idle = self.s.idle_util_pct
        gpu = fn("DCGM_FI_DEV_GPU_UTIL", 1, idle)
        neuron = fn("neuroncore_utilization_ratio", 100, idle / 100)
        return (f'(label_replace({gpu}, "accelerator", "gpu", "", "") or '
                f'label_replace({neuron}, "accelerator", "neuron", "", ""))')

    def util_now(self) -> str:
        return self._accel(lambda m, scale, _: self.join(f"{scale:g} * {m}"))

    def q_util(self) -> str:
        by = "by (namespace, deployment, accelerator)"
        ws = self.WS

        def per_series(template: str) -> str:
            return f"sum {by} ({self._accel(lambda m, scale, thr: self.join(template.format(m=m, s=scale, t=thr)))})"

        return self.stats({
            "sum": per_series("{s:g} * sum_over_time({m}[" + ws + "])"),
            "samples": per_series("count_over_time({m}[" + ws + "])"),
            "idle_samples": per_series("sum_over_time(({m} < bool {t:g})[" + ws + "])"),
            # The deployment's mean at each instant, then its p95 over the window: a joined subquery,
            # one per accelerator kind so that no label is rewritten at every step.
            "p95": self._accel(lambda m, scale, _: "quantile_over_time(0.95, (avg by (namespace, deployment) "
                               f"({self.join(f'{scale:g} * {m}')}))[{ws}])"),
            "now": f"avg {by} ({self.util_now()})",
        })

    def q_memory(self) -> str:
        used = f"avg_over_time(DCGM_FI_DEV_FB_USED[{self.WS}])"
        free = f"avg_over_time(DCGM_FI_DEV_FB_FREE[{self.WS}])"
        return self.stats({"used": self.by_dep("sum", used), "total": self.by_dep("sum", f"{used} + {free}")})

    def q_requests(self) -> str:
        metric = "vllm:request_success_total"
        return self.stats({
            "count": self.by_dep("sum", f"increase({metric}[{self.W}])"),
            "aborted": self.by_dep("sum", f'increase({metric}{{finished_reason="abort"}}[{self.W}])'),
            "rps_now": self.by_dep("sum", f"rate({metric}[{self.R}])"),
        })

    def q_histogram(self, metric: str, *, now: bool = True, mean: bool = False) -> str:
        """Buckets summed per deployment; the quantiles are computed here (one query, any quantiles)."""
        parts = {"window": self.by_dep("sum", f"increase({metric}_bucket[{self.W}])", ", le")}
        if now:
            parts["now"] = self.by_dep("sum", f"rate({metric}_bucket[{self.R}])", ", le")
        if mean:
            parts["sum"] = self.by_dep("sum", f"increase({metric}_sum[{self.W}])")
            parts["count"] = self.by_dep("sum", f"increase({metric}_count[{self.W}])")
        return self.stats(parts)

    def q_queue(self) -> str:
        waiting, running = "vllm:num_requests_waiting", "vllm:num_requests_running"
        return self.stats({
            "mean": self.by_dep("sum", f"avg_over_time({waiting}[{self.WS}])"),
            # The deployment's total queue at each instant, its maximum: one joined subquery.
            "max": f"max_over_time(({self.by_dep('sum', waiting)})[{self.WS}])",
            "now": self.by_dep("sum", waiting),
            "slope": "3600 * " + self.by_dep("sum", f"deriv({waiting}[{self.WS}])"),  # per hour
            "running_mean": self.by_dep("sum", f"avg_over_time({running}[{self.WS}])"),
        })

    def q_kv(self) -> str:
        # Newer vLLM calls it kv_cache_usage_perc, older gpu_cache_usage_perc: either, per pod.
        kv = "(vllm:kv_cache_usage_perc or vllm:gpu_cache_usage_perc)"
        return self.stats({
            "mean": self.by_dep("avg", f"avg_over_time({kv}[{self.WS}])"),
            "max": self.by_dep("max", f"max_over_time({kv}[{self.WS}])"),
        })

    def q_preemptions(self) -> str:
        return self.stats({"total": self.by_dep("sum", f"increase(vllm:num_preemptions_total[{self.W}])")})

    def q_replicas(self) -> str:
        match = ""
        if self.scope is not None:
            match = f'{{namespace="{_quote(self.scope[0])}", deployment="{_quote(self.scope[1])}"}}'
        by = "max by (namespace, deployment)"
        return self.stats({
            "desired": f"{by} ({_norm('kube_deployment_spec_replicas' + match)})",
            "available": f"{by} ({_norm('kube_deployment_status_replicas_available' + match)})",
        })

    def q_restarts(self) -> str:
        metric = "kube_pod_container_status_restarts_total"
        # A container's restart counter never resets (a new pod is a new series), so max − min is
        # the exact count; increase() would extrapolate to fractions.
        return self.stats({"total": self.by_dep(
            "sum", f"(max_over_time({metric}[{self.W}]) - min_over_time({metric}[{self.W}]))")})

    def q_inventory(self) -> str:
        req = 'kube_pod_container_resource_requests{resource=~"nvidia_com_gpu|aws_amazon_com_neuron.*"}'
        node_type = ('max by (node, instance_type) (label_replace(kube_node_labels, "instance_type", "$1", '
                     '"label_node_kubernetes_io_instance_type", "(.+)"))')
        return self.stats({
            "devices": self.by_dep("sum", req, ", resource"),
            "typed": f"sum by (namespace, deployment, resource, instance_type) "
                     f"({self.join(req)} * on (node) group_left (instance_type) {node_type})",
            # Σ requested devices over the steps; × step hours here (exact, unlike a rounded factor in PromQL).
            "device_steps": self.by_dep("sum", f"sum_over_time({req}[{self.WS}])", ", resource"),
        })

    def chart_util(self) -> str:
        return f"avg by (namespace, deployment) ({self.util_now()})"

    def chart_latency(self, step: timedelta) -> str:
        # One chart point covers one step: rate over the step (at least the configured rate window).
        window = _dur(max(step, self.s.rate_window))
        buckets = self.by_dep("sum", f"rate(vllm:e2e_request_latency_seconds_bucket[{window}])", ", le")
        return f"histogram_quantile(0.95, {buckets})"


# ---- the queries of one digest ------------------------------------------------------------------

INSTANT = ("util", "memory", "requests", "e2e", "ttft", "tpot", "queue", "kv", "preemptions", "replicas",
           "restarts", "inventory")
RANGE = ("chart_util", "chart_latency")
QUERIES = INSTANT + RANGE
"""Every query of one cluster's digest: the count is len(QUERIES), whatever the number of deployments."""


def promql(settings: QuerySettings, scope: Key | None = None) -> dict[str, str]:
    """The instant queries by name (also what `infer-bot check` or a curious operator can run by hand)."""
    q = DigestQueries(settings, scope)
    return {
        "util": q.q_util(),
        "memory": q.q_memory(),
        "requests": q.q_requests(),
        "e2e": q.q_histogram("vllm:e2e_request_latency_seconds"),
        "ttft": q.q_histogram("vllm:time_to_first_token_seconds"),
        "tpot": q.q_histogram("vllm:time_per_output_token_seconds", now=False, mean=True),
        "queue": q.q_queue(),
        "kv": q.q_kv(),
        "preemptions": q.q_preemptions(),
        "replicas": q.q_replicas(),
        "restarts": q.q_restarts(),
        "inventory": q.q_inventory(),
    }
