"""What an executor works with: its Progress (the operation's voice in the card's thread) and the
Outcome it returns. Executors import these, never the worker that calls them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from bot.clusters import Clusters
from bot.config import Config
from bot.db.store import Store
from bot.db.tables import Operation
from handlers import blocks, cards
from ops.errors import OpsError

log = logging.getLogger(__name__)


class Progress:
    """An operation's voice in its card's thread, handed to its executor.

    Calling it posts a line. `edit` keeps one message up to date instead (posted on first use, then
    chat.update), for progress that changes every few seconds and must not flood the thread.
    Executors that post more than lines (a follow-up card, a file) use `client` and `store`.
    """

    def __init__(self, client: WebClient, store: Store, op: Operation, *, sandbox: bool) -> None:
        self.client = client
        self.store = store
        # Re-read: the card may have been posted after the operation was claimed.
        self.op = store.get(op.id) or op
        self.sandbox = sandbox
        self._edited_ts: str | None = None

    #: Set by the worker when this process lost the operation's lease: stop before the next step.
    lost = False

    def __call__(self, text: str) -> None:
        self._check()
        # Progress carries text from Kubernetes and Terraform: never let it mention anyone.
        cards.post_in_thread(self.client, self.op, blocks.escape(text))

    def _check(self) -> None:
        if self.lost:
            raise OpsError("this bot process lost the operation's lease (another replica declared it "
                           "interrupted); stopped before doing more")

    def edit(self, text: str) -> None:
        self._check()
        text = blocks.escape(text)
        try:
            if self._edited_ts is None:
                resp = self.client.chat_postMessage(channel=self.op.channel_id, thread_ts=self.op.card_ts, text=text)
                self._edited_ts = str(resp["ts"])
            else:
                self.client.chat_update(channel=self.op.channel_id, ts=self._edited_ts, text=text)
        except SlackApiError as exc:  # progress is best effort; the result is posted on its own
            log.warning("cannot show progress of operation %s: %s", self.op.id, exc.response.get("error"))


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str
    # Recorded (operation row, audit) but not posted: a routine check that found nothing to say.
    quiet: bool = False


Executor = Callable[[Operation, Config, Clusters, Progress], Outcome]
