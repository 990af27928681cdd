"""ops/metrics/ against a real Prometheus over generated data: every figure equals the generator's."""

from __future__ import annotations

import math

import pytest

from bot.sandbox.metrics_data import dataset_at
from ops.metrics import QUERIES, QuerySettings, Target, bucket_quantile, collect, promql
from tests.support.prometheus import (
    ALLOWLISTED_CASES,
    CASES,
    NEURON_CASES,
    WORKLOAD_CASES,
    allowlisted_dataset,
    closed_port,
    main_dataset,
    neuron_dataset,
    shared,
)

FIELDS = ("accelerator", "instance_type", "devices", "device_hours", "util_mean", "util_p95", "idle_share",
          "rps_mean", "requests", "abort_share", "error_share", "failed_share", "queue_mean", "queue_max",
          "queue_slope_per_hour", "kv_mean", "kv_max", "preemptions", "replicas_desired", "replicas_available",
          "restarts", "mem_used_mib", "mem_total_mib", "e2e_p50", "e2e_p95", "e2e_p99", "ttft_p95", "tpot_mean",
          "tpot_p95")


@pytest.fixture(scope="session")
def prom():
    return main_dataset()


@pytest.fixture(scope="session")
def measured(prom):
    dataset, server = prom
    [cluster] = collect([Target("dev", server.url)], dataset.end)
    return {m.name: m for m in cluster.deployments}, cluster


def close(got, want) -> bool:
    if isinstance(want, str) or want is None:
        return got == want
    return got is not None and math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9)


def differences(dataset, got, *, typed: bool = True) -> dict:
    """Fields whose measured value is not the generator's; without `typed`, instance_type is expected unknown."""
    want = dataset.expected(got.name)
    if not typed:
        want["instance_type"] = None
    return {f: (getattr(got, f), w) for f, w in want.items() if f in FIELDS and not close(getattr(got, f), w)}


def placed_on(dataset, name: str) -> tuple:
    """(node, accelerators requested there) of a case's pods, as the generator placed them."""
    nodes: dict[str, float] = {}
    for p in dataset.placements():
        if p.case.name == name:
            nodes[p.node] = nodes.get(p.node, 0.0) + p.case.requests_per_pod
    return tuple(sorted(nodes.items()))


@pytest.mark.parametrize("case", [c.name for c in CASES])
def test_every_figure_equals_the_generators_value(prom, measured, case):
    dataset, _ = prom
    by_name, _ = measured
    got = by_name[case]
    # A default install: kube_node_labels has no instance type, so Prometheus alone cannot tell it; the
    # figures name the nodes instead, where the digest reads it from the Node objects (ops/digest.py).
    wrong = differences(dataset, got, typed=False)
    assert wrong == {}, f"{case}: (measured, generated) differ for {wrong}"
    assert got.untyped_nodes == placed_on(dataset, case)


@pytest.mark.parametrize("case", [c.name for c in ALLOWLISTED_CASES])
def test_allowlisted_node_labels_give_the_instance_type_from_prometheus(case):
    """kube-state-metrics with --metric-labels-allowlist=nodes=[node.kubernetes.io/instance-type]: the series path."""
    dataset, server = allowlisted_dataset()
    [cluster] = collect([Target("dev", server.url)], dataset.end)
    got = {m.name: m for m in cluster.deployments}[case]
    wrong = differences(dataset, got)
    assert wrong == {}, f"{case}: (measured, generated) differ for {wrong}"
    assert got.instance_type == dataset.expected(case)["instance_type"] and got.untyped_nodes == ()


