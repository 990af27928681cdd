"""Deployment, ReplicaSet and StatefulSet controllers: pods from templates, rollouts, and the status
(replica counts, Available/Progressing conditions) that rollout watchers read."""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from bot.sandbox.controller.base import ControllerBase
from bot.sandbox.objects import (
    Obj,
    is_active,
    is_deleting,
    is_ready,
    label_of,
    make_condition,
    meta_of,
    owned_by,
    owner_ref,
    random_suffix,
    safe_hash,
    status_of,
)

_REVISION: Final = "deployment.kubernetes.io/revision"


def _replicas(obj: Mapping[str, Any]) -> int:
    value = (obj.get("spec") or {}).get("replicas")
    return 1 if value is None else int(value)


def _count(obj: Mapping[str, Any], field: str) -> int:
    return int(status_of(obj).get(field) or 0)


def _omit_zero(status: Obj, keep: Iterable[str] = ()) -> Obj:
    """Kubernetes omits zero-valued counters (``omitempty``); clients then read None."""
    kept = set(keep)
    return {k: v for k, v in status.items() if k in kept or v not in (0, None, [], "")}


def _int_or_percent(value: Any, total: int, round_up: bool) -> int:
    if isinstance(value, str) and value.endswith("%"):
        exact = total * int(value[:-1] or 0) / 100
        return math.ceil(exact) if round_up else math.floor(exact)
    return int(value or 0)


