"""Keeps open Home tabs current: polls the operations for changes and republishes the tabs they change.

Polling the database (one cheap read a second) rather than hooking every transition catches them all,
wherever they happen: a click, the worker finishing, the scheduler expiring an approval, another
replica. handlers/home.py decides whose tab changed and claims each publish in the database.
"""

from __future__ import annotations

import logging
import threading

from slack_sdk import WebClient

from bot.db.home import HomeTabs
from handlers import home
from handlers.deps import Deps

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0


class HomeRefresher:
    def __init__(self, deps: Deps, client: WebClient, tabs: HomeTabs, poll: float = POLL_SECONDS) -> None:
        self.deps = deps
        self.client = client
        self.tabs = tabs
        self.poll = poll
        self._seen: tuple[object, ...] | None = None
        self._owed: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="home-refresh", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _loop(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.tick()
            except Exception:  # a database or Slack hiccup must not end the refreshes
                log.exception("home tab refresh failed")

    def tick(self) -> None:
        """One poll: the tabs of every open user when operations changed, else only those still owed."""
        seen = self.tabs.fingerprint()
        changed = seen != self._seen
        if not changed and not self._owed:
            return
        # Taken before reading, so a change made while this round runs is seen by the next one.
        self._seen = seen
        tabs = self.tabs.open_tabs(home.OPEN_FOR)
        if not changed:
            tabs = [t for t in tabs if t.user in self._owed]
        self._owed = set(home.refresh(self.client, self.deps, tabs))
