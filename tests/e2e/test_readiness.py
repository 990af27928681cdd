"""The readiness doctor: `/infer clusters <name>` over signed HTTP and `infer-bot check` as a process.

Two clusters, each its own Kubernetes API emulator and its own real Prometheus:
- `dev` has everything: the KubeRay, LWS, KEDA and AIBrix CRDs, Karpenter NodePools for GPU and
  Neuron families, the hf-token Secret; DCGM scraped the ai-on-eks way (`exported_*` labels),
  kube-state-metrics with the instance-type allowlist, one vLLM 0.11 server and one 0.10 server,
  neuron-monitor.
- `edge` is a default install: no CRDs but Karpenter's, one CPU-only NodePool, no Secret; DCGM
  pod-labelled, kube-state-metrics without `kube_node_labels`, no vLLM and no neuron-monitor.

Series carry the labels the exporters document (../shared/reference/METRICS.md), and each test
asserts every line a user reads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.sandbox.kubeapi import KubeEmulator
from tests.support.binaries import needs_helm
from tests.support.config import base_config
from tests.support.prometheus import PrometheusServer, backfill, binaries, closed_port
from tests.support.slack import VIEWER, text_of
from tests.support.waiting import wait_until

STEP = 60  # seconds between samples, as a 1-minute scrape interval

# ---- the clusters' objects ------------------------------------------------------------------------


def crd(group: str, version: str, kind: str, plural: str, scope: str = "Namespaced") -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {"group": group, "scope": scope,
                 "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
                 "versions": [{"name": version, "served": True, "storage": True, "subresources": {"status": {}}}]},
    }


NODEPOOL_CRD = crd("karpenter.sh", "v1", "NodePool", "nodepools", scope="Cluster")
INFERENCE_CRDS = (
    crd("ray.io", "v1", "RayService", "rayservices"),
    crd("leaderworkerset.x-k8s.io", "v1", "LeaderWorkerSet", "leaderworkersets"),
    crd("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"),
    crd("autoscaling.aibrix.ai", "v1alpha1", "PodAutoscaler", "podautoscalers"),
)


def nodepool(name: str, *requirements: tuple[str, str, list[str]]) -> dict[str, Any]:
    """A karpenter.sh/v1 NodePool as Karpenter's docs write one."""
    reqs = [{"key": key, "operator": op, "values": values} for key, op, values in requirements]
    reqs.append({"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]})
    return {"apiVersion": "karpenter.sh/v1", "kind": "NodePool", "metadata": {"name": name},
            "spec": {"template": {"spec": {
                "nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass", "name": "default"},
                "requirements": reqs}},
                "limits": {"cpu": 1000}}}


FAMILY, CATEGORY = "karpenter.k8s.aws/instance-family", "karpenter.k8s.aws/instance-category"


def hf_token(namespace: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": namespace},
            "type": "Opaque", "data": {"token": "aGZfZmFrZQ=="}}


def dress_dev(emu: KubeEmulator) -> None:
    for definition in (*INFERENCE_CRDS, NODEPOOL_CRD):
        emu.put(definition)
    emu.put(nodepool("gpu", (FAMILY, "In", ["g5", "g6"])))
    emu.put(nodepool("inferentia", (FAMILY, "In", ["inf2"])))
    emu.put(nodepool("default", (CATEGORY, "In", ["c", "m", "r"])))
    emu.put(hf_token())


def dress_edge(emu: KubeEmulator) -> None:
    emu.put(NODEPOOL_CRD)
    emu.put(nodepool("default", (CATEGORY, "In", ["c", "m", "r"])))


# ---- the clusters' Prometheus data ----------------------------------------------------------------

Series = tuple[str, dict[str, str], float]


def _node(i: int) -> str:
    return f"ip-10-0-1-{10 + i}.us-west-2.compute.internal"


def kube_state_metrics(nodes: int, *, instance_type_label: bool) -> list[Series]:
    ksm = {"job": "kube-state-metrics", "instance": "10.0.0.5:8080", "namespace": "kube-system",
           "pod": "kube-state-metrics-6b7d9c8f5-x2x9k"}
    out: list[Series] = []
    for i in range(nodes):
        out.append(("kube_node_info", {**ksm, "node": _node(i), "provider_id": f"aws:///us-west-2a/i-0abc{i:012d}",
                                       "kernel_version": "6.1.0", "container_runtime_version": "containerd://1.7.27"},
                    1))
        if instance_type_label:  # only with --metric-labels-allowlist=nodes=[node.kubernetes.io/instance-type]
            out.append(("kube_node_labels", {**ksm, "node": _node(i),
                                             "label_node_kubernetes_io_instance_type": "g5.xlarge"}, 1))
    return out


def dcgm(pods: list[str], *, exported: bool) -> list[Series]:
    out: list[Series] = []
    for i, pod in enumerate(pods):
        gpu = {"job": "dcgm-exporter", "instance": f"10.0.1.{10 + i}:9400", "gpu": "0", "UUID": f"GPU-{i:08d}-aaaa",
               "device": "nvidia0", "modelName": "NVIDIA A10G", "Hostname": _node(i)}
        if exported:  # ServiceMonitor with honorLabels: false renames the exporter's own pod labels
            gpu.update(namespace="monitoring", pod=f"dcgm-exporter-{i}x7kq", exported_namespace="default",
                       exported_pod=pod, exported_container="vllm")
        else:
            gpu.update(namespace="default", pod=pod, container="vllm")
        out.append(("DCGM_FI_DEV_GPU_UTIL", gpu, 55.0))
    return out


def vllm(pod: str, model: str, *, generation: str) -> list[Series]:
    labels = {"job": "vllm", "instance": f"{pod}:8000", "namespace": "default", "pod": pod, "model_name": model}
    out: list[Series] = [("vllm:time_per_output_token_seconds_count", labels, 100.0),
                         ("vllm:num_requests_running", labels, 2.0)]
    if generation == "0.11":  # the new name, with the old one still exported while deprecated
        out.append(("vllm:inter_token_latency_seconds_count", labels, 100.0))
    return out


def neuron_monitor(cores: int) -> list[Series]:
    # neuron-monitor labels its series with EC2 facts; what scraping adds names its own DaemonSet pod.
    ec2 = {"job": "neuron-monitor", "instance": "10.0.2.7:8000", "namespace": "kube-system",
           "pod": "neuron-monitor-b7k2p", "instance_id": "i-0abc000000000009", "instance_type": "inf2.xlarge",
           "region": "us-west-2", "availability_zone": "us-west-2a", "subnet_id": "subnet-0a1b2c",
           "runtime_tag": "367"}
    return [("neuroncore_utilization_ratio", {**ec2, "neuroncore": str(c)}, 0.5) for c in range(cores)]


DEV_SERIES = (kube_state_metrics(3, instance_type_label=True)
              + dcgm(["qwen-7d9f8b6c5-abcde", "llama-5c6d7e8f9-fghij"], exported=True)
              + vllm("qwen-7d9f8b6c5-abcde", "Qwen/Qwen3-1.7B", generation="0.11")
              + vllm("llama-5c6d7e8f9-fghij", "meta-llama/Llama-3.2-1B", generation="0.10")
              + neuron_monitor(2))
EDGE_SERIES = kube_state_metrics(2, instance_type_label=False) + dcgm(["phi-6f7a8b9c0-klmno"], exported=False)


def serve(series: list[Series], workdir: Path) -> PrometheusServer:
    """Samples every minute from an hour ago to an hour ahead, backfilled into a real Prometheus."""
    now = int(time.time())
    times = range(now - 3600 - now % STEP, now + 3600, STEP)
    workdir.mkdir(parents=True)
    path = workdir / "data.om"
    with path.open("w", encoding="utf-8") as out:
        for name, labels, value in series:
            ident = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
            out.write("".join(f"{ident} {value:g} {t}\n" for t in times))
        out.write("# EOF\n")
    backfill([path], workdir / "data")
    return PrometheusServer(workdir / "data", workdir).start()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, PrometheusServer]]:
    binaries()
    root = tmp_path_factory.mktemp("readiness-prom")
    servers = {"dev": serve(DEV_SERIES, root / "dev"), "edge": serve(EDGE_SERIES, root / "edge")}
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture
def edge_kube() -> Iterator[KubeEmulator]:
    with KubeEmulator() as emu:
        yield emu


