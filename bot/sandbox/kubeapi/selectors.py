"""Label and field selectors: which objects a list, a watch or a deletecollection sees."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any, Final

from bot.sandbox.kubeapi.errors import ApiError
from bot.sandbox.kubeapi.resources import ResourceType, meta_of
from bot.sandbox.kubeapi.store import WatchEvent

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
    parts: list[str] = []
    current: list[str] = []
    depth = 0
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
        meta = meta_of(obj)
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


def selector_string(selector: Mapping[str, Any] | None) -> str:
    """A LabelSelector as the string form Scale.status.selector carries."""
    selector = selector or {}
    parts = [(k, f"{k}={v}") for k, v in (selector.get("matchLabels") or {}).items()]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key", ""), expr.get("operator"), ",".join(sorted(expr.get("values") or []))
        text = {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})", "Exists": key}.get(op, f"!{key}")
        parts.append((key, text))
    return ",".join(text for _, text in sorted(parts))


def request_selector(
    rt: ResourceType, namespace: str | None, query: Mapping[str, str], name: str | None = None
) -> Selector:
    return Selector(
        namespace=namespace,
        name=name,
        labels=parse_label_selector(query.get("labelSelector", "")),
        fields=parse_field_selector(query.get("fieldSelector", ""), "" if rt.custom else rt.kind),
    )
