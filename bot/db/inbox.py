"""The inbox: Slack requests `serve` acknowledged, handed to worker processes through the database.

The acking process writes the verified request and answers Slack; any worker process (a child of
`serve`, or `infer-bot worker` elsewhere) claims it with a compare-and-set on `status`, so exactly one
acts on it, then deletes it. On PostgreSQL a NOTIFY wakes the workers at once; SQLite is polled.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, insert, select, text, update

from bot.db.store import Store, changed_rows
from bot.db.tables import InboxItem, InboxStatus, utcnow

log = logging.getLogger(__name__)

CHANNEL = "infer_bot_inbox"  # the PostgreSQL NOTIFY channel


@dataclass(frozen=True)
class Request:
    id: int
    body: str
    content_type: str


class Inbox:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.notifies = store.engine.dialect.name == "postgresql"

    def put(self, body: str, content_type: str) -> None:
        self.put_many([(body, content_type)])

    def put_many(self, requests: list[tuple[str, str]]) -> None:
        """One transaction and one NOTIFY for a batch (PostgreSQL serializes NOTIFYing commits). A Core
        executemany, not ORM objects: this runs in the acking process, whose CPU is the acks'."""
        now = utcnow()
        rows = [{"body": body, "content_type": content_type[:100], "status": InboxStatus.QUEUED, "queued_at": now}
                for body, content_type in requests]
        with self.store.session() as s:
            s.execute(insert(InboxItem), rows)
            if self.notifies:  # delivered at commit, to every listening worker
                s.execute(text(f"NOTIFY {CHANNEL}"))

    def claim(self, worker_id: str) -> Request | None:
        """The oldest queued request, now this worker's; None when there is none left to take."""
        with self.store.session() as s:
            for item in s.scalars(select(InboxItem).where(InboxItem.status == InboxStatus.QUEUED)
                                  .order_by(InboxItem.id).limit(8)).all():
                won = changed_rows(s.execute(
                    update(InboxItem).where(InboxItem.id == item.id, InboxItem.status == InboxStatus.QUEUED)
                    .values(status=InboxStatus.RUNNING, claimed_by=worker_id[:100], claimed_at=utcnow())))
                if won:
                    return Request(item.id, item.body, item.content_type)
        return None

    def done(self, request_id: int) -> None:
        with self.store.session() as s:
            s.execute(delete(InboxItem).where(InboxItem.id == request_id))

    def drop_abandoned(self, older_than: timedelta) -> int:
        """Requests a worker claimed and never finished (it died). They are not run again: the
        command may have half happened (a card posted, an operation created); the log counts them."""
        with self.store.session() as s:
            dropped = changed_rows(s.execute(delete(InboxItem).where(
                InboxItem.status == InboxStatus.RUNNING, InboxItem.claimed_at < utcnow() - older_than)))
        if dropped:
            log.warning("dropped %d Slack request(s) whose worker stopped while acting on them", dropped)
        return dropped