# ---- what a user reads ----------------------------------------------------------------------------


def body_lines(call: Any) -> list[str]:
    """The lines of the message's sections (the header and the context summary are separate)."""
    lines: list[str] = []
    for block in call.params.get("blocks") or []:
        if block.get("type") == "section":
            lines += block["text"]["text"].splitlines()
    return lines


def ask(bot: Any, slack: Any, text: str, title: str) -> Any:
    bot.slash(text, user=VIEWER)
    return slack.wait_for(lambda c: c.method == "response_url" and title in text_of(c), timeout=60)


def expected_dev(prom: str) -> list[str]:
    return [
        ":white_check_mark: KubeRay CRDs: rayservices.ray.io (ray.io/v1)",
        ":white_check_mark: LWS CRDs: leaderworkersets.leaderworkerset.x-k8s.io (leaderworkerset.x-k8s.io/v1)",
        ":white_check_mark: KEDA CRDs: scaledobjects.keda.sh (keda.sh/v1alpha1)",
        ":white_check_mark: AIBrix CRDs: podautoscalers.autoscaling.aibrix.ai (autoscaling.aibrix.ai/v1alpha1)",
        ":white_check_mark: Karpenter NodePools allowing GPU families: `gpu` (g5, g6)",
        ":white_check_mark: Karpenter NodePools allowing Neuron families: `inferentia` (inf2)",
        ":white_check_mark: Secret `hf-token` in `default`",
        f":white_check_mark: Prometheus {{version}} at {prom} answers queries",
        ":white_check_mark: DCGM exporter: 2 GPU series, workload pods labelled `exported_namespace`/`exported_pod` "
        "(ServiceMonitor with honorLabels: false); read as such",
        ":white_check_mark: kube-state-metrics: 3 nodes; kube_node_labels carries the instance type",
        ":white_check_mark: vLLM metrics: both generations, 1 server(s) with the ≥ 0.11 names and 1 with the older "
        "ones; both are read",
        ":white_check_mark: neuron-monitor: 2 NeuronCore series",
    ]


