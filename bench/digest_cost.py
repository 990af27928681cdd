"""Digest cost on real Prometheus: PromQL queries and build time of the bot's digest against a naive
per-deployment reader, for 10, 100 and 500 deployments over 24 h.

The data is the product's generator (bot/sandbox/metrics_data.py) with the test suite's fleet of
look-alike deployments (tests/support/prometheus.py `fleet`), backfilled with promtool and served by
the real `prometheus` binary. Queries are counted in Prometheus' own query log (one line per
evaluated query), so nothing between the client and the server can miscount.

The naive reader is the per-deployment approach: list the Deployments, then
for each one run one query per metric group (the same 14 groups as the bot: utilization, memory,
requests, three latency histograms, queue, KV cache, preemptions, replicas, restarts, inventory and
the two charts) with plain label selectors on that deployment's pods. It gets the same 4 queries in
flight as the bot (ops.metrics.collect's per_cluster), so the ratio measures the query shape, not
concurrency. It reads GPUs only (the fleet has no Neuron), and its figures are checked against the
bot's on a few deployments so the two compute the same thing.

Samples are `--interval` seconds apart (default 300 s, the digest's default step) so that 500
deployments generate and backfill in about a minute here; a real 30 s scrape holds 10× the samples,
and both readers' cost grows with the samples they read (the `read` columns: Prometheus' own
totalQueryableSamples from the query log, which counts a sample again for each evaluation step reading it).
`bot MB` is the peak RSS of a fresh process that builds one digest (imports included, ~60 MB);
`one s` the read of `/infer metrics <name>` (the same queries scoped to one deployment).

Then the digest's recording rules (the Helm chart's files/recording-rules.yaml) are backfilled into
the same Prometheus with `promtool tsdb create-blocks-from rules` over the window (`rules setup s`),
and the bot's digest and `/infer metrics <name>` are timed again: they now read the recorded series
(`rules s`, `rules one s`; `same` compares every figure with the raw digest's). --no-rules skips it.

    .venv/bin/python bench/digest_cost.py [--sizes 10 100 500] [--interval 300] [--repeats 3] [--quick] [--no-rules]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import common
import requests

from bot.sandbox.metrics_data import DataSet, PrometheusServer, aligned_now, binaries, dataset_at, serve_dataset
from bot.sandbox.promserver import backfill_rules
from ops.digest import ClusterSource, Digest, build
from ops.metrics import QUERIES, QuerySettings, Target, bucket_quantile, collect, promql, range_promql
from tests.support.prometheus import fleet

IN_FLIGHT = 4  # the bot's per-cluster concurrency (ops.metrics.collect per_cluster); the naive gets the same
RULES_FILE = common.ROOT / "deploy" / "helm" / "infer-bot" / "files" / "recording-rules.yaml"


# ---- the naive reader ------------------------------------------------------------------------------


def _stats(parts: dict[str, str]) -> str:
    return " or ".join(f'label_replace({expr}, "stat", "{name}", "", "")' for name, expr in parts.items())


def _regex(name: str) -> str:
    """A Deployment name (DNS subdomain: letters, digits, '-' and '.') as a literal inside a PromQL regex."""
    return name.replace(".", "\\\\.")


def naive_queries(namespace: str, deployment: str, s: QuerySettings) -> dict[str, str]:
    """One deployment's instant queries, one per metric group, selecting its pods by name."""
    w = f"{int(s.window.total_seconds())}s"
    ws = f"{int(s.window.total_seconds()) - 1}s:{int(s.step.total_seconds())}s"
    r = f"{int(s.rate_window.total_seconds())}s"
    # Pods of a Deployment are <deployment>-<replicaset hash>-<pod hash>.
    pods = f'namespace="{namespace}", pod=~"{_regex(deployment)}-[^-]+-[^-]+"'
    util, used, free = (f"DCGM_FI_DEV_GPU_UTIL{{{pods}}}", f"DCGM_FI_DEV_FB_USED{{{pods}}}",
                        f"DCGM_FI_DEV_FB_FREE{{{pods}}}")
    ok = f"vllm:request_success_total{{{pods}}}"
    waiting, running = f"vllm:num_requests_waiting{{{pods}}}", f"vllm:num_requests_running{{{pods}}}"
    kv = f"vllm:kv_cache_usage_perc{{{pods}}}"
    restarts = f"kube_pod_container_status_restarts_total{{{pods}}}"
    req = f'kube_pod_container_resource_requests{{{pods}, resource="nvidia_com_gpu"}}'
    dep = f'namespace="{namespace}", deployment="{deployment}"'

    def histogram(metric: str, now: bool = True, mean: bool = False) -> str:
        parts = {"window": f"sum by (le) (increase({metric}_bucket{{{pods}}}[{w}]))"}
        if now:
            parts["now"] = f"sum by (le) (rate({metric}_bucket{{{pods}}}[{r}]))"
        if mean:
            parts["sum"] = f"sum(increase({metric}_sum{{{pods}}}[{w}]))"
            parts["count"] = f"sum(increase({metric}_count{{{pods}}}[{w}]))"
        return _stats(parts)

    return {
        "util": _stats({"sum": f"sum(sum_over_time({util}[{ws}]))", "samples": f"sum(count_over_time({util}[{ws}]))",
                        "idle_samples": f"sum(sum_over_time(({util} < bool {s.idle_util_pct:g})[{ws}]))",
                        "p95": f"quantile_over_time(0.95, avg({util})[{ws}])", "now": f"avg({util})"}),
        "memory": _stats({"used": f"sum(avg_over_time({used}[{ws}]))",
                          "total": f"sum(avg_over_time({used}[{ws}])) + sum(avg_over_time({free}[{ws}]))"}),
        "requests": _stats({"count": f"sum(increase({ok}[{w}]))",
                            "aborted": f'sum(increase(vllm:request_success_total{{{pods}, finished_reason="abort"}}'
                                       f"[{w}]))",
                            "rps_now": f"sum(rate({ok}[{r}]))"}),
        "e2e": histogram("vllm:e2e_request_latency_seconds"),
        "ttft": histogram("vllm:time_to_first_token_seconds"),
        "tpot": histogram("vllm:time_per_output_token_seconds", now=False, mean=True),
        "queue": _stats({"mean": f"sum(avg_over_time({waiting}[{ws}]))", "max": f"max_over_time(sum({waiting})[{ws}])",
                         "now": f"sum({waiting})", "slope": f"3600 * sum(deriv({waiting}[{ws}]))",
                         "running_mean": f"sum(avg_over_time({running}[{ws}]))"}),
        "kv": _stats({"mean": f"avg(avg_over_time({kv}[{ws}]))", "max": f"max(max_over_time({kv}[{ws}]))"}),
        "preemptions": _stats({"total": f"sum(increase(vllm:num_preemptions_total{{{pods}}}[{w}]))"}),
        "replicas": _stats({"desired": f"max(kube_deployment_spec_replicas{{{dep}}})",
                            "available": f"max(kube_deployment_status_replicas_available{{{dep}}})"}),
        "restarts": _stats({"total": f"sum(max_over_time({restarts}[{w}]) - min_over_time({restarts}[{w}]))"}),
        "inventory": _stats({
            "devices": f"sum({req})",
            "typed": f"sum by (instance_type) ({req} * on (node) group_left (instance_type) "
                     'max by (node, instance_type) (label_replace(kube_node_labels, "instance_type", "$1", '
                     '"label_node_kubernetes_io_instance_type", "(.+)")))',
            "device_steps": f"sum(sum_over_time({req}[{ws}]))"}),
    }