def test_neuron_monitor_series_reach_their_deployments_through_the_node():
    """neuron-monitor's DaemonSet labels cores with the EC2 instance only: kube_node_info's provider_id
    names the node, and the pods there requesting Neuron cores share it by what they requested."""
    dataset, server = neuron_dataset()
    [cluster] = collect([Target("dev", server.url)], dataset.end)
    by_name = {m.name: m for m in cluster.deployments}
    # The core busy on a node where no pod requests Neuron belongs to nobody.
    assert sorted(by_name) == sorted(c.name for c in NEURON_CASES) and cluster.warnings == []
    for case in NEURON_CASES:
        wrong = differences(dataset, by_name[case.name], typed=False)
        assert wrong == {}, f"{case.name}: (measured, generated) differ for {wrong}"
    a, b = by_name["neuron-a"], by_name["neuron-b"]
    # The shared node's 6 cores (4 at 90 %, 2 at 5 %) average 370/6 %; neuron-a holds 4/6 of it and all
    # of its other node (4 cores at 90 %): (4/6·370 + 360) / (4/6·6 + 4) = 75.83 %; idle, its 4/6 of the
    # shared node's 2 quiet cores: (4/6·2) / 8 = 1/6.
    assert a.util_mean == pytest.approx((4 / 6 * 370 + 360) / 8) and a.idle_share == pytest.approx(1 / 6)
    assert a.util_now == pytest.approx(a.util_mean) and a.util_p95 == pytest.approx(a.util_mean)
    # neuron-b only shares the node: its mean, and 2 of the node's 6 cores below 10 %.
    assert b.util_mean == pytest.approx(370 / 6) and b.idle_share == pytest.approx(1 / 3)
    assert (a.accelerator, a.device_resource, a.devices, b.devices) == ("neuron", "aws_amazon_com_neuroncore", 8, 2)
    assert len(b.util_series) == QuerySettings().chart_points + 1
    assert all(v == pytest.approx(370 / 6) for _, v in b.util_series)


def test_both_vllm_generations_are_read_once_each():
    """0.11 renamed TPOT (inter_token_latency_seconds) and kept the old name while deprecated; 0.12 has
    only the new one; errors finish with finished_reason="error" and count as failed."""
    dataset, server = main_dataset()
    [cluster] = collect([Target("dev", server.url)], dataset.end)
    by_name = {m.name: m for m in cluster.deployments}
    busy, healthy, idle = by_name["busy-qwen"], by_name["healthy-mistral"], by_name["idle-llama"]
    assert busy.tpot_mean == pytest.approx(0.12) and busy.tpot_p95 == pytest.approx(0.19)  # both names, once
    assert healthy.tpot_mean == pytest.approx(0.06) and healthy.tpot_p95 == pytest.approx(0.095)  # new name only
    assert idle.tpot_mean == pytest.approx(0.06)  # 0.10.2: the old name only
    assert healthy.error_share == pytest.approx(0.03) and healthy.abort_share == pytest.approx(0.01)
    assert healthy.failed_share == pytest.approx(0.04)
    assert busy.error_share == 0 and busy.failed_share == pytest.approx(0.05)  # 0.11: the reason exists, unused
    assert idle.error_share is None and idle.failed_share == 0  # 0.10.2 has no such reason: not measured


def test_hand_computed_values_spelled_out(measured):
    by_name, _ = measured
    healthy, busy, idle = by_name["healthy-mistral"], by_name["busy-qwen"], by_name["idle-llama"]
    # 4 h at 5 % then 20 h at 80 %: mean (4·5 + 20·80)/24, a sixth of the time idle.
    assert healthy.util_mean == pytest.approx(67.5) and healthy.util_p95 == pytest.approx(80)
    assert healthy.idle_share == pytest.approx(1 / 6)
    # 40 % of requests in (0.5, 1], 40 % in (1, 2], 20 % in (2, 4]: p50 = 1 + (0.5 − 0.4)/0.4 = 1.25.
    assert (healthy.e2e_p50, healthy.e2e_p95, healthy.e2e_p99) == pytest.approx((1.25, 3.5, 3.9))
    # Saturated: 10 % in (4, 8], 50 % in (8, 16], 40 % in (16, 32]: p95 = 16 + 16 · 0.35/0.4 = 30.
    assert busy.e2e_p95 == pytest.approx(30.0) and busy.ttft_p95 == pytest.approx(3.8)
    # The queue grows by 1 per pod-hour on 2 pods: 2/h, 48 at the end.
    assert busy.queue_slope_per_hour == pytest.approx(2.0) and busy.queue_max == pytest.approx(48)
    assert busy.preemptions == pytest.approx(0.01 * 2 * 86400)
    # 3 GPUs × 24 h at 4 %: all of it idle; 0.1 req/s per pod.
    assert idle.device_hours == pytest.approx(72) and idle.idle_share == 1.0
    assert idle.rps_mean == pytest.approx(0.3)


