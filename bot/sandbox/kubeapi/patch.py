"""The PATCH formats a client may send: JSON merge patch, strategic merge patch and JSON patch."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, Final

MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_PATCH: Final = "application/strategic-merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"
PATCH_TYPES: Final = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)


class PatchError(ValueError):
    """A patch that cannot be applied to the current object."""


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge recursively, ``null`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# List fields of built-in types that merge by a key under strategic merge patch (patchMergeKey).
_MERGE_KEYS: Final = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "resourceClaims": "name",
    "topologySpreadConstraints": "topologyKey",
}
SET_LISTS: Final = frozenset({"finalizers"})  # lists of scalars that merge as sets
_DELETE: Final = object()


def merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":  # container ports merge on containerPort, service ports on port
        return "containerPort" if any(isinstance(i, dict) and "containerPort" in i for i in items) else "port"
    return _MERGE_KEYS.get(field)


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Strategic merge patch as kubectl sends it, for the fields of built-in types that matter here."""
    result = _smp_value("", target, patch)
    return {} if result is _DELETE else result


def _smp_value(field: str, current: Any, patch: Any) -> Any:
    if isinstance(patch, dict):
        return _smp_map(current if isinstance(current, dict) else {}, patch)
    if isinstance(patch, list):
        return _smp_list(field, current if isinstance(current, list) else [], patch)
    return copy.deepcopy(patch)


def _smp_map(current: dict[str, Any], patch: dict[str, Any]) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _smp_map({}, {k: v for k, v in patch.items() if k != "$patch"})
    result = dict(current)
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in value]
        elif key.startswith("$"):
            continue  # $setElementOrder/..., $retainKeys: ordering hints we do not need
        elif value is None:
            result.pop(key, None)
        else:
            merged = _smp_value(key, result.get(key), value)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
    if isinstance(patch.get("$retainKeys"), list):
        result = {k: v for k, v in result.items() if k in patch["$retainKeys"]}
    return result


def _smp_list(field: str, current: list[Any], patch: list[Any]) -> list[Any]:
    if field in SET_LISTS:
        return current + [v for v in patch if v not in current]
    key = merge_key(field, current + patch)
    replace = any(isinstance(p, dict) and p.get("$patch") == "replace" for p in patch)
    if key is None or replace:
        items = [p for p in patch if not (isinstance(p, dict) and p.get("$patch") == "replace")]
        return [_smp_map({}, i) if isinstance(i, dict) else i for i in items]
    result = list(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            result.append(copy.deepcopy(item))
            continue
        index = next((i for i, c in enumerate(result) if isinstance(c, dict) and c.get(key) == item[key]), None)
        merged = _smp_map(result[index] if index is not None else {}, item)
        if merged is _DELETE:
            if index is not None:
                del result[index]
        elif index is None:
            result.append(merged)
        else:
            result[index] = merged
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise PatchError(f"invalid JSON pointer {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _walk(doc: Any, tokens: list[str], path: str) -> Any:
    for token in tokens:
        if isinstance(doc, dict) and token in doc:
            doc = doc[token]
        elif isinstance(doc, list) and token.isdigit() and int(token) < len(doc):
            doc = doc[int(token)]
        else:
            raise PatchError(f"path {path!r} does not exist")
    return doc


def _pointer_add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent, last = _walk(doc, tokens[:-1], path), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list) and last == "-":
        parent.append(value)
    elif isinstance(parent, list) and last.isdigit() and int(last) <= len(parent):
        parent.insert(int(last), value)
    else:
        raise PatchError(f"cannot add at {path!r}")
    return doc


def _pointer_remove(doc: Any, path: str) -> tuple[Any, Any]:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent, last = _walk(doc, tokens[:-1], path), tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return doc, parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return doc, parent.pop(int(last))
    raise PatchError(f"path {path!r} does not exist")


def json_patch(doc: Any, operations: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(operations, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(doc)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise PatchError(f"invalid operation {operation!r}")
        doc = _json_patch_op(doc, operation)
    return doc


def _json_patch_op(doc: Any, operation: Mapping[str, Any]) -> Any:
    op, path = operation["op"], operation["path"]
    value = copy.deepcopy(operation.get("value"))
    match op:
        case "add":
            return _pointer_add(doc, path, value)
        case "remove":
            return _pointer_remove(doc, path)[0]
        case "replace":
            doc, _ = _pointer_remove(doc, path) if _pointer(path) else (doc, None)
            return _pointer_add(doc, path, value)
        case "move":
            doc, moved = _pointer_remove(doc, operation["from"])
            return _pointer_add(doc, path, moved)
        case "copy":
            return _pointer_add(doc, path, copy.deepcopy(_walk(doc, _pointer(operation["from"]), path)))
        case "test":
            if _walk(doc, _pointer(path), path) != value:
                raise PatchError(f"test operation failed at {path!r}")
            return doc
        case _:
            raise PatchError(f"unknown operation {op!r}")
