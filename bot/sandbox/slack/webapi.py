"""A local Slack for the console and the test suite, spoken to over real HTTP.

Two halves:

* :class:`LocalSlack` serves the subset of the Slack Web API the bot uses, plus the
  ``response_url`` and file-upload URLs it hands out, on a loopback port. The bot's own
  ``slack_sdk.WebClient`` talks to it unchanged (``base_url=slack.api_url``), so retries,
  encodings and error handling are exercised exactly as against Slack. It keeps the state a
  user would see (messages, threads, ephemerals, modals, files) and enforces the Block Kit
  limits Slack enforces, so rendering bugs fail here instead of in production.
* :class:`SlackRequests` builds and signs what Slack sends *to* the bot: slash commands and
  interactivity payloads, byte for byte in Slack's shapes.

Only the standard library and ``slack_sdk`` are used, because the product's console imports
this package too and must not pull test dependencies into it.

The Block Kit validator (``blockkit``), Slack's wire conventions (``wire``), the workspace state
and its Web API methods (``workspace``) and :class:`SlackRequests` (``payloads``) live in modules
of their own, so each can be read without the HTTP server; this module keeps the server and
re-exports what callers import from it.
"""

from __future__ import annotations

import bisect
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot.sandbox.slack.blockkit import MESSAGE_TEXT_BUDGET, block_kit_errors
from bot.sandbox.slack.payloads import SlackRequests
from bot.sandbox.slack.records import (
    Bucket,
    Call,
    Fault,
    FileRecord,
    JSONDict,
    ResponseTarget,
    Trigger,
    UploadedFile,
    new_trigger_id,
)
from bot.sandbox.slack.wire import (
    BadRequest,
    Reply,
    auth_error,
    decode_json_fields,
    fault_error,
    flag,
    parse_body,
    parse_multipart,
    slack_error,
    unwrap_payload,
)
from bot.sandbox.slack.workspace import Workspace

