"""`scale` after approval: patch the scale subresource, then watch the rollout."""

from __future__ import annotations

from bot.clusters import Clusters
from bot.config import Config
from bot.db.tables import Operation
from bot.runs.progress import Outcome, Progress


def run_scale(op: Operation, config: Config, clusters: Clusters, progress: Progress) -> Outcome:
    cluster = config.cluster(op.cluster)
    if cluster is None:
        return Outcome(False, f"cluster `{op.cluster}` is no longer configured")
    result = clusters.get(cluster).scale(op.target, op.namespace, int(op.params["replicas"]),
                                         timeout=cluster.rollout_timeout_seconds, progress=progress)
    return Outcome(result.ok, result.message)
