"""The App Home tab: approvals waiting for the user, the fleet, their recent operations and digests.

A Home view holds at most 100 blocks. The personal parts (approvals, operations, subscriptions) are
bounded by the counts handlers/home.py reads; the fleet gets the blocks left over: each cluster shows
its most severe model servers and points at `/infer status cluster=…` for the rest.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, SectionBlock

from handlers.blocks import SANDBOX_LABEL, Operation, _clip, _md, _when, decision_buttons, escape, operation_line

MAX_BLOCKS = 100  # Slack's limit for a Home view
SERVERS_SHOWN = 10  # per cluster; the rest are one `/infer status cluster=…` away
LINE_MAX = 280  # a server's line; SERVERS_SHOWN of them stay under a section's 3000 characters


@dataclass(frozen=True)
class Server:
    line: str  # as `/infer status` shows it (handlers/release_blocks.py)
    severity: int  # 2: nothing ready, 1: fewer ready than desired, 0: healthy
    util_now: float | None = None  # percent
    cost_per_day: float | None = None  # USD


@dataclass(frozen=True)
class ClusterView:
    name: str
    namespace: str
    servers: Sequence[Server] = ()  # most severe first
    error: str | None = None  # the cluster's API could not be read
    metrics: str = ""  # one line about Prometheus: absent, failed, or the cluster's cost

    @property
    def severity(self) -> int:
        return 3 if self.error else max((s.severity for s in self.servers), default=0)


@dataclass(frozen=True)
class Waiting:
    op: Operation
    approvers: Sequence[str]


@dataclass(frozen=True)
class Personal:
    """What the tab shows of this user; a refresh publishes only when it changed."""

    waiting: Sequence[Waiting] = ()
    waiting_more: int = 0
    recent: Sequence[Operation] = ()
    subscriptions: Sequence[Any] = ()  # bot.db.tables.DigestSubscription rows
    subscriptions_of: str = "all"  # "channels": of the channels where the user asked for changes


def money(usd: float) -> str:
    return f"${usd:,.2f}" if usd < 100 else f"${usd:,.0f}"


def server_line(s: Server) -> str:
    figures = []
    if s.util_now is not None:
        figures.append(f"{s.util_now:.0f}% busy now")
    if s.cost_per_day is not None:
        figures.append(f"{money(s.cost_per_day)}/day")
    return _clip(s.line + "".join(f" · {f}" for f in figures), LINE_MAX)


def approval_blocks(p: Personal, command: str) -> list[Block]:
    """Each operation the user may approve, with the card's own buttons."""
    blocks: list[Block] = [HeaderBlock(text="Waiting for your approval")]
    if not p.waiting:
        blocks.append(SectionBlock(text=_md("Nothing waits for your approval.")))
    for w in p.waiting:
        op = w.op
        change = (op.plan or {}).get("change", "")
        got = f"{len(w.approvers)} of {op.approvals_needed} approvals"
        if w.approvers:
            got += " (" + ", ".join(f"<@{u}>" for u in w.approvers) + ")"
        text = (f"*#{op.id} {escape(op.kind.capitalize())} `{op.target}` on {op.cluster}* · {change}\n"
                f"asked by <@{op.requested_by}> in <#{op.channel_id}> · {got} · expires {_when(op.expires_at)}")
        blocks += [SectionBlock(text=_md(text)), decision_buttons(op)]
    if p.waiting_more:
        blocks.append(ContextBlock(elements=[_md(f"and {p.waiting_more} more — `{command} approvals`")]))
    return blocks


