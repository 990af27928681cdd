"""Home tab rows: who opened the bot's App Home, and the claim that lets one replica publish a refresh.

A refresh is a compare-and-set on the user's row (last publish old enough, and what it showed
differs), so several replicas that notice the same change publish it once, and a burst of changes
costs at most one publish per user every few seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.exc import IntegrityError

from bot.db.store import Store, changed_rows
from bot.db.tables import Approval, HomeTab, Operation, OpStatus, utcnow


@dataclass(frozen=True)
class OpenTab:
    user: str
    opened_at: datetime
    published_at: datetime | None
    shown: str | None


class HomeTabs:
    def __init__(self, store: Store) -> None:
        self.store = store

    def opened(self, user: str) -> None:
        """`user` opened the Home tab now (Slack's app_home_opened)."""
        now = utcnow()
        with self.store.session() as s:
            if changed_rows(s.execute(update(HomeTab).where(HomeTab.user_id == user).values(opened_at=now))):
                return
        try:
            with self.store.session() as s:
                s.add(HomeTab(user_id=user[:32], opened_at=now))
        except IntegrityError:  # a second replica's insert won; its row says the same
            pass

    def open_tabs(self, within: timedelta) -> list[OpenTab]:
        """Users who opened the tab within `within`: Slack tells when a tab opens, never when it closes."""
        with self.store.reading() as s:
            rows = s.scalars(select(HomeTab).where(HomeTab.opened_at >= utcnow() - within)
                             .order_by(HomeTab.user_id)).all()
            return [OpenTab(r.user_id, r.opened_at, r.published_at, r.shown) for r in rows]

    def tab(self, user: str) -> OpenTab | None:
        with self.store.reading() as s:
            r = s.get(HomeTab, user)
            return OpenTab(r.user_id, r.opened_at, r.published_at, r.shown) if r is not None else None

    def claim(self, user: str, shown: str, *, interval: timedelta, changed_only: bool) -> bool:
        """Take the right to publish `user`'s tab now; False when another publish is too recent
        (or, with `changed_only`, when the tab already shows `shown`)."""
        now = utcnow()
        q = update(HomeTab).where(HomeTab.user_id == user,
                                  or_(HomeTab.published_at.is_(None), HomeTab.published_at <= now - interval))
        if changed_only:
            q = q.where(or_(HomeTab.shown.is_(None), HomeTab.shown != shown))
        with self.store.session() as s:
            return changed_rows(s.execute(q.values(published_at=now, shown=shown)
                                          .execution_options(synchronize_session=False))) == 1

    def published(self, user: str) -> None:
        """Slack took the claimed publish: the interval runs from now, so Slack sees the publishes that far apart."""
        with self.store.session() as s:
            s.execute(update(HomeTab).where(HomeTab.user_id == user).values(published_at=utcnow()))

    def forget(self, user: str) -> None:
        """The claimed publish failed: the next refresh must publish again, whatever it shows."""
        with self.store.session() as s:
            s.execute(update(HomeTab).where(HomeTab.user_id == user).values(shown=None))

    def fingerprint(self) -> tuple[object, ...]:
        """Changes whenever an operation changes state or gets an approval; one cheap read per poll."""
        with self.store.reading() as s:
            ops = s.execute(select(func.count(Operation.id), func.max(Operation.updated_at))).one()
            approvals = s.execute(select(func.count(Approval.id), func.max(Approval.id))).one()
        return (*ops, *approvals)

    def operations_of(self, user: str, limit: int = 10) -> list[Operation]:
        """The newest operations `user` asked for or approved."""
        approved = select(Approval.operation_id).where(Approval.user_id == user)
        with self.store.reading() as s:
            q = (select(Operation).where(or_(Operation.requested_by == user, Operation.id.in_(approved)))
                 .order_by(Operation.id.desc()).limit(limit))
            return list(s.scalars(q).all())

    def channels_of(self, user: str) -> list[str]:
        """Channels where `user` asked for changes."""
        with self.store.reading() as s:
            q = select(Operation.channel_id).where(Operation.requested_by == user).distinct()
            return sorted(s.scalars(q).all())

    def pending(self, limit: int = 200) -> Sequence[Operation]:
        """Operations waiting for approval, oldest first (the ones about to expire lead)."""
        with self.store.reading() as s:
            q = (select(Operation).where(Operation.status == OpStatus.PENDING, Operation.approvals_needed > 0)
                 .order_by(Operation.id).limit(limit))
            return list(s.scalars(q).all())
