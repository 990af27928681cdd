"""Writes: create, replace, patch, server-side apply and delete, with the bookkeeping kube-apiserver
does around them (server-owned metadata, generation, managedFields, finalizers, propagation policies)."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from bot.sandbox.kubeapi.apply import FieldManager, applied_fields, field_set, merged_configuration
from bot.sandbox.kubeapi.core import EmulatorCore
from bot.sandbox.kubeapi.errors import ApiError
from bot.sandbox.kubeapi.kinds import (
    KEEP_STATUS_ON_CREATE,
    RETURNS_DELETED_OBJECT,
    default_crd,
    default_deployment,
    default_pod,
    default_statefulset,
    normalize_quantities,
)
from bot.sandbox.kubeapi.patch import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    PATCH_TYPES,
    STRATEGIC_PATCH,
    PatchError,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)
from bot.sandbox.kubeapi.resources import SYSTEM_METADATA, Obj, ResourceType, meta_of, render, utc_after, utc_now
from bot.sandbox.kubeapi.routes import is_dry_run
from bot.sandbox.kubeapi.selectors import request_selector

FOREGROUND, BACKGROUND, ORPHAN = "Foreground", "Background", "Orphan"
FOREGROUND_FINALIZER, ORPHAN_FINALIZER = "foregroundDeletion", "orphan"


class Writes(EmulatorCore):
    """The emulator's write paths; the HTTP handlers and the thread-safe API both end here."""

    def _gc_soon(self) -> None:
        """Wake the garbage collector (garbage.py): an owner went, or waits for its dependents."""

    def _create(
        self, rt: ResourceType, namespace: str | None, body: Any, query: Mapping[str, str], manager: str
    ) -> Obj:
        obj = self._new_object(rt, namespace, body)
        name = obj["metadata"]["name"]
        if self._store.get(rt.key, namespace, name) is not None:
            raise ApiError.already_exists(rt, name)
        fields = FieldManager(manager, "Update", applied_fields(obj))
        return render(rt, self._write(rt, obj, None, fields, dry_run=is_dry_run(query)))

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
        for field in SYSTEM_METADATA | {"deletionTimestamp"}:
            meta.pop(field, None)
        if "status" in rt.subresources and rt.kind not in KEEP_STATUS_ON_CREATE:
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
                default_deployment(obj)
            case ("apps", "StatefulSet"):
                default_statefulset(obj)
            case ("apps", "ReplicaSet"):
                obj.setdefault("spec", {}).setdefault("replicas", 1)
            case ("", "Pod"):
                default_pod(obj)
            case ("", "Service"):
                self._default_service(obj)
            case ("", "Namespace"):
                obj.setdefault("status", {}).setdefault("phase", "Active")
            case ("apiextensions.k8s.io", "CustomResourceDefinition"):
                default_crd(obj)

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
        new = self._defaulted(rt, self._as_main_update(rt, old, candidate))
        fields = FieldManager(manager, "Update", applied_fields(candidate))
        return render(rt, self._write(rt, new, old, fields, dry_run=is_dry_run(query)))

    @staticmethod
    def _checked_body(rt: ResourceType, old: Obj, body: Any, name: str) -> Obj:
        if not isinstance(body, dict):
            raise ApiError(400, "the body of the request must be a JSON object")
        meta = meta_of(body)
        if meta.get("name") not in (None, name):
            why = f"the name of the object ({meta.get('name')}) does not match the name on the URL ({name})"
            raise ApiError(400, why)
        _check_version(rt, old, meta.get("resourceVersion"))
        return copy.deepcopy(body)

    @staticmethod
    def _as_main_update(rt: ResourceType, old: Obj, new: Obj) -> Obj:
        """A write to the object itself: identity is the server's and status belongs to /status."""
        meta = new.setdefault("metadata", {})
        old_meta = meta_of(old)
        identity = ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds")
        for field in identity:
            if field in old_meta:
                meta[field] = old_meta[field]
            else:
                meta.pop(field, None)
        meta.pop("managedFields", None)
        if old_meta.get("deletionTimestamp"):
            added = set(meta.get("finalizers") or []) - set(old_meta.get("finalizers") or [])
            if added:
                why = ("metadata.finalizers: Forbidden: no new finalizers can be added if the object is being "
                       f"deleted, found new finalizers {sorted(added)!r}")
                raise ApiError.invalid(rt, old_meta.get("name", ""), why)
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
        _check_version(rt, old, meta_of(candidate).get("resourceVersion"))  # a patch naming a stale version
        new = self._as_update(rt, old, candidate, subresource)
        patch_fields = field_set(body) if isinstance(body, dict) else {}
        fields = FieldManager(manager, "Update", patch_fields, subresource)
        return 200, render(rt, self._write(rt, new, old, fields, dry_run=is_dry_run(query)))

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
                accepted = ", ".join(t for t in PATCH_TYPES if not (rt.custom and t == STRATEGIC_PATCH))
                raise ApiError(
                    415, f"the body of the request was in an unknown format - accepted media types include: {accepted}"
                )
        except PatchError as exc:
            raise ApiError.invalid(rt, meta_of(target).get("name", ""), str(exc)) from exc
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
        if config["kind"] != rt.kind or meta_of(config).get("name") not in (None, name):
            raise ApiError(400, f"the apply configuration does not describe {rt.kind} {name!r}")
        old = self._store.get(rt.key, namespace, name)
        if old is None and subresource is not None:
            raise ApiError.not_found(rt, name)
        merged, applied = merged_configuration(old, name, config, manager)
        fields = FieldManager(manager, "Apply", applied, subresource)
        if old is None:
            new = self._new_object(rt, namespace, merged)
            return 201, render(rt, self._write(rt, new, None, fields, dry_run=is_dry_run(query)))
        _check_version(rt, old, meta_of(config).get("resourceVersion"))
        new = self._as_update(rt, old, merged, subresource)
        return 200, render(rt, self._write(rt, new, old, fields, dry_run=is_dry_run(query)))

    def _as_update(self, rt: ResourceType, old: Obj, candidate: Obj, subresource: str | None) -> Obj:
        if subresource == "status":
            return self._as_status_update(old, candidate)
        return self._defaulted(rt, self._as_main_update(rt, old, candidate))

    def _defaulted(self, rt: ResourceType, new: Obj) -> Obj:
        # The server defaults on every write, not only on create: a workload whose apply dropped
        # `replicas` reads back 1. (Other kinds' defaults assign identity, e.g. a clusterIP: create only.)
        if rt.group == "apps" and not rt.custom:
            self._apply_defaults(rt, new)
        return new

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
        if manager is not None:
            # Before the no-change check: an apply of values already there still makes its manager an
            # owner (how a field is handed over), though nothing else changes.
            manager.record(new, rt.api_version)
        if old is not None and _comparable(old) == _comparable(new):
            return old
        meta = new["metadata"]
        # Gone once nothing holds it: no finalizer left and no graceful termination still running.
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not meta.get("deletionGracePeriodSeconds") \
                and old is not None:
            return new if dry_run else self._remove(rt, new)
        if dry_run:
            meta["resourceVersion"] = meta_of(old or {}).get("resourceVersion", "")
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
            meta["creationTimestamp"] = utc_now()
            meta["generation"] = 1
        else:
            old_meta = meta_of(old)
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
    # Deletes (the garbage collector that finishes them lives in garbage.py)
    # ----------------------------------------------------------------------------------------------

    def _delete(
        self, rt: ResourceType, namespace: str | None, name: str, options: Any, query: Mapping[str, str]
    ) -> tuple[int, Obj]:
        old = self._require(rt, namespace, name)
        opts = options if isinstance(options, dict) else {}
        preconditions = opts.get("preconditions") or {}
        if preconditions.get("uid") not in (None, meta_of(old).get("uid")):
            raise ApiError.conflict(rt, name)
        _check_version(rt, old, preconditions.get("resourceVersion"))
        policy = propagation_policy(rt, name, opts, query)
        grace = grace_period(rt, name, opts, query)
        if is_dry_run(query):
            return 200, _success_status(rt, old)
        result = self._delete_object(rt, old, policy, grace)
        held = self._store.get(rt.key, namespace, name)
        if held is not None:
            # kube-apiserver answers 202 only for the legacy orphanDependents=false; otherwise 200 with
            # the object, its deletionTimestamp set, finalizers still holding it.
            return (202 if _orphan_dependents(opts, query) is False else 200), render(rt, held)
        if rt.custom or (rt.group, rt.kind) in RETURNS_DELETED_OBJECT:
            return 200, render(rt, result)
        return 200, _success_status(rt, result)

    def _delete_collection(self, rt: ResourceType, namespace: str | None, query: Mapping[str, str]) -> Obj:
        selector = request_selector(rt, namespace, query)
        policy = propagation_policy(rt, "", {}, query)
        grace = grace_period(rt, "", {}, query)
        doomed = [obj for obj in self._store.items(rt.key, namespace) if selector.matches(obj)]
        removed = [obj if is_dry_run(query) else self._delete_object(rt, obj, policy, grace) for obj in doomed]
        return {
            "apiVersion": rt.api_version,
            "kind": f"{rt.kind}List",
            "metadata": {"resourceVersion": str(self._store.resource_version)},
            "items": [render(rt, obj) for obj in removed],
        }

    def _delete_object(self, rt: ResourceType, obj: Obj, policy: str | None = None, grace: int | None = None) -> Obj:
        """Delete now, or mark for deletion while finalizers remain (as the API server does).

        Foreground and Orphan are finalizers the garbage collector works off (``foregroundDeletion``,
        ``orphan``); Background removes the object at once and leaves its dependents to the collector.
        A pod on a node is deleted gracefully: marked Terminating for its grace period, and removed
        when its kubelet has stopped it (the controller's kubelet deletes it again with grace 0)."""
        meta = meta_of(obj)
        period = _pod_grace(obj, grace) if (rt.group, rt.kind) == ("", "Pod") else 0
        if period > 0:
            return self._terminate_gracefully(rt, obj, period, policy)
        finalizers = [f for f in meta.get("finalizers") or [] if f not in (FOREGROUND_FINALIZER, ORPHAN_FINALIZER)]
        if policy == FOREGROUND:
            finalizers.append(FOREGROUND_FINALIZER)
        elif policy == ORPHAN:
            finalizers.append(ORPHAN_FINALIZER)
        elif policy is None:  # no policy asked for: a second delete keeps what the first one chose
            finalizers = list(meta.get("finalizers") or [])
        if not finalizers:
            return self._remove(rt, obj)
        if meta.get("deletionTimestamp") and finalizers == list(meta.get("finalizers") or []) \
                and not meta.get("deletionGracePeriodSeconds"):
            return obj
        marked = copy.deepcopy(obj)
        marked["metadata"]["finalizers"] = finalizers
        marked["metadata"].setdefault("deletionTimestamp", utc_now())
        # 0 also when a pod's graceful termination ends (its kubelet's delete): only finalizers hold it now
        marked["metadata"]["deletionGracePeriodSeconds"] = 0
        written = self._write(rt, marked, obj)
        self._gc_soon()
        return written

    def _terminate_gracefully(self, rt: ResourceType, obj: Obj, period: int, policy: str | None) -> Obj:
        meta = meta_of(obj)
        current = meta.get("deletionGracePeriodSeconds")
        if meta.get("deletionTimestamp") and current is not None and int(current) <= period:
            return obj  # already terminating, as soon or sooner: a repeated delete changes nothing
        marked = copy.deepcopy(obj)
        finalizers = list(meta.get("finalizers") or [])
        extra = FOREGROUND_FINALIZER if policy == FOREGROUND else ORPHAN_FINALIZER if policy == ORPHAN else None
        if extra and extra not in finalizers:
            finalizers.append(extra)
        if finalizers:
            marked["metadata"]["finalizers"] = finalizers
        # kube-apiserver sets the timestamp to when the grace period ends, not to when it was asked.
        marked["metadata"]["deletionTimestamp"] = utc_after(period)
        marked["metadata"]["deletionGracePeriodSeconds"] = period
        return self._write(rt, marked, obj)

    def _remove(self, rt: ResourceType, obj: Obj) -> Obj:
        final = self._store.remove(rt.key, obj)
        self._after_remove(rt, final)
        return final

    def _after_remove(self, rt: ResourceType, obj: Obj) -> None:
        """What the namespace and CRD controllers do after a delete; dependents are the collector's."""
        if (rt.group, rt.kind) == ("apiextensions.k8s.io", "CustomResourceDefinition"):
            self._unregister_crd(obj)
        elif (rt.group, rt.kind) == ("", "Namespace"):
            self._delete_where(lambda other: meta_of(other).get("namespace") == meta_of(obj)["name"])
        self._gc_soon()

    def _delete_where(self, doomed: Callable[[Obj], bool]) -> None:
        for key in self._store.resource_keys():
            rt = self._type_for_key(key)
            if rt is None:
                continue
            for obj in self._store.items(key):
                current = self._store.get(key, meta_of(obj).get("namespace"), meta_of(obj)["name"])
                if current is not None and doomed(current):
                    self._delete_object(rt, current)

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