def test_model_servers_only_both_label_spellings(measured):
    by_name, cluster = measured
    # coredns (no accelerator, no vLLM) and the DCGM exporter's own pod (a DaemonSet's) are not model servers.
    assert sorted(by_name) == sorted(c.name for c in CASES)
    assert cluster.error is None and cluster.warnings == []
    # idle-llama's GPU series carry exported_namespace / exported_pod; the others namespace / pod.
    assert by_name["idle-llama"].util_mean == pytest.approx(4.0)
    assert by_name["neuron-llama"].accelerator == "neuron" and by_name["neuron-llama"].util_mean == pytest.approx(50)


def test_chart_series_cover_the_window(measured):
    by_name, _ = measured
    busy = by_name["busy-qwen"]
    assert len(busy.util_series) == QuerySettings().chart_points + 1
    assert all(v == pytest.approx(97) for _, v in busy.util_series)
    assert len(busy.latency_series) > 90 and all(v == pytest.approx(30.0) for _, v in busy.latency_series)
    assert by_name["unused-phi"].latency_series == ()  # no requests: no latency, not a latency of 0


def test_query_count_is_a_constant_for_five_deployments(prom):
    dataset, server = prom
    before = server.queries_logged()
    [cluster] = collect([Target("dev", server.url)], dataset.end)
    assert len(cluster.deployments) == 5
    assert server.queries_logged() - before == len(QUERIES) == cluster.queries


def test_a_cluster_whose_prometheus_is_down_is_reported_and_the_others_still_work(prom):
    dataset, server = prom
    up, down, unset = collect([Target("dev", server.url), Target("eu", closed_port()), Target("lab", None)],
                              dataset.end, QuerySettings(timeout=3))
    assert up.error is None and len(up.deployments) == 5
    assert down.error and "cannot connect to Prometheus" in down.error and down.deployments == []
    assert unset.error and "prometheus_url" in unset.error


def test_scope_reads_one_deployment_with_the_same_queries(prom):
    dataset, server = prom
    before = server.queries_logged()
    [cluster] = collect([Target("dev", server.url)], dataset.end, scope=("default", "busy-qwen"))
    assert [m.name for m in cluster.deployments] == ["busy-qwen"]
    assert cluster.deployments[0].e2e_p95 == pytest.approx(30.0)
    assert server.queries_logged() - before == len(QUERIES)


class RefusingProxy:
    """Prometheus behind a proxy that answers one kind of query as Prometheus answers a bad one (HTTP 422).

    The fault is injected on the wire, like the local Slack's 429s: the code under test is untouched.
    """

    def __init__(self, upstream: str, refuse: str) -> None:
        import http.server
        import threading
        import urllib.parse

        import requests

        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                query = urllib.parse.parse_qs(body.decode()).get("query", [""])[0]
                if refuse in query:
                    proxy.refused += 1
                    status, payload = 422, (b'{"status":"error","errorType":"execution",'
                                            b'"error":"query processing would load too many samples"}')
                else:
                    upstream_resp = requests.post(upstream + self.path, data=body, timeout=30, headers={
                        "Content-Type": self.headers.get("Content-Type", "")})
                    status, payload = upstream_resp.status_code, upstream_resp.content
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.refused = 0
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_query_prometheus_refuses_becomes_a_warning_not_a_failure(prom):
    dataset, server = prom
    proxy = RefusingProxy(server.url, refuse="kv_cache_usage_perc")
    try:
        [cluster] = collect([Target("dev", proxy.url)], dataset.end)
    finally:
        proxy.close()
    assert proxy.refused == 1
    assert cluster.error is None and [w[:4] for w in cluster.warnings] == ["kv: "]
    assert "too many samples" in cluster.warnings[0]
    by_name = {m.name: m for m in cluster.deployments}
    assert by_name["busy-qwen"].kv_max is None and by_name["busy-qwen"].e2e_p95 == pytest.approx(30.0)


