"""The PromQL of a digest: a fixed set of queries per cluster, built from QuerySettings.

Cost on Prometheus is the design constraint. Every query reads *all* model servers of a cluster at
once, so a digest costs `len(QUERIES)` queries per cluster whether the cluster runs 5 deployments or
500. Several statistics of one metric come back from one query, told apart by a `stat` label that
`label_replace` adds.

Where the pod → workload join happens: in Python, not here. The mapping (kube-state-metrics'
`kube_pod_owner` → `kube_replicaset_owner` and the other workload kinds, taken over the whole window
and pinned with `@ end()`) comes once, with the replicas query (stat `owner`). Every other instant
query answers per pod (`by (namespace, pod, exported_namespace, exported_pod, …)`) and the range
queries answer with raw series; ops.metrics.workloads sums them per workload exactly as the joined
PromQL did. The join cost more than the statistics: repeated in every statistic of every query, and
evaluated at every step inside the subqueries and chart range queries, it made a 500-deployment
digest cost 10 s (bench/NOTES.md).

Label spellings: `exported_namespace`/`exported_pod` (what a ServiceMonitor without honorLabels
makes of the DCGM exporter's own labels) win over `namespace`/`pod`: `_norm` in PromQL, `pod_of` in
ops.metrics.workloads. neuron-monitor's series name an EC2 instance, not a pod: they reach pods
through the node (see `_neuron_shares`). Metrics that vLLM renamed are read under both names,
newest first.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from ops.metrics import recorded

Key = tuple[str, str]  # (namespace, deployment)

GPU_UTIL = "DCGM_FI_DEV_GPU_UTIL"
NEURON_UTIL = "neuroncore_utilization_ratio"
ACCELERATOR_MATCH = 'resource=~"nvidia_com_gpu|aws_amazon_com_neuron.*"'
ACCELERATOR_REQUESTS = f"kube_pod_container_resource_requests{{{ACCELERATOR_MATCH}}}"
NEURON_MATCH = 'resource=~"aws_amazon_com_neuron.*"'
NEURON_REQUESTS = f"kube_pod_container_resource_requests{{{NEURON_MATCH}}}"
# Time per output token, newest name first: vLLM 0.11 renamed it (the old name is hidden in 0.12, gone in 0.13).
TPOT = ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds")
QUEUE = "vllm:num_requests_waiting"
REQUESTS_METRIC = "kube_pod_container_resource_requests"
NODE_INFO = "kube_node_info"
# What the range queries read raw (ops.metrics.workloads makes the statistics of them).
STEP_METRICS = (GPU_UTIL, QUEUE, NEURON_UTIL, NODE_INFO, REQUESTS_METRIC)

# What tells a pod apart: both spellings, so that the pod → workload mapping is applied in Python
# (exported_* win, as `_norm` has them) rather than joined in PromQL.
POD = "namespace, pod, exported_namespace, exported_pod"
# Where a scoped selector takes the scope's pods (DigestQueries.sel); `_spelled` fills it in once per
# label spelling. Not PromQL: a selector it was left in would be refused, not read unscoped.
_PODS = "<pods>"

# ---- PromQL building blocks ----------------------------------------------------------------------


def _norm(expr: str) -> str:
    """Prefer exported_namespace/exported_pod over namespace/pod when a series has them."""
    return (f'label_replace(label_replace({expr}, "namespace", "$1", "exported_namespace", "(.+)"), '
            f'"pod", "$1", "exported_pod", "(.+)")')


def normalized(expr: str) -> str:
    """`_norm`, for the recording rules (ops.metrics.rules): the same label spellings as the digest's."""
    return _norm(expr)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _accelerator(expr: str, kind: str) -> str:
    return f'label_replace({expr}, "accelerator", "{kind}", "", "")'


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

    def __init__(self, s: QuerySettings, scope: Key | None, neuron_nodes: tuple[str, ...] | None = None,
                 use_recorded: bool = False) -> None:
        self.s = s
        self.scope = scope
        self.recorded = use_recorded  # `steps` and `charts` read the recording rules' series (ops.metrics.recorded)
        # With a scope: the nodes where its pods requested Neuron in the window (the replicas query's
        # `neuron_node`), so that the Neuron node path reads those nodes only, or nothing when there are
        # none; None reads every node.
        self.neuron_nodes = neuron_nodes if scope is not None else None
        self.W = _dur(s.window)  # range selectors: increase() over exactly the window
        # Subqueries: ranges are closed on the left before Prometheus 3 (24h:5m has 289 steps there,
        # 288 from 3.0 on); one millisecond less gives window/step steps in every version, and for
        # any end time (with a whole second less, an end within a second of a step lost one step).
        self.WS = f"{max(1, int(s.window.total_seconds() * 1000) - 1)}ms:{_dur(s.step)}"
        self.R = _dur(s.rate_window)
        self.owner = self._owner()

    def _owner(self, window: bool = True) -> str:
        """(namespace, pod, deployment) = 1 for every pod a model-serving workload owned in the window
        (without `window`: at the instant of evaluation, as a recording rule has it, ops.metrics.rules).

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
            match = f'owner_kind="{kind}"' + (f', owner_name=~"{owner}"' if owner else "")
            # With a scope, the pods named like it (`sel`): the mapping is part of every scoped
            # statistic, and the namespace's other pods were most of what it read.
            return self._spelled(over(self.sel("kube_pod_owner", match)))

        def over(selector: str) -> str:
            return f"max_over_time({selector}[{self.W}] @ end())" if window else selector

        def named(expr: str, regex: str = "(.+)", source: str = "owner_name", target: str = "deployment") -> str:
            return f'label_replace({expr}, "{target}", "$1", "{source}", "{regex}")'

        rs_filter = 'owner_kind="Deployment"'
        if self.scope is not None:
            rs_filter += f', namespace="{ns}", owner_name="{exact}"'
        sets = _norm(over(f"kube_replicaset_owner{{{rs_filter}}}"))
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

    def owner_now(self) -> str:
        """The owner mapping at the instant of evaluation (a recording rule's)."""
        return self._owner(window=False)

    def neuron_now(self) -> str:
        """Neuron utilization per pod at the instant of evaluation, percent (`_neuron_now`)."""
        return self._neuron_now()

    def per_pod(self, agg: str, expr: str, extra: str = "") -> str:
        """agg of expr per pod, no join: ops.metrics.workloads sums (or averages) the pods per workload.

        Both label spellings come back (`exported_*` win, in Python, as `_norm` would have them); with
        a scope, only its pods: selected by name (`sel`), then filtered exactly against the (small)
        scoped mapping.
        """
        if self.scope is None:
            return f"{agg} by ({POD}{extra}) ({expr})"
        return f"({agg} by (namespace, pod{extra}) ({self._spelled(expr)}) and on (namespace, pod) {self.owner})"

    def sel(self, metric: str, matchers: str = "") -> str:
        """A selector of `metric`; with a scope, one that `_spelled` narrows to the scope's pods.

        Without it a scoped query read every pod of the cluster and filtered afterwards: at N = 500,
        `/infer metrics <name>` cost 1.4 s, nearly what the whole digest's instant queries cost.
        """
        if self.scope is None:
            return f"{metric}{{{matchers}}}" if matchers else metric
        return f"{metric}{{{matchers + ', ' if matchers else ''}{_PODS}}}"

    def _spelled(self, expr: str) -> str:
        """`_norm(expr)`; with a scope, over the pods named like it under either label spelling, as the
        range queries select them (`_scoped`): a series both spellings match comes once, `or` keeping
        one of two identical label sets."""
        if _PODS not in expr:
            return _norm(expr)
        ns, prefix = self._prefix()
        native, exported = f'namespace="{ns}", pod=~"{prefix}"', f'exported_namespace="{ns}", exported_pod=~"{prefix}"'
        return f"({_norm(expr.replace(_PODS, native))} or {_norm(expr.replace(_PODS, exported))})"

    def _pods(self, expr: str) -> str:
        """Per-pod series already labelled (namespace, pod); with a scope, only its pods."""
        return expr if self.scope is None else f"({expr} and on (namespace, pod) {self.owner})"

    @staticmethod
    def stats(parts: Mapping[str, str]) -> str:
        return " or ".join(f'label_replace({expr}, "stat", "{name}", "", "")' for name, expr in parts.items())

    # -- accelerator utilization: DCGM for GPUs, neuron-monitor for Neuron (ratio → percent) ------------
    #
    # DCGM's series name the GPU's pod (`pod` or `exported_pod`), and so can a neuron-monitor that runs
    # inside the model server's pod. neuron-monitor as its DaemonSet runs it labels its series with the
    # EC2 instance only (`instance_id`, `neuroncore`, …; what scraping adds names the DaemonSet's pod):
    # those reach a pod through its node (`kube_node_info{provider_id="aws:///<zone>/<instance-id>"}`),
    # each pod there that requests `aws.amazon.com/neuron*` taking the share of the node it requested.
    # Per pod its own series win where both exist (`or`), so a core is never counted twice, and the
    # Neuron figures join the owners once per statistic, as the GPU ones do.

    def _instances(self, window: bool) -> str:
        """(node, instance_id) = 1 per EKS node; over the window (`@ end()`) or at each instant."""
        info = f'kube_node_info{{provider_id=~"aws:///.+"{self._on_nodes()}}}'
        if window:
            info = f"max_over_time({info}[{self.W}] @ end())"
        return (f'max by (node, instance_id) (label_replace({info}, "instance_id", "$1", "provider_id", '
                '"aws:///[^/]*/(.+)"))')

    def _by_node(self, agg: str, expr: str, window: bool) -> str:
        """expr over neuron-monitor's per-core series, aggregated per node."""
        return f"{agg} by (node) (({expr}) * on (instance_id) group_left (node) {self._instances(window)})"

    def _on_nodes(self) -> str:
        """A matcher (with its leading comma) for the scope's Neuron nodes; none without a scope."""
        if not self.neuron_nodes:
            return ""
        return ', node=~"' + "|".join(_quote(node.replace(".", "\\.")) for node in self.neuron_nodes) + '"'

    def _node_path(self) -> bool:
        """Whether utilization may come from neuron-monitor's per-node series: not for a scope without Neuron."""
        return self.neuron_nodes != ()

    def _neuron_shares(self, window: bool) -> str:
        """(namespace, pod, node) = the pod's share of the Neuron resources requested on its node.

        Over the window the share is of the requests summed over the steps, so a pod that held a node
        for half the day takes half of what the node did that day.
        """
        requests = f'{REQUESTS_METRIC}{{{NEURON_MATCH}{self._on_nodes()}}}'
        req = requests if not window else f"sum_over_time({requests}[{self.WS}])"
        pods = f"sum by (namespace, pod, node) ({req})"
        return f"({pods} / on (node) group_left () sum by (node) ({pods}))"

    def _neuron_window(self, template: str) -> str:
        """A sum over the window: a pod's own series, else its share of its node's (template takes {m})."""
        own = f"sum by (namespace, pod) ({self._spelled(template.format(m=self.sel(NEURON_UTIL)))})"
        if not self._node_path():
            return self._pods(own)
        node = self._by_node("sum", template.format(m=NEURON_UTIL), True)
        from_node = f"sum by (namespace, pod) ({node} * on (node) group_right () {self._neuron_shares(True)})"
        return self._pods(f"({own} or {from_node})")

    def _neuron_now(self) -> str:
        """Per pod at one instant: its cores' mean utilization, in percent (a pod without series of its
        own: its node's cores). A deployment's is the mean over its pods (ops.metrics.workloads does the
        same at every step, from the raw series)."""
        own = f"avg by (namespace, pod) ({self._spelled(f'100 * {self.sel(NEURON_UTIL)}')})"
        if not self._node_path():
            return self._pods(own)
        node = self._by_node("avg", f"100 * {NEURON_UTIL}", False)
        pods = f"group by (namespace, pod, node) ({REQUESTS_METRIC}{{{NEURON_MATCH}{self._on_nodes()}}})"
        from_node = f"max by (namespace, pod) ({node} * on (node) group_right () {pods})"
        return self._pods(f"({own} or {from_node})")

    @staticmethod
    def _util(gpu: str, neuron: str) -> str:
        """One statistic per (pod, accelerator)."""
        return f'({_accelerator(gpu, "gpu")} or {_accelerator(neuron, "neuron")})'

    def q_util(self) -> str:
        ws = self.WS
        idle = self.s.idle_util_pct

        def window(template: str) -> str:
            """template takes {m} (metric), {s} (scale to percent), {t} (the idle threshold in its unit)."""
            gpu = self.per_pod("sum", template.format(m=self.sel(GPU_UTIL), s="1", t=f"{idle:g}"))
            return self._util(gpu, self._neuron_window(template.replace("{s}", "100").replace(
                "{t}", f"{idle / 100:g}")))

        return self.stats({
            "sum": window("{s} * sum_over_time({m}[" + ws + "])"),
            "samples": window("count_over_time({m}[" + ws + "])"),
            # GPUs: counted from `steps` (a comparison inside a subquery runs at every step).
            "idle_samples": _accelerator(self._neuron_window(
                "sum_over_time(({m} < bool " + f"{idle / 100:g}" + ")[" + ws + "])"), "neuron"),
            # p95 (the deployment's mean at each instant, its p95 over the window): from `steps`.
            # Now: the mean over the deployment's GPU series (Σ sums / Σ counts), over its Neuron pods.
            "now/sum": _accelerator(self.per_pod("sum", self.sel(GPU_UTIL)), "gpu"),
            "now/count": _accelerator(self.per_pod("count", self.sel(GPU_UTIL)), "gpu"),
            "now/mean": _accelerator(self._neuron_now(), "neuron"),
        })

    def q_memory(self) -> str:
        used = f"avg_over_time({self.sel('DCGM_FI_DEV_FB_USED')}[{self.WS}])"
        free = f"avg_over_time({self.sel('DCGM_FI_DEV_FB_FREE')}[{self.WS}])"
        return self.stats({"used": self.per_pod("sum", used), "total": self.per_pod("sum", f"{used} + {free}")})

    def q_requests(self) -> str:
        metric = "vllm:request_success_total"
        ok, aborted, errored = (self.sel(metric), self.sel(metric, 'finished_reason="abort"'),
                                self.sel(metric, 'finished_reason="error"'))
        return self.stats({
            "count": self.per_pod("sum", f"increase({ok}[{self.W}])"),
            "aborted": self.per_pod("sum", f"increase({aborted}[{self.W}])"),
            # vLLM ≥ 0.11 finishes a request that failed inside the engine with finished_reason="error".
            "errored": self.per_pod("sum", f"increase({errored}[{self.W}])"),
            "rps_now": self.per_pod("sum", f"rate({ok}[{self.R}])"),
            # Another vLLM counter over the window, here so that the range queries fit in len(QUERIES).
            "preemptions": self.per_pod("sum", f"increase({self.sel('vllm:num_preemptions_total')}[{self.W}])"),
        })

    def q_histogram(self, metric: str | tuple[str, ...], *, now: bool = True, mean: bool = False) -> str:
        """Buckets summed per deployment; the quantiles are computed here (one query, any quantiles).

        `metric` may name a histogram's generations, newest first: each pod's series of the first name
        it exports are read (`or` per series), so a server exporting both while the old name is
        deprecated counts once.
        """
        names = (metric,) if isinstance(metric, str) else metric

        def first(fn: str, suffix: str, window: str) -> str:
            return "(" + " or ".join(f"{fn}({self.sel(name + suffix)}[{window}])" for name in names) + ")"

        parts = {"window": self.per_pod("sum", first("increase", "_bucket", self.W), ", le")}
        if now:
            parts["now"] = self.per_pod("sum", first("rate", "_bucket", self.R), ", le")
        if mean:
            parts["sum"] = self.per_pod("sum", first("increase", "_sum", self.W))
            parts["count"] = self.per_pod("sum", first("increase", "_count", self.W))
        return self.stats(parts)

    def q_queue(self) -> str:
        waiting, running = self.sel(QUEUE), self.sel("vllm:num_requests_running")
        return self.stats({
            "mean": self.per_pod("sum", f"avg_over_time({waiting}[{self.WS}])"),
            # max (the deployment's total queue at each instant, its maximum): from `steps`.
            "now": self.per_pod("sum", waiting),
            "slope": "3600 * " + self.per_pod("sum", f"deriv({waiting}[{self.WS}])"),  # per hour
            "running_mean": self.per_pod("sum", f"avg_over_time({running}[{self.WS}])"),
        })

    def q_kv(self) -> str:
        # Newer vLLM calls it kv_cache_usage_perc, older gpu_cache_usage_perc: either, per series, the
        # newer name first (as the histograms' generations): `or` over the window's figures, not inside
        # the subquery, where it ran at every step. A server exports both names on the same scrapes,
        # so no step has one without the other.
        def kv(fn: str) -> str:
            return (f"({fn}({self.sel('vllm:kv_cache_usage_perc')}[{self.WS}]) or "
                    f"{fn}({self.sel('vllm:gpu_cache_usage_perc')}[{self.WS}]))")

        return self.stats({
            # The mean over the deployment's series (Σ sums / Σ counts), the max of its pods' maxima.
            "mean/sum": self.per_pod("sum", kv("avg_over_time")),
            "mean/count": self.per_pod("count", kv("avg_over_time")),
            "max/max": self.per_pod("max", kv("max_over_time")),
        })

    def q_replicas(self) -> str:
        match = ""
        if self.scope is not None:
            match = f'{{namespace="{_quote(self.scope[0])}", deployment="{_quote(self.scope[1])}"}}'
        by = "max by (namespace, deployment)"
        parts = {
            "desired": f"{by} ({_norm('kube_deployment_spec_replicas' + match)})",
            "available": f"{by} ({_norm('kube_deployment_status_replicas_available' + match)})",
            # (namespace, pod, deployment) = 1: the mapping that ops.metrics.workloads sums the per-pod
            # step series with, read once per digest.
            "owner": self.owner,
        }
        if self.s.idle_util_pct == recorded.IDLE_PCT:
            # Whether the recording rules' series cover the window: `steps` and `charts` wait for it.
            parts["recorded"] = recorded.presence(self.W)
        if self.scope is not None:
            # The nodes the Neuron node path needs (DigestQueries.neuron_nodes): read first, so that
            # the other queries of one deployment do not read every node of the cluster.
            ns, prefix = self._prefix()
            requests = f'{REQUESTS_METRIC}{{{NEURON_MATCH}, namespace="{ns}", pod=~"{prefix}"}}'
            parts["neuron_node"] = f"max by (node) (max_over_time({requests}[{self.W}] @ end()))"
        return self.stats(parts)

    def q_restarts(self) -> str:
        metric = self.sel("kube_pod_container_status_restarts_total")
        # A container's restart counter never resets (a new pod is a new series), so max − min is
        # the exact count; increase() would extrapolate to fractions.
        return self.stats({"total": self.per_pod(
            "sum", f"(max_over_time({metric}[{self.W}]) - min_over_time({metric}[{self.W}]))")})

    def q_inventory(self) -> str:
        req = self.sel(REQUESTS_METRIC, ACCELERATOR_MATCH)
        # kube_node_labels carries the instance type only where kube-state-metrics allow-lists the label
        # (--metric-labels-allowlist=nodes=[node.kubernetes.io/instance-type]); a default install has no
        # such series, or one with `node` alone. Nodes it does not type are listed by name ("placed"),
        # and the digest reads their type from the Kubernetes API's Node labels.
        node_type = ('max by (node, instance_type) (label_replace(label_replace(kube_node_labels, '
                     '"instance_type", "$1", "label_beta_kubernetes_io_instance_type", "(.+)"), '
                     '"instance_type", "$1", "label_node_kubernetes_io_instance_type", "(.+)"))')
        typed = ('(kube_node_labels{label_node_kubernetes_io_instance_type!=""} or '
                 'kube_node_labels{label_beta_kubernetes_io_instance_type!=""})')
        return self.stats({
            "devices": self.per_pod("sum", req, ", resource"),
            "typed": self.per_pod("sum", f"{req} * on (node) group_left (instance_type) {node_type}",
                                  ", resource, instance_type"),
            "placed": self.per_pod("sum", f"{req} unless on (node) {typed}", ", resource, node"),
            # Σ requested devices over the steps; × step hours here (exact, unlike a rounded factor in PromQL).
            "device_steps": self.per_pod("sum", f"sum_over_time({req}[{self.WS}])", ", resource"),
        })

    # -- raw step series (range queries; ops.metrics.workloads sums them per workload) -------------------
    #
    # No function, aggregation or binary operator runs at each step here where it can be helped:
    # Prometheus 2's range evaluation of any of them (label_replace, `sum by`, `or`, joins) costs
    # more than reading the samples. One selector takes every series the statistics are made of;
    # ops.metrics.workloads applies both label spellings, the owner mapping and the Neuron node path.

    def _raw(self, metrics: tuple[str, ...]) -> str:
        """GPU utilization, the queue, and what Neuron utilization per pod is made of, unprocessed.

        The `resource` and `provider_id` matchers also match series without those labels (the other
        metrics): they keep only the Neuron requests and the EKS nodes' kube_node_info.
        """
        names = "|".join(metrics)
        if self.scope is None:
            return f'{{__name__=~"{names}", resource=~"|aws_amazon_com_neuron.*", provider_id=~"|aws:///.+"}}'
        # One deployment (`/infer metrics <name>`): its pods' series, and for the Neuron node path the
        # nodes where its pods request Neuron and those nodes' cores.
        own = self._scoped(f'__name__=~"{"|".join(m for m in metrics if m not in (NODE_INFO, REQUESTS_METRIC))}"')
        if not self._node_path():  # no Neuron requested in the window: its pods' own series are all
            return own
        requests = self._scoped(f'__name__="{REQUESTS_METRIC}", {NEURON_MATCH}', exported=False)
        nodes = f'(kube_node_info{{provider_id=~"aws:///.+"{self._on_nodes()}}} and on (node) {requests})'
        instances = f'label_replace({nodes}, "instance_id", "$1", "provider_id", "aws:///[^/]*/(.+)")'
        return f"{own} or {requests} or {nodes} or ({NEURON_UTIL} and on (instance_id) {instances})"

    def _scoped(self, matchers: str, exported: bool = True) -> str:
        """Series of the scope's pods, a superset (the owner mapping picks them exactly); both label spellings."""
        ns, prefix = self._prefix()
        native = f'{{{matchers}, namespace="{ns}", pod=~"{prefix}"}}'
        if not exported:
            return native
        return f'({native} or {{{matchers}, exported_namespace="{ns}", exported_pod=~"{prefix}"}})'

    def q_steps(self) -> str:
        """At each step of the window (the grid of a `[window:step]` subquery): utilization, queue, per series."""
        return self._recorded(recorded.STEPS) if self.recorded else self._raw(STEP_METRICS)

    def q_charts(self) -> str:
        """At each chart point: what utilization is made of (the queue is not charted)."""
        return self._recorded(recorded.CHARTS) if self.recorded else self._raw(
            tuple(m for m in STEP_METRICS if m != QUEUE))

    def _recorded(self, names: tuple[str, ...]) -> str:
        """The rules' per-workload series, already what the raw ones are summed into."""
        if self.scope is None:
            return recorded.selector(names)
        ns, name = (_quote(part) for part in self.scope)
        return recorded.selector(names, f'namespace="{ns}", deployment="{name}"')

    def q_latency(self, step: timedelta) -> str:
        """At each chart point: e2e latency buckets rated over one point (at least the rate window).

        A query of its own: `or`-ing it with the raw series cost Prometheus 2 four times both apart.
        """
        window = _dur(max(step, self.s.rate_window))
        if self.scope is None:
            return f"rate(vllm:e2e_request_latency_seconds_bucket[{window}])"
        ns, prefix = self._prefix()
        metric = "vllm:e2e_request_latency_seconds_bucket"
        return (f'(rate({metric}{{namespace="{ns}", pod=~"{prefix}"}}[{window}]) or '
                f'rate({metric}{{exported_namespace="{ns}", exported_pod=~"{prefix}"}}[{window}]))')

    def _prefix(self) -> tuple[str, str]:
        """(namespace, a regex of the scope's pod names): every workload kind names its pods `<name>-…`."""
        assert self.scope is not None
        return _quote(self.scope[0]), _quote(self.scope[1].replace(".", "\\.")) + "-.+"

    def chart_step(self) -> timedelta:
        return max(self.s.step, self.s.window / max(1, self.s.chart_points))


# ---- the queries of one digest ------------------------------------------------------------------

INSTANT = ("util", "memory", "requests", "e2e", "ttft", "tpot", "queue", "kv", "replicas", "restarts", "inventory")
RANGE = ("steps", "charts", "latency")
QUERIES = INSTANT + RANGE
"""Every query of one cluster's digest: the count is len(QUERIES), whatever the number of deployments."""


def promql(settings: QuerySettings, scope: Key | None = None,
           neuron_nodes: tuple[str, ...] | None = None) -> dict[str, str]:
    """The instant queries by name (also what `infer-bot check` or a curious operator can run by hand)."""
    q = DigestQueries(settings, scope, neuron_nodes)
    return {
        "util": q.q_util(),
        "memory": q.q_memory(),
        "requests": q.q_requests(),
        "e2e": q.q_histogram("vllm:e2e_request_latency_seconds"),
        "ttft": q.q_histogram("vllm:time_to_first_token_seconds"),
        "tpot": q.q_histogram(TPOT, now=False, mean=True),
        "queue": q.q_queue(),
        "kv": q.q_kv(),
        "replicas": q.q_replicas(),
        "restarts": q.q_restarts(),
        "inventory": q.q_inventory(),
    }


def range_promql(settings: QuerySettings, scope: Key | None = None,
                 neuron_nodes: tuple[str, ...] | None = None, use_recorded: bool = False) -> dict[str, str]:
    """The range queries by name (`steps` on the subquery grid of the window, the others on the chart's)."""
    q = DigestQueries(settings, scope, neuron_nodes, use_recorded)
    return {"steps": q.q_steps(), "charts": q.q_charts(), "latency": q.q_latency(q.chart_step())}
