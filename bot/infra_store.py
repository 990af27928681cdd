"""Queries of the provisioning tables (bot/models_infra.py) through the Store's sessions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from bot.models import Operation, utcnow
from bot.models_infra import InfraCluster, TerraformRun
from bot.storage import Store


def registration(store: Store, name: str) -> InfraCluster | None:
    with store.session() as s:
        return s.get(InfraCluster, name)


def registrations(store: Store) -> list[InfraCluster]:
    with store.session() as s:
        return list(s.scalars(select(InfraCluster).order_by(InfraCluster.name)).all())


def register(store: Store, name: str, **values: Any) -> InfraCluster:
    """Create or update a cluster's registration (one transaction; the last writer wins)."""
    now = utcnow()
    with store.session() as s:
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


def record_run(store: Store, *, cluster: str, operation_id: int, action: str, outcome: str, headline: str,
               started_at: datetime, seconds: float) -> None:
    with store.session() as s:
        s.add(TerraformRun(cluster=cluster, operation_id=operation_id, action=action, outcome=outcome,
                           headline=headline[:2000], seconds=seconds, started_at=started_at, finished_at=utcnow()))


def last_runs(store: Store) -> dict[str, TerraformRun]:
    """The latest terraform run of every cluster that has one."""
    with store.session() as s:
        latest = select(TerraformRun.cluster, func.max(TerraformRun.id).label("id")).group_by(TerraformRun.cluster)
        ids = [row.id for row in s.execute(latest)]
        rows = s.scalars(select(TerraformRun).where(TerraformRun.id.in_(ids))).all() if ids else []
        return {row.cluster: row for row in rows}


def open_operations(store: Store, lock_key: str, kinds: Sequence[str], statuses: Sequence[str]) -> list[Operation]:
    with store.session() as s:
        q = (select(Operation).where(Operation.lock_key == lock_key, Operation.kind.in_(kinds),
                                     Operation.status.in_(statuses)).order_by(Operation.id))
        return list(s.scalars(q).all())