def naive_charts(namespace: str, deployment: str, step: timedelta) -> dict[str, str]:
    pods = f'namespace="{namespace}", pod=~"{_regex(deployment)}-[^-]+-[^-]+"'
    return {"chart_util": f"avg(DCGM_FI_DEV_GPU_UTIL{{{pods}}})",
            "chart_latency": f"histogram_quantile(0.95, sum by (le) (rate(vllm:e2e_request_latency_seconds_bucket"
                             f"{{{pods}}}[{int(step.total_seconds())}s])))"}


@dataclass
class NaiveResult:
    deployments: int
    seconds: float
    figures: dict[tuple[str, str], dict[str, float | None]]


def naive_digest(url: str, end: datetime, s: QuerySettings) -> NaiveResult:
    """List Deployments, then every metric group of every Deployment, IN_FLIGHT queries at a time."""
    began = time.perf_counter()
    session = requests.Session()
    at = f"{end.timestamp():.3f}"
    start = f"{(end - s.window).timestamp():.3f}"
    chart_step = max(s.step, s.window / 96)

    def post(path: str, data: dict[str, str]) -> list[dict[str, Any]]:
        resp = session.post(f"{url}{path}", data=data, timeout=120)
        body = resp.json()
        if body.get("status") != "success":
            raise RuntimeError(f"naive query refused: {body.get('error')}: {data['query'][:200]}")
        return list(body["data"]["result"])

    listing = post("/api/v1/query", {"query": f"max by (namespace, owner_name) (max_over_time(kube_replicaset_owner"
                                               f'{{owner_kind="Deployment"}}[{int(s.window.total_seconds())}s]))',
                                     "time": at})
    keys = sorted((m["metric"]["namespace"], m["metric"]["owner_name"]) for m in listing)
    jobs: list[tuple[tuple[str, str], str, Callable[[], list[dict[str, Any]]]]] = []
    for key in keys:
        for name, text in naive_queries(*key, s).items():
            jobs.append((key, name, lambda q=text: post("/api/v1/query", {"query": q, "time": at})))
        for name, text in naive_charts(*key, chart_step).items():
            jobs.append((key, name, lambda q=text: post("/api/v1/query_range", {
                "query": q, "start": start, "end": at, "step": f"{chart_step.total_seconds():g}"})))
    with ThreadPoolExecutor(max_workers=IN_FLIGHT) as pool:
        answers = list(pool.map(lambda job: job[2](), jobs))
    by_key: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = {}
    for (key, name, _), answer in zip(jobs, answers, strict=True):
        by_key.setdefault(key, {})[name] = answer
    figures = {key: _naive_figures(answers) for key, answers in by_key.items()}
    session.close()
    return NaiveResult(len(keys), time.perf_counter() - began, figures)


