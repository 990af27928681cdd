"""Every message the bot shows, one renderer per kind, built with slack_sdk's Block Kit models.

The models validate Slack's limits (header 150, section 3000, …) when serialised, so a rendering
bug fails here and in the tests instead of as `invalid_blocks` in front of a user.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from ops.kube import DeploymentInfo, age


class Operation(Protocol):
    """What a renderer reads of an operation (the store's rows satisfy it; handlers never import bot/)."""

    id: int
    kind: str
    cluster: str
    namespace: str
    target: str
    plan: dict[str, Any]
    status: str
    requested_by: str
    channel_id: str
    card_ts: str | None
    approvals_needed: int
    admin_needed: bool  # one of the approvals must be an admin's
    created_at: datetime
    expires_at: datetime
    decided_by: str | None
    decided_at: datetime | None
    reason: str | None
    result: str | None


class AuditEntry(Protocol):
    at: datetime
    actor: str
    action: str
    outcome: str
    operation_id: int | None
    detail: str

SANDBOX_LABEL = ":test_tube: SANDBOX: a local emulated cluster, nothing real is changed"
STATE_ICON = {
    "pending_approval": ":hourglass_flowing_sand:", "approved": ":white_check_mark:", "queued": ":clock3:",
    "running": ":gear:", "succeeded": ":large_green_circle:", "failed": ":red_circle:",
    "interrupted": ":warning:", "rejected": ":no_entry_sign:", "expired": ":alarm_clock:",
}


@dataclass(frozen=True)
class Message:
    text: str  # the notification / fallback text
    blocks: list[dict[str, Any]] = field(default_factory=list)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=_clip(text, 3000))


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else "?"


def _render(text: str, blocks: Sequence[Block], sandbox: bool = False) -> Message:
    out = list(blocks)
    if sandbox:
        out.insert(0, ContextBlock(elements=[_md(SANDBOX_LABEL)]))
    return Message(text=_clip(text, 3000), blocks=[b.to_dict() for b in out])


def escape(text: str) -> str:
    """User text echoed back: no mentions (<!channel>, <@U…>) and no formatting escapes."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


# ---- replies to a command --------------------------------------------------------------------


def refusal(message: str, usage: str = "", *, sandbox: bool = False) -> Message:
    lines = [f":no_entry: {message}"]
    if usage:
        lines.append(f"Usage: `{escape(usage)}`")
    return _render(" ".join(lines), [SectionBlock(text=_md("\n".join(lines)))], sandbox)


def note(message: str, *, sandbox: bool = False) -> Message:
    return _render(message, [SectionBlock(text=_md(message))], sandbox)


def help_message(command: str, lines: Sequence[tuple[str, str]], *, sandbox: bool = False) -> Message:
    entries = [f"`{command} {escape(usage)}`  {summary}" for usage, summary in lines]
    sections: list[Block] = []
    chunk: list[str] = []
    for entry in entries:  # a section holds 3000 characters; the verb list outgrows one
        if chunk and len("\n".join([*chunk, entry])) > 2900:
            sections.append(SectionBlock(text=_md("\n".join(chunk))))
            chunk = []
        chunk.append(entry)
    if chunk:
        sections.append(SectionBlock(text=_md("\n".join(chunk))))
    hint = "Options are `key=value`. Every verb takes `cluster=`. Changes need approval."
    if len(entries) > 1:
        hint += f" `{command} help <verb>` shows one verb."
    return _render(f"{command} help", [HeaderBlock(text=f"{command}: what I can do"), *sections,
                                       ContextBlock(elements=[_md(hint)])], sandbox)


def clusters_message(rows: Sequence[tuple[str, str, str, int]], *, sandbox: bool = False) -> Message:
    """rows: (name, namespace, reachability, approvals needed)."""
    if not rows:
        return note("No clusters are configured. Add one under `clusters:` in the bot's config.",
                    sandbox=sandbox)
    body = "\n".join(f"*{name}*  namespace `{ns}` · {state} · approvals: {n}" for name, ns, state, n in rows)
    return _render("Clusters", [HeaderBlock(text="Clusters"), SectionBlock(text=_md(body))], sandbox)


def status_message(cluster: str, namespace: str, deployments: Sequence[DeploymentInfo], *,
                   sandbox: bool = False, links: Mapping[str, str] | None = None) -> Message:
    """links: Deployment name → its dashboard link (`<url|Grafana>`), added at the end of its line."""
    title = f"Deployments in {cluster}/{namespace}"
    if not deployments:
        return note(f"No Deployments in `{namespace}` on cluster `{cluster}`.", sandbox=sandbox)
    blocks: list[Block] = [HeaderBlock(text=_clip(title, 150))]
    for chunk_start in range(0, len(deployments), 20):
        lines = []
        for d in deployments[chunk_start:chunk_start + 20]:
            icon = ":large_green_circle:" if d.available >= d.replicas else ":large_yellow_circle:"
            link = (links or {}).get(d.name)
            lines.append(f"{icon} *{d.name}*  {d.ready}/{d.replicas} ready · age {age(d.created)} · "
                         f"`{_clip(', '.join(d.images), 80)}`" + (f" · {link}" if link else ""))
        blocks.append(SectionBlock(text=_md("\n".join(lines))))
        if len(blocks) >= 45:
            blocks.append(ContextBlock(elements=[_md(f"…and {len(deployments) - chunk_start - 20} more")]))
            break
    return _render(title, blocks, sandbox)


# ---- the approval card -------------------------------------------------------------------------


def admin_missing(op: Operation, admins: Collection[str]) -> bool:
    """The operation needs an admin's approval and none has come yet."""
    return bool(op.admin_needed) and not admins


