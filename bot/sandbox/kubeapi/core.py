"""The emulator's state, and the lookups every part of it shares: the resource catalog (kmock's
bundled built-ins plus registered CRDs) and the objects a request names."""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import threading
import warnings

import kmock

from bot.sandbox.controller import Controller
from bot.sandbox.kubeapi.errors import ApiError, FaultInjector
from bot.sandbox.kubeapi.kinds import ScalePaths
from bot.sandbox.kubeapi.resources import CRUD_VERBS, Obj, ResourceType, StoreKey, meta_of, version_priority
from bot.sandbox.kubeapi.store import ObjectStore
from bot.sandbox.kubeapi.watch import Watches

log = logging.getLogger(__name__)


class EmulatorCore(kmock.KubernetesEmulator):
    """What the emulator's parts share; :class:`~bot.sandbox.kubeapi.server.KubeEmulator` assembles them."""

    controller: Controller

    def __init__(self, *, history_size: int, request_log_size: int) -> None:
        super().__init__()
        with warnings.catch_warnings():  # kmock reads its bundle with a deprecated importlib API
            warnings.simplefilter("ignore", DeprecationWarning)
            self.resources.load_bundled()
        self._store = ObjectStore(history_size)
        self._watches = Watches(self._store)
        self._faults = FaultInjector()
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

    # kmock's View counts requests for truthiness; an emulator with no traffic yet is still there.
    def __bool__(self) -> bool:
        return True

    __hash__ = object.__hash__  # type: ignore[assignment]  # kmock's View sets None; we are hashable by identity

    # ----------------------------------------------------------------------------------------------
    # Catalog lookups, from kmock's resource array (bundled built-ins plus registered CRDs)
    # ----------------------------------------------------------------------------------------------

    def _resource_types(self) -> list[ResourceType]:
        return [
            self._build_type(res, self.resources[res])
            for res in list(self.resources)
            if isinstance(res, kmock.resource) and res.group is not None and res.version and res.plural
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
        candidates.sort(key=lambda rt: version_priority(rt.version))
        return candidates[0] if candidates else None

    # ----------------------------------------------------------------------------------------------
    # Reads
    # ----------------------------------------------------------------------------------------------

    def _require(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        found = self._store.get(rt.key, namespace, name)
        if found is None:
            raise ApiError.not_found(rt, name)
        return found

    # ----------------------------------------------------------------------------------------------
    # CustomResourceDefinitions
    # ----------------------------------------------------------------------------------------------

    def _register_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        group, plural, kind = spec.get("group"), names.get("plural"), names.get("kind")
        if not (group and plural and kind):
            log.warning("ignoring CRD %s without group, plural or kind", meta_of(crd).get("name"))
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
                verbs=set(CRUD_VERBS),
                shortnames=set(names.get("shortNames") or []),
                categories=set(names.get("categories") or []),
                subresources={s for s in ("status", "scale") if s in subresources},
            )

    def _drop_crd_types(self, group: str, plural: str) -> None:
        for res in [r for r in self.resources if r.group == group and r.plural == plural]:
            del self.resources[res]
        self._scale_paths.pop((group, plural), None)
