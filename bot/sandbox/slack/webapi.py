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
this module too and must not pull test dependencies into it.
"""

from __future__ import annotations

import bisect
import contextlib
import copy
import email.parser
import email.policy
import itertools
import json
import logging
import math
import mimetypes
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from slack_sdk.signature import SignatureVerifier

__all__ = [
    "MESSAGE_TEXT_BUDGET",
    "Call",
    "LocalSlack",
    "SlackRequests",
    "UploadedFile",
    "block_kit_errors",
]

log = logging.getLogger(__name__)

JSONDict = dict[str, Any]

# Block Kit limits Slack enforces server-side (https://docs.slack.dev/reference/block-kit).
MESSAGE_MAX_BLOCKS = 50
VIEW_MAX_BLOCKS = 100
SECTION_TEXT_MAX = 3000
SECTION_FIELDS_MAX = 10
SECTION_FIELD_TEXT_MAX = 2000
HEADER_TEXT_MAX = 150
MARKDOWN_BLOCK_TEXT_MAX = 12000
BUTTON_TEXT_MAX = 75
BUTTON_VALUE_MAX = 2000
BUTTON_URL_MAX = 3000
ACTION_ID_MAX = 255
BLOCK_ID_MAX = 255
ACTIONS_ELEMENTS_MAX = 25
CONTEXT_ELEMENTS_MAX = 10
VIEW_TITLE_MAX = 24
VIEW_PRIVATE_METADATA_MAX = 3000
CALLBACK_ID_MAX = 255
MESSAGE_TEXT_MAX = 40000
# Slack answers msg_blocks_too_long somewhere around 12-13k characters of block text, depending
# on the block mix (it is undocumented). Erring low makes tests flag a message before Slack would.
MESSAGE_TEXT_BUDGET = 12000

# Fields Slack accepts as JSON strings in form-encoded calls; decoded so tests see Python objects.
_JSON_STRING_FIELDS = frozenset({"blocks", "attachments", "view", "files", "metadata"})


# --------------------------------------------------------------------------------------------
# Records


@dataclass(frozen=True)
class Call:
    """One request the local Slack answered, as the bot sent it and as it was answered.

    ``method`` is the Web API method (``chat.postMessage``), or ``response_url`` /
    ``upload_url`` for posts to the URLs this server hands out. Every attempt is recorded,
    including the ones answered 429/5xx, so retries are visible. ``target`` names the
    response_url (the name given to :meth:`LocalSlack.response_url`) or the uploaded file id.
    """

    method: str
    params: JSONDict
    headers: dict[str, str]
    at: float
    status: int
    response: JSONDict
    target: str = ""

    @property
    def ok(self) -> bool:
        return self.status == 200 and bool(self.response.get("ok"))

    def describe(self) -> str:
        """One line for listings: what was asked and how it was answered."""
        outcome = "ok" if self.ok else str(self.response.get("error") or "failed")
        parts = [f"{self.method}{f'[{self.target}]' if self.target else ''}", f"{self.status} {outcome}"]
        for key in ("channel", "channel_id", "ts", "thread_ts", "user", "usergroup", "trigger_id"):
            if self.params.get(key):
                parts.append(f"{key}={self.params[key]}")
        text = self.params.get("text")
        if isinstance(text, str) and text:
            parts.append(f"text={_shorten(text, 60)!r}")
        if isinstance(self.params.get("blocks"), list):
            parts.append(f"blocks={len(self.params['blocks'])}")
        return " ".join(parts)


@dataclass(frozen=True)
class UploadedFile:
    """A file that went through the files upload v2 flow (bytes plus what it was shared with)."""

    id: str
    filename: str
    title: str
    length: int
    content: bytes
    completed: bool
    channel_id: str | None
    thread_ts: str | None
    initial_comment: str | None


@dataclass
class _FileRecord:
    id: str
    filename: str
    length: int
    title: str = ""
    content: bytes = b""
    completed: bool = False
    channel_id: str | None = None
    thread_ts: str | None = None
    initial_comment: str | None = None

    def snapshot(self) -> UploadedFile:
        return UploadedFile(
            id=self.id,
            filename=self.filename,
            title=self.title,
            length=self.length,
            content=self.content,
            completed=self.completed,
            channel_id=self.channel_id,
            thread_ts=self.thread_ts,
            initial_comment=self.initial_comment,
        )


@dataclass
class _ResponseTarget:
    name: str
    channel: str | None
    message_ts: str | None
    user: str | None
    uses: int = 0


@dataclass
class _Trigger:
    issued_at: float
    used: bool = False


@dataclass
class _Fault:
    status: int
    retry_after: int | None = None


@dataclass
class _Bucket:
    tokens: float
    updated: float


@dataclass
class _Reply:
    status: int
    body: JSONDict
    headers: dict[str, str] = field(default_factory=dict)
    # Upload URLs answer plain text like Slack's file servers; everything else is JSON.
    raw: bytes | None = None
    # Act on the call, then close the connection without answering (a lost response).
    drop: bool = False

    def encoded(self) -> tuple[bytes, str]:
        if self.raw is not None:
            return self.raw, "text/plain; charset=utf-8"
        return json.dumps(self.body).encode("utf-8"), "application/json; charset=utf-8"


class _BadRequest(Exception):
    """The body could not be parsed; Slack answers these with an ok:false JSON body."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


# --------------------------------------------------------------------------------------------
# Block Kit validation


