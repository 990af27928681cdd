"""The approval card's life in Slack: posted once, updated in place, progress in its thread.

Used by the handlers (on commands and clicks) and by the worker (on progress and results).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers import blocks
from handlers.blocks import Operation
from handlers.deps import Store

log = logging.getLogger(__name__)


class CardNotPosted(Exception):
    """The card could not be posted; the operation was rejected, so nothing will run."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def post_card(client: WebClient, store: Store, op: Operation, *, sandbox: bool) -> str:
    """Post the card of an operation and remember its ts (the thread for everything after).

    Never retried: a post whose answer was lost may still have landed (see bot/app.py).
    """
    msg = blocks.approval_card(op, store.approvers(op.id), admins=store.admin_approvers(op.id), sandbox=sandbox)
    resp = client.chat_postMessage(channel=op.channel_id, text=msg.text, blocks=msg.blocks)
    ts = str(resp["ts"])
    store.set_card(op.id, ts)
    return ts


def publish(client: WebClient, store: Store, op: Operation, *, sandbox: bool, wake: Callable[[], None]) -> str:
    """Post the card of a new (pending) operation; then, if it needs no approval, open it for work.

    Every verb that proposes a change goes through here, so an operation never runs without a
    card to report in. Raises CardNotPosted (after rejecting the operation) when Slack refused.
    """
    try:
        ts = post_card(client, store, op, sandbox=sandbox)
    except (SlackApiError, OSError) as exc:
        error = exc.response.get("error", "error") if isinstance(exc, SlackApiError) else "connection lost"
        store.reject(op.id, "infer-bot", f"the approval card could not be posted ({error})")
        hint = " Invite the bot to this channel first (`/invite @infer-bot`)." if error == "not_in_channel" else ""
        void = " If a card appeared anyway, it is void." if error == "connection lost" else ""
        raise CardNotPosted(
            f"I could not post the approval card here ({error}); nothing was changed.{void}{hint}") from None
    if op.approvals_needed == 0 and store.approve_by_policy(op.id) is not None:
        refresh_card(client, store, op.id, sandbox=sandbox)
        wake()
    return ts


def refresh_card(client: WebClient, store: Store, op_id: int, *, sandbox: bool) -> None:
    """Re-render the card from the database, so whoever updates it shows the same truth."""
    # chat.update is idempotent, so unlike a post it may be retried after a 5xx or a dropped
    # connection. Each attempt renders afresh: a retry must not put back a state that another
    # update (say, the worker's "succeeded") has replaced meanwhile.
    for attempt in range(3):
        op = store.get(op_id)
        # An operation that reports in another's thread (a schedule's run) has no card of its own.
        if op is None or not op.card_ts or (op.plan or {}).get("in_thread"):
            return
        msg = blocks.approval_card(op, store.approvers(op_id), admins=store.admin_approvers(op_id), sandbox=sandbox)
        try:
            client.chat_update(channel=op.channel_id, ts=op.card_ts, text=msg.text, blocks=msg.blocks)
            return
        except SlackApiError as exc:
            if exc.response.status_code < 500 or attempt == 2:
                # e.g. the card was deleted by a user; the thread still tells the story
                log.warning("cannot update card of operation %s: %s", op_id, exc.response.get("error"))
                return
        except OSError as exc:  # urllib's URLError and socket errors
            if attempt == 2:
                log.warning("cannot update card of operation %s: %s", op_id, type(exc).__name__)
                return
        time.sleep(0.5 * 2**attempt)


def post_in_thread(client: WebClient, op: Operation, text: str) -> None:
    """Best effort: a lost progress line must never fail the operation it reports on."""
    try:
        client.chat_postMessage(channel=op.channel_id, thread_ts=op.card_ts, text=text)
    except SlackApiError as exc:
        log.warning("cannot post in the thread of operation %s: %s", op.id, exc.response.get("error"))
    except OSError as exc:
        log.warning("cannot post in the thread of operation %s: %s", op.id, type(exc).__name__)
