"""The request a verb handler works on, and the one way to refuse it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient

from handlers import blocks
from handlers.deps import ClusterConfig, Deps
from handlers.parse import Command


class Refusal(Exception):
    """Raised by a handler to refuse: the message is shown (ephemeral) and audited; nothing changed."""

    def __init__(self, message: str, usage: str = "", *, cluster: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.usage = usage
        self.cluster = cluster


@dataclass(frozen=True)
class Invocation:
    """One slash command being handled: who, where, and how to answer them privately."""

    user: str
    channel: str
    deps: Deps
    client: WebClient
    respond: Callable[..., Any]
    trigger_id: str = ""  # lets a verb open a modal (views.open) for a few seconds after the command

    @property
    def sandbox(self) -> bool:
        return self.deps.config.sandbox

    def reply(self, msg: blocks.Message) -> None:
        self.respond(text=msg.text, blocks=msg.blocks, response_type="ephemeral", replace_original=False)

    def cluster_for(self, cmd: Command) -> ClusterConfig:
        # Configured clusters, and the ones the bot provisioned (registered in its database).
        cluster = self.deps.clusters.lookup(cmd.cluster)
        if cluster is not None:
            return cluster
        if cmd.cluster is None:
            raise Refusal("no cluster is configured; add one under `clusters:` in the bot's config.")
        known = ", ".join(f"`{name}`" for name in self.deps.clusters.names()) or "none"
        raise Refusal(f"unknown cluster `{cmd.cluster}`; known clusters: {known}.", cmd.usage)

    def authorize(self, cluster: ClusterConfig | None, needed: str, action: str) -> None:
        decision = self.deps.policy.check(self.user, self.channel, cluster, needed, action)
        if not decision.allowed:
            raise Refusal(decision.reason, cluster=cluster.name if cluster else None)