def _waiting(op: Operation, approvers: Sequence[str], admins: Collection[str]) -> str:
    more = max(op.approvals_needed - len(approvers), 0)
    if not admin_missing(op, admins):
        return f"Waiting for {more} more approval(s)"
    # Approvers who are not admins fill at most N−1 slots, so the admin's is always among the missing.
    more = max(more, 1)
    whose = "from an admin" if more == 1 else "one of them from an admin"
    return f"Waiting for {more} more approval(s), {whose}"


def _decision_line(op: Operation, approvers: Sequence[str], admins: Collection[str]) -> str:
    status = op.status
    icon = STATE_ICON.get(status, "")
    if status == "pending_approval" and op.approvals_needed == 0:
        return f"{icon} No approval needed: it starts as soon as a worker is free"
    if status == "pending_approval":
        who = ", ".join(f"<@{u}>" for u in approvers)
        got = f" (approved by {who})" if who else ""
        return f"{icon} {_waiting(op, approvers, admins)}{got} · expires {_when(op.expires_at)}"

    if status == "rejected":
        return f"{icon} Rejected by <@{op.decided_by}> at {_when(op.decided_at)}: {escape(op.reason or '')}"
    if status == "expired":
        return f"{icon} Expired at {_when(op.expires_at)} without enough approvals; run the command again."
    approved = ", ".join(f"<@{u}>" for u in approvers) or "policy (no approval needed)"
    line = f":white_check_mark: Approved by {approved}"
    if op.decided_at:
        line += f" at {_when(op.decided_at)}"
    if status not in ("approved",):
        line += f"\n{icon} {status.replace('_', ' ').capitalize()}"
        if op.result:
            line += f": {escape(op.result)}"
    return line


