"""The digest's data (ops/digest.py) and its Slack rendering, on the real Prometheus data set."""

from __future__ import annotations

import pytest

from bot.sandbox.slack.webapi import block_kit_errors
from handlers.digest_blocks import APPLY_ACTION, metrics_message, render_digest, sparkline
from ops.charts import Line, render_png
from ops.digest import ClusterSource, build
from tests.support.prometheus import closed_port, main_dataset, node_api

G5, G5_2X, G6, INF2 = 1.006, 1.212, 0.8048, 0.7582  # ops/data/instances.yaml, us-west-2, per device

EXPECTED_RULES = {
    "idle-llama": ["underused"],
    "busy-qwen": ["saturated", "kv_pressure"],
    "neuron-llama": ["restarts"],
    "unused-phi": ["no_traffic"],
    "healthy-mistral": [],
}


@pytest.fixture(scope="module")
def digest(tmp_path_factory):
    # A default install: the instance types (and so the cost) come from the cluster's Node objects.
    dataset, server = main_dataset()
    with node_api(dataset, tmp_path_factory.mktemp("nodes")) as (cluster, _):
        return build([ClusterSource("dev", server.url, kube=cluster), ClusterSource("eu", closed_port())],
                     dataset.end)


def by_name(d):
    return {r.metrics.name: r for r in d.deployments}


def test_each_case_gets_exactly_its_suggestions(digest):
    got = {name: [s.rule for s in r.suggestions] for name, r in by_name(digest).items()}
    assert got == EXPECTED_RULES


def test_suggestions_carry_the_change_the_numbers_and_the_money(digest):
    reports = by_name(digest)
    [down] = reports["idle-llama"].suggestions
    assert down.action.command == "scale idle-llama 1 namespace=default cluster=dev"
    assert down.saving_per_day == pytest.approx(2 * 24 * G5)
    assert dict(down.evidence)["accelerator utilization (mean)"] == "4.0 % (target 70 %)"
    up = reports["busy-qwen"].suggestions[0]
    assert up.action.command == "scale busy-qwen 4 namespace=default cluster=dev"
    assert dict(up.evidence)["end-to-end latency p95"] == "30.0 s (SLO 10.0 s)"
    assert dict(up.evidence)["queue growth"] == "+2.00 requests/hour"
    assert reports["busy-qwen"].suggestions[1].action is None  # gpuMemoryUtilization is not an operation
    [gone] = reports["unused-phi"].suggestions
    assert gone.action.command == "scale unused-phi 0 namespace=default cluster=dev"


def test_cost_and_idle_cost_from_the_instance_table(digest):
    reports = by_name(digest)
    assert reports["idle-llama"].cost_per_day == pytest.approx(3 * 24 * G5)
    assert reports["idle-llama"].idle_cost_per_day == pytest.approx(3 * 24 * G5)  # always below 10 %
    assert reports["healthy-mistral"].cost_per_day == pytest.approx(2 * 24 * G6)
    assert reports["healthy-mistral"].idle_cost_per_day == pytest.approx(2 * 24 * G6 / 6)  # the quiet 4 h
    assert reports["busy-qwen"].cost_per_day == pytest.approx(2 * 24 * G5_2X)
    assert reports["neuron-llama"].cost_per_day == pytest.approx(24 * INF2)
    total = (3 * G5 + 2 * G5_2X + 2 * G6 + INF2 + G5) * 24
    assert digest.cost_per_day == pytest.approx(total)
    assert digest.idle_cost_per_day == pytest.approx((3 * G5 + 2 * G6 / 6 + G5) * 24)


def test_headline_numbers(digest):
    # Utilization weighted by accelerator-hours: (3·4 + 2·97 + 2·67.5 + 1·50 + 1·0) / 9.
    assert digest.util_mean == pytest.approx((3 * 4 + 2 * 97 + 2 * 67.5 + 50 + 0) / 9)
    assert digest.worst_latency.metrics.name == "busy-qwen"
    # Most severe first, then the most expensive.
    assert [r.metrics.name for r in digest.deployments][:2] == ["busy-qwen", "neuron-llama"]


def test_an_unreachable_prometheus_is_reported_and_the_rest_is_complete(digest):
    dev, eu = digest.clusters
    assert dev.error is None and dev.deployments == 5
    assert eu.error and "cannot connect" in eu.error
    render = render_digest(digest, {})
    text = str(render.main.blocks)
    assert "*eu*: no data" in text and "The other clusters are complete" in text
    assert "busy-qwen" in text and "healthy-mistral" in text


def test_the_message_fits_slack_headline_first_suggestions_last_with_apply(digest):
    ids = {s.key: i for i, s in enumerate(digest.suggestions, 1) if s.action is not None}
    render = render_digest(digest, ids)
    blocks = render.main.blocks
    assert len(blocks) <= 50 and block_kit_errors(blocks) == []
    assert blocks[0]["type"] == "header" and len(blocks[0]["text"]["text"]) <= 150
    headline = blocks[1]["fields"][0]["text"]
    assert "Accelerator utilization" in headline and "target 70 %" in headline

    def text(b):
        return b.get("text", {}).get("text", "")

    suggestions_at = next(i for i, b in enumerate(blocks) if b["type"] == "header" and "Suggestions" in text(b))
    names = [i for i, b in enumerate(blocks) if b["type"] == "section" and "*busy-qwen* ·" in text(b)]
    assert names and max(names) < suggestions_at < len(blocks) - 1
    buttons = [b["accessory"] for b in blocks if b.get("accessory", {}).get("action_id") == APPLY_ACTION]
    assert sorted(int(b["value"]) for b in buttons) == sorted(ids.values()) and len(buttons) == 3
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks)
    assert render.thread == [] and render.table_csv is None


def test_metrics_message_for_one_deployment(digest):
    report = by_name(digest)["busy-qwen"]
    msg = metrics_message(report, digest, {report.suggestions[0].key: 7})
    assert len(msg.blocks) <= 50 and block_kit_errors(msg.blocks) == []
    text = str(msg.blocks)
    assert "p50/p95/p99 14.4 s / 30.0 s / 31.6 s" in text and "TTFT p95 3.80 s" in text and "1728 preemptions" in text
    assert "'value': '7'" in text


def test_the_chart_is_a_png_of_both_panels(digest):
    lines = [Line(r.metrics.name, r.metrics.util_series, r.metrics.latency_series) for r in digest.deployments]
    png = render_png(lines, title="test")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000


def test_sparkline():
    assert sparkline([(0, 0), (1, 50), (2, 100)], width=3, top=100) == "▁▅█"
    assert sparkline([]) == ""
