"""ops/budgets.py: the month's arithmetic, pricing the query's answer, the verdict on a change, and the query
itself against a real Prometheus (tests/support/prometheus.py's main data set: a default install, whose
nodes only the Kubernetes API types)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ops import budgets
from ops.instances import instance
from ops.metrics.client import Prometheus
from tests.support.prometheus import main_dataset


def per_device(instance_type: str) -> float:
    return instance(instance_type).prices["us-west-2"] / instance(instance_type).devices


def test_the_month_runs_from_the_first_utc_to_the_next_first():
    at = datetime(2026, 12, 4, 14, 40, tzinfo=UTC)
    assert budgets.month_start(at) == datetime(2026, 12, 1, tzinfo=UTC)
    assert budgets.next_month_start(at) == datetime(2027, 1, 1, tzinfo=UTC)
    assert budgets.hours_left(at) == 27 * 24 + 9 + 20 / 60  # Dec 4 14:40 → Jan 1 00:00
    assert budgets.hours_left(datetime(2028, 2, 29, 12, tzinfo=UTC)) == 12  # a leap February ends on the 29th
    assert budgets.counted_to(datetime(2026, 12, 4, 14, 44, 59, tzinfo=UTC)) == \
        datetime(2026, 12, 4, 14, 40, tzinfo=UTC)


def series(stat: str, node: str, value: float, resource: str = "nvidia_com_gpu", **labels: str) -> dict:
    return {"metric": {"stat": stat, "node": node, "resource": resource, **labels}, "value": [0, str(value)]}


def test_spend_prices_device_steps_with_the_digest_prices_typing_untyped_nodes_once():
    at = datetime(2026, 12, 4, 14, 42, tzinfo=UTC)
    listed: list[int] = []

    def node_types() -> dict[str, str]:
        listed.append(1)
        return {"n2": "g5.xlarge"}

    spend = budgets.priced([
        series("mtd", "n1", 288, instance_type="g6.xlarge"),  # 1 GPU all day: 288 steps of 5 min
        series("now", "n1", 1, instance_type="g6.xlarge"),
        series("mtd", "n2", 144),  # typed by the Kubernetes API
        series("now", "n2", 2),
        series("mtd", "n3", 12),  # no type anywhere: not counted, and said so
    ], at, "us-west-2", node_types)
    assert listed == [1]
    assert spend.at == datetime(2026, 12, 4, 14, 40, tzinfo=UTC)
    assert spend.mtd_usd == pytest.approx(24 * per_device("g6.xlarge") + 12 * per_device("g5.xlarge"))
    assert spend.usd_per_hour == pytest.approx(per_device("g6.xlarge") + 2 * per_device("g5.xlarge"))
    assert spend.unpriced == ("n3",)
    assert spend.projected_usd == pytest.approx(spend.mtd_usd + spend.usd_per_hour * budgets.hours_left(spend.at))


def test_a_change_is_over_only_when_it_adds_spend_past_the_budget():
    spend = budgets.Spend(datetime(2026, 12, 31, 14, 0, tzinfo=UTC), mtd_usd=900.0, usd_per_hour=10.0)
    assert spend.projected_usd == 900 + 10 * 10  # 10 hours left in December
    up = budgets.delta(2, 1.5, spend.at)
    assert up == 2 * 1.5 * 10
    over = budgets.Verdict(1010.0, False, spend, up, budgets.delta_note(2, 1.5, spend.at, "GPU"))
    assert over.over and over.projected_after == 1030
    assert over.line() == ("*Budget* $1,010.00/month · month to date $900.00 · run rate $10.00/h · projected month "
                           "end $1,000.00 · this change +$30.00/month (+2 GPU × $1.5000/GPU-hour × 10.0 h left) → "
                           "projected $1,030.00 · *over budget*: needs an admin's approval")
    assert budgets.Verdict(1010.0, True, spend, up).line().endswith("*over budget*: refused (hard budget)")
    # Already over the budget, a scale-down takes spend off: never an admin's call.
    down = budgets.Verdict(500.0, True, spend, budgets.delta(-2, 1.5, spend.at))
    assert not down.over and "this change −$30.00/month" in down.line()
    assert not budgets.Verdict(500.0, False, spend, None, "no price for its GPU").over


def test_month_to_date_is_what_prometheus_holds_since_the_first_or_its_first_sample():
    dataset, server = main_dataset()
    at = datetime.now(UTC)
    grid = budgets.counted_to(at).timestamp()
    assert grid <= dataset.end.timestamp() + dataset.after, "the shared data set ends before now"
    types = {n.name: n.instance_type for n in dataset.nodes()}
    spend = budgets.month_to_date(Prometheus(server.url, 20), at, "us-west-2", types)
    # 5-minute grid points from the first sample (end − 25 h; or the first point after midnight on the
    # 1st, whichever is later) to the point counted to, each 5/60 h of what the data set requests:
    # idle-llama 3 + unused-phi 1 GPU on g5.xlarge, busy-qwen 2 on g5.2xlarge, healthy-mistral 2 on
    # g6.xlarge, neuron-llama 1 Neuron device on inf2.xlarge.
    first = max(dataset.window_start - dataset.before, budgets.month_start(at).timestamp() + 300)
    points = int((grid - first) // 300) + 1
    rate = (4 * per_device("g5.xlarge") + 2 * per_device("g5.2xlarge") + 2 * per_device("g6.xlarge")
            + per_device("inf2.xlarge"))
    assert spend.unpriced == ()
    assert spend.usd_per_hour == pytest.approx(rate)
    assert spend.mtd_usd == pytest.approx(points * 5 / 60 * rate)