def approval_card(op: Operation, approvers: Sequence[str], *, admins: Collection[str] = (),
                  sandbox: bool = False) -> Message:
    """`admins`: the approvers who approved as admins (they count for an operation that needs one)."""
    plan = op.plan or {}
    title = f"{op.kind.capitalize()} {op.target} on {op.cluster}"
    count = f"{len(approvers)} of {op.approvals_needed}"
    if op.status == "pending_approval" and admin_missing(op, admins):
        count += " · needs an admin's approval"
    elif op.admin_needed and admins:
        count += f" · admin: {', '.join(f'<@{u}>' for u in admins)}"
    fields = [
        _md(f"*Cluster*\n{op.cluster}"),
        _md(f"*Namespace*\n{op.namespace}"),
        _md(f"*Object*\n`{plan.get('object', op.target)}`"),
        _md(f"*Change*\n{plan.get('change', '')}"),
        _md(f"*Requested by*\n<@{op.requested_by}>"),
        _md(f"*Approvals*\n{count if op.approvals_needed else 'none needed'}"),
    ]
    blocks: list[Block] = [HeaderBlock(text=_clip(title, 150)), SectionBlock(fields=fields)]
    if plan.get("details"):
        blocks.append(SectionBlock(text=_md(plan["details"])))
    if plan.get("budget"):  # the month's spend and what this change adds (handlers/scale.py, budget_gate)
        blocks.append(SectionBlock(text=_md(plan["budget"])))
    blocks.append(ContextBlock(elements=[_md(f"Operation #{op.id} · {_decision_line(op, approvers, admins)}")]))
    if op.status == "pending_approval" and op.approvals_needed > 0:  # nothing to decide otherwise
        blocks.append(decision_buttons(op))
    text = f"{STATE_ICON.get(op.status, '')} {title}: {plan.get('change', '')} (#{op.id}, {op.status})"
    return _render(text, blocks, sandbox)


def decision_buttons(op: Operation) -> ActionsBlock:
    """Approve / Reject, on the card and on the Home tab alike (handlers/decisions.py answers both)."""
    return ActionsBlock(block_id=f"decide-{op.id}", elements=[
        ButtonElement(text="Approve", action_id="op_approve", value=str(op.id), style="primary"),
        ButtonElement(text="Reject", action_id="op_reject", value=str(op.id), style="danger"),
    ])


def reject_modal(op: Operation) -> dict[str, Any]:
    from slack_sdk.models.blocks import InputBlock, PlainTextInputElement
    from slack_sdk.models.views import View

    view = View(type="modal", callback_id="reject_reason", private_metadata=str(op.id),
                title=f"Reject #{op.id}", submit="Reject", close="Cancel",
                blocks=[InputBlock(block_id="reason", label="Why is this rejected?",
                                   element=PlainTextInputElement(action_id="value", multiline=True,
                                                                 max_length=500))])
    return view.to_dict()


# ---- lists -------------------------------------------------------------------------------------


def operation_line(op: Operation) -> str:
    """One operation in a list (`ops`, `approvals`, the Home tab's recent operations)."""
    return (f"{STATE_ICON.get(op.status, '')} *#{op.id}* {op.kind} `{op.target}` on {op.cluster} · "
            f"{(op.plan or {}).get('change', '')} · {op.status} · by <@{op.requested_by}> · {_when(op.created_at)}")


def operations_message(title: str, ops: Sequence[Operation], *, empty: str, sandbox: bool = False) -> Message:
    if not ops:
        return note(empty, sandbox=sandbox)
    lines = [operation_line(op) for op in ops]
    return _render(title, [HeaderBlock(text=title), SectionBlock(text=_md("\n".join(lines)))], sandbox)


def audit_message(entries: Sequence[AuditEntry], *, sandbox: bool = False) -> Message:
    if not entries:
        return note("The audit log is empty.", sandbox=sandbox)
    lines = [f"`{_when(e.at)}` {e.outcome} · {e.action} · <@{e.actor}>"
             + (f" · #{e.operation_id}" if e.operation_id else "")
             + (f" · {escape(_clip(e.detail, 120))}" if e.detail else "") for e in entries]
    blocks: list[Block] = [HeaderBlock(text=f"Audit log (last {len(entries)})")]
    chunk: list[str] = []
    for line in lines:  # keep each section under Slack's 3000-character limit
        if sum(len(x) + 1 for x in chunk) + len(line) > 2900:
            blocks.append(SectionBlock(text=_md("\n".join(chunk))))
            chunk = []
        chunk.append(line)
    blocks.append(SectionBlock(text=_md("\n".join(chunk))))
    return _render("Audit log", blocks[:50], sandbox)
