"""One KubeCluster per configured cluster, created on first use and kept for the process.

Clusters the bot provisioned (registered in the database by `provision`) are looked up by name like
configured ones. EKS clusters (`eks:` in the config, or registered) are reached through
describe_cluster and STS tokens (ops/aws.py): no kubeconfig file.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bot.config import ClusterConfig, Config, EksRef
from bot.db.infra import InfraStore
from bot.db.store import Store
from bot.db.tables import ClusterStatus, InfraCluster
from ops import aws
from ops.errors import OpsError
from ops.kube import KubeCluster


@dataclass(frozen=True)
class ProvisionedCluster:
    """A registration as `clusters` shows it, with the cluster's last Terraform run."""

    name: str
    status: str
    reach: str
    where: str  # EKS name and region, or the kubeconfig; empty when unknown
    note: str
    namespace: str
    last_run: str  # e.g. "apply ok (3 to add, 0 to change, 0 to destroy) #12"
    last_run_at: datetime | None


class Clusters:
    def __init__(self, config: Config, store: Store | None = None) -> None:
        self.config = config
        self.store = store  # where provisioned clusters are registered; None: configured ones only
        self._made: dict[str, tuple[tuple[Any, ...], KubeCluster]] = {}
        self._registered_at: dict[str, datetime] = {}
        self._lock = threading.Lock()

    def lookup(self, name: str | None) -> ClusterConfig | None:
        """The configured cluster of that name (the first one for None), else a provisioned one."""
        configured = self.config.cluster(name)
        if configured is not None or name is None or self.store is None:
            return configured
        row = InfraStore(self.store).registration(name)
        if row is None or row.status == ClusterStatus.DESTROYED:
            return None
        with self._lock:
            self._registered_at[name] = row.updated_at  # a new registration gets a new client
        return ClusterConfig(
            name=row.name, namespace=row.namespace, approvals=self.config.terraform.approvals,
            kubeconfig=row.kubeconfig if row.reach == "kubeconfig" else None, context=row.context,
            eks=EksRef(name=row.eks_name or row.name, region=row.region or "") if row.reach == "eks" else None)

    def names(self) -> list[str]:
        """Configured clusters, then provisioned ones that are not also configured."""
        names = [c.name for c in self.config.clusters]
        return names + [r.name for r in self._registrations()
                        if r.status != ClusterStatus.DESTROYED and r.name not in names]

    def _registrations(self) -> list[InfraCluster]:
        return InfraStore(self.store).registrations() if self.store is not None else []

    def registered(self) -> list[ProvisionedCluster]:
        if self.store is None:
            return []
        runs = InfraStore(self.store).last_runs()
        out = []
        for row in self._registrations():
            run = runs.get(row.name)
            where = (f"EKS `{row.eks_name}` in {row.region}" if row.reach == "eks"
                     else f"kubeconfig `{row.kubeconfig}`" if row.reach == "kubeconfig" else "")
            last = f"{run.action} {run.outcome} ({run.headline}) #{run.operation_id}" if run else ""
            out.append(ProvisionedCluster(row.name, row.status, row.reach, where, row.note, row.namespace, last,
                                          run.finished_at if run else None))
        return out

    def get(self, cluster: ClusterConfig) -> KubeCluster:
        with self._lock:
            key = (cluster.kubeconfig, cluster.context, cluster.eks, self._registered_at.get(cluster.name))
            made = self._made.get(cluster.name)
            if made is not None and made[0] == key:
                return made[1]
        if cluster.eks is not None:
            # describe_cluster is a network call: made outside the lock, once per cluster and process.
            kube = KubeCluster(cluster.name, api_client=aws.api_client(
                aws.describe_cluster(cluster.eks.name, cluster.eks.region)))
        elif cluster.kubeconfig is None and self.config.cluster(cluster.name) is None and self.store is not None:
            row = InfraStore(self.store).registration(cluster.name)
            # Without this, the client would quietly fall back to ~/.kube/config: some other cluster.
            raise OpsError(f"cluster `{cluster.name}` was provisioned, but I do not know how to reach it: "
                           f"{row.note if row else 'it is not registered'}")
        else:
            kube = KubeCluster(cluster.name, kubeconfig=cluster.kubeconfig, context=cluster.context)
        with self._lock:
            self._made[cluster.name] = (key, kube)
        return kube
