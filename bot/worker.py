"""The worker: claims approved operations from the database and runs them, one thread each.

Several bot processes may share one database. Claiming is a conditional UPDATE, so an operation
runs in exactly one of them. Each running operation carries a lease that its worker renews; an
operation whose lease ran out belongs to a process that died, and only then is it declared
`interrupted` (never one that a live process is still running).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from slack_sdk import WebClient

from bot.clusters import Clusters
from bot.config import Config
from bot.logs import operation_context
from bot.models import Operation
from bot.storage import FAILED, SUCCEEDED, Store
from handlers import cards
from ops.errors import OpsError

log = logging.getLogger(__name__)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str


Executor = Callable[[Operation, Config, Clusters, Progress], Outcome]


def run_scale(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    cluster = config.cluster(op.cluster)
    if cluster is None:
        return Outcome(False, f"cluster `{op.cluster}` is no longer configured")
    result = clusters.get(cluster).scale(op.target, op.namespace, int(op.params["replicas"]),
                                         timeout=cluster.rollout_timeout_seconds, progress=progress)
    return Outcome(result.ok, result.message)


EXECUTORS: dict[str, Executor] = {"scale": run_scale}


class Worker:
    def __init__(self, store: Store, config: Config, clusters: Clusters, client: WebClient,
                 *, max_parallel: int = 4) -> None:
        self.store = store
        self.config = config
        self.clusters = clusters
        self.client = client
        self.id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        ops_cfg = config.operations
        self.lease = timedelta(seconds=ops_cfg.lease_seconds)
        self.poll = ops_cfg.poll_seconds
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="op")
        self._slots = threading.Semaphore(max_parallel)
        self._running: set[int] = set()
        self._running_lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> None:
        for target, name in ((self._loop, "worker"), (self._heartbeat, "heartbeat")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def wake(self) -> None:
        self._wake.set()

    @property
    def busy(self) -> bool:
        with self._running_lock:
            return bool(self._running)

    # ---- the loop ------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the database may be briefly away; keep the loop alive
                log.exception("worker tick failed")
            self._wake.wait(self.poll)
            self._wake.clear()

    def tick(self) -> None:
        """One round: expire, recover, then claim as many operations as there are free slots."""
        for op in self.store.expire_due():
            cards.refresh_card(self.client, self.store, op.id, sandbox=self.config.sandbox)
            cards.post_in_thread(self.client, op, "Expired without enough approvals; nothing was changed.")
        for op in self.store.interrupt_abandoned(self.id):
            cards.refresh_card(self.client, self.store, op.id, sandbox=self.config.sandbox)
            cards.post_in_thread(self.client, op, ":warning: Interrupted: the bot process running this "
                                 "stopped before it finished. It was not re-run; check the object's "
                                 "state and ask again if needed.")
        while self._slots.acquire(blocking=False):
            claimed, queued = self.store.claim(self.id, self.lease)
            if queued is not None:
                self._slots.release()
                cards.refresh_card(self.client, self.store, queued.id, sandbox=self.config.sandbox)
                cards.post_in_thread(self.client, queued, f":clock3: Queued: {queued.result}.")
                continue
            if claimed is None:
                self._slots.release()
                return
            with self._running_lock:
                self._running.add(claimed.id)
            self._pool.submit(self._run, claimed)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease.total_seconds() / 3):
            with self._running_lock:
                ids = list(self._running)
            try:
                self.store.renew(ids, self.id, self.lease)
            except Exception:
                log.exception("lease renewal failed")

    def _run(self, op: Operation) -> None:
        with operation_context(op.id, op.requested_by):
            self._run_in_context(op)

    def _run_in_context(self, op: Operation) -> None:
        try:
            cards.refresh_card(self.client, self.store, op.id, sandbox=self.config.sandbox)

            def progress(text: str) -> None:
                cards.post_in_thread(self.client, op, text)

            executor = EXECUTORS.get(op.kind)
            try:
                if executor is None:
                    outcome = Outcome(False, f"this bot version cannot run `{op.kind}` operations")
                else:
                    outcome = executor(op, self.config, self.clusters, progress)
            except OpsError as exc:
                outcome = Outcome(False, exc.message)
            except Exception:
                ref = uuid.uuid4().hex[:8]
                log.exception("operation %s failed (ref %s)", op.id, ref)
                outcome = Outcome(False, f"internal error (ref {ref}); the bot's logs have the details")
            status = SUCCEEDED if outcome.ok else FAILED
            if self.store.finish(op, self.id, status, outcome.message):
                icon = ":large_green_circle:" if outcome.ok else ":red_circle:"
                cards.refresh_card(self.client, self.store, op.id, sandbox=self.config.sandbox)
                cards.post_in_thread(self.client, op, f"{icon} {status.capitalize()}: {outcome.message}")
            else:
                log.warning("operation %s was taken from this worker (lease lost) before it finished", op.id)
        finally:
            with self._running_lock:
                self._running.discard(op.id)
            self._slots.release()
            self._wake.set()  # a lock may have been freed: queued work can start now