def expected_edge(prom: str) -> list[str]:
    return [
        ":warning: KubeRay CRDs missing (rayservices.ray.io): ray-vllm presets cannot deploy; "
        "enable_kuberay_operator in the blueprint",
        ":warning: LWS CRDs missing (leaderworkersets.leaderworkerset.x-k8s.io): lws-vllm presets cannot deploy; "
        "enable_leader_worker_set in the blueprint",
        ":warning: KEDA CRDs missing (scaledobjects.keda.sh): `autoscale metric=queue` is refused (metric=cpu still "
        "works); install KEDA (kedacore/keda)",
        ":warning: AIBrix CRDs missing (podautoscalers.autoscaling.aibrix.ai): aibrix presets run as plain vLLM "
        "Deployments, without AIBrix's gateway routing and autoscaling; enable_aibrix_stack in the blueprint",
        ":warning: no Karpenter NodePool allows a GPU instance family (NodePools: `default`): GPU presets stay "
        "Pending unless a node group provides them; allow g5, g6 in a NodePool's karpenter.k8s.aws/instance-family",
        ":warning: no Karpenter NodePool allows a Neuron instance family (NodePools: `default`): Inferentia/Trainium "
        "presets stay Pending unless a node group provides them; allow inf2, trn1 in a NodePool's "
        "karpenter.k8s.aws/instance-family",
        ":warning: Secret `hf-token` missing in `default`: presets of gated models (Llama, Mistral, …) cannot "
        "download their weights; `/infer secret hf-token` sets it",
        f":white_check_mark: Prometheus {{version}} at {prom} answers queries",
        ":white_check_mark: DCGM exporter: 1 GPU series, workload pods labelled `namespace`/`pod` (honorLabels: true)",
        ":information_source: kube-state-metrics: 2 nodes, no kube_node_labels instance type (a default install): "
        "instance types come from the Kubernetes Node objects; "
        "--metric-labels-allowlist=nodes=[node.kubernetes.io/instance-type] puts them in Prometheus",
        ":information_source: vLLM metrics: none scraped yet: latency, throughput and queue figures appear once a "
        "vLLM server's /metrics is scraped",
        ":information_source: neuron-monitor: not scraped (only Inferentia/Trainium nodes need it)",
    ]


