"""`scale <name> <replicas>`: read the Deployment, then an operation and its approval card."""

from __future__ import annotations

from slack_sdk.errors import SlackApiError

from handlers import blocks, cards
from handlers.base import Invocation, Refusal
from handlers.parse import Command


def request(cmd: Command, inv: Invocation) -> None:
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
        return
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
        lock_key=f"deployment:{cluster.name}/{namespace}/{name}",
    )
    try:
        cards.post_card(inv.client, deps.store, op, sandbox=inv.sandbox)
    except SlackApiError as exc:
        deps.store.reject(op.id, "infer-bot", "the approval card could not be posted")
        error = exc.response.get("error", "error")
        hint = " Invite the bot to this channel first (`/invite @infer-bot`)." if error == "not_in_channel" else ""
        raise Refusal(f"I could not post the approval card here ({error}); nothing was changed.{hint}",
                      cluster=cluster.name) from None
    if op.status == "approved":
        deps.wake_worker()