def block_kit_errors(blocks: Any, *, surface: str = "message") -> list[str]:
    """Return Slack-style ``[ERROR] … [json-pointer:…]`` messages for ``blocks``; empty if valid.

    ``surface`` is ``"message"`` (50 blocks) or ``"view"`` (100 blocks, pointers under /view).
    Only the limits Slack enforces that our renderers can plausibly break are checked.
    """
    root = "/view/blocks" if surface == "view" else "/blocks"
    max_blocks = VIEW_MAX_BLOCKS if surface == "view" else MESSAGE_MAX_BLOCKS
    if not isinstance(blocks, list):
        return [f"[ERROR] must be an array [json-pointer:{root}]"]
    errors: list[str] = []
    if len(blocks) > max_blocks:
        errors.append(_too_many(max_blocks, root))
    seen_block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        pointer = f"{root}/{index}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"[ERROR] missing required field: type [json-pointer:{pointer}]")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or len(block_id) > BLOCK_ID_MAX:
                errors.append(_too_long(BLOCK_ID_MAX, f"{pointer}/block_id"))
            elif block_id in seen_block_ids:
                # Slack refuses repeated block ids in one message; Bolt routes actions by them.
                errors.append(f"[ERROR] duplicate block_id {block_id!r} [json-pointer:{pointer}/block_id]")
            else:
                seen_block_ids.add(block_id)
        check = _BLOCK_CHECKS.get(block["type"])
        if check is not None:
            errors.extend(check(block, pointer))
    return errors


def _check_section(block: JSONDict, pointer: str) -> list[str]:
    errors: list[str] = []
    has_text = "text" in block and block["text"] is not None
    fields = block.get("fields")
    if not has_text and not fields:
        errors.append(f"[ERROR] must provide either text or fields [json-pointer:{pointer}]")
    if has_text:
        errors.extend(_check_text(block["text"], f"{pointer}/text", SECTION_TEXT_MAX))
    if fields is not None:
        if not isinstance(fields, list):
            errors.append(f"[ERROR] must be an array [json-pointer:{pointer}/fields]")
        else:
            if len(fields) > SECTION_FIELDS_MAX:
                errors.append(_too_many(SECTION_FIELDS_MAX, f"{pointer}/fields"))
            for i, item in enumerate(fields):
                errors.extend(_check_text(item, f"{pointer}/fields/{i}", SECTION_FIELD_TEXT_MAX))
    accessory = block.get("accessory")
    if isinstance(accessory, dict):
        errors.extend(_check_element(accessory, f"{pointer}/accessory"))
    return errors


def _check_header(block: JSONDict, pointer: str) -> list[str]:
    return _check_text(block.get("text"), f"{pointer}/text", HEADER_TEXT_MAX, plain_only=True)


def _check_actions(block: JSONDict, pointer: str) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        return [f"[ERROR] must provide at least 1 item [json-pointer:{pointer}/elements]"]
    errors: list[str] = []
    if len(elements) > ACTIONS_ELEMENTS_MAX:
        errors.append(_too_many(ACTIONS_ELEMENTS_MAX, f"{pointer}/elements"))
    seen_action_ids: set[str] = set()
    for i, element in enumerate(elements):
        element_pointer = f"{pointer}/elements/{i}"
        if not isinstance(element, dict):
            errors.append(f"[ERROR] must be an object [json-pointer:{element_pointer}]")
            continue
        errors.extend(_check_element(element, element_pointer))
        action_id = element.get("action_id")
        if isinstance(action_id, str):
            if action_id in seen_action_ids:
                errors.append(
                    f"[ERROR] duplicate action_id {action_id!r} [json-pointer:{element_pointer}/action_id]"
                )
            seen_action_ids.add(action_id)
    return errors


def _check_context(block: JSONDict, pointer: str) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        return [f"[ERROR] must provide at least 1 item [json-pointer:{pointer}/elements]"]
    if len(elements) > CONTEXT_ELEMENTS_MAX:
        return [_too_many(CONTEXT_ELEMENTS_MAX, f"{pointer}/elements")]
    return []


def _check_markdown(block: JSONDict, pointer: str) -> list[str]:
    text = block.get("text")
    if not isinstance(text, str) or not text:
        return [f"[ERROR] must be more than 0 characters [json-pointer:{pointer}/text]"]
    if len(text) > MARKDOWN_BLOCK_TEXT_MAX:
        return [_too_long(MARKDOWN_BLOCK_TEXT_MAX, f"{pointer}/text")]
    return []


def _check_element(element: JSONDict, pointer: str) -> list[str]:
    errors: list[str] = []
    action_id = element.get("action_id")
    if isinstance(action_id, str) and len(action_id) > ACTION_ID_MAX:
        errors.append(_too_long(ACTION_ID_MAX, f"{pointer}/action_id"))
    if element.get("type") == "button":
        errors.extend(_check_text(element.get("text"), f"{pointer}/text", BUTTON_TEXT_MAX, plain_only=True))
        value = element.get("value")
        if isinstance(value, str) and len(value) > BUTTON_VALUE_MAX:
            errors.append(_too_long(BUTTON_VALUE_MAX, f"{pointer}/value"))
        url = element.get("url")
        if isinstance(url, str) and len(url) > BUTTON_URL_MAX:
            errors.append(_too_long(BUTTON_URL_MAX, f"{pointer}/url"))
    return errors