def assert_cluster_lines(lines: list[str], expected: list[str]) -> list[str]:
    """The cluster's lines in order; returns the rest (the bot's binaries)."""
    assert lines[0].startswith(":white_check_mark: Kubernetes v1.") and lines[0].endswith(" reachable"), lines[0]
    got = lines[1:len(expected) + 1]
    for want, line in zip(expected, got, strict=True):
        if "{version}" in want:
            head, tail = want.split("{version}")
            assert line.startswith(head) and line.endswith(tail), (line, want)
        else:
            assert line == want
    return lines[len(expected) + 1:]


@needs_helm
def test_clusters_name_tells_what_is_there_and_what_each_missing_piece_costs(
        make_bot, kube, edge_kube, slack, prometheus, tmp_path):
    dress_dev(kube)
    dress_edge(edge_kube)
    config = base_config(kube.write_kubeconfig(tmp_path / "kubeconfig"))
    config["clusters"][0]["prometheus_url"] = prometheus["dev"].url
    config["clusters"].append({"name": "edge", "kubeconfig": str(edge_kube.write_kubeconfig(tmp_path / "edge")),
                               "prometheus_url": prometheus["edge"].url})
    bot = make_bot(config)

    dev = ask(bot, slack, "clusters dev", "Readiness of dev")
    assert dev.params["response_type"] == "ephemeral"
    tools = assert_cluster_lines(body_lines(dev), expected_dev(prometheus["dev"].url))
    helm_version = subprocess.run([os.environ.get("HELM_BIN") or "helm", "version", "--template", "{{.Version}}"],
                                  capture_output=True, text=True, check=True).stdout
    assert tools[0].startswith(f":white_check_mark: helm {helm_version} (`")
    # No `terraform.root` in this config: terraform is reported, never required.
    assert tools[1].startswith((":white_check_mark: terraform ", ":information_source: terraform "))
    assert "provisioning is off" in tools[1] and len(tools) == 2
    assert "has everything the presets, digests and provisioning use" in text_of(dev)

    edge = ask(bot, slack, "clusters edge", "Readiness of edge")
    assert_cluster_lines(body_lines(edge), expected_edge(prometheus["edge"].url))
    assert "`edge` works; 7 optional piece(s) missing, each line says what it costs" in text_of(edge)
    assert "aGZfZmFrZQ" not in text_of(dev)  # the Secret's existence, never its value

    # Without a name, `clusters` still lists every cluster (and reads no Prometheus).
    listing = ask(bot, slack, "clusters", "Clusters")
    assert "*dev*" in text_of(listing) and "*edge*" in text_of(listing)


def test_clusters_with_an_unknown_name_is_refused_with_the_known_ones(bot, slack, db):
    bot.slash("clusters nowhere", user=VIEWER)
    told = slack.wait_for(lambda c: c.method == "response_url", timeout=30)
    assert "unknown cluster `nowhere`; known clusters: `dev`." in text_of(told)
    assert "Usage: `/infer clusters [cluster]`" in text_of(told)
    wait_until(lambda: [r for r in db.audit() if (r["action"], r["outcome"]) == ("clusters", "refused")],
               what="the refusal audited")


# ---- `infer-bot check` ------------------------------------------------------------------------------


def run_check(tmp_path: Path, clusters: list[dict[str, Any]], slack: Any, env: dict[str, str] | None = None,
              **config: Any) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"clusters": clusters, **config}))
    tools = [str(Path(p).parent) for p in (os.environ.get("HELM_BIN") or shutil.which("helm"),
                                           shutil.which("terraform")) if p]
    env = {"SLACK_BOT_TOKEN": "xoxb-test-token", "SLACK_API_URL": slack.api_url,
           "INFER_BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
           "PATH": ":".join([*tools, "/usr/bin", "/bin"]), **(env or {})}
    return subprocess.run([sys.executable, "-m", "bot.cli", "--config", str(path), "check"],
                          capture_output=True, text=True, timeout=120, env=env)


