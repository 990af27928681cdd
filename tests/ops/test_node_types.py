"""Instance types and cost on a default install: no kube_node_labels instance type, so the digest reads the
Node objects (one list per build, cached briefly); the allow-listed series still wins where it exists."""

from __future__ import annotations

import math

import pytest

from ops.digest import ClusterSource, build, instance_type_on
from ops.metrics import QUERIES
from ops.metrics.collector import _by_stat
from ops.metrics.nodes import NodeTypes, instance_types_of
from tests.support.prometheus import allowlisted_dataset, main_dataset, neuron_dataset, node_api

G5, G5_2X, G6, INF2 = 1.006, 1.212, 0.8048, 0.7582  # ops/data/instances.yaml, us-west-2, per device
INF2_24X_CORE = 6.4906 / 12  # inf2.24xlarge: 6 chips × 2 NeuronCores


def node_lists(emulator) -> int:
    return sum(1 for method, path, _ in emulator.requests if method == "GET" and path == "/api/v1/nodes")


# ---- the pure parts ----------------------------------------------------------------------------------


def test_instance_types_come_from_either_label_of_the_node():
    nodes = {"items": [
        {"metadata": {"name": "a", "labels": {"node.kubernetes.io/instance-type": "g5.xlarge"}}},
        {"metadata": {"name": "b", "labels": {"beta.kubernetes.io/instance-type": "inf2.xlarge"}}},  # older clusters
        {"metadata": {"name": "c", "labels": {"node.kubernetes.io/instance-type": "g6.xlarge",
                                              "beta.kubernetes.io/instance-type": "g5.xlarge"}}},
        {"metadata": {"name": "d", "labels": {"kubernetes.io/os": "linux"}}},  # untyped: left out, not guessed
    ]}
    assert instance_types_of(nodes) == {"a": "g5.xlarge", "b": "inf2.xlarge", "c": "g6.xlarge"}
    assert instance_types_of({"items": None}) == {}


def test_the_instance_type_is_the_one_holding_most_of_the_accelerators():
    types = {"n1": "g5.xlarge", "n2": "g5.xlarge", "n3": "g6e.12xlarge"}
    assert instance_type_on((("n1", 1), ("n2", 1), ("n3", 4)), types) == "g6e.12xlarge"
    assert instance_type_on((("n1", 1), ("gone", 8)), types) == "g5.xlarge"  # a node that left: not counted
    assert instance_type_on((("gone", 1),), types) is None


def test_an_instance_type_series_without_the_label_types_nothing():
    """kube-state-metrics 2.x without an allow-list may export kube_node_labels{node} alone."""
    result = [
        {"metric": {"namespace": "ns", "deployment": "d", "stat": "typed", "resource": "nvidia_com_gpu"},
         "value": [0, "2"]},
        {"metric": {"namespace": "ns", "deployment": "d", "stat": "typed", "instance_type": "g5.xlarge",
                    "resource": "nvidia_com_gpu"}, "value": [0, "1"]},
        {"metric": {"namespace": "ns", "deployment": "d", "stat": "placed", "node": "n1",
                    "resource": "nvidia_com_gpu"}, "value": [0, "2"]},
    ]
    stats = _by_stat(result)[("ns", "d")]
    assert stats["typed"] == [("g5.xlarge", 1.0)] and stats["placed"] == {"n1": 2.0}


# ---- against the real Prometheus and the Kubernetes emulator ----------------------------------------------


def test_cost_without_kube_node_labels_comes_from_the_node_objects(tmp_path):
    dataset, server = main_dataset()
    with node_api(dataset, tmp_path) as (cluster, emulator):
        cache = NodeTypes()
        digest = build([ClusterSource("dev", server.url, kube=cluster)], dataset.end, node_types=cache)
        reports = {r.metrics.name: r for r in digest.deployments}
        assert {name: r.metrics.instance_type for name, r in reports.items()} == {
            "idle-llama": "g5.xlarge", "busy-qwen": "g5.2xlarge", "healthy-mistral": "g6.xlarge",
            "neuron-llama": "inf2.xlarge", "unused-phi": "g5.xlarge"}
        assert reports["idle-llama"].cost_per_day == pytest.approx(3 * 24 * G5)
        assert reports["healthy-mistral"].idle_cost_per_day == pytest.approx(2 * 24 * G6 / 6)
        assert digest.cost_per_day == pytest.approx((3 * G5 + 2 * G5_2X + 2 * G6 + INF2 + G5) * 24)
        # Still the same PromQL queries; one Node list for the build, and none for the next one a moment later.
        assert digest.queries == len(QUERIES) and digest.clusters[0].warnings == ()
        assert node_lists(emulator) == 1
        build([ClusterSource("dev", server.url, kube=cluster)], dataset.end, node_types=cache)
        assert node_lists(emulator) == 1
        build([ClusterSource("dev", server.url, kube=cluster)], dataset.end, node_types=NodeTypes(ttl=0))
        assert node_lists(emulator) == 2


