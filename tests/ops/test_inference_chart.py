"""The project's inference chart under the real `helm` binary, and every preset deployed for real
against the Kubernetes API emulator with the sandbox's operators (LWS, KubeRay, Karpenter stand-ins)."""

from __future__ import annotations

import functools
import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator

import pytest

from bot.sandbox import operators
from bot.sandbox.environment import node
from bot.sandbox.kubeapi import KubeEmulator
from ops import catalog, releases
from ops.errors import OpsError
from ops.helm import BUNDLED_CHART, ChartSource, Helm
from ops.kube import KubeCluster
from ops.releases import ObjectRef, ReleaseApi
from tests.support.binaries import HELM, needs_helm

pytestmark = needs_helm

LOCAL = ChartSource(path=str(BUNDLED_CHART))
EXPECTED = {"vllm": {"Deployment", "Service"}, "lws-vllm": {"LeaderWorkerSet", "Service"},
            "ray-vllm": {"RayService"}, "triton-vllm": {"Deployment", "Service"}, "aibrix": {"Deployment", "Service"},
            "diffusers": {"Deployment", "Service"}, "nim-container": {"Deployment", "Service"}}


@pytest.fixture(scope="module")
def helm() -> Helm:
    return Helm()


def render(helm: Helm, preset: catalog.Preset, name: str = "m", **sets: object) -> list[dict]:
    values = releases.release_values(preset.values, name=name, namespace="models", replicas=None, instance=None,
                                     sets=sets)
    return helm.template(LOCAL, name, "models", values)


def test_every_preset_renders_the_objects_of_its_framework_named_by_service_name(helm):
    presets = catalog.load_catalog()
    assert {p.framework for p in presets.values()} == set(EXPECTED)
    for preset in presets.values():
        objects = render(helm, preset, name=f"r-{len(preset.id)}")
        assert {o["kind"] for o in objects} == EXPECTED[preset.framework], preset.id
        assert {o["metadata"]["name"] for o in objects} == {f"r-{len(preset.id)}"}, preset.id
        assert all(o["metadata"]["namespace"] == "models" for o in objects)


