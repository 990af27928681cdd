"""Tables of digests: channel subscriptions, one row per posted digest, and the suggestions they carried.

Migration 0002_digest creates them (a branch of its own beside the foundation's schema).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.models import Base, UTCDateTime, utcnow

# Digest post states: claimed (this row's holder is posting it) → posted | failed.
CLAIMED, POSTED, FAILED = "claimed", "posted", "failed"
# Suggestion states: open → applying (one click won) → applied | open again (the request was refused).
OPEN, APPLYING, APPLIED = "open", "applying", "applied"


class DigestSubscription(Base):
    """A channel's digest schedule set with `/infer digest subscribe` (one per channel)."""

    __tablename__ = "digest_subscriptions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(String(32), unique=True)
    cron: Mapped[str] = mapped_column(String(100))  # standard crontab, 5 fields (day-of-week 0/7 = Sunday)
    timezone: Mapped[str] = mapped_column(String(64))
    clusters: Mapped[list[str]] = mapped_column(JSON, default=list)  # empty = every configured cluster
    created_by: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DigestPost(Base):
    """One digest for one channel and period. The unique key is what makes several replicas post once."""

    __tablename__ = "digest_posts"
    __table_args__ = (UniqueConstraint("channel_id", "period", name="uq_digest_channel_period"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    # The scheduled time it stands for (UTC, to the minute), or `manual:<uuid>` for `digest now`.
    period: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16))
    claimed_by: Mapped[str] = mapped_column(String(100))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ts: Mapped[str | None] = mapped_column(String(32), default=None)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # headline numbers, for the record
    error: Mapped[str | None] = mapped_column(Text, default=None)


class DigestSuggestion(Base):
    """A suggestion shown with an Apply button; the button's value is this row's id."""

    __tablename__ = "digest_suggestions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    post_id: Mapped[int | None] = mapped_column(Integer, default=None, index=True)
    channel_id: Mapped[str] = mapped_column(String(32))
    cluster: Mapped[str] = mapped_column(String(63))
    namespace: Mapped[str] = mapped_column(String(63))
    deployment: Mapped[str] = mapped_column(String(253))
    rule: Mapped[str] = mapped_column(String(32))
    title: Mapped[str] = mapped_column(Text)
    command: Mapped[str] = mapped_column(Text)  # the slash command text Apply requests (`scale x 1 …`)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    applied_by: Mapped[str | None] = mapped_column(String(32), default=None)
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    operation_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