def _orphan_dependents(options: Mapping[str, Any], query: Mapping[str, str]) -> bool | None:
    value = options.get("orphanDependents", query.get("orphanDependents"))
    if value is None or isinstance(value, bool):
        return value
    return str(value).lower() == "true"


def grace_period(rt: ResourceType, name: str, options: Mapping[str, Any], query: Mapping[str, str]) -> int | None:
    """DeleteOptions.gracePeriodSeconds (body or query); None when the request names none."""
    value = options.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
    if value is None:
        return None
    try:
        seconds = int(value)
    except (TypeError, ValueError):
        raise ApiError.invalid(rt, name, f'gracePeriodSeconds: Invalid value: "{value}"') from None
    return max(seconds, 0)


def _pod_grace(pod: Mapping[str, Any], asked: int | None) -> int:
    """The grace a pod's deletion gets: none for a pod no kubelet runs (unscheduled or finished),
    else what the request asked for, else the pod's terminationGracePeriodSeconds (default 30)."""
    spec = pod.get("spec") or {}
    if not spec.get("nodeName") or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    if asked is not None:
        return asked
    value = spec.get("terminationGracePeriodSeconds")
    return 30 if value is None else int(value)


def propagation_policy(
    rt: ResourceType, name: str, options: Mapping[str, Any], query: Mapping[str, str]
) -> str | None:
    """The DeleteOptions' policy (body or query), the legacy orphanDependents mapped onto it; None
    when the request names none (the object's own deletion finalizers, else Background, decide)."""
    policy = options.get("propagationPolicy") or query.get("propagationPolicy")
    orphan = _orphan_dependents(options, query)
    if policy and orphan is not None:
        raise ApiError.invalid(rt, name, "propagationPolicy: Invalid value: orphanDependents and "
                                         "deletionPropagation cannot be both set")
    if policy and policy not in (FOREGROUND, BACKGROUND, ORPHAN):
        raise ApiError.invalid(rt, name, f'propagationPolicy: Unsupported value: "{policy}": supported values: '
                                         '"Foreground", "Background", "Orphan"')
    if orphan is not None:
        return ORPHAN if orphan else BACKGROUND
    return policy or None


def _success_status(rt: ResourceType, obj: Mapping[str, Any]) -> Obj:
    meta = meta_of(obj)
    details = {**rt.details(meta.get("name", "")), "uid": meta.get("uid")}
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details}


def _check_version(rt: ResourceType, old: Obj, expected: Any) -> None:
    """Optimistic concurrency: a write naming a resourceVersion must name the current one."""
    if expected not in (None, "") and str(expected) != meta_of(old).get("resourceVersion"):
        raise ApiError.conflict(rt, meta_of(old).get("name", ""))


def _desired_state(obj: Mapping[str, Any]) -> dict[str, Any]:
    """What metadata.generation tracks: everything except metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def _comparable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object as a no-op write leaves it: resourceVersion and managedFields' timestamps aside."""
    meta = {k: v for k, v in meta_of(obj).items() if k != "resourceVersion"}
    if "managedFields" in meta:
        meta["managedFields"] = [{k: v for k, v in e.items() if k != "time"} for e in meta["managedFields"]]
    return {**obj, "metadata": meta}
