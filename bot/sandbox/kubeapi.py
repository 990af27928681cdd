"""An in-process Kubernetes API server for the local sandbox and the tests.

The real ``kubernetes`` client (and later ``helm``) talks to it over HTTP on loopback. It extends
kmock's ``KubernetesEmulator``: kmock parses requests, serves ``/version``, ships the resource
catalog used for discovery and lets a test add its own reactions with kmock's DSL. Resource
requests (``/api/v1/...``, ``/apis/<group>/<version>/...``) are answered from our own store,
because kmock's object semantics differ from a kube-apiserver in ways a client notices: it merges
dicts for every PATCH, has no resourceVersion, generation or uid, ignores selectors, cannot resume
a watch and treats subresources like the object itself.

Everything that changes state runs on the emulator's event loop (one thread), so a request
handler reads, decides and writes without being interleaved with another writer. Other threads
reach the store through :meth:`KubeEmulator.put` and friends, which hop onto that loop.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import concurrent.futures
import copy
import dataclasses
import datetime
import ipaddress
import json
import logging
import re
import socket
import threading
import uuid
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import kmock
import yaml
from aiohttp import web

from bot.sandbox.controller import Controller

log = logging.getLogger(__name__)

Obj = dict[str, Any]
StoreKey = tuple[str, str]  # (group, plural): versions of one resource share their objects
T = TypeVar("T")

SERVER_VERSION: Final = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-04-23T00:00:00Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}

MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_PATCH: Final = "application/strategic-merge-patch+json"
JSON_PATCH: Final = "application/json-patch+json"
APPLY_PATCH: Final = "application/apply-patch+yaml"
_PATCH_TYPES: Final = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)

_MAX_BODY_BYTES: Final = 3 * 1024 * 1024  # kube-apiserver's default request body limit
_CRUD_VERBS: Final = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
_SYSTEM_METADATA: Final = frozenset(
    {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink"}
)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


# --------------------------------------------------------------------------------------------------
# Errors: every failure reaches the client as a ``kind: Status`` body, which the Python client turns
# into an ApiException carrying the same status code.
# --------------------------------------------------------------------------------------------------

_REASONS: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
_UNKNOWN_RESOURCE: Final = "the server could not find the requested resource"


class ApiError(Exception):
    """A failure answered with an HTTP status and a Kubernetes ``Status`` body."""

    def __init__(
        self, code: int, message: str, reason: str | None = None, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = dict(details) if details else None

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    @classmethod
    def not_found(cls, rt: ResourceType, name: str) -> ApiError:
        return cls(404, f'{rt.qualified} "{name}" not found', details=rt.details(name))

    @classmethod
    def already_exists(cls, rt: ResourceType, name: str) -> ApiError:
        return cls(409, f'{rt.qualified} "{name}" already exists', "AlreadyExists", rt.details(name))

    @classmethod
    def conflict(cls, rt: ResourceType, name: str) -> ApiError:
        why = "the object has been modified; please apply your changes to the latest version and try again"
        return cls(409, f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}', details=rt.details(name))

    @classmethod
    def invalid(cls, rt: ResourceType, name: str, why: str) -> ApiError:
        kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
        return cls(422, f'{kind} "{name}" is invalid: {why}', details=rt.details(name))


_FAULT_MESSAGES: Final = {
    409: "Operation cannot be fulfilled: the object has been modified; "
    "please apply your changes to the latest version and try again",
    429: "the server has received too many requests and has asked us to try again later",
    500: "Internal error occurred: injected failure",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted",
}


@dataclasses.dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    code: int
    remaining: int


class _FaultInjector:
    """Failures queued by tests; thread-safe because tests arm them from their own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    def add(self, method: str, path_regex: str, code: int, times: int) -> None:
        with self._lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), code, times))

    def take(self, method: str, path: str) -> ApiError | None:
        with self._lock:
            for fault in self._faults:
                if fault.method in (method, "*") and fault.path.search(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    message = _FAULT_MESSAGES.get(fault.code, f"injected failure for {method} {path}")
                    return ApiError(fault.code, message)
        return None


# --------------------------------------------------------------------------------------------------
# Resource catalog entries.
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class ResourceType:
    """One served group/version/plural, as discovery announces it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    verbs: frozenset[str] = frozenset()
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    custom: bool = False  # served for a CRD: no strategic merge, JSON kept as sent

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def key(self) -> StoreKey:
        return (self.group, self.plural)

    def details(self, name: str) -> Obj:
        return {"name": name, "group": self.group, "kind": self.plural}

    def allows(self, verb: str) -> bool:
        return not self.verbs or verb in self.verbs


# name -> (group, version, kind, verbs) of the subresource; None means "as the parent".
_SUBRESOURCE_DISCOVERY: Final[dict[str, tuple[str | None, str | None, str | None, tuple[str, ...]]]] = {
    "status": (None, None, None, ("get", "patch", "update")),
    "scale": ("autoscaling", "v1", "Scale", ("get", "patch", "update")),
    "log": ("", "v1", "Pod", ("get",)),
    "exec": ("", "v1", "PodExecOptions", ("create", "get")),
    "attach": ("", "v1", "PodAttachOptions", ("create", "get")),
    "portforward": ("", "v1", "PodPortForwardOptions", ("create", "get")),
    "proxy": (None, None, None, ("create", "delete", "get", "patch", "update")),
    "binding": ("", "v1", "Binding", ("create",)),
    "eviction": ("policy", "v1", "Eviction", ("create",)),
    "ephemeralcontainers": (None, None, None, ("get", "patch", "update")),
    "resize": (None, None, None, ("get", "patch", "update")),
    "token": ("authentication.k8s.io", "v1", "TokenRequest", ("create",)),
    "finalize": (None, None, None, ("update",)),
    "approval": (None, None, None, ("get", "patch", "update")),
}


def _discovery_entries(rt: ResourceType) -> list[Obj]:
    entry: Obj = {
        "name": rt.plural,
        "singularName": rt.singular or rt.kind.lower(),
        "namespaced": rt.namespaced,
        "kind": rt.kind,
        "verbs": sorted(rt.verbs or _CRUD_VERBS),
    }
    if rt.short_names:
        entry["shortNames"] = list(rt.short_names)
    if rt.categories:
        entry["categories"] = list(rt.categories)
    entries = [entry]
    for sub in sorted(rt.subresources):
        group, version, kind, verbs = _SUBRESOURCE_DISCOVERY.get(sub, (None, None, None, ("get",)))
        sub_entry: Obj = {
            "name": f"{rt.plural}/{sub}",
            "singularName": "",
            "namespaced": rt.namespaced,
            "kind": kind or rt.kind,
            "verbs": list(verbs),
        }
        if group is not None and (group, version) != (rt.group, rt.version):
            sub_entry["group"] = group
            sub_entry["version"] = version
        entries.append(sub_entry)
    return entries


_VERSION_RE: Final = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def _version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key putting the version Kubernetes prefers first (v2 > v1 > v1beta2 > v1alpha1)."""
    match = _VERSION_RE.match(version)
    if match is None:
        return (3, 0, 0, version)
    stability = {None: 0, "beta": 1, "alpha": 2}[match.group(2)]
    return (stability, -int(match.group(1)), -int(match.group(3) or 0), version)


def _group_entry(group: str, versions: list[str]) -> Obj:
    ordered = sorted(versions, key=_version_priority)
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


# --------------------------------------------------------------------------------------------------
# URL routes.
# --------------------------------------------------------------------------------------------------

_NAMESPACE_SUBRESOURCES: Final = frozenset({"status", "finalize"})


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    group: str
    version: str
    plural: str
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None
    watch_prefix: bool = False  # the deprecated /watch/ path segment


def parse_route(path: str) -> Route | None:
    """Split a resource URL; discovery and other paths give ``None``."""
    parts = [part for part in path.split("/") if part]
    if len(parts) >= 3 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_prefix = rest[0] == "watch"
    if watch_prefix:
        rest = rest[1:]
    if not rest:
        return None
    namespace = None
    # /api/v1/namespaces/<ns>/status is the Namespace's own subresource, not a collection in <ns>.
    if rest[0] == "namespaces" and len(rest) >= 3 and not (len(rest) == 3 and rest[2] in _NAMESPACE_SUBRESOURCES):
        namespace, rest = rest[1], rest[2:]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return Route(group, version, rest[0], namespace, name, subresource, watch_prefix)


# --------------------------------------------------------------------------------------------------
# Label and field selectors.
# --------------------------------------------------------------------------------------------------

_KEY: Final = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_REQUIREMENT_RE: Final = re.compile(
    rf"""^\s*(?:
        !\s*(?P<absent>{_KEY})
      | (?P<set_key>{_KEY})\s+(?P<set_op>in|notin)\s*\((?P<set_values>[^()]*)\)
      | (?P<key>{_KEY})\s*(?P<op>==|=|!=|>|<)\s*(?P<value>[-A-Za-z0-9_.]*)
      | (?P<present>{_KEY})
    )\s*$""",
    re.VERBOSE,
)


@dataclasses.dataclass(frozen=True, slots=True)
class LabelRequirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!", ">", "<"
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        match self.op:
            case "=" | "in":
                return value is not None and value in self.values
            case "!=" | "notin":
                return value not in self.values  # an absent label matches, as in Kubernetes
            case "exists":
                return value is not None
            case "!":
                return value is None
            case _:
                return _compare_numeric(value, self.op, self.values[0])


def _compare_numeric(value: str | None, op: str, bound: str) -> bool:
    try:
        number, limit = int(value or ""), int(bound)
    except ValueError:
        return False
    return number > limit if op == ">" else number < limit


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside parentheses: ``a in (x,y),b`` is two requirements."""
    parts, depth, current = [], 0, []
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [part for part in parts if part.strip()]


def parse_label_selector(text: str) -> tuple[LabelRequirement, ...]:
    requirements = []
    for part in _split_top_level(text):
        match = _REQUIREMENT_RE.match(part)
        if match is None:
            raise ApiError(400, f"unable to parse requirement: {part.strip()!r}")
        if match["absent"]:
            requirements.append(LabelRequirement(match["absent"], "!"))
        elif match["set_key"]:
            values = tuple(v.strip() for v in match["set_values"].split(",") if v.strip())
            requirements.append(LabelRequirement(match["set_key"], match["set_op"], values))
        elif match["key"]:
            op = "=" if match["op"] == "==" else match["op"]
            requirements.append(LabelRequirement(match["key"], op, (match["value"],)))
        else:
            requirements.append(LabelRequirement(match["present"], "exists"))
    return tuple(requirements)


_COMMON_FIELDS: Final = frozenset({"metadata.name", "metadata.namespace"})
_KIND_FIELDS: Final[dict[str, frozenset[str]]] = {
    "Pod": frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        }
    ),
    "Event": frozenset(
        {
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        }
    ),
    "Secret": frozenset({"type"}),
    "Node": frozenset({"spec.unschedulable"}),
    "Namespace": frozenset({"status.phase"}),
    "ReplicaSet": frozenset({"status.replicas"}),
    "ReplicationController": frozenset({"status.replicas"}),
    "Job": frozenset({"status.successful"}),
}
_FIELD_PATHS: Final = {"source": "source.component"}


@dataclasses.dataclass(frozen=True, slots=True)
class FieldRequirement:
    field: str
    equal: bool
    value: str

    def matches(self, obj: Mapping[str, Any]) -> bool:
        return (_field_value(obj, _FIELD_PATHS.get(self.field, self.field)) == self.value) == self.equal


def _field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def parse_field_selector(text: str, kind: str) -> tuple[FieldRequirement, ...]:
    supported = _COMMON_FIELDS | _KIND_FIELDS.get(kind, frozenset())
    requirements = []
    for part in (p.strip() for p in text.split(",") if p.strip()):
        match = re.match(r"^([^!=]+?)\s*(!=|==|=)\s*(.*)$", part)
        if match is None:
            raise ApiError(400, f"invalid selector: '{part}'; can't understand '{part}'")
        field, op, value = match.groups()
        if field not in supported:
            raise ApiError(400, f"field label not supported: {field}")
        requirements.append(FieldRequirement(field, op != "!=", value.strip()))
    return tuple(requirements)


@dataclasses.dataclass(frozen=True, slots=True)
class Selector:
    """Which objects a list or a watch sees."""

    namespace: str | None = None
    name: str | None = None
    labels: tuple[LabelRequirement, ...] = ()
    fields: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        meta = _meta(obj)
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        if self.name is not None and meta.get("name") != self.name:
            return False
        labels = meta.get("labels") or {}
        return all(r.matches(labels) for r in self.labels) and all(r.matches(obj) for r in self.fields)

    def visible_type(self, event: WatchEvent) -> str | None:
        """The event type this watcher sees; objects moving in/out of the selector appear/vanish."""
        now = self.matches(event.obj)
        if event.type != "MODIFIED" or event.old is None:
            return event.type if now else None
        before = self.matches(event.old)
        if before and now:
            return "MODIFIED"
        if now:
            return "ADDED"
        return "DELETED" if before else None


# --------------------------------------------------------------------------------------------------
# Patches.
# --------------------------------------------------------------------------------------------------


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
_SET_LISTS: Final = frozenset({"finalizers"})  # lists of scalars that merge as sets
_DELETE: Final = object()


def _merge_key(field: str, items: list[Any]) -> str | None:
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
    if field in _SET_LISTS:
        return current + [v for v in patch if v not in current]
    key = _merge_key(field, current + patch)
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


# --------------------------------------------------------------------------------------------------
# Server-side apply field sets (the ``fieldsV1`` of managedFields). A manager's previous set tells
# which fields to remove when it stops applying them, as kube-apiserver does.
# --------------------------------------------------------------------------------------------------


def field_set(value: Any, field: str = "") -> Obj:
    if isinstance(value, dict):
        return {f"f:{k}": field_set(v, k) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        if field in _SET_LISTS:
            return {f"v:{json.dumps(v)}": {} for v in value}
        key = _merge_key(field, value)
        if key and value and all(isinstance(i, dict) and key in i for i in value):
            return {f"k:{json.dumps({key: i[key]}, separators=(',', ':'))}": {".": {}, **field_set(i)} for i in value}
    return {}


def _applied_fields(config: Obj) -> Obj:
    """The fields an apply configuration sets, without the identity the server owns."""
    fields = {k: v for k, v in config.items() if k not in ("apiVersion", "kind")}
    meta = {k: v for k, v in _meta(config).items() if k not in _SYSTEM_METADATA | {"name", "namespace"}}
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
        entries = list(_meta(obj).get("managedFields") or [])
        same = [e for e in entries if self._is_mine(e)]
        fields = self.fields
        if self.operation == "Update" and same:
            fields = merge_patch(same[0].get("fieldsV1") or {}, fields)
        entry: Obj = {
            "manager": self.name,
            "operation": self.operation,
            "apiVersion": api_version,
            "time": _now(),
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
    for entry in _meta(obj or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply" and not entry.get("subresource"):
            return entry.get("fieldsV1") or {}
    return {}


# --------------------------------------------------------------------------------------------------
# Quantities: the API server answers with strings ("1", "16Gi") even when a client sent numbers.
# --------------------------------------------------------------------------------------------------

_QUANTITY_MAPS: Final = frozenset({"requests", "limits", "capacity", "allocatable", "hard", "used", "overhead"})


def format_quantity(number: float) -> str:
    if float(number).is_integer():
        return str(int(number))
    return f"{round(number * 1000)}m"


def normalize_quantities(value: Any) -> None:
    """Turn numeric quantities into strings, in place, where built-in types keep resource lists."""
    if isinstance(value, dict):
        for key, child in value.items():
            if key in _QUANTITY_MAPS and isinstance(child, dict):
                for name, quantity in child.items():
                    if isinstance(quantity, int | float) and not isinstance(quantity, bool):
                        child[name] = format_quantity(quantity)
            normalize_quantities(child)
    elif isinstance(value, list):
        for item in value:
            normalize_quantities(item)


# --------------------------------------------------------------------------------------------------
# The object store: objects, the global resourceVersion and the bounded event history.
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    key: StoreKey
    obj: Obj
    old: Obj | None = None


def _ident(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = _meta(obj)
    return (meta.get("namespace") or "", meta["name"])


class ObjectStore:
    """Committed objects are never mutated afterwards (copy-on-write), so the history and the
    watchers can share them without copying."""

    def __init__(self, history_size: int) -> None:
        self.lock = threading.RLock()  # readers on other threads see whole writes
        self._objects: dict[StoreKey, dict[tuple[str, str], Obj]] = collections.defaultdict(dict)
        self._rv = 0
        self._history: collections.deque[WatchEvent] = collections.deque(maxlen=history_size)
        self._listeners: list[Callable[[WatchEvent], None]] = []

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def history_size(self) -> int:
        return self._history.maxlen or 0

    def subscribe(self, listener: Callable[[WatchEvent], None]) -> None:
        self._listeners.append(listener)

    def get(self, key: StoreKey, namespace: str | None, name: str) -> Obj | None:
        return self._objects.get(key, {}).get((namespace or "", name))

    def items(self, key: StoreKey, namespace: str | None = None) -> list[Obj]:
        found = self._objects.get(key, {})
        return [found[i] for i in sorted(found) if namespace is None or i[0] == namespace]

    def resource_keys(self) -> list[StoreKey]:
        return [key for key, objs in self._objects.items() if objs]

    def save(self, key: StoreKey, obj: Obj, old: Obj | None) -> Obj:
        with self.lock:
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[key][_ident(obj)] = obj
            self._emit(WatchEvent(self._rv, "MODIFIED" if old is not None else "ADDED", key, obj, old))
            return obj

    def remove(self, key: StoreKey, obj: Obj) -> Obj:
        with self.lock:
            self._rv += 1
            final = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._rv)}}
            self._objects[key].pop(_ident(obj), None)
            self._emit(WatchEvent(self._rv, "DELETED", key, final, obj))
            return final

    def events_after(self, rv: int) -> list[WatchEvent] | None:
        """Every event after ``rv``, or None when some of them already left the history."""
        oldest = self._history[0].rv - 1 if self._history else self._rv
        if rv < oldest:
            return None
        return [event for event in self._history if event.rv > rv]

    def oldest_resumable(self) -> int:
        return self._history[0].rv - 1 if self._history else self._rv

    def _emit(self, event: WatchEvent) -> None:
        self._history.append(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not undo a committed write
                log.exception("kube emulator listener failed on %s", event.type)


class _Watcher:
    """One open watch: events are pushed by the store and drained by the streaming handler."""

    def __init__(self, key: StoreKey, selector: Selector, limit: int) -> None:
        self.key = key
        self.selector = selector
        self.limit = max(limit, 1)
        self.expired = False
        self.queue: asyncio.Queue[tuple[str, Obj] | None] = asyncio.Queue()

    def offer(self, event: WatchEvent) -> None:
        if event.key != self.key or self.expired:
            return
        visible = self.selector.visible_type(event)
        if visible is None:
            return
        if self.queue.qsize() >= self.limit:
            # A consumer this far behind could only be served from history it has lost: 410.
            self.expired = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait((visible, event.obj))

    def close(self) -> None:
        self.queue.put_nowait(None)


# --------------------------------------------------------------------------------------------------
# Object defaults and status rules per built-in kind (what kube-apiserver's strategies do).
# --------------------------------------------------------------------------------------------------

_KEEP_STATUS_ON_CREATE: Final = frozenset({"Node"})  # kubelets register nodes with their status
# Kinds whose DELETE answers with the object rather than a Status (ReturnDeletedObject upstream).
_RETURNS_DELETED_OBJECT: Final = frozenset({("", "Pod"), ("", "Service"), ("", "Namespace")})


def _default_deployment(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
    if strategy.get("type", "RollingUpdate") == "RollingUpdate":
        strategy["type"] = "RollingUpdate"
        strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})


def _default_statefulset(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("podManagementPolicy", "OrderedReady")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("updateStrategy", {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})


def _qos_class(spec: Mapping[str, Any]) -> str:
    resources = [c.get("resources") or {} for c in spec.get("containers") or []]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(res) is not None
        and (r.get("requests") or {}).get(res, (r.get("limits") or {}).get(res)) == (r.get("limits") or {}).get(res)
        for r in resources
        for res in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _default_pod(obj: Obj) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("serviceAccountName", "default")
    for container in spec.get("containers") or []:
        image = str(container.get("image", ""))
        latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    if not obj.get("status"):
        obj["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}


def _default_crd(obj: Obj) -> None:
    conditions = (obj.get("status") or {}).get("conditions") or []
    if any(c.get("type") == "Established" for c in conditions):
        return
    spec = obj.get("spec") or {}
    names = dict(spec.get("names") or {})
    names.setdefault("listKind", f"{names.get('kind', '')}List")
    names.setdefault("singular", str(names.get("kind", "")).lower())
    now = _now()
    obj["status"] = {
        "acceptedNames": names,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": now,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": now,
            },
        ],
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
    }


@dataclasses.dataclass(frozen=True, slots=True)
class ScalePaths:
    """Where a resource keeps what its /scale subresource shows (CRDs declare these)."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = None  # None: derive from spec.selector as built-in workloads do

    @classmethod
    def from_crd(cls, scale: Mapping[str, Any]) -> ScalePaths:
        return cls(
            scale.get("specReplicasPath", ".spec.replicas"),
            scale.get("statusReplicasPath", ".status.replicas"),
            scale.get("labelSelectorPath"),
        )


def _get_path(obj: Mapping[str, Any], path: str) -> Any:
    value: Any = obj
    for part in path.strip(".").split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return value


def _set_path(obj: Obj, path: str, value: Any) -> None:
    *parents, last = path.strip(".").split(".")
    for part in parents:
        obj = obj.setdefault(part, {})
    obj[last] = value


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector as the string form Scale.status.selector carries."""
    selector = selector or {}
    parts = [(k, f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator"), ",".join(sorted(expr.get("values") or []))
        text = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(op, f"!{key}")
        parts.append((key, text))
    return ",".join(text for _, text in sorted(parts))


def _is_watch(query: Mapping[str, str]) -> bool:
    return query.get("watch", "").lower() in ("true", "1")


def _content_type(request: kmock.Request) -> str:
    raw = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
    return raw.split(";", 1)[0].strip().lower()


def _manager_name(request: kmock.Request, query: Mapping[str, str]) -> str:
    if query.get("fieldManager"):
        return query["fieldManager"]
    agent = next((v for k, v in request.headers.items() if k.lower() == "user-agent"), "")
    return agent.split("/", 1)[0] or "unknown"


def _json_response(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")


def _success_status(rt: ResourceType, obj: Mapping[str, Any]) -> Obj:
    meta = _meta(obj)
    details = {**rt.details(meta.get("name", "")), "uid": meta.get("uid")}
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


# --------------------------------------------------------------------------------------------------
# The emulator.
# --------------------------------------------------------------------------------------------------


class KubeEmulator(kmock.KubernetesEmulator):
    """A Kubernetes API server with a small controller, served on 127.0.0.1 from a daemon thread.

    Single use: ``start()`` once, ``stop()`` once (or ``with KubeEmulator() as emu:``).
    """

    def __init__(self, *, history_size: int = 10_000, request_log_size: int = 100_000) -> None:
        super().__init__()
        with warnings.catch_warnings():  # kmock reads its bundle with a deprecated importlib API
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        self._store = ObjectStore(history_size)
        self._store.subscribe(self._publish)
        self._watchers: set[_Watcher] = set()
        self._faults = _FaultInjector()
        self._request_log: collections.deque[tuple[str, str, dict[str, str]]] = collections.deque(
            maxlen=request_log_size
        )
        self._custom: set[StoreKey] = set()
        self._scale_paths: dict[StoreKey, ScalePaths] = {}
        self._cluster_ips = ipaddress.ip_network("10.100.0.0/16").hosts()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._port: int | None = None
        self.controller = Controller(self)

    # kmock's View counts requests for truthiness; an emulator with no traffic yet is still there.
    def __bool__(self) -> bool:
        return True

    __hash__ = object.__hash__

    # ----------------------------------------------------------------------------------------------
    # Lifecycle
    # ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._loop_thread is not None:
            raise RuntimeError("KubeEmulator can be started only once")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self._port = sock.getsockname()[1]
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop_thread = threading.Thread(
            target=self._run, args=(sock, started), name=f"kube-emulator-{self._port}", daemon=True
        )
        self._loop_thread.start()
        started.result(timeout=30)

    def stop(self) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._loop_thread
        if loop is None or stopping is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=30)

    def __enter__(self) -> KubeEmulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self, sock: socket.socket, started: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(sock, started))
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            else:
                log.exception("kube emulator stopped with an error")
        finally:
            loop.close()

    async def _serve(self, sock: socket.socket, started: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with self:  # kmock's live-stream feeder, for reactions declared with its DSL
            # Cancel a handler when its client goes away, so an idle watch does not linger.
            server = web.Server(self, handler_cancellation=True, request_factory=_large_body_requests)
            runner = web.ServerRunner(server, shutdown_timeout=1.0)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            self.controller.start()
            started.set_result(None)
            try:
                await self._stopping.wait()
            finally:
                await self.controller.aclose()
                for watcher in list(self._watchers):
                    watcher.close()
                await runner.cleanup()

    @property
    def url(self) -> str:  # type: ignore[override]  # kmock's is a yarl.URL of its test server
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return f"http://127.0.0.1:{self._port}"

    def write_kubeconfig(self, path: str | Path, context: str = "sandbox", namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
            "current-context": context,
            "preferences": {},
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    # ----------------------------------------------------------------------------------------------
    # Public object API (thread-safe)
    # ----------------------------------------------------------------------------------------------

    def put(self, obj: Mapping[str, Any]) -> Obj:  # type: ignore[override]  # not kmock's HTTP PUT helper
        """Create or replace an object as given (status included), bypassing admission."""
        body = copy.deepcopy(dict(obj))
        return copy.deepcopy(self._in_loop(lambda: self._put_now(body)))

    def get(  # type: ignore[override]  # not kmock's HTTP GET helper
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Obj | None:
        with self._store.lock:
            rt = self._type_for_kind(api_version, kind)
            found = self._store.get(rt.key, namespace if rt.namespaced else None, name)
            return copy.deepcopy(self._render(rt, found)) if found is not None else None

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        with self._store.lock:
            rt = self._type_for_kind(api_version, kind)
            items = self._store.items(rt.key, namespace if rt.namespaced else None)
            return [copy.deepcopy(self._render(rt, item)) for item in items]

    def delete(  # type: ignore[override]  # not kmock's HTTP DELETE helper
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Obj | None:
        """Delete an object (its dependents follow); returns its last state, or None if absent."""

        def delete_now() -> Obj | None:
            rt = self._type_for_kind(api_version, kind)
            found = self._store.get(rt.key, namespace if rt.namespaced else None, name)
            return self._delete_object(rt, found) if found is not None else None

        result = self._in_loop(delete_now)
        return copy.deepcopy(result) if result is not None else None

    @property
    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """(method, path, query) of every request served so far (bounded by request_log_size)."""
        return list(self._request_log)

    @property
    def resource_version(self) -> int:
        return self._store.resource_version

    def fail_next(self, method: str, path_regex: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests whose path matches (``re.search``) with ``status``."""
        self._faults.add(method, path_regex, status, times)

    def _in_loop(self, fn: Callable[[], T]) -> T:
        """Run a state change on the emulator's loop so watchers and the controller see it in order."""
        loop = self._loop
        if loop is None or not loop.is_running() or threading.current_thread() is self._loop_thread:
            with self._store.lock:
                return fn()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                with self._store.lock:
                    done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done.result(timeout=30)

    def _put_now(self, body: Obj) -> Obj:
        rt = self._type_for_kind(str(body.get("apiVersion", "")), str(body.get("kind", "")))
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            raise ValueError("put() needs metadata.name")
        if rt.namespaced:
            meta["namespace"] = meta.get("namespace") or "default"
        old = self._store.get(rt.key, meta.get("namespace"), meta["name"])
        self._apply_defaults(rt, body)
        return self._write(rt, body, old)

    # ----------------------------------------------------------------------------------------------
    # Catalog lookups, from kmock's resource array (bundled built-ins plus registered CRDs)
    # ----------------------------------------------------------------------------------------------

    def _resource_types(self) -> list[ResourceType]:
        return [
            self._build_type(res, self.resources[res])
            for res in list(self.resources)
            if res.group is not None and res.version and res.plural
        ]

    def _build_type(self, res: kmock.resource, info: kmock.ResourceInfo) -> ResourceType:
        group, version, plural = res.group or "", res.version or "", res.plural or ""
        return ResourceType(
            group=group,
            version=version,
            plural=plural,
            kind=info.kind or plural.capitalize(),
            namespaced=info.namespaced if info.namespaced is not None else True,
            singular=info.singular or "",
            verbs=frozenset(info.verbs),
            short_names=tuple(sorted(info.shortnames)),
            categories=tuple(sorted(info.categories)),
            subresources=frozenset(info.subresources),
            custom=(group, plural) in self._custom,
        )

    def _type_at(self, group: str, version: str, plural: str) -> ResourceType | None:
        res = kmock.resource(group, version, plural)
        if res not in self.resources:
            return None
        return self._build_type(res, self.resources[res])

    def _type_for_kind(self, api_version: str, kind: str) -> ResourceType:
        group, _, version = api_version.rpartition("/")
        for rt in self._resource_types():
            if (rt.group, rt.version, rt.kind) == (group, version, kind):
                return rt
        raise ValueError(f"the server does not serve {kind} in {api_version or 'no apiVersion'}")

    def _type_for_key(self, key: StoreKey) -> ResourceType | None:
        candidates = [rt for rt in self._resource_types() if rt.key == key]
        candidates.sort(key=lambda rt: _version_priority(rt.version))
        return candidates[0] if candidates else None

    def _render(self, rt: ResourceType, obj: Obj) -> Obj:
        # Versions of a resource share storage; answer in the version the client asked for.
        return obj if obj.get("apiVersion") == rt.api_version else {**obj, "apiVersion": rt.api_version}

    # ----------------------------------------------------------------------------------------------
    # HTTP entry point
    # ----------------------------------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> web.StreamResponse:
        method = str(request.method.value).upper()
        path = request.url.path
        self._request_log.append((method, path, dict(request.params)))
        self._trim_kmock_log()
        try:
            fault = self._faults.take(method, path)
            if fault is not None:
                raise fault
            if method == "GET" and path == "/version/":  # the client's VersionApi asks with the slash
                return _json_response(200, dict(SERVER_VERSION))
            route = parse_route(path)
            if route is not None:
                return await self._serve_resource(request, method, route)
            # kmock's own object tracking (KubernetesEmulator._handle) must not run: our store
            # is the truth. Its scaffold serves discovery (overridden below), /version and the DSL.
            return await kmock.KubernetesScaffold._handle(self, request)
        except ApiError as exc:
            return _json_response(exc.code, exc.status())
        except kmock.KubernetesError as exc:
            return _json_response(exc.status, ApiError(exc.status, _UNKNOWN_RESOURCE).status())
        except Exception:
            log.exception("kube emulator failed on %s %s", method, path)
            return _json_response(500, ApiError(500, "Internal error occurred: see the emulator log").status())

    def _trim_kmock_log(self) -> None:
        # kmock keeps every parsed request (bodies included) for DSL assertions; a long-lived
        # sandbox must not grow without bound, and our own log answers `requests`.
        if len(self._requests) > 2_000:
            del self._requests[:1_000]

    async def _render_error(self, exc: Exception) -> web.StreamResponse:
        code = exc.code if isinstance(exc, ApiError) else 500
        return _json_response(code, ApiError(code, str(exc) or type(exc).__name__).status())

    async def _serve_resource(self, request: kmock.Request, method: str, route: Route) -> web.StreamResponse:
        query = dict(request.params)
        if method == "GET" and (route.watch_prefix or _is_watch(query)) and route.subresource is None:
            rt = self._served_type(route)
            self._require_verb(rt, "watch")
            return await self._serve_watch(request, rt, route, query)
        # One request is one atomic step for readers on other threads (put/get/list).
        with self._store.lock:
            rt = self._served_type(route)
            if route.subresource is not None:
                status, body = self._serve_subresource(request, method, rt, route, query)
            elif route.name is None:
                status, body = self._serve_collection(request, method, rt, route, query)
            else:
                status, body = self._serve_object(request, method, rt, route, query)
        return body if isinstance(body, web.StreamResponse) else _json_response(status, body)

    def _served_type(self, route: Route) -> ResourceType:
        rt = self._type_at(route.group, route.version, route.plural)
        if rt is None or (route.namespace is not None and not rt.namespaced):
            raise ApiError(404, _UNKNOWN_RESOURCE)
        return rt

    @staticmethod
    def _require_verb(rt: ResourceType, verb: str) -> None:
        if not rt.allows(verb):
            raise ApiError(405, f"{verb} is not supported on resources of kind {rt.qualified!r}")

    def _serve_collection(
        self, request: kmock.Request, method: str, rt: ResourceType, route: Route, query: dict[str, str]
    ) -> tuple[int, Obj]:
        if method == "GET":
            self._require_verb(rt, "list")
            return 200, self._list(rt, route.namespace, query)
        if method == "POST":
            self._require_verb(rt, "create")
            if rt.namespaced and route.namespace is None:
                raise ApiError(404, _UNKNOWN_RESOURCE)
            body = self._body(request, "application/json")
            return 201, self._create(rt, route.namespace, body, query, _manager_name(request, query))
        if method == "DELETE":
            self._require_verb(rt, "deletecollection")
            return 200, self._delete_collection(rt, route.namespace, query)
        raise ApiError(405, f"{method} is not supported on a collection")

    def _serve_object(
        self, request: kmock.Request, method: str, rt: ResourceType, route: Route, query: dict[str, str]
    ) -> tuple[int, Obj]:
        assert route.name is not None
        namespace, name = route.namespace, route.name
        manager = _manager_name(request, query)
        if method == "GET":
            self._require_verb(rt, "get")
            return 200, self._render(rt, self._require(rt, namespace, name))
        if method == "PUT":
            self._require_verb(rt, "update")
            body = self._body(request, "application/json")
            return 200, self._replace(rt, namespace, name, body, query, manager)
        if method == "PATCH":
            self._require_verb(rt, "patch")
            content_type = _content_type(request)
            return self._patch(rt, namespace, name, content_type, self._body(request, content_type), query, manager)
        if method == "DELETE":
            self._require_verb(rt, "delete")
            options = self._body(request, "application/json") or {}
            return 200, self._delete(rt, namespace, name, options, query)
        raise ApiError(405, f"{method} is not supported on {rt.qualified}")

    @staticmethod
    def _body(request: kmock.Request, content_type: str) -> Any:
        if not request.body.strip():
            return None
        try:
            if content_type == APPLY_PATCH:
                return yaml.safe_load(request.body)
            return json.loads(request.body)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError(400, f"the body of the request could not be decoded: {exc}") from exc

    # ----------------------------------------------------------------------------------------------
    # Reads
    # ----------------------------------------------------------------------------------------------

    def _require(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        found = self._store.get(rt.key, namespace, name)
        if found is None:
            raise ApiError.not_found(rt, name)
        return found

    @staticmethod
    def _selector(
        rt: ResourceType, namespace: str | None, query: Mapping[str, str], name: str | None = None
    ) -> Selector:
        return Selector(
            namespace=namespace,
            name=name,
            labels=parse_label_selector(query.get("labelSelector", "")),
            fields=parse_field_selector(query.get("fieldSelector", ""), "" if rt.custom else rt.kind),
        )

    def _list(self, rt: ResourceType, namespace: str | None, query: Mapping[str, str]) -> Obj:
        selector = self._selector(rt, namespace, query)
        items = [obj for obj in self._store.items(rt.key, namespace) if selector.matches(obj)]
        meta: Obj = {"resourceVersion": str(self._store.resource_version)}
        items, token, remaining = _paginate(items, query)
        if token:
            meta["continue"] = token
            meta["remainingItemCount"] = remaining
        return {
            "apiVersion": rt.api_version,
            "kind": f"{rt.kind}List",
            "metadata": meta,
            "items": [self._render(rt, obj) for obj in items],
        }

    # ----------------------------------------------------------------------------------------------
    # Watches
    # ----------------------------------------------------------------------------------------------

    async def _serve_watch(
        self, request: kmock.Request, rt: ResourceType, route: Route, query: Mapping[str, str]
    ) -> web.StreamResponse:
        selector = self._selector(rt, route.namespace, query, route.name)
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        watcher, backlog, expired_at = self._open_watch(rt, selector, query.get("resourceVersion"))
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        assert request._raw_request is not None  # kmock always keeps it for served requests
        await response.prepare(request._raw_request)
        try:
            if expired_at is not None:
                await self._write_gone(response, query.get("resourceVersion", ""), expired_at)
                return response
            for event_type, obj in backlog:
                await self._write_event(response, rt, event_type, obj)
            await self._stream_live(response, rt, watcher, timeout)
        except ConnectionError:
            pass  # the client went away; nothing to tell it
        finally:
            self._watchers.discard(watcher)
        return response

    def _open_watch(
        self, rt: ResourceType, selector: Selector, rv_text: str | None
    ) -> tuple[_Watcher, list[tuple[str, Obj]], int | None]:
        """Register a watcher and compute what it must see first, atomically with the store."""
        with self._store.lock:
            watcher = _Watcher(rt.key, selector, self._store.history_size)
            if rv_text in (None, "", "0"):
                current = self._store.items(rt.key, selector.namespace)
                backlog = [("ADDED", obj) for obj in current if selector.matches(obj)]
            else:
                try:
                    events = self._store.events_after(int(rv_text))
                except ValueError as exc:
                    raise ApiError(400, f"invalid resource version {rv_text!r}") from exc
                if events is None:
                    return watcher, [], self._store.oldest_resumable()
                backlog = [
                    (visible, event.obj)
                    for event in events
                    if event.key == rt.key and (visible := selector.visible_type(event))
                ]
            self._watchers.add(watcher)
            return watcher, backlog, None

    async def _stream_live(
        self, response: web.StreamResponse, rt: ResourceType, watcher: _Watcher, timeout: float | None
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        while True:
            remaining = deadline - loop.time() if deadline is not None else None
            if remaining is not None and remaining <= 0:
                return
            try:
                item = await asyncio.wait_for(watcher.queue.get(), remaining)
            except TimeoutError:
                return
            if item is None:
                if watcher.expired:
                    await self._write_gone(response, "", self._store.oldest_resumable())
                return
            await self._write_event(response, rt, *item)

    async def _write_event(self, response: web.StreamResponse, rt: ResourceType, event_type: str, obj: Obj) -> None:
        line = json.dumps({"type": event_type, "object": self._render(rt, obj)})
        await response.write(line.encode() + b"\n")

    @staticmethod
    async def _write_gone(response: web.StreamResponse, requested: str, oldest: int) -> None:
        status = ApiError(410, f"too old resource version: {requested} ({oldest})").status()
        await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")

    def _publish(self, event: WatchEvent) -> None:
        for watcher in list(self._watchers):
            watcher.offer(event)
        self.controller.notify(event.type, event.obj)

    # ----------------------------------------------------------------------------------------------
    # Writes
    # ----------------------------------------------------------------------------------------------

    def _create(
        self, rt: ResourceType, namespace: str | None, body: Any, query: Mapping[str, str], manager: str
    ) -> Obj:
        obj = self._new_object(rt, namespace, body)
        name = obj["metadata"]["name"]
        if self._store.get(rt.key, namespace, name) is not None:
            raise ApiError.already_exists(rt, name)
        fields = FieldManager(manager, "Update", _applied_fields(obj))
        return self._render(rt, self._write(rt, obj, None, fields, dry_run=_dry_run(query)))

    def _new_object(self, rt: ResourceType, namespace: str | None, body: Any) -> Obj:
        """Validate a client's new object and apply the create-time rules of its kind."""
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        if meta.get("namespace") and namespace is not None and meta["namespace"] != namespace:
            raise ApiError(400, "the namespace of the provided object does not match the namespace sent on the request")
        if rt.namespaced:
            meta["namespace"] = namespace
        if not meta.get("name"):
            if not meta.get("generateName"):
                raise ApiError.invalid(rt, "", "metadata.name: Required value: name or generateName is required")
            meta["name"] = self._generated_name(rt, namespace, meta["generateName"])
        for field in _SYSTEM_METADATA | {"deletionTimestamp"}:
            meta.pop(field, None)
        if "status" in rt.subresources and rt.kind not in _KEEP_STATUS_ON_CREATE:
            obj.pop("status", None)
        self._apply_defaults(rt, obj)
        return obj

    def _generated_name(self, rt: ResourceType, namespace: str | None, prefix: str) -> str:
        while True:
            name = prefix + uuid.uuid4().hex[:5]
            if self._store.get(rt.key, namespace, name) is None:
                return name

    def _apply_defaults(self, rt: ResourceType, obj: Obj) -> None:
        if rt.custom:
            return
        match (rt.group, rt.kind):
            case ("apps", "Deployment"):
                _default_deployment(obj)
            case ("apps", "StatefulSet"):
                _default_statefulset(obj)
            case ("apps", "ReplicaSet"):
                obj.setdefault("spec", {}).setdefault("replicas", 1)
            case ("", "Pod"):
                _default_pod(obj)
            case ("", "Service"):
                self._default_service(obj)
            case ("", "Namespace"):
                obj.setdefault("status", {}).setdefault("phase", "Active")
            case ("apiextensions.k8s.io", "CustomResourceDefinition"):
                _default_crd(obj)

    def _default_service(self, obj: Obj) -> None:
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
            spec["clusterIP"] = str(next(self._cluster_ips))
            spec["clusterIPs"] = [spec["clusterIP"]]
        for port in spec.get("ports") or []:
            port.setdefault("protocol", "TCP")
            port.setdefault("targetPort", port.get("port"))

    def _replace(
        self, rt: ResourceType, namespace: str | None, name: str, body: Any, query: Mapping[str, str], manager: str
    ) -> Obj:
        old = self._require(rt, namespace, name)
        candidate = self._checked_body(rt, old, body, name)
        new = self._as_main_update(rt, old, candidate)
        fields = FieldManager(manager, "Update", _applied_fields(candidate))
        return self._render(rt, self._write(rt, new, old, fields, dry_run=_dry_run(query)))

    @staticmethod
    def _checked_body(rt: ResourceType, old: Obj, body: Any, name: str) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request must be a JSON object")
        meta = _meta(body)
        if meta.get("name") not in (None, name):
            why = f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            raise ApiError(400, why)
        _check_version(rt, old, meta.get("resourceVersion"))
        return copy.deepcopy(body)

    @staticmethod
    def _as_main_update(rt: ResourceType, old: Obj, new: Obj) -> Obj:
        """A write to the object itself: identity is the server's and status belongs to /status."""
        meta = new.setdefault("metadata", {})
        old_meta = _meta(old)
        for field in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp"):
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        meta.pop("managedFields", None)
        if "status" in rt.subresources:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)
        return new

    def _patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        body: Any,
        query: Mapping[str, str],
        manager: str,
        subresource: str | None = None,
    ) -> tuple[int, Obj]:
        if content_type == APPLY_PATCH:
            return self._apply(rt, namespace, name, body, query, subresource)
        old = self._require(rt, namespace, name)
        candidate = self._patched(rt, old, content_type, body)
        _check_version(rt, old, _meta(candidate).get("resourceVersion"))  # a patch naming a stale version
        new = self._as_update(rt, old, candidate, subresource)
        patch_fields = field_set(body) if isinstance(body, dict) else {}
        fields = FieldManager(manager, "Update", patch_fields, subresource)
        return 200, self._render(rt, self._write(rt, new, old, fields, dry_run=_dry_run(query)))

    @staticmethod
    def _patched(rt: ResourceType, target: Obj, content_type: str, body: Any) -> Obj:
        try:
            if content_type == MERGE_PATCH:
                result = merge_patch(target, body)
            elif content_type == STRATEGIC_PATCH and not rt.custom:
                result = strategic_merge_patch(target, body)
            elif content_type == JSON_PATCH:
                result = json_patch(target, body)
            else:
                accepted = ", ".join(t for t in _PATCH_TYPES if not (rt.custom and t == STRATEGIC_PATCH))
                raise ApiError(
                    415, f"the body of the request was in an unknown format - accepted media types include: {accepted}"
                )
        except PatchError as exc:
            raise ApiError.invalid(rt, _meta(target).get("name", ""), str(exc)) from exc
        if not isinstance(result, dict):
            raise ApiError(422, "the patched document is not an object")
        return copy.deepcopy(result)

    def _apply(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        config: Any,
        query: Mapping[str, str],
        subresource: str | None = None,
    ) -> tuple[int, Obj]:
        """Server-side apply: merge the configuration, drop what this manager stopped applying."""
        manager = query.get("fieldManager")
        if not manager:
            raise ApiError(400, "PATCH requests with apply-patch+yaml require the fieldManager parameter")
        if not isinstance(config, dict) or not config.get("kind") or not config.get("apiVersion"):
            raise ApiError(400, "an apply configuration needs apiVersion, kind and metadata.name")
        if config["kind"] != rt.kind or _meta(config).get("name") not in (None, name):
            raise ApiError(400, f"the apply configuration does not describe {rt.kind} {name!r}")
        old = self._store.get(rt.key, namespace, name)
        if old is None and subresource is not None:
            raise ApiError.not_found(rt, name)
        applied = _applied_fields(config)
        base = copy.deepcopy(old) if old is not None else {"metadata": {"name": name}}
        merged = strategic_merge_patch(base, config)
        _prune(merged, _fields_dropped(_previous_apply_fields(old, manager), applied))
        fields = FieldManager(manager, "Apply", applied, subresource)
        if old is None:
            new = self._new_object(rt, namespace, merged)
            return 201, self._render(rt, self._write(rt, new, None, fields, dry_run=_dry_run(query)))
        _check_version(rt, old, _meta(config).get("resourceVersion"))
        new = self._as_update(rt, old, merged, subresource)
        return 200, self._render(rt, self._write(rt, new, old, fields, dry_run=_dry_run(query)))

    def _as_update(self, rt: ResourceType, old: Obj, candidate: Obj, subresource: str | None) -> Obj:
        if subresource == "status":
            return self._as_status_update(old, candidate)
        return self._as_main_update(rt, old, candidate)

    @staticmethod
    def _as_status_update(old: Obj, candidate: Obj) -> Obj:
        new = copy.deepcopy(old)
        if candidate.get("status") is None:
            new.pop("status", None)
        else:
            new["status"] = copy.deepcopy(candidate["status"])
        return new

    def _write(
        self,
        rt: ResourceType,
        new: Obj,
        old: Obj | None,
        manager: FieldManager | None = None,
        *,
        dry_run: bool = False,
    ) -> Obj:
        """Stamp server-owned metadata and commit, unless nothing changed (then: no event, same rv)."""
        self._stamp(rt, new, old)
        if old is not None and _without_version(old) == _without_version(new):
            return old
        if manager is not None:
            manager.record(new, rt.api_version)
        meta = new["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and old is not None:
            return new if dry_run else self._remove(rt, new)
        if dry_run:
            meta["resourceVersion"] = _meta(old or {}).get("resourceVersion", "")
            return new
        committed = self._store.save(rt.key, new, old)
        self._after_write(rt, committed)
        return committed

    @staticmethod
    def _stamp(rt: ResourceType, new: Obj, old: Obj | None) -> None:
        new["apiVersion"] = rt.api_version
        new["kind"] = rt.kind
        meta = new.setdefault("metadata", {})
        if not rt.namespaced:
            meta.pop("namespace", None)
        meta.pop("resourceVersion", None)
        if old is None:
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = _now()
            meta["generation"] = 1
        else:
            old_meta = _meta(old)
            meta["uid"] = old_meta["uid"]
            meta["creationTimestamp"] = old_meta["creationTimestamp"]
            changed = _desired_state(old) != _desired_state(new)
            meta["generation"] = int(old_meta.get("generation", 1)) + (1 if changed else 0)
            if "managedFields" not in meta and "managedFields" in old_meta:
                meta["managedFields"] = old_meta["managedFields"]
        if not rt.custom:
            normalize_quantities(new)

    def _after_write(self, rt: ResourceType, obj: Obj) -> None:
        if (rt.group, rt.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition"):
            self._register_crd(obj)

    # ----------------------------------------------------------------------------------------------
    # Deletes and garbage collection
    # ----------------------------------------------------------------------------------------------

    def _delete(
        self, rt: ResourceType, namespace: str | None, name: str, options: Any, query: Mapping[str, str]
    ) -> Obj:
        old = self._require(rt, namespace, name)
        preconditions = (options.get("preconditions") if isinstance(options, dict) else None) or {}
        if preconditions.get("uid") not in (None, _meta(old).get("uid")):
            raise ApiError.conflict(rt, name)
        _check_version(rt, old, preconditions.get("resourceVersion"))
        if _dry_run(query):
            return _success_status(rt, old)
        result = self._delete_object(rt, old)
        waiting = self._store.get(rt.key, namespace, name) is result  # finalizers hold it back
        if waiting or rt.custom or (rt.group, rt.kind) in _RETURNS_DELETED_OBJECT:
            return self._render(rt, result)
        return _success_status(rt, result)

    def _delete_collection(self, rt: ResourceType, namespace: str | None, query: Mapping[str, str]) -> Obj:
        selector = self._selector(rt, namespace, query)
        doomed = [obj for obj in self._store.items(rt.key, namespace) if selector.matches(obj)]
        removed = [obj if _dry_run(query) else self._delete_object(rt, obj) for obj in doomed]
        return {
            "apiVersion": rt.api_version,
            "kind": f"{rt.kind}List",
            "metadata": {"resourceVersion": str(self._store.resource_version)},
            "items": [self._render(rt, obj) for obj in removed],
        }

    def _delete_object(self, rt: ResourceType, obj: Obj) -> Obj:
        """Delete now, or mark for deletion while finalizers remain (as the API server does)."""
        meta = _meta(obj)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return obj
            marked = copy.deepcopy(obj)
            marked["metadata"]["deletionTimestamp"] = _now()
            marked["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._write(rt, marked, obj)
        return self._remove(rt, obj)

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        final = self._store.remove(rt.key, obj)
        self._after_remove(rt, final)
        return final

    def _after_remove(self, rt: ResourceType, obj: Obj) -> None:
        """What the garbage collector and the namespace/CRD controllers do after a delete."""
        if (rt.group, rt.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition"):
            self._unregister_crd(obj)
        elif (rt.group, rt.kind) == ("", "Namespace"):
            self._delete_where(lambda other: _meta(other).get("namespace") == _meta(obj)["name"])
        uid = _meta(obj).get("uid")
        self._delete_where(lambda other: any(r.get("uid") == uid for r in _meta(other).get("ownerReferences") or []))

    def _delete_where(self, doomed: Callable[[Obj], bool]) -> None:
        for key in self._store.resource_keys():
            rt = self._type_for_key(key)
            if rt is None:
                continue
            for obj in self._store.items(key):
                current = self._store.get(key, _meta(obj).get("namespace"), _meta(obj)["name"])
                if current is not None and doomed(current):
                    self._delete_object(rt, current)

    # ----------------------------------------------------------------------------------------------
    # Subresources
    # ----------------------------------------------------------------------------------------------

    def _serve_subresource(
        self, request: kmock.Request, method: str, rt: ResourceType, route: Route, query: dict[str, str]
    ) -> tuple[int, Obj | web.StreamResponse]:
        sub, name, namespace = route.subresource or "", route.name or "", route.namespace
        if sub not in rt.subresources or not name:
            raise ApiError(404, _UNKNOWN_RESOURCE)
        manager = _manager_name(request, query)
        if sub == "status":
            return self._serve_status(request, method, rt, namespace, name, query, manager)
        if sub == "scale":
            return self._serve_scale(request, method, rt, namespace, name, query, manager)
        if sub == "log" and method == "GET":
            return 200, self._serve_log(rt, namespace, name, query)
        if sub == "eviction" and method == "POST":
            self._delete_object(rt, self._require(rt, namespace, name))
            return 201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        raise ApiError(405, f"{method} {rt.plural}/{sub} is not supported by the emulator")

    def _serve_status(
        self,
        request: kmock.Request,
        method: str,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        query: Mapping[str, str],
        manager: str,
    ) -> tuple[int, Obj]:
        if method == "GET":
            return 200, self._render(rt, self._require(rt, namespace, name))
        if method == "PUT":
            old = self._require(rt, namespace, name)
            candidate = self._checked_body(rt, old, self._body(request, "application/json"), name)
            new = self._as_status_update(old, candidate)
            fields = FieldManager(manager, "Update", field_set({"status": candidate.get("status")}), "status")
            return 200, self._render(rt, self._write(rt, new, old, fields, dry_run=_dry_run(query)))
        if method == "PATCH":
            content_type = _content_type(request)
            body = self._body(request, content_type)
            return self._patch(rt, namespace, name, content_type, body, query, manager, subresource="status")
        raise ApiError(405, f"{method} is not supported on {rt.plural}/status")

    def _serve_scale(
        self,
        request: kmock.Request,
        method: str,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        query: Mapping[str, str],
        manager: str,
    ) -> tuple[int, Obj]:
        old = self._require(rt, namespace, name)
        scale = self._scale_of(rt, old)
        if method == "GET":
            return 200, scale
        if method == "PUT":
            candidate = self._checked_body(rt, old, self._body(request, "application/json"), name)
        elif method == "PATCH":
            content_type = _content_type(request)
            scale_type = dataclasses.replace(rt, custom=False)  # Scale is built-in: strategic merge works
            candidate = self._patched(scale_type, scale, content_type, self._body(request, content_type))
        else:
            raise ApiError(405, f"{method} is not supported on {rt.plural}/scale")
        replicas = (candidate.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            why = f"spec.replicas: Invalid value: {replicas!r}: must be greater than or equal to 0"
            raise ApiError.invalid(rt, name, why)
        new = copy.deepcopy(old)
        _set_path(new, self._scale_paths.get(rt.key, ScalePaths()).spec_replicas, replicas)
        fields = FieldManager(manager, "Update", {"f:spec": {"f:replicas": {}}}, "scale")
        committed = self._write(rt, new, old, fields, dry_run=_dry_run(query))
        return 200, self._scale_of(rt, committed)

    def _scale_of(self, rt: ResourceType, obj: Obj) -> Obj:
        paths = self._scale_paths.get(rt.key, ScalePaths())
        meta = _meta(obj)
        if paths.label_selector is not None:
            selector = _get_path(obj, paths.label_selector) or ""
        else:
            selector = selector_string((obj.get("spec") or {}).get("selector"))
        replicas = _get_path(obj, paths.spec_replicas)
        spec = {"replicas": replicas} if replicas else {}  # omitempty, as the real Scale
        identity = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in identity if k in meta},
            "spec": spec,
            "status": {"replicas": _get_path(obj, paths.status_replicas) or 0, "selector": selector},
        }

    def _serve_log(self, rt: ResourceType, namespace: str | None, name: str, query: Mapping[str, str]) -> Any:
        pod = self._require(rt, namespace, name)
        text = self.controller.pod_log(pod, query.get("container"))
        if text is None:
            raise ApiError(400, f'container in pod "{name}" is waiting to start: ContainerCreating')
        return web.Response(status=200, text=text, content_type="text/plain")

    # ----------------------------------------------------------------------------------------------
    # CustomResourceDefinitions
    # ----------------------------------------------------------------------------------------------

    def _register_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
        if not (group and plural and kind):
            log.warning("ignoring CRD %s without group, plural or kind", _meta(crd).get("name"))
            return
        self._drop_crd_types(group, plural)
        self._custom.add((group, plural))
        for version in spec.get("versions") or []:
            if not version.get("served", True):
                continue
            subresources = version.get("subresources") or {}
            if "scale" in subresources:
                self._scale_paths[(group, plural)] = ScalePaths.from_crd(subresources["scale"] or {})
            self.resources[kmock.resource(group, version["name"], plural)] = kmock.ResourceInfo(
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                kind=kind,
                singular=names.get("singular") or kind.lower(),
                verbs=set(_CRUD_VERBS),
                shortnames=set(names.get("shortNames") or []),
                categories=set(names.get("categories") or []),
                subresources={s for s in ("status", "scale") if s in subresources},
            )

    def _drop_crd_types(self, group: str, plural: str) -> None:
        for res in [r for r in self.resources if r.group == group and r.plural == plural]:
            del self.resources[res]
        self._scale_paths.pop((group, plural), None)

    def _unregister_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        group, plural = spec.get("group"), (spec.get("names") or {}).get("plural")
        if not (group and plural):
            return
        rt = self._type_for_key((group, plural))
        if rt is not None:
            for obj in self._store.items(rt.key):
                self._remove(rt, obj)
        self._drop_crd_types(group, plural)
        self._custom.discard((group, plural))

    # ----------------------------------------------------------------------------------------------
    # Discovery (kmock's scaffold routes these paths here)
    # ----------------------------------------------------------------------------------------------

    async def _serve_server_version(self, request: kmock.Request) -> Obj:
        return dict(SERVER_VERSION)

    async def _serve_api(self, request: kmock.Request) -> Obj:
        address = f"127.0.0.1:{self._port}"
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
        }

    def _group_versions(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for rt in self._resource_types():
            if rt.group and rt.version not in groups.setdefault(rt.group, []):
                groups[rt.group].append(rt.version)
        return groups

    async def _serve_apis(self, request: kmock.Request) -> Obj:
        groups = self._group_versions()
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [_group_entry(group, groups[group]) for group in sorted(groups)],
        }

    async def _serve_group(self, request: kmock.Request) -> Obj:
        group = request.resource.group if request.resource is not None else None
        versions = self._group_versions().get(group or "")
        if not versions:
            raise ApiError(404, _UNKNOWN_RESOURCE)
        return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group or "", versions)}

    async def _serve_version(self, request: kmock.Request) -> Obj:
        res = request.resource
        group, version = (res.group or "", res.version or "") if res is not None else ("", "")
        types = [rt for rt in self._resource_types() if (rt.group, rt.version) == (group, version)]
        if not types:
            raise ApiError(404, _UNKNOWN_RESOURCE)
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": [entry for rt in sorted(types, key=lambda t: t.plural) for entry in _discovery_entries(rt)],
        }

    async def _serve_root(self, request: kmock.Request) -> Obj:
        paths = {"/api", "/api/v1", "/apis", "/version"}
        for group, versions in self._group_versions().items():
            paths.add(f"/apis/{group}")
            paths.update(f"/apis/{group}/{version}" for version in versions)
        return {"paths": sorted(paths)}


