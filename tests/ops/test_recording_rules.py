"""The digest's recording rules, as the Helm chart ships them, on a real Prometheus: the digest reads
them by itself once they cover its window, with the same figures as from the raw series, and reads
the raw series when they do not.

The rules' history is what Prometheus would have recorded: `promtool tsdb create-blocks-from rules`
evaluates the chart's rules file over the generated data (from an hour into the window, so that a
digest at the data set's end finds them missing at its window's start, and one an hour later finds
them over its whole window).

A rule group is evaluated at a fixed offset into its interval (Prometheus hashes the group, and
promtool the rules file's path, into it), so a step of the digest reads the rules' last evaluation
before it. The figures are the same when that evaluation saw the samples the step sees: here the
generated samples fall PHASE seconds after each minute, and the rules file is backfilled under a
name whose offset is later than that (nearly every name).
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from bot.sandbox.promserver import backfill_rules
from ops.metrics import Prometheus, QuerySettings, Target, collect
from ops.metrics.rules import render
from tests.support.prometheus import (
    CASES,
    NEURON_CASES,
    WORKLOAD_CASES,
    DataSet,
    PrometheusServer,
    aligned_now,
    dataset_at,
    serve_dataset,
)

RULES_FILE = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "infer-bot" / "files" / "recording-rules.yaml"
LATER = timedelta(hours=1)  # the rules start an hour into the data set's window; a digest this much later sees them all
PHASE = timedelta(seconds=1)


def test_the_charts_rules_file_is_the_one_the_digest_reads():
    """The chart ships ops/metrics/rules.py's rules: regenerate the file after changing them."""
    assert RULES_FILE.read_text(encoding="utf-8") == render()


def _serve(dataset: DataSet) -> PrometheusServer:
    return serve_dataset(dataset, Path(tempfile.mkdtemp(prefix="infer-bot-prom-rules-")))


def _stop(server: PrometheusServer) -> None:
    server.stop()
    shutil.rmtree(server.workdir, ignore_errors=True)


def _with_rules(dataset: DataSet, at: datetime) -> PrometheusServer:
    """The data set with the rules' history from an hour into its window, evaluated after the samples
    of each minute (see the module's docstring)."""
    start = at.timestamp() - dataset.window
    for attempt in range(5):
        server = _serve(dataset)
        rules = server.workdir / f"recording-rules-{attempt}.yaml"
        shutil.copyfile(RULES_FILE, rules)
        # promtool's first evaluation falls within one interval after --start: a minute early, so that
        # the version series is there at the start of the window of a digest at `at`.
        backfill_rules(server, rules, start - 60, at.timestamp() + 60)
        [stamp] = Prometheus(server.url, 10).query("timestamp(infer_bot:recording_rules:version)", at)
        if float(stamp["value"][1]) % 60 > PHASE.total_seconds():
            return server
        _stop(server)
    raise AssertionError("no rules file name gave an evaluation offset after the samples")


@pytest.fixture(scope="module", params=[CASES, NEURON_CASES, WORKLOAD_CASES], ids=["gpu", "neuron", "lws-ray"])
def servers(request):
    """(data set, when a digest sees the rules over its whole window, the server without rules, the
    same data with the rules' history)."""
    dataset = dataset_at(request.param, aligned_now() + PHASE)
    at = dataset.end - PHASE + LATER
    plain, ruled = _serve(dataset), _with_rules(dataset, at)
    yield dataset, at, plain, ruled
    _stop(plain)
    _stop(ruled)


def _read_recorded(server: PrometheusServer, since: int) -> bool:
    """Whether the queries logged after line `since` read the rules' series (what an operator sees)."""
    lines = server.query_log.read_text(encoding="utf-8").splitlines()[since:]
    return any("infer_bot:namespace_deployment:" in json.loads(line)["params"]["query"] for line in lines if line)


def _same(got, want) -> None:
    for fleet_view, alone in zip(want.deployments, got.deployments, strict=True):
        for name, value in asdict(fleet_view).items():
            mine = asdict(alone)[name]
            if isinstance(value, tuple):  # charts and nodes: point by point
                assert len(mine) == len(value), (fleet_view.name, name)
                assert all(g == pytest.approx(w) for g, w in zip(mine, value, strict=True)), (fleet_view.name, name)
            else:
                assert mine == pytest.approx(value) if isinstance(value, float) else mine == value, (fleet_view.name,
                                                                                                   name)


def test_with_the_rules_over_its_window_the_digest_reads_them_and_shows_the_same_figures(servers):
    dataset, at, plain, ruled = servers
    [want] = collect([Target("dev", plain.url)], at)
    before = ruled.queries_logged()
    [got] = collect([Target("dev", ruled.url)], at)
    assert _read_recorded(ruled, before)
    assert got.error is None and got.warnings == [] and len(got.deployments) == len(dataset.cases)
    _same(got, want)


def test_one_deployment_read_alone_with_the_rules_has_the_digests_figures(servers):
    _, at, plain, ruled = servers
    [fleet] = collect([Target("dev", plain.url)], at)
    for fleet_view in fleet.deployments:
        before = ruled.queries_logged()
        [alone] = collect([Target("dev", ruled.url)], at, scope=fleet_view.key)
        assert _read_recorded(ruled, before)
        _same(alone, type(fleet)(fleet.name, fleet.prometheus_url, [fleet_view]))


def test_rules_that_do_not_cover_the_window_yet_are_not_read(servers):
    """Enabled an hour ago: the digest keeps reading the raw series, and its figures are the same."""
    _, at, plain, ruled = servers
    [want] = collect([Target("dev", plain.url)], at - LATER)
    before = ruled.queries_logged()
    [got] = collect([Target("dev", ruled.url)], at - LATER)
    assert not _read_recorded(ruled, before)
    _same(got, want)


def test_a_digest_with_another_idle_threshold_reads_the_raw_series(servers):
    """The rules count GPUs below 10 %: with `metrics.idle_util_pct: 50` their idle share would be wrong."""
    _, at, plain, ruled = servers
    settings = QuerySettings(idle_util_pct=50)
    [want] = collect([Target("dev", plain.url)], at, settings)
    before = ruled.queries_logged()
    [got] = collect([Target("dev", ruled.url)], at, settings)
    assert not _read_recorded(ruled, before)
    _same(got, want)
