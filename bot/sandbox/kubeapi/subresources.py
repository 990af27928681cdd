"""Subresources: /status and /scale write only their part of the object; /log and /eviction
answer for the pod."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from typing import Any

import kmock
from aiohttp import web

from bot.sandbox.kubeapi.apply import FieldManager, field_set
from bot.sandbox.kubeapi.errors import UNKNOWN_RESOURCE, ApiError
from bot.sandbox.kubeapi.garbage import GarbageCollector
from bot.sandbox.kubeapi.kinds import ScalePaths, get_path, set_path
from bot.sandbox.kubeapi.resources import Obj, ResourceType, meta_of, render
from bot.sandbox.kubeapi.routes import Route, is_dry_run, manager_name, request_body, request_content_type
from bot.sandbox.kubeapi.selectors import selector_string


class Subresources(GarbageCollector):
    """The emulator's subresource handlers."""

    def _serve_subresource(
        self, request: kmock.Request, method: str, rt: ResourceType, route: Route, query: dict[str, str]
    ) -> tuple[int, Obj | web.StreamResponse]:
        sub, name, namespace = route.subresource or "", route.name or "", route.namespace
        if sub not in rt.subresources or not name:
            raise ApiError(404, UNKNOWN_RESOURCE)
        manager = manager_name(request, query)
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
            return 200, render(rt, self._require(rt, namespace, name))
        if method == "PUT":
            old = self._require(rt, namespace, name)
            candidate = self._checked_body(rt, old, request_body(request, "application/json"), name)
            new = self._as_status_update(old, candidate)
            fields = FieldManager(manager, "Update", field_set({"status": candidate.get("status")}), "status")
            return 200, render(rt, self._write(rt, new, old, fields, dry_run=is_dry_run(query)))
        if method == "PATCH":
            content_type = request_content_type(request)
            body = request_body(request, content_type)
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
            candidate = self._checked_body(rt, old, request_body(request, "application/json"), name)
        elif method == "PATCH":
            content_type = request_content_type(request)
            scale_type = dataclasses.replace(rt, custom=False)  # Scale is built-in: strategic merge works
            candidate = self._patched(scale_type, scale, content_type, request_body(request, content_type))
        else:
            raise ApiError(405, f"{method} is not supported on {rt.plural}/scale")
        replicas = (candidate.get("spec") or {}).get("replicas", 0)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
            why = f"spec.replicas: Invalid value: {replicas!r}: must be greater than or equal to 0"
            raise ApiError.invalid(rt, name, why)
        new = copy.deepcopy(old)
        set_path(new, self._scale_paths.get(rt.key, ScalePaths()).spec_replicas, replicas)
        fields = FieldManager(manager, "Update", {"f:spec": {"f:replicas": {}}}, "scale")
        committed = self._write(rt, new, old, fields, dry_run=is_dry_run(query))
        return 200, self._scale_of(rt, committed)

    def _scale_of(self, rt: ResourceType, obj: Obj) -> Obj:
        paths = self._scale_paths.get(rt.key, ScalePaths())
        meta = meta_of(obj)
        if paths.label_selector is not None:
            selector = get_path(obj, paths.label_selector) or ""
        else:
            selector = selector_string((obj.get("spec") or {}).get("selector"))
        replicas = get_path(obj, paths.spec_replicas)
        spec = {"replicas": replicas} if replicas else {}  # omitempty, as the real Scale
        identity = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
        return {
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in identity if k in meta},
            "spec": spec,
            "status": {"replicas": get_path(obj, paths.status_replicas) or 0, "selector": selector},
        }

    def _serve_log(self, rt: ResourceType, namespace: str | None, name: str, query: Mapping[str, str]) -> Any:
        pod = self._require(rt, namespace, name)
        text = self.controller.pod_log(pod, query.get("container"))
        if text is None:
            raise ApiError(400, f'container in pod "{name}" is waiting to start: ContainerCreating')
        return web.Response(status=200, text=text, content_type="text/plain")
