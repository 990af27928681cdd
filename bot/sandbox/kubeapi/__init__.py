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

The package is split by concern: ``resources`` and ``errors`` (the catalog's vocabulary),
``selectors``, ``patch`` and ``apply`` (pure request semantics), ``store`` and ``watch`` (objects,
resourceVersion, event history), ``kinds`` (per-kind defaults), and the emulator assembled from
``core``, ``writes`` (deletes with their propagation policies), ``garbage`` (the garbage collector
that finishes them, asynchronously, as kube-controller-manager's does), ``subresources``,
``discovery`` and ``server``.
"""

from bot.sandbox.kubeapi.apply import FieldManager, field_set
from bot.sandbox.kubeapi.discovery import SERVER_VERSION
from bot.sandbox.kubeapi.errors import ApiError
from bot.sandbox.kubeapi.kinds import ScalePaths, format_quantity, normalize_quantities
from bot.sandbox.kubeapi.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_PATCH,
    PatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from bot.sandbox.kubeapi.resources import ResourceType
from bot.sandbox.kubeapi.routes import Route, parse_route
from bot.sandbox.kubeapi.selectors import (
    FieldRequirement,
    LabelRequirement,
    Selector,
    parse_field_selector,
    parse_label_selector,
    selector_string,
)
from bot.sandbox.kubeapi.server import KubeEmulator
from bot.sandbox.kubeapi.store import ObjectStore, WatchEvent

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "SERVER_VERSION",
    "STRATEGIC_PATCH",
    "ApiError",
    "FieldManager",
    "FieldRequirement",
    "KubeEmulator",
    "LabelRequirement",
    "ObjectStore",
    "PatchError",
    "ResourceType",
    "Route",
    "ScalePaths",
    "Selector",
    "WatchEvent",
    "field_set",
    "format_quantity",
    "json_patch",
    "merge_patch",
    "normalize_quantities",
    "parse_field_selector",
    "parse_label_selector",
    "parse_route",
    "selector_string",
    "strategic_merge_patch",
]
