"""What a deploy changes: the rendered objects compared with the live ones (create, update with
the fields that differ, unchanged, delete), and applying or deleting a release's objects in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ops.releases.api import ReleaseApi
from ops.releases.manifests import (
    MANAGER,
    OWNED_KINDS,
    RELEASE_LABEL,
    REVISION_LABEL,
    ObjectRef,
    autoscaled,
    is_shared,
    kind_rank,
    shared_manager,
)


@dataclass(frozen=True)
class Change:
    action: str  # create | update | unchanged | delete
    ref: ObjectRef
    fields: tuple[str, ...] = ()  # "spec.replicas: 1 → 2"

    @property
    def line(self) -> str:
        shown = "; ".join(self.fields[:6]) + (f"; …{len(self.fields) - 6} more" if len(self.fields) > 6 else "")
        return f"{self.action} `{self.ref.key}`" + (f": {shown}" if shown else "")


_IGNORED_LABELS = {REVISION_LABEL}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:39] + "…"


def diff(desired: Any, live: Any, path: str = "") -> list[str]:
    """Fields `desired` sets that `live` has differently: what applying `desired` would change."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [f"{path or '.'}: changed"]
        out: list[str] = []
        for key, value in desired.items():
            if key in _IGNORED_LABELS:
                continue
            out += diff(value, live.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return [f"{path}: changed"]
        out = []
        for i, (a, b) in enumerate(zip(desired, live, strict=True)):
            out += diff(a, b, f"{path}[{i}]")
        return out
    if live is None:
        return [f"{path}: (none) → {_short(desired)}"]
    if str(desired) != str(live):  # the server answers quantities as strings ("1" for 1)
        return [f"{path}: {_short(live)} → {_short(desired)}"]
    return []


def plan(api: ReleaseApi, objects: Sequence[Mapping[str, Any]], previous: Iterable[ObjectRef] = ()) -> list[Change]:
    """create/update/unchanged for each object, delete for objects of `previous` no longer rendered."""
    changes = []
    for obj in objects:
        ref = ObjectRef.of(obj)
        live = api.get(ref)
        if live is None:
            changes.append(Change("create", ref))
            continue
        wanted = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
        fields = tuple(diff(wanted, live))
        changes.append(Change("update" if fields else "unchanged", ref, fields))
    rendered = {ObjectRef.of(o) for o in objects}
    changes += [Change("delete", ref) for ref in sorted(set(previous) - rendered)]
    return changes


def apply_all(api: ReleaseApi, objects: Sequence[Mapping[str, Any]], release: str = "") -> list[dict[str, Any]]:
    """Apply in order; a shared object under the release's own field manager (ops/releases/shared.py)."""
    return [api.apply(obj, manager=shared_manager(release)) if release and is_shared(ObjectRef.of(obj))
            else api.apply(obj) for obj in objects]


def autoscalers(api: ReleaseApi, namespace: str, release: str) -> list[dict[str, Any]]:
    """The release's live autoscalers as apply configurations: a re-deploy keeps them (and so leaves
    the replicas they own alone)."""
    found = []
    for api_version, kind in (("autoscaling/v2", "HorizontalPodAutoscaler"), ("keda.sh/v1alpha1", "ScaledObject")):
        for obj in api.list_labelled(api_version, kind, namespace, f"{RELEASE_LABEL}={release}"):
            meta = obj.get("metadata") or {}
            labels = {k: v for k, v in (meta.get("labels") or {}).items() if k != REVISION_LABEL}
            found.append({"apiVersion": api_version, "kind": kind,
                          "metadata": {"name": meta.get("name"), "namespace": namespace, "labels": labels},
                          "spec": obj.get("spec") or {}})
    return found


HANDOVER_MANAGER = f"{MANAGER}-handover-to-autoscaler"


def hand_over_replicas(api: ReleaseApi, objects: Sequence[Mapping[str, Any]]) -> None:
    """Before an apply that leaves `spec.replicas` out (an autoscaler owns it), apply the live number
    under a second field manager, as the server-side apply docs describe for handing a field to
    another owner: otherwise the server removes the field the bot stops applying, and the workload
    falls back to its default of 1 replica."""
    targets = autoscaled(objects)
    for obj in objects:
        ref = ObjectRef.of(obj)
        if (ref.kind, ref.name) not in targets or "replicas" in (obj.get("spec") or {}):
            continue
        live = api.get(ref)
        replicas = ((live or {}).get("spec") or {}).get("replicas")
        if replicas is not None:
            api.apply({"apiVersion": ref.api_version, "kind": ref.kind,
                       "metadata": {"name": ref.name, "namespace": ref.namespace}, "spec": {"replicas": replicas}},
                      manager=HANDOVER_MANAGER)


def delete_all(api: ReleaseApi, refs: Iterable[ObjectRef]) -> list[ObjectRef]:
    """Start deleting in reverse apply order (autoscalers first, Services last); returns what existed.
    The objects may still be there when this returns: `removal.remove` also waits for them to go."""
    doomed = sorted(refs, key=lambda r: (kind_rank(r.kind), r.name), reverse=True)
    return [ref for ref in doomed if api.delete(ref) is not None]


def kinds_of(manifests: Iterable[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(apiVersion, kind) of each kind among `manifests`, in first-seen order."""
    return list(dict.fromkeys((str(o.get("apiVersion", "")), str(o.get("kind", ""))) for o in manifests))


def owned_objects(api: ReleaseApi, namespace: str, release: str,
                  kinds: Iterable[tuple[str, str]] = ()) -> list[ObjectRef]:
    """Every object in the namespace labelled as this release's: of the kinds any release may own, and of
    `kinds` (what the release's stored revisions rendered: an Ingress or a ConfigMap a preset enables).
    Shared objects (manifests.SHARED_CONFIGMAPS) carry no release label, so they are not among them."""
    found = []
    for api_version, kind in dict.fromkeys([*OWNED_KINDS, *kinds]):
        for obj in api.list_labelled(api_version, kind, namespace, f"{RELEASE_LABEL}={release}"):
            found.append(ObjectRef(api_version, kind, namespace, obj["metadata"]["name"]))
    return found
