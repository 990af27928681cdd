"""Stand-ins for kube-controller-manager, kube-scheduler and the kubelets inside the API emulator.

The controller reacts to every committed write (``notify``), reconciles on the emulator's event
loop and writes back through the same API the tests use, so clients observe the usual sequence:
a Deployment gets a ReplicaSet, the ReplicaSet gets Pending pods, the scheduler binds them (or
records ``FailedScheduling``), a kubelet starts them after ``ready_delay`` and the Deployment's
status follows. Delays are small and configurable so tests stay fast yet see intermediate states.

Reconciles never await between reading and writing, so on the single loop they cannot interleave
with request handlers; they only ever write when something changed, so they converge.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import copy
import datetime
import hashlib
import ipaddress
import json
import logging
import math
import random
import re
import time
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol

from bot.sandbox import operators

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str, str]  # (kind, namespace, name)

_SCHEDULER: Final[Key] = ("Scheduler", "", "")
_SAFE_CHARS: Final = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' alphabet for generated names
_REVISION: Final = "deployment.kubernetes.io/revision"
_TERMINATED_PHASES: Final = frozenset({"Succeeded", "Failed"})
_PULL_FAILURE: Final = "ImagePullBackOff"
_CRASH_FAILURES: Final = frozenset({"CrashLoopBackOff", "OOMKilled"})


class ClusterAPI(Protocol):
    """What the controller needs from the emulator (``KubeEmulator`` provides it)."""

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None: ...

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]: ...

    def put(self, obj: Mapping[str, Any]) -> Obj: ...

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None: ...


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: Mapping[str, Any]) -> Obj:
    return obj.get("metadata") or {}


def _status(obj: Mapping[str, Any]) -> Obj:
    return obj.get("status") or {}


def _deleting(obj: Mapping[str, Any]) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))


def _owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in _meta(obj).get("ownerReferences") or [])


def _label(obj: Mapping[str, Any], key: str) -> str | None:
    return (_meta(obj).get("labels") or {}).get(key)


def _pod_ref(pod: Mapping[str, Any]) -> str:
    """How kubelet messages name a pod: ``name_namespace(uid)``."""
    meta = _meta(pod)
    return f"{meta.get('name')}_{meta.get('namespace')}({meta.get('uid')})"


def _owner_ref(owner: Mapping[str, Any]) -> Obj:
    meta = _meta(owner)
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def _safe_hash(value: Any, length: int = 10) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()
    return "".join(_SAFE_CHARS[b % len(_SAFE_CHARS)] for b in digest[:length])


def _random_suffix(length: int = 5) -> str:
    return "".join(random.choice(_SAFE_CHARS) for _ in range(length))


def _replicas(obj: Mapping[str, Any]) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _count(obj: Mapping[str, Any], field: str) -> int:
    return int(_status(obj).get(field) or 0)


def _omit_zero(status: Obj, keep: Iterable[str] = ()) -> Obj:
    """Kubernetes omits zero-valued counters (``omitempty``); clients then read None."""
    kept = set(keep)
    return {k: v for k, v in status.items() if k in kept or v not in (0, None, [], "")}


# --------------------------------------------------------------------------------------------------
# Quantities and scheduling arithmetic.
# --------------------------------------------------------------------------------------------------

_SUFFIXES: Final[dict[str, Decimal]] = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY_RE: Final = re.compile(r"^([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)([a-zA-Z]*)$")


def parse_quantity(value: Any) -> Decimal:
    """A Kubernetes quantity ("500m", "16Gi", 2) as a number; unparsable values count as zero."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return Decimal(str(value))
    match = _QUANTITY_RE.match(str(value or "").strip())
    if match is None or match.group(2) not in _SUFFIXES:
        return Decimal(0)
    try:
        return Decimal(match.group(1)) * _SUFFIXES[match.group(2)]
    except InvalidOperation:
        return Decimal(0)


def _container_requests(container: Mapping[str, Any]) -> dict[str, Decimal]:
    # Kubernetes defaults a missing request to the limit (which is how GPUs are usually asked for).
    resources = container.get("resources") or {}
    requests, limits = resources.get("requests") or {}, resources.get("limits") or {}
    return {name: parse_quantity(requests.get(name, limits.get(name))) for name in {*requests, *limits}}


