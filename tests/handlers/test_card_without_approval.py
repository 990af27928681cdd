"""A step that needs no approval (the plan of provision/destroy/drift) gets a card with nothing to
click and nobody to wait for; a change that needs approval keeps its buttons."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers.blocks import approval_card


@dataclass
class Op:
    approvals_needed: int
    status: str = "pending_approval"
    id: int = 7
    kind: str = "plan"
    cluster: str = "prod"
    namespace: str = "-"
    target: str = "infrastructure"
    plan: dict[str, Any] = field(default_factory=lambda: {"change": "plan (provision)", "details": "Planning…"})
    requested_by: str = "U0ADMIN"
    channel_id: str = "C0OPS"
    card_ts: str | None = None
    admin_needed: bool = False
    created_at: datetime = datetime(2026, 12, 4, 10, 0, tzinfo=UTC)
    expires_at: datetime = datetime(2026, 12, 4, 10, 0, tzinfo=UTC) + timedelta(hours=24)
    decided_by: str | None = None
    decided_at: datetime | None = None
    reason: str | None = None
    result: str | None = None


def shown(op: Op) -> tuple[str, list[str]]:
    msg = approval_card(op, [])
    text = " ".join(str(b.get("text", {}).get("text", "")) for b in msg.blocks if isinstance(b.get("text"), dict))
    text += " ".join(e.get("text", "") for b in msg.blocks if b["type"] == "context" for e in b["elements"])
    text += " ".join(f["text"] for b in msg.blocks for f in b.get("fields", []))
    buttons = [e["action_id"] for b in msg.blocks if b["type"] == "actions" for e in b["elements"]]
    return text, buttons


def test_a_plan_card_has_no_buttons_and_waits_for_nobody():
    text, buttons = shown(Op(approvals_needed=0))
    assert buttons == []
    assert "Waiting for" not in text and "No approval needed" in text and "none needed" in text


def test_a_change_that_needs_approval_keeps_its_buttons():
    text, buttons = shown(Op(approvals_needed=1, kind="provision"))
    assert buttons == ["op_approve", "op_reject"] and "Waiting for 1 more approval(s)" in text
