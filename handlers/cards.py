"""The approval card's life in Slack: posted once, updated in place, progress in its thread.

Used by the handlers (on commands and clicks) and by the worker (on progress and results).
"""

from __future__ import annotations

import logging
import time

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers import blocks
from handlers.blocks import Operation
from handlers.deps import Store

log = logging.getLogger(__name__)


def post_card(client: WebClient, store: Store, op: Operation, *, sandbox: bool) -> str | None:
    """Post the card for a new operation and remember its ts (the thread for everything after)."""
    msg = blocks.approval_card(op, store.approvers(op.id), sandbox=sandbox)
    resp = client.chat_postMessage(channel=op.channel_id, text=msg.text, blocks=msg.blocks)
    ts = str(resp["ts"])
    store.set_card(op.id, ts)
    return ts


def refresh_card(client: WebClient, store: Store, op_id: int, *, sandbox: bool) -> None:
    """Re-render the card from the database, so whoever updates it shows the same truth."""
    op = store.get(op_id)
    if op is None or not op.card_ts:
        return
    msg = blocks.approval_card(op, store.approvers(op_id), sandbox=sandbox)
    # chat.update is idempotent, so unlike a post it may be retried after a 5xx or a dropped
    # connection without risk of showing anything twice.
    for attempt in range(3):
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
    try:
        client.chat_postMessage(channel=op.channel_id, thread_ts=op.card_ts, text=text)
    except SlackApiError as exc:
        log.warning("cannot post in the thread of operation %s: %s", op.id, exc.response.get("error"))