def pod_requests(pod: Mapping[str, Any]) -> dict[str, Decimal]:
    """Effective requests: sum over containers, at least the largest init container, plus overhead."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = collections.defaultdict(Decimal)
    for container in spec.get("containers") or []:
        for name, amount in _container_requests(container).items():
            total[name] += amount
    for container in spec.get("initContainers") or []:
        for name, amount in _container_requests(container).items():
            total[name] = max(total[name], amount)
    for name, amount in (spec.get("overhead") or {}).items():
        total[name] += parse_quantity(amount)
    return dict(total)


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
    labels = {**(_meta(node).get("labels") or {}), "metadata.name": _meta(node).get("name", "")}
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
    status = _status(node)
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
    if "pods" in (_status(node).get("allocatable") or {}) and used.get("pods", 0) + 1 > _allocatable(node, "pods"):
        problems.append("Too many pods")
    for name, amount in sorted(requests.items()):
        if amount > 0 and used.get(name, Decimal(0)) + amount > _allocatable(node, name):
            problems.append(f"Insufficient {name}")
    return problems


def _condition(previous: Iterable[Mapping[str, Any]], kind: str, status: str, reason: str, message: str) -> Obj:
    """A condition that keeps its timestamps while it does not change (no churn for watchers)."""
    now = _now()
    old = next((c for c in previous if c.get("type") == kind), None)
    if old is not None and (old.get("status"), old.get("reason"), old.get("message")) == (status, reason, message):
        return dict(old)
    transition = old.get("lastTransitionTime") if old is not None and old.get("status") == status else now
    condition: Obj = {"type": kind, "status": status, "lastTransitionTime": transition or now}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    if kind in ("Available", "Progressing"):
        condition["lastUpdateTime"] = now
    return condition


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = total * int(value[:-1] or 0) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value or 0)


def _is_ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in _status(pod).get("conditions") or [])


def _active(pod: Mapping[str, Any]) -> bool:
    return not _deleting(pod) and _status(pod).get("phase") not in _TERMINATED_PHASES


class Controller:
    """Deployment, ReplicaSet and StatefulSet controllers, a scheduler and a kubelet, all simplified.

    Knobs (set them before or after ``start``):
      ``schedule_delay``  seconds between a pod's creation and the scheduler's pass over it
      ``ready_delay``     seconds a bound pod spends in ContainerCreating before it runs
      ``restart_backoff`` base seconds between restarts of crash-looping containers (doubles, capped)
      ``failing_images``  image -> "ImagePullBackOff" | "CrashLoopBackOff" | "OOMKilled"
      ``image_logs``      image -> text served by ``pods/log``
      ``virtual_node``    node name used when the cluster has no Node objects (capacity unlimited)
      ``event_ttl``       seconds an Event lives after its last occurrence (kube-apiserver: 1 hour)
      ``enabled``         False freezes the cluster: writes are stored but nothing reacts
    """

    def __init__(self, api: ClusterAPI) -> None:
        self.api = api
        self._enabled = True
        self.schedule_delay = 0.05
        self.ready_delay = 0.1
        self.restart_backoff = 0.5
        self.failing_images: dict[str, str] = {}
        self.image_logs: dict[str, str] = {}
        self.virtual_node = "sandbox-node"
        # pod -> a new Node for it, or None (bot/sandbox/operators.py's Karpenter stand-in); None: off
        self.provision_nodes: Callable[[Obj], Obj | None] | None = None
        # Run the LeaderWorkerSet and RayService stand-ins (bot/sandbox/operators.py); off by default so
        # a test can own such objects' status itself.
        self.custom_operators = False
        self.event_ttl = 3600.0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: dict[Key, None] = {}  # an ordered set: each key reconciles once per wake-up
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._deadline_checks: dict[Key, asyncio.TimerHandle] = {}
        self._events_since_prune = 0
        self._bound_at: dict[str, float] = {}
        self._next_restart: dict[str, float] = {}
        self._progress: dict[str, tuple[tuple[Any, ...], float]] = {}
        self._events: dict[tuple[str, str, str], str] = {}
        self._pod_ips = ipaddress.ip_network("10.244.0.0/16").hosts()

    # ----------------------------------------------------------------------------------------------
    # Lifecycle and triggers
    # ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start reconciling; call on the emulator's running loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run(), name="kube-emulator-controller")
        self._resync()

    async def aclose(self) -> None:
        """Stop reconciling; call on the emulator's loop before it closes."""
        for timer in [*self._timers, *self._deadline_checks.values()]:
            timer.cancel()
        self._timers.clear()
        self._deadline_checks.clear()
        self._loop = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        """Pause or resume; resuming catches up with every change made while paused."""
        was, self._enabled = self._enabled, value
        if value and not was and self._loop is not None:
            self._loop.call_soon_threadsafe(self._resync)

    def notify(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """Called by the emulator on its loop for every committed change."""
        if self._loop is None or not self.enabled:
            return
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        meta = _meta(obj)
        namespace, name = meta.get("namespace") or "", meta.get("name", "")
        workload = api_version == "apps/v1" and kind in ("Deployment", "ReplicaSet", "StatefulSet")
        custom = self.custom_operators and operators.KINDS.get(str(kind)) == api_version  # LWS, RayService
        if (workload or custom) and event_type != "DELETED":
            self._enqueue((str(kind), namespace, name))
        if api_version in ("apps/v1", "v1") and kind in ("ReplicaSet", "Pod"):
            owners = ("Deployment", "ReplicaSet", "StatefulSet", *(operators.KINDS if self.custom_operators else ()))
            for ref in meta.get("ownerReferences") or []:
                if ref.get("controller") and ref.get("kind") in owners:
                    self._enqueue((ref["kind"], namespace, ref.get("name", "")))
        if api_version == "v1" and kind == "Pod":
            self._on_pod(event_type, obj)
        if api_version == "v1" and kind == "Node":
            self._enqueue(_SCHEDULER)
        if event_type == "DELETED":
            self._forget(meta.get("uid", ""))

    def _on_pod(self, event_type: str, pod: Mapping[str, Any]) -> None:
        meta = _meta(pod)
        if event_type == "ADDED" and not (pod.get("spec") or {}).get("nodeName"):
            self._later(self.schedule_delay, _SCHEDULER)
        elif event_type == "ADDED":
            self._later(self.ready_delay, ("Pod", meta.get("namespace") or "", meta.get("name", "")))
        elif event_type == "DELETED":
            self._enqueue(_SCHEDULER)  # capacity freed: pending pods may fit now

    def _resync(self) -> None:
        for kind in ("Deployment", "ReplicaSet", "StatefulSet"):
            for obj in self.api.list("apps/v1", kind):
                self._enqueue((kind, _meta(obj).get("namespace") or "", _meta(obj)["name"]))
        for kind, api_version in operators.KINDS.items() if self.custom_operators else ():
            try:
                found = self.api.list(api_version, kind)
            except ValueError:  # its CRD is not installed: no such operator in this cluster
                continue
            for obj in found:
                self._enqueue((kind, _meta(obj).get("namespace") or "", _meta(obj)["name"]))
        for pod in self.api.list("v1", "Pod"):
            if (pod.get("spec") or {}).get("nodeName"):
                self._enqueue(("Pod", _meta(pod).get("namespace") or "", _meta(pod)["name"]))
        self._enqueue(_SCHEDULER)

    def _forget(self, uid: str) -> None:
        self._bound_at.pop(uid, None)
        self._next_restart.pop(uid, None)
        self._progress.pop(uid, None)
        for key in [k for k in self._events if k[0] == uid]:
            del self._events[key]

    def _enqueue(self, key: Key) -> None:
        self._queue[key] = None
        if self._wake is not None:
            self._wake.set()

    def _later(self, delay: float, key: Key) -> None:
        loop = self._loop
        if loop is None:
            return

        def fire() -> None:
            self._timers.discard(handle)
            self._enqueue(key)

        handle = loop.call_later(max(delay, 0.0), fire)
        self._timers.add(handle)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                key = next(iter(self._queue))
                del self._queue[key]
                self._reconcile(key)
                await asyncio.sleep(0)  # let requests in between reconciles

    def _reconcile(self, key: Key) -> None:
        if not self.enabled:
            return
        kind, namespace, name = key
        handlers: dict[str, Callable[[str, str], None]] = {
            "Deployment": self._sync_deployment,
            "ReplicaSet": self._sync_replicaset,
            "StatefulSet": self._sync_statefulset,
            "Pod": self._sync_pod,
            "Scheduler": lambda _ns, _name: self._schedule_pending(),
            **{kind: (lambda ns, n, kind=kind: operators.sync(self, kind, ns, n)) for kind in operators.KINDS},
        }
        try:
            handlers[kind](namespace, name)
        except Exception:  # the emulator must outlive any bug here; the next trigger retries
            log.exception("kube emulator controller failed to reconcile %s %s/%s", kind, namespace, name)

    # ----------------------------------------------------------------------------------------------
    # Events (v1 Event objects, deduplicated by count like the real recorders)
    # ----------------------------------------------------------------------------------------------

    def _record_event(
        self,
        obj: Mapping[str, Any],
        event_type: str,
        reason: str,
        message: str,
        component: str,
        field_path: str | None = None,
    ) -> None:
        meta = _meta(obj)
        namespace = meta.get("namespace") or "default"
        key = (meta.get("uid", ""), reason, message)
        now = _now()
        if key in self._events:
            existing = self.api.get("v1", "Event", namespace, self._events[key])
            if existing is not None:
                existing["count"] = int(existing.get("count") or 1) + 1
                existing["lastTimestamp"] = now
                self.api.put(existing)
                return
        involved: Obj = {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        if field_path:
            involved["fieldPath"] = field_path
        name = f"{meta.get('name')}.{time.time_ns():x}"
        self._events[key] = name
        self._prune_events()
        self.api.put(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {k: v for k, v in involved.items() if v is not None},
                "reason": reason,
                "message": message,
                "type": event_type,
                "source": {"component": component},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "reportingComponent": component,
                "reportingInstance": "",
            }
        )

    def _prune_events(self) -> None:
        """Drop Events past their TTL now and then, as the API server's event TTL does."""
        self._events_since_prune += 1
        if self._events_since_prune < 200:
            return
        self._events_since_prune = 0
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=self.event_ttl)
        for event in self.api.list("v1", "Event"):
            last = event.get("lastTimestamp") or _meta(event).get("creationTimestamp") or ""
            if last and datetime.datetime.fromisoformat(last.replace("Z", "+00:00")) < cutoff:
                self.api.delete("v1", "Event", _meta(event).get("namespace"), _meta(event)["name"])

    # ----------------------------------------------------------------------------------------------
    # Deployments
    # ----------------------------------------------------------------------------------------------

    def _sync_deployment(self, namespace: str, name: str) -> None:
        deployment = self.api.get("apps/v1", "Deployment", namespace, name)
        if deployment is None or _deleting(deployment):
            return
        uid = _meta(deployment)["uid"]
        owned = [rs for rs in self.api.list("apps/v1", "ReplicaSet", namespace) if _owned_by(rs, uid)]
        template_hash = _safe_hash((deployment.get("spec") or {}).get("template") or {})
        current = next((rs for rs in owned if _label(rs, "pod-template-hash") == template_hash), None)
        revision = self._next_revision(owned, current)
        if current is None:
            current = self._create_replicaset(deployment, template_hash, revision)
        elif revision is not None:
            current = self._annotate_revision(current, revision)
        old = [rs for rs in owned if _meta(rs)["name"] != _meta(current)["name"]]
        if not (deployment.get("spec") or {}).get("paused"):
            current, old = self._roll(deployment, current, old)
        self._prune_history(deployment, old)
        self._write_deployment_status(deployment, current, old)

    @staticmethod
    def _revision(rs: Mapping[str, Any]) -> int:
        return int((_meta(rs).get("annotations") or {}).get(_REVISION) or 0)

    def _next_revision(self, owned: list[Obj], current: Obj | None) -> int | None:
        """The revision the current ReplicaSet must carry, or None when it already has the newest."""
        newest = max((self._revision(rs) for rs in owned), default=0)
        if current is not None and self._revision(current) == newest and newest > 0:
            return None
        return newest + 1

    def _annotate_revision(self, rs: Obj, revision: int) -> Obj:
        rs.setdefault("metadata", {}).setdefault("annotations", {})[_REVISION] = str(revision)
        return self.api.put(rs)

    def _create_replicaset(self, deployment: Obj, template_hash: str, revision: int | None) -> Obj:
        spec = deployment.get("spec") or {}
        meta = _meta(deployment)
        template = copy.deepcopy(spec.get("template") or {})
        labels = {**((template.get("metadata") or {}).get("labels") or {}), "pod-template-hash": template_hash}
        template.setdefault("metadata", {})["labels"] = labels
        selector = copy.deepcopy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), "pod-template-hash": template_hash}
        desired = _replicas(deployment)
        replicaset = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{template_hash}",
                "namespace": meta.get("namespace"),
                "labels": labels,
                "annotations": {
                    _REVISION: str(revision or 1),
                    "deployment.kubernetes.io/desired-replicas": str(desired),
                    "deployment.kubernetes.io/max-replicas": str(desired + self._max_surge(deployment)),
                },
                "ownerReferences": [_owner_ref(deployment)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
        }
        if spec.get("minReadySeconds"):
            replicaset["spec"]["minReadySeconds"] = spec["minReadySeconds"]
        return self.api.put(replicaset)

    @staticmethod
    def _max_surge(deployment: Mapping[str, Any]) -> int:
        rolling = ((deployment.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
        return _int_or_percent(rolling.get("maxSurge", "25%"), _replicas(deployment), round_up=True)

    @staticmethod
    def _max_unavailable(deployment: Mapping[str, Any]) -> int:
        strategy = (deployment.get("spec") or {}).get("strategy") or {}
        if strategy.get("type") == "Recreate":
            return 0
        rolling = strategy.get("rollingUpdate") or {}
        return _int_or_percent(rolling.get("maxUnavailable", "25%"), _replicas(deployment), round_up=False)

    def _roll(self, deployment: Obj, current: Obj, old: list[Obj]) -> tuple[Obj, list[Obj]]:
        """Simplified rollout: new pods first, old ReplicaSets scaled to zero once they are ready.

        Recreate does the opposite: old pods go first, new ones start when they are gone.
        """
        desired = _replicas(deployment)
        recreate = ((deployment.get("spec") or {}).get("strategy") or {}).get("type") == "Recreate"
        if recreate or _count(current, "readyReplicas") >= desired:
            old = [self._scale_replicaset(deployment, rs, 0) for rs in old]
        target = 0 if recreate and any(_count(rs, "replicas") for rs in old) else desired
        return self._scale_replicaset(deployment, current, target), old

    def _scale_replicaset(self, deployment: Obj, rs: Obj, replicas: int) -> Obj:
        before = _replicas(rs)
        if before == replicas:
            return rs
        rs["spec"]["replicas"] = replicas
        annotations = rs.setdefault("metadata", {}).setdefault("annotations", {})
        annotations["deployment.kubernetes.io/desired-replicas"] = str(_replicas(deployment))
        updated = self.api.put(rs)
        direction = "up" if replicas > before else "down"
        message = f"Scaled {direction} replica set {_meta(rs)['name']} from {before} to {replicas}"
        self._record_event(deployment, "Normal", "ScalingReplicaSet", message, "deployment-controller")
        return updated

    def _prune_history(self, deployment: Obj, old: list[Obj]) -> None:
        limit = (deployment.get("spec") or {}).get("revisionHistoryLimit", 10)
        idle = sorted((rs for rs in old if _replicas(rs) == 0 and not _count(rs, "replicas")), key=self._revision)
        for rs in idle[: max(len(idle) - int(limit), 0)]:
            self.api.delete("apps/v1", "ReplicaSet", _meta(rs).get("namespace"), _meta(rs)["name"])

    def _write_deployment_status(self, deployment: Obj, current: Obj, old: list[Obj]) -> None:
        every = [current, *old]
        desired = _replicas(deployment)
        available = sum(_count(rs, "availableReplicas") for rs in every)
        counts = {
            "replicas": sum(_count(rs, "replicas") for rs in every),
            "updatedReplicas": _count(current, "replicas"),
            "readyReplicas": sum(_count(rs, "readyReplicas") for rs in every),
            "availableReplicas": available,
            "unavailableReplicas": max(sum(_replicas(rs) for rs in every) - available, 0),
        }
        complete = (
            counts["updatedReplicas"] == desired
            and _count(current, "availableReplicas") >= desired
            and not any(_count(rs, "replicas") for rs in old)
        )
        previous = _status(deployment).get("conditions") or []
        conditions = [
            self._available_condition(deployment, previous, available, desired),
            self._progressing_condition(deployment, previous, current, counts, complete),
        ]
        status = _omit_zero(
            {"observedGeneration": _meta(deployment).get("generation", 1), **counts, "conditions": conditions}
        )
        updated = copy.deepcopy(deployment)
        updated["status"] = status
        updated["metadata"].setdefault("annotations", {})[_REVISION] = str(self._revision(current) or 1)
        if updated != deployment:
            self.api.put(updated)

    def _available_condition(self, deployment: Obj, previous: list[Obj], available: int, desired: int) -> Obj:
        if available >= desired - self._max_unavailable(deployment):
            reason, message = "MinimumReplicasAvailable", "Deployment has minimum availability."
            return _condition(previous, "Available", "True", reason, message)
        reason, message = "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
        return _condition(previous, "Available", "False", reason, message)

    def _progressing_condition(
        self, deployment: Obj, previous: list[Obj], current: Obj, counts: Mapping[str, int], complete: bool
    ) -> Obj:
        rs_name = _meta(current)["name"]
        if complete:
            message = f'ReplicaSet "{rs_name}" has successfully progressed.'
            return _condition(previous, "Progressing", "True", "NewReplicaSetAvailable", message)
        uid = _meta(deployment)["uid"]
        signature = (rs_name, *counts.values())
        now = time.monotonic()
        since = self._progress.get(uid, (None, now))
        if since[0] != signature:
            since = (signature, now)
            self._progress[uid] = since
        deadline = float((deployment.get("spec") or {}).get("progressDeadlineSeconds", 600))
        if now - since[1] > deadline:
            message = f'ReplicaSet "{rs_name}" has timed out progressing.'
            return _condition(previous, "Progressing", "False", "ProgressDeadlineExceeded", message)
        self._check_deadline_later(deployment, deadline - (now - since[1]) + 0.01)
        message = f'ReplicaSet "{rs_name}" is progressing.'
        return _condition(previous, "Progressing", "True", "ReplicaSetUpdated", message)

    def _check_deadline_later(self, deployment: Obj, delay: float) -> None:
        """One pending deadline check per Deployment, however often it reconciles meanwhile."""
        meta = _meta(deployment)
        key = ("Deployment", meta.get("namespace") or "", meta["name"])
        if self._loop is None or key in self._deadline_checks:
            return

        def fire() -> None:
            self._deadline_checks.pop(key, None)
            self._enqueue(key)

        self._deadline_checks[key] = self._loop.call_later(delay, fire)

    # ----------------------------------------------------------------------------------------------
    # ReplicaSets and StatefulSets
    # ----------------------------------------------------------------------------------------------

    def _owned_pods(self, namespace: str, owner_uid: str) -> list[Obj]:
        return [p for p in self.api.list("v1", "Pod", namespace) if _owned_by(p, owner_uid) and _active(p)]

    def _new_pod(self, owner: Obj, name: str, extra_labels: Mapping[str, str]) -> Obj:
        template = (owner.get("spec") or {}).get("template") or {}
        template_meta = template.get("metadata") or {}
        metadata: Obj = {
            "name": name,
            "namespace": _meta(owner).get("namespace"),
            "labels": {**(template_meta.get("labels") or {}), **extra_labels},
            "ownerReferences": [_owner_ref(owner)],
        }
        if template_meta.get("annotations"):
            metadata["annotations"] = dict(template_meta["annotations"])
        spec = copy.deepcopy(template.get("spec") or {})
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}

    def _sync_replicaset(self, namespace: str, name: str) -> None:
        rs = self.api.get("apps/v1", "ReplicaSet", namespace, name)
        if rs is None or _deleting(rs):
            return
        pods = self._owned_pods(namespace, _meta(rs)["uid"])
        desired = _replicas(rs)
        for _ in range(desired - len(pods)):
            pod_name = self._free_pod_name(namespace, name)
            pods.append(self.api.put(self._new_pod(rs, pod_name, {})))
            self._record_event(rs, "Normal", "SuccessfulCreate", f"Created pod: {pod_name}", "replicaset-controller")
        for pod in self._deletion_order(pods)[: max(len(pods) - desired, 0)]:
            self.api.delete("v1", "Pod", namespace, _meta(pod)["name"])
            pods.remove(pod)
            message = f"Deleted pod: {_meta(pod)['name']}"
            self._record_event(rs, "Normal", "SuccessfulDelete", message, "replicaset-controller")
        ready = sum(1 for pod in pods if _is_ready(pod))
        status = _omit_zero(
            {
                "replicas": len(pods),
                "fullyLabeledReplicas": len(pods),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": _meta(rs).get("generation", 1),
            },
            keep=("replicas",),
        )
        if status != _status(rs):
            self.api.put({**rs, "status": status})

    def _free_pod_name(self, namespace: str, prefix: str) -> str:
        while True:
            name = f"{prefix}-{_random_suffix()}"
            if self.api.get("v1", "Pod", namespace, name) is None:
                return name

    @staticmethod
    def _deletion_order(pods: list[Obj]) -> list[Obj]:
        """Which pods a scale-down removes first: unscheduled, then pending, then not ready, newest."""
        phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}
        by_age = sorted(pods, key=lambda p: (_meta(p).get("creationTimestamp", ""), _meta(p)["name"]))
        newest_first = list(reversed(by_age))
        return sorted(
            newest_first,
            key=lambda p: (
                bool((p.get("spec") or {}).get("nodeName")),
                phase_rank.get(_status(p).get("phase", "Pending"), 0),
                _is_ready(p),
            ),
        )

    def _sync_statefulset(self, namespace: str, name: str) -> None:
        sts = self.api.get("apps/v1", "StatefulSet", namespace, name)
        if sts is None or _deleting(sts):
            return
        spec = sts.get("spec") or {}
        revision = f"{name}-{_safe_hash(spec.get('template') or {})}"
        pods = {_meta(p)["name"]: p for p in self._owned_pods(namespace, _meta(sts)["uid"])}
        desired = _replicas(sts)
        ordinal = lambda pod_name: int(pod_name.rsplit("-", 1)[-1])  # noqa: E731
        for pod_name in sorted(pods, key=ordinal, reverse=True):
            if ordinal(pod_name) >= desired:
                self.api.delete("v1", "Pod", namespace, pod_name)
                del pods[pod_name]
        self._fill_statefulset(sts, pods, revision)
        self._update_statefulset_pods(sts, pods, revision)
        self._write_statefulset_status(sts, pods, revision)

    def _fill_statefulset(self, sts: Obj, pods: dict[str, Obj], revision: str) -> None:
        """Create missing ordinals; OrderedReady waits for each pod to be ready before the next."""
        name = _meta(sts)["name"]
        parallel = (sts.get("spec") or {}).get("podManagementPolicy") == "Parallel"
        for index in range(_replicas(sts)):
            pod_name = f"{name}-{index}"
            if pod_name not in pods:
                labels = {
                    "controller-revision-hash": revision,
                    "statefulset.kubernetes.io/pod-name": pod_name,
                    "apps.kubernetes.io/pod-index": str(index),
                }
                pod = self._new_pod(sts, pod_name, labels)
                pod["spec"]["hostname"] = pod_name
                if service := (sts.get("spec") or {}).get("serviceName"):
                    pod["spec"]["subdomain"] = service
                pods[pod_name] = self.api.put(pod)
                message = f"create Pod {pod_name} in StatefulSet {name} successful"
                self._record_event(sts, "Normal", "SuccessfulCreate", message, "statefulset-controller")
                if not parallel:
                    return
            elif not parallel and not _is_ready(pods[pod_name]):
                return

    def _update_statefulset_pods(self, sts: Obj, pods: dict[str, Obj], revision: str) -> None:
        """Rolling update: replace the highest stale ordinal once every pod is ready."""
        if len(pods) < _replicas(sts) or not all(_is_ready(p) for p in pods.values()):
            return
        stale = [n for n, p in pods.items() if _label(p, "controller-revision-hash") != revision]
        if stale:
            victim = max(stale, key=lambda n: int(n.rsplit("-", 1)[-1]))
            self.api.delete("v1", "Pod", _meta(sts).get("namespace"), victim)
            del pods[victim]

    def _write_statefulset_status(self, sts: Obj, pods: dict[str, Obj], revision: str) -> None:
        updated = [p for p in pods.values() if _label(p, "controller-revision-hash") == revision]
        ready = sum(1 for p in pods.values() if _is_ready(p))
        settled = len(updated) == len(pods) == _replicas(sts)
        current_revision = revision if settled else _status(sts).get("currentRevision", revision)
        current = [p for p in pods.values() if _label(p, "controller-revision-hash") == current_revision]
        status = _omit_zero(
            {
                "observedGeneration": _meta(sts).get("generation", 1),
                "replicas": len(pods),
                "readyReplicas": ready,
                "currentReplicas": len(current),
                "updatedReplicas": len(updated),
                "availableReplicas": ready,
                "currentRevision": current_revision,
                "updateRevision": revision,
                "collisionCount": 0,
            },
            keep=("replicas", "availableReplicas", "collisionCount"),
        )
        if status != _status(sts):
            self.api.put({**sts, "status": status})

    # ----------------------------------------------------------------------------------------------
    # Scheduler
    # ----------------------------------------------------------------------------------------------

    def _schedule_pending(self) -> None:
        pods = self.api.list("v1", "Pod")
        pending = sorted(
            (p for p in pods if not (p.get("spec") or {}).get("nodeName") and _active(p)),
            key=lambda p: (_meta(p).get("creationTimestamp", ""), _meta(p).get("namespace", ""), _meta(p)["name"]),
        )
        if not pending:
            return
        nodes = sorted(self.api.list("v1", "Node"), key=lambda n: _meta(n)["name"])
        if not nodes:  # no Node objects: the sandbox's capacity is unlimited
            for pod in pending:
                self._bind(pod, self.virtual_node, None)
            return
        used = self._node_usage(pods)
        for pod in pending:
            node, message = self._pick_node(pod, nodes, used)
            if node is None and self.provision_nodes is not None:
                node = self.provision_nodes(pod)
                if node is not None:
                    nodes.append(node)
                    node, message = self._pick_node(pod, nodes, used)
            if node is None:
                self._mark_unschedulable(pod, message)
                continue
            node_name = _meta(node)["name"]
            for resource, amount in pod_requests(pod).items():
                used[node_name][resource] += amount
            used[node_name]["pods"] += 1
            self._bind(pod, node_name, node)

    @staticmethod
    def _node_usage(pods: list[Obj]) -> dict[str, collections.defaultdict[str, Decimal]]:
        used: dict[str, collections.defaultdict[str, Decimal]] = collections.defaultdict(
            lambda: collections.defaultdict(Decimal)
        )
        for pod in pods:
            node_name = (pod.get("spec") or {}).get("nodeName")
            if node_name and _active(pod):
                for resource, amount in pod_requests(pod).items():
                    used[node_name][resource] += amount
                used[node_name]["pods"] += 1
        return used

    @staticmethod
    def _pick_node(pod: Obj, nodes: list[Obj], used: Mapping[str, Mapping[str, Decimal]]) -> tuple[Obj | None, str]:
        requests = pod_requests(pod)
        reasons: collections.Counter[str] = collections.Counter()
        for node in nodes:
            problems = _fit_problems(pod, node, requests, used.get(_meta(node)["name"], {}))
            if not problems:
                return node, ""
            reasons.update(problems)
        listed = ", ".join(sorted(f"{count} {reason}" for reason, count in reasons.items()))
        return None, f"0/{len(nodes)} nodes are available: {listed}."

    def _mark_unschedulable(self, pod: Obj, message: str) -> None:
        status = _status(pod)
        scheduled = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
        if (scheduled.get("status"), scheduled.get("message")) == ("False", message):
            return  # already reported; do not churn the pod or the event on every retry
        condition = _condition([], "PodScheduled", "False", "Unschedulable", message)
        condition["lastProbeTime"] = None
        pod["status"] = {**status, "phase": "Pending", "conditions": [condition]}
        self.api.put(pod)
        self._record_event(pod, "Warning", "FailedScheduling", message, "default-scheduler")

    def _bind(self, pod: Obj, node_name: str, node: Obj | None) -> None:
        meta = _meta(pod)
        pod["spec"]["nodeName"] = node_name
        now = _now()
        containers = (pod.get("spec") or {}).get("containers") or []
        pod["status"] = {
            **_status(pod),
            "phase": "Pending",
            "hostIP": self._host_ip(node),
            "startTime": now,
            "conditions": [
                _condition([], "PodScheduled", "True", "", ""),
                _condition([], "Initialized", "True", "", ""),
                _condition([], "Ready", "False", "ContainersNotReady", self._not_ready_message(containers)),
                _condition([], "ContainersReady", "False", "ContainersNotReady", self._not_ready_message(containers)),
            ],
            "containerStatuses": [
                self._container_status(c, ready=False, state={"waiting": {"reason": "ContainerCreating"}})
                for c in containers
            ],
        }
        self.api.put(pod)
        message = f"Successfully assigned {meta.get('namespace')}/{meta['name']} to {node_name}"
        self._record_event(pod, "Normal", "Scheduled", message, "default-scheduler")
        self._bound_at[meta["uid"]] = time.monotonic()
        self._later(self.ready_delay, ("Pod", meta.get("namespace") or "", meta["name"]))

    @staticmethod
    def _host_ip(node: Obj | None) -> str:
        for address in _status(node or {}).get("addresses") or []:
            if address.get("type") == "InternalIP":
                return str(address.get("address"))
        return "10.0.0.1"

    @staticmethod
    def _not_ready_message(containers: list[Obj], names: Iterable[str] | None = None) -> str:
        unready = list(names) if names is not None else [c.get("name", "") for c in containers]
        return f"containers with unready status: [{' '.join(unready)}]"

    @staticmethod
    def _container_status(container: Mapping[str, Any], ready: bool, state: Obj, restarts: int = 0) -> Obj:
        return {
            "name": container.get("name", ""),
            "image": container.get("image", ""),
            "imageID": "",
            "ready": ready,
            "started": "running" in state,
            "restartCount": restarts,
            "state": state,
            "lastState": {},
        }

    # ----------------------------------------------------------------------------------------------
    # Kubelet
    # ----------------------------------------------------------------------------------------------

    def _sync_pod(self, namespace: str, name: str) -> None:
        pod = self.api.get("v1", "Pod", namespace, name)
        if pod is None or _deleting(pod) or not (pod.get("spec") or {}).get("nodeName"):
            return
        uid = _meta(pod)["uid"]
        if uid in self._next_restart:
            self._restart_tick(pod)
            return
        if _status(pod).get("phase") != "Pending" or self._pull_failed(pod):
            return
        bound_at = self._bound_at.setdefault(uid, time.monotonic())
        wait = bound_at + self.ready_delay - time.monotonic()
        if wait > 0:
            self._later(wait, ("Pod", namespace, name))
            return
        self._start_pod(pod)

    @staticmethod
    def _pull_failed(pod: Mapping[str, Any]) -> bool:
        return any(
            ((s.get("state") or {}).get("waiting") or {}).get("reason") in (_PULL_FAILURE, "ErrImagePull")
            for s in _status(pod).get("containerStatuses") or []
        )

    def _failure(self, container: Mapping[str, Any]) -> str | None:
        return self.failing_images.get(str(container.get("image", "")))

    def _missing_secret(self, pod: Obj, container: Mapping[str, Any]) -> str | None:
        """The first Secret a container's environment needs that does not exist (the kubelet refuses
        to start it: CreateContainerConfigError), or None."""
        namespace = _meta(pod).get("namespace") or "default"
        refs = [((e.get("valueFrom") or {}).get("secretKeyRef") or {}) for e in container.get("env") or []]
        refs += [(e.get("secretRef") or {}) for e in container.get("envFrom") or []]
        for ref in refs:
            name = ref.get("name")
            if name and not ref.get("optional") and self.api.get("v1", "Secret", namespace, name) is None:
                return str(name)
        return None

    def _start_pod(self, pod: Obj) -> None:
        meta, now = _meta(pod), _now()
        containers = (pod.get("spec") or {}).get("containers") or []
        missing = {c.get("name"): self._missing_secret(pod, c) for c in containers}
        if any(missing.values()):
            self._config_error(pod, containers, missing)
            return
        statuses = [self._started_status(pod, c, now) for c in containers]
        unready = [s["name"] for s in statuses if not s["ready"]]
        pulling = any(self._failure(c) == _PULL_FAILURE for c in containers)
        status = _status(pod)
        conditions = status.get("conditions") or []
        ready_state = ("True", "", "")
        if unready:
            ready_state = ("False", "ContainersNotReady", self._not_ready_message([], unready))
        pod["status"] = {
            **status,
            "phase": "Pending" if pulling else "Running",
            "podIP": status.get("podIP") or str(next(self._pod_ips)),
            "conditions": [
                _condition(conditions, "PodReadyToStartContainers", "True", "", ""),
                _condition(conditions, "Initialized", "True", "", ""),
                _condition(conditions, "Ready", *ready_state),
                _condition(conditions, "ContainersReady", *ready_state),
                _condition(conditions, "PodScheduled", "True", "", ""),
            ],
            "containerStatuses": statuses,
        }
        pod["status"]["podIPs"] = [{"ip": pod["status"]["podIP"]}]
        self.api.put(pod)
        for container in containers:
            self._container_events(pod, container)
        if any(self._failure(c) in _CRASH_FAILURES for c in containers):
            self._next_restart[meta["uid"]] = time.monotonic() + self.restart_backoff
            self._later(self.restart_backoff, ("Pod", meta.get("namespace") or "", meta["name"]))

    def _config_error(self, pod: Obj, containers: list[Obj], missing: Mapping[Any, str | None]) -> None:
        """Containers wait in CreateContainerConfigError; the kubelet retries until the Secret exists."""
        meta = _meta(pod)
        statuses = []
        for c in containers:
            secret = missing.get(c.get("name"))
            state = ({"waiting": {"reason": "CreateContainerConfigError", "message": f'secret "{secret}" not found'}}
                     if secret else {"waiting": {"reason": "ContainerCreating"}})
            statuses.append(self._container_status(c, ready=False, state=state))
        if statuses != _status(pod).get("containerStatuses"):
            pod["status"] = {**_status(pod), "phase": "Pending", "containerStatuses": statuses}
            self.api.put(pod)
            for c in containers:
                if missing.get(c.get("name")):
                    self._record_event(pod, "Warning", "Failed", f'Error: secret "{missing[c.get("name")]}" not found',
                                       "kubelet", f"spec.containers{{{c.get('name')}}}")
        self._later(max(self.ready_delay, 0.5), ("Pod", meta.get("namespace") or "", meta["name"]))

    def _started_status(self, pod: Obj, container: Mapping[str, Any], now: str) -> Obj:
        failure = self._failure(container)
        image = container.get("image", "")
        if failure == _PULL_FAILURE:
            state = {"waiting": {"reason": _PULL_FAILURE, "message": f'Back-off pulling image "{image}"'}}
            return self._container_status(container, ready=False, state=state)
        if failure in _CRASH_FAILURES:
            status = self._container_status(container, ready=False, state={}, restarts=1)
            return self._crashed(pod, status, failure or "", now)
        state = {"running": {"startedAt": now}}
        status = self._container_status(container, ready=True, state=state)
        status["containerID"] = f"containerd://{_safe_hash([_meta(pod)['uid'], container.get('name')], 32)}"
        return status

    @staticmethod
    def _crashed(pod: Obj, status: Obj, failure: str, now: str) -> Obj:
        """A container status after another crash: waiting in back-off, last run terminated."""
        oom = failure == "OOMKilled"
        backoff = min(10 * 2 ** max(status["restartCount"] - 1, 0), 300)
        message = f"back-off {backoff}s restarting failed container={status['name']} pod={_pod_ref(pod)}"
        status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
        status["lastState"] = {
            "terminated": {
                "exitCode": 137 if oom else 1,
                "reason": "OOMKilled" if oom else "Error",
                "startedAt": now,
                "finishedAt": now,
            }
        }
        status["started"] = False
        return status

    def _container_events(self, pod: Obj, container: Mapping[str, Any]) -> None:
        name, image = container.get("name", ""), container.get("image", "")
        field_path = f"spec.containers{{{name}}}"
        failure = self._failure(container)
        if failure == _PULL_FAILURE:
            reference = (
                f'failed to pull and unpack image "{image}": failed to resolve reference "{image}": {image}: not found'
            )
            events = [
                ("Normal", "Pulling", f'Pulling image "{image}"'),
                ("Warning", "Failed", f'Failed to pull image "{image}": rpc error: code = NotFound desc = {reference}'),
                ("Warning", "Failed", "Error: ErrImagePull"),
                ("Normal", "BackOff", f'Back-off pulling image "{image}"'),
                ("Warning", "Failed", f"Error: {_PULL_FAILURE}"),
            ]
        else:
            events = [
                ("Normal", "Pulled", f'Container image "{image}" already present on machine'),
                ("Normal", "Created", f"Created container: {name}"),
                ("Normal", "Started", f"Started container {name}"),
            ]
            if failure in _CRASH_FAILURES:
                events.append(("Warning", "BackOff", self._backoff_message(pod, name)))
        for event_type, reason, message in events:
            self._record_event(pod, event_type, reason, message, "kubelet", field_path)

    @staticmethod
    def _backoff_message(pod: Obj, container: str) -> str:
        return f"Back-off restarting failed container {container} in pod {_pod_ref(pod)}"

    def _restart_tick(self, pod: Obj) -> None:
        meta = _meta(pod)
        uid, key = meta["uid"], ("Pod", meta.get("namespace") or "", meta["name"])
        wait = self._next_restart[uid] - time.monotonic()
        if wait > 0:
            self._later(wait, key)
            return
        containers = {c.get("name"): c for c in (pod.get("spec") or {}).get("containers") or []}
        restarts = 0
        for status in _status(pod).get("containerStatuses") or []:
            failure = self._failure(containers.get(status.get("name")) or {})
            if failure in _CRASH_FAILURES:
                status["restartCount"] = int(status.get("restartCount") or 0) + 1
                self._crashed(pod, status, failure or "", _now())
                restarts = max(restarts, status["restartCount"])
                self._record_event(
                    pod,
                    "Warning",
                    "BackOff",
                    self._backoff_message(pod, status["name"]),
                    "kubelet",
                    f"spec.containers{{{status['name']}}}",
                )
        self.api.put(pod)
        delay = self.restart_backoff * 2 ** min(restarts, 5)
        self._next_restart[uid] = time.monotonic() + delay
        self._later(delay, key)

    def pod_log(self, pod: Mapping[str, Any], container: str | None) -> str | None:
        """What ``pods/log`` shows; None while the container has never started."""
        spec_containers = (pod.get("spec") or {}).get("containers") or []
        chosen = next((c for c in spec_containers if container in (None, c.get("name"))), None)
        if chosen is None:
            return None
        statuses = {s.get("name"): s for s in _status(pod).get("containerStatuses") or []}
        status = statuses.get(chosen.get("name")) or {}
        if "running" not in (status.get("state") or {}) and not (status.get("lastState") or {}).get("terminated"):
            return None
        text = self.image_logs.get(str(chosen.get("image", "")), "")
        if not text and self._failure(chosen) == "CrashLoopBackOff":
            return "Error: the server process exited with status 1\n"
        return text