def test_bucket_quantile_matches_prometheus_rules():
    buckets = {0.5: 0.0, 1.0: 40.0, 2.0: 80.0, 4.0: 100.0, math.inf: 100.0}
    assert bucket_quantile(0.5, buckets) == pytest.approx(1.25)
    assert bucket_quantile(0.95, buckets) == pytest.approx(3.5)
    assert bucket_quantile(0.99, {1.0: 1.0, math.inf: 10.0}) == 1.0  # in +Inf: the highest finite bound
    assert bucket_quantile(0.5, {1.0: 0.0, math.inf: 0.0}) is None  # no observations
    assert bucket_quantile(0.5, {1.0: 3.0}) is None  # no +Inf bucket


def test_queries_aggregate_by_deployment_and_accept_both_spellings():
    text = "\n".join(promql(QuerySettings()).values())
    assert "exported_pod" in text and "exported_namespace" in text
    assert "kube_pod_owner" in text and "kube_replicaset_owner" in text and "@ end()" in text
    assert "by (namespace, deployment" in text
    queries = promql(QuerySettings())
    # Both vLLM generations, newest first; neuron-monitor through kube_node_info's provider id.
    assert queries["tpot"].index("vllm:inter_token_latency_seconds") < queries["tpot"].index(
        "vllm:time_per_output_token_seconds")
    assert 'finished_reason="error"' in queries["requests"]
    assert "kube_node_info" in queries["util"] and "provider_id" in queries["util"]
    assert "label_node_kubernetes_io_instance_type" in queries["inventory"]


def test_gpu_hours_and_cost_do_not_depend_on_when_within_a_step_the_digest_runs(prom):
    """A digest at 08:59:59.5 counts the same 24 GPU-hours as one at 09:00 (not 23 h 55 min)."""
    from datetime import timedelta

    dataset, server = prom
    [cluster] = collect([Target("dev", server.url)], dataset.end - timedelta(seconds=0.5))
    by_name = {m.name: m for m in cluster.deployments}
    assert by_name["unused-phi"].device_hours == pytest.approx(24.0)
    assert by_name["idle-llama"].device_hours == pytest.approx(72.0)


# ---- every workload kind the inference chart makes -------------------------------------------------

@pytest.fixture(scope="module")
def workloads():
    return shared("workloads", lambda: dataset_at(WORKLOAD_CASES))


def test_leaderworkersets_and_rayservices_are_measured_under_their_own_names(workloads):
    dataset, server = workloads
    [cluster] = collect([Target("dev", server.url)], dataset.end)
    by_name = {m.name: m for m in cluster.deployments}
    # Workers count under their LeaderWorkerSet, not as a deployment `scout-0`; Ray pods under the RayService.
    assert sorted(by_name) == ["mistral", "scout", "scout-9"]
    for case in WORKLOAD_CASES:
        wrong = differences(dataset, by_name[case.name], typed=False)
        assert wrong == {}, f"{case.name}: (measured, generated) differ for {wrong}"
        assert by_name[case.name].untyped_nodes == placed_on(dataset, case.name)
    scout = by_name["scout"]
    assert scout.devices == 4 and scout.rps_mean == pytest.approx(0.8)  # 4 GPUs, traffic through 2 leaders
    assert scout.replicas_desired is None  # kube-state-metrics has no LeaderWorkerSet replicas by default
    # One of them alone, with the same queries.
    [scoped] = collect([Target("dev", server.url)], dataset.end, scope=("default", "scout"))
    assert [m.name for m in scoped.deployments] == ["scout"] and scoped.deployments[0].devices == 4
    [ray] = collect([Target("dev", server.url)], dataset.end, scope=("default", "mistral"))
    assert [m.name for m in ray.deployments] == ["mistral"] and ray.deployments[0].util_mean == pytest.approx(35)


