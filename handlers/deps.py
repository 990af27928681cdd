"""What a handler gets from the wiring, through Bolt's `context["deps"]`.

Protocols rather than imports of bot/: handlers depend on what they call, not on who provides it.
Data members are read-only properties, so the bot's frozen pydantic models and dataclasses satisfy
them (mypy checks that they do where bot/app.py builds Deps).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from handlers.blocks import AuditEntry, Operation
from handlers.parse import Command
from ops.kube import KubeCluster


class ClusterConfig(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def approvals(self) -> int: ...
    @property
    def max_replicas(self) -> int: ...
    @property
    def channels(self) -> list[str]: ...
    @property
    def prometheus_url(self) -> str | None: ...
    @property
    def inference_url(self) -> str | None: ...


class ChartConfig(Protocol):
    @property
    def path(self) -> str | None: ...
    @property
    def repo(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def allowed_sets(self) -> list[str]: ...
    @property
    def cache_dir(self) -> str | None: ...
    @property
    def timeout_seconds(self) -> float: ...


class TerraformConfig(Protocol):
    @property
    def root(self) -> str | None: ...
    @property
    def workdir(self) -> str: ...
    @property
    def vars(self) -> dict[str, Any]: ...
    @property
    def name_var(self) -> str | None: ...
    @property
    def approvals(self) -> int: ...


class Config(Protocol):
    @property
    def sandbox(self) -> bool: ...
    @property
    def clusters(self) -> Sequence[ClusterConfig]: ...
    @property
    def chart(self) -> ChartConfig: ...
    @property
    def terraform(self) -> TerraformConfig: ...

    # Digests (bot.config's MetricsConfig, AdvisorConfig, DigestConfig): read by handlers/digest.py only.
    @property
    def metrics(self) -> Any: ...
    @property
    def advisor(self) -> Any: ...
    @property
    def digests(self) -> Sequence[Any]: ...

    def cluster(self, name: str | None) -> ClusterConfig | None: ...


class Decision(Protocol):
    @property
    def allowed(self) -> bool: ...
    @property
    def reason(self) -> str: ...


class Policy(Protocol):
    def role_of(self, user: str) -> str: ...

    def check(self, user: str, channel: str, cluster: Any, needed: Any, action: str) -> Decision: ...

    def approvals_needed(self, cluster: Any, kind: str) -> int: ...

    def approval_refusal(self, user: str, kind: str, approvers: Sequence[str]) -> str: ...


class ApproveResult(Protocol):
    @property
    def outcome(self) -> Any: ...
    @property
    def operation(self) -> Operation | None: ...
    @property
    def approvals(self) -> int: ...

class Store(Protocol):
    def first_delivery(self, key: str) -> bool: ...

    def audit(self, actor: str, action: str, outcome: str = "ok", *, cluster: str | None = None,
              channel_id: str | None = None, operation_id: int | None = None, detail: str = "") -> None: ...

    def audit_tail(self, n: int) -> Sequence[AuditEntry]: ...

    def create_operation(self, *, kind: str, cluster: str, namespace: str, target: str,
                         params: dict[str, Any], plan: dict[str, Any], requested_by: str, channel_id: str,
                         approvals_needed: int, ttl: timedelta, lock_key: str | None = None) -> Operation: ...

    def get(self, op_id: int) -> Operation | None: ...

    def set_card(self, op_id: int, ts: str) -> None: ...

    def approvers(self, op_id: int) -> list[str]: ...

    def list_operations(self, statuses: Sequence[str] | None = None, limit: int = 20) -> Sequence[Operation]: ...

    def approve(self, op_id: int, user: str) -> ApproveResult: ...

    def reject(self, op_id: int, user: str, reason: str) -> Operation | None: ...

    def approve_by_policy(self, op_id: int) -> Operation | None: ...


class ProvisionedCluster(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def reach(self) -> str: ...
    @property
    def where(self) -> str: ...
    @property
    def note(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def last_run(self) -> str: ...
    @property
    def last_run_at(self) -> datetime | None: ...


class Clusters(Protocol):
    def get(self, cluster: Any) -> KubeCluster: ...

    def lookup(self, name: str | None) -> ClusterConfig | None:
        """A configured cluster, else one the bot provisioned (registered in its database)."""
        ...

    def names(self) -> list[str]: ...
    def registered(self) -> Sequence[ProvisionedCluster]: ...


class ReleaseHistory(Protocol):
    """The revisions the bot recorded per release (bot.db.releases.ReleaseHistory)."""

    def known(self, cluster: str, namespace: str, name: str) -> list[int]: ...

    def rollback_target(self, cluster: str, namespace: str, name: str,
                        wanted: int | None) -> tuple[int, list[dict[str, Any]]] | None:
        """(revision, its manifests) that a rollback to `wanted` (None: the previous one) re-applies."""
        ...


class DigestRows(Protocol):
    """Digest subscriptions, posts and suggestions (bot.db.digests.DigestStore)."""

    def subscribe(self, channel: str, cron: str, timezone: str, user: str,
                  clusters: Sequence[str] = ()) -> tuple[Any, Any | None]: ...

    def unsubscribe(self, channel: str) -> Any | None: ...

    def subscriptions(self, channel: str | None = None) -> Sequence[Any]: ...

    def claim_post(self, channel: str, period: str, claimer: str) -> int | None: ...

    def finish_post(self, post_id: int, status: str, *, ts: str | None = None,
                    summary: dict[str, Any] | None = None, error: str | None = None) -> None: ...

    def save_suggestions(self, channel: str, post_id: int | None, items: Sequence[dict[str, Any]]) -> list[int]: ...

    def suggestion(self, suggestion_id: int) -> Any | None: ...

    def claim_suggestion(self, suggestion_id: int, user: str) -> bool: ...

    def finish_suggestion(self, suggestion_id: int, *, operation_id: int | None, applied: bool) -> None: ...

    def next_run(self, cron: str, timezone: str) -> datetime | None: ...

    def changed(self) -> None:
        """Schedules changed: re-read them now in this process (the others re-read periodically)."""
        ...


class Pacer(Protocol):
    """Per-channel pacing of posts in this process (bot.pacing.Pacer)."""

    def slot(self, channel: str) -> AbstractContextManager[None]: ...


class SharedBuilds(Protocol):
    """Single-flight builds shared by callers within a ttl (bot.pacing.SharedBuilds)."""

    def get(self, key: Hashable, build: Callable[[], Any]) -> Any: ...


class Verbs(Protocol):
    """The verb table (handlers.commands.VerbTable), for buttons that run a command."""

    def request(self, cmd: Command, inv: Any) -> object:
        """Run the verb's handler; a change returns its operation. Raises Refusal/OpsError."""
        ...

    def run(self, cmd: Command, inv: Any) -> None:
        """Run the verb and answer the user, refusals included."""
        ...


@dataclass(frozen=True)
class Deps:
    config: Config
    store: Store
    policy: Policy
    clusters: Clusters
    approval_ttl: timedelta
    wake_worker: Callable[[], None]
    pacer: Pacer
    builds: SharedBuilds
    verbs: Verbs
    command: str = "/infer"
    digests: DigestRows | None = None
    releases: ReleaseHistory | None = None
    # Runs work that follows an ack (the wiring gives a thread pool of its own); inline by default.
    run_later: Callable[..., Any] = staticmethod(lambda fn, *args: fn(*args))

    def first_delivery(self, body: dict[str, Any]) -> bool:
        """False when this Slack delivery was acted on already (a retry, or a replayed request).

        Called after ack(), so the database write stays off the 3-second path; the unique key in
        the database still makes the action happen once.
        """
        key = body.get("event_id") or body.get("trigger_id")
        return not key or self.store.first_delivery(str(key))
