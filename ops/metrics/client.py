"""Prometheus' HTTP API, minimal: instant and range queries with a deadline on every call, and a probe.

Client: plain `requests` rather than prometheus-api-client. We need POST (the queries are long), a
deadline on every call plus Prometheus' own `timeout=`, and nothing else of that library (whose
dateparser dependency would come along). Times are sent as Unix seconds from aware datetimes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import requests


class PromError(Exception):
    pass


class Prometheus:
    """The HTTP API, minimal: instant and range queries, every call with a deadline."""

    def __init__(self, url: str, timeout: float, session: requests.Session | None = None) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()

    def _post(self, path: str, data: dict[str, str]) -> Any:
        return self._data(self._send(path, data))

    def _send(self, path: str, data: dict[str, str]) -> requests.Response:
        data["timeout"] = f"{self.timeout:g}s"
        try:
            return self.session.post(f"{self.url}{path}", data=data, timeout=(min(5.0, self.timeout), self.timeout + 2))
        except requests.ConnectionError as exc:
            raise PromError(f"cannot connect to Prometheus at {self.url} ({_reason(exc)})") from None
        except requests.Timeout:
            raise PromError(f"Prometheus at {self.url} did not answer within {self.timeout:g} s") from None

    def _data(self, resp: requests.Response) -> Any:
        return self._check(resp.status_code, resp.json)

    def _check(self, status: int, load: Callable[[], Any]) -> Any:
        try:
            body = load()
        except ValueError:
            raise PromError(f"Prometheus at {self.url} answered HTTP {status} without JSON") from None
        if not isinstance(body, dict) or body.get("status") != "success":
            body = body if isinstance(body, dict) else {}
            raise PromError(f"Prometheus at {self.url} refused a query: {body.get('errorType', status)}: "
                            f"{str(body.get('error', ''))[:300]}")
        return body["data"]

    def query(self, promql: str, at: datetime) -> list[dict[str, Any]]:
        return list(self._post("/api/v1/query", {"query": promql, "time": _unix(at)})["result"])

    def query_range(self, promql: str, start: datetime, end: datetime, step: timedelta) -> list[dict[str, Any]]:
        return list(self._post("/api/v1/query_range", {"query": promql, "start": _unix(start), "end": _unix(end),
                                                       "step": f"{step.total_seconds():g}"})["result"])

    def query_range_raw(self, promql: str, start: datetime, end: datetime, step: timedelta) -> RawAnswer:
        """A range query's answer not parsed yet: `RawAnswer.parse` hands each series to a hook as it is parsed,
        so that a large answer need not be held as Python objects (only its bytes, until parsed)."""
        resp = self._send("/api/v1/query_range", {"query": promql, "start": _unix(start), "end": _unix(end),
                                                  "step": f"{step.total_seconds():g}"})
        return RawAnswer(self, resp)


class RawAnswer:
    """A range query's answer as bytes, until parsed."""

    def __init__(self, prom: Prometheus, resp: requests.Response) -> None:
        self._prom, self._status, self._body = prom, resp.status_code, resp.content
        resp.close()

    def parse(self, object_hook: Callable[[dict[str, Any]], Any]) -> None:
        """Parse with json.loads' `object_hook` (a series is {"metric", "values"}: the hook folds it and
        returns None, so the parsed answer holds nothing of it), then drop the bytes."""
        body, self._body = self._body, b""
        self._prom._check(self._status, lambda: json.loads(body, object_hook=object_hook))


def probe(url: str, timeout: float = 5.0, session: requests.Session | None = None) -> str:
    """Is this Prometheus up and answering queries? Returns its version; raises PromError saying why not.

    `/-/ready` alone would pass a Prometheus still replaying its WAL as "not ready" and a proxy
    in front of it as ready; a trivial instant query is what a digest actually needs to work.
    """
    prom = Prometheus(url, timeout, session)
    try:
        resp = prom.session.get(f"{prom.url}/-/ready", timeout=(min(5.0, timeout), timeout))
    except requests.ConnectionError as exc:
        raise PromError(f"cannot connect to Prometheus at {prom.url} ({_reason(exc)})") from None
    except requests.Timeout:
        raise PromError(f"Prometheus at {prom.url} did not answer within {timeout:g} s") from None
    if resp.status_code != 200:
        raise PromError(f"Prometheus at {prom.url} is not ready (HTTP {resp.status_code} on /-/ready)")
    prom.query("vector(1)", datetime.now().astimezone())
    try:
        version = prom.session.get(f"{prom.url}/api/v1/status/buildinfo", timeout=timeout).json()["data"]["version"]
    except (requests.RequestException, ValueError, KeyError, TypeError):
        version = "version unknown"  # older servers and some proxies do not answer it; not a failure
    return str(version)


def _reason(exc: Exception) -> str:
    text = str(exc)
    for hint in ("Connection refused", "Name or service not known", "timed out", "No route to host"):
        if hint in text:
            return hint.lower()
    return type(exc).__name__


def _unix(at: datetime) -> str:
    if at.tzinfo is None:
        raise ValueError("naive datetime: pass an aware one (Prometheus times are absolute)")
    return f"{at.timestamp():.3f}"