def _check_text(obj: Any, pointer: str, max_len: int, *, plain_only: bool = False) -> list[str]:
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if not isinstance(obj, dict) or obj.get("type") not in allowed:
        return [f"[ERROR] must be a {' or '.join(allowed)} text object [json-pointer:{pointer}]"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        # Slack rejects empty text, a classic result of rendering an empty value.
        return [f"[ERROR] must be more than 0 characters [json-pointer:{pointer}/text]"]
    if len(text) > max_len:
        return [_too_long(max_len, f"{pointer}/text")]
    return []


_BLOCK_CHECKS: dict[str, Callable[[JSONDict, str], list[str]]] = {
    "section": _check_section,
    "header": _check_header,
    "actions": _check_actions,
    "context": _check_context,
    "markdown": _check_markdown,
}


def _too_long(max_len: int, pointer: str) -> str:
    return f"[ERROR] must be less than {max_len + 1} characters [json-pointer:{pointer}]"


def _too_many(max_items: int, pointer: str) -> str:
    return f"[ERROR] no more than {max_items} items allowed [json-pointer:{pointer}]"


def _text_length(value: Any) -> int:
    """Characters of every ``text`` string inside a Block Kit structure."""
    if isinstance(value, list):
        return sum(_text_length(item) for item in value)
    if isinstance(value, dict):
        total = 0
        for key, item in value.items():
            total += len(item) if key == "text" and isinstance(item, str) else _text_length(item)
        return total
    return 0


# --------------------------------------------------------------------------------------------
# Small helpers shared by both halves


def default_user(user_id: str, team_id: str = "T0001") -> JSONDict:
    """The users.info profile served for a user nobody configured: a name derived from the id."""
    name = user_id.lower()
    real_name = f"User {user_id}"
    return {
        "id": user_id,
        "team_id": team_id,
        "name": name,
        "real_name": real_name,
        "deleted": False,
        "is_bot": False,
        "is_admin": False,
        "tz": "UTC",
        "tz_offset": 0,
        "profile": {"real_name": real_name, "display_name": name, "email": f"{name}@example.com"},
    }


def default_channel(channel_id: str) -> JSONDict:
    """conversations.info's channel for an id nobody configured."""
    is_im = channel_id.startswith("D")
    return {
        "id": channel_id,
        "name": "directmessage" if is_im else channel_id.lower(),
        "is_channel": not is_im,
        "is_im": is_im,
        "is_private": is_im,
        "is_archived": False,
        "is_member": True,
    }


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _flag(value: Any) -> bool:
    """Form posts carry booleans as strings; JSON posts as booleans."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _decode_json_fields(params: JSONDict) -> JSONDict:
    decoded = dict(params)
    for key in _JSON_STRING_FIELDS & decoded.keys():
        value = decoded[key]
        if isinstance(value, str) and value.strip():
            # A string that is not JSON stays a string, so validation reports it as Slack would.
            with contextlib.suppress(ValueError):
                decoded[key] = json.loads(value)
    return decoded


def _parse_body(content_type: str, raw: bytes) -> JSONDict:
    if not raw:
        return {}
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _BadRequest("invalid_json") from exc
        if not isinstance(body, dict):
            raise _BadRequest("invalid_json")
        return body
    if media_type == "multipart/form-data":
        return _parse_multipart(content_type, raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _BadRequest("invalid_form_data") from exc
    return dict(parse_qsl(text, keep_blank_values=True))


def _parse_multipart(content_type: str, raw: bytes) -> JSONDict:
    # email's MIME parser is the stdlib's remaining multipart reader now that cgi is gone.
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    if not message.is_multipart():
        raise _BadRequest("invalid_form_data")
    fields: JSONDict = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fields[name] = data if part.get_filename() else data.decode("utf-8", "replace")
    return fields


def _error(error: str, *messages: str) -> JSONDict:
    body: JSONDict = {"ok": False, "error": error}
    if messages:
        body["response_metadata"] = {"messages": list(messages)}
    return body


def _fault_error(status: int) -> str:
    if status == 429:
        return "ratelimited"
    if status >= 500:
        return "internal_error"
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_")
    except ValueError:
        return "request_failed"


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


class LocalSlack:
    """A loopback HTTP server speaking the Slack Web API methods the bot uses.

    Thread-safe: the server answers each request on its own thread and every accessor returns
    a snapshot. ``on_call`` runs on the server thread that answered, after the call is recorded
    and before the HTTP response is sent, so what it prints precedes the bot's next step.
    """

    #: Slack accepts a trigger_id for views.open for about three seconds after the user acted.
    trigger_ttl: float = 3.0
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
        self.bot_token = bot_token
        self.on_call = on_call
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.user_groups: dict[str, list[str]] = {}
        self.users: dict[str, JSONDict] = {}
        # Socket Mode: apps.connections.open (called with the app-level token) hands out this URL.
        self.app_token = "xapp-test"
        self.socket_mode_url: str | None = None
        self.channels: dict[str, JSONDict] = {}

        self._host = host
        self._port = port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._messages: dict[str, list[JSONDict]] = {}
        self._ephemerals: list[JSONDict] = []
        self._views: dict[str, JSONDict] = {}
        self._files: dict[str, _FileRecord] = {}
        self._response_targets: dict[str, _ResponseTarget] = {}
        self._triggers: dict[str, _Trigger] = {}
        self._faults: dict[str, deque[_Fault]] = {}
        self._drops: dict[str, int] = {}
        self._channel_rate: float | None = None
        self._channel_burst = 1.0
        self._buckets: dict[str, _Bucket] = {}
        self._last_ts_us = 0
        self._ids = itertools.count(1)

        self._methods: dict[str, _ApiMethod] = {
            "auth.test": self._auth_test,
            "chat.postMessage": self._chat_post_message,
            "chat.update": self._chat_update,
            "chat.postEphemeral": self._chat_post_ephemeral,
            "chat.delete": self._chat_delete,
            "views.open": self._views_open,
            "views.update": self._views_update,
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
        return f"http://{host}:{port}"

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

    # -- what a user would see ---------------------------------------------------------------

    def messages(self, channel: str) -> list[JSONDict]:
        """Every message now in ``channel`` (top level and thread replies), oldest first.

        Replies carry ``thread_ts``; a parent with replies carries ``thread_ts == ts`` and
        ``reply_count`` like conversations.history shows it.
        """
        with self._lock:
            return copy.deepcopy(self._messages.get(channel, []))

    def thread(self, channel: str, ts: str) -> list[JSONDict]:
        """The replies under the message ``ts`` (the parent itself excluded), oldest first."""
        with self._lock:
            return [
                copy.deepcopy(m)
                for m in self._messages.get(channel, [])
                if m.get("thread_ts") == ts and m["ts"] != ts
            ]

    def ephemerals(self, channel: str, user: str | None = None) -> list[JSONDict]:
        """Ephemeral messages (chat.postEphemeral and ephemeral response_url posts) in ``channel``."""
        with self._lock:
            return [
                copy.deepcopy(m)
                for m in self._ephemerals
                if m["channel"] == channel and (user is None or m["user"] == user)
            ]

    @property
    def views(self) -> dict[str, JSONDict]:
        """Modals opened with views.open, by view id, as last updated."""
        with self._lock:
            return copy.deepcopy(self._views)

    @property
    def files(self) -> list[UploadedFile]:
        """Files that got an upload URL, in order; ``completed`` once completeUploadExternal ran."""
        with self._lock:
            return [record.snapshot() for record in self._files.values()]

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
            self._response_targets[token] = _ResponseTarget(label, channel, message_ts, user)
        return f"{self.base_url}/response/{token}"

    def trigger_id(self) -> str:
        """A trigger_id that views.open accepts once, within :attr:`trigger_ttl` seconds."""
        trigger = _new_trigger_id()
        with self._lock:
            self._triggers[trigger] = _Trigger(issued_at=time.monotonic())
        return trigger

    # -- failure injection -------------------------------------------------------------------

    def rate_limit(self, method: str, times: int, retry_after: int = 1) -> None:
        """Answer the next ``times`` calls to ``method`` with HTTP 429 and ``Retry-After``."""
        self._inject(method, times, _Fault(status=429, retry_after=retry_after))

    def drop_response(self, method: str, times: int = 1) -> None:
        """The next ``times`` calls to ``method`` take effect, but their answer is lost on the way back
        (the connection closes): the case where a retry would act twice."""
        with self._lock:
            self._drops[method] = self._drops.get(method, 0) + times

    def fail(self, method: str, times: int, status: int = 500) -> None:
        """Answer the next ``times`` calls to ``method`` with HTTP ``status``."""
        if status < 400:
            raise ValueError(f"status must be an HTTP error, got {status}")
        self._inject(method, times, _Fault(status=status))

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

    def _inject(self, method: str, times: int, fault: _Fault) -> None:
        if times < 0:
            raise ValueError("times must not be negative")
        with self._lock:
            queue = self._faults.setdefault(method, deque())
            queue.extend(_Fault(fault.status, fault.retry_after) for _ in range(times))

    def _take_fault(self, method: str) -> _Reply | None:
        queue = self._faults.get(method)
        if not queue:
            return None
        fault = queue.popleft()
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        return _Reply(fault.status, _error(_fault_error(fault.status)), headers)

    # -- request plumbing --------------------------------------------------------------------

    def _dispatch(self, path: str, headers: dict[str, str], raw: bytes) -> _Reply:
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
                params.update(_parse_body(content_type, raw))
                if method == "response_url":
                    params = _unwrap_payload(params)
                    reply, target = self._respond(target, params)
                elif url.path.startswith("/api/"):
                    reply = self._api(method, params, lowered)
                else:
                    reply = _Reply(404, _error("not_found"))
        except _BadRequest as exc:
            reply = _Reply(200, _error(exc.error))
        call = Call(
            method=method,
            params=_decode_json_fields(params),
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

    def _api(self, method: str, params: JSONDict, headers: Mapping[str, str]) -> _Reply:
        with self._lock:
            fault = self._take_fault(method)
            if fault is not None:
                return fault
            handler = self._methods.get(method)
            if handler is None:
                return _Reply(200, _error("unknown_method"))
            token = self.app_token if method == "apps.connections.open" else self.bot_token
            auth_error = self._auth_error(params, headers, token)
            if auth_error is not None:
                return _Reply(200, _error(auth_error))
            params = _decode_json_fields(params)
            if method == "chat.postMessage":
                retry_after = self._take_channel_token(str(params.get("channel") or ""))
                if retry_after is not None:
                    return _Reply(429, _error("ratelimited"), {"Retry-After": str(retry_after)})
            reply = _Reply(200, handler(params))
            if self._drops.get(method, 0) > 0:
                self._drops[method] -= 1
                reply.drop = True
            return reply

    def _auth_error(self, params: JSONDict, headers: Mapping[str, str], expected: str) -> str | None:
        token = params.get("token")
        authorization = headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            token = authorization[7:].strip()
        if not token:
            return "not_authed"
        return None if token == expected else "invalid_auth"

    def _take_channel_token(self, channel: str) -> int | None:
        """Spend a token from ``channel``'s bucket; return Retry-After seconds when empty."""
        if self._channel_rate is None or not channel:
            return None
        now = time.monotonic()
        bucket = self._buckets.setdefault(channel, _Bucket(tokens=self._channel_burst, updated=now))
        bucket.tokens = min(self._channel_burst, bucket.tokens + (now - bucket.updated) * self._channel_rate)
        bucket.updated = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return None
        # Slack sends whole seconds; round up so a client honouring it is never early.
        return max(1, math.ceil((1 - bucket.tokens) / self._channel_rate))

    def _next_ts(self) -> str:
        # Real-clock microseconds keep ts meaningful as a time; bumping on ties keeps it unique.
        now_us = int(time.time() * 1_000_000)
        self._last_ts_us = max(now_us, self._last_ts_us + 1)
        seconds, micros = divmod(self._last_ts_us, 1_000_000)
        return f"{seconds}.{micros:06d}"

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):08X}"

    # -- Web API methods (called with the lock held) ------------------------------------------

    def _auth_test(self, params: JSONDict) -> JSONDict:
        return {
            "ok": True,
            "url": f"https://{self.team_domain}.slack.com/",
            "team": "Local Slack",
            "user": "infer-bot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _chat_post_message(self, params: JSONDict) -> JSONDict:
        channel = str(params.get("channel") or "")
        if not channel:
            return _error("channel_not_found")
        content = self._message_content(params, require=True)
        if "error" in content:
            return content
        ts = self._next_ts()
        message: JSONDict = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "team": self.team_id,
            "ts": ts,
            **content,
        }
        thread_ts = params.get("thread_ts")
        if thread_ts:
            message["thread_ts"] = str(thread_ts)
            self._note_reply(channel, str(thread_ts), ts)
        self._messages.setdefault(channel, []).append(message)
        return {"ok": True, "channel": channel, "ts": ts, "message": copy.deepcopy(message)}

    def _chat_update(self, params: JSONDict) -> JSONDict:
        channel = str(params.get("channel") or "")
        ts = str(params.get("ts") or "")
        if not channel:
            return _error("channel_not_found")
        message = self._find_message(channel, ts)
        if message is None:
            return _error("message_not_found")
        content = self._message_content(params, require=False)
        if "error" in content:
            return content
        # Slack keeps fields the update leaves out (an empty blocks list is how to drop blocks).
        message.update(content)
        if "blocks" in content and not content["blocks"]:
            del message["blocks"]
        message["edited"] = {"user": self.bot_user_id, "ts": self._next_ts()}
        return {
            "ok": True,
            "channel": channel,
            "ts": ts,
            "text": message.get("text", ""),
            "message": copy.deepcopy(message),
        }

    def _chat_post_ephemeral(self, params: JSONDict) -> JSONDict:
        channel = str(params.get("channel") or "")
        user = str(params.get("user") or "")
        if not channel:
            return _error("channel_not_found")
        if not user:
            return _error("user_not_found")
        content = self._message_content(params, require=True)
        if "error" in content:
            return content
        ts = self._next_ts()
        ephemeral: JSONDict = {"channel": channel, "user": user, "ts": ts, **content}
        if params.get("thread_ts"):
            ephemeral["thread_ts"] = str(params["thread_ts"])
        self._ephemerals.append(ephemeral)
        return {"ok": True, "message_ts": ts}

    def _chat_delete(self, params: JSONDict) -> JSONDict:
        channel = str(params.get("channel") or "")
        ts = str(params.get("ts") or "")
        if not channel:
            return _error("channel_not_found")
        if not self._remove_message(channel, ts):
            return _error("message_not_found")
        return {"ok": True, "channel": channel, "ts": ts}

    def _views_open(self, params: JSONDict) -> JSONDict:
        trigger_id = str(params.get("trigger_id") or "")
        if not trigger_id:
            return _error("invalid_arguments", "[ERROR] missing required field: trigger_id")
        trigger = self._triggers.get(trigger_id)
        # Ids issued by trigger_id() are policed like Slack's; others (hand-built) are accepted.
        if trigger is not None:
            if trigger.used:
                return _error("exchanged_trigger_id")
            if time.monotonic() - trigger.issued_at > self.trigger_ttl:
                return _error("expired_trigger_id")
        view = params.get("view")
        problems = _view_errors(view)
        if problems:
            return _error("invalid_arguments", *problems)
        if trigger is not None:
            trigger.used = True
        assert isinstance(view, dict)  # _view_errors guarantees it
        view_id = self._new_id("V")
        stored = self._view_record(view_id, view, root_view_id=view_id)
        self._views[view_id] = stored
        return {"ok": True, "view": copy.deepcopy(stored)}

    def _views_update(self, params: JSONDict) -> JSONDict:
        view_id = str(params.get("view_id") or "")
        external_id = str(params.get("external_id") or "")
        if not view_id and external_id:
            view_id = next((vid for vid, v in self._views.items() if v.get("external_id") == external_id), "")
        current = self._views.get(view_id)
        if current is None:
            return _error("not_found")
        given_hash = params.get("hash")
        if given_hash and given_hash != current["hash"]:
            return _error("hash_conflict")
        view = params.get("view")
        problems = _view_errors(view)
        if problems:
            return _error("invalid_arguments", *problems)
        assert isinstance(view, dict)  # _view_errors guarantees it
        stored = self._view_record(view_id, view, root_view_id=current["root_view_id"])
        self._views[view_id] = stored
        return {"ok": True, "view": copy.deepcopy(stored)}

    def _users_info(self, params: JSONDict) -> JSONDict:
        user_id = str(params.get("user") or "")
        if not user_id:
            return _error("user_not_found")
        return {"ok": True, "user": self.user_profile(user_id)}

    def _usergroups_users_list(self, params: JSONDict) -> JSONDict:
        group = str(params.get("usergroup") or "")
        if group not in self.user_groups:
            return _error("no_such_subteam")
        return {"ok": True, "users": list(self.user_groups[group])}

    def _conversations_info(self, params: JSONDict) -> JSONDict:
        channel_id = str(params.get("channel") or "")
        if not channel_id:
            return _error("channel_not_found")
        return {"ok": True, "channel": self.channel_info(channel_id)}

    def _apps_connections_open(self, params: JSONDict) -> JSONDict:
        if not self.socket_mode_url:
            return _error("socket_mode_not_enabled")
        return {"ok": True, "url": self.socket_mode_url}

    def _files_get_upload_url(self, params: JSONDict) -> JSONDict:
        filename = str(params.get("filename") or "")
        try:
            length = int(params.get("length", ""))
        except (TypeError, ValueError):
            length = -1
        if not filename or length < 0:
            return _error("invalid_arguments", "[ERROR] filename and length are required")
        file_id = self._new_id("F")
        self._files[file_id] = _FileRecord(id=file_id, filename=filename, length=length)
        return {"ok": True, "upload_url": f"{self.base_url}/upload/{file_id}", "file_id": file_id}

    def _files_complete_upload(self, params: JSONDict) -> JSONDict:
        entries = params.get("files")
        if not isinstance(entries, list) or not entries:
            return _error("invalid_arguments", "[ERROR] files must be a non-empty array")
        records: list[_FileRecord] = []
        for entry in entries:
            record = self._files.get(str(entry.get("id"))) if isinstance(entry, dict) else None
            if record is None:
                return _error("file_not_found")
            records.append(record)
        channel_id = str(params.get("channel_id") or params.get("channels") or "").split(",")[0] or None
        thread_ts = str(params["thread_ts"]) if params.get("thread_ts") else None
        comment = str(params["initial_comment"]) if params.get("initial_comment") else None
        for record, entry in zip(records, entries, strict=True):
            record.title = str(entry.get("title") or record.filename)
            record.completed = True
            record.channel_id, record.thread_ts, record.initial_comment = channel_id, thread_ts, comment
        if channel_id is not None:
            self._share_files(channel_id, thread_ts, comment, records)
        return {"ok": True, "files": [self._file_object(r, channel_id) for r in records]}

    # -- state helpers (lock held) ------------------------------------------------------------

    def user_profile(self, user_id: str) -> JSONDict:
        """users.info's user: the configured entry in :attr:`users` over the synthesized one."""
        profile = default_user(user_id, self.team_id)
        override = self.users.get(user_id, {})
        merged = {**profile, **override}
        merged["profile"] = {**profile["profile"], **override.get("profile", {})}
        return merged

    def channel_info(self, channel_id: str) -> JSONDict:
        return {**default_channel(channel_id), **self.channels.get(channel_id, {})}

    def find_message(self, channel: str, ts: str) -> JSONDict | None:
        """A copy of the message ``ts`` in ``channel`` as it stands now, or None."""
        with self._lock:
            message = self._find_message(channel, ts)
            return copy.deepcopy(message) if message is not None else None

    def _find_message(self, channel: str, ts: str) -> JSONDict | None:
        return next((m for m in self._messages.get(channel, []) if m["ts"] == ts), None)

    def _remove_message(self, channel: str, ts: str) -> bool:
        messages = self._messages.get(channel, [])
        for index, message in enumerate(messages):
            if message["ts"] == ts:
                del messages[index]
                parent_ts = message.get("thread_ts")
                if parent_ts and parent_ts != ts:
                    self._recount_replies(channel, parent_ts)
                return True
        return False

    def _note_reply(self, channel: str, parent_ts: str, reply_ts: str) -> None:
        parent = self._find_message(channel, parent_ts)
        if parent is not None:
            parent["thread_ts"] = parent_ts
            parent["latest_reply"] = reply_ts
            parent["reply_count"] = int(parent.get("reply_count", 0)) + 1

    def _recount_replies(self, channel: str, parent_ts: str) -> None:
        parent = self._find_message(channel, parent_ts)
        if parent is not None:
            replies = [m for m in self._messages.get(channel, []) if m.get("thread_ts") == parent_ts]
            parent["reply_count"] = sum(1 for m in replies if m["ts"] != parent_ts)

    def _message_content(self, params: JSONDict, *, require: bool) -> JSONDict:
        """The text/blocks/attachments/metadata of a post or update, or a Slack error body."""
        content: JSONDict = {}
        text = params.get("text")
        if text is not None:
            if len(str(text)) > MESSAGE_TEXT_MAX:
                return _error("msg_too_long")
            content["text"] = str(text)
        if "blocks" in params and params["blocks"] not in (None, ""):
            blocks = params["blocks"]
            if not isinstance(blocks, list):
                return _error("invalid_blocks_format")
            problems = block_kit_errors(blocks)
            if problems:
                return _error("invalid_blocks", *problems)
            if _text_length(blocks) > MESSAGE_TEXT_BUDGET:
                return _error("msg_blocks_too_long")
            content["blocks"] = blocks
        for key in ("attachments", "metadata"):
            if params.get(key) not in (None, ""):
                content[key] = params[key]
        if require and not (content.get("text") or content.get("blocks") or content.get("attachments")):
            return _error("no_text")
        if require:
            content.setdefault("text", "")
        return content

    def _view_record(self, view_id: str, view: JSONDict, *, root_view_id: str) -> JSONDict:
        return {
            "id": view_id,
            "team_id": self.team_id,
            "type": view.get("type", "modal"),
            "title": view.get("title"),
            "submit": view.get("submit"),
            "close": view.get("close"),
            "blocks": view.get("blocks", []),
            "private_metadata": view.get("private_metadata", ""),
            "callback_id": view.get("callback_id", ""),
            "external_id": view.get("external_id", ""),
            "state": {"values": {}},
            "hash": f"{int(time.time())}.{secrets.token_hex(4)}",
            "clear_on_close": bool(view.get("clear_on_close", False)),
            "notify_on_close": bool(view.get("notify_on_close", False)),
            "root_view_id": root_view_id,
            "previous_view_id": None,
            "app_id": self.app_id,
            "bot_id": self.bot_id,
        }

    def _share_files(
        self, channel: str, thread_ts: str | None, comment: str | None, records: list[_FileRecord]
    ) -> None:
        # Slack posts a message carrying the files where they were shared; tests look for it there.
        ts = self._next_ts()
        message: JSONDict = {
            "type": "message",
            "user": self.bot_user_id,
            "bot_id": self.bot_id,
            "ts": ts,
            "text": comment or "",
            "files": [self._file_object(r, channel) for r in records],
            "upload": True,
        }
        if thread_ts:
            message["thread_ts"] = thread_ts
            self._note_reply(channel, thread_ts, ts)
        self._messages.setdefault(channel, []).append(message)

    def _file_object(self, record: _FileRecord, channel_id: str | None) -> JSONDict:
        return {
            "id": record.id,
            "name": record.filename,
            "title": record.title,
            "mimetype": mimetypes.guess_type(record.filename)[0] or "application/octet-stream",
            "size": len(record.content),
            "user": self.bot_user_id,
            "channels": [channel_id] if channel_id else [],
        }

    # -- the non-API URLs --------------------------------------------------------------------

    def _upload(self, file_id: str, content_type: str, raw: bytes) -> _Reply:
        with self._lock:
            fault = self._take_fault("upload_url")
            if fault is not None:
                return fault
            record = self._files.get(file_id)
            if record is None:
                return _Reply(404, _error("file_not_found"), raw=b"file_not_found")
            data = raw
            # The upload URL takes raw bytes or a multipart form with the bytes in `file`.
            if content_type.lower().startswith("multipart/form-data"):
                form = _parse_multipart(content_type, raw)
                file_part = form.get("file", b"")
                data = file_part if isinstance(file_part, bytes) else str(file_part).encode("utf-8")
            record.content = data
        return _Reply(200, {"ok": True, "size": len(data)}, raw=f"OK - {len(data)}".encode())

    def _respond(self, token: str, params: JSONDict) -> tuple[_Reply, str]:
        with self._lock:
            target = self._response_targets.get(token)
            if target is None:
                return _Reply(404, _error("invalid_url")), token
            fault = self._take_fault("response_url")
            if fault is not None:
                return fault, target.name
            target.uses += 1
            if target.uses > self.response_url_max_uses:
                return _Reply(404, _error("used_url")), target.name
            body = _decode_json_fields(params)
            if _flag(body.get("delete_original")):
                if target.channel and target.message_ts:
                    self._remove_message(target.channel, target.message_ts)
                    self._ephemerals = [e for e in self._ephemerals if e["ts"] != target.message_ts]
                return _Reply(200, {"ok": True}), target.name
            content = self._message_content(body, require=not _flag(body.get("replace_original")))
            if "error" in content:
                return _Reply(400, content), target.name
            self._apply_response(target, body, content)
        return _Reply(200, {"ok": True}), target.name

    def _apply_response(self, target: _ResponseTarget, body: JSONDict, content: JSONDict) -> None:
        if not target.channel:
            return
        if _flag(body.get("replace_original")) and target.message_ts:
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