def _large_body_requests(
    message: Any, payload: Any, protocol: Any, writer: Any, task: asyncio.Task[None]
) -> web.BaseRequest:
    # aiohttp refuses bodies over 1 MiB by default; Helm release Secrets and CRDs are larger.
    loop = asyncio.get_running_loop()
    return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=_MAX_BODY_BYTES)


def _dry_run(query: Mapping[str, str]) -> bool:
    return query.get("dryRun") == "All"


def _check_version(rt: ResourceType, old: Obj, expected: Any) -> None:
    """Optimistic concurrency: a write naming a resourceVersion must name the current one."""
    if expected not in (None, "") and str(expected) != _meta(old).get("resourceVersion"):
        raise ApiError.conflict(rt, _meta(old).get("name", ""))


def _desired_state(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What metadata.generation tracks: everything except metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _without_version(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = {k: v for k, v in _meta(obj).items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}


def _paginate(items: list[Obj], query: Mapping[str, str]) -> tuple[list[Obj], str, int]:
    """Serve ``limit``/``continue`` pages; the token encodes the last (namespace, name) served."""
    start = 0
    if token := query.get("continue"):
        try:
            after = tuple(json.loads(base64.urlsafe_b64decode(token.encode())))
        except ValueError as exc:
            raise ApiError(400, "invalid continue token") from exc
        start = next((i for i, obj in enumerate(items) if _ident(obj) > after), len(items))
    limit = int(query.get("limit") or 0)
    if limit <= 0 or start + limit >= len(items):
        return items[start:], "", 0
    page = items[start : start + limit]
    token = base64.urlsafe_b64encode(json.dumps(list(_ident(page[-1]))).encode()).decode()
    return page, token, len(items) - start - limit
