"""What the emulator serves: resource types as discovery announces them, and the object helpers
every part of it shares."""

from __future__ import annotations

import dataclasses
import datetime
import re
from collections.abc import Mapping
from typing import Any, Final

Obj = dict[str, Any]
StoreKey = tuple[str, str]  # (group, plural): versions of one resource share their objects

CRUD_VERBS: Final = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
SYSTEM_METADATA: Final = frozenset(
    {"uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink"}
)


def utc_now() -> str:
    return utc_after(0)


def utc_after(seconds: float) -> str:
    moment = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def meta_of(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


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


_VERSION_RE: Final = re.compile(r"^v(\d+)(?:(alpha|beta)(\d+))?$")


def version_priority(version: str) -> tuple[int, int, int, str]:
    """Sort key putting the version Kubernetes prefers first (v2 > v1 > v1beta2 > v1alpha1)."""
    match = _VERSION_RE.match(version)
    if match is None:
        return (3, 0, 0, version)
    stability = {None: 0, "beta": 1, "alpha": 2}[match.group(2)]
    return (stability, -int(match.group(1)), -int(match.group(3) or 0), version)


def render(rt: ResourceType, obj: Obj) -> Obj:
    # Versions of a resource share storage; answer in the version the client asked for.
    return obj if obj.get("apiVersion") == rt.api_version else {**obj, "apiVersion": rt.api_version}
