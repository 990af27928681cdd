"""Read-only verbs about clusters and what runs on them: `clusters`, `status`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from handlers import blocks
from handlers.base import Invocation
from handlers.deps import ClusterConfig
from handlers.parse import Command
from ops.errors import OpsError


def clusters(cmd: Command, inv: Invocation) -> None:
    inv.authorize(None, "viewer", "clusters")
    configured = list(inv.deps.config.clusters)

    def reach(cluster: ClusterConfig) -> str:
        try:
            return f"reachable ({inv.deps.clusters.get(cluster).ping()})"
        except OpsError as exc:
            return f"unreachable: {exc.message}"

    # One slow or dead API server must not hold up the others.
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(configured)))) as pool:
        states = list(pool.map(reach, configured))
    rows = [(c.name, c.namespace, state, c.approvals) for c, state in zip(configured, states, strict=True)]
    inv.reply(blocks.clusters_message(rows, sandbox=inv.sandbox))


def status(cmd: Command, inv: Invocation) -> None:
    cluster = inv.cluster_for(cmd)
    inv.authorize(cluster, "viewer", "status")
    namespace = cmd.options.get("namespace") or cluster.namespace
    kube = inv.deps.clusters.get(cluster)
    deployments = [kube.get_deployment(cmd.args[0], namespace)] if cmd.args else kube.list_deployments(namespace)
    inv.reply(blocks.status_message(cluster.name, namespace, deployments, sandbox=inv.sandbox))
