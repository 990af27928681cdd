"""What follows an ack, when `server.after_ack: queue` puts it in another process.

The acking process (`serve`) verifies, parses and answers, then writes the request to the database
inbox (bot/db/inbox.py) instead of doing the slow part itself: slash commands after their parse, button
clicks and events whole (Slack ignores what their ack says). Worker processes claim each request
once and replay it through their own Bolt app, whose listeners run the same code end to end. So the
acking threads never share the interpreter with cluster reads, charts and Slack posts.

Form submissions stay in the acking process up to their ack, because their validation errors must be
in it; what follows their ack goes to the inbox like a command's.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from slack_bolt import BoltRequest, BoltResponse
from slack_bolt.app import App

from bot.db.inbox import CHANNEL, Inbox, Request

log = logging.getLogger(__name__)

# Requests Slack does not wait on for anything but the 200: the whole listener can run elsewhere.
DEFERRED_TYPES = frozenset({"block_actions", "event_callback"})
FORM = "application/x-www-form-urlencoded"
ABANDONED_AFTER = timedelta(minutes=30)

# The raw request being acked on this thread (Bolt's listener pool copies the context with the work).
_current: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("slack_request", default=None)


def content_type(request: BoltRequest) -> str:
    values = request.headers.get("content-type") or [FORM]
    return str(values[0])


class InboxWriter:
    """Writes acked requests to the inbox from one thread, in batches: the threads that ack never wait
    for the database, and a burst costs one transaction rather than one each. A request is in the
    database milliseconds after its ack; one acked in those milliseconds before a crash is lost, as
    inline after-ack work would be."""

    RETRIES = 5

    def __init__(self, inbox: Inbox) -> None:
        self.inbox = inbox
        self._queue: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
        self._pending = 0
        self._settled = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="inbox-writer", daemon=True)
        self._thread.start()

    def put(self, body: str, content_type: str) -> None:
        with self._settled:
            self._pending += 1
        self._queue.put((body, content_type))

    def flush(self, timeout: float) -> bool:
        """Wait until every acked request is written (or given up on); False if `timeout` came first."""
        with self._settled:
            return self._settled.wait_for(lambda: self._pending == 0, timeout)

    def _loop(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < 100:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._write(batch)
            finally:
                with self._settled:
                    self._pending -= len(batch)
                    self._settled.notify_all()

    def _write(self, batch: list[tuple[str, str]]) -> None:
        for attempt in range(self.RETRIES):
            try:
                self.inbox.put_many(batch)
                return
            except Exception:  # the database may be briefly away
                log.warning("inbox: cannot write %d request(s) (attempt %d)", len(batch), attempt + 1, exc_info=True)
                time.sleep(0.2 * 2**attempt)
        log.error("inbox: dropped %d acked Slack request(s): the database stayed unreachable", len(batch))


class Deferral:
    """The acking process's side: a global middleware, and the `run_later` the handlers call."""

    def __init__(self, inbox: Inbox) -> None:
        self.writer = InboxWriter(inbox)

    def middleware(self, request: BoltRequest, body: dict[str, Any], next: Callable[[], Any]) -> Any:
        if body.get("type") in DEFERRED_TYPES:
            self.writer.put(request.raw_body, content_type(request))
            return BoltResponse(status=200, body="")
        _current.set((request.raw_body, content_type(request)))
        return next()

    def run_later(self, fn: Callable[..., Any], *args: Any) -> None:
        """Hand the request being acked to a worker process, whose listener calls `fn` itself."""
        current = _current.get()
        if current is None:  # not inside a Slack request (no such caller today): keep the user served
            log.error("after-ack work outside a Slack request; running %s here", getattr(fn, "__name__", fn))
            fn(*args)
            return
        self.writer.put(*current)


class InboxRunner:
    """The worker process's side: claim requests from the inbox and replay them through `app`, whose
    listeners run synchronously (process_before_response), so a request is done when dispatch returns."""

    def __init__(self, inbox: Inbox, app: App, worker_id: str, *, threads: int = 8) -> None:
        self.inbox = inbox
        self.app = app
        self.worker_id = worker_id
        # A NOTIFY wakes PostgreSQL workers at once; polling is the fallback there and the way on SQLite.
        self.poll = 1.0 if inbox.notifies else 0.05
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="inbox")
        self._slots = threading.Semaphore(threads)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._swept = 0.0

    def start(self) -> None:
        threading.Thread(target=self._loop, name="inbox", daemon=True).start()
        if self.inbox.notifies:
            threading.Thread(target=self._listen, name="inbox-listen", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._pool.shutdown(wait=True)

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._in_flight == 0

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:  # the database may be briefly away; keep the loop alive
                log.exception("inbox round failed")
            self._wake.wait(self.poll)
            self._wake.clear()

    def tick(self) -> None:
        if time.monotonic() - self._swept > 60:
            self._swept = time.monotonic()
            self.inbox.drop_abandoned(ABANDONED_AFTER)
        while not self._stop.is_set() and self._slots.acquire(blocking=False):
            request = None
            try:
                request = self.inbox.claim(self.worker_id)
            finally:
                if request is None:
                    self._slots.release()
            if request is None:
                return
            with self._lock:
                self._in_flight += 1
            self._pool.submit(self._run, request)

    def _run(self, request: Request) -> None:
        try:
            replay(self.app, request)
        except Exception:
            log.exception("inbox request %s failed", request.id)
        finally:
            try:
                self.inbox.done(request.id)
            except Exception:
                log.exception("cannot remove inbox request %s", request.id)
            with self._lock:
                self._in_flight -= 1
            self._slots.release()
            self._wake.set()  # more may be waiting

    def _listen(self) -> None:
        import psycopg  # only PostgreSQL has NOTIFY

        url = self.inbox.store.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(url, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._wake.set()  # anything queued while this connection was away
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=1.0, stop_after=1):
                            self._wake.set()
            except Exception:
                log.warning("inbox: lost the LISTEN connection; polling until it is back", exc_info=True)
                self._stop.wait(2)


def replay(app: App, request: Request) -> BoltResponse:
    response = app.dispatch(BoltRequest(body=request.body, headers={"content-type": [request.content_type]}))
    if response.status >= 400:
        log.warning("inbox request %s: the app answered %s", request.id, response.status)
    return response