def test_without_the_kubernetes_api_cost_stays_unknown_rather_than_guessed():
    dataset, server = main_dataset()
    digest = build([ClusterSource("dev", server.url)], dataset.end, node_types=NodeTypes())
    assert digest.cost_per_day is None and all(r.metrics.instance_type is None for r in digest.deployments)


def test_allowlisted_kube_node_labels_are_used_and_no_node_is_listed(tmp_path):
    dataset, server = allowlisted_dataset()
    with node_api(dataset, tmp_path) as (cluster, emulator):
        digest = build([ClusterSource("dev", server.url, kube=cluster)], dataset.end, node_types=NodeTypes())
        reports = {r.metrics.name: r for r in digest.deployments}
        assert reports["labelled-llama"].cost_per_day == pytest.approx(2 * 24 * G6)
        assert reports["sidecar-neuron"].cost_per_day == pytest.approx(24 * INF2)
        assert node_lists(emulator) == 0


def test_neuron_deployments_get_cost_and_idle_cost_through_their_nodes(tmp_path):
    dataset, server = neuron_dataset()
    with node_api(dataset, tmp_path) as (cluster, _):
        digest = build([ClusterSource("dev", server.url, kube=cluster)], dataset.end, node_types=NodeTypes())
    reports = {r.metrics.name: r for r in digest.deployments}
    a, b = reports["neuron-a"], reports["neuron-b"]
    # Priced per NeuronCore-hour: the pods request cores.
    assert a.price_per_device_hour == pytest.approx(INF2_24X_CORE)
    assert a.cost_per_day == pytest.approx(8 * 24 * INF2_24X_CORE)
    assert a.idle_cost_per_day == pytest.approx(a.cost_per_day / 6)
    assert b.cost_per_day == pytest.approx(2 * 24 * INF2_24X_CORE)
    assert b.idle_cost_per_day == pytest.approx(b.cost_per_day / 3)
    assert math.isclose(digest.util_mean or 0, (8 * a.metrics.util_mean + 2 * b.metrics.util_mean) / 10)


class ForbiddingNodes:
    """The API server as a role without `list` on `nodes` sees it: 403 with a Status body on GET
    /api/v1/nodes, every other request passed through to the emulator. The fault is on the wire; the
    code under test is untouched."""

    def __init__(self, upstream: str) -> None:
        import http.server
        import threading

        import requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] == "/api/v1/nodes":
                    status, payload = 403, (
                        b'{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,'
                        b'"message":"nodes is forbidden: User \\"system:serviceaccount:infer:infer-bot\\" cannot '
                        b'list resource \\"nodes\\" in API group \\"\\" at the cluster scope"}')
                else:
                    upstream_resp = requests.get(upstream + self.path, timeout=30)
                    status, payload = upstream_resp.status_code, upstream_resp.content
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_role_without_nodes_list_is_named_in_a_warning_and_the_rest_of_the_digest_stands(tmp_path):
    import yaml

    from ops.kube import KubeCluster

    dataset, server = main_dataset()
    with node_api(dataset, tmp_path) as (_, emulator):
        proxy = ForbiddingNodes(emulator.url)
        try:
            config = yaml.safe_load(emulator.write_kubeconfig(tmp_path / "proxied").read_text())
            config["clusters"][0]["cluster"]["server"] = proxy.url
            (tmp_path / "proxied").write_text(yaml.safe_dump(config))
            cluster = KubeCluster("dev", kubeconfig=str(tmp_path / "proxied"), context="sandbox")
            digest = build([ClusterSource("dev", server.url, kube=cluster)], dataset.end, node_types=NodeTypes())
        finally:
            proxy.close()
    [warning] = digest.clusters[0].warnings
    assert warning == ("kubernetes: no instance types, so no cost: cannot list the Nodes of `dev` "
                       "(HTTP 403: the bot's role needs `list` on `nodes`)")
    assert digest.cost_per_day is None and len(digest.deployments) == 5
    assert {r.metrics.name: r.metrics.util_mean for r in digest.deployments}["neuron-llama"] == pytest.approx(50)
