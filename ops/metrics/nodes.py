"""Instance types of a cluster's nodes, from the Kubernetes API's Node objects.

A default kube-state-metrics exports no `kube_node_labels` instance type (only when an operator
allow-lists the label), but every Node carries `node.kubernetes.io/instance-type` (older clusters:
`beta.kubernetes.io/instance-type`). The digest reads them here, once per build at most: a
listing is kept for a short while, so that the digests of several channels and an `/infer metrics`
right after them share one list call.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")
TTL_SECONDS = 60.0
KUBE_TIMEOUT = (5, 20)


class NodeReader(Protocol):
    name: str

    @property
    def core(self) -> Any: ...


def instance_types_of(nodes: Mapping[str, Any]) -> dict[str, str]:
    """node name → instance type, from a NodeList (JSON as the API serves it); untyped nodes left out."""
    out: dict[str, str] = {}
    for item in nodes.get("items") or []:
        meta = item.get("metadata") or {}
        labels = meta.get("labels") or {}
        found = next((labels[k] for k in INSTANCE_TYPE_LABELS if labels.get(k)), None)
        if meta.get("name") and found:
            out[str(meta["name"])] = str(found)
    return out


class NodeTypes:
    """A short-lived cache of each cluster's node → instance type, keyed by the API server it read."""

    def __init__(self, ttl: float = TTL_SECONDS) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[float, dict[str, str]]] = {}
        self._inflight: dict[tuple[str, str], threading.Lock] = {}

    def get(self, kube: NodeReader) -> dict[str, str]:
        """Raises what the API client raises; the caller turns it into a warning."""
        key = (kube.name, _server(kube))
        with self._lock:
            lock = self._inflight.setdefault(key, threading.Lock())
        with lock:  # concurrent builds of one cluster wait for one list call instead of each making one
            now = time.monotonic()
            with self._lock:
                cached = self._cache.get(key)
            if cached is not None and now - cached[0] < self.ttl:
                return cached[1]
            resp = kube.core.list_node(_preload_content=False, _request_timeout=KUBE_TIMEOUT)
            try:
                types = instance_types_of(json.loads(resp.data))
            finally:
                resp.release_conn()
            with self._lock:
                self._cache[key] = (time.monotonic(), types)
            return types


def _server(kube: NodeReader) -> str:
    """The API server's URL: two clusters of one name (tests, a re-provisioned cluster) do not share entries."""
    try:
        return str(kube.core.api_client.configuration.host)
    except AttributeError:
        return ""


NODE_TYPES = NodeTypes()