__all__ = [
    "MESSAGE_TEXT_BUDGET",
    "Call",
    "LocalSlack",
    "SlackRequests",
    "UploadedFile",
    "block_kit_errors",
]

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------
# The Web API server


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # A restarted console must be able to rebind a fixed port it just released.
    allow_reuse_address = True
    # socketserver's default backlog is 5: a fan-out posting to dozens of channels at once had
    # connections reset, which Slack itself never does.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], slack: LocalSlack) -> None:
        super().__init__(address, _Handler)
        self.slack = slack


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "LocalSlack/1"

    def do_POST(self) -> None:
        self._serve()

    def do_GET(self) -> None:
        self._serve()

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        reply = self.server.slack._dispatch(self.path, dict(self.headers.items()), raw)
        if reply.drop:
            self.close_connection = True
            return
        payload, content_type = reply.encoded()
        self.send_response(reply.status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        # Every call is recorded and handed to on_call; stderr lines would only garble the console.
        return


_ApiMethod = Callable[[JSONDict], JSONDict]


class LocalSlack(Workspace):
    """A loopback HTTP server speaking the Slack Web API methods the bot uses.

    Thread-safe: the server answers each request on its own thread and every accessor returns
    a snapshot. ``on_call`` runs on the server thread that answered, after the call is recorded
    and before the HTTP response is sent, so what it prints precedes the bot's next step.
    """

    #: Slack accepts five posts to one response_url.
    response_url_max_uses: int = 5

    def __init__(
        self,
        bot_token: str = "xoxb-test",
        on_call: Callable[[Call], None] | None = None,
        *,
        team_id: str = "T0001",
        team_domain: str = "local",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "A0001",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(
            team_id=team_id, team_domain=team_domain, bot_user_id=bot_user_id, bot_id=bot_id, app_id=app_id
        )
        self.bot_token = bot_token
        self.on_call = on_call
        # apps.connections.open is called with the app-level token, every other method with the bot's.
        self.app_token = "xapp-test"

        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

        self._changed = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._response_targets: dict[str, ResponseTarget] = {}
        self._faults: dict[str, deque[Fault]] = {}
        self._drops: dict[str, int] = {}
        self._channel_rate: float | None = None
        self._channel_burst = 1.0
        self._buckets: dict[str, Bucket] = {}

        self._methods: dict[str, _ApiMethod] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "views.open": self._views_open,
            "views.update": self._views_update,
            "views.publish": self._views_publish,
            "users.info": self._users_info,
            "usergroups.users.list": self._usergroups_users_list,
            "conversations.info": self._conversations_info,
            "files.getUploadURLExternal": self._files_get_upload_url,
            "files.completeUploadExternal": self._files_complete_upload,
            "apps.connections.open": self._apps_connections_open,
        }

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> LocalSlack:
        if self._server is not None:
            raise RuntimeError("LocalSlack is already running")
        self._server = _Server((self._host, self._port), self)
        # stop() waits up to one poll interval; tests start a server per test, so keep it short.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="local-slack", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> LocalSlack:
        return self.start() if self._server is None else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("LocalSlack is not running; call start() first")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def api_url(self) -> str:
        """The Web API base URL, with the trailing slash ``WebClient(base_url=…)`` expects."""
        return f"{self.base_url}/api/"

    # -- what was called ---------------------------------------------------------------------

    @property
    def calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [call for call in self._calls if call.method == method]

    def wait_for(self, predicate: Callable[[Call], bool], timeout: float = 10) -> Call:
        """Return the first recorded call (past or future) matching ``predicate``.

        Raises AssertionError listing every call seen when none matches within ``timeout``.
        """
        deadline = time.monotonic() + timeout
        checked = 0
        with self._changed:
            while True:
                # Calls can be inserted before the end (arrival order), so rescan from the start
                # whenever the list grew; lists stay short in tests.
                if len(self._calls) != checked:
                    checked = len(self._calls)
                    for call in self._calls:
                        if _matches(predicate, call):
                            return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            seen = list(self._calls)
        listing = "\n".join(f"  {i}. {call.describe()}" for i, call in enumerate(seen, 1)) or "  (none)"
        raise AssertionError(
            f"no matching Slack call within {timeout:g}s; calls seen ({len(seen)}):\n{listing}"
        )

    # -- URLs and ids handed to the bot ------------------------------------------------------

    def response_url(
        self,
        name: str = "",
        *,
        channel: str | None = None,
        message_ts: str | None = None,
        user: str | None = None,
    ) -> str:
        """A fresh response_url on this server; posts to it are recorded as ``response_url`` calls.

        Bound to ``channel``/``message_ts``/``user`` it also acts like Slack's: ``replace_original``
        and ``delete_original`` change that message, ``in_channel`` posts a message and the
        default posts an ephemeral for ``user``.
        """
        token = secrets.token_hex(12)
        with self._lock:
            label = name or f"r{next(self._ids)}"
            self._response_targets[token] = ResponseTarget(label, channel, message_ts, user)
        return f"{self.base_url}/response/{token}"

    def trigger_id(self) -> str:
        """A trigger_id that views.open accepts once, within :attr:`trigger_ttl` seconds."""
        trigger = new_trigger_id()
        with self._lock:
            self._triggers[trigger] = Trigger(issued_at=time.monotonic())
        return trigger

    # -- failure injection -------------------------------------------------------------------

    def rate_limit(self, method: str, times: int, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls to ``method`` with HTTP 429 and ``Retry-After``."""
        self._inject(method, times, Fault(status=429, retry_after=retry_after))

    def drop_response(self, method: str, times: int = 1) -> None:
        """The next ``times`` calls to ``method`` take effect, but their answer is lost on the way back
        (the connection closes): the case where a retry would act twice."""
        with self._lock:
            self._drops[method] = self._drops.get(method, 0) + times

    def fail(self, method: str, times: int, status: int = 500) -> None:
        """Answer the next ``times`` calls to ``method`` with HTTP ``status``."""
        if status < 400:
            raise ValueError(f"status must be an HTTP error, got {status}")
        self._inject(method, times, Fault(status=status))

    def per_channel_limit(self, per_second: float | None, *, burst: int | None = None) -> None:
        """Rate-limit chat.postMessage per channel like Slack (token bucket); None disables.

        ``burst`` defaults to ``ceil(per_second)`` (at least 1), Slack's "short bursts allowed".
        """
        with self._lock:
            self._buckets.clear()
            if per_second is None:
                self._channel_rate = None
                return
            if per_second <= 0:
                raise ValueError("per_second must be positive")
            self._channel_rate = float(per_second)
            self._channel_burst = float(burst if burst is not None else max(1, math.ceil(per_second)))

    def _inject(self, method: str, times: int, fault: Fault) -> None:
        if times < 0:
            raise ValueError("times must not be negative")
        with self._lock:
            queue = self._faults.setdefault(method, deque())
            queue.extend(Fault(fault.status, fault.retry_after) for _ in range(times))

    def _take_fault(self, method: str) -> Reply | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue.popleft()
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return Reply(fault.status, slack_error(fault_error(fault.status)), headers)

    # -- request plumbing --------------------------------------------------------------------

    def _dispatch(self, path: str, headers: dict[str, str], raw: bytes) -> Reply:
        at = time.time()
        url = urlsplit(path)
        lowered = {name.lower(): value for name, value in headers.items()}
        content_type = lowered.get("content-type", "")
        params: JSONDict = dict(parse_qsl(url.query, keep_blank_values=True))
        target = ""
        if url.path.startswith("/api/"):
            method = url.path.removeprefix("/api/")
        elif url.path.startswith("/response/"):
            method, target = "response_url", url.path.removeprefix("/response/")
        elif url.path.startswith("/upload/"):
            method, target = "upload_url", url.path.removeprefix("/upload/")
        else:
            method = url.path
        try:
            if method == "upload_url":
                # Upload bodies are file bytes, whatever Content-Type urllib put on them.
                reply = self._upload(target, content_type, raw)
                params.update(file_id=target, size=reply.body.get("size", 0))
            else:
                params.update(parse_body(content_type, raw))
                if method == "response_url":
                    params = unwrap_payload(params)
                    reply, target = self._respond(target, params)
                elif url.path.startswith("/api/"):
                    reply = self._api(method, params, lowered)
                else:
                    reply = Reply(404, slack_error("not_found"))
        except BadRequest as exc:
            reply = Reply(200, slack_error(exc.error))
        call = Call(
            method=method,
            params=decode_json_fields(params),
            headers=headers,
            at=at,
            status=reply.status,
            response=reply.body,
            target=target,
        )
        self._record(call)
        return reply

    def _record(self, call: Call) -> None:
        with self._changed:
            # Concurrent requests finish out of order; keep the list in arrival order.
            bisect.insort_right(self._calls, call, key=lambda c: c.at)
            self._changed.notify_all()
        if self.on_call is not None:
            try:
                self.on_call(call)
            except Exception:
                # A broken printer must not turn into a Slack error the bot would then handle.
                log.exception("on_call failed for %s", call.method)

    def _api(self, method: str, params: JSONDict, headers: Mapping[str, str]) -> Reply:
        with self._lock:
            fault = self._take_fault(method)
            if fault is not None:
                return fault
            handler = self._methods.get(method)
            if handler is None:
                return Reply(200, slack_error("unknown_method"))
            token = self.app_token if method == "apps.connections.open" else self.bot_token
            refused = auth_error(params, headers, token)
            if refused is not None:
                return Reply(200, slack_error(refused))
            params = decode_json_fields(params)
            if method == "chat.postMessage":
                retry_after = self._take_channel_token(str(params.get("channel") or ""))
                if retry_after is not None:
                    return Reply(429, slack_error("ratelimited"), {"Retry-After": str(retry_after)})
            reply = Reply(200, handler(params))
            if self._drops.get(method, 0) > 0:
                self._drops[method] -= 1
                reply.drop = True
            return reply

    def _take_channel_token(self, channel: str) -> int | None:
        """Spend a token from ``channel``'s bucket; return Retry-After seconds when empty."""
        if self._channel_rate is None or not channel:
            return None
        now = time.monotonic()
        bucket = self._buckets.setdefault(channel, Bucket(tokens=self._channel_burst, updated=now))
        bucket.tokens = min(self._channel_burst, bucket.tokens + (now - bucket.updated) * self._channel_rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        # Slack sends whole seconds; round up so a client honouring it is never early.
        return max(1, math.ceil((1 - bucket.tokens) / self._channel_rate))

    # -- the upload and response URLs ---------------------------------------------------------

    def _files_get_upload_url(self, params: JSONDict) -> JSONDict:
        filename = str(params.get("filename") or "")
        try:
            length = int(params.get("length", ""))
        except (TypeError, ValueError):
            length = -1
        if not filename or length < 0:
            return slack_error("invalid_arguments", "[ERROR] filename and length are required")
        file_id = self._new_id("F")
        self._files[file_id] = FileRecord(id=file_id, filename=filename, length=length)
        return {"ok": True, "upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def _upload(self, file_id: str, content_type: str, raw: bytes) -> Reply:
        with self._lock:
            fault = self._take_fault("upload_url")
            if fault is not None:
                return fault
            record = self._files.get(file_id)
            if record is None:
                return Reply(404, slack_error("file_not_found"), raw=b"file_not_found")
            data = raw
            # The upload URL takes raw bytes or a multipart form with the bytes in `file`.
            if content_type.lower().startswith("multipart/form-data"):
                form = parse_multipart(content_type, raw)
                file_part = form.get("file", b"")
                data = file_part if isinstance(file_part, bytes) else str(file_part).encode("utf-8")
            record.content = data
        return Reply(200, {"ok": True, "size": len(data)}, raw=f"OK - {len(data)}".encode())

    def _respond(self, token: str, params: JSONDict) -> tuple[Reply, str]:
        with self._lock:
            target = self._response_targets.get(token)
            if target is None:
                return Reply(404, slack_error("invalid_url")), token
            fault = self._take_fault("response_url")
            if fault is not None:
                return fault, target.name
            target.uses += 1
            if target.uses > self.response_url_max_uses:
                return Reply(404, slack_error("used_url")), target.name
            body = decode_json_fields(params)
            if flag(body.get("delete_original")):
                if target.channel and target.message_ts:
                    self._remove_message(target.channel, target.message_ts)
                    self._ephemerals = [e for e in self._ephemerals if e["ts"] != target.message_ts]
                return Reply(200, {"ok": True}), target.name
            content = self._message_content(body, require=not flag(body.get("replace_original")))
            if "error" in content:
                return Reply(400, content), target.name
            self._apply_response(target, body, content)
        return Reply(200, {"ok": True}), target.name

    def _apply_response(self, target: ResponseTarget, body: JSONDict, content: JSONDict) -> None:
        if not target.channel:
            return
        if flag(body.get("replace_original")) and target.message_ts:
            original = self._find_message(target.channel, target.message_ts) or next(
                (e for e in self._ephemerals if e["ts"] == target.message_ts), None
            )
            if original is not None:
                original.update(content)
                if "blocks" in content and not content["blocks"]:
                    del original["blocks"]
            return
        content.setdefault("text", "")
        if body.get("response_type") == "in_channel":
            ts = self._next_ts()
            message: JSONDict = {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id, "ts": ts}
            message.update(content)
            if body.get("thread_ts"):
                message["thread_ts"] = str(body["thread_ts"])
                self._note_reply(target.channel, message["thread_ts"], ts)
            self._messages.setdefault(target.channel, []).append(message)
        else:
            self._ephemerals.append(
                {"channel": target.channel, "user": target.user or "", "ts": self._next_ts(), **content}
            )


def _matches(predicate: Callable[[Call], bool], call: Call) -> bool:
    try:
        return bool(predicate(call))
    except (LookupError, TypeError, AttributeError):
        # Predicates are written for the call they want (c.params["channel"]); other calls
        # lacking that shape simply do not match.
        return False