def _unwrap_payload(params: JSONDict) -> JSONDict:
    """response_url bodies: Bolt's respond() posts JSON, older clients form ``payload=<json>``."""
    payload = params.get("payload")
    if isinstance(payload, str):
        try:
            decoded = json.loads(payload)
        except ValueError:
            return params
        if isinstance(decoded, dict):
            return decoded
    return params


def _matches(predicate: Callable[[Call], bool], call: Call) -> bool:
    try:
        return bool(predicate(call))
    except (LookupError, TypeError, AttributeError):
        # Predicates are written for the call they want (c.params["channel"]); other calls
        # lacking that shape simply do not match.
        return False


def _view_errors(view: Any) -> list[str]:
    if not isinstance(view, dict):
        return ["[ERROR] missing required field: view [json-pointer:/view]"]
    errors: list[str] = []
    if view.get("type") not in ("modal", "home"):
        errors.append("[ERROR] must be one of modal, home [json-pointer:/view/type]")
    if view.get("type") == "modal" or "title" in view:
        errors.extend(_check_text(view.get("title"), "/view/title", VIEW_TITLE_MAX, plain_only=True))
    for key in ("submit", "close"):
        if view.get(key) is not None:
            errors.extend(_check_text(view[key], f"/view/{key}", VIEW_TITLE_MAX, plain_only=True))
    if len(str(view.get("private_metadata", ""))) > VIEW_PRIVATE_METADATA_MAX:
        errors.append(_too_long(VIEW_PRIVATE_METADATA_MAX, "/view/private_metadata"))
    if len(str(view.get("callback_id", ""))) > CALLBACK_ID_MAX:
        errors.append(_too_long(CALLBACK_ID_MAX, "/view/callback_id"))
    errors.extend(block_kit_errors(view.get("blocks", []), surface="view"))
    return errors


