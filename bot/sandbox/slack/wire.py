"""Slack's wire conventions: how request bodies arrive (JSON, forms, multipart), how tokens are
checked, and how answers and errors are shaped."""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

from bot.sandbox.slack.records import JSONDict

# Fields Slack accepts as JSON strings in form-encoded calls; decoded so tests see Python objects.
JSON_STRING_FIELDS = frozenset({"blocks", "attachments", "view", "files", "metadata"})


@dataclass
class Reply:
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


class BadRequest(Exception):
    """The body could not be parsed; Slack answers these with an ok:false JSON body."""

    def __init__(self, error: str) -> None:
        super().__init__(error)
        self.error = error


def flag(value: Any) -> bool:
    """Form posts carry booleans as strings; JSON posts as booleans."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def decode_json_fields(params: JSONDict) -> JSONDict:
    decoded = dict(params)
    for key in JSON_STRING_FIELDS & decoded.keys():
        value = decoded[key]
        if isinstance(value, str) and value.strip():
            # A string that is not JSON stays a string, so validation reports it as Slack would.
            with contextlib.suppress(ValueError):
                decoded[key] = json.loads(value)
    return decoded


def parse_body(content_type: str, raw: bytes) -> JSONDict:
    if not raw:
        return {}
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "application/json":
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise BadRequest("invalid_json") from exc
        if not isinstance(body, dict):
            raise BadRequest("invalid_json")
        return body
    if media_type == "multipart/form-data":
        return parse_multipart(content_type, raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest("invalid_form_data") from exc
    return dict(parse_qsl(text, keep_blank_values=True))


def parse_multipart(content_type: str, raw: bytes) -> JSONDict:
    # email's MIME parser is the stdlib's remaining multipart reader now that cgi is gone.
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + raw
    )
    if not message.is_multipart():
        raise BadRequest("invalid_form_data")
    fields: JSONDict = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else b""
        fields[name] = data if part.get_filename() else data.decode("utf-8", "replace")
    return fields


def slack_error(error: str, *messages: str) -> JSONDict:
    body: JSONDict = {"ok": False, "error": error}
    if messages:
        body["response_metadata"] = {"messages": list(messages)}
    return body


def fault_error(status: int) -> str:
    if status == 429:
        return "ratelimited"
    if status >= 500:
        return "internal_error"
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_")
    except ValueError:
        return "request_failed"


def auth_error(params: JSONDict, headers: Mapping[str, str], expected: str) -> str | None:
    token = params.get("token")
    authorization = headers.get("authorization", "")
    if authorization.lower().startswith("bearer "):
        token = authorization[7:].strip()
    if not token:
        return "not_authed"
    return None if token == expected else "invalid_auth"


def unwrap_payload(params: JSONDict) -> JSONDict:
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
