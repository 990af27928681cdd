"""Structured logs: one JSON object per line, carrying the operation id and Slack user in context.

The context lives in contextvars: the Bolt middleware sets the user, the worker sets the
operation, and ListenerPool copies the context into listener threads. Known secrets (Slack
tokens, the signing secret) are masked in every line as a last line of defence.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

slack_user: contextvars.ContextVar[str | None] = contextvars.ContextVar("slack_user", default=None)
operation_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("operation_id", default=None)


@contextmanager
def operation_context(op_id: int, user: str | None) -> Iterator[None]:
    tokens = (operation_id.set(op_id), slack_user.set(user))
    try:
        yield
    finally:
        operation_id.reset(tokens[0])
        slack_user.reset(tokens[1])


class Redactor:
    def __init__(self, secrets: Iterable[str]) -> None:
        # Short values would mask ordinary words; real tokens and secrets are long.
        self.secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "[redacted]")
        return text


class JsonFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "operation": operation_id.get(),
            "user": slack_user.get(),
            "thread": record.threadName,
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(line, ensure_ascii=False, default=str))


class TextFormatter(logging.Formatter):
    def __init__(self, redact: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        return self.redact(super().format(record))


def setup_logging(level: str, fmt: str, secrets: Iterable[str]) -> None:
    redact = Redactor(secrets)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redact) if fmt == "json" else TextFormatter(redact))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
