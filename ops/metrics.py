"""Per-deployment inference metrics from Prometheus: a fixed set of aggregated PromQL queries per cluster.

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

Client: plain `requests` rather than prometheus-api-client. We need POST (the queries are long), a
deadline on every call plus Prometheus' own `timeout=`, and nothing else of that library (whose
dateparser dependency would come along). Times are sent as Unix seconds from aware datetimes.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests

Key = tuple[str, str]  # (namespace, deployment)
Point = tuple[float, float]  # (unix seconds, value)

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


class _Q:
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


# ---- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentMetrics:
    """One model server over the window. None means "not measured" (no such series), never zero."""

    cluster: str
    namespace: str
    name: str
    accelerator: str | None = None  # "gpu" | "neuron"
    instance_type: str | None = None
    device_resource: str | None = None  # nvidia_com_gpu, aws_amazon_com_neuron…
    devices: float | None = None  # accelerators requested now (all pods)
    device_hours: float | None = None  # accelerator-hours requested over the window
    util_mean: float | None = None  # percent
    util_p95: float | None = None
    util_now: float | None = None
    idle_share: float | None = None  # share of accelerator time below QuerySettings.idle_util_pct
    mem_used_mib: float | None = None  # mean over the window, all GPUs together
    mem_total_mib: float | None = None
    rps_mean: float | None = None
    rps_now: float | None = None
    requests: float | None = None  # finished requests over the window
    abort_share: float | None = None
    e2e_p50: float | None = None  # seconds
    e2e_p95: float | None = None
    e2e_p99: float | None = None
    e2e_p95_now: float | None = None
    ttft_p95: float | None = None
    ttft_p95_now: float | None = None
    tpot_mean: float | None = None
    tpot_p95: float | None = None
    queue_mean: float | None = None
    queue_max: float | None = None
    queue_now: float | None = None
    queue_slope_per_hour: float | None = None
    running_mean: float | None = None
    kv_mean: float | None = None  # 0–1
    kv_max: float | None = None
    preemptions: float | None = None
    replicas_desired: int | None = None
    replicas_available: int | None = None
    restarts: int | None = None
    startup_seconds: float | None = None  # slowest current pod, start → Ready (Kubernetes API)
    util_series: tuple[Point, ...] = ()
    latency_series: tuple[Point, ...] = ()

    @property
    def key(self) -> Key:
        return (self.namespace, self.name)


@dataclass(frozen=True)
class ClusterMetrics:
    name: str
    prometheus_url: str | None
    deployments: list[DeploymentMetrics] = field(default_factory=list)
    error: str | None = None  # the whole cluster is missing from the digest, and why
    warnings: list[str] = field(default_factory=list)  # some figures are missing, and why
    queries: int = 0  # PromQL requests sent (the constant this module is built around)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Target:
    """A cluster to read: its name and its Prometheus (None = not configured)."""

    name: str
    prometheus_url: str | None


class PromError(Exception):
    pass


class Prometheus:
    """The HTTP API, minimal: instant and range queries, every call with a deadline."""

    def __init__(self, url: str, timeout: float, session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def _post(self, path: str, data: dict[str, str]) -> Any:
        data["timeout"] = f"{self.timeout:g}s"
        try:
            resp = self.session.post(f"{self.url}{path}", data=data,
                                     timeout=(min(5.0, self.timeout), self.timeout + 2))
        except requests.ConnectionError as exc:
            raise PromError(f"cannot connect to Prometheus at {self.url} ({_reason(exc)})") from None
        except requests.Timeout:
            raise PromError(f"Prometheus at {self.url} did not answer within {self.timeout:g} s") from None
        try:
            body = resp.json()
        except ValueError:
            raise PromError(f"Prometheus at {self.url} answered HTTP {resp.status_code} without JSON") from None
        if body.get("status") != "success":
            raise PromError(f"Prometheus at {self.url} refused a query: {body.get('errorType', resp.status_code)}: "
                            f"{str(body.get('error', ''))[:300]}")
        return body["data"]

    def query(self, promql: str, at: datetime) -> list[dict[str, Any]]:
        return list(self._post("/api/v1/query", {"query": promql, "time": _unix(at)})["result"])

    def query_range(self, promql: str, start: datetime, end: datetime, step: timedelta) -> list[dict[str, Any]]:
        return list(self._post("/api/v1/query_range", {"query": promql, "start": _unix(start), "end": _unix(end),
                                                       "step": f"{step.total_seconds():g}"})["result"])


def probe(url: str, timeout: float = 5.0, session: requests.Session | None = None) -> str:
    """Is this Prometheus up and answering queries? Returns its version; raises PromError saying why not.

    `/-/ready` alone would pass a Prometheus still replaying its WAL as "not ready" and a proxy
    in front of it as ready; a trivial instant query is what a digest actually needs to work.
    """
    prom = Prometheus(url, timeout, session)
    try:
        resp = prom.session.get(f"{prom.url}/-/ready", timeout=(min(5.0, timeout), timeout))
    except requests.ConnectionError as exc:
        raise PromError(f"cannot connect to Prometheus at {prom.url} ({_reason(exc)})") from None
    except requests.Timeout:
        raise PromError(f"Prometheus at {prom.url} did not answer within {timeout:g} s") from None
    if resp.status_code != 200:
        raise PromError(f"Prometheus at {prom.url} is not ready (HTTP {resp.status_code} on /-/ready)")
    prom.query("vector(1)", datetime.now().astimezone())
    try:
        version = prom.session.get(f"{prom.url}/api/v1/status/buildinfo", timeout=timeout).json()["data"]["version"]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        version = "version unknown"  # older servers and some proxies do not answer it; not a failure
    return str(version)


def _reason(exc: Exception) -> str:
    text = str(exc)
    for hint in ("Connection refused", "Name or service not known", "timed out", "No route to host"):
        if hint in text:
            return hint.lower()
    return type(exc).__name__


def _unix(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one (Prometheus times are absolute)")
    return f"{at.timestamp():.3f}"


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) or math.isinf(number) else number


def bucket_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """Prometheus' histogram_quantile over {le: cumulative count}; None where Prometheus gives NaN."""
    if math.inf not in buckets or len(buckets) < 2:
        return None
    bounds = sorted(buckets)
    counts: list[float] = []
    for bound in bounds:  # cumulative counts never decrease (scrape races can make them look so)
        counts.append(max(buckets[bound], counts[-1] if counts else 0.0))
    total = counts[-1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, count in enumerate(counts) if count >= rank)
    if index == len(bounds) - 1:
        return bounds[-2]  # in the +Inf bucket: the highest finite bound
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start = bounds[index - 1] if index > 0 else 0.0
    below = counts[index - 1] if index > 0 else 0.0
    in_bucket = counts[index] - below
    return start + (bounds[index] - start) * ((rank - below) / in_bucket if in_bucket else 1.0)