# ---- the step statistics, summed per workload in Python, are Prometheus' own ---------------------------


def _joined_subqueries(url: str, settings: QuerySettings, at) -> dict[str, dict[str, float]]:
    """util p95 and queue max as PromQL computes them with the join inside a `[window:step]` subquery
    (what the digest asked Prometheus before it summed per-pod step series itself)."""
    from ops.metrics import DigestQueries, Prometheus

    q = DigestQueries(settings, None)

    def joined(expr: str) -> str:
        norm = (f'label_replace(label_replace({expr}, "namespace", "$1", "exported_namespace", "(.+)"), '
                '"pod", "$1", "exported_pod", "(.+)")')
        return f"({norm} * on (namespace, pod) group_left (deployment) {q.owner})"

    texts = {
        "util_p95": f"quantile_over_time(0.95, (avg by (namespace, deployment) ({joined('1 * DCGM_FI_DEV_GPU_UTIL')}))"
                    f"[{q.WS}])",
        "queue_max": f"max_over_time((sum by (namespace, deployment) ({joined('vllm:num_requests_waiting')}))[{q.WS}])",
    }
    prom = Prometheus(url, 20)
    return {name: {r["metric"]["deployment"]: float(r["value"][1]) for r in prom.query(text, at)}
            for name, text in texts.items()}


@pytest.mark.parametrize("offset_ms", [0, -500, -877, 123, 7 * 60_000 + 1])
def test_p95_and_queue_max_equal_prometheus_subqueries_at_any_end_time(prom, offset_ms):
    """A digest may run at any instant: the steps summed here are the subquery's steps (multiples of the
    step, Prometheus' millisecond parsing of the time included), so the queue's max on a growing line
    and the p95 are the figures PromQL gives."""
    from datetime import timedelta

    dataset, server = prom
    at = dataset.end + timedelta(milliseconds=offset_ms)
    settings = QuerySettings(step=timedelta(minutes=5))
    [cluster] = collect([Target("dev", server.url)], at, settings)
    by_name = {m.name: m for m in cluster.deployments}
    want = _joined_subqueries(server.url, settings, at)
    assert want["queue_max"] and want["util_p95"]
    for name, value in want["queue_max"].items():
        assert by_name[name].queue_max == pytest.approx(value, rel=1e-9), name
    for name, value in want["util_p95"].items():
        assert by_name[name].util_p95 == pytest.approx(value, rel=1e-9), name


@pytest.mark.parametrize("make", [main_dataset, neuron_dataset], ids=["gpu", "neuron"])
def test_one_deployment_read_alone_has_the_digests_figures(make):
    """`/infer metrics <name>` reads one deployment's series (its pods, and the nodes its Neuron pods
    sit on): every figure, charts included, is the one the digest shows for it."""
    from dataclasses import asdict

    dataset, server = make()
    [cluster] = collect([Target("dev", server.url)], dataset.end)
    for fleet_view in cluster.deployments:
        [scoped] = collect([Target("dev", server.url)], dataset.end, scope=fleet_view.key)
        [alone] = scoped.deployments
        for name, want in asdict(fleet_view).items():
            got = asdict(alone)[name]
            if isinstance(want, tuple):  # charts and nodes: point by point
                assert len(got) == len(want), name
                assert all(g == pytest.approx(w) for g, w in zip(got, want, strict=True)), name
            else:
                assert got == pytest.approx(want) if isinstance(want, float) else got == want, (fleet_view.name, name)
