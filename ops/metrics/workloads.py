"""Per-pod answers combined per workload in Python: what PromQL's joins with the owner mapping
computed, without evaluating them in Prometheus (once per statistic, or at every step of a
subquery or a chart, they were most of a digest's cost at fleet scale: bench/NOTES.md).

The replicas query brings the owner mapping once (stat `owner`: (namespace, pod) → workload).

Instant queries answer per pod (`by (namespace, pod, exported_namespace, exported_pod, …)`);
`per_workload` sums them per workload, except the statistics named `<stat>/sum` with `<stat>/count`
(a mean over series: Σ sums / Σ counts), `<stat>/mean` (a mean over pods) and `<stat>/max`.

The range queries `steps`, `charts` and `latency` answer with raw series (no function, aggregation
or operator at each step, where Prometheus 2 spends more than on reading the samples). Each answer
is summed per workload while it is parsed (`Folded.hook`, json.loads' object_hook, with the owner
mapping read first): into fixed arrays indexed by step, so that no series outlives its parsing (held
as parsed JSON and dicts keyed by timestamp, they took the bot's peak RSS from 167 MB to ~350 MB at
N = 500 and 2.5 GB at N = 5 000: bench/NOTES.md). The statistics are then taken the way PromQL does:

* a deployment's GPU utilization at a step is the mean over its GPU series, its Neuron utilization
  the mean over its pods (a pod's own cores, else its node's: `_neuron_pods`); the chart averages
  the accelerator kinds present;
* `quantile_over_time` interpolates linearly between ranks (phi·(n−1)), `max_over_time` is the max;
  the GPU idle samples are `sum_over_time((util < bool idle)[window:step])`, counted per series;
* a step where no pod of a workload has a sample gives that workload no point at all;
* the latency chart is `histogram_quantile` over the summed buckets (collector.bucket_quantile).

The `steps` grid is the subquery's: Prometheus evaluates `expr[range:step]` at every multiple of
`step` (since the epoch, in milliseconds) from `end − range` to `end`, both ends included, and
`end` is the query time as Prometheus parses it (`prom_millis`). A range query answers at most
11 000 points per series: window / step must stay below (24 h at 5 min is 288).
"""

from __future__ import annotations

import math
import re
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from ops.metrics import recorded
from ops.metrics.queries import GPU_UTIL, NEURON_UTIL, NODE_INFO, QUEUE, REQUESTS_METRIC, Key

Point = tuple[float, float]  # (unix seconds, value)
Owners = dict[tuple[str, str], Key]  # (namespace, pod) → (namespace, workload)


def prom_millis(at: datetime) -> int:
    """The millisecond timestamp Prometheus makes of `at` sent as "%.3f" seconds (its parseTime, in Go).

    Go splits the float into seconds and a fraction, rounds the fraction to milliseconds, then
    truncates fraction × 1e9 to nanoseconds, so "….123" can land on 122 ms: the grid must follow it.
    """
    text = f"{at.timestamp():.3f}"
    frac, whole = math.modf(float(text))
    frac = math.floor(frac * 1000 + 0.5) / 1000  # Go's math.Round, for a non-negative fraction
    return int(whole) * 1000 + int(frac * 1e9) // 1_000_000


