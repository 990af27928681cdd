"""Read-only verbs about clusters and what runs on them: `clusters [cluster]`, `status`."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

from handlers import blocks, grafana_links, infra_blocks, readiness_blocks, release_blocks
from handlers.base import Invocation
from handlers.deps import ClusterConfig
from handlers.parse import Command
from ops import readiness, releases
from ops.errors import OpsError
from ops.kube import DeploymentInfo, KubeCluster


def clusters(cmd: Command, inv: Invocation) -> None:
    if cmd.cluster is not None:
        cluster_readiness(cmd, inv)
        return
    inv.authorize(None, "viewer", "clusters")
    configured = list(inv.deps.config.clusters)
    # Clusters the bot provisioned: reachable ones are pinged like configured ones.
    provisioned = {p.name: p for p in inv.deps.clusters.registered()}
    names = {c.name for c in configured}
    for p in provisioned.values():
        found = inv.deps.clusters.lookup(p.name) if p.name not in names and p.reach != "none" else None
        if found is not None:
            configured.append(found)

    def reach(cluster: ClusterConfig) -> str:
        try:
            return f"reachable ({inv.deps.clusters.get(cluster).ping()})"
        except OpsError as exc:
            return f"unreachable: {exc.message}"

    # One slow or dead API server must not hold up the others.
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(configured)))) as pool:
        states = list(pool.map(reach, configured))
    rows = [(c.name, c.namespace, infra_blocks.provisioned_state(provisioned[c.name], state)
             if c.name in provisioned else state, c.approvals) for c, state in zip(configured, states, strict=True)]
    shown = {c.name for c in configured}
    rows += [(p.name, p.namespace, infra_blocks.provisioned_state(p, ""), inv.deps.config.terraform.approvals)
             for p in provisioned.values() if p.name not in shown]
    inv.reply(blocks.clusters_message(rows, sandbox=inv.sandbox))


def cluster_readiness(cmd: Command, inv: Invocation) -> None:
    """`clusters <name>`: what the cluster has, and what each missing piece costs."""
    cluster = inv.cluster_for(cmd)
    inv.authorize(cluster, "viewer", "clusters")
    timeout = min(10.0, float(inv.deps.config.metrics.timeout_seconds))
    found = readiness.check_cluster(inv.deps.clusters.get(cluster), cluster.namespace, cluster.prometheus_url,
                                    timeout=timeout, command=inv.deps.command)
    # The binaries are this bot process's: what deploy and provision would run, wherever the cluster is.
    tools = readiness.binary_findings(terraform_needed=bool(inv.deps.config.terraform.root))
    inv.reply(readiness_blocks.readiness_message(found, tools, sandbox=inv.sandbox))


def status(cmd: Command, inv: Invocation) -> None:
    cluster = inv.cluster_for(cmd)
    inv.authorize(cluster, "viewer", "status")
    namespace = cmd.options.get("namespace") or cluster.namespace
    name = cmd.args[0] if cmd.args else None
    found, others = read_status(inv.deps.clusters.get(cluster), namespace, name)
    names = [*(r.name for r in found), *(d.name for d in others)]
    links = _dashboard_links(inv, cluster.name, namespace, names) if name else {}
    if not found:
        inv.reply(blocks.status_message(cluster.name, namespace, others, sandbox=inv.sandbox, links=links))
        return
    inv.reply(release_blocks.status_message(cluster.name, namespace, found, others, sandbox=inv.sandbox,
                                            links=links))


def _dashboard_links(inv: Invocation, cluster: str, namespace: str, names: list[str]) -> dict[str, str]:
    """`status <name>`: the model server's dashboard over the window `/infer metrics` reads (the whole
    list goes without: a link per row would outgrow Slack's 3000 characters a section)."""
    end = datetime.now(UTC)
    start = end - timedelta(hours=inv.deps.config.metrics.window_hours)
    links = grafana_links.links_for(inv.deps)
    found = {n: links.link(cluster, namespace, n, start, end) for n in names}
    return {n: link for n, link in found.items() if link}


def read_status(kube: KubeCluster, namespace: str, name: str | None = None,
                ) -> tuple[list[releases.ReleaseInfo], list[DeploymentInfo]]:
    """What `status` shows (and the Home tab's fleet): the bot's releases, then other Deployments."""
    # Releases the bot deployed come first, with revision and endpoint; other Deployments follow.
    found = releases.releases(releases.ReleaseApi(kube), namespace, name)
    if name and found:
        return found, []
    deployments = [kube.get_deployment(name, namespace)] if name else kube.list_deployments(namespace)
    ours = {(r.name, r.kind) for r in found}
    return found, [d for d in deployments if (d.name, "Deployment") not in ours]