def _naive_figures(answers: dict[str, list[dict[str, Any]]]) -> dict[str, float | None]:
    """A few of the digest's figures, from the naive answers, to check both readers agree."""

    def stat(group: str, name: str) -> float | None:
        for item in answers.get(group, []):
            if item["metric"].get("stat") == name and "le" not in item["metric"]:
                return float(item["value"][1])
        return None

    buckets = {math.inf if i["metric"]["le"] == "+Inf" else float(i["metric"]["le"]): float(i["value"][1])
               for i in answers.get("e2e", []) if i["metric"].get("stat") == "window"}
    total, samples = stat("util", "sum"), stat("util", "samples")
    return {"util_mean": total / samples if total is not None and samples else None,
            "requests": stat("requests", "count"),
            "e2e_p95": bucket_quantile(0.95, buckets) if buckets else None,
            "queue_max": stat("queue", "max")}


# ---- one size ---------------------------------------------------------------------------------------


@dataclass
class Logged:
    """What Prometheus' query log says about a run: queries, samples read, evaluation seconds by query."""

    queries: int
    samples_read: int
    eval_seconds: dict[str, float]
    samples_by_query: dict[str, int] = field(default_factory=dict)


def logged_since(server: PrometheusServer, first_line: int, names: dict[str, str]) -> Logged:
    """Query-log entries from line `first_line` on; `names` maps the bot's query texts to names."""
    lines = [json.loads(line) for line in server.query_log.read_text(encoding="utf-8").splitlines()[first_line:]
             if line.strip()]
    evals: dict[str, float] = {}
    read: dict[str, int] = {}
    for entry in lines:
        name = names.get(entry["params"]["query"], "other")
        evals[name] = evals.get(name, 0.0) + float(entry["stats"]["timings"]["evalTotalTime"])
        read[name] = read.get(name, 0) + int(entry["stats"]["samples"]["totalQueryableSamples"])
    return Logged(len(lines), sum(read.values()), evals, read)


@dataclass
class Row:
    deployments: int
    samples: int
    bot_queries: int
    bot_seconds: float
    naive_queries: int
    naive_seconds: float
    agree: bool
    setup_seconds: float
    bot_samples_read: int = 0
    naive_samples_read: int = 0
    bot_eval_seconds: dict[str, float] = field(default_factory=dict)  # by query, the last bot run
    bot_samples_by_query: dict[str, int] = field(default_factory=dict)
    bot_rss_mb: int = 0  # peak resident memory of a process that only builds the digest
    one_seconds: float = 0.0  # `/infer metrics <name>`'s read: the same queries scoped to one deployment
    rules_setup_seconds: float = 0.0  # backfilling the recording rules over the window (promtool)
    rules_seconds: float = 0.0  # the digest with the recording rules' series there
    rules_one_seconds: float = 0.0
    rules_same: bool | None = None  # every figure of every deployment as without the rules
    rules_eval_seconds: dict[str, float] = field(default_factory=dict)
    rules_samples_read: int = 0