def test_values_keys_reach_the_objects_as_upstream_uses_them(helm):
    presets = catalog.load_catalog()
    (dep,) = [o for o in render(helm, presets["qwen3-1.7b-vllm"], replicas=3,
                                **{"modelParameters.gpuMemoryUtilization": 0.85}) if o["kind"] == "Deployment"]
    container = dep["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "public.ecr.aws/deep-learning-containers/vllm:0.10.2-gpu-py312-ec2"
    assert container["args"][0] == "Qwen/Qwen3-1.7B" and "--gpu-memory-utilization=0.85" in container["args"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    (lws,) = [o for o in render(helm, presets["llama-4-scout-17b-lws-vllm"]) if o["kind"] == "LeaderWorkerSet"]
    assert lws["apiVersion"] == "leaderworkerset.x-k8s.io/v1" and lws["spec"]["leaderWorkerTemplate"]["size"] == 2
    leader = lws["spec"]["leaderWorkerTemplate"]["leaderTemplate"]["spec"]
    assert leader["nodeSelector"]["node.kubernetes.io/instance-type"] == "g5.48xlarge"
    assert "--tensor-parallel-size=8" in leader["containers"][0]["args"][0]
    (ray,) = render(helm, presets["llama-32-1b-ray-vllm-autoscaling"])
    assert ray["apiVersion"] == "ray.io/v1" and ray["kind"] == "RayService"
    assert ray["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] is True
    assert "min_replicas: 2" in ray["spec"]["serveConfigV2"] and "max_replicas: 4" in ray["spec"]["serveConfigV2"]
    (nim,) = [o for o in render(helm, presets["llama-3-8b-instruct-nim"]) if o["kind"] == "Deployment"]
    pod = nim["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "ngc-secret"}] and pod["nodeSelector"]["karpenter.sh/nodepool"]
    assert {"name": "NIM_MAX_MODEL_LEN", "value": "4096"} in pod["containers"][0]["env"]


def test_a_chart_error_names_what_helm_said(helm, tmp_path):
    with pytest.raises(OpsError, match="not a Helm chart"):
        helm.template(ChartSource(path=str(tmp_path)), "x", "default", {})
    with pytest.raises(OpsError, match="exact `chart.version`"):
        helm.chart_dir(ChartSource(repo="https://example.invalid/charts", version="latest"))
    broken = tmp_path / "broken"
    shutil.copytree(BUNDLED_CHART, broken)
    (broken / "templates" / "bad.yaml").write_text("{{ .Values.nope.deeper }}\n")
    with pytest.raises(OpsError, match="helm could not render") as err:
        helm.template(ChartSource(path=str(broken)), "x", "default", {"inference": {"framework": "vllm"}})
    assert "bad.yaml" in err.value.message


@pytest.fixture
def chart_repo(tmp_path) -> Iterator[str]:
    """A chart repository over HTTP on loopback holding the project's chart as a packaged version."""
    binary = str(HELM)
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run([binary, "package", str(BUNDLED_CHART), "--destination", str(repo)], check=True,
                   capture_output=True, timeout=60)
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(repo)))
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    subprocess.run([binary, "repo", "index", str(repo), "--url", url], check=True, capture_output=True, timeout=60)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url
    server.shutdown()


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def test_a_pinned_chart_version_is_pulled_once_and_cached(chart_repo, tmp_path):
    helm = Helm(cache_dir=tmp_path / "cache")
    source = ChartSource(repo=chart_repo, name="inference-charts", version="0.2.1")
    first = helm.chart_dir(source)
    assert (first / "templates" / "leaderworkerset.yaml").is_file()
    objects = helm.template(source, "q", "default", dict(catalog.load_catalog()["qwen3-1.7b-vllm"].values))
    assert {o["kind"] for o in objects} == {"Deployment", "Service"}
    assert helm.chart_dir(source) == first  # cached: no second pull
    with pytest.raises(OpsError, match="could not pull"):
        helm.chart_dir(ChartSource(repo=chart_repo, name="inference-charts", version="9.9.9"))


@pytest.fixture
def sandbox_cluster(tmp_path) -> Iterator[tuple[KubeEmulator, ReleaseApi]]:
    emu = KubeEmulator()
    emu.start()
    emu.put(node({"name": "gpu-0", "instance_type": "g5.xlarge", "gpus": 1}))
    operators.install(emu, "default")
    api = ReleaseApi(KubeCluster("sandbox", kubeconfig=str(emu.write_kubeconfig(tmp_path / "kubeconfig"))))
    yield emu, api
    emu.stop()


def test_every_preset_deploys_and_becomes_ready_in_the_sandbox(sandbox_cluster, helm):
    emu, api = sandbox_cluster
    requests_per_deploy = []
    for preset in catalog.load_catalog().values():
        name = preset.service_name
        values = releases.release_values(preset.values, name=name, namespace="default", replicas=None,
                                         instance=None, sets={})
        objects = releases.stamp(helm.template(LOCAL, name, "default", values), release=name, revision=1,
                                 namespace="default", preset=preset.id)
        before = len(emu.requests)
        releases.check_apis(api, objects)
        releases.apply_all(api, objects)
        workload = next(o for o in objects if o["kind"] in releases.WORKLOAD_KINDS)
        lines: list[str] = []
        result = releases.wait_ready(api, ObjectRef.of(workload), pod_selector=releases.pod_selector(workload),
                                     timeout=20, progress=lines.append, startup_seconds=600)
        assert result.ok, (preset.id, result.message, lines)
        made = len(emu.requests) - before
        selector = releases.pod_selector(workload)
        pods = len((api.request("list pods", "GET", "/api/v1/namespaces/default/pods",
                                query=[("labelSelector", selector)]) or {}).get("items", []))
        requests_per_deploy.append((preset.id, pods, made))
    found = releases.releases(api, "default")
    assert len(found) == len(catalog.load_catalog())
    assert all(r.ready == r.desired for r in found)
    # Karpenter stand-in: the named instance types were provisioned for the pods that needed them
    types = {n["metadata"]["labels"]["node.kubernetes.io/instance-type"] for n in emu.list("v1", "Node")}
    assert {"g5.48xlarge", "inf2.24xlarge"} <= types or "g5.48xlarge" in types
    print("requests per deploy (preset, pods, requests)", requests_per_deploy)
    # A watch, not polling: per pod at most four events (added, scheduled, started, ready), each costing
    # one read of the workload and one resumed watch, plus a constant (discovery, the applies, the first
    # list, Karpenter's few reads while pods wait for a node).
    assert all(made <= 16 + 8 * pods for _, pods, made in requests_per_deploy), requests_per_deploy