# ---- collecting ----------------------------------------------------------------------------------

INSTANT = ("util", "memory", "requests", "e2e", "ttft", "tpot", "queue", "kv", "preemptions", "replicas",
           "restarts", "inventory")
RANGE = ("chart_util", "chart_latency")
QUERIES = INSTANT + RANGE
"""Every query of one cluster's digest: the count is len(QUERIES), whatever the number of deployments."""


def promql(settings: QuerySettings, scope: Key | None = None) -> dict[str, str]:
    """The instant queries by name (also what `infer-bot check` or a curious operator can run by hand)."""
    q = _Q(settings, scope)
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


Stats = dict[Key, dict[str, Any]]


def collect(targets: Sequence[Target], end: datetime, settings: QuerySettings = QuerySettings(), *,
            scope: Key | None = None, session_factory: Callable[[], requests.Session] = requests.Session,
            per_cluster: int = 4) -> list[ClusterMetrics]:
    """Read every target concurrently (each with `per_cluster` queries in flight); never raises for a cluster.

    `scope` limits the joins to one (namespace, deployment): the same queries, cheaper to evaluate.
    """
    if end.tzinfo is None:
        raise ValueError("end must be an aware datetime")
    q = _Q(settings, scope)
    instant = promql(settings, scope)
    start = end - settings.window
    chart_step = max(settings.step, settings.window / max(1, settings.chart_points))
    reachable = [(i, t) for i, t in enumerate(targets) if t.prometheus_url]

    def read(target: Target) -> dict[str, Any]:
        prom = Prometheus(target.prometheus_url or "", settings.timeout, session_factory())
        jobs: dict[str, Callable[[], Any]] = {name: _bind(prom.query, instant[name], end) for name in INSTANT}
        jobs["chart_util"] = _bind(prom.query_range, q.chart_util(), start, end, chart_step)
        jobs["chart_latency"] = _bind(prom.query_range, q.chart_latency(chart_step), start, end, chart_step)
        # A few queries in flight per cluster: Prometheus answers them in parallel, and a dead one
        # costs one timeout, not one per query in sequence.
        with ThreadPoolExecutor(max_workers=per_cluster, thread_name_prefix=f"promql-{target.name}") as pool:
            futures = {name: pool.submit(_attempt, fn) for name, fn in jobs.items()}
            answers = {name: future.result() for name, future in futures.items()}
        prom.session.close()
        return answers

    results: dict[int, dict[str, Any]] = {}
    if reachable:
        with ThreadPoolExecutor(max_workers=min(16, len(reachable)), thread_name_prefix="prometheus") as pool:
            for (index, _), answers in zip(reachable, pool.map(lambda it: read(it[1]), reachable), strict=True):
                results[index] = answers
    out: list[ClusterMetrics] = []
    for index, target in enumerate(targets):
        if index not in results:
            out.append(ClusterMetrics(target.name, None, error="no `prometheus_url` is configured for this cluster"))
        else:
            out.append(_assemble(target, results[index], settings))
    return out


