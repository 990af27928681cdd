"""Errors: every failure reaches the client as a ``kind: Status`` body, which the Python client turns
into an ApiException carrying the same status code. Tests can also queue failures of their own."""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Mapping
from typing import Any, Final

from bot.sandbox.kubeapi.resources import Obj, ResourceType

_REASONS: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
UNKNOWN_RESOURCE: Final = "the server could not find the requested resource"


class ApiError(Exception):
    """A failure answered with an HTTP status and a Kubernetes ``Status`` body."""

    def __init__(
        self, code: int, message: str, reason: str | None = None, details: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = dict(details) if details else None

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body

    @classmethod
    def not_found(cls, rt: ResourceType, name: str) -> ApiError:
        return cls(404, f'{rt.qualified} "{name}" not found', details=rt.details(name))

    @classmethod
    def already_exists(cls, rt: ResourceType, name: str) -> ApiError:
        return cls(409, f'{rt.qualified} "{name}" already exists', "AlreadyExists", rt.details(name))

    @classmethod
    def conflict(cls, rt: ResourceType, name: str) -> ApiError:
        why = "the object has been modified; please apply your changes to the latest version and try again"
        return cls(409, f'Operation cannot be fulfilled on {rt.qualified} "{name}": {why}', details=rt.details(name))

    @classmethod
    def invalid(cls, rt: ResourceType, name: str, why: str) -> ApiError:
        kind = f"{rt.kind}.{rt.group}" if rt.group else rt.kind
        return cls(422, f'{kind} "{name}" is invalid: {why}', details=rt.details(name))


_FAULT_MESSAGES: Final = {
    409: "Operation cannot be fulfilled: the object has been modified; "
    "please apply your changes to the latest version and try again",
    429: "the server has received too many requests and has asked us to try again later",
    500: "Internal error occurred: injected failure",
    503: "the server is currently unable to handle the request",
    504: "the server was unable to return a response in the time allotted",
}


@dataclasses.dataclass
class _Fault:
    method: str
    path: re.Pattern[str]
    code: int
    remaining: int


class FaultInjector:
    """Failures queued by tests; thread-safe because tests arm them from their own thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []

    def add(self, method: str, path_regex: str, code: int, times: int) -> None:
        with self._lock:
            self._faults.append(_Fault(method.upper(), re.compile(path_regex), code, times))

    def take(self, method: str, path: str) -> ApiError | None:
        with self._lock:
            for fault in self._faults:
                if fault.method in (method, "*") and fault.path.search(path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    message = _FAULT_MESSAGES.get(fault.code, f"injected failure for {method} {path}")
                    return ApiError(fault.code, message)
        return None
