"""One KubeCluster per configured cluster, created on first use and kept for the process."""

from __future__ import annotations

import threading

from bot.config import ClusterConfig, Config
from ops.errors import OpsError
from ops.kube import KubeCluster


class Clusters:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._made: dict[str, KubeCluster] = {}
        self._lock = threading.Lock()

    def get(self, cluster: ClusterConfig) -> KubeCluster:
        with self._lock:
            made = self._made.get(cluster.name)
            if made is None:
                if cluster.eks is not None:
                    raise OpsError(f"cluster `{cluster.name}` is configured through EKS, which this "
                                   "version cannot reach yet; give it a `kubeconfig:` instead.")
                made = KubeCluster(cluster.name, kubeconfig=cluster.kubeconfig, context=cluster.context)
                self._made[cluster.name] = made
        return made