# One digest build in a fresh interpreter, so that its peak RSS is the bot's (imports included) and
# not this benchmark's, which holds the generated data set.
RSS_SCRIPT = """
import resource, sys
from datetime import datetime, timedelta, timezone
sys.path.insert(0, sys.argv[1])
from ops.digest import ClusterSource, build
from ops.metrics import QuerySettings
step = timedelta(seconds=int(sys.argv[4]))
digest = build([ClusterSource("bench", sys.argv[2])], datetime.fromtimestamp(float(sys.argv[3]), timezone.utc),
               QuerySettings(step=step, rate_window=3 * step))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024, len(digest.deployments))
"""


def bot_rss_mb(url: str, end: datetime, interval: int) -> int:
    out = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(common.ROOT), url, f"{end.timestamp():.3f}",
                          str(interval)], capture_output=True, text=True, timeout=600, check=True)
    return int(out.stdout.split()[0])


def _one(url: str, end: datetime, settings: QuerySettings, keys: list[tuple[str, str]]) -> float:
    """Median seconds of `/infer metrics <name>`'s read, for each of `keys`."""
    times = []
    for key in keys:
        t0 = time.perf_counter()
        [scoped] = collect([Target("bench", url)], end, settings, scope=key)
        times.append(time.perf_counter() - t0)
        if [m.key for m in scoped.deployments] != [key]:
            raise RuntimeError(f"scoped to {key}, read {[m.key for m in scoped.deployments]}")
    return statistics.median(times)


def _same_figures(a: Digest, b: Digest) -> bool:
    """Every figure of every deployment (charts point by point) equal within float rounding."""
    def close(x: Any, y: Any) -> bool:
        if isinstance(x, float) and isinstance(y, float):
            return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
        if isinstance(x, tuple) and isinstance(y, tuple):
            return len(x) == len(y) and all(close(i, j) for i, j in zip(x, y, strict=True))
        return bool(x == y)

    mine = {r.metrics.key: r.metrics for r in a.deployments}
    theirs = {r.metrics.key: r.metrics for r in b.deployments}
    if mine.keys() != theirs.keys():
        return False
    for key, m in mine.items():
        for name in m.__dataclass_fields__:
            if not close(getattr(m, name), getattr(theirs[key], name)):
                print(f"  with rules, {key[1]} {name}: {getattr(m, name)} against {getattr(theirs[key], name)}",
                      file=sys.stderr)
                return False
    return True


def measure_rules(row: Row, server: PrometheusServer, dataset: DataSet, settings: QuerySettings, raw: Digest,
                  repeats: int, keys: list[tuple[str, str]]) -> None:
    """The same digest once the recording rules' series cover the window (backfilled as Prometheus
    would have recorded them), into `row`."""
    began = time.perf_counter()
    backfill_rules(server, RULES_FILE, dataset.window_start - 120, dataset.end.timestamp() + 60)
    row.rules_setup_seconds = time.perf_counter() - began
    build([ClusterSource("bench", server.url)], dataset.end, settings)  # warm the new blocks, untimed
    names = {text: name for name, text in range_promql(settings, use_recorded=True).items()}
    names.update({text: name for name, text in promql(settings).items()})
    times, digest, log = [], raw, Logged(0, 0, {})
    for _ in range(repeats):
        before = server.queries_logged()
        t0 = time.perf_counter()
        digest = build([ClusterSource("bench", server.url)], dataset.end, settings)
        times.append(time.perf_counter() - t0)
        log = logged_since(server, before, names)
    if not any(name in ("steps", "charts") for name in log.eval_seconds):
        raise RuntimeError("with the rules backfilled, the digest did not read them")
    row.rules_seconds, row.rules_same = statistics.median(times), _same_figures(digest, raw)
    row.rules_eval_seconds, row.rules_samples_read = log.eval_seconds, log.samples_read
    row.rules_one_seconds = _one(server.url, dataset.end, settings, keys)


