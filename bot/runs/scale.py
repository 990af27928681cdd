"""`scale` after approval: patch the scale subresource, then watch the rollout; pods left Pending on a
cluster with Karpenter get its view (NodeClaims, launch failures, NodePool limits) in the thread."""

from __future__ import annotations

from bot.clusters import Clusters
from bot.config import Config
from bot.db.tables import Operation
from bot.runs.progress import Outcome, Progress
from ops import karpenter
from ops.errors import OpsError
from ops.kube import KubeCluster
from ops.releases import ReleaseApi


def run_scale(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    cluster = config.cluster(op.cluster)
    if cluster is None:
        return Outcome(False, f"cluster `{op.cluster}` is no longer configured")
    kube = clusters.get(cluster)
    told: set[str] = set()

    def with_karpenter(text: str) -> None:
        progress(text)
        # "Still waiting: …" is the watch's diagnosis of stuck pods: Karpenter's view goes right after it.
        if text.startswith("Still waiting"):
            for line in _karpenter(kube, op):
                if line not in told:
                    told.add(line)
                    progress(line)

    result = kube.scale(op.target, op.namespace, int(op.params["replicas"]),
                        timeout=cluster.rollout_timeout_seconds, progress=with_karpenter)
    if result.ok:
        return Outcome(True, result.message)
    return Outcome(False, " ".join([result.message, *_karpenter(kube, op)]))


def _karpenter(kube: KubeCluster, op: Operation) -> list[str]:
    try:
        deployment = kube.get_deployment(op.target, op.namespace)
    except OpsError:
        return []  # gone, or unreadable: the watch's own message says so
    return karpenter.explain_selected(ReleaseApi(kube), op.namespace, deployment.selector)
