"""`scale <name> <replicas>`: read the Deployment, then an operation and its approval card.

Also the budget gate every change that adds accelerators goes through (scale, deploy, autoscale):
on a cluster with a budget and a Prometheus, the card shows the month's spend and the change's
delta (ops/budgets.py); over budget it needs an admin among its approvers, or is refused (hard).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from handlers import blocks, cards
from handlers.base import Invocation, Refusal
from handlers.blocks import Operation
from handlers.deps import ClusterConfig, Deps
from handlers.models import catalog_settings
from handlers.parse import Command
from ops import budgets, lock_keys, schedules
from ops.errors import OpsError
from ops.metrics.client import PromError, Prometheus
from ops.metrics.nodes import NODE_TYPES

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Gate:
    """What the budget makes of a change: the card's line (None: no budget here) and whether an admin must approve."""

    line: str | None = None
    admin: bool = False

    def plan(self, plan: dict[str, Any]) -> dict[str, Any]:
        return {**plan, "budget": self.line} if self.line else plan

    def approvals(self, needed: int) -> int:
        # An admin must approve: a cluster that needs no approval still needs that one.
        return max(1, needed) if self.admin else needed


NO_BUDGET = Gate()
# (Δdevices, USD per device-hour or None when unknown, what a device is called: GPU, Neuron)
Change = tuple[int, float | None, str]


def device_name(resource: str | None) -> str:
    return "Neuron" if resource and "neuron" in resource else "GPU"


def cluster_spend(deps: Deps, cluster: ClusterConfig, now: datetime) -> budgets.Spend:
    """The cluster's spend this month (a card's budget line, the digest's burn rate). Raises PromError."""
    _, region = catalog_settings(deps.config)
    kube = deps.clusters.get(cluster)

    def node_types() -> Mapping[str, str]:
        try:
            return NODE_TYPES.get(kube)
        except Exception as exc:  # an unreadable Node list only leaves those devices unpriced (the line says so)
            log.warning("cannot list the nodes of %s for the budget: %s", cluster.name, exc)
            return {}

    timeout = float(getattr(deps.config.metrics, "timeout_seconds", 20))
    assert cluster.prometheus_url  # callers check: no Prometheus, no spend to read
    return budgets.month_to_date(Prometheus(cluster.prometheus_url, timeout), now, region, node_types)


def budget_gate(inv: Invocation, cluster: ClusterConfig, action: str, change: Callable[[], Change]) -> Gate:
    """Measure a change against the cluster's budget. `change` is only called where a budget applies
    (it may read the cluster). Raises Refusal, with the numbers, when a hard budget would be exceeded."""
    budget = inv.deps.config.budget(cluster.name)
    if budget is None or not cluster.prometheus_url:
        return NO_BUDGET
    try:
        spend = cluster_spend(inv.deps, cluster, datetime.now(UTC))
    except PromError as exc:
        # A budget is advice on spend, not a lock on the cluster: a Prometheus outage says so on the card.
        return Gate(f"*Budget* ${budget.monthly_usd:,.2f}/month · month to date unknown ({exc.args[0]})")
    try:
        devices, price, device = change()
    except OpsError as exc:
        devices, price, device = 0, None, f"device ({exc.message})"
    delta = budgets.delta(devices, price, spend.at)
    note = budgets.delta_note(devices, price, spend.at, device) if price is not None else \
        ("no accelerator" if not devices else f"no price for its {device}")
    verdict = budgets.Verdict(budget.monthly_usd, budget.hard, spend, delta, note)
    if verdict.over and budget.hard:
        raise Refusal(f"`{action}` would take `{cluster.name}` over its hard budget of ${budget.monthly_usd:,.2f} "
                      f"this month: month to date ${spend.mtd_usd:,.2f}, projected month end "
                      f"${spend.projected_usd:,.2f}, this change {verdict.change_text()}. "
                      "Nothing was changed.", cluster=cluster.name)
    return Gate(verdict.line(), verdict.over)


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

    def change() -> Change:
        _, region = catalog_settings(deps.config)
        per = schedules.footprint(deps.clusters.get(cluster), name, namespace, region)
        return (replicas - current.replicas) * per.devices, per.usd_per_device_hour, device_name(per.resource)

    gate = budget_gate(inv, cluster, "scale", change)
    op = deps.store.create_operation(
        kind="scale", cluster=cluster.name, namespace=namespace, target=name,
        params={"replicas": replicas},
        plan=gate.plan({"object": f"deployment/{name}", "change": f"replicas {current.replicas} → {replicas}",
                        "before": current.replicas, "after": replicas,
                        "details": f"When asked: {current.ready}/{current.replicas} ready · image "
                                   f"`{', '.join(current.images)[:200]}`"}),
        requested_by=inv.user, channel_id=inv.channel,
        approvals_needed=gate.approvals(deps.policy.approvals_needed(cluster, "scale")), ttl=deps.approval_ttl,
        # One change at a time per Deployment: a second approved scale waits for the first.
        lock_key=lock_keys.workload(cluster.name, namespace, name),
        admin_needed=gate.admin or None,
    )
    try:
        cards.publish(inv.client, deps.store, op, sandbox=inv.sandbox, wake=deps.wake_worker)
    except cards.CardNotPosted as exc:
        raise Refusal(exc.message, cluster=cluster.name) from None
    return op