@needs_helm
def test_check_warns_about_missing_pieces_and_passes(kube, edge_kube, slack, prometheus, tmp_path):
    dress_dev(kube)
    # `lab`: no Karpenter at all, and its Prometheus has no DCGM either.
    lab_prom = serve(kube_state_metrics(1, instance_type_label=False), tmp_path / "lab-prom")
    try:
        run = run_check(tmp_path, [
            {"name": "dev", "kubeconfig": str(kube.write_kubeconfig(tmp_path / "dev")),
             "prometheus_url": prometheus["dev"].url},
            {"name": "edge", "kubeconfig": str(edge_kube.write_kubeconfig(tmp_path / "edge")),
             "prometheus_url": prometheus["edge"].url},
            {"name": "lab", "kubeconfig": str(edge_kube.write_kubeconfig(tmp_path / "lab")),
             "prometheus_url": lab_prom.url}], slack)
    finally:
        lab_prom.stop()
    out = run.stdout
    assert run.returncode == 0, out + run.stderr  # missing optional pieces are warnings
    lines = out.splitlines()
    assert ("warn edge: KubeRay CRDs missing (rayservices.ray.io): ray-vllm presets cannot deploy; "
            "enable_kuberay_operator in the blueprint") in lines
    assert "ok   dev: KubeRay CRDs: rayservices.ray.io (ray.io/v1)" in lines
    assert ("warn lab: Karpenter NodePools missing (no karpenter.sh/v1 NodePool API): nothing adds GPU or Neuron "
            "nodes for Pending pods, models run only on existing node groups; install Karpenter (the ai-on-eks "
            "inference-ready cluster includes it)") in lines
    assert ("warn lab: DCGM exporter missing (no DCGM_FI_DEV_GPU_UTIL): GPU deployments show no utilization, memory "
            "or idle cost in digests; install NVIDIA dcgm-exporter with a ServiceMonitor") in lines
    assert "info edge: neuron-monitor: not scraped (only Inferentia/Trainium nodes need it)" in lines
    assert [line for line in lines if line.startswith("ok   prometheus ")] and not [
        line for line in lines if line.startswith("FAIL")]
    assert [line for line in lines if line.startswith("ok   helm: helm v")]
    assert "Traceback" not in out + run.stderr


def test_check_fails_on_what_blocks_the_bot(kube, slack, tmp_path):
    dead = tmp_path / "dead-kubeconfig"
    dead.write_text(kube.write_kubeconfig(tmp_path / "kubeconfig").read_text().replace(
        kube.url, closed_port()))
    run = run_check(tmp_path, [{"name": "dev", "kubeconfig": str(tmp_path / "kubeconfig")},
                               {"name": "down", "kubeconfig": str(dead)}], slack,
                    terraform={"root": str(tmp_path)})
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    lines = out.splitlines()
    assert [line for line in lines if line.startswith("FAIL cluster down: cannot reach the Kubernetes API of "
                                                      "cluster `down`")]
    assert [line for line in lines if line.startswith("ok   cluster dev: Kubernetes v1.")]
    # The reachable cluster is still checked, and a missing Prometheus URL is a warning, not a failure.
    assert ("warn prometheus dev: no `prometheus_url`: digests and `/infer metrics` have no data for this "
            "cluster; set it to the cluster's Prometheus (kube-prometheus-stack)") in lines
    assert not [line for line in lines if line.startswith(("warn down:", "ok   down:"))]


@needs_helm
def test_check_fails_when_a_configured_verb_has_no_binary(kube, slack, tmp_path):
    reachable = [{"name": "dev", "kubeconfig": str(kube.write_kubeconfig(tmp_path / "kubeconfig"))}]
    missing = str(tmp_path / "no-terraform")
    run = run_check(tmp_path, reachable, slack, env={"TERRAFORM_BIN": missing}, terraform={"root": str(tmp_path)})
    assert run.returncode == 1, run.stdout + run.stderr
    assert (f"FAIL terraform: terraform `{missing}` not found: provision, destroy and drift cannot run; "
            "install Terraform or set TERRAFORM_BIN") in run.stdout.splitlines()
    # Without `terraform.root` the same missing binary costs nothing: a note, and the check passes.
    run = run_check(tmp_path, reachable, slack, env={"TERRAFORM_BIN": missing})
    assert run.returncode == 0, run.stdout + run.stderr
    assert (f"info terraform: terraform `{missing}` not found; not needed while `terraform.root` is unset "
            "(provisioning is off)") in run.stdout.splitlines()
