"""The workspace as a user would see it (messages, threads, ephemerals, modals, files) and the Web API
methods that read and change it."""

from __future__ import annotations

import copy
import itertools
import json
import mimetypes
import secrets
import threading
import time

from bot.sandbox.slack.blockkit import (
    MESSAGE_TEXT_BUDGET,
    MESSAGE_TEXT_MAX,
    block_kit_errors,
    text_length,
    view_errors,
)
from bot.sandbox.slack.records import (
    FileRecord,
    JSONDict,
    Trigger,
    UploadedFile,
    default_channel,
    default_user,
)
from bot.sandbox.slack.wire import slack_error


class Workspace:
    """One Slack workspace's state. The Web API methods run with ``_lock`` held; every public
    accessor takes it and returns a snapshot."""

    #: Slack accepts a trigger_id for views.open for about three seconds after the user acted.
    trigger_ttl: float = 3.0
    #: views.publish of a home view answers `not_enabled` unless the app's Home tab is on (the manifest's
    #: features.app_home.home_tab_enabled).
    home_tab_enabled: bool = True
    #: Slack refuses a view larger than 250 kB (`view_too_large`).
    view_max_bytes: int = 250_000

    def __init__(self, *, team_id: str, team_domain: str, bot_user_id: str, bot_id: str, app_id: str) -> None:
        self.team_id = team_id
        self.team_domain = team_domain
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.user_groups: dict[str, list[str]] = {}
        self.users: dict[str, JSONDict] = {}
        # Socket Mode: apps.connections.open (called with the app-level token) hands out this URL.
        self.socket_mode_url: str | None = None
        self.channels: dict[str, JSONDict] = {}

        self._lock = threading.RLock()
        self._messages: dict[str, list[JSONDict]] = {}
        self._ephemerals: list[JSONDict] = []
        self._views: dict[str, JSONDict] = {}
        self._home_views: dict[str, JSONDict] = {}  # by user: each user has their own Home tab
        self._files: dict[str, FileRecord] = {}
        self._triggers: dict[str, Trigger] = {}
        self._last_ts_us = 0
        self._ids = itertools.count(1)

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
    def home_views(self) -> dict[str, JSONDict]:
        """The Home tab each user sees (views.publish), by user id, as last published."""
        with self._lock:
            return copy.deepcopy(self._home_views)

    @property
    def files(self) -> list[UploadedFile]:
        """Files that got an upload URL, in order; ``completed`` once completeUploadExternal ran."""
        with self._lock:
            return [record.snapshot() for record in self._files.values()]

    # -- timestamps and ids ------------------------------------------------------------------

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
            return slack_error("channel_not_found")
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
            return slack_error("channel_not_found")
        message = self._find_message(channel, ts)
        if message is None:
            return slack_error("message_not_found")
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
            return slack_error("channel_not_found")
        if not user:
            return slack_error("user_not_found")
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
            return slack_error("channel_not_found")
        if not self._remove_message(channel, ts):
            return slack_error("message_not_found")
        return {"ok": True, "channel": channel, "ts": ts}

    def _views_open(self, params: JSONDict) -> JSONDict:
        trigger_id = str(params.get("trigger_id") or "")
        if not trigger_id:
            return slack_error("invalid_arguments", "[ERROR] missing required field: trigger_id")
        trigger = self._triggers.get(trigger_id)
        # Ids issued by trigger_id() are policed like Slack's; others (hand-built) are accepted.
        if trigger is not None:
            if trigger.used:
                return slack_error("exchanged_trigger_id")
            if time.monotonic() - trigger.issued_at > self.trigger_ttl:
                return slack_error("expired_trigger_id")
        view = params.get("view")
        problems = view_errors(view)
        if problems:
            return slack_error("invalid_arguments", *problems)
        if trigger is not None:
            trigger.used = True
        assert isinstance(view, dict)  # view_errors guarantees it
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
            return slack_error("not_found")
        given_hash = params.get("hash")
        if given_hash and given_hash != current["hash"]:
            return slack_error("hash_conflict")
        view = params.get("view")
        problems = view_errors(view)
        if problems:
            return slack_error("invalid_arguments", *problems)
        assert isinstance(view, dict)  # view_errors guarantees it
        stored = self._view_record(view_id, view, root_view_id=current["root_view_id"])
        self._views[view_id] = stored
        return {"ok": True, "view": copy.deepcopy(stored)}

    def _views_publish(self, params: JSONDict) -> JSONDict:
        user_id = str(params.get("user_id") or "")
        if not user_id:
            return slack_error("invalid_arguments", "[ERROR] missing required field: user_id")
        view = params.get("view")
        problems = view_errors(view)
        if problems:
            return slack_error("invalid_arguments", *problems)
        assert isinstance(view, dict)  # view_errors guarantees it
        if view.get("type") != "home":
            return slack_error("invalid_arguments", "[ERROR] must be home [json-pointer:/view/type]")
        if not self.home_tab_enabled:
            return slack_error("not_enabled")
        if len(json.dumps(view, separators=(",", ":")).encode()) > self.view_max_bytes:
            return slack_error("view_too_large")
        current = self._home_views.get(user_id)
        given_hash = params.get("hash")
        if given_hash and current is not None and given_hash != current["hash"]:
            return slack_error("hash_conflict")
        view_id = current["id"] if current is not None else self._new_id("V")
        stored = self._view_record(view_id, view, root_view_id=view_id)
        self._home_views[user_id] = stored
        return {"ok": True, "view": copy.deepcopy(stored)}

    def home_view(self, user_id: str) -> JSONDict | None:
        """The Home tab `user_id` sees now, or None before the first views.publish for them."""
        with self._lock:
            view = self._home_views.get(user_id)
            return copy.deepcopy(view) if view is not None else None

    def _users_info(self, params: JSONDict) -> JSONDict:
        user_id = str(params.get("user") or "")
        if not user_id:
            return slack_error("user_not_found")
        return {"ok": True, "user": self.user_profile(user_id)}

    def _usergroups_users_list(self, params: JSONDict) -> JSONDict:
        group = str(params.get("usergroup") or "")
        if group not in self.user_groups:
            return slack_error("no_such_subteam")
        return {"ok": True, "users": list(self.user_groups[group])}

    def _conversations_info(self, params: JSONDict) -> JSONDict:
        channel_id = str(params.get("channel") or "")
        if not channel_id:
            return slack_error("channel_not_found")
        return {"ok": True, "channel": self.channel_info(channel_id)}

    def _apps_connections_open(self, params: JSONDict) -> JSONDict:
        if not self.socket_mode_url:
            return slack_error("socket_mode_not_enabled")
        return {"ok": True, "url": self.socket_mode_url}

    def _files_complete_upload(self, params: JSONDict) -> JSONDict:
        entries = params.get("files")
        if not isinstance(entries, list) or not entries:
            return slack_error("invalid_arguments", "[ERROR] files must be a non-empty array")
        records: list[FileRecord] = []
        for entry in entries:
            record = self._files.get(str(entry.get("id"))) if isinstance(entry, dict) else None
            if record is None:
                return slack_error("file_not_found")
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
                return slack_error("msg_too_long")
            content["text"] = str(text)
        if "blocks" in params and params["blocks"] not in (None, ""):
            blocks = params["blocks"]
            if not isinstance(blocks, list):
                return slack_error("invalid_blocks_format")
            problems = block_kit_errors(blocks)
            if problems:
                return slack_error("invalid_blocks", *problems)
            if text_length(blocks) > MESSAGE_TEXT_BUDGET:
                return slack_error("msg_blocks_too_long")
            content["blocks"] = blocks
        for key in ("attachments", "metadata"):
            if params.get(key) not in (None, ""):
                content[key] = params[key]
        if require and not (content.get("text") or content.get("blocks") or content.get("attachments")):
            return slack_error("no_text")
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
        self, channel: str, thread_ts: str | None, comment: str | None, records: list[FileRecord]
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

    def _file_object(self, record: FileRecord, channel_id: str | None) -> JSONDict:
        return {
            "id": record.id,
            "name": record.filename,
            "title": record.title,
            "mimetype": mimetypes.guess_type(record.filename)[0] or "application/octet-stream",
            "size": len(record.content),
            "user": self.bot_user_id,
            "channels": [channel_id] if channel_id else [],
        }
