"""The emulator itself: its lifecycle on a daemon thread, the thread-safe object API other threads
use, and the HTTP entry point that routes each request to the store."""

from __future__ import annotations

import asyncio
import builtins
import concurrent.futures
import copy
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Final, TypeVar

import kmock
import yaml
from aiohttp import web

from bot.sandbox.controller import Controller
from bot.sandbox.kubeapi.discovery import SERVER_VERSION, Discovery
from bot.sandbox.kubeapi.errors import UNKNOWN_RESOURCE, ApiError
from bot.sandbox.kubeapi.resources import Obj, ResourceType, render
from bot.sandbox.kubeapi.routes import (
    Route,
    is_watch,
    json_response,
    manager_name,
    parse_route,
    request_body,
    request_content_type,
)
from bot.sandbox.kubeapi.selectors import request_selector
from bot.sandbox.kubeapi.store import WatchEvent, paginate
from bot.sandbox.kubeapi.subresources import Subresources

log = logging.getLogger(__name__)

T = TypeVar("T")

_MAX_BODY_BYTES: Final = 3 * 1024 * 1024  # kube-apiserver's default request body limit


class KubeEmulator(Subresources, Discovery):
    """A Kubernetes API server with a small controller, served on 127.0.0.1 from a daemon thread.

    Single use: ``start()`` once, ``stop()`` once (or ``with KubeEmulator() as emu:``).
    """

    def __init__(self, *, history_size: int = 10_000, request_log_size: int = 100_000) -> None:
        super().__init__(history_size=history_size, request_log_size=request_log_size)
        self._store.subscribe(self._publish)
        self.controller = Controller(self)

    # ----------------------------------------------------------------------------------------------
    # Lifecycle
    # ----------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._loop_thread is not None:
            raise RuntimeError("KubeEmulator can be started only once")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(128)
        self._port = sock.getsockname()[1]
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._loop_thread = threading.Thread(
            target=self._run, args=(sock, started), name=f"kube-emulator-{self._port}", daemon=True
        )
        self._loop_thread.start()
        started.result(timeout=30)

    def stop(self) -> None:
        loop, stopping, thread = self._loop, self._stopping, self._loop_thread
        if loop is None or stopping is None or thread is None or not thread.is_alive():
            return
        loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=30)

    def __enter__(self) -> KubeEmulator:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _run(self, sock: socket.socket, started: concurrent.futures.Future[None]) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(sock, started))
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            else:
                log.exception("kube emulator stopped with an error")
        finally:
            loop.close()

    async def _serve(self, sock: socket.socket, started: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with self:  # kmock's live-stream feeder, for reactions declared with its DSL
            # Cancel a handler when its client goes away, so an idle watch does not linger.
            server = web.Server(self, handler_cancellation=True, request_factory=_large_body_requests)
            runner = web.ServerRunner(server, shutdown_timeout=1.0)
            await runner.setup()
            await web.SockSite(runner, sock).start()
            self.controller.start()
            self._gc_soon()  # objects put before the start may have dependents to collect
            started.set_result(None)
            try:
                await self._stopping.wait()
            finally:
                self._gc_stop()
                await self.controller.aclose()
                self._watches.close_all()
                await runner.cleanup()

    @property
    def url(self) -> str:  # type: ignore[override]  # kmock's is a yarl.URL of its test server
        if self._port is None:
            raise RuntimeError("the emulator is not started")
        return f"http://127.0.0.1:{self._port}"

    def write_kubeconfig(self, path: str | Path, context: str = "sandbox", namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": {"server": self.url}}],
            "users": [{"name": context, "user": {}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context, "namespace": namespace}}],
            "current-context": context,
            "preferences": {},
        }
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(yaml.safe_dump(config, sort_keys=False))
        return target

    # ----------------------------------------------------------------------------------------------
    # Public object API (thread-safe)
    # ----------------------------------------------------------------------------------------------

    def put(self, obj: Mapping[str, Any]) -> Obj:  # type: ignore[override]  # not kmock's HTTP PUT helper
        """Create or replace an object as given (status included), bypassing admission."""
        body = copy.deepcopy(dict(obj))
        return copy.deepcopy(self._in_loop(lambda: self._put_now(body)))

    def get(  # type: ignore[override]  # not kmock's HTTP GET helper
        self, api_version: str, kind: str, namespace: str | None, name: str
    ) -> Obj | None:
        with self._store.lock:
            rt = self._type_for_kind(api_version, kind)
            found = self._store.get(rt.key, namespace if rt.namespaced else None, name)
            return copy.deepcopy(render(rt, found)) if found is not None else None

    def list(self, api_version: str, kind: str, namespace: str | None = None) -> list[Obj]:
        with self._store.lock:
            rt = self._type_for_kind(api_version, kind)
            items = self._store.items(rt.key, namespace if rt.namespaced else None)
            return [copy.deepcopy(render(rt, item)) for item in items]

    def delete(  # type: ignore[override]  # not kmock's HTTP DELETE helper
        self, api_version: str, kind: str, namespace: str | None, name: str, propagation: str | None = None,
        grace: int | None = None,
    ) -> Obj | None:
        """Delete an object as a DELETE request with ``propagation`` and ``gracePeriodSeconds`` would (None:
        Background unless its finalizers say otherwise; a running pod's own grace period); returns its
        last state (still held by finalizers, Terminating, or as removed), or None if absent."""

        def delete_now() -> Obj | None:
            rt = self._type_for_kind(api_version, kind)
            found = self._store.get(rt.key, namespace if rt.namespaced else None, name)
            return self._delete_object(rt, found, propagation, grace) if found is not None else None

        result = self._in_loop(delete_now)
        return copy.deepcopy(result) if result is not None else None

    @property
    def requests(self) -> builtins.list[tuple[str, str, dict[str, str]]]:  # `list` is a method here
        """(method, path, query) of every request served so far (bounded by request_log_size)."""
        return list(self._request_log)

    @property
    def resource_version(self) -> int:
        return self._store.resource_version

    def fail_next(self, method: str, path_regex: str, status: int, times: int = 1) -> None:
        """Answer the next ``times`` requests whose path matches (``re.search``) with ``status``."""
        self._faults.add(method, path_regex, status, times)

    def _in_loop(self, fn: Callable[[], T]) -> T:
        """Run a state change on the emulator's loop so watchers and the controller see it in order."""
        loop = self._loop
        if loop is None or not loop.is_running() or threading.current_thread() is self._loop_thread:
            with self._store.lock:
                return fn()
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                with self._store.lock:
                    done.set_result(fn())
            except BaseException as exc:
                done.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return done.result(timeout=30)

    def _put_now(self, body: Obj) -> Obj:
        rt = self._type_for_kind(str(body.get("apiVersion", "")), str(body.get("kind", "")))
        meta = body.setdefault("metadata", {})
        if not meta.get("name"):
            raise ValueError("put() needs metadata.name")
        if rt.namespaced:
            meta["namespace"] = meta.get("namespace") or "default"
        old = self._store.get(rt.key, meta.get("namespace"), meta["name"])
        self._apply_defaults(rt, body)
        return self._write(rt, body, old)

    # ----------------------------------------------------------------------------------------------
    # HTTP entry point
    # ----------------------------------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> web.StreamResponse:
        method = str(request.method.value).upper()
        path = request.url.path
        self._request_log.append((method, path, dict(request.params)))
        self._trim_kmock_log()
        try:
            fault = self._faults.take(method, path)
            if fault is not None:
                raise fault
            if method == "GET" and path == "/version/":  # the client's VersionApi asks with the slash
                return json_response(200, dict(SERVER_VERSION))
            route = parse_route(path)
            if route is not None:
                return await self._serve_resource(request, method, route)
            # kmock's own object tracking (KubernetesEmulator._handle) must not run: our store
            # is the truth. Its scaffold serves discovery (see discovery.py), /version and the DSL.
            return await kmock.KubernetesScaffold._handle(self, request)
        except ApiError as exc:
            return json_response(exc.code, exc.status())
        except kmock.KubernetesError as exc:
            return json_response(exc.status, ApiError(exc.status, UNKNOWN_RESOURCE).status())
        except Exception:
            log.exception("kube emulator failed on %s %s", method, path)
            return json_response(500, ApiError(500, "Internal error occurred: see the emulator log").status())

    def _trim_kmock_log(self) -> None:
        # kmock keeps every parsed request (bodies included) for DSL assertions; a long-lived
        # sandbox must not grow without bound, and our own log answers `requests`.
        if len(self._requests) > 2_000:
            del self._requests[:1_000]

    async def _render_error(self, exc: Exception) -> web.StreamResponse:
        code = exc.code if isinstance(exc, ApiError) else 500
        return json_response(code, ApiError(code, str(exc) or type(exc).__name__).status())

    async def _serve_resource(self, request: kmock.Request, method: str, route: Route) -> web.StreamResponse:
        query = dict(request.params)
        if method == "GET" and (route.watch_prefix or is_watch(query)) and route.subresource is None:
            rt = self._served_type(route)
            self._require_verb(rt, "watch")
            return await self._serve_our_watch(request, rt, route, query)
        # One request is one atomic step for readers on other threads (put/get/list).
        with self._store.lock:
            rt = self._served_type(route)
            if route.subresource is not None:
                status, body = self._serve_subresource(request, method, rt, route, query)
            elif route.name is None:
                status, body = self._serve_collection(request, method, rt, route, query)
            else:
                status, body = self._serve_object(request, method, rt, route, query)
        return body if isinstance(body, web.StreamResponse) else json_response(status, body)

    def _served_type(self, route: Route) -> ResourceType:
        rt = self._type_at(route.group, route.version, route.plural)
        if rt is None or (route.namespace is not None and not rt.namespaced):
            raise ApiError(404, UNKNOWN_RESOURCE)
        return rt

    @staticmethod
    def _require_verb(rt: ResourceType, verb: str) -> None:
        if not rt.allows(verb):
            raise ApiError(405, f"{verb} is not supported on resources of kind {rt.qualified!r}")

    def _serve_collection(
        self, request: kmock.Request, method: str, rt: ResourceType, route: Route, query: dict[str, str]
    ) -> tuple[int, Obj]:
        if method == "GET":
            self._require_verb(rt, "list")
            return 200, self._list(rt, route.namespace, query)
        if method == "POST":
            self._require_verb(rt, "create")
            if rt.namespaced and route.namespace is None:
                raise ApiError(404, UNKNOWN_RESOURCE)
            body = request_body(request, "application/json")
            return 201, self._create(rt, route.namespace, body, query, manager_name(request, query))
        if method == "DELETE":
            self._require_verb(rt, "deletecollection")
            return 200, self._delete_collection(rt, route.namespace, query)
        raise ApiError(405, f"{method} is not supported on a collection")

    def _serve_object(
        self, request: kmock.Request, method: str, rt: ResourceType, route: Route, query: dict[str, str]
    ) -> tuple[int, Obj]:
        assert route.name is not None
        namespace, name = route.namespace, route.name
        manager = manager_name(request, query)
        if method == "GET":
            self._require_verb(rt, "get")
            return 200, render(rt, self._require(rt, namespace, name))
        if method == "PUT":
            self._require_verb(rt, "update")
            body = request_body(request, "application/json")
            return 200, self._replace(rt, namespace, name, body, query, manager)
        if method == "PATCH":
            self._require_verb(rt, "patch")
            content_type = request_content_type(request)
            return self._patch(rt, namespace, name, content_type, request_body(request, content_type), query, manager)
        if method == "DELETE":
            self._require_verb(rt, "delete")
            options = request_body(request, "application/json") or {}
            return self._delete(rt, namespace, name, options, query)
        raise ApiError(405, f"{method} is not supported on {rt.qualified}")

    def _list(self, rt: ResourceType, namespace: str | None, query: Mapping[str, str]) -> Obj:
        selector = request_selector(rt, namespace, query)
        items = [obj for obj in self._store.items(rt.key, namespace) if selector.matches(obj)]
        meta: Obj = {"resourceVersion": str(self._store.resource_version)}
        items, token, remaining = paginate(items, query)
        if token:
            meta["continue"] = token
            meta["remainingItemCount"] = remaining
        return {
            "apiVersion": rt.api_version,
            "kind": f"{rt.kind}List",
            "metadata": meta,
            "items": [render(rt, obj) for obj in items],
        }

    async def _serve_our_watch(
        self, request: kmock.Request, rt: ResourceType, route: Route, query: Mapping[str, str]
    ) -> web.StreamResponse:
        selector = request_selector(rt, route.namespace, query, route.name)
        return await self._watches.serve(request, rt, selector, query)

    def _publish(self, event: WatchEvent) -> None:
        self._watches.publish(event)
        self.controller.notify(event.type, event.obj)


def _large_body_requests(
    message: Any, payload: Any, protocol: Any, writer: Any, task: asyncio.Task[None]
) -> web.BaseRequest:
    # aiohttp refuses bodies over 1 MiB by default; Helm release Secrets and CRDs are larger.
    loop = asyncio.get_running_loop()
    return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=_MAX_BODY_BYTES)
