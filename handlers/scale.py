"""`scale <name> <replicas>`: read the Deployment, then an operation and its approval card."""

from __future__ import annotations

from handlers import blocks, cards
from handlers.base import Invocation, Refusal
from handlers.blocks import Operation
from handlers.parse import Command
from ops import lock_keys


def request(cmd: Command, inv: Invocation) -> None:
    propose(cmd, inv)


def propose(cmd: Command, inv: Invocation) -> Operation | None:
    """Create the scale operation and post its approval card; None when there is nothing to change.

    Shared by the typed command and the digest's Apply button, so both take the same path.
    """
    cluster = inv.cluster_for(cmd)
    inv.authorize(cluster, "operator", "scale")
    name, replicas = cmd.args[0], int(cmd.args[1])
    if replicas > cluster.max_replicas:
        raise Refusal(f"cluster `{cluster.name}` allows at most {cluster.max_replicas} replicas; "
                      f"asked for {replicas}.", cmd.usage, cluster=cluster.name)
    namespace = cmd.options.get("namespace") or cluster.namespace
    current = inv.deps.clusters.get(cluster).get_deployment(name, namespace)
    if current.replicas == replicas:
        inv.reply(blocks.note(f"`deployment/{name}` on `{cluster.name}` already has {replicas} replicas "
                              f"({current.ready} ready); nothing to do.", sandbox=inv.sandbox))
        return None
    deps = inv.deps
    op = deps.store.create_operation(
        kind="scale", cluster=cluster.name, namespace=namespace, target=name,
        params={"replicas": replicas},
        plan={"object": f"deployment/{name}", "change": f"replicas {current.replicas} → {replicas}",
              "before": current.replicas, "after": replicas,
              "details": f"When asked: {current.ready}/{current.replicas} ready · image "
                         f"`{', '.join(current.images)[:200]}`"},
        requested_by=inv.user, channel_id=inv.channel,
        approvals_needed=deps.policy.approvals_needed(cluster, "scale"), ttl=deps.approval_ttl,
        # One change at a time per Deployment: a second approved scale waits for the first.
        lock_key=lock_keys.workload(cluster.name, namespace, name),
    )
    try:
        cards.publish(inv.client, deps.store, op, sandbox=inv.sandbox, wake=deps.wake_worker)
    except cards.CardNotPosted as exc:
        raise Refusal(exc.message, cluster=cluster.name) from None
    return op