def measure(n: int, interval: int, repeats: int, workdir: Path, rules: bool = True) -> Row:
    began = time.perf_counter()
    # The fleet of tests/ops/test_metrics_scale.py: look-alike healthy deployments over 7 namespaces.
    dataset: DataSet = dataset_at(fleet(n), aligned_now(interval), interval=interval, step=interval,
                                  before=3 * interval, after=0)
    server: PrometheusServer = serve_dataset(dataset, workdir)
    setup = time.perf_counter() - began
    # Step with the samples, and rate over three of them (what the scale test does at 15 min).
    settings = QuerySettings(step=timedelta(seconds=interval), rate_window=timedelta(seconds=3 * interval))
    try:
        build([ClusterSource("bench", server.url)], dataset.end, settings)  # warm the page cache once, untimed
        names = {text: name for name, text in {**promql(settings), **range_promql(settings)}.items()}
        bot_times: list[float] = []
        naive_times: list[float] = []
        digest: Digest | None = None
        naive: NaiveResult | None = None
        bot_log = naive_log = Logged(0, 0, {})
        for _ in range(repeats):  # alternate, so that machine noise falls on both alike
            before = server.queries_logged()
            t0 = time.perf_counter()
            digest = build([ClusterSource("bench", server.url)], dataset.end, settings)
            bot_times.append(time.perf_counter() - t0)
            bot_log = logged_since(server, before, names)
            before = server.queries_logged()
            naive = naive_digest(server.url, dataset.end, settings)
            naive_times.append(naive.seconds)
            naive_log = logged_since(server, before, {})
        assert digest is not None and naive is not None
        if len(digest.deployments) != n or digest.clusters[0].error:
            raise RuntimeError(f"the bot's digest saw {len(digest.deployments)} of {n} deployments "
                               f"({digest.clusters[0].error or digest.clusters[0].warnings})")
        agree = _agree(digest, naive)
        rss = bot_rss_mb(server.url, dataset.end, interval)
        keys = [report.metrics.key for report in sorted(digest.deployments, key=lambda r: r.metrics.key)[:repeats]]
        one = _one(server.url, dataset.end, settings, keys)
        samples = sum(1 for _ in dataset.series()) * int((dataset.window + dataset.before) // interval + 1)
        row = Row(n, samples, bot_log.queries, statistics.median(bot_times), naive_log.queries,
                  statistics.median(naive_times), agree, setup, bot_log.samples_read, naive_log.samples_read,
                  bot_log.eval_seconds, bot_log.samples_by_query, rss, one)
        if rules:
            measure_rules(row, server, dataset, settings, digest, repeats, keys)
    finally:
        server.stop()
    return row


def _agree(digest: Digest, naive: NaiveResult) -> bool:
    """Both readers give the same figures on a handful of deployments (first, middle, last)."""
    reports = sorted(digest.deployments, key=lambda r: r.metrics.key)
    for report in (reports[0], reports[len(reports) // 2], reports[-1]):
        m, theirs = report.metrics, naive.figures.get(report.metrics.key, {})
        for name, ours in (("util_mean", m.util_mean), ("requests", m.requests), ("e2e_p95", m.e2e_p95),
                           ("queue_max", m.queue_max)):
            other = theirs.get(name)
            if (ours is None) != (other is None) or (ours is not None and other is not None
                                                     and not math.isclose(ours, other, rel_tol=1e-6, abs_tol=1e-9)):
                print(f"  disagreement on {m.name} {name}: bot {ours} naive {other}", file=sys.stderr)
                return False
    return True


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 500])
    parser.add_argument("--interval", type=int, default=300, help="seconds between generated samples")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small fleets, sparse samples: check that it works")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--no-rules", action="store_true", help="skip the run with the recording rules backfilled")
    args = parser.parse_args()
    # Quick: 5-minute samples all the same, as a rule evaluation reads a sample within the 5-minute
    # lookback (with 15-minute samples the rules would have nothing to record most minutes).
    sizes, interval, repeats = ([3, 12], 300, 1) if args.quick else (args.sizes, args.interval, args.repeats)
    binaries()  # the install hint, before anything is generated

    print(f"machine: {common.machine()}")
    print(f"data: fleet of N deployments (1 GPU pod each), 24 h window, a sample every {interval} s per series; "
          f"median of {repeats} alternated runs; {IN_FLIGHT} queries in flight for both readers")
    print(f"{'N':>5}{'samples':>11}{'bot q':>7}{'bot s':>8}{'naive q':>9}{'naive s':>9}"
          f"{'naive/bot':>11}{'read: bot':>11}{'naive':>11}{'same figures':>14}{'setup s':>9}{'bot MB':>8}{'one s':>7}")
    rows = []
    for n in sizes:
        workdir = Path(tempfile.mkdtemp(prefix=f"infer-bot-bench-digest-{n}-"))
        try:
            row = measure(n, interval, repeats, workdir, rules=not args.no_rules)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        rows.append(row)
        print(f"{row.deployments:>5}{row.samples:>11,}{row.bot_queries:>7}{row.bot_seconds:>8.2f}"
              f"{row.naive_queries:>9}{row.naive_seconds:>9.2f}{row.naive_seconds / row.bot_seconds:>10.1f}×"
              f"{row.bot_samples_read:>11,}{row.naive_samples_read:>11,}"
              f"{'yes' if row.agree else 'NO':>14}{row.setup_seconds:>9.0f}{row.bot_rss_mb:>8}"
              f"{row.one_seconds:>7.2f}", flush=True)
    if not args.no_rules:
        print(f"with the recording rules backfilled (promtool; the digest reads them by itself):\n"
              f"{'N':>5}{'rules setup s':>15}{'rules s':>9}{'naive/rules':>13}{'rules/bot':>11}{'read':>11}"
              f"{'rules one s':>13}{'same figures':>14}")
        for row in rows:
            print(f"{row.deployments:>5}{row.rules_setup_seconds:>15.0f}{row.rules_seconds:>9.2f}"
                  f"{row.naive_seconds / row.rules_seconds:>12.1f}×{row.rules_seconds / row.bot_seconds:>10.2f}×"
                  f"{row.rules_samples_read:>11,}{row.rules_one_seconds:>13.2f}"
                  f"{'yes' if row.rules_same else 'NO':>14}")
        top = sorted(rows[-1].rules_eval_seconds.items(), key=lambda kv: -kv[1])
        print(f"with the rules, Prometheus time at N = {rows[-1].deployments}: "
              + ", ".join(f"{name} {sec:.2f} s" for name, sec in top[:6]))
    largest = rows[-1]
    print(f"bot queries per digest: {sorted({r.bot_queries for r in rows})} for N = {[r.deployments for r in rows]} "
          f"(len(ops.metrics.QUERIES) = {len(QUERIES)}); naive: 14 × (Deployments + coredns) + 1")
    top = sorted(largest.bot_eval_seconds.items(), key=lambda kv: -kv[1])
    total_eval = sum(largest.bot_eval_seconds.values()) or 1.0
    print(f"where the bot's digest spends Prometheus time at N = {largest.deployments} (query log, evaluation "
          f"seconds summed over its {largest.bot_queries} queries, {IN_FLIGHT} in flight): "
          + ", ".join(f"{name} {sec:.2f} s ({largest.bot_samples_by_query.get(name, 0):,} samples)"
                      for name, sec in top[:5])
          + f"; top query {top[0][1] / total_eval:.0%} of the total" if top else "")
    speedup, seconds = largest.naive_seconds / largest.bot_seconds, largest.bot_seconds
    print(f"target: at N = {largest.deployments}, ≥ 10× faster than naive → {speedup:.1f}× "
          f"({'met' if speedup >= 10 else f'MISSED: {10 / speedup:.1f}× short'}); build ≤ 3 s → {seconds:.2f} s "
          f"({'met' if seconds <= 3 else f'MISSED by {seconds - 3:.1f} s'}); queries constant in N → "
          f"{'met' if len({r.bot_queries for r in rows}) == 1 else 'MISSED'}; `/infer metrics <name>` < 1 s → "
          f"{largest.one_seconds:.2f} s ({'met' if largest.one_seconds < 1 else 'MISSED'})"
          + (f"; with the recording rules: {largest.rules_seconds:.2f} s, "
             f"{largest.naive_seconds / largest.rules_seconds:.1f}× naive, same figures "
             f"{'yes' if largest.rules_same else 'NO'}" if largest.rules_seconds else ""))
    if args.json:
        args.json.write_text(json.dumps([r.__dict__ for r in rows], indent=2), encoding="utf-8")
    return 0 if all(r.agree and r.rules_same is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
