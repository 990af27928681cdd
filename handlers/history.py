"""What the bot has been asked and has done: `approvals`, `ops`, `audit`."""

from __future__ import annotations

from handlers import blocks
from handlers.base import Invocation
from handlers.parse import Command


def approvals(cmd: Command, inv: Invocation) -> None:
    inv.authorize(None, "viewer", "approvals")
    pending = inv.deps.store.list_operations(["pending_approval"], limit=30)
    inv.reply(blocks.operations_message("Waiting for approval", pending, empty="Nothing waits for approval.",
                                        sandbox=inv.sandbox))


def operations(cmd: Command, inv: Invocation) -> None:
    inv.authorize(None, "viewer", "ops")
    recent = inv.deps.store.list_operations(limit=20)
    inv.reply(blocks.operations_message("Recent operations", recent, empty="No operations yet.",
                                        sandbox=inv.sandbox))


def audit(cmd: Command, inv: Invocation) -> None:
    inv.authorize(None, "approver", "audit")
    n = int(cmd.args[0]) if cmd.args else 20
    inv.reply(blocks.audit_message(inv.deps.store.audit_tail(n), sandbox=inv.sandbox))
