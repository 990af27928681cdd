"""Budgets end to end (signed HTTP → a real `infer-bot serve`, the local Slack, the Kubernetes emulator, a real
Prometheus): a scale card on a budgeted cluster shows the month's spend and the change's delta; a change that
takes the projection over the budget needs an admin's approval, or is refused under a hard budget.

The spend comes from the allow-listed data set (tests/support/prometheus.py: labelled-llama, 2 × g6.xlarge GPU,
and sidecar-neuron, 1 × inf2.xlarge Neuron device, every sample from `end − 25 h` to `end + 1 h`, one a
minute). The data set holds a day, not a month, so month to date is what Prometheus has over
[max(1st of the month, first sample), now]: Σ over the 5-minute grid points g in that range of the
devices requested at g × 5/60 h × price per device-hour. The change is `scale qwen 1 → 3` on the test
cluster (1 GPU per replica on g5.xlarge nodes): Δ = 2 GPU × price per GPU-hour × hours left in the month,
counted from the same grid point.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from ops.helm import BUNDLED_CHART
from ops.instances import instance
from tests.support.binaries import needs_helm
from tests.support.prometheus import allowlisted_dataset
from tests.support.slack import ADMIN, APPROVER, CHANNEL, OPERATOR, card_for, op_id_of, text_of
from tests.support.waiting import wait_until

STEP = 300


def price(instance_type: str) -> float:
    """On-demand USD per accelerator-hour in us-west-2, from the instance table."""
    return instance(instance_type).prices["us-west-2"] / instance(instance_type).devices


@dataclass(frozen=True)
class Figures:
    """Every figure of one check, from the grid point the bot counts to."""

    grid: datetime
    mtd: float
    rate: float
    hours_left: float
    delta: float

    @property
    def projected(self) -> float:
        return self.mtd + self.rate * self.hours_left

    @property
    def after(self) -> float:
        return self.projected + self.delta


def figures(dataset, at: datetime) -> Figures:
    stamp = int(at.timestamp())
    grid = datetime.fromtimestamp(stamp - stamp % STEP, UTC)
    month = grid.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    next_month = (month + timedelta(days=32)).replace(day=1)
    first_sample = dataset.window_start - dataset.before
    last_sample = dataset.end.timestamp() + dataset.after
    assert grid.timestamp() <= last_sample, "the shared data set ends before now: the figures below would not hold"
    # Grid points counted: those after midnight on the 1st (that one closes last month) holding a sample.
    first_point = max(first_sample, month.timestamp() + STEP)
    points = int((grid.timestamp() - first_point) // STEP) + 1
    rate = 2 * price("g6.xlarge") + price("inf2.xlarge")  # USD per hour of what runs now
    hours_left = (next_month - grid).total_seconds() / 3600
    return Figures(grid, points * STEP / 3600 * rate, rate, hours_left, 2 * price("g5.xlarge") * hours_left)


def candidates(dataset, before: datetime, after: datetime) -> list[Figures]:
    """The bot counts to the grid point of the moment it checked, between `before` and `after`."""
    return [figures(dataset, before), figures(dataset, after)]


def shown_line(f: Figures, budget: float) -> str:
    return (f"*Budget* ${budget:,.2f}/month · month to date ${f.mtd:,.2f} · run rate ${f.rate:,.2f}/h · "
            f"projected month end ${f.projected:,.2f} · this change +${f.delta:,.2f}/month "
            f"(+2 GPU × ${price('g5.xlarge'):,.4f}/GPU-hour × {f.hours_left:,.1f} h left) → "
            f"projected ${f.after:,.2f}")


def scale_card(make_bot, slack, budget: dict | None, *, prometheus: bool = True):
    dataset, server = allowlisted_dataset()
    bot = make_bot(cluster={"prometheus_url": server.url} if prometheus else None,
                   budgets=[{"cluster": "dev", **budget}] if budget else [])
    before = datetime.now(UTC)
    bot.slash("scale qwen 3", user=OPERATOR)
    card = card_for(slack)
    return bot, card, candidates(dataset, before, datetime.now(UTC))


def soft_limit(f: Figures) -> float:
    """A budget the projection stays under but the change takes it over."""
    return round(f.projected + f.delta / 2, 2)


def test_scale_card_shows_month_to_date_spend_and_the_monthly_delta(make_bot, slack, db):
    bot, card, expected = scale_card(make_bot, slack, {"monthly_usd": 1_000_000})
    shown = text_of(card)
    assert any(shown_line(f, 1_000_000) in shown for f in expected), (shown, expected)
    assert "over budget" not in shown and "needs an admin" not in shown
    assert bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"]).ok
    wait_until(lambda: db.operation(int(op_id_of(card) or 0))["status"] == "succeeded", timeout=30,
               what="the scale run by an approver alone")


def test_over_budget_needs_an_admin_among_the_approvers(make_bot, slack, kube, db):
    dataset, server = allowlisted_dataset()
    f = figures(dataset, datetime.now(UTC))
    budget = soft_limit(f)
    bot = make_bot(cluster={"prometheus_url": server.url}, budgets=[{"cluster": "dev", "monthly_usd": budget}])
    before = datetime.now(UTC)
    bot.slash("scale qwen 3", user=OPERATOR)
    card = card_for(slack)
    shown = text_of(card)
    expected = candidates(dataset, before, datetime.now(UTC))
    assert any(shown_line(g, budget) + " · *over budget*: needs an admin's approval" in shown for g in expected), \
        (shown, expected)
    assert "needs an admin's approval" in shown.split("*Approvals*", 1)[1]
    op_id = int(op_id_of(card) or 0)

    assert bot.click("op_approve", str(op_id), user=APPROVER, message_ts=card.response["ts"]).ok
    told = slack.wait_for(lambda c: c.method == "chat.postEphemeral" and c.params.get("user") == APPROVER)
    assert "needs an admin's approval" in text_of(told)
    wait_until(lambda: any(r["outcome"] == "refused" for r in db.audit(op_id)), what="the approval refused")
    assert db.operation(op_id)["status"] == "pending_approval"
    assert (kube.get("apps/v1", "Deployment", "default", "qwen") or {})["spec"]["replicas"] == 1

    assert bot.click("op_approve", str(op_id), user=ADMIN, message_ts=card.response["ts"]).ok
    wait_until(lambda: db.operation(op_id)["status"] == "succeeded", timeout=30, what="the scale run after the admin")
    assert (kube.get("apps/v1", "Deployment", "default", "qwen") or {})["spec"]["replicas"] == 3


def test_hard_budget_refuses_with_the_numbers_and_creates_nothing(make_bot, slack, db):
    dataset, server = allowlisted_dataset()
    budget = soft_limit(figures(dataset, datetime.now(UTC)))
    bot = make_bot(cluster={"prometheus_url": server.url},
                   budgets=[{"cluster": "dev", "monthly_usd": budget, "hard": True}])
    before = datetime.now(UTC)
    bot.slash("scale qwen 3", user=OPERATOR)
    refusal = slack.wait_for(lambda c: c.method == "response_url" and "hard budget" in text_of(c), timeout=30)
    shown = text_of(refusal)
    expected = candidates(dataset, before, datetime.now(UTC))
    assert any(f"`scale` would take `dev` over its hard budget of ${budget:,.2f} this month: month to date "
               f"${f.mtd:,.2f}, projected month end ${f.projected:,.2f}, this change +${f.delta:,.2f}/month "
               f"(+2 GPU × ${price('g5.xlarge'):,.4f}/GPU-hour × {f.hours_left:,.1f} h left) → projected "
               f"${f.after:,.2f}. Nothing was changed." in shown for f in expected), (shown, expected)
    audit = wait_until(lambda: db.rows("SELECT detail FROM audit_log WHERE action = 'scale' AND outcome = 'refused'"),
                       what="the refusal audited")
    assert "hard budget" in audit[0]["detail"]
    assert db.rows("SELECT id FROM operations") == []
    assert not slack.calls_to("chat.postMessage")  # no card


@pytest.mark.parametrize("budget,prometheus", [(None, True), ({"monthly_usd": 1.0, "hard": True}, False)],
                         ids=["no budget", "no prometheus"])
def test_card_is_unchanged_without_a_budget_or_a_prometheus(make_bot, slack, budget, prometheus):
    _, card, _ = scale_card(make_bot, slack, budget, prometheus=prometheus)
    shown = text_of(card)
    assert "replicas 1 → 3" in shown and "0 of 1" in shown
    assert "Budget" not in shown and "month to date" not in shown and "admin" not in shown


@needs_helm
def test_deploy_and_autoscale_cards_show_the_budget_with_their_own_delta(make_bot, slack, kube):
    dataset, server = allowlisted_dataset()
    kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "default"},
              "type": "Opaque", "data": {"token": base64.b64encode(b"hf_test_value").decode()}})
    bot = make_bot(cluster={"prometheus_url": server.url}, chart={"path": str(BUNDLED_CHART)},
                   budgets=[{"cluster": "dev", "monthly_usd": 1_000_000}])
    before = datetime.now(UTC)
    bot.slash("deploy qwen3-1.7b-vllm name=chat", user=OPERATOR)
    card = card_for(slack)
    shown = text_of(card)
    # A new release of 1 replica on one g6.xlarge (1 GPU): +1 GPU for the rest of the month.
    expected = candidates(dataset, before, datetime.now(UTC))
    assert any(f"month to date ${f.mtd:,.2f} · run rate ${f.rate:,.2f}/h · projected month end ${f.projected:,.2f} "
               f"· this change +${price('g6.xlarge') * f.hours_left:,.2f}/month (+1 GPU × "
               f"${price('g6.xlarge'):,.4f}/GPU-hour × {f.hours_left:,.1f} h left)" in shown for f in expected), shown
    assert bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"]).ok
    slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"] and "Succeeded" in text_of(c),
                   timeout=40)

    before = datetime.now(UTC)
    bot.slash("autoscale chat min=3 max=5 metric=cpu", user=OPERATOR)
    shown = text_of(card_for(slack, n=2))
    # Priced at its minimum: 1 → 3 replicas of 1 GPU, on the instance its pods run on.
    pod_type = node_type_of_pods(kube, "chat")
    expected = candidates(dataset, before, datetime.now(UTC))
    assert any(f"this change +${2 * price(pod_type) * f.hours_left:,.2f}/month (+2 GPU × "
               f"${price(pod_type):,.4f}/GPU-hour × {f.hours_left:,.1f} h left)" in shown for f in expected), shown


def node_type_of_pods(kube, release: str) -> str:
    dep = kube.get("apps/v1", "Deployment", "default", release)
    selector = dep["spec"]["template"]["spec"].get("nodeSelector") or {}
    if "node.kubernetes.io/instance-type" in selector:
        return selector["node.kubernetes.io/instance-type"]
    pods = [p for p in kube.list("v1", "Pod", "default") if p["metadata"]["name"].startswith(release)]
    node = kube.get("v1", "Node", None, pods[0]["spec"]["nodeName"])
    return node["metadata"]["labels"]["node.kubernetes.io/instance-type"]


def digest_in(slack, channel: str = CHANNEL):
    return slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("channel") == channel
                          and not c.params.get("thread_ts") and "Inference digest" in str(c.params.get("text")),
                          timeout=30)


def test_the_digest_shows_the_burn_rate_and_the_projected_month_end(make_bot, slack):
    dataset, server = allowlisted_dataset()
    budget = 10.0  # a day of this data set already spends more: the digest says by how much
    bot = make_bot(cluster={"prometheus_url": server.url}, budgets=[{"cluster": "dev", "monthly_usd": budget}])
    before = datetime.now(UTC)
    bot.slash("digest now", user=OPERATOR)
    shown = text_of(digest_in(slack))
    lines = [f"`dev`: burn rate ${f.rate:,.2f}/h · month to date ${f.mtd:,.2f} · projected month end "
             f"${f.projected:,.2f} of ${budget:,.2f} ({100 * f.projected / budget:.0f} %) · *over budget* by "
             f"${f.projected - budget:,.2f}" for f in candidates(dataset, before, datetime.now(UTC))]
    assert "*Budgets* (this month)" in shown and any(line in shown for line in lines), (shown, lines)


def test_a_budget_for_another_channel_stays_out_of_this_channels_digest(make_bot, slack):
    _, server = allowlisted_dataset()
    bot = make_bot(cluster={"prometheus_url": server.url},
                   budgets=[{"cluster": "dev", "channel": "C0FINANCE", "monthly_usd": 10.0}])
    bot.slash("digest now", user=OPERATOR)
    shown = text_of(digest_in(slack))  # the digest itself is the event: it was posted, without the budget
    assert "Inference digest" in shown and "*Budgets*" not in shown and "burn rate" not in shown
