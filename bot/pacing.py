"""Process-wide state the handlers share through Deps: per-channel pacing and single-flight builds.

They live here, in the Runtime, rather than as module globals of a handler: one Runtime, one set,
and a test that builds two runtimes gets two. Both forget a key once nobody uses it, so a bot that
posts to ten thousand channels over a month does not keep ten thousand locks.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class _Slot:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0  # threads holding or waiting for `lock`
    last: float = 0.0  # when the last post through this slot ended (monotonic)


class Pacer:
    """At most one post per `interval` per channel from this process (Slack's chat.postMessage limit).

    The interval is counted from the end of the previous post (a post that was retried after a 429
    ended late). 429s that still happen (other processes, bursts) are retried by the client's
    RateLimitErrorRetryHandler, which honours Retry-After.
    """

    def __init__(self, interval: float = 1.05) -> None:  # a hair over 1 s: clocks and buckets round
        self.interval = interval
        self._slots: dict[str, _Slot] = {}
        self._guard = threading.Lock()

    def __len__(self) -> int:
        with self._guard:
            return len(self._slots)

    @contextmanager
    def slot(self, channel: str) -> Iterator[None]:
        with self._guard:
            slot = self._slots.setdefault(channel, _Slot())
            slot.users += 1
        try:
            with slot.lock:  # one post at a time per channel from this process
                due = slot.last + self.interval
                if due > time.monotonic():
                    time.sleep(due - time.monotonic())
                try:
                    yield
                finally:
                    slot.last = time.monotonic()
        finally:
            with self._guard:
                slot.users -= 1
                self._forget_idle()

    def _forget_idle(self) -> None:
        # A slot nobody waits for whose interval has passed holds nothing worth keeping.
        now = time.monotonic()
        for channel in [c for c, s in self._slots.items() if s.users == 0 and now - s.last >= self.interval]:
            del self._slots[channel]


@dataclass
class _Flight:
    lock: threading.Lock = field(default_factory=threading.Lock)
    users: int = 0
    value: Any = None
    at: float | None = None  # when `value` was built (monotonic); None: not built yet


class SharedBuilds:
    """Callers asking for the same key within `ttl` seconds share one build (single flight).

    Fifty channels subscribed at 09:00 would otherwise cost fifty times the queries and fifty
    charts; this way a fan-out costs one digest's PromQL (a constant) and one chart.
    """

    def __init__(self, ttl: float = 60.0) -> None:
        self.ttl = ttl
        self._flights: dict[Hashable, _Flight] = {}
        self._guard = threading.Lock()

    def __len__(self) -> int:
        with self._guard:
            return len(self._flights)

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any:
        with self._guard:
            flight = self._flights.setdefault(key, _Flight())
            flight.users += 1
        try:
            with flight.lock:  # the others wait for the one build in flight instead of starting their own
                if flight.at is None or time.monotonic() - flight.at > self.ttl:
                    flight.value, flight.at = build(), time.monotonic()
                return flight.value
        finally:
            with self._guard:
                flight.users -= 1
                now = time.monotonic()
                for k in [k for k, f in self._flights.items()
                          if f.users == 0 and (f.at is None or now - f.at > self.ttl)]:
                    del self._flights[k]