class Workloads(ControllerBase):
    """The workload controllers of kube-controller-manager, simplified."""

    # ----------------------------------------------------------------------------------------------
    # Deployments
    # ----------------------------------------------------------------------------------------------

    def _sync_deployment(self, namespace: str, name: str) -> None:
        deployment = self.api.get("apps/v1", "Deployment", namespace, name)
        if deployment is None or is_deleting(deployment):
            return
        uid = meta_of(deployment)["uid"]
        owned = [rs for rs in self.api.list("apps/v1", "ReplicaSet", namespace) if owned_by(rs, uid)]
        template_hash = safe_hash((deployment.get("spec") or {}).get("template") or {})
        current = next((rs for rs in owned if label_of(rs, "pod-template-hash") == template_hash), None)
        revision = self._next_revision(owned, current)
        if current is None:
            current = self._create_replicaset(deployment, template_hash, revision)
        elif revision is not None:
            current = self._annotate_revision(current, revision)
        old = [rs for rs in owned if meta_of(rs)["name"] != meta_of(current)["name"]]
        if not (deployment.get("spec") or {}).get("paused"):
            current, old = self._roll(deployment, current, old)
        self._prune_history(deployment, old)
        self._write_deployment_status(deployment, current, old)

    @staticmethod
    def _revision(rs: Mapping[str, Any]) -> int:
        return int((meta_of(rs).get("annotations") or {}).get(_REVISION) or 0)

    def _next_revision(self, owned: list[Obj], current: Obj | None) -> int | None:
        """The revision the current ReplicaSet must carry, or None when it already has the newest."""
        newest = max((self._revision(rs) for rs in owned), default=0)
        if current is not None and self._revision(current) == newest and newest > 0:
            return None
        return newest + 1

    def _annotate_revision(self, rs: Obj, revision: int) -> Obj:
        rs.setdefault("metadata", {}).setdefault("annotations", {})[_REVISION] = str(revision)
        return self.api.put(rs)

    def _create_replicaset(self, deployment: Obj, template_hash: str, revision: int | None) -> Obj:
        spec = deployment.get("spec") or {}
        meta = meta_of(deployment)
        template = copy.deepcopy(spec.get("template") or {})
        labels = {**((template.get("metadata") or {}).get("labels") or {}), "pod-template-hash": template_hash}
        template.setdefault("metadata", {})["labels"] = labels
        selector = copy.deepcopy(spec.get("selector") or {})
        selector["matchLabels"] = {**(selector.get("matchLabels") or {}), "pod-template-hash": template_hash}
        desired = _replicas(deployment)
        replicaset: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{template_hash}",
                "namespace": meta.get("namespace"),
                "labels": labels,
                "annotations": {
                    _REVISION: str(revision or 1),
                    "deployment.kubernetes.io/desired-replicas": str(desired),
                    "deployment.kubernetes.io/max-replicas": str(desired + self._max_surge(deployment)),
                },
                "ownerReferences": [owner_ref(deployment)],
            },
            "spec": {"replicas": 0, "selector": selector, "template": template},
        }
        if spec.get("minReadySeconds"):
            replicaset["spec"]["minReadySeconds"] = spec["minReadySeconds"]
        return self.api.put(replicaset)

    @staticmethod
    def _max_surge(deployment: Mapping[str, Any]) -> int:
        rolling = ((deployment.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
        return _int_or_percent(rolling.get("maxSurge", "25%"), _replicas(deployment), round_up=True)

    @staticmethod
    def _max_unavailable(deployment: Mapping[str, Any]) -> int:
        strategy = (deployment.get("spec") or {}).get("strategy") or {}
        if strategy.get("type") == "Recreate":
            return 0
        rolling = strategy.get("rollingUpdate") or {}
        return _int_or_percent(rolling.get("maxUnavailable", "25%"), _replicas(deployment), round_up=False)

    def _roll(self, deployment: Obj, current: Obj, old: list[Obj]) -> tuple[Obj, list[Obj]]:
        """Simplified rollout: new pods first, old ReplicaSets scaled to zero once they are ready.

        Recreate does the opposite: old pods go first, new ones start when they are gone.
        """
        desired = _replicas(deployment)
        recreate = ((deployment.get("spec") or {}).get("strategy") or {}).get("type") == "Recreate"
        if recreate or _count(current, "readyReplicas") >= desired:
            old = [self._scale_replicaset(deployment, rs, 0) for rs in old]
        target = 0 if recreate and any(_count(rs, "replicas") for rs in old) else desired
        return self._scale_replicaset(deployment, current, target), old

    def _scale_replicaset(self, deployment: Obj, rs: Obj, replicas: int) -> Obj:
        before = _replicas(rs)
        if before == replicas:
            return rs
        rs["spec"]["replicas"] = replicas
        annotations = rs.setdefault("metadata", {}).setdefault("annotations", {})
        annotations["deployment.kubernetes.io/desired-replicas"] = str(_replicas(deployment))
        updated = self.api.put(rs)
        direction = "up" if replicas > before else "down"
        message = f"Scaled {direction} replica set {meta_of(rs)['name']} from {before} to {replicas}"
        self._recorder.record(deployment, "Normal", "ScalingReplicaSet", message, "deployment-controller")
        return updated

    def _prune_history(self, deployment: Obj, old: list[Obj]) -> None:
        limit = (deployment.get("spec") or {}).get("revisionHistoryLimit", 10)
        idle = sorted((rs for rs in old if _replicas(rs) == 0 and not _count(rs, "replicas")), key=self._revision)
        for rs in idle[: max(len(idle) - int(limit), 0)]:
            self.api.delete("apps/v1", "ReplicaSet", meta_of(rs).get("namespace"), meta_of(rs)["name"])

    def _write_deployment_status(self, deployment: Obj, current: Obj, old: list[Obj]) -> None:
        every = [current, *old]
        desired = _replicas(deployment)
        available = sum(_count(rs, "availableReplicas") for rs in every)
        counts = {
            "replicas": sum(_count(rs, "replicas") for rs in every),
            "updatedReplicas": _count(current, "replicas"),
            "readyReplicas": sum(_count(rs, "readyReplicas") for rs in every),
            "availableReplicas": available,
            "unavailableReplicas": max(sum(_replicas(rs) for rs in every) - available, 0),
        }
        complete = (
            counts["updatedReplicas"] == desired
            and _count(current, "availableReplicas") >= desired
            and not any(_count(rs, "replicas") for rs in old)
        )
        previous = status_of(deployment).get("conditions") or []
        conditions = [
            self._available_condition(deployment, previous, available, desired),
            self._progressing_condition(deployment, previous, current, counts, complete),
        ]
        status = _omit_zero(
            {"observedGeneration": meta_of(deployment).get("generation", 1), **counts, "conditions": conditions}
        )
        updated = copy.deepcopy(deployment)
        updated["status"] = status
        updated["metadata"].setdefault("annotations", {})[_REVISION] = str(self._revision(current) or 1)
        if updated != deployment:
            self.api.put(updated)

    def _available_condition(self, deployment: Obj, previous: list[Obj], available: int, desired: int) -> Obj:
        if available >= desired - self._max_unavailable(deployment):
            reason, message = "MinimumReplicasAvailable", "Deployment has minimum availability."
            return make_condition(previous, "Available", "True", reason, message)
        reason, message = "MinimumReplicasUnavailable", "Deployment does not have minimum availability."
        return make_condition(previous, "Available", "False", reason, message)

    def _progressing_condition(
        self, deployment: Obj, previous: list[Obj], current: Obj, counts: Mapping[str, int], complete: bool
    ) -> Obj:
        rs_name = meta_of(current)["name"]
        if complete:
            message = f'ReplicaSet "{rs_name}" has successfully progressed.'
            return make_condition(previous, "Progressing", "True", "NewReplicaSetAvailable", message)
        uid = meta_of(deployment)["uid"]
        signature = (rs_name, *counts.values())
        now = time.monotonic()
        since = self._progress.get(uid, (None, now))
        if since[0] != signature:
            since = (signature, now)
            self._progress[uid] = since
        deadline = float((deployment.get("spec") or {}).get("progressDeadlineSeconds", 600))
        if now - since[1] > deadline:
            message = f'ReplicaSet "{rs_name}" has timed out progressing.'
            return make_condition(previous, "Progressing", "False", "ProgressDeadlineExceeded", message)
        self._check_deadline_later(deployment, deadline - (now - since[1]) + 0.01)
        message = f'ReplicaSet "{rs_name}" is progressing.'
        return make_condition(previous, "Progressing", "True", "ReplicaSetUpdated", message)

    def _check_deadline_later(self, deployment: Obj, delay: float) -> None:
        """One pending deadline check per Deployment, however often it reconciles meanwhile."""
        meta = meta_of(deployment)
        key = ("Deployment", meta.get("namespace") or "", meta["name"])
        if self._loop is None or key in self._deadline_checks:
            return

        def fire() -> None:
            self._deadline_checks.pop(key, None)
            self._enqueue(key)

        self._deadline_checks[key] = self._loop.call_later(delay, fire)

    # ----------------------------------------------------------------------------------------------
    # ReplicaSets and StatefulSets
    # ----------------------------------------------------------------------------------------------

    def _owned_pods(self, namespace: str, owner_uid: str) -> list[Obj]:
        return [p for p in self.api.list("v1", "Pod", namespace) if owned_by(p, owner_uid) and is_active(p)]

    def _new_pod(self, owner: Obj, name: str, extra_labels: Mapping[str, str]) -> Obj:
        template = (owner.get("spec") or {}).get("template") or {}
        template_meta = template.get("metadata") or {}
        metadata: Obj = {
            "name": name,
            "namespace": meta_of(owner).get("namespace"),
            "labels": {**(template_meta.get("labels") or {}), **extra_labels},
            "ownerReferences": [owner_ref(owner)],
        }
        if template_meta.get("annotations"):
            metadata["annotations"] = dict(template_meta["annotations"])
        spec = copy.deepcopy(template.get("spec") or {})
        return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}

    def _sync_replicaset(self, namespace: str, name: str) -> None:
        rs = self.api.get("apps/v1", "ReplicaSet", namespace, name)
        if rs is None or is_deleting(rs):
            return
        pods = self._owned_pods(namespace, meta_of(rs)["uid"])
        desired = _replicas(rs)
        for _ in range(desired - len(pods)):
            pod_name = self._free_pod_name(namespace, name)
            pods.append(self.api.put(self._new_pod(rs, pod_name, {})))
            self._recorder.record(rs, "Normal", "SuccessfulCreate", f"Created pod: {pod_name}", "replicaset-controller")
        for pod in self._deletion_order(pods)[: max(len(pods) - desired, 0)]:
            self.api.delete("v1", "Pod", namespace, meta_of(pod)["name"])
            pods.remove(pod)
            message = f"Deleted pod: {meta_of(pod)['name']}"
            self._recorder.record(rs, "Normal", "SuccessfulDelete", message, "replicaset-controller")
        ready = sum(1 for pod in pods if is_ready(pod))
        status = _omit_zero(
            {
                "replicas": len(pods),
                "fullyLabeledReplicas": len(pods),
                "readyReplicas": ready,
                "availableReplicas": ready,
                "observedGeneration": meta_of(rs).get("generation", 1),
            },
            keep=("replicas",),
        )
        if status != status_of(rs):
            self.api.put({**rs, "status": status})

    def _free_pod_name(self, namespace: str, prefix: str) -> str:
        while True:
            name = f"{prefix}-{random_suffix()}"
            if self.api.get("v1", "Pod", namespace, name) is None:
                return name

    @staticmethod
    def _deletion_order(pods: list[Obj]) -> list[Obj]:
        """Which pods a scale-down removes first: unscheduled, then pending, then not ready, newest."""
        phase_rank = {"Pending": 0, "Unknown": 1, "Running": 2}
        by_age = sorted(pods, key=lambda p: (meta_of(p).get("creationTimestamp", ""), meta_of(p)["name"]))
        newest_first = list(reversed(by_age))
        return sorted(
            newest_first,
            key=lambda p: (
                bool((p.get("spec") or {}).get("nodeName")),
                phase_rank.get(status_of(p).get("phase", "Pending"), 0),
                is_ready(p),
            ),
        )

    def _sync_statefulset(self, namespace: str, name: str) -> None:
        sts = self.api.get("apps/v1", "StatefulSet", namespace, name)
        if sts is None or is_deleting(sts):
            return
        spec = sts.get("spec") or {}
        revision = f"{name}-{safe_hash(spec.get('template') or {})}"
        pods = {meta_of(p)["name"]: p for p in self._owned_pods(namespace, meta_of(sts)["uid"])}
        desired = _replicas(sts)
        ordinal = lambda pod_name: int(pod_name.rsplit("-", 1)[-1])  # noqa: E731
        for pod_name in sorted(pods, key=ordinal, reverse=True):
            if ordinal(pod_name) >= desired:
                self.api.delete("v1", "Pod", namespace, pod_name)
                del pods[pod_name]
        self._fill_statefulset(sts, pods, revision)
        self._update_statefulset_pods(sts, pods, revision)
        self._write_statefulset_status(sts, pods, revision)

    def _fill_statefulset(self, sts: Obj, pods: dict[str, Obj], revision: str) -> None:
        """Create missing ordinals; OrderedReady waits for each pod to be ready before the next."""
        name = meta_of(sts)["name"]
        parallel = (sts.get("spec") or {}).get("podManagementPolicy") == "Parallel"
        for index in range(_replicas(sts)):
            pod_name = f"{name}-{index}"
            if pod_name not in pods:
                labels = {
                    "controller-revision-hash": revision,
                    "statefulset.kubernetes.io/pod-name": pod_name,
                    "apps.kubernetes.io/pod-index": str(index),
                }
                pod = self._new_pod(sts, pod_name, labels)
                pod["spec"]["hostname"] = pod_name
                if service := (sts.get("spec") or {}).get("serviceName"):
                    pod["spec"]["subdomain"] = service
                pods[pod_name] = self.api.put(pod)
                message = f"create Pod {pod_name} in StatefulSet {name} successful"
                self._recorder.record(sts, "Normal", "SuccessfulCreate", message, "statefulset-controller")
                if not parallel:
                    return
            elif not parallel and not is_ready(pods[pod_name]):
                return

    def _update_statefulset_pods(self, sts: Obj, pods: dict[str, Obj], revision: str) -> None:
        """Rolling update: replace the highest stale ordinal once every pod is ready."""
        if len(pods) < _replicas(sts) or not all(is_ready(p) for p in pods.values()):
            return
        stale = [n for n, p in pods.items() if label_of(p, "controller-revision-hash") != revision]
        if stale:
            victim = max(stale, key=lambda n: int(n.rsplit("-", 1)[-1]))
            self.api.delete("v1", "Pod", meta_of(sts).get("namespace"), victim)
            del pods[victim]

    def _write_statefulset_status(self, sts: Obj, pods: dict[str, Obj], revision: str) -> None:
        updated = [p for p in pods.values() if label_of(p, "controller-revision-hash") == revision]
        ready = sum(1 for p in pods.values() if is_ready(p))
        settled = len(updated) == len(pods) == _replicas(sts)
        current_revision = revision if settled else status_of(sts).get("currentRevision", revision)
        current = [p for p in pods.values() if label_of(p, "controller-revision-hash") == current_revision]
        status = _omit_zero(
            {
                "observedGeneration": meta_of(sts).get("generation", 1),
                "replicas": len(pods),
                "readyReplicas": ready,
                "currentReplicas": len(current),
                "updatedReplicas": len(updated),
                "availableReplicas": ready,
                "currentRevision": current_revision,
                "updateRevision": revision,
                "collisionCount": 0,
            },
            keep=("replicas", "availableReplicas", "collisionCount"),
        )
        if status != status_of(sts):
            self.api.put({**sts, "status": status})
