"""Monthly budgets per cluster: month-to-date spend, run rate, projected month end, a change's delta.

One PromQL query per check, through ops.metrics' client: the accelerators requested per (node,
resource), summed over the month's 5-minute steps (month to date) and at this instant (the run
rate), each typed with the node's instance type. Prices come from the digest's own pricing
(`ops.digest.price_per_device_hour`), so a card, a digest and `/infer metrics` never disagree.

How the month is read (Kubecost-like):

* month to date = Σ over the step grid points t in (1st of the month 00:00 UTC, now] of the devices
  requested at t × the step's hours × price per device-hour. Where Prometheus holds less than a
  month (retention, a new install), the sum covers what it has: [max(1st, earliest data), now].
* run rate = the devices requested now × price per device-hour (USD per hour).
* projected month end = month to date + run rate × hours left until the 1st of next month.
* a change's monthly delta = Δdevices × price per device-hour × hours left: what the change adds to
  (or takes off) the projection if it stays as it is until the month ends. Hours left, not 730:
  the budget is this month's, and a change late in the month costs less of it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from ops.digest import price_per_device_hour
from ops.metrics.client import Prometheus
from ops.metrics.queries import ACCELERATOR_REQUESTS

STEP = timedelta(minutes=5)


def month_start(now: datetime) -> datetime:
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month_start(now: datetime) -> datetime:
    start = month_start(now)
    return (start + timedelta(days=32)).replace(day=1)


def counted_to(now: datetime, step: timedelta = STEP) -> datetime:
    """The last grid point of the month-to-date sum: spend is counted up to it, and the projection runs
    on from it, so that every figure of one check depends on this one instant (and a test can compute it)."""
    seconds = int(step.total_seconds())
    stamp = int(now.timestamp())
    return datetime.fromtimestamp(stamp - stamp % seconds, UTC)


def hours_left(now: datetime) -> float:
    return (next_month_start(now) - now).total_seconds() / 3600


def _node_types(window: str | None) -> str:
    """(node, instance_type) = 1 from kube_node_labels where the label is allow-listed; over the month
    for the month-to-date part, so that a node gone since still prices the hours it ran."""
    labels = f"max_over_time(kube_node_labels[{window}])" if window else "kube_node_labels"
    return ('max by (node, instance_type) (label_replace(label_replace(' + labels + ', '
            '"instance_type", "$1", "label_beta_kubernetes_io_instance_type", "(.+)"), '
            '"instance_type", "$1", "label_node_kubernetes_io_instance_type", "(.+)"))')


def spend_promql(now: datetime, step: timedelta = STEP) -> str:
    """stat="mtd": Σ devices over the month's steps per (node, resource); stat="now": devices now.

    One millisecond less than the month: ranges are closed on the left before Prometheus 3, so the
    grid point at exactly midnight on the 1st (the last step of the previous month) stays out in
    every version (the same trick as ops.metrics.queries' subqueries).
    """
    span_ms = max(1, int((now - month_start(now)).total_seconds() * 1000) - 1)
    window = f"{span_ms}ms"
    mtd = f"sum by (node, resource) (sum_over_time({ACCELERATOR_REQUESTS}[{window}:{int(step.total_seconds())}s]))"
    current = f"sum by (node, resource) ({ACCELERATOR_REQUESTS})"

    def typed(expr: str, types: str) -> str:
        # Untyped nodes (a default kube-state-metrics) come back without instance_type: the caller
        # types them from the Kubernetes API's Node objects.
        return f"(({expr}) * on (node) group_left (instance_type) {types} or on (node, resource) ({expr}))"

    return " or ".join(f'label_replace({typed(expr, types)}, "stat", "{name}", "", "")' for name, expr, types in (
        ("mtd", mtd, _node_types(window)), ("now", current, _node_types(None))))


@dataclass(frozen=True)
class Spend:
    """A cluster's spend this month as Prometheus and the instance table tell it."""

    at: datetime  # the grid point month to date is counted to (counted_to); the projection runs on from it
    mtd_usd: float
    usd_per_hour: float  # the run rate now
    unpriced: tuple[str, ...] = ()  # nodes whose devices have no price (unknown instance type)

    @property
    def hours_left(self) -> float:
        return hours_left(self.at)

    @property
    def projected_usd(self) -> float:
        return self.mtd_usd + self.usd_per_hour * self.hours_left


def priced(series: Sequence[Mapping[str, Any]], at: datetime, region: str,
           node_types: Mapping[str, str] | Callable[[], Mapping[str, str]] = (lambda: {}),
           step: timedelta = STEP) -> Spend:
    """The answer of `spend_promql` priced. `node_types` (node → instance type, or a function giving
    them, called only when a series is untyped) types the nodes that kube_node_labels does not."""
    step_hours = step.total_seconds() / 3600
    mtd = rate = 0.0
    unpriced: set[str] = set()
    types: Mapping[str, str] | None = node_types if isinstance(node_types, Mapping) else None
    for item in series:
        labels = item.get("metric") or {}
        node, resource = str(labels.get("node", "")), labels.get("resource")
        instance_type = labels.get("instance_type")
        if not instance_type:
            if types is None:
                types = node_types() if callable(node_types) else {}
            instance_type = types.get(node)
        price = price_per_device_hour(instance_type, region, resource)
        if price is None:
            unpriced.add(node or "?")
            continue
        value = float(item["value"][1])
        if labels.get("stat") == "mtd":
            mtd += value * step_hours * price
        elif labels.get("stat") == "now":
            rate += value * price
    return Spend(counted_to(at, step), mtd, rate, tuple(sorted(unpriced)))


def month_to_date(prom: Prometheus, at: datetime, region: str,
                  node_types: Mapping[str, str] | Callable[[], Mapping[str, str]] = (lambda: {})) -> Spend:
    """Raises PromError when Prometheus cannot answer."""
    return priced(prom.query(spend_promql(at), at), at, region, node_types)


@dataclass(frozen=True)
class Verdict:
    """A change measured against a budget."""

    budget_usd: float
    hard: bool
    spend: Spend
    delta_usd: float | None  # None: the change's price is unknown (no device, or no instance price)
    delta_note: str = ""  # how the delta was reached, or why it is unknown

    @property
    def projected_after(self) -> float:
        return self.spend.projected_usd + (self.delta_usd or 0.0)

    @property
    def over(self) -> bool:
        """Only a change that adds spend can take the projection over: a scale-down never needs an admin."""
        return (self.delta_usd or 0.0) > 0 and self.projected_after > self.budget_usd

    def change_text(self) -> str:
        """This change's delta, how it was reached, and the projection with it."""
        text = "unknown" if self.delta_usd is None else f"{_signed(self.delta_usd)}/month"
        if self.delta_note:
            text += f" ({self.delta_note})"
        return f"{text} → projected ${self.projected_after:,.2f}"

    def line(self) -> str:
        """What the card shows: the figures the decision was made on."""
        s = self.spend
        text = (f"*Budget* ${self.budget_usd:,.2f}/month · month to date ${s.mtd_usd:,.2f} · run rate "
                f"${s.usd_per_hour:,.2f}/h · projected month end ${s.projected_usd:,.2f} · "
                f"this change {self.change_text()}")
        if self.over:
            text += (" · *over budget*: refused (hard budget)" if self.hard
                     else " · *over budget*: needs an admin's approval")
        if s.unpriced:
            text += f" · devices on {len(s.unpriced)} node(s) of unknown price are not counted"
        return text


def delta(devices: int, usd_per_device_hour: float | None, at: datetime) -> float | None:
    """Δdevices × price per device-hour × hours left in the month (see the module's docstring)."""
    if usd_per_device_hour is None:
        return None
    return devices * usd_per_device_hour * hours_left(at)


def delta_note(devices: int, usd_per_device_hour: float | None, at: datetime, device: str = "device") -> str:
    if usd_per_device_hour is None:
        return ""
    return (f"{devices:+d} {device} × ${usd_per_device_hour:,.4f}/{device}-hour × "
            f"{hours_left(at):,.1f} h left")


def _signed(usd: float) -> str:
    return f"{'+' if usd >= 0 else '−'}${abs(usd):,.2f}"
