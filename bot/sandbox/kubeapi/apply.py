"""Server-side apply field sets (the ``fieldsV1`` of managedFields). A manager's previous set tells
which fields to remove when it stops applying them, as kube-apiserver does."""

from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Mapping
from typing import Any

from bot.sandbox.kubeapi.patch import SET_LISTS, merge_key, merge_patch, strategic_merge_patch
from bot.sandbox.kubeapi.resources import SYSTEM_METADATA, Obj, meta_of, utc_now


def field_set(value: Any, field: str = "") -> Obj:
    if isinstance(value, dict):
        return {f"f:{k}": field_set(v, k) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        if field in SET_LISTS:
            return {f"v:{json.dumps(v)}": {} for v in value}
        key = merge_key(field, value)
        if key and value and all(isinstance(i, dict) and key in i for i in value):
            return {f"k:{json.dumps({key: i[key]}, separators=(',', ':'))}": {".": {}, **field_set(i)} for i in value}
    return {}


def applied_fields(config: Obj) -> Obj:
    """The fields an apply configuration sets, without the identity the server owns."""
    fields = {k: v for k, v in config.items() if k not in ("apiVersion", "kind")}
    meta = {k: v for k, v in meta_of(config).items() if k not in SYSTEM_METADATA | {"name", "namespace"}}
    if meta:
        fields["metadata"] = meta
    else:
        fields.pop("metadata", None)
    return field_set(fields)


def _fields_dropped(before: Obj, after: Obj) -> Obj:
    """The part of ``before`` missing from ``after``; ``{}`` leaves mean "remove the whole field"."""
    dropped: Obj = {}
    for key, sub in before.items():
        if key == ".":
            continue
        if key not in after:
            dropped[key] = None
        elif sub:
            child = _fields_dropped(sub, after[key])
            if child:
                dropped[key] = child
    return dropped


def _prune(value: Any, dropped: Obj) -> None:
    for key, sub in dropped.items():
        kind, _, raw = key.partition(":")
        if kind == "f" and isinstance(value, dict) and raw in value:
            if sub is None:
                del value[raw]
            else:
                _prune(value[raw], sub)
        elif kind in ("k", "v") and isinstance(value, list):
            wanted = json.loads(raw)
            for item in list(value):
                hit = item == wanted if kind == "v" else _contains(item, wanted)
                if hit and sub is None:
                    value.remove(item)
                elif hit:
                    _prune(item, sub)


def _contains(item: Any, wanted: Mapping[str, Any]) -> bool:
    return isinstance(item, dict) and all(item.get(k) == v for k, v in wanted.items())


@dataclasses.dataclass(frozen=True, slots=True)
class FieldManager:
    """Who is writing, recorded in metadata.managedFields like the real server does."""

    name: str
    operation: str  # "Apply" or "Update"
    fields: Obj
    subresource: str | None = None

    def record(self, obj: Obj, api_version: str) -> None:
        entries = list(meta_of(obj).get("managedFields") or [])
        same = [e for e in entries if self._is_mine(e)]
        fields = self.fields
        if self.operation == "Update" and same:
            fields = merge_patch(same[0].get("fieldsV1") or {}, fields)
        entry: Obj = {
            "manager": self.name,
            "operation": self.operation,
            "apiVersion": api_version,
            "time": utc_now(),
            "fieldsType": "FieldsV1",
            "fieldsV1": fields,
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        obj["metadata"]["managedFields"] = [e for e in entries if not self._is_mine(e)] + [entry]

    def _is_mine(self, entry: Mapping[str, Any]) -> bool:
        return (entry.get("manager"), entry.get("operation"), entry.get("subresource")) == (
            self.name,
            self.operation,
            self.subresource,
        )


def _previous_apply_fields(obj: Obj | None, manager: str) -> Obj:
    for entry in meta_of(obj or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply" and not entry.get("subresource"):
            return entry.get("fieldsV1") or {}
    return {}


def _others_fields(obj: Obj | None, manager: str) -> Obj:
    """Every field some other manager owns (any operation, any subresource), as one field set."""
    owned: Obj = {}
    for entry in meta_of(obj or {}).get("managedFields") or []:
        if entry.get("manager") != manager:
            owned = merge_patch(owned, entry.get("fieldsV1") or {})
    return owned


def _not_owned(dropped: Obj, others: Obj) -> Obj:
    """The dropped fields nobody else owns: a field another manager also set stays (shared ownership)."""
    kept: Obj = {}
    for key, sub in dropped.items():
        if key not in others:
            kept[key] = sub
        elif sub is not None:
            child = _not_owned(sub, others[key] or {})
            if child:
                kept[key] = child
    return kept


def merged_configuration(old: Obj | None, name: str, config: Obj, manager: str) -> tuple[Obj, Obj]:
    """The object after ``manager`` applies ``config``, and the fields that apply now owns.

    A field the manager applied before and leaves out now is removed, unless another manager owns it
    too: kube-apiserver's documented way to hand a field over (e.g. replicas to an autoscaler)."""
    applied = applied_fields(config)
    base = copy.deepcopy(old) if old is not None else {"metadata": {"name": name}}
    merged = strategic_merge_patch(base, config)
    dropped = _fields_dropped(_previous_apply_fields(old, manager), applied)
    _prune(merged, _not_owned(dropped, _others_fields(old, manager)))
    return merged, applied
