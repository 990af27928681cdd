"""What every part of the controller shares: the knobs, the per-object bookkeeping and the work
queue the reconcile loop drains."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

from bot.sandbox.controller.events import EventRecorder
from bot.sandbox.objects import ClusterAPI

Key = tuple[str, str, str]  # (kind, namespace, name)


class ControllerBase:
    """The controller's state; :class:`~bot.sandbox.controller.loop.Controller` documents the knobs."""

    def __init__(self, api: ClusterAPI) -> None:
        self.api = api
        self._enabled = True
        self.schedule_delay = 0.05
        self.ready_delay = 0.1
        self.restart_backoff = 0.5
        # seconds a container takes to exit after SIGTERM (capped by the pod's grace period); a model
        # server that drains its requests first takes longer
        self.termination_delay = 0.2
        self.failing_images: dict[str, str] = {}
        self.image_logs: dict[str, str] = {}
        self.virtual_node = "sandbox-node"
        # Karpenter (bot/sandbox/controller/karpenter.py), active when the cluster has NodePools
        self.launch_delay = 0.2
        self.register_delay = 0.3
        self.ice_retry = 2.0
        self.insufficient_capacity: set[str] = set()  # "g5.xlarge" (every zone) or "g5.xlarge/us-west-2a"
        # Run the LeaderWorkerSet and RayService stand-ins (bot/sandbox/operators.py); off by default so
        # a test can own such objects' status itself.
        self.custom_operators = False
        self._recorder = EventRecorder(api)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: dict[Key, None] = {}  # an ordered set: each key reconciles once per wake-up
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self._timers: set[asyncio.TimerHandle] = set()
        self._deadline_checks: dict[Key, asyncio.TimerHandle] = {}
        self._bound_at: dict[str, float] = {}
        self._stopping: set[str] = set()  # uids of Terminating pods whose kubelet stop is scheduled
        self._next_restart: dict[str, float] = {}
        self._progress: dict[str, tuple[tuple[Any, ...], float]] = {}
        self._pod_ips = ipaddress.ip_network("10.244.0.0/16").hosts()
        self._nominated: dict[str, str] = {}  # pod uid -> the NodeClaim Karpenter made for it
        self._claim_since: dict[str, float] = {}  # NodeClaim uid -> when its current lifecycle step began
        self._pool_specs: dict[str, dict[str, Any]] = {}  # NodePool name -> the spec last seen

    @property
    def event_ttl(self) -> float:
        return self._recorder.ttl

    @event_ttl.setter
    def event_ttl(self, seconds: float) -> None:
        self._recorder.ttl = seconds

    def _enqueue(self, key: Key) -> None:
        self._queue[key] = None
        if self._wake is not None:
            self._wake.set()

    def _later(self, delay: float, key: Key) -> None:
        loop = self._loop
        if loop is None:
            return

        def fire() -> None:
            self._timers.discard(handle)
            self._enqueue(key)

        handle = loop.call_later(max(delay, 0.0), fire)
        self._timers.add(handle)
