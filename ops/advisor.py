"""The optimization advisor: rules as data, each turning a deployment's numbers into a suggestion.

The rules follow the ai-on-eks optimization workflow (METRICS.md): utilization low → fewer
replicas, GPU sharing or a smaller instance; latency high with a queue → more replicas or
autoscaling on queue depth; KV cache full with preemptions → more GPU memory for the cache; slow
start-up → decoupled model artifacts and pre-fetched images; restarts → lower
gpuMemoryUtilization; no traffic → undeploy candidate.

Thresholds are a dataclass the config can override key by key (`advisor.thresholds`), and rules can
be switched off by id (`advisor.disabled`). A rule fires only when every number it needs was
measured, and the suggestion carries those numbers as evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from ops.metrics import DeploymentMetrics


@dataclass(frozen=True)
class Thresholds:
    util_target_pct: float = 70.0  # ai-on-eks: keep GPU utilization above 70 % for cost efficiency
    low_util_pct: float = 30.0  # mean utilization below this (with no queue) is "underused"
    queue_empty: float = 0.5  # mean waiting requests at or below this is "no queue"
    latency_p95_seconds: float = 10.0  # end-to-end latency SLO (p95 over the window)
    ttft_p95_seconds: float = 2.0  # time-to-first-token SLO (p95)
    queue_building: float = 1.0  # mean waiting requests at or above this is "a queue"
    queue_growth_per_hour: float = 0.5  # or the queue grows at least this fast
    kv_high: float = 0.95  # KV-cache use (max) this close to full
    preemptions_min: float = 1.0  # preemptions in the window that count
    startup_slow_seconds: float = 300.0  # pod start → Ready (the upstream chart allows 600 s)
    restarts_min: float = 3.0  # container restarts in the window
    min_requests: float = 1.0  # fewer finished requests than this in the window = no traffic
    scale_up_max_factor: float = 2.0  # a saturated deployment grows at most this much per suggestion
    memory_headroom: float = 1.25  # a smaller instance must hold the used GPU memory × this


THRESHOLD_NAMES = frozenset(f.name for f in fields(Thresholds))


def thresholds_from(overrides: Mapping[str, float]) -> Thresholds:
    unknown = sorted(set(overrides) - THRESHOLD_NAMES)
    if unknown:
        raise ValueError(f"unknown advisor thresholds: {', '.join(unknown)}")
    return replace(Thresholds(), **{k: float(v) for k, v in overrides.items()})


@dataclass(frozen=True)
class Action:
    """An operation the suggestion maps to, as the slash command that would request it."""

    # scale | autoscale | undeploy, or `instance` (args: name, instance type): not a verb of its own;
    # the digest turns it into a deploy of the release's preset on that instance (handlers.digest).
    verb: str
    args: tuple[str, ...]
    options: tuple[tuple[str, str], ...] = ()

    @property
    def command(self) -> str:
        return " ".join([self.verb, *self.args, *(f"{k}={v}" for k, v in self.options)])


@dataclass(frozen=True)
class Suggestion:
    rule: str
    severity: int  # 3 high · 2 medium · 1 low
    cluster: str
    namespace: str
    deployment: str
    title: str
    change: str  # the concrete change, in words
    evidence: tuple[tuple[str, str], ...]  # (what, measured value): never empty
    action: Action | None = None
    saving_per_day: float | None = None  # USD; negative = the change costs this much more

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.deployment}/{self.rule}"


@dataclass(frozen=True)
class Facts:
    """What a rule sees: the measurements plus what the digest knows about money and limits."""

    m: DeploymentMetrics
    price_per_device_hour: float | None
    max_replicas: int
    cheaper: Callable[[float], tuple[str, float] | None]  # peak MiB per device → (instance, USD/device-hour)

    @property
    def devices_per_replica(self) -> float | None:
        m = self.m
        if not m.devices or not m.replicas_desired:
            return None
        return m.devices / m.replicas_desired

    def per_day(self, devices: float) -> float | None:
        return devices * self.price_per_device_hour * 24 if self.price_per_device_hour is not None else None


@dataclass(frozen=True)
class Rule:
    id: str
    severity: int
    title: str
    check: Callable[[Facts, Thresholds], Suggestion | None]


def _pct(v: float) -> str:
    return f"{v:.1f} %"


def _s(v: float) -> str:
    return f"{v:.2f} s" if v < 10 else f"{v:.1f} s"


def _money(v: float) -> str:
    return f"${v:,.2f}"


def _make(rule: Rule, f: Facts, title: str, change: str, evidence: Sequence[tuple[str, str]],
          action: Action | None = None, saving: float | None = None) -> Suggestion:
    if not evidence:
        raise ValueError(f"rule {rule.id} produced a suggestion without evidence")
    m = f.m
    return Suggestion(rule=rule.id, severity=rule.severity, cluster=m.cluster, namespace=m.namespace,
                      deployment=m.name, title=title, change=change, evidence=tuple(evidence),
                      action=action, saving_per_day=saving)


def _scale(m: DeploymentMetrics, replicas: int) -> Action:
    return Action("scale", (m.name, str(replicas)), (("namespace", m.namespace), ("cluster", m.cluster)))


def _no_traffic(f: Facts, t: Thresholds) -> Suggestion | None:
    m = f.m
    if m.requests is None or m.requests >= t.min_requests or not m.replicas_desired:
        return None
    cost = f.per_day(m.devices or 0)
    evidence = [("finished requests in the window", f"{m.requests:.0f}"),
                ("replicas", str(m.replicas_desired))]
    if cost is not None:
        evidence.append(("cost", f"{_money(cost)}/day"))
    # Scale to 0 frees the accelerators now and is undone with one command; undeploy is for later.
    return _make(RULES_BY_ID["no_traffic"], f, f"Undeploy candidate: {m.name} served no requests",
                 f"Scale `{m.name}` to 0 now (reversible), or `undeploy {m.name}` if nobody needs it.",
                 evidence, _scale(m, 0), cost)


def _underused(f: Facts, t: Thresholds) -> Suggestion | None:
    m = f.m
    if m.util_mean is None or m.util_mean >= t.low_util_pct:
        return None
    if m.queue_mean is not None and m.queue_mean > t.queue_empty:
        return None
    if m.requests is not None and m.requests < t.min_requests:
        return None  # no traffic at all is the other rule's case
    rule = RULES_BY_ID["underused"]
    evidence = [("accelerator utilization (mean)", f"{_pct(m.util_mean)} (target {t.util_target_pct:g} %)")]
    if m.util_p95 is not None:
        evidence.append(("utilization p95", _pct(m.util_p95)))
    if m.queue_mean is not None:
        evidence.append(("queue (mean)", f"{m.queue_mean:.2f}"))
    if m.idle_share is not None:
        evidence.append(("idle time", _pct(100 * m.idle_share)))
    replicas = m.replicas_desired
    per_replica = f.devices_per_replica
    if replicas and replicas > 1:
        # Size for the busy moments (p95), not the mean, so the remaining replicas stay below target.
        peak = m.util_p95 if m.util_p95 is not None else m.util_mean
        target = max(1, math.ceil(replicas * peak / t.util_target_pct))
        if target < replicas:
            saving = f.per_day((replicas - target) * per_replica) if per_replica else None
            evidence.append(("replicas", str(replicas)))
            return _make(rule, f, f"Scale {m.name} {replicas} → {target}",
                         f"Scale `{m.name}` from {replicas} to {target} replicas: the remaining ones would run at "
                         f"about {_pct(min(100.0, peak * replicas / target))} at p95. Then consider GPU sharing "
                         "(time-slicing or MIG) for what is left.", evidence, _scale(m, target), saving)
    peak_mib = (m.mem_used_mib / m.devices) if m.mem_used_mib is not None and m.devices else None
    smaller = f.cheaper(peak_mib) if peak_mib is not None and f.price_per_device_hour is not None else None
    if smaller is not None and m.device_hours and f.price_per_device_hour is not None and peak_mib is not None:
        name, price = smaller
        saving = (f.price_per_device_hour - price) * (m.devices or 0) * 24
        evidence.append(("GPU memory used per device", f"{peak_mib / 1024:.1f} GiB"))
        return _make(rule, f, f"{m.name}: a cheaper instance would do",
                     f"Move `{m.name}` to `{name}` ({_money(price)}/device-hour instead of "
                     f"{_money(f.price_per_device_hour)}), or share the GPU (time-slicing, MIG).",
                     evidence, Action("instance", (m.name, name), (("namespace", m.namespace), ("cluster", m.cluster))),
                     saving)
    return _make(rule, f, f"{m.name}: share the accelerator",
                 f"`{m.name}` keeps its accelerator mostly idle: share it with another model (GPU time-slicing, "
                 "MIG or MPS) or batch more requests per replica.", evidence)


def _saturated(f: Facts, t: Thresholds) -> Suggestion | None:
    m = f.m
    slow = [(label, value, slo) for label, value, slo in (("end-to-end latency p95", m.e2e_p95, t.latency_p95_seconds),
                                                          ("time to first token p95", m.ttft_p95, t.ttft_p95_seconds))
            if value is not None and value > slo]
    if not slow:
        return None
    growing = m.queue_slope_per_hour is not None and m.queue_slope_per_hour >= t.queue_growth_per_hour
    queued = m.queue_mean is not None and m.queue_mean >= t.queue_building
    if not (growing or queued):
        return None
    evidence = [(label, f"{_s(value)} (SLO {_s(slo)})") for label, value, slo in slow]
    if m.queue_mean is not None:
        evidence.append(("queue mean / max", f"{m.queue_mean:.1f} / {m.queue_max or 0:.0f} waiting"))
    if m.queue_slope_per_hour is not None:
        evidence.append(("queue growth", f"{m.queue_slope_per_hour:+.2f} requests/hour"))
    if m.util_mean is not None:
        evidence.append(("accelerator utilization (mean)", _pct(m.util_mean)))
    rule = RULES_BY_ID["saturated"]
    replicas = m.replicas_desired
    if not replicas:
        return _make(rule, f, f"{m.name} is saturated", "Add replicas or autoscale on queue depth.", evidence)
    over = max(value / slo for _, value, slo in slow)
    target = min(f.max_replicas, max(replicas + 1, math.ceil(replicas * min(t.scale_up_max_factor, over))))
    if target <= replicas:
        return _make(rule, f, f"{m.name} is saturated at the replica limit",
                     f"`{m.name}` already runs the cluster's maximum of {f.max_replicas} replicas: use a larger "
                     "instance or tensor parallelism.", evidence)
    per_replica = f.devices_per_replica
    extra = f.per_day((target - replicas) * per_replica) if per_replica else None
    autoscale = f"autoscale {m.name} min={replicas} max={min(f.max_replicas, 2 * target)} metric=queue"
    return _make(rule, f, f"Scale {m.name} {replicas} → {target}",
                 f"Scale `{m.name}` from {replicas} to {target} replicas now; to follow the load instead, "
                 f"`{autoscale}`.", evidence, _scale(m, target), -extra if extra is not None else None)


def _kv_pressure(f: Facts, t: Thresholds) -> Suggestion | None:
    m = f.m
    if m.kv_max is None or m.preemptions is None or m.kv_max < t.kv_high or m.preemptions < t.preemptions_min:
        return None
    evidence = [("KV-cache use max / mean", f"{_pct(100 * m.kv_max)} / {_pct(100 * (m.kv_mean or 0))}"),
                ("preemptions in the window", f"{m.preemptions:.0f}")]
    return _make(RULES_BY_ID["kv_pressure"], f, f"{m.name}: KV cache full, requests preempted",
                 "Give the KV cache more room: raise vLLM's `gpuMemoryUtilization` (e.g. 0.90 → 0.95) if memory "
                 "allows, lower `maxNumSeqs`, or move to a GPU with more memory (or tensor parallelism).",
                 evidence)


def _slow_startup(f: Facts, t: Thresholds) -> Suggestion | None:
    m = f.m
    if m.startup_seconds is None or m.startup_seconds <= t.startup_slow_seconds:
        return None
    return _make(RULES_BY_ID["slow_startup"], f, f"{m.name} starts slowly",
                 "Decouple the model artifacts from the image (S3/EFS/FSx model cache), pre-fetch the image "
                 "on the nodes, and use the SOCI snapshotter for lazy image loading.",
                 [("pod start → Ready",
                   f"{m.startup_seconds / 60:.1f} min (limit {t.startup_slow_seconds / 60:g} min)")])


def _restarts(f: Facts, t: Thresholds) -> Suggestion | None:
    m = f.m
    if m.restarts is None or m.restarts < t.restarts_min:
        return None
    return _make(RULES_BY_ID["restarts"], f, f"{m.name} keeps restarting",
                 "If the container is OOM-killed, lower vLLM's `gpuMemoryUtilization` (e.g. 0.90 → 0.80) or "
                 "`maxModelLen`; check `kubectl describe pod` for the last termination reason.",
                 [("container restarts in the window", str(m.restarts))])


RULES: tuple[Rule, ...] = (
    Rule("no_traffic", 2, "no traffic for the whole window → undeploy candidate", _no_traffic),
    Rule("saturated", 3, "latency over the SLO with a queue building → more replicas or autoscale", _saturated),
    Rule("restarts", 3, "restarts → lower gpuMemoryUtilization", _restarts),
    Rule("kv_pressure", 2, "KV cache near full with preemptions → more cache memory", _kv_pressure),
    Rule("underused", 2, "utilization low, queue empty → fewer replicas, sharing or a smaller instance", _underused),
    Rule("slow_startup", 1, "start-up over the limit → decouple artifacts, pre-fetch images", _slow_startup),
)
RULES_BY_ID: dict[str, Rule] = {rule.id: rule for rule in RULES}


def advise(facts: Facts, thresholds: Thresholds = Thresholds(), disabled: Sequence[str] = ()) -> list[Suggestion]:
    """Every enabled rule's suggestion for one deployment, most severe first."""
    out = [s for rule in RULES if rule.id not in disabled and (s := rule.check(facts, thresholds)) is not None]
    return sorted(out, key=lambda s: -s.severity)


def describe_rules() -> list[dict[str, Any]]:
    """The rule table, for help text and the README."""
    return [{"id": r.id, "severity": r.severity, "when": r.title} for r in RULES]
