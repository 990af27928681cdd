"""The object store: objects, the global resourceVersion and the bounded event history."""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from bot.sandbox.kubeapi.errors import ApiError
from bot.sandbox.kubeapi.resources import Obj, StoreKey, meta_of

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class WatchEvent:
    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    key: StoreKey
    obj: Obj
    old: Obj | None = None


def _ident(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = meta_of(obj)
    return (meta.get("namespace") or "", meta["name"])


class ObjectStore:
    """Committed objects are never mutated afterwards (copy-on-write), so the history and the
    watchers can share them without copying."""

    def __init__(self, history_size: int) -> None:
        self.lock = threading.RLock()  # readers on other threads see whole writes
        self._objects: dict[StoreKey, dict[tuple[str, str], Obj]] = collections.defaultdict(dict)
        self._rv = 0
        self._history: collections.deque[WatchEvent] = collections.deque(maxlen=history_size)
        self._listeners: list[Callable[[WatchEvent], None]] = []

    @property
    def resource_version(self) -> int:
        return self._rv

    @property
    def history_size(self) -> int:
        return self._history.maxlen or 0

    def subscribe(self, listener: Callable[[WatchEvent], None]) -> None:
        self._listeners.append(listener)

    def get(self, key: StoreKey, namespace: str | None, name: str) -> Obj | None:
        return self._objects.get(key, {}).get((namespace or "", name))

    def items(self, key: StoreKey, namespace: str | None = None) -> list[Obj]:
        found = self._objects.get(key, {})
        return [found[i] for i in sorted(found) if namespace is None or i[0] == namespace]

    def resource_keys(self) -> list[StoreKey]:
        return [key for key, objs in self._objects.items() if objs]

    def save(self, key: StoreKey, obj: Obj, old: Obj | None) -> Obj:
        with self.lock:
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            self._objects[key][_ident(obj)] = obj
            self._emit(WatchEvent(self._rv, "MODIFIED" if old is not None else "ADDED", key, obj, old))
            return obj

    def remove(self, key: StoreKey, obj: Obj) -> Obj:
        with self.lock:
            self._rv += 1
            final = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._rv)}}
            self._objects[key].pop(_ident(obj), None)
            self._emit(WatchEvent(self._rv, "DELETED", key, final, obj))
            return final

    def events_after(self, rv: int) -> list[WatchEvent] | None:
        """Every event after ``rv``, or None when some of them already left the history."""
        oldest = self._history[0].rv - 1 if self._history else self._rv
        if rv < oldest:
            return None
        return [event for event in self._history if event.rv > rv]

    def oldest_resumable(self) -> int:
        return self._history[0].rv - 1 if self._history else self._rv

    def _emit(self, event: WatchEvent) -> None:
        self._history.append(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a broken listener must not undo a committed write
                log.exception("kube emulator listener failed on %s", event.type)


def paginate(items: list[Obj], query: Mapping[str, str]) -> tuple[list[Obj], str, int]:
    """Serve ``limit``/``continue`` pages; the token encodes the last (namespace, name) served."""
    start = 0
    if token := query.get("continue"):
        try:
            after = tuple(json.loads(base64.urlsafe_b64decode(token.encode())))
        except ValueError as exc:
            raise ApiError(400, "invalid continue token") from exc
        start = next((i for i, obj in enumerate(items) if _ident(obj) > after), len(items))
    limit = int(query.get("limit") or 0)
    if limit <= 0 or start + limit >= len(items):
        return items[start:], "", 0
    page = items[start : start + limit]
    token = base64.urlsafe_b64encode(json.dumps(list(_ident(page[-1]))).encode()).decode()
    return page, token, len(items) - start - limit
