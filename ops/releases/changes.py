"""What a deploy changes: the rendered objects compared with the live ones (create, update with
the fields that differ, unchanged, delete), and applying or deleting a release's objects in order.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ops.releases.api import ReleaseApi
from ops.releases.manifests import OWNED_KINDS, RELEASE_LABEL, REVISION_LABEL, ObjectRef, kind_rank


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


def apply_all(api: ReleaseApi, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [api.apply(obj) for obj in objects]


def delete_all(api: ReleaseApi, refs: Iterable[ObjectRef]) -> list[ObjectRef]:
    """Delete in reverse apply order (autoscalers first, Services last); returns what existed."""
    doomed = sorted(refs, key=lambda r: (kind_rank(r.kind), r.name), reverse=True)
    return [ref for ref in doomed if api.delete(ref)]


def owned_objects(api: ReleaseApi, namespace: str, release: str) -> list[ObjectRef]:
    """Every object in the namespace labelled as this release's (of the kinds a release may own)."""
    found = []
    for api_version, kind in OWNED_KINDS:
        for obj in api.list_labelled(api_version, kind, namespace, f"{RELEASE_LABEL}={release}"):
            found.append(ObjectRef(api_version, kind, namespace, obj["metadata"]["name"]))
    return found
