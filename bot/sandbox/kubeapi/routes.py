"""What a request asks for: the resource URL it names and the query and header conventions of
kube-apiserver."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from typing import Any, Final

import kmock
import yaml
from aiohttp import web

from bot.sandbox.kubeapi.errors import ApiError
from bot.sandbox.kubeapi.patch import APPLY_PATCH

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


def is_watch(query: Mapping[str, str]) -> bool:
    return query.get("watch", "").lower() in ("true", "1")


def request_content_type(request: kmock.Request) -> str:
    raw = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
    return raw.split(";", 1)[0].strip().lower()


def manager_name(request: kmock.Request, query: Mapping[str, str]) -> str:
    if query.get("fieldManager"):
        return query["fieldManager"]
    agent = next((v for k, v in request.headers.items() if k.lower() == "user-agent"), "")
    return agent.split("/", 1)[0] or "unknown"


def json_response(status: int, body: Any) -> web.Response:
    return web.Response(status=status, body=json.dumps(body).encode(), content_type="application/json")


def is_dry_run(query: Mapping[str, str]) -> bool:
    return query.get("dryRun") == "All"


def request_body(request: kmock.Request, content_type: str) -> Any:
    if not request.body.strip():
        return None
    try:
        if content_type == APPLY_PATCH:
            return yaml.safe_load(request.body)
        return json.loads(request.body)
    except (ValueError, yaml.YAMLError) as exc:
        raise ApiError(400, f"the body of the request could not be decoded: {exc}") from exc
