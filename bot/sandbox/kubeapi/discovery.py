"""Discovery: the API groups, versions and resources the catalog serves, as kubectl and the
Python client ask for them (kmock's scaffold routes these paths here)."""

from __future__ import annotations

from typing import Final

import kmock

from bot.sandbox.kubeapi.core import EmulatorCore
from bot.sandbox.kubeapi.errors import UNKNOWN_RESOURCE, ApiError
from bot.sandbox.kubeapi.resources import CRUD_VERBS, Obj, ResourceType, version_priority

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
        "verbs": sorted(rt.verbs or CRUD_VERBS),
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


def _group_entry(group: str, versions: list[str]) -> Obj:
    ordered = sorted(versions, key=version_priority)
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in ordered]
    return {"name": group, "versions": listed, "preferredVersion": listed[0]}


class Discovery(EmulatorCore):
    """The emulator's discovery endpoints."""

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
            raise ApiError(404, UNKNOWN_RESOURCE)
        return {"kind": "APIGroup", "apiVersion": "v1", **_group_entry(group or "", versions)}

    async def _serve_version(self, request: kmock.Request) -> Obj:
        res = request.resource
        group, version = (res.group or "", res.version or "") if res is not None else ("", "")
        types = [rt for rt in self._resource_types() if (rt.group, rt.version) == (group, version)]
        if not types:
            raise ApiError(404, UNKNOWN_RESOURCE)
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
