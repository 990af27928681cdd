"""Approve / Reject buttons on approval cards and the reject-reason modal.

Exactly-once lives in the store (a conditional UPDATE); these handlers only check who may click,
tell the clicker what happened, and refresh the card from the database.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers import blocks, cards
from handlers.counters import ACTIONS
from handlers.deps import Deps

log = logging.getLogger(__name__)

OUTCOME_TEXT = {
    "recorded": "Your approval of #{id} is recorded; it needs {more} more.",
    "already": "You already approved #{id}.",
    "self": "You asked for #{id}, so someone else has to approve it.",
    "needs_admin": "#{id} needs an admin's approval: a {kind} needs {needed} approvals from different people, one "
                   "of them an admin's, and the others are in already. Your approval was not counted; ask an admin "
                   "to approve.",
    "not_pending": "#{id} is already {status}; nothing changed.",
    "expired": "#{id} expired before it was approved; nothing changed. Run the command again.",
    "not_found": "that button does not name an operation I know.",
}


class ClickRefused(Exception):
    pass


def _op_id(value: Any) -> int:
    text = str(value or "")
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise ClickRefused("that button does not name an operation I know.")
    return int(text)


def _tell(client: WebClient, channel: str, user: str, text: str) -> None:
    if not channel:
        return
    try:
        client.chat_postEphemeral(channel=channel, user=user, text=text)
    except SlackApiError as exc:
        log.warning("cannot tell %s: %s", user, exc.response.get("error"))


@dataclass(frozen=True)
class Click:
    deps: Deps
    user: str
    channel: str
    op: Any


def _click(ack: Callable[..., Any], body: dict[str, Any], action: dict[str, Any], context: dict[str, Any],
           client: WebClient, verb: str) -> Click | None:
    """Acknowledge, then the checks every decision click shares; None when refused or a repeat."""
    ack()
    deps: Deps = context["deps"]
    if not deps.first_delivery(body):
        return None
    user = body.get("user", {}).get("id", "")
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
    try:
        op = deps.store.get(_op_id(action.get("value")))
        if op is None:
            raise ClickRefused("that button does not name an operation I know.")
        if not channel and (body.get("view") or {}).get("type") == "home":
            channel = op.channel_id  # a Home tab click has no channel: it decides where the card is
        if op.channel_id != channel:
            raise ClickRefused(f"operation #{op.id} belongs to another channel; decide it there.")
        decision = deps.policy.check(user, channel, deps.config.cluster(op.cluster), "approver", verb)
        if not decision.allowed:
            raise ClickRefused(decision.reason)
    except ClickRefused as exc:
        _refused(deps, client, user, channel, verb, str(exc))
        return None
    return Click(deps, user, channel, op)


def on_approve(ack: Callable[..., Any], body: dict[str, Any], action: dict[str, Any],
               context: dict[str, Any], client: WebClient) -> None:
    click = _click(ack, body, action, context, client, "approve")
    if click is None:
        return
    deps, user, op = click.deps, click.user, click.op
    # The role is read now and stored with the approval; the store decides, under the operation's row
    # lock, whether it still counts (an operation that needs an admin keeps the last slot for one).
    result = deps.store.approve(op.id, user, admin=deps.policy.is_admin(user))
    outcome = result.outcome.value
    ACTIONS.labels(action="approve", outcome=outcome).inc()
    if outcome == "approved":
        # Thread line first, then the worker: its progress must read after "Starting".
        cards.post_in_thread(client, op, f"Approved by <@{user}>. Starting.")
        deps.wake_worker()
    elif outcome == "expired":
        cards.post_in_thread(client, op, "Expired without enough approvals; nothing was changed.")
    if outcome in ("approved", "recorded", "expired"):
        cards.refresh_card(client, deps.store, op.id, sandbox=deps.config.sandbox)
    if outcome == "approved":
        return
    current = result.operation or op
    more = max(0, op.approvals_needed - result.approvals)
    text = OUTCOME_TEXT[outcome].format(id=op.id, more=more, status=str(current.status).replace("_", " "),
                                        kind=op.kind, needed=op.approvals_needed)
    if outcome == "recorded" and current.admin_needed and not deps.store.admin_approvers(op.id):
        text = text[:-1] + (", from an admin." if more <= 1 else ", one of them from an admin.")
    _tell(client, click.channel, user, (":no_entry: " if outcome == "needs_admin" else "") + text)


def on_reject(ack: Callable[..., Any], body: dict[str, Any], action: dict[str, Any],
              context: dict[str, Any], client: WebClient) -> None:
    click = _click(ack, body, action, context, client, "reject")
    if click is None:
        return
    op = click.op
    if op.status != "pending_approval":
        _refused(click.deps, client, click.user, click.channel, "reject",
                 f"#{op.id} is already {op.status.replace('_', ' ')}; nothing changed.")
        return
    try:
        client.views_open(trigger_id=body.get("trigger_id", ""), view=blocks.reject_modal(op))
    except SlackApiError as exc:
        _tell(client, click.channel, click.user, f"I could not open the reason form "
                                                 f"({exc.response.get('error')}); click Reject again.")


def on_reject_submit(ack: Callable[..., Any], body: dict[str, Any], view: dict[str, Any],
                     context: dict[str, Any], client: WebClient) -> None:
    deps: Deps = context["deps"]
    user = body.get("user", {}).get("id", "")
    values = (view.get("state") or {}).get("values") or {}
    reason = str(((values.get("reason") or {}).get("value") or {}).get("value") or "").strip()[:500]
    try:
        op_id = _op_id(view.get("private_metadata"))
    except ClickRefused as exc:
        ack(response_action="errors", errors={"reason": str(exc)})
        return
    op = deps.store.get(op_id)
    refusal = ""
    if op is None:
        refusal = "that operation no longer exists."
    elif not reason:
        refusal = "say why, so the requester knows what to change."
    else:
        decision = deps.policy.check(user, op.channel_id, deps.config.cluster(op.cluster), "approver", "reject")
        refusal = "" if decision.allowed else decision.reason
    if refusal:
        deps.store.audit(user, "reject", "refused", operation_id=op_id, detail=refusal)
        ack(response_action="errors", errors={"reason": refusal})
        return
    rejected = deps.store.reject(op_id, user, reason)
    if rejected is None:
        ack(response_action="errors", errors={"reason": f"#{op_id} was already decided; nothing changed."})
        return
    ack()
    ACTIONS.labels(action="reject", outcome="rejected").inc()
    cards.refresh_card(client, deps.store, op_id, sandbox=deps.config.sandbox)
    cards.post_in_thread(client, rejected, f"Rejected by <@{user}>: {blocks.escape(reason)}")


def _refused(deps: Deps, client: WebClient, user: str, channel: str, verb: str, reason: str) -> None:
    ACTIONS.labels(action=verb, outcome="refused").inc()
    deps.store.audit(user, verb, "refused", channel_id=channel or None, detail=reason)
    _tell(client, channel, user, f":no_entry: {reason}")
