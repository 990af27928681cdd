"""HTTP mode: a WSGI app (Slack events, health, metrics) served by waitress, a production server.

waitress is single-process and multi-threaded. With `server.after_ack: inline` the worker and the
scheduler are threads of the same process; with `queue` this process only answers Slack and worker
processes (bot/processes.py) do the rest. Replicas scale out as separate processes on one database.
"""

from __future__ import annotations

import _thread
import json
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, Histogram, generate_latest
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from slack_bolt.adapter.wsgi import SlackRequestHandler

from bot.app import Runtime
from bot.config import ServerConfig
from bot.db.tables import FINAL
from bot.processes import WorkerProcesses

log = logging.getLogger(__name__)

ACK_SECONDS = Histogram("infer_bot_ack_seconds", "Time from a Slack request arriving to its HTTP answer",
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 3, 5))

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class OperationsCollector:
    """`infer_bot_operations{state=…}` read from the database at scrape time (all replicas agree)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily("infer_bot_operations", "Operations by state", labels=["state"])
        try:
            counts = self.runtime.store.count_by_status()
        except Exception:
            log.exception("cannot count operations for /metrics")
            counts = {}
        for state in sorted(set(counts) | {"pending_approval", "approved", "queued", "running"} | FINAL):
            family.add_metric([state], counts.get(state, 0))
        yield family


def make_wsgi(runtime: Runtime, draining: threading.Event | None = None) -> WSGIApp:
    draining = draining or threading.Event()
    slack = SlackRequestHandler(runtime.app)
    REGISTRY.register(OperationsCollector(runtime))

    def respond(start: StartResponse, status: str, body: bytes, ctype: str) -> list[bytes]:
        start(status, [("Content-Type", ctype), ("Content-Length", str(len(body)))])
        return [body]

    def wsgi(environ: dict[str, Any], start: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/slack/events" and method == "POST":
            began = time.perf_counter()
            try:
                return slack(environ, start)
            except Exception:
                # Bolt parses the body before any listener runs; a signed but malformed body
                # (e.g. `payload=` that is not JSON) must be a client error, not a 500.
                log.warning("unreadable Slack request", exc_info=True)
                return respond(start, "400 Bad Request", b'{"error": "unreadable request"}', "application/json")
            finally:
                ACK_SECONDS.observe(time.perf_counter() - began)
        if path == "/healthz" and method == "GET":  # readiness: can this replica take Slack traffic?
            database = "ok"
            try:
                runtime.store.count_by_status()
            except Exception:
                database = "unreachable"
            ok = database == "ok" and not draining.is_set()
            body = json.dumps({"ok": ok, "database": database, "draining": draining.is_set()}).encode()
            return respond(start, "200 OK" if ok else "503 Service Unavailable", body, "application/json")
        if path == "/livez" and method == "GET":
            # Liveness without the database: a database outage must not make Kubernetes restart
            # every replica at once (readiness already takes them out of the load balancer).
            return respond(start, "200 OK", b'{"ok": true}', "application/json")
        if path == "/metrics" and method == "GET":
            return respond(start, "200 OK", generate_latest(), CONTENT_TYPE_LATEST)
        return respond(start, "404 Not Found", b'{"error": "not found"}', "application/json")

    return wsgi


def waitress_options(server: ServerConfig) -> dict[str, Any]:
    """waitress tuned for an endpoint on the internet (its defaults suit a server behind a proxy)."""
    return {
        "threads": server.threads,
        "connection_limit": server.connection_limit,
        "channel_timeout": server.read_timeout_seconds,
        # Stalled connections are looked for this often; the default (30 s) would keep them 6× longer.
        "cleanup_interval": max(1, server.read_timeout_seconds // 2),
        "max_request_body_size": server.max_body_bytes,
        # select() cannot watch descriptors above 1 024; poll() has no such ceiling.
        "asyncore_use_poll": True,
    }


def serve(runtime: Runtime, host: str, port: int, *, workers: WorkerProcesses | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then drain: not ready, running operations finish, then exit.

    A runtime in the "front" role only answers Slack: `workers` (or `infer-bot worker` elsewhere) do
    the rest; otherwise this process runs operations, schedules and digests too."""
    from waitress import create_server

    draining = threading.Event()
    server = create_server(make_wsgi(runtime, draining), host=host, port=port, ident="infer-bot",
                           **waitress_options(runtime.config.server))

    def drain_then_stop() -> None:
        grace = runtime.config.operations.shutdown_grace_seconds
        log.info("stopping: draining running operations for up to %gs", grace)
        if workers is not None:
            workers.stop(grace)
        else:
            runtime.worker.drain(grace)
        _thread.interrupt_main()  # waitress's loop ends on KeyboardInterrupt and joins its threads

    def on_signal(signum: int, _frame: Any) -> None:
        if draining.is_set():  # a second signal: stop now, leases tell the other replicas
            raise SystemExit(1)
        draining.set()
        threading.Thread(target=drain_then_stop, name="drain", daemon=True).start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if runtime.role == "front":
        if workers is not None:
            workers.start()
    else:
        runtime.start_background()
    log.info("serving Slack at http://%s:%s/slack/events", host, port)
    try:
        server.run()  # returns once interrupted, after waitress's worker threads finished
    finally:
        if workers is not None:
            workers.stop(0)  # already drained on a signal; this covers any other way out
        runtime.close()
        log.info("stopped")
