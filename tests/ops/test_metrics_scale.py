"""200 deployments on one real Prometheus: the same number of queries as 5, and a digest within limits."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from bot.sandbox.slack.webapi import block_kit_errors
from handlers.digest_blocks import FILE_THRESHOLD, render_digest
from ops.digest import ClusterSource, build
from ops.metrics import QUERIES, QuerySettings
from tests.support.prometheus import FLEET_INTERVAL, FLEET_SIZE, fleet_dataset

# The fleet is sampled every 15 minutes: step with it, and rate over three samples.
FLEET_SETTINGS = QuerySettings(step=timedelta(seconds=FLEET_INTERVAL),
                               rate_window=timedelta(seconds=3 * FLEET_INTERVAL))


@pytest.fixture(scope="module")
def fleet():
    return fleet_dataset()


@pytest.fixture(scope="module")
def fleet_digest(fleet):
    dataset, server = fleet
    before = server.queries_logged()
    began = time.perf_counter()
    digest = build([ClusterSource("prod", server.url)], dataset.end, FLEET_SETTINGS)
    elapsed = time.perf_counter() - began
    return digest, server.queries_logged() - before, elapsed


def test_two_hundred_deployments_cost_the_same_queries_as_five(fleet_digest, record_property):
    digest, logged, elapsed = fleet_digest
    record_property("digest_build_seconds_200", round(elapsed, 2))
    record_property("promql_queries_200", logged)
    print(f"\n200 deployments: {logged} PromQL queries, digest built in {elapsed:.2f} s")
    assert len(digest.deployments) == FLEET_SIZE
    assert logged == len(QUERIES) == digest.queries
    assert elapsed < 60, f"a 200-deployment digest took {elapsed:.1f} s"


def test_fleet_numbers_are_right(fleet, fleet_digest):
    dataset, _ = fleet
    digest, _, _ = fleet_digest
    by_name = {r.metrics.name: r.metrics for r in digest.deployments}
    for name in ("model-000", "model-101", "model-199"):
        want = dataset.expected(name)
        got = by_name[name]
        assert got.util_mean == pytest.approx(want["util_mean"])
        assert got.requests == pytest.approx(want["requests"])
        assert got.e2e_p95 == pytest.approx(want["e2e_p95"])
        assert got.namespace == f"team-{int(name[-3:]) % 7}"


def test_two_hundred_deployments_render_within_slacks_limits(fleet_digest):
    digest, _, _ = fleet_digest
    render = render_digest(digest, {s.key: i for i, s in enumerate(digest.suggestions, 1)})
    assert len(render.main.blocks) <= 50 and block_kit_errors(render.main.blocks) == []
    assert FLEET_SIZE > FILE_THRESHOLD and render.table_csv is not None
    assert render.table_csv.decode().count("\n") == FLEET_SIZE + 1  # header + every deployment
    for message in render.thread:
        assert len(message.blocks) <= 50 and block_kit_errors(message.blocks) == []


def _samples_read(server, since: int) -> int:
    """Samples Prometheus read for the queries logged after line `since` (its query log's own count)."""
    import json

    lines = server.query_log.read_text(encoding="utf-8").splitlines()[since:]
    return sum(int(json.loads(line)["stats"]["samples"]["totalQueryableSamples"]) for line in lines if line.strip())


def test_one_deployment_read_alone_reads_its_own_series_not_the_fleets(fleet):
    """`/infer metrics <name>` on a 200-deployment cluster: Prometheus reads about one deployment's worth
    of samples (the owner mapping of its pods, their series), not the fleet's filtered afterwards."""
    from ops.metrics import Target, collect

    dataset, server = fleet
    before = server.queries_logged()
    build([ClusterSource("prod", server.url)], dataset.end, FLEET_SETTINGS)
    fleet_samples = _samples_read(server, before)
    before = server.queries_logged()
    [cluster] = collect([Target("prod", server.url)], dataset.end, FLEET_SETTINGS, scope=("team-3", "model-101"))
    one_samples = _samples_read(server, before)
    assert [m.name for m in cluster.deployments] == ["model-101"]
    # One of 200 is 0.5 %; the scoped queries' fixed parts (mapping, replicas) stay well under 2 %.
    assert one_samples < fleet_samples / 50, f"one deployment read {one_samples:,} samples, the fleet {fleet_samples:,}"