def _new_trigger_id() -> str:
    # Slack's trigger ids look like "1234567890123.1234567890.0123abcd…".
    return f"{secrets.randbelow(10**13):013d}.{secrets.randbelow(10**10):010d}.{secrets.token_hex(16)}"


# --------------------------------------------------------------------------------------------
# What Slack sends to the bot


class SlackRequests:
    """Builds the HTTP requests Slack sends the bot, signed with the app's signing secret.

    Each builder returns ``(body, headers)``: the exact bytes to POST to ``/slack/events`` and
    the headers to send with them (Content-Type and Slack's signature headers included). With
    ``response_slack`` set, response_urls and trigger_ids come from that :class:`LocalSlack`,
    so what the bot does with them is recorded and policed there.
    """

    user_agent = "Slackbot 1.0 (+https://api.slack.com/robots)"
    form_content_type = "application/x-www-form-urlencoded"

    def __init__(
        self,
        signing_secret: str,
        response_slack: LocalSlack | None = None,
        team_id: str = "T0001",
        api_app_id: str = "A0001",
        *,
        team_domain: str = "local",
        verification_token: str = "local-verification-token",
    ) -> None:
        self.signing_secret = signing_secret
        self.response_slack = response_slack
        self.team_id = team_id
        self.api_app_id = api_app_id
        self.team_domain = team_domain
        # Slack still sends the deprecated verification token in every payload; Bolt ignores it.
        self.verification_token = verification_token
        self._verifier = SignatureVerifier(signing_secret)

    def sign(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """Slack's v0 signature headers for ``body`` (``timestamp`` defaults to now)."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = self._verifier.generate_signature(timestamp=ts, body=body)
        assert signature is not None  # only None when timestamp is None
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}

    def slash(
        self,
        text: str,
        *,
        user_id: str,
        channel_id: str,
        command: str = "/infer",
        extra_headers: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        fields = {
            "token": self.verification_token,
            "team_id": self.team_id,
            "team_domain": self.team_domain,
            "channel_id": channel_id,
            "channel_name": self._channel_name(channel_id),
            "user_id": user_id,
            "user_name": self._user_name(user_id),
            "command": command,
            "text": text,
            "api_app_id": self.api_app_id,
            "is_enterprise_install": "false",
            "response_url": self._response_url(f"{command} {text}".strip(), channel_id, None, user_id),
            "trigger_id": self._trigger_id(),
        }
        body = urlencode(fields).encode("utf-8")
        return body, self._headers(body, timestamp, extra_headers)

    def block_action(
        self,
        action_id: str,
        value: str,
        *,
        user_id: str,
        channel_id: str,
        message_ts: str,
        message: Mapping[str, Any] | None = None,
        block_id: str | None = None,
        action_type: str = "button",
        extra_headers: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A click on a button in the message ``message_ts``.

        ``message`` defaults to the message as ``response_slack`` holds it, so the payload
        carries the card's real blocks. ``block_id`` defaults to the block holding
        ``action_id`` in that message (else ``"b"``).
        """
        original = dict(message) if message is not None else self._stored_message(channel_id, message_ts)
        original.setdefault("ts", message_ts)
        element, found_block_id = _find_element(original.get("blocks"), action_id)
        action: JSONDict = {
            "action_id": action_id,
            "block_id": block_id or found_block_id or "b",
            "value": value,
            "type": action_type,
            "action_ts": f"{time.time():.6f}",
        }
        if element is not None and isinstance(element.get("text"), dict):
            action["text"] = element["text"]
        payload: JSONDict = {
            "type": "block_actions",
            "user": self._user(user_id),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "container": {
                "type": "message",
                "message_ts": message_ts,
                "channel_id": channel_id,
                "is_ephemeral": False,
            },
            "trigger_id": self._trigger_id(),
            "team": {"id": self.team_id, "domain": self.team_domain},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel_id, "name": self._channel_name(channel_id)},
            "message": original,
            "state": {"values": {}},
            "response_url": self._response_url(f"{action_id}:{value}", channel_id, message_ts, user_id),
            "actions": [action],
        }
        return self._payload_request(payload, timestamp, extra_headers)

    def view_submission(
        self,
        callback_id: str,
        values: Mapping[str, Any],
        *,
        user_id: str,
        private_metadata: str = "",
        view_id: str = "V1",
        extra_headers: Mapping[str, str] | None = None,
        timestamp: int | None = None,
    ) -> tuple[bytes, dict[str, str]]:
        """A modal submitted with ``values`` (``{block_id: {action_id: {type, value}}}``)."""
        stored = self.response_slack.views.get(view_id, {}) if self.response_slack is not None else {}
        view: JSONDict = {
            "id": view_id,
            "team_id": self.team_id,
            "type": "modal",
            "title": stored.get("title", {"type": "plain_text", "text": "infer-bot"}),
            "blocks": stored.get("blocks", []),
            "private_metadata": private_metadata,
            "callback_id": callback_id,
            "state": {"values": dict(values)},
            "hash": stored.get("hash", f"{int(time.time())}.{secrets.token_hex(4)}"),
            "root_view_id": stored.get("root_view_id", view_id),
            "previous_view_id": None,
            "app_id": self.api_app_id,
            "external_id": stored.get("external_id", ""),
            "bot_id": stored.get("bot_id", ""),
        }
        payload: JSONDict = {
            "type": "view_submission",
            "team": {"id": self.team_id, "domain": self.team_domain},
            "user": self._user(user_id),
            "api_app_id": self.api_app_id,
            "token": self.verification_token,
            "trigger_id": self._trigger_id(),
            "view": view,
            "response_urls": [],
            "is_enterprise_install": False,
            "enterprise": None,
        }
        return self._payload_request(payload, timestamp, extra_headers)

    # -- helpers -----------------------------------------------------------------------------

    def _payload_request(
        self, payload: JSONDict, timestamp: int | None, extra_headers: Mapping[str, str] | None
    ) -> tuple[bytes, dict[str, str]]:
        body = urlencode({"payload": json.dumps(payload, separators=(",", ":"))}).encode("utf-8")
        return body, self._headers(body, timestamp, extra_headers)

    def _headers(
        self, body: bytes, timestamp: int | None, extra_headers: Mapping[str, str] | None
    ) -> dict[str, str]:
        headers = {"Content-Type": self.form_content_type, "User-Agent": self.user_agent}
        headers.update(self.sign(body, timestamp))
        headers.update(extra_headers or {})
        return headers

    def _response_url(self, name: str, channel_id: str, message_ts: str | None, user_id: str) -> str:
        if self.response_slack is not None:
            return self.response_slack.response_url(
                name, channel=channel_id, message_ts=message_ts, user=user_id
            )
        # Shaped like Slack's so code that parses or logs it sees the real thing.
        return f"https://hooks.slack.com/commands/{self.team_id}/{secrets.randbelow(10**13)}/{secrets.token_hex(12)}"

    def _trigger_id(self) -> str:
        return self.response_slack.trigger_id() if self.response_slack is not None else _new_trigger_id()

    def _stored_message(self, channel_id: str, message_ts: str) -> JSONDict:
        if self.response_slack is not None:
            stored = self.response_slack.find_message(channel_id, message_ts)
            if stored is not None:
                return stored
        return {"type": "message", "ts": message_ts, "text": ""}

    def _user(self, user_id: str) -> JSONDict:
        name = self._user_name(user_id)
        return {"id": user_id, "username": name, "name": name, "team_id": self.team_id}

    def _user_name(self, user_id: str) -> str:
        if self.response_slack is not None:
            return str(self.response_slack.user_profile(user_id)["name"])
        return str(default_user(user_id, self.team_id)["name"])

    def _channel_name(self, channel_id: str) -> str:
        if self.response_slack is not None:
            return str(self.response_slack.channel_info(channel_id)["name"])
        return str(default_channel(channel_id)["name"])


def _find_element(blocks: Any, action_id: str) -> tuple[JSONDict | None, str | None]:
    """The interactive element with ``action_id`` in ``blocks`` and the id of its block."""
    if not isinstance(blocks, list):
        return None, None
    for block in blocks:
        if not isinstance(block, dict):
            continue
        candidates = list(block.get("elements") or [])
        if isinstance(block.get("accessory"), dict):
            candidates.append(block["accessory"])
        for element in candidates:
            if isinstance(element, dict) and element.get("action_id") == action_id:
                return element, block.get("block_id")
    return None, None
