"""Worker processes: `infer-bot worker`, and the ones `serve` starts beside itself.

With `server.after_ack: queue`, `serve` only answers Slack; workers claim what it acked from the
database inbox, and run operations, schedules, digests and Home refreshes. Any number of them, on any
host, share one database: claims are compare-and-sets, so each request and operation runs once.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from prometheus_client import start_http_server

from bot.app import Runtime

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1


WORKER_NICENESS = 10


def _child_setup() -> None:
    """In the child before exec. A lower CPU priority: on the host they share, the acking process gets
    the CPU first, so a burst of after-ack work cannot push an ack past Slack's 3 s (nor its p99 up).
    And SIGTERM when `serve` dies, even by SIGKILL, so no worker outlives its server and keeps
    claiming (Linux; elsewhere a stopped `serve` stops its workers itself)."""
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    if sys.platform == "linux":
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class WorkerProcesses:
    """`count` children running `infer-bot worker` with the parent's config and environment; one that
    exits is started again (after a pause that grows while it keeps failing)."""

    def __init__(self, count: int, args: list[str]) -> None:
        self.count = count
        self.command = [sys.executable, "-m", "bot.cli", *args, "worker"]
        self._procs: list[subprocess.Popen[bytes]] = []
        self._stopping = threading.Event()
        self._lock = threading.Lock()

    def start(self) -> None:
        for i in range(self.count):
            self._procs.append(self._spawn())
            threading.Thread(target=self._watch, args=(i,), name=f"watch-worker-{i}", daemon=True).start()
        log.info("started %d worker process(es)", self.count)

    def _spawn(self) -> subprocess.Popen[bytes]:
        # stdout/stderr are the parent's: one log stream per pod, as Kubernetes collects it.
        return subprocess.Popen(self.command, preexec_fn=_child_setup)

    def _watch(self, i: int) -> None:
        pause = 1.0
        while not self._stopping.is_set():
            with self._lock:
                proc = self._procs[i]
            code = proc.wait()
            if self._stopping.is_set():
                return
            log.error("worker process %s exited with %s; starting another in %gs", proc.pid, code, pause)
            if self._stopping.wait(pause):
                return
            began = time.monotonic()
            with self._lock:
                self._procs[i] = self._spawn()
            # A worker that lived a while had a transient failure; one that dies at once keeps backing off.
            pause = 1.0 if time.monotonic() - began > 60 else min(pause * 2, 30.0)

    def stop(self, grace: float) -> None:
        """SIGTERM: each drains its running operations for up to `grace` seconds, as `serve` does."""
        self._stopping.set()
        with self._lock:
            procs = list(self._procs)
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + grace + 5
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()


def run_worker(runtime: Runtime, *, metrics_port: int = 0) -> None:
    """`infer-bot worker`: claim and run until SIGTERM/SIGINT, then drain running operations."""
    stop = threading.Event()
    if metrics_port:
        # The commands' and operations' counters are counted where they run: here, not in `serve`.
        start_http_server(metrics_port)

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():
            raise SystemExit(1)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runtime.start_background()
    log.info("worker %s: taking Slack requests and operations from the database", runtime.worker.id)
    while not stop.wait(0.5):  # a short wait lets the signal handler run promptly
        pass
    grace = runtime.config.operations.shutdown_grace_seconds
    log.info("stopping: draining running operations for up to %gs", grace)
    runtime.worker.drain(grace)
    runtime.close()
    log.info("stopped")
