"""Kubernetes objects as the sandbox's stand-ins read them: plain dicts, reached through the
:class:`ClusterAPI` the emulator provides. Shared by the controller (bot/sandbox/controller/) and
the operators (bot/sandbox/operators.py), which must not depend on each other."""

from __future__ import annotations

import collections
import datetime
import hashlib
import json
import random
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Protocol

Obj = dict[str, Any]

_SAFE_CHARS: Final = "bcdfghjklmnpqrstvwxz2456789"  # Kubernetes' alphabet for generated names
_TERMINATED_PHASES: Final = frozenset({"Succeeded", "Failed"})


class ClusterAPI(Protocol):
    """What the stand-ins need from the emulator (``KubeEmulator`` provides it)."""

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None: ...

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]: ...

    def put(self, obj: Mapping[str, Any]) -> Obj: ...

    def delete(self, api_version: str, kind: str, namespace: str | None, name: str, propagation: str | None = None,
               grace: int | None = None) -> Obj | None: ...


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def meta_of(obj: Mapping[str, Any]) -> Obj:
    return obj.get("metadata") or {}


def status_of(obj: Mapping[str, Any]) -> Obj:
    return obj.get("status") or {}


def is_deleting(obj: Mapping[str, Any]) -> bool:
    return bool(meta_of(obj).get("deletionTimestamp"))


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    return any(ref.get("uid") == uid for ref in meta_of(obj).get("ownerReferences") or [])


def label_of(obj: Mapping[str, Any], key: str) -> str | None:
    return (meta_of(obj).get("labels") or {}).get(key)


def owner_ref(owner: Mapping[str, Any]) -> Obj:
    meta = meta_of(owner)
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def safe_hash(value: Any, length: int = 10) -> str:
    digest = hashlib.sha256(json.dumps(value, sort_keys=True).encode()).digest()
    return "".join(_SAFE_CHARS[b % len(_SAFE_CHARS)] for b in digest[:length])


def random_suffix(length: int = 5) -> str:
    return "".join(random.choice(_SAFE_CHARS) for _ in range(length))


def is_ready(pod: Mapping[str, Any]) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in status_of(pod).get("conditions") or [])


def is_active(pod: Mapping[str, Any]) -> bool:
    return not is_deleting(pod) and status_of(pod).get("phase") not in _TERMINATED_PHASES


def make_condition(previous: Iterable[Mapping[str, Any]], kind: str, status: str, reason: str, message: str) -> Obj:
    """A condition that keeps its timestamps while it does not change (no churn for watchers)."""
    now = utc_now()
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


# --------------------------------------------------------------------------------------------------
# Quantities: what a pod asks of a node, which the scheduler and the Karpenter stand-in both size by.
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
