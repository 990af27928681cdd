"""Provisioned clusters and Terraform runs in the database (tables in bot/db/tables.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import func, select

from bot.db.store import Store
from bot.db.tables import InfraCluster, Operation, ReleaseRevision, RevisionStatus, TerraformRun, utcnow


class LiveRelease(NamedTuple):
    """A release the bot deployed on a cluster and has not undeployed: its latest revision."""

    namespace: str
    name: str
    revision: int
    manifests: list[dict[str, Any]]
    preset: str


class InfraStore:
    """Clusters the bot provisioned (how to reach them) and the Terraform runs it made."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def registration(self, name: str) -> InfraCluster | None:
        with self.store.session() as s:
            return s.get(InfraCluster, name)


    def registrations(self) -> list[InfraCluster]:
        with self.store.session() as s:
            return list(s.scalars(select(InfraCluster).order_by(InfraCluster.name)).all())


    def register(self, name: str, **values: Any) -> InfraCluster:
        """Create or update a cluster's registration (one transaction; the last writer wins)."""
        now = utcnow()
        with self.store.session() as s:
            row = s.get(InfraCluster, name, with_for_update=True)
            if row is None:
                row = InfraCluster(name=name, status=values.get("status", "provisioned"), created_at=now,
                                   reach="none", namespace="default", note="", outputs={}, vars={})
                s.add(row)
            for key, value in values.items():
                setattr(row, key, value)
            row.updated_at = now
            s.flush()
            return row


    def record_run(self, *, cluster: str, operation_id: int, action: str, outcome: str, headline: str,
                   started_at: datetime, seconds: float) -> None:
        with self.store.session() as s:
            s.add(TerraformRun(cluster=cluster, operation_id=operation_id, action=action, outcome=outcome,
                               headline=headline[:2000], seconds=seconds, started_at=started_at, finished_at=utcnow()))


    def last_runs(self) -> dict[str, TerraformRun]:
        """The latest terraform run of every cluster that has one."""
        with self.store.session() as s:
            latest = select(TerraformRun.cluster, func.max(TerraformRun.id).label("id")).group_by(TerraformRun.cluster)
            ids = [row.id for row in s.execute(latest)]
            rows = s.scalars(select(TerraformRun).where(TerraformRun.id.in_(ids))).all() if ids else []
            return {row.cluster: row for row in rows}


    def live_releases(self, cluster: str) -> list[LiveRelease]:
        """The bot's releases on a cluster whose latest revision is not an undeploy (a destroy removes
        them first: their Services own cloud load balancers that would keep the VPC from going)."""
        with self.store.reading() as s:
            latest = (select(ReleaseRevision.namespace, ReleaseRevision.name,
                             func.max(ReleaseRevision.revision).label("revision"))
                      .where(ReleaseRevision.cluster == cluster)
                      .group_by(ReleaseRevision.namespace, ReleaseRevision.name).subquery())
            rows = s.scalars(select(ReleaseRevision).join(latest, (ReleaseRevision.namespace == latest.c.namespace)
                                                          & (ReleaseRevision.name == latest.c.name)
                                                          & (ReleaseRevision.revision == latest.c.revision))
                             .where(ReleaseRevision.cluster == cluster)
                             .order_by(ReleaseRevision.namespace, ReleaseRevision.name)).all()
            return [LiveRelease(r.namespace, r.name, r.revision, list(r.manifests), r.preset) for r in rows
                    if r.action != "undeploy"]


    def record_removed(self, op: Operation, release: LiveRelease) -> None:
        """The undeploy revision of a release a destroy removed (as `undeploy` records it)."""
        with self.store.session() as s:
            s.add(ReleaseRevision(cluster=op.cluster, namespace=release.namespace, name=release.name,
                                  revision=release.revision + 1, action="undeploy", preset=release.preset,
                                  manifests=[], values={}, status=RevisionStatus.REMOVED,
                                  note=f"removed before destroy #{op.id}", operation_id=op.id))