def subquery_grid(end: datetime, window: timedelta, step: timedelta) -> tuple[datetime, datetime, timedelta]:
    """(first, last, step) of the steps a `[window − 1 ms : step]` subquery evaluated at `end` visits."""
    step_ms = max(1, int(step.total_seconds())) * 1000
    range_ms = max(1, int(window.total_seconds() * 1000) - 1)
    end_ms = prom_millis(end)
    low = end_ms - range_ms
    first = -(-low // step_ms) * step_ms
    last = end_ms // step_ms * step_ms
    return (datetime.fromtimestamp(first / 1000, UTC), datetime.fromtimestamp(last / 1000, UTC),
            timedelta(milliseconds=step_ms))


def owners_of(result: Iterable[Mapping[str, Any]]) -> Owners:
    """(namespace, pod) → (namespace, workload) from the replicas query's `owner` series."""
    out: Owners = {}
    for item in result:
        metric = item.get("metric", {})
        if metric.get("stat") == "owner" and metric.get("pod") and metric.get("deployment"):
            namespace = metric.get("namespace", "")
            out.setdefault((namespace, metric["pod"]), (namespace, metric["deployment"]))
    return out


def per_workload(result: Iterable[Mapping[str, Any]], owners: Owners) -> list[dict[str, Any]]:
    """An instant query's per-pod answer as the per-workload one the joined PromQL gave:
    [{"metric": {namespace, deployment, stat, other labels}, "value": [t, v]}]."""
    groups: dict[tuple[Key, tuple[str | None, ...]], list[float]] = defaultdict(list)
    for item in result:
        metric = item.get("metric", {})
        key = owners.get(pod_of(metric))
        if key is None:  # a pod no workload owns: the join dropped it
            continue
        groups[(key, tuple(map(metric.get, _LABELS)))].append(float(item.get("value", (0, "NaN"))[1]))
    combined: dict[tuple[Key, tuple[str | None, ...]], float] = {}
    counts: dict[tuple[Key, tuple[str | None, ...]], float] = {}
    for (key, labels), values in groups.items():
        name, _, how = (labels[0] or "").partition("/")
        target = (key, (name, *labels[1:]))
        if how == "count":
            counts[target] = sum(values)
        elif how == "max":
            combined[target] = max(values)
        elif how == "mean":
            combined[target] = sum(values) / len(values)
        else:  # a sum, or the numerator of a mean over series
            combined[target] = sum(values)
            if how == "sum":
                counts.setdefault(target, math.nan)
    out = []
    for (key, labels), value in combined.items():
        if (key, labels) in counts:
            value = value / counts[(key, labels)] if counts[(key, labels)] else math.nan
        metric = {k: v for k, v in zip(_LABELS, labels, strict=True) if v is not None}
        out.append({"metric": {**metric, "namespace": key[0], "deployment": key[1]}, "value": [0, value]})
    return out


# Besides the pod's, the labels of the per-pod answers (DigestQueries.per_pod's `extra` and `stats`).
_LABELS = ("stat", "le", "accelerator", "resource", "instance_type", "node")


def pod_of(metric: Mapping[str, str]) -> tuple[str, str]:
    """(namespace, pod) as `_norm` makes them: exported_namespace / exported_pod win where present."""
    return (metric.get("exported_namespace") or metric.get("namespace", ""),
            metric.get("exported_pod") or metric.get("pod", ""))


class Folded:
    """One range answer summed per workload as it is parsed (`series`, called once per series), into
    fixed arrays indexed by step: per stat, per workload, the sum over its series or pods at each step
    and how many there were (0: no point at that step), and per le the latency buckets alike.

    Nothing of a series outlives its call (the Neuron ones excepted, few, that `_neuron_pods` needs
    together): a fleet's raw step series parsed as JSON and folded into dicts keyed by timestamp took
    several times the answer's size (bench/NOTES.md, "Digest cost").
    """

    def __init__(self, owners: Owners, idle: float = 0.0) -> None:
        self.owners, self.idle = owners, idle
        self.slots: dict[float, int] = {}  # timestamp → step index, in the order first seen
        self.times: list[float] = []  # step index → timestamp, as Prometheus gave it
        self.sums: dict[str, dict[Key, array[float]]] = {"gpu": {}, "neuron": {}, "queue": {}}
        self.counts: dict[str, dict[Key, array[int]]] = {"gpu": {}, "neuron": {}, "queue": {}}
        self.buckets: dict[Key, dict[float, tuple[array[float], array[int]]]] = {}
        self.below: dict[Key, int] = defaultdict(int)  # GPU samples under the idle threshold, all steps
        self.neuron: dict[str, list[tuple[Mapping[str, str], Any]]] = defaultdict(list)

    def _index(self, points: Iterable[tuple[float, Any]]) -> list[tuple[int, float]]:
        slots, out = self.slots, []
        for t, raw in points:
            if (i := slots.get(t)) is None:
                i = slots[t] = len(self.times)
                self.times.append(t)
            out.append((i, float(raw)))
        return out

    def _arrays(self, sums: array[float], counts: array[int]) -> None:
        if (missing := len(self.times) - len(sums)) > 0:
            sums.frombytes(bytes(sums.itemsize * missing))
            counts.frombytes(bytes(counts.itemsize * missing))

    def add(self, stat: str, key: Key, points: Iterable[tuple[float, Any]]) -> list[tuple[int, float]]:
        indexed = self._index(points)
        if (sums := self.sums[stat].get(key)) is None:
            sums = self.sums[stat][key] = array("d")
            self.counts[stat][key] = array("l")
        counts = self.counts[stat][key]
        self._arrays(sums, counts)
        for i, value in indexed:
            sums[i] = sums[i] + value if counts[i] else value
            counts[i] += 1
        return indexed

    def series(self, metric: Mapping[str, str], values: Iterable[tuple[float, Any]]) -> None:
        name = metric.get("__name__", "")
        if name.startswith(recorded.LEVEL):
            self._recorded(name, (metric.get("namespace", ""), metric.get("deployment", "")), values)
            return
        if name in (NEURON_UTIL, NODE_INFO, REQUESTS_METRIC):
            self.neuron[name].append((metric, values))
            return
        key = self.owners.get(pod_of(metric))
        if key is None:  # a pod no workload owns (an exporter's, coredns): the join dropped it too
            return
        if "le" in metric and not name:  # rate() of a latency bucket
            le = math.inf if metric["le"] == "+Inf" else float(metric["le"])
            indexed = self._index(values)
            by_le = self.buckets.setdefault(key, {})
            if (pair := by_le.get(le)) is None:
                pair = by_le[le] = (array("d"), array("l"))
            sums, counts = pair
            self._arrays(sums, counts)
            for i, value in indexed:
                sums[i] = sums[i] + value if counts[i] else value
                counts[i] += 1
        elif name == GPU_UTIL:
            # sum_over_time((GPU < bool idle)[window:step]), summed over the workload's series.
            idle = self.idle
            self.below[key] += sum(1 for _, value in self.add("gpu", key, values) if value < idle)
        elif name == QUEUE:
            self.add("queue", key, values)

    def _recorded(self, name: str, key: Key, values: Iterable[tuple[float, Any]]) -> None:
        """A recording rule's series: already one workload's mean (or sum) at each step, as one series."""
        if name == recorded.GPU_IDLE:
            self.below[key] += int(sum(float(value) for _, value in values))
        elif (stat := _RECORDED.get(name)) is not None:
            self.add(stat, key, values)

    def hook(self, obj: dict[str, Any]) -> Any:
        """json.loads' object_hook: a series is folded as soon as it is parsed, and dropped."""
        if "values" in obj and isinstance(obj.get("metric"), dict):
            self.series(obj["metric"], obj["values"])
            return None
        return obj

    def finish(self) -> Folded:
        """The Neuron path, once every series is in."""
        if self.neuron[NEURON_UTIL]:
            for (pod, t), value in _neuron_pods(self.neuron).items():
                if (key := self.owners.get(pod)) is not None:
                    self.add("neuron", key, ((t, value),))
        self.neuron.clear()
        for by_le in self.buckets.values():
            for pair in by_le.values():
                self._arrays(*pair)
        for stat in self.sums:
            for key, sums in self.sums[stat].items():
                self._arrays(sums, self.counts[stat][key])
        return self

    def at(self, stat: str, key: Key) -> dict[int, float]:
        """{step index: the workload's sum at that step} where it had samples."""
        sums, counts = self.sums[stat].get(key), self.counts[stat].get(key)
        if sums is None or counts is None:
            return {}
        return {i: sums[i] for i, n in enumerate(counts) if n}


_RECORDED = {recorded.GPU_AVG: "gpu", recorded.NEURON_AVG: "neuron", recorded.QUEUE_SUM: "queue"}
_PROVIDER = re.compile(r"aws:///[^/]*/(.+)")


def _neuron_pods(raw: Mapping[str, list[tuple[Mapping[str, str], Any]]]) -> dict[tuple[tuple[str, str], float], float]:
    """{((namespace, pod), t): the pod's Neuron utilization in percent}, as DigestQueries._neuron_now has it.

    A pod's own cores (their mean) where it has series; else the mean of its node's cores, the node
    found by kube_node_info's provider_id (aws:///<zone>/<instance-id>) from the cores' instance_id,
    for each pod that requests Neuron on that node.
    """
    wanted = {metric.get("instance_id", "") for metric, _ in raw[NEURON_UTIL]}  # nodes of other kinds: no use
    instances: dict[float, dict[str, tuple[str, float]]] = defaultdict(dict)  # t → instance_id → (node, value)
    for metric, values in raw[NODE_INFO]:
        match = _PROVIDER.fullmatch(metric.get("provider_id", ""))
        if match and match.group(1) in wanted and metric.get("node"):
            for t, v in values:
                instances[t][match.group(1)] = (metric["node"], float(v))
    own: dict[tuple[tuple[str, str], float], list[float]] = defaultdict(list)
    nodes: dict[tuple[str, float], list[float]] = defaultdict(list)
    for metric, values in raw[NEURON_UTIL]:
        pod, instance = pod_of(metric), metric.get("instance_id", "")
        for t, v in values:
            percent = 100 * float(v)
            own[(pod, t)].append(percent)
            if instance and (found := instances.get(t, {}).get(instance)):
                nodes[(found[0], t)].append(percent * found[1])
    out = {at: sum(values) / len(values) for at, values in own.items()}
    from_node: dict[tuple[tuple[str, str], float], float] = {}
    for metric, values in raw[REQUESTS_METRIC]:
        pod, node = (metric.get("namespace", ""), metric.get("pod", "")), metric.get("node", "")
        for t, _ in values:
            if (node, t) in nodes and (pod, t) not in out:
                mean = sum(nodes[(node, t)]) / len(nodes[(node, t)])
                from_node[(pod, t)] = max(mean, from_node.get((pod, t), mean))
    return {**from_node, **out}


def _util_at(folded: Folded, key: Key) -> dict[str, dict[int, float]]:
    """{accelerator: {step index: the workload's mean utilization there}} where it had samples."""
    out: dict[str, dict[int, float]] = {}
    for kind in ("gpu", "neuron"):
        sums, counts = folded.sums[kind].get(key), folded.counts[kind].get(key)
        out[kind] = {} if sums is None or counts is None else {i: sums[i] / n for i, n in enumerate(counts) if n}
    return out


def quantile(phi: float, values: list[float]) -> float | None:
    """Prometheus' quantile_over_time: linear interpolation between the closest ranks, phi·(n−1)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = phi * (len(ordered) - 1)
    lower = max(0, math.floor(rank))
    upper = min(len(ordered) - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def window_stats(folded: Folded) -> dict[Key, dict[str, Any]]:
    """From `steps` (folded): {workload: {"p95": utilization p95, "accelerator": …, "queue_max": …,
    "idle_samples": GPU samples below the idle threshold (where it has GPUs)}}."""
    keys = set(folded.sums["gpu"]) | set(folded.sums["neuron"]) | set(folded.sums["queue"])
    out: dict[Key, dict[str, Any]] = {}
    for key in keys:
        stats: dict[str, Any] = {}
        # One p95 per accelerator kind, as the PromQL had; a workload has one kind (GPU wins if both).
        for accelerator, at in reversed(_util_at(folded, key).items()):
            if at:
                stats["p95"], stats["accelerator"] = quantile(0.95, list(at.values())), accelerator
        if key in folded.sums["gpu"]:
            stats["idle_samples"] = float(folded.below[key])
        queue = folded.at("queue", key)
        if queue:
            stats["queue_max"] = max(queue.values())
        out[key] = stats
    return out


def chart_series(charts: Folded, latency: Folded,
                 histogram_quantile: Callable[[float, Mapping[float, float]], float | None]
                 ) -> tuple[dict[Key, tuple[Point, ...]], dict[Key, tuple[Point, ...]]]:
    """From `charts` and `latency` (folded): (utilization, e2e latency p95) points per workload, in time order."""
    util: dict[Key, tuple[Point, ...]] = {}
    for key in set(charts.sums["gpu"]) | set(charts.sums["neuron"]):
        kinds = [at for at in _util_at(charts, key).values() if at]
        steps = sorted({i for at in kinds for i in at}, key=charts.times.__getitem__)
        # The mean of the kinds present at t (`avg by (namespace, deployment)` over the accelerator label).
        points = [(float(charts.times[i]), sum(vals) / len(vals))
                  for i in steps if (vals := [at[i] for at in kinds if i in at])]
        if points:
            util[key] = tuple(points)
    p95: dict[Key, tuple[Point, ...]] = {}
    order = sorted(range(len(latency.times)), key=latency.times.__getitem__)
    for key, by_le in latency.buckets.items():
        points = []
        for i in order:
            buckets = {le: sums[i] for le, (sums, counts) in by_le.items() if counts[i]}
            if buckets and (q := histogram_quantile(0.95, buckets)) is not None:
                points.append((float(latency.times[i]), q))
        if points:
            p95[key] = tuple(points)
    return util, p95
