"""Who may do what, where: roles from config, channel allow-lists, approvals per cluster."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from bot.config import ClusterConfig, Config, Role

log = logging.getLogger(__name__)

RANK: dict[str, int] = {"viewer": 0, "operator": 1, "approver": 2, "admin": 3}
# Kinds of change that always need two approvers, whatever the cluster says.
TWO_PERSON_KINDS = frozenset({"destroy"})
# Kinds whose approvers must include an admin. The approvals come in any order: approvers who are
# not admins fill at most N−1 of the N slots, so the approval still missing is always an admin's.
# The store enforces it inside the approval's transaction (bot/db/store.py, Store.approve).
ADMIN_KINDS = frozenset({"destroy"})


def needs_admin(kind: str) -> bool:
    """Whether an operation of `kind` needs an admin among its approvers."""
    return kind in ADMIN_KINDS


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""


ALLOW = Decision(True)


class GroupCache:
    """Members of Slack user groups (S…), fetched through a callable and kept for `ttl` seconds."""

    def __init__(self, fetch: Callable[[str], list[str]], ttl: float = 300) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._cache: dict[str, tuple[float, frozenset[str]]] = {}
        self._lock = threading.Lock()

    def members(self, group: str) -> frozenset[str]:
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(group)
            if hit and now - hit[0] < self._ttl:
                return hit[1]
        try:
            members = frozenset(self._fetch(group))
        except Exception as exc:  # a Slack outage must not grant or crash; it only denies the group
            log.warning("cannot resolve user group %s: %s", group, exc)
            members = hit[1] if hit else frozenset()
            now -= self._ttl * 0.8  # remember the failure too, but ask again sooner
        with self._lock:
            self._cache[group] = (now, members)
        return members


class Policy:
    def __init__(self, config: Config, groups: GroupCache | None = None) -> None:
        self.config = config
        self.groups = groups

    def role_of(self, user: str) -> Role:
        roles = self.config.roles
        for role, principals in (("admin", roles.admin), ("approver", roles.approver),
                                 ("operator", roles.operator)):
            if self._member(user, principals):
                return role  # type: ignore[return-value]
        return "viewer"

    def _member(self, user: str, principals: list[str]) -> bool:
        if user in principals:
            return True
        if self.groups is None:
            return False
        return any(p.startswith("S") and user in self.groups.members(p) for p in principals)

    def check(self, user: str, channel: str, cluster: ClusterConfig | None, needed: Role,
              action: str) -> Decision:
        role = self.role_of(user)
        if RANK[role] < RANK[needed]:
            return Decision(False, f"`{action}` needs the *{needed}* role; yours is *{role}*. "
                                   f"Ask an admin to add you to `roles.{needed}` in the bot's config.")
        if cluster is not None and cluster.channels and channel not in cluster.channels:
            allowed = ", ".join(f"<#{c}>" for c in cluster.channels)
            return Decision(False, f"cluster `{cluster.name}` takes commands only in {allowed}.")
        return ALLOW

    def approvals_needed(self, cluster: ClusterConfig, kind: str) -> int:
        if kind in TWO_PERSON_KINDS:
            return max(2, cluster.approvals)
        return cluster.approvals

    def is_admin(self, user: str) -> bool:
        return self.role_of(user) == "admin"
