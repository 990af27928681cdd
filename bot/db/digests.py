"""Digest rows in the database: subscriptions, the (channel, period) claim, suggestions and their Apply.

Every write that must happen once is a unique key or a compare-and-set, so several bot replicas
sharing the database agree without talking to each other.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from bot.db.store import Store, changed_rows
from bot.db.tables import DigestPost, DigestSubscription, DigestSuggestion, PostStatus, SuggestionStatus, utcnow
from ops.cron import make_trigger


class DigestStore:
    def __init__(self, store: Store, on_change: Callable[[], None] | None = None) -> None:
        self.store = store
        self.on_change = on_change  # the scheduler's sync, once there is one

    def changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    @staticmethod
    def next_run(cron: str, timezone: str) -> datetime | None:
        return make_trigger(cron, timezone).get_next_fire_time(None, datetime.now(UTC))

    # ---- subscriptions -----------------------------------------------------------------------------

    def subscribe(self, channel: str, cron: str, timezone: str, user: str,
                  clusters: Sequence[str] = ()) -> tuple[DigestSubscription, DigestSubscription | None]:
        """Set the channel's schedule; returns (the new one, the one it replaced or None)."""
        with self.store.session() as s:
            old = s.scalars(select(DigestSubscription).where(DigestSubscription.channel_id == channel)).first()
            previous = None
            if old is not None:
                previous = DigestSubscription(id=old.id, channel_id=old.channel_id, cron=old.cron,
                                              timezone=old.timezone, clusters=list(old.clusters),
                                              created_by=old.created_by, created_at=old.created_at)
                old.cron, old.timezone, old.clusters = cron, timezone, list(clusters)
                old.created_by, old.created_at = user, utcnow()
                return old, previous
            row = DigestSubscription(channel_id=channel, cron=cron, timezone=timezone, clusters=list(clusters),
                                     created_by=user, created_at=utcnow())
            s.add(row)
            s.flush()
            return row, None

    def unsubscribe(self, channel: str) -> DigestSubscription | None:
        with self.store.session() as s:
            row = s.scalars(select(DigestSubscription).where(DigestSubscription.channel_id == channel)).first()
            if row is not None:
                s.delete(row)
            return row

    def subscriptions(self, channel: str | None = None) -> list[DigestSubscription]:
        with self.store.session() as s:
            q = select(DigestSubscription).order_by(DigestSubscription.id)
            if channel is not None:
                q = q.where(DigestSubscription.channel_id == channel)
            return list(s.scalars(q).all())

    # ---- posts -------------------------------------------------------------------------------------

    def claim_post(self, channel: str, period: str, claimer: str) -> int | None:
        """Claim (channel, period) before posting; None when another process (or run) has it already."""
        try:
            with self.store.session() as s:
                row = DigestPost(channel_id=channel, period=period, status=PostStatus.CLAIMED, claimed_by=claimer,
                                 claimed_at=utcnow(), summary={})
                s.add(row)
                s.flush()
                return row.id
        except IntegrityError:
            return None

    def finish_post(self, post_id: int, status: str, *, ts: str | None = None,
                    summary: dict[str, Any] | None = None, error: str | None = None) -> None:
        with self.store.session() as s:
            s.execute(update(DigestPost).where(DigestPost.id == post_id)
                      .values(status=status, ts=ts, summary=summary or {}, error=error))

    def posts(self, channel: str | None = None) -> list[DigestPost]:
        with self.store.session() as s:
            q = select(DigestPost).order_by(DigestPost.id)
            if channel is not None:
                q = q.where(DigestPost.channel_id == channel)
            return list(s.scalars(q).all())

    # ---- suggestions -------------------------------------------------------------------------------

    def save_suggestions(self, channel: str, post_id: int | None, items: Sequence[dict[str, Any]]) -> list[int]:
        """Store suggestions (dicts of DigestSuggestion columns); returns their ids in order."""
        with self.store.session() as s:
            rows = [DigestSuggestion(channel_id=channel, post_id=post_id, status=SuggestionStatus.OPEN,
                                     created_at=utcnow(), **item)
                    for item in items]
            s.add_all(rows)
            s.flush()
            return [row.id for row in rows]

    def suggestion(self, suggestion_id: int) -> DigestSuggestion | None:
        with self.store.session() as s:
            return s.get(DigestSuggestion, suggestion_id)

    def claim_suggestion(self, suggestion_id: int, user: str) -> bool:
        """open → applying for exactly one click, however many arrive."""
        with self.store.session() as s:
            res = s.execute(update(DigestSuggestion)
                            .where(DigestSuggestion.id == suggestion_id,
                                   DigestSuggestion.status == SuggestionStatus.OPEN)
                            .values(status=SuggestionStatus.APPLYING, applied_by=user, applied_at=utcnow())
                            .execution_options(synchronize_session=False))
            return changed_rows(res) == 1

    def finish_suggestion(self, suggestion_id: int, *, operation_id: int | None, applied: bool) -> None:
        """applying → applied (with the operation it created), or back to open when it was refused."""
        values: dict[str, Any] = {"status": SuggestionStatus.APPLIED, "operation_id": operation_id} if applied else {
            "status": SuggestionStatus.OPEN, "applied_by": None, "applied_at": None}
        with self.store.session() as s:
            s.execute(update(DigestSuggestion)
                      .where(DigestSuggestion.id == suggestion_id, DigestSuggestion.status == SuggestionStatus.APPLYING)
                      .values(**values).execution_options(synchronize_session=False))
