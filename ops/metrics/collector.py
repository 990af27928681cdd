"""Collecting a digest's figures: every cluster's Prometheus read concurrently with the queries of
ops.metrics.queries, the answers assembled into per-deployment results (None where a figure was
not measured), histogram quantiles computed here from the summed buckets, and the per-pod step
answers combined per workload by ops.metrics.workloads.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import requests

from ops.metrics.client import PromError, Prometheus, RawAnswer
from ops.metrics.queries import INSTANT, RANGE, DigestQueries, Key, QuerySettings, promql, range_promql
from ops.metrics.workloads import (
    Folded,
    Owners,
    Point,
    chart_series,
    owners_of,
    per_workload,
    subquery_grid,
    window_stats,
)

# ---- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeploymentMetrics:
    """One model server over the window. None means "not measured" (no such series), never zero."""

    cluster: str
    namespace: str
    name: str
    accelerator: str | None = None  # "gpu" | "neuron"
    instance_type: str | None = None  # from kube_node_labels, or (ops.digest) from the Node objects
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
    error_share: float | None = None  # finished_reason="error" (vLLM ≥ 0.11); None where never exported
    failed_share: float | None = None  # aborted or errored: requests that got no full answer
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
    # (node, accelerators requested there now) for the nodes kube_node_labels does not type: where
    # the digest looks the instance type up in the Kubernetes API.
    untyped_nodes: tuple[tuple[str, float], ...] = ()

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
    queries: int = 0  # PromQL requests sent (the constant this package is built around)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class Target:
    """A cluster to read: its name and its Prometheus (None = not configured)."""

    name: str
    prometheus_url: str | None


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

Stats = dict[Key, dict[str, Any]]


def collect(targets: Sequence[Target], end: datetime, settings: QuerySettings = QuerySettings(), *,
            scope: Key | None = None, session_factory: Callable[[], requests.Session] = requests.Session,
            per_cluster: int = 4) -> list[ClusterMetrics]:
    """Read every target concurrently (each with `per_cluster` queries in flight); never raises for a cluster.

    `scope` limits the joins to one (namespace, deployment): the same queries, cheaper to evaluate.
    """
    if end.tzinfo is None:
        raise ValueError("end must be an aware datetime")
    texts = {**promql(settings, scope), **range_promql(settings, scope)}
    start = end - settings.window
    chart_step = DigestQueries(settings, scope).chart_step()
    first, last, step = subquery_grid(end, settings.window, settings.step)
    reachable = [(i, t) for i, t in enumerate(targets) if t.prometheus_url]

    def read(target: Target) -> dict[str, Any]:
        prom = Prometheus(target.prometheus_url or "", settings.timeout, session_factory())
        # A few queries in flight per cluster: Prometheus answers them in parallel, and a dead one
        # costs one timeout, not one per query in sequence. The replicas query goes first: its owner
        # mapping is what the range answers are summed with, per workload, as they are parsed.
        with ThreadPoolExecutor(max_workers=per_cluster, thread_name_prefix=f"promql-{target.name}") as pool:
            replicas = pool.submit(_attempt, _bind(prom.query, texts["replicas"], end))
            owners = _Owners(replicas, texts, settings, scope)
            jobs: dict[str, Callable[[], Any]] = {name: _bind(_instant, prom, owners, name, end)
                                                  for name in INSTANT if name != "replicas"}
            jobs["steps"] = _bind(_folded, _bind(_range, prom, owners, "steps", first, last, step), owners,
                                  settings.idle_util_pct)
            jobs["charts"] = _bind(_folded, _bind(_range, prom, owners, "charts", start, end, chart_step),
                                   owners, 0.0)
            jobs["latency"] = _bind(_folded, _bind(_range, prom, owners, "latency", start, end, chart_step),
                                    owners, 0.0)
            futures = {name: pool.submit(_attempt, fn) for name, fn in jobs.items()}
            futures["replicas"] = replicas
            answers = {name: futures[name].result() for name in (*INSTANT, *RANGE)}
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


class _Owners:
    """The owner mapping of the replicas answer, made once for the range queries that wait on it, and
    the query texts that depend on that answer (DigestQueries.neuron_nodes and .recorded)."""

    def __init__(self, replicas: Future[Any], texts: Mapping[str, str], settings: QuerySettings,
                 scope: Key | None) -> None:
        self._replicas, self._lock = replicas, threading.Lock()
        self._owners: Owners | None = None
        self._texts, self._settings, self._scope = texts, settings, scope
        # util (scoped), steps and charts: their texts depend on the replicas answer (the scope's Neuron
        # nodes; whether the recording rules' series cover the window).
        self._late: dict[str, str] | None = None

    def text(self, name: str) -> str:
        if name not in ("steps", "charts") and (self._scope is None or name != "util"):
            return self._texts[name]
        with self._lock:
            if self._late is None:
                answer = self._replicas.result()
                stats = [] if isinstance(answer, PromError) else [item.get("metric", {}) for item in answer]
                nodes = tuple(sorted({m["node"] for m in stats if m.get("stat") == "neuron_node" and m.get("node")}))
                scoped = self._scope is not None and not isinstance(answer, PromError)
                use = any(m.get("stat") == "recorded" for m in stats)
                self._late = {**promql(self._settings, self._scope, nodes if scoped else None),
                              **range_promql(self._settings, self._scope, nodes if scoped else None, use)}
            return self._late[name]

    def get(self) -> Owners:
        with self._lock:
            if self._owners is None:
                answer = self._replicas.result()
                if isinstance(answer, PromError):
                    raise answer
                self._owners = owners_of(answer)
            return self._owners


def _instant(prom: Prometheus, owners: _Owners, name: str, end: datetime) -> Any:
    return prom.query(owners.text(name), end)


def _range(prom: Prometheus, owners: _Owners, name: str, start: datetime, end: datetime, step: timedelta
           ) -> RawAnswer:
    return prom.query_range_raw(owners.text(name), start, end, step)


def _folded(fetch: Callable[[], RawAnswer], owners: _Owners, idle: float) -> Folded:
    """A range answer summed per workload while it is parsed (its bytes wait for the owner mapping)."""
    answer = fetch()
    folded = Folded(owners.get(), idle)
    answer.parse(folded.hook)
    return folded.finish()


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
    replicas = answers.get("replicas")
    if isinstance(replicas, PromError) or replicas is None:
        # Without the pod → workload mapping no figure can be told to a deployment.
        return ClusterMetrics(target.name, target.prometheus_url, queries=len(answers),
                              error=f"the pod → workload mapping could not be read: {replicas}")
    owners = owners_of(replicas)
    stats: dict[str, Stats] = {name: _by_stat(answer if name == "replicas" else per_workload(answer, owners))
                               for name, answer in answers.items()
                               if name in INSTANT and not isinstance(answer, PromError)}
    series = _per_step(answers, stats, owners)
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
        if not key[1] or metric.get("stat") == "owner":  # the owner mapping: ops.metrics.workloads reads it
            continue
        value = _number(item.get("value", [None, None])[1])
        stat = metric.get("stat", "")
        bucket = out[key]
        if "le" in metric:
            le = _number(metric["le"]) if metric["le"] != "+Inf" else math.inf
            if le is not None and value is not None:
                bucket.setdefault(stat, {})[le] = bucket.get(stat, {}).get(le, 0.0) + value
        elif stat == "typed":
            if metric.get("instance_type"):  # a kube_node_labels series without the label types nothing
                bucket.setdefault("typed", []).append((metric["instance_type"], value or 0.0))
        elif stat == "placed":
            nodes = bucket.setdefault("placed", {})
            nodes[metric.get("node", "")] = nodes.get(metric.get("node", ""), 0.0) + (value or 0.0)
        elif stat in ("devices", "device_steps"):
            bucket[stat] = (bucket.get(stat) or 0.0) + (value or 0.0)
            bucket.setdefault("resource", metric.get("resource"))
        else:
            bucket[stat] = value
            if "accelerator" in metric:
                bucket["accelerator"] = metric["accelerator"]
    return out


def _per_step(answers: Mapping[str, Any], stats: dict[str, Stats], owners: Owners
              ) -> dict[str, dict[Key, tuple[Point, ...]]]:
    """The range queries' series summed per workload: util p95 and queue max go into `stats` (as the
    instant queries' stats would), the charts come back."""
    steps = answers.get("steps")
    if isinstance(steps, Folded):
        for key, found in window_stats(steps).items():
            if "p95" in found:
                util = stats.setdefault("util", defaultdict(dict))[key]
                util["p95"] = found["p95"]
                util.setdefault("accelerator", found["accelerator"])
                if "idle_samples" in found:
                    util["idle_samples"] = found["idle_samples"]
            if "queue_max" in found:
                stats.setdefault("queue", defaultdict(dict))[key]["max"] = found["queue_max"]
    charts, latency = (answer if isinstance(answer := answers.get(name), Folded) else Folded(owners)
                       for name in ("charts", "latency"))
    util_series, latency_series = chart_series(charts, latency, bucket_quantile)
    return {"chart_util": util_series, "chart_latency": latency_series}


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
    aborted, errored = get("requests", "aborted"), get("requests", "errored")
    failed = None if aborted is None and errored is None else (aborted or 0.0) + (errored or 0.0)
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
        rps_now=get("requests", "rps_now"), abort_share=_ratio(aborted, count),
        error_share=_ratio(errored, count), failed_share=_ratio(failed, count),
        e2e_p50=quantile("e2e", "window", 0.5), e2e_p95=quantile("e2e", "window", 0.95),
        e2e_p99=quantile("e2e", "window", 0.99), e2e_p95_now=quantile("e2e", "now", 0.95),
        ttft_p95=quantile("ttft", "window", 0.95), ttft_p95_now=quantile("ttft", "now", 0.95),
        tpot_mean=_ratio(get("tpot", "sum"), get("tpot", "count")) if get("tpot", "count") else None,
        tpot_p95=quantile("tpot", "window", 0.95),
        queue_mean=get("queue", "mean"), queue_max=get("queue", "max"), queue_now=get("queue", "now"),
        queue_slope_per_hour=get("queue", "slope"), running_mean=get("queue", "running_mean"),
        kv_mean=get("kv", "mean"), kv_max=get("kv", "max"),
        preemptions=get("requests", "preemptions"),
        replicas_desired=int(desired) if desired is not None else None,
        replicas_available=int(available) if available is not None else None,
        restarts=int(round(restarts)) if restarts is not None else None,
        util_series=series.get("chart_util", {}).get(key, ()),
        latency_series=series.get("chart_latency", {}).get(key, ()),
        untyped_nodes=tuple(sorted((node, n) for node, n in (get("inventory", "placed") or {}).items() if node)),
    )
