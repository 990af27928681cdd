"""Watches: what an open watch sees first (current objects, or the history after its
resourceVersion) and then live, and the 410 it gets once it falls too far behind."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping

import kmock
from aiohttp import web

from bot.sandbox.kubeapi.errors import ApiError
from bot.sandbox.kubeapi.resources import Obj, ResourceType, StoreKey, render
from bot.sandbox.kubeapi.selectors import Selector
from bot.sandbox.kubeapi.store import ObjectStore, WatchEvent


class _Watcher:
    """One open watch: events are pushed by the store and drained by the streaming handler."""

    def __init__(self, key: StoreKey, selector: Selector, limit: int) -> None:
        self.key = key
        self.selector = selector
        self.limit = max(limit, 1)
        self.expired = False
        self.queue: asyncio.Queue[tuple[str, Obj] | None] = asyncio.Queue()

    def offer(self, event: WatchEvent) -> None:
        if event.key != self.key or self.expired:
            return
        visible = self.selector.visible_type(event)
        if visible is None:
            return
        if self.queue.qsize() >= self.limit:
            # A consumer this far behind could only be served from history it has lost: 410.
            self.expired = True
            self.queue.put_nowait(None)
            return
        self.queue.put_nowait((visible, event.obj))

    def close(self) -> None:
        self.queue.put_nowait(None)


class Watches:
    """The open watches of one emulator: the store's events feed them, streaming handlers drain them."""

    def __init__(self, store: ObjectStore) -> None:
        self._store = store
        self._watchers: set[_Watcher] = set()

    async def serve(
        self, request: kmock.Request, rt: ResourceType, selector: Selector, query: Mapping[str, str]
    ) -> web.StreamResponse:
        timeout = float(query["timeoutSeconds"]) if query.get("timeoutSeconds") else None
        watcher, backlog, expired_at = self._open(rt, selector, query.get("resourceVersion"))
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        assert request._raw_request is not None  # kmock always keeps it for served requests
        await response.prepare(request._raw_request)
        try:
            if expired_at is not None:
                await self._write_gone(response, query.get("resourceVersion", ""), expired_at)
                return response
            for event_type, obj in backlog:
                await self._write_event(response, rt, event_type, obj)
            await self._stream_live(response, rt, watcher, timeout)
        except ConnectionError:
            pass  # the client went away; nothing to tell it
        finally:
            self._watchers.discard(watcher)
        return response

    def _open(
        self, rt: ResourceType, selector: Selector, rv_text: str | None
    ) -> tuple[_Watcher, list[tuple[str, Obj]], int | None]:
        """Register a watcher and compute what it must see first, atomically with the store."""
        with self._store.lock:
            watcher = _Watcher(rt.key, selector, self._store.history_size)
            if rv_text in (None, "", "0"):
                current = self._store.items(rt.key, selector.namespace)
                backlog = [("ADDED", obj) for obj in current if selector.matches(obj)]
            else:
                try:
                    events = self._store.events_after(int(rv_text))
                except ValueError as exc:
                    raise ApiError(400, f"invalid resource version {rv_text!r}") from exc
                if events is None:
                    return watcher, [], self._store.oldest_resumable()
                backlog = [
                    (visible, event.obj)
                    for event in events
                    if event.key == rt.key and (visible := selector.visible_type(event))
                ]
            self._watchers.add(watcher)
            return watcher, backlog, None

    async def _stream_live(
        self, response: web.StreamResponse, rt: ResourceType, watcher: _Watcher, timeout: float | None
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        while True:
            remaining = deadline - loop.time() if deadline is not None else None
            if remaining is not None and remaining <= 0:
                return
            try:
                item = await asyncio.wait_for(watcher.queue.get(), remaining)
            except TimeoutError:
                return
            if item is None:
                if watcher.expired:
                    await self._write_gone(response, "", self._store.oldest_resumable())
                return
            await self._write_event(response, rt, *item)

    @staticmethod
    async def _write_event(response: web.StreamResponse, rt: ResourceType, event_type: str, obj: Obj) -> None:
        line = json.dumps({"type": event_type, "object": render(rt, obj)})
        await response.write(line.encode() + b"\n")

    @staticmethod
    async def _write_gone(response: web.StreamResponse, requested: str, oldest: int) -> None:
        status = ApiError(410, f"too old resource version: {requested} ({oldest})").status()
        await response.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")

    def publish(self, event: WatchEvent) -> None:
        for watcher in list(self._watchers):
            watcher.offer(event)

    def close_all(self) -> None:
        for watcher in list(self._watchers):
            watcher.close()
