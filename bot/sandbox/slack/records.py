"""What the local Slack keeps and reports: the calls it answered, the files uploaded to it, and the
users and channels it makes up for ids nobody configured."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

JSONDict = dict[str, Any]


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
        for key in ("channel", "channel_id", "ts", "thread_ts", "user", "user_id", "usergroup", "trigger_id"):
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
class FileRecord:
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
class ResponseTarget:
    name: str
    channel: str | None
    message_ts: str | None
    user: str | None
    uses: int = 0


@dataclass
class Trigger:
    issued_at: float
    used: bool = False


@dataclass
class Fault:
    status: int
    retry_after: int | None = None


@dataclass
class Bucket:
    tokens: float
    updated: float


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


def new_trigger_id() -> str:
    # Slack's trigger ids look like "1234567890123.1234567890.0123abcd…".
    return f"{secrets.randbelow(10**13):013d}.{secrets.randbelow(10**10):010d}.{secrets.token_hex(16)}"
