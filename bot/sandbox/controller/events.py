"""v1 Event objects, deduplicated by count like the real recorders, and dropped after their TTL."""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from typing import Any

from bot.sandbox.objects import ClusterAPI, Obj, meta_of, utc_now


class EventRecorder:
    """Records Events for every part of the controller; one Event per (object, reason, message)."""

    def __init__(self, api: ClusterAPI) -> None:
        self.api = api
        self.ttl = 3600.0  # seconds an Event lives after its last occurrence (kube-apiserver: 1 hour)
        self._names: dict[tuple[str, str, str], str] = {}  # (uid, reason, message) -> Event name
        self._since_prune = 0

    def record(
        self,
        obj: Mapping[str, Any],
        event_type: str,
        reason: str,
        message: str,
        component: str,
        field_path: str | None = None,
    ) -> None:
        meta = meta_of(obj)
        namespace = meta.get("namespace") or "default"
        key = (meta.get("uid", ""), reason, message)
        now = utc_now()
        if key in self._names:
            existing = self.api.get("v1", "Event", namespace, self._names[key])
            if existing is not None:
                existing["count"] = int(existing.get("count") or 1) + 1
                existing["lastTimestamp"] = now
                self.api.put(existing)
                return
        involved: Obj = {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        }
        if field_path:
            involved["fieldPath"] = field_path
        name = f"{meta.get('name')}.{time.time_ns():x}"
        self._names[key] = name
        self._prune()
        self.api.put(
            {
                "apiVersion": "v1",
                "kind": "Event",
                "metadata": {"name": name, "namespace": namespace},
                "involvedObject": {k: v for k, v in involved.items() if v is not None},
                "reason": reason,
                "message": message,
                "type": event_type,
                "source": {"component": component},
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
                "reportingComponent": component,
                "reportingInstance": "",
            }
        )

    def _prune(self) -> None:
        """Drop Events past their TTL now and then, as the API server's event TTL does."""
        self._since_prune += 1
        if self._since_prune < 200:
            return
        self._since_prune = 0
        cutoff = datetime.datetime.now(datetime.UTC) - datetime.timedelta(seconds=self.ttl)
        for event in self.api.list("v1", "Event"):
            last = event.get("lastTimestamp") or meta_of(event).get("creationTimestamp") or ""
            if last and datetime.datetime.fromisoformat(last.replace("Z", "+00:00")) < cutoff:
                self.api.delete("v1", "Event", meta_of(event).get("namespace"), meta_of(event)["name"])

    def forget(self, uid: str) -> None:
        """Stop counting repeats for a deleted object (its Events live on until their TTL)."""
        for key in [k for k in self._names if k[0] == uid]:
            del self._names[key]
