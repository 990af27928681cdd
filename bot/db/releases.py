"""Release revisions in the database: every revision's manifests, as the bot applied them.

The bot owns a release's history here, not helm: helm only renders (ops/helm.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select

from bot.db.store import Store
from bot.db.tables import Operation, ReleaseRevision, RevisionStatus
from ops import releases


def rollback_target(revisions: Sequence[ReleaseRevision], wanted: int | None) -> ReleaseRevision | None:
    """The stored revision a rollback re-applies: `wanted`, or the one before the latest ("undo")."""
    kept = [r for r in revisions if r.action != "undeploy"]
    if wanted is None:
        return kept[-2] if len(kept) >= 2 else None
    return next((r for r in kept if r.revision == wanted), None)


def unstamped(obj: dict[str, Any]) -> dict[str, Any]:
    """A stored manifest without the revision label: the next revision stamps its own."""
    out = dict(obj)
    meta = dict(out.get("metadata") or {})
    meta["labels"] = {k: v for k, v in (meta.get("labels") or {}).items() if k != releases.REVISION_LABEL}
    out["metadata"] = meta
    return out


class ReleaseHistory:
    """The revisions of every release: read by the rollback card (handlers.deps.ReleaseHistory),
    written by the release executors (bot/runs/releases.py)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def revisions(self, cluster: str, namespace: str, name: str) -> list[ReleaseRevision]:
        with self.store.reading() as s:
            q = (select(ReleaseRevision)
                 .where(ReleaseRevision.cluster == cluster, ReleaseRevision.namespace == namespace,
                        ReleaseRevision.name == name)
                 .order_by(ReleaseRevision.revision))
            return list(s.scalars(q).all())

    def known(self, cluster: str, namespace: str, name: str) -> list[int]:
        return [r.revision for r in self.revisions(cluster, namespace, name) if r.action != "undeploy"]

    def kinds(self, cluster: str, namespace: str, name: str) -> list[tuple[str, str]]:
        """(apiVersion, kind) of everything any revision rendered: where its objects may be, beyond the
        usual kinds (an Ingress or a ConfigMap a preset enables)."""
        return releases.kinds_of(o for r in self.revisions(cluster, namespace, name) for o in r.manifests)

    def rollback_target(self, cluster: str, namespace: str, name: str,
                        wanted: int | None) -> tuple[int, list[dict[str, Any]]] | None:
        target = rollback_target(self.revisions(cluster, namespace, name), wanted)
        return None if target is None else (target.revision, [unstamped(o) for o in target.manifests])

    def next_revision(self, op: Operation) -> int:
        with self.store.reading() as s:
            top = s.scalar(select(func.max(ReleaseRevision.revision)).where(
                ReleaseRevision.cluster == op.cluster, ReleaseRevision.namespace == op.namespace,
                ReleaseRevision.name == op.target))
        return int(top or 0) + 1

    def record(self, op: Operation, *, revision: int, action: str, preset: str, manifests: list[dict[str, Any]],
               values: dict[str, Any], note: str = "",
               status: RevisionStatus = RevisionStatus.APPLIED) -> int:
        with self.store.session() as s:
            row = ReleaseRevision(cluster=op.cluster, namespace=op.namespace, name=op.target, revision=revision,
                                  action=action, preset=preset, manifests=manifests, values=values, status=status,
                                  note=note, operation_id=op.id)
            s.add(row)
            s.flush()
            return row.id

    def set_status(self, row_id: int, status: RevisionStatus, note: str | None = None) -> None:
        with self.store.session() as s:
            row = s.get(ReleaseRevision, row_id)
            if row is not None:
                row.status = status
                if note is not None:
                    row.note = note[:2000]
