"""The Home tab's layout (pure rendering): it always fits Slack's 100 blocks, the unhealthy lead, and its
fingerprint changes exactly when what the user reads of their operations changes."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bot.sandbox.slack.blockkit import view_errors
from handlers.home_blocks import ClusterView, Personal, Server, Waiting, home_view, shown_digest

NOW = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)


@dataclass
class Op:
    id: int
    status: str = "pending_approval"
    kind: str = "scale"
    cluster: str = "dev"
    namespace: str = "default"
    target: str = "qwen"
    plan: dict[str, Any] = field(default_factory=lambda: {"change": "replicas 1 → 2"})
    requested_by: str = "U0OPERATOR"
    channel_id: str = "C0OPS"
    card_ts: str | None = "1.0"
    approvals_needed: int = 1
    admin_needed: bool = False
    created_at: datetime = NOW
    expires_at: datetime = NOW + timedelta(hours=24)
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    result: str | None = None


def cluster(name: str, servers: int, unhealthy: int = 0) -> ClusterView:
    rows = [Server(f"*bad-{i}* 0/1 ready", 2) for i in range(unhealthy)]
    rows += [Server(f"*ok-{i}* 1/1 ready", 0, util_now=50.0, cost_per_day=24.0) for i in range(servers - unhealthy)]
    return ClusterView(name, "default", sorted(rows, key=lambda s: -s.severity), metrics="$1/day in all")


def texts(view: dict[str, Any]) -> list[str]:
    out = []
    for b in view["blocks"]:
        if isinstance(b.get("text"), dict):
            out.append(b["text"]["text"])
        out += [e.get("text", "") for e in b.get("elements", []) if isinstance(e.get("text"), str)]
    return out


def test_the_biggest_tab_still_fits_and_counts_what_it_leaves_out():
    waiting = [Waiting(Op(i), ["U0APPROVER2"]) for i in range(10)]
    personal = Personal(waiting=waiting, waiting_more=5, recent=[Op(i, status="succeeded") for i in range(8)])
    fleet = [cluster(f"c{i:03d}", 40) for i in range(200)]
    view = home_view("U0APPROVER", "approver", fleet, personal, command="/infer", updated=NOW, sandbox=True)
    assert view_errors(view) == [] and len(view["blocks"]) <= 100
    shown = "\n".join(texts(view))
    assert "and 5 more — `/infer approvals`" in shown
    assert "and 30 more — `/infer status cluster=c000`" in shown
    listed = sum(1 for t in texts(view) if "model servers" in t)
    assert f"and {200 - listed} more clusters" in shown and listed > 10


def test_unhealthy_clusters_come_first_and_figures_follow_each_server():
    fleet = [cluster("a-fine", 3), cluster("z-sick", 3, unhealthy=1),
             ClusterView("m-down", "default", error="connection refused")]
    view = home_view("U1", "viewer", fleet, Personal(), command="/infer", updated=NOW)
    order = [t.split("*")[1] for t in texts(view) if "namespace `default`" in t]
    assert order == ["m-down", "z-sick", "a-fine"]
    sick = next(t for t in texts(view) if t.startswith("*z-sick*"))
    assert "3 model servers, 1 not ready" in sick and sick.splitlines()[1].startswith("*bad-0*")
    assert "*ok-0* 1/1 ready · 50% busy now · $24.00/day" in sick


def test_the_fingerprint_follows_what_the_user_reads_of_their_operations():
    mine = Personal(waiting=[Waiting(Op(1), [])], recent=[Op(2, status="running")])
    same = shown_digest(mine, "/infer")
    assert shown_digest(replace(mine), "/infer") == same
    assert shown_digest(replace(mine, recent=[Op(2, status="succeeded")]), "/infer") != same
    assert shown_digest(replace(mine, waiting=[]), "/infer") != same
    assert shown_digest(replace(mine, waiting=[Waiting(Op(1), ["U0APPROVER2"])]), "/infer") != same