def history_blocks(p: Personal, command: str) -> list[Block]:
    """The user's recent operations and the digest subscriptions of their channels."""
    blocks: list[Block] = [HeaderBlock(text="Your recent operations")]
    recent = "\n".join(_clip(operation_line(op), 300) for op in p.recent)
    blocks.append(SectionBlock(text=_md(recent or "You have not asked for or approved a change yet.")))

    blocks.append(HeaderBlock(text="Digest subscriptions"))
    lines = [f"<#{s.channel_id}> · `{s.cron}` ({s.timezone}) · "
             f"{', '.join(s.clusters) if s.clusters else 'every cluster'}" for s in p.subscriptions]
    blocks.append(SectionBlock(text=_md(_clip("\n".join(lines), 2900) if lines else "No channel subscribes to a "
                                        f"digest yet: `{command} digest subscribe <cron>` in a channel.")))
    scope = ("Of the channels where you asked for changes." if p.subscriptions_of == "channels"
             else "Of every channel (you have not asked for a change in any channel yet).")
    blocks.append(ContextBlock(elements=[_md(scope)]))
    return blocks


def shown_digest(p: Personal, command: str) -> str:
    """A fingerprint of the personal parts: equal digests mean the tab would look the same."""
    rendered = [b.to_dict() for b in approval_blocks(p, command) + history_blocks(p, command)]
    return hashlib.sha256(json.dumps(rendered, sort_keys=True, default=str).encode()).hexdigest()


def _cluster_blocks(c: ClusterView, command: str) -> list[Block]:
    title = f"*{c.name}* · namespace `{c.namespace}`"
    if c.error:
        return [SectionBlock(text=_md(f":red_circle: {title} · unreachable: {escape(_clip(c.error, 500))}"))]
    unhealthy = sum(1 for s in c.servers if s.severity)
    count = f"{len(c.servers)} model server{'s' if len(c.servers) != 1 else ''}"
    if unhealthy:
        count += f", {unhealthy} not ready"
    lines = [server_line(s) for s in c.servers[:SERVERS_SHOWN]] or ["Nothing runs here."]
    blocks: list[Block] = [SectionBlock(text=_md(f"{title} · {count}\n" + "\n".join(lines)))]
    notes = [c.metrics] if c.metrics else []
    more = len(c.servers) - SERVERS_SHOWN
    if more > 0:
        notes.append(f"and {more} more — `{command} status cluster={c.name}`")
    if notes:
        blocks.append(ContextBlock(elements=[_md(" · ".join(notes))]))
    return blocks


def fleet_blocks(fleet: Sequence[ClusterView], command: str, budget: int) -> list[Block]:
    """The fleet within `budget` blocks: most severe clusters first, the rest counted."""
    blocks: list[Block] = [HeaderBlock(text="Fleet")]
    if not fleet:
        return blocks + [SectionBlock(text=_md("No clusters are configured."))]
    ordered = sorted(fleet, key=lambda c: (-c.severity, c.name))
    for index, cluster in enumerate(ordered):
        part = _cluster_blocks(cluster, command)
        left = len(ordered) - index
        # Keep one block for the line that counts the clusters not shown.
        if len(blocks) + len(part) + (1 if left > 1 else 0) > budget:
            blocks.append(ContextBlock(elements=[_md(f"and {left} more cluster{'s' if left != 1 else ''} — "
                                                     f"`{command} clusters`, then `{command} status cluster=…`")]))
            break
        blocks += part
    return blocks


def home_view(user: str, role: str, fleet: Sequence[ClusterView], personal: Personal, *, command: str,
              updated: datetime, sandbox: bool = False) -> dict[str, Any]:
    from slack_sdk.models.views import View

    top: list[Block] = [ContextBlock(elements=[_md(SANDBOX_LABEL)])] if sandbox else []
    top += [HeaderBlock(text="infer-bot"),
            ContextBlock(elements=[_md(f"<@{user}> · role *{role}* · updated {_when(updated)}")])]
    approvals, history = approval_blocks(personal, command), history_blocks(personal, command)
    fleet_part = fleet_blocks(fleet, command, MAX_BLOCKS - len(top) - len(approvals) - len(history) - 2)
    blocks = [*top, *approvals, DividerBlock(), *fleet_part, DividerBlock(), *history]
    return View(type="home", callback_id="infer_home", blocks=blocks[:MAX_BLOCKS]).to_dict()
