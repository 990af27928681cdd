"""The controller as the emulator drives it: triggers from committed writes, and one loop that
reconciles each queued key with the part of the controller that owns it."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, Final

from bot.sandbox import operators
from bot.sandbox.controller import karpenter
from bot.sandbox.controller.base import Key
from bot.sandbox.controller.kubelet import Kubelet
from bot.sandbox.controller.scheduler import Scheduler
from bot.sandbox.controller.workloads import Workloads
from bot.sandbox.objects import meta_of

log = logging.getLogger(__name__)

_SCHEDULER: Final[Key] = ("Scheduler", "", "")


class Controller(Workloads, Scheduler, Kubelet):
    """Deployment, ReplicaSet and StatefulSet controllers, a scheduler, a kubelet and Karpenter, simplified.

    Knobs (set them before or after ``start``):
      ``schedule_delay``  seconds between a pod's creation and the scheduler's pass over it
      ``ready_delay``     seconds a bound pod spends in ContainerCreating before it runs
      ``restart_backoff`` base seconds between restarts of crash-looping containers (doubles, capped)
      ``termination_delay``  seconds a deleted pod's containers take to exit (capped by its grace
                          period); until then the pod is Terminating, then its kubelet removes it
      ``failing_images``  image -> "ImagePullBackOff" | "CrashLoopBackOff" | "OOMKilled"
      ``image_logs``      image -> text served by ``pods/log``
      ``virtual_node``    node name used when the cluster has no Node objects (capacity unlimited)
      ``event_ttl``       seconds an Event lives after its last occurrence (kube-apiserver: 1 hour)
      ``enabled``         False freezes the cluster: writes are stored but nothing reacts
      ``launch_delay``    seconds from a NodeClaim's creation to its launch (Karpenter: CreateFleet)
      ``register_delay``  seconds from launch until its Node registers and initializes
      ``insufficient_capacity``  offerings EC2 has no capacity for: "g5.xlarge" (every zone) or
                          "g5.xlarge/us-west-2a"; a NodeClaim with no other offering fails to launch (ICE)
      ``ice_retry``       seconds an ICE'd NodeClaim stays (Launched=False) before Karpenter deletes it
                          and tries again
    """

    # ----------------------------------------------------------------------------------------------
    # Lifecycle and triggers
    # ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start reconciling; call on the emulator's running loop."""
        self._loop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._task = self._loop.create_task(self._run(), name="kube-emulator-controller")
        self._resync()

    async def aclose(self) -> None:
        """Stop reconciling; call on the emulator's loop before it closes."""
        for timer in [*self._timers, *self._deadline_checks.values()]:
            timer.cancel()
        self._timers.clear()
        self._deadline_checks.clear()
        self._loop = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def enabled(self) -> bool:
        return self._enabled

    @enabled.setter
    def enabled(self, value: bool) -> None:
        """Pause or resume; resuming catches up with every change made while paused."""
        was, self._enabled = self._enabled, value
        if value and not was and self._loop is not None:
            self._loop.call_soon_threadsafe(self._resync)

    def notify(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """Called by the emulator on its loop for every committed change."""
        if self._loop is None or not self.enabled:
            return
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        meta = meta_of(obj)
        namespace, name = meta.get("namespace") or "", meta.get("name", "")
        workload = api_version == "apps/v1" and kind in ("Deployment", "ReplicaSet", "StatefulSet")
        custom = self.custom_operators and operators.KINDS.get(str(kind)) == api_version  # LWS, RayService
        if (workload or custom) and event_type != "DELETED":
            self._enqueue((str(kind), namespace, name))
        if api_version in ("apps/v1", "v1") and kind in ("ReplicaSet", "Pod"):
            owners = ("Deployment", "ReplicaSet", "StatefulSet", *(operators.KINDS if self.custom_operators else ()))
            for ref in meta.get("ownerReferences") or []:
                if ref.get("controller") and ref.get("kind") in owners:
                    self._enqueue((ref["kind"], namespace, ref.get("name", "")))
        if api_version == "v1" and kind == "Pod":
            self._on_pod(event_type, obj)
        if api_version == "v1" and kind == "Node":
            self._enqueue(_SCHEDULER)
        if api_version == karpenter.API and kind == "NodeClaim" and event_type == "DELETED":
            self._enqueue(_SCHEDULER)  # an ICE'd NodeClaim is gone: its pods get another try
        if api_version == karpenter.API and kind == "NodePool" and event_type != "DELETED" \
                and (obj.get("spec") or {}) != self._pool_specs.get(name):
            self._pool_specs[name] = dict(obj.get("spec") or {})
            self._enqueue(_SCHEDULER)  # a changed NodePool (limits raised, a family added) may fit them now
        if event_type == "DELETED":
            self._forget(meta.get("uid", ""))

    def _on_pod(self, event_type: str, pod: Mapping[str, Any]) -> None:
        meta = meta_of(pod)
        if event_type == "ADDED" and not (pod.get("spec") or {}).get("nodeName"):
            self._later(self.schedule_delay, _SCHEDULER)
        elif event_type == "ADDED":
            self._later(self.ready_delay, ("Pod", meta.get("namespace") or "", meta.get("name", "")))
        elif event_type == "DELETED":
            self._enqueue(_SCHEDULER)  # capacity freed: pending pods may fit now
        elif meta.get("deletionTimestamp") and (pod.get("spec") or {}).get("nodeName") \
                and meta.get("uid") not in self._stopping:
            self._stopping.add(meta.get("uid", ""))
            grace = float(meta.get("deletionGracePeriodSeconds") or 0)
            self._later(min(self.termination_delay, grace), ("PodStop", meta.get("namespace") or "", meta["name"]))

    def _resync(self) -> None:
        for kind in ("Deployment", "ReplicaSet", "StatefulSet"):
            for obj in self.api.list("apps/v1", kind):
                self._enqueue((kind, meta_of(obj).get("namespace") or "", meta_of(obj)["name"]))
        for kind, api_version in operators.KINDS.items() if self.custom_operators else ():
            try:
                found = self.api.list(api_version, kind)
            except ValueError:  # its CRD is not installed: no such operator in this cluster
                continue
            for obj in found:
                self._enqueue((kind, meta_of(obj).get("namespace") or "", meta_of(obj)["name"]))
        for pod in self.api.list("v1", "Pod"):
            if (pod.get("spec") or {}).get("nodeName"):
                kind = "PodStop" if meta_of(pod).get("deletionTimestamp") else "Pod"
                self._enqueue((kind, meta_of(pod).get("namespace") or "", meta_of(pod)["name"]))
        for claim in self._claims():
            self._enqueue(("NodeClaim", "", meta_of(claim)["name"]))
        self._enqueue(_SCHEDULER)

    def _forget(self, uid: str) -> None:
        self._bound_at.pop(uid, None)
        self._stopping.discard(uid)
        self._next_restart.pop(uid, None)
        self._progress.pop(uid, None)
        self._nominated.pop(uid, None)
        self._claim_since.pop(uid, None)
        self._recorder.forget(uid)

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                key = next(iter(self._queue))
                del self._queue[key]
                self._reconcile(key)
                await asyncio.sleep(0)  # let requests in between reconciles

    def _reconcile(self, key: Key) -> None:
        if not self.enabled:
            return
        kind, namespace, name = key
        handlers: dict[str, Callable[[str, str], None]] = {
            "Deployment": self._sync_deployment,
            "ReplicaSet": self._sync_replicaset,
            "StatefulSet": self._sync_statefulset,
            "Pod": self._sync_pod,
            "PodStop": self._stop_pod,
            "NodeClaim": self._sync_nodeclaim,
            "Scheduler": lambda _ns, _name: self._schedule_pending(),
            **{kind: functools.partial(operators.sync, self.api, kind) for kind in operators.KINDS},
        }
        try:
            handlers[kind](namespace, name)
        except Exception:  # the emulator must outlive any bug here; the next trigger retries
            log.exception("kube emulator controller failed to reconcile %s %s/%s", kind, namespace, name)
