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
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from slack_sdk import WebClient

from bot.clusters import Clusters
from bot.config import Config
from bot.db.store import Store
from bot.db.tables import Operation, OpStatus
from bot.logs import operation_context
from bot.runs import infra, releases, scale, schedules
from bot.runs.progress import Executor, Outcome, Progress
from handlers import blocks, cards
from ops.errors import OpsError

log = logging.getLogger(__name__)

EXECUTORS: dict[str, Executor] = {
    "scale": scale.run_scale,
    # Terraform (bot/runs/infra.py): plans run as operations of their own, so that a run waits for the
    # workspace's lock like an apply does; provision/destroy apply the plan their card showed.
    "plan": infra.run_plan,
    "drift": infra.run_plan,
    "provision": infra.run_apply,
    "destroy": infra.run_apply,
    # Model releases (bot/runs/releases.py): apply the approved manifests as a new revision, then watch.
    "deploy": releases.run_deploy,
    "rollback": releases.run_rollback,
    "autoscale": releases.run_autoscale,
    "undeploy": releases.run_undeploy,
    # Replica schedules (bot/runs/schedules.py): approval activates one; each fire is its own operation.
    "schedule": schedules.run_activate,
    "unschedule": schedules.run_unschedule,
    "scheduled_scale": schedules.run_scheduled_scale,
}


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
        self._progress: dict[int, Progress] = {}
        self._draining = threading.Event()
        self._pruned = time.monotonic()
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

    def drain(self, grace: float) -> None:
        """Stop claiming and give running operations up to `grace` seconds to finish.

        Leases keep being renewed meanwhile; what is still running after the grace is left to
        lease expiry, and another replica reports it interrupted.
        """
        self._draining.set()
        deadline = time.monotonic() + grace
        while self.busy and time.monotonic() < deadline:
            time.sleep(0.2)

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
        if time.monotonic() - self._pruned > 3600:
            self._pruned = time.monotonic()
            self.store.prune_deliveries(timedelta(days=1))
        with self._running_lock:
            own = set(self._running)
        for op in self.store.interrupt_abandoned(self.id, own=own):
            cards.refresh_card(self.client, self.store, op.id, sandbox=self.config.sandbox)
            cards.post_in_thread(self.client, op, ":warning: Interrupted: the bot process running this "
                                 "stopped before it finished. It was not re-run; check the object's "
                                 "state and ask again if needed.")
        while not self._draining.is_set() and self._slots.acquire(blocking=False):
            submitted = False
            try:
                claimed, queued = self.store.claim(self.id, self.lease, EXECUTORS.keys())
                if queued is not None:
                    cards.refresh_card(self.client, self.store, queued.id, sandbox=self.config.sandbox)
                    cards.post_in_thread(self.client, queued, f":clock3: Queued: {queued.result}.")
                    continue
                if claimed is None:
                    return
                with self._running_lock:
                    self._running.add(claimed.id)
                self._pool.submit(self._run, claimed)
                submitted = True
            finally:
                if not submitted:  # a failed claim must not use up the slot for good
                    self._slots.release()

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease.total_seconds() / 3):
            with self._running_lock:
                ids = list(self._running)
            try:
                renewed = self.store.renew(ids, self.id, self.lease)
            except Exception:
                log.exception("lease renewal failed")
                continue
            for op_id in set(ids) - renewed:
                log.error("lost the lease of operation %s; stopping it", op_id)
                with self._running_lock:
                    progress = self._progress.get(op_id)
                if progress is not None:
                    progress.lost = True

    def _run(self, op: Operation) -> None:
        with operation_context(op.id, op.requested_by):
            try:
                self._run_in_context(op)
            except Exception:  # the pool would keep it in a future nobody reads
                log.exception("operation %s: the worker failed around it", op.id)

    def _run_in_context(self, op: Operation) -> None:
        try:
            cards.refresh_card(self.client, self.store, op.id, sandbox=self.config.sandbox)
            progress = Progress(self.client, self.store, op, sandbox=self.config.sandbox)
            with self._running_lock:
                self._progress[op.id] = progress
            op = progress.op
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
            status = OpStatus.SUCCEEDED if outcome.ok else OpStatus.FAILED
            if not self.store.finish(op, self.id, status, outcome.message):
                log.warning("operation %s was taken from this worker (lease lost) before it finished", op.id)
            elif not outcome.quiet:
                icon = ":large_green_circle:" if outcome.ok else ":red_circle:"
                cards.refresh_card(self.client, self.store, op.id, sandbox=self.config.sandbox)
                cards.post_in_thread(self.client, op, f"{icon} {status.capitalize()}: "
                                                      f"{blocks.escape(outcome.message)}")
        finally:
            with self._running_lock:
                self._running.discard(op.id)
                self._progress.pop(op.id, None)
            self._slots.release()
            self._wake.set()  # a lock may have been freed: queued work can start now