def _bind(fn: Callable[..., Any], *args: Any) -> Callable[[], Any]:
    return lambda: fn(*args)


def _attempt(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except PromError as exc:
        return exc


def _assemble(target: Target, answers: dict[str, Any], settings: QuerySettings) -> ClusterMetrics:
    errors = {name: answer for name, answer in answers.items() if isinstance(answer, PromError)}
    if len(errors) == len(answers):
        first = next(iter(errors.values()))
        return ClusterMetrics(target.name, target.prometheus_url, error=str(first), queries=len(answers))
    warnings = sorted({f"{name}: {exc}" for name, exc in errors.items()})
    stats: dict[str, Stats] = {name: _by_stat(answer) for name, answer in answers.items()
                               if name in INSTANT and not isinstance(answer, PromError)}
    series = {name: _series(answer) for name, answer in answers.items()
              if name in RANGE and not isinstance(answer, PromError)}
    keys = _model_servers(stats)
    deployments = [_deployment(target.name, key, stats, series, settings) for key in sorted(keys)]
    return ClusterMetrics(target.name, target.prometheus_url, deployments=deployments, warnings=warnings,
                          queries=len(answers))


def _by_stat(result: Iterable[dict[str, Any]]) -> Stats:
    """{(namespace, deployment): {stat: value}}; bucket stats become {le: count}, labelled extras lists."""
    out: Stats = defaultdict(dict)
    for item in result:
        metric = item.get("metric", {})
        key = (metric.get("namespace", ""), metric.get("deployment", ""))
        if not key[1]:
            continue
        value = _number(item.get("value", [None, None])[1])
        stat = metric.get("stat", "")
        bucket = out[key]
        if "le" in metric:
            le = _number(metric["le"]) if metric["le"] != "+Inf" else math.inf
            if le is not None and value is not None:
                bucket.setdefault(stat, {})[le] = bucket.get(stat, {}).get(le, 0.0) + value
        elif stat == "typed":
            bucket.setdefault("typed", []).append((metric.get("instance_type"), value or 0.0))
        elif stat in ("devices", "device_steps"):
            bucket[stat] = (bucket.get(stat) or 0.0) + (value or 0.0)
            bucket.setdefault("resource", metric.get("resource"))
        else:
            bucket[stat] = value
            if "accelerator" in metric:
                bucket["accelerator"] = metric["accelerator"]
    return out


def _series(result: Iterable[dict[str, Any]]) -> dict[Key, tuple[Point, ...]]:
    out: dict[Key, tuple[Point, ...]] = {}
    for item in result:
        metric = item.get("metric", {})
        key = (metric.get("namespace", ""), metric.get("deployment", ""))
        out[key] = tuple((float(t), v) for t, raw in item.get("values", []) if (v := _number(raw)) is not None)
    return out


def _model_servers(stats: Mapping[str, Stats]) -> set[Key]:
    """Deployments that serve models: vLLM series, accelerator use or accelerator requests.

    kube_deployment_* (replicas) is left out on purpose: it lists every Deployment (coredns too).
    """
    keys: set[Key] = set()
    for name in ("util", "memory", "requests", "e2e", "ttft", "tpot", "queue", "kv", "inventory"):
        keys.update(stats.get(name, {}).keys())
    return keys


def _ratio(part: float | None, whole: float | None) -> float | None:
    if part is None or whole is None:
        return None
    return part / whole if whole else (0.0 if part == 0 else None)


def _deployment(cluster: str, key: Key, stats: Mapping[str, Stats],
                series: Mapping[str, dict[Key, tuple[Point, ...]]], settings: QuerySettings) -> DeploymentMetrics:
    def get(query: str, stat: str) -> Any:
        return stats.get(query, {}).get(key, {}).get(stat)

    def quantile(query: str, stat: str, q: float) -> float | None:
        buckets = get(query, stat)
        return bucket_quantile(q, buckets) if buckets else None

    samples = get("util", "samples")
    typed = get("inventory", "typed") or []
    resource = get("inventory", "resource")
    accelerator = get("util", "accelerator") or ("neuron" if resource and "neuron" in resource
                                                 else "gpu" if resource else None)
    count = get("requests", "count")
    desired, available, restarts = get("replicas", "desired"), get("replicas", "available"), get("restarts", "total")
    # No traffic at all leaves the histograms empty: then there is no latency, not a latency of 0.
    return DeploymentMetrics(
        cluster=cluster, namespace=key[0], name=key[1],
        accelerator=accelerator, device_resource=resource,
        instance_type=max(typed, key=lambda t: t[1])[0] if typed else None,
        devices=get("inventory", "devices"),
        device_hours=steps * settings.step.total_seconds() / 3600 if (steps := get("inventory", "device_steps"))
        is not None else None,
        util_mean=_ratio(get("util", "sum"), samples) if samples else None,
        util_p95=get("util", "p95"), util_now=get("util", "now"),
        idle_share=_ratio(get("util", "idle_samples"), samples) if samples else None,
        mem_used_mib=get("memory", "used"), mem_total_mib=get("memory", "total"),
        requests=count, rps_mean=count / settings.window.total_seconds() if count is not None else None,
        rps_now=get("requests", "rps_now"), abort_share=_ratio(get("requests", "aborted"), count),
        e2e_p50=quantile("e2e", "window", 0.5), e2e_p95=quantile("e2e", "window", 0.95),
        e2e_p99=quantile("e2e", "window", 0.99), e2e_p95_now=quantile("e2e", "now", 0.95),
        ttft_p95=quantile("ttft", "window", 0.95), ttft_p95_now=quantile("ttft", "now", 0.95),
        tpot_mean=_ratio(get("tpot", "sum"), get("tpot", "count")) if get("tpot", "count") else None,
        tpot_p95=quantile("tpot", "window", 0.95),
        queue_mean=get("queue", "mean"), queue_max=get("queue", "max"), queue_now=get("queue", "now"),
        queue_slope_per_hour=get("queue", "slope"), running_mean=get("queue", "running_mean"),
        kv_mean=get("kv", "mean"), kv_max=get("kv", "max"),
        preemptions=get("preemptions", "total"),
        replicas_desired=int(desired) if desired is not None else None,
        replicas_available=int(available) if available is not None else None,
        restarts=int(round(restarts)) if restarts is not None else None,
        util_series=series.get("chart_util", {}).get(key, ()),
        latency_series=series.get("chart_latency", {}).get(key, ()),
    )
