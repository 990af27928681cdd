"""Tables of model releases: every revision's rendered manifests, as the bot applied them.

Migration 0003_releases creates them (a branch of its own beside the foundation's schema). The
bot owns a release's history here, not helm: helm only renders (ops/helm.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from bot.models import Base, UTCDateTime, utcnow

APPLIED = "applied"  # applied, rollout not (yet) confirmed
READY = "ready"
FAILED = "failed"
REMOVED = "removed"  # the release was undeployed after this revision


class ReleaseRevision(Base):
    __tablename__ = "release_revisions"
    __table_args__ = (UniqueConstraint("cluster", "namespace", "name", "revision", name="uq_release_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    cluster: Mapped[str] = mapped_column(String(63), index=True)
    namespace: Mapped[str] = mapped_column(String(63))
    name: Mapped[str] = mapped_column(String(63), index=True)
    revision: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16))  # deploy | rollback | autoscale | undeploy
    preset: Mapped[str] = mapped_column(String(100), default="")
    # The objects exactly as applied (labels included), and the values helm rendered them from.
    manifests: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    values: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=APPLIED)
    note: Mapped[str] = mapped_column(Text, default="")  # rollback: "from revision 2"; failure reason
    operation_id: Mapped[int | None] = mapped_column(Integer, default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
