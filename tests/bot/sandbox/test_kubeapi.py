"""The Kubernetes API emulator, seen through the real ``kubernetes`` client.

Each test works in its own namespace of a shared emulator; tests that add Nodes (which change
scheduling for everyone) or need a tiny watch history start their own.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests
import yaml
from kubernetes import client, config, dynamic, watch
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException

from bot.sandbox.kubeapi import KubeEmulator

T = TypeVar("T")


# --------------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------------


def _client_for(emu: KubeEmulator, folder: Path) -> ApiClient:
    path = emu.write_kubeconfig(folder / "kubeconfig", context="test", namespace="default")
    return config.new_client_from_config(config_file=str(path))


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeEmulator]:
    with KubeEmulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def api(emulator: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> ApiClient:
    return _client_for(emulator, tmp_path_factory.mktemp("kube"))


@pytest.fixture
def core(api: ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def ns() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[KubeEmulator, ApiClient]]:
    """A private emulator, for tests that add Nodes."""
    with KubeEmulator() as emu:
        yield emu, _client_for(emu, tmp_path)


def wait_for(probe: Callable[[], T], timeout: float = 5.0) -> T:
    """Poll until ``probe`` returns something truthy (what a user of the API does too)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value: {value!r}")
        time.sleep(0.02)


def deployment(name: str, replicas: int = 1, image: str = "nginx:1.27", **resources: str) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": image}
    if resources:
        container["resources"] = {"limits": resources}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }


def configmap(name: str, **labels: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}


def node(name: str, gpus: int = 0, instance_type: str = "m5.2xlarge") -> dict[str, Any]:
    allocatable: dict[str, Any] = {"cpu": 8, "memory": "32Gi", "pods": 110}
    if gpus:
        allocatable["nvidia.com/gpu"] = gpus
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"node.kubernetes.io/instance-type": instance_type}},
        "status": {"allocatable": allocatable, "capacity": dict(allocatable)},
    }


def ready_replicas(apps: client.AppsV1Api, name: str, ns: str) -> int:
    return apps.read_namespaced_deployment(name, ns).status.ready_replicas or 0


def events_for(core: client.CoreV1Api, ns: str, name: str) -> list[client.CoreV1Event]:
    return core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items


# --------------------------------------------------------------------------------------------------
# Discovery
# --------------------------------------------------------------------------------------------------


def test_core_discovery_uses_group_version_v1(emulator: KubeEmulator) -> None:
    core_list = requests.get(f"{emulator.url}/api/v1", timeout=5).json()
    assert requests.get(f"{emulator.url}/api", timeout=5).json()["versions"] == ["v1"]
    assert core_list["groupVersion"] == "v1"
    assert {"pods", "pods/log", "pods/status", "nodes", "events"} <= {r["name"] for r in core_list["resources"]}


def test_group_discovery_lists_subresources_and_preferred_versions(emulator: KubeEmulator) -> None:
    groups = {g["name"]: g for g in requests.get(f"{emulator.url}/apis", timeout=5).json()["groups"]}
    assert groups["autoscaling"]["preferredVersion"]["version"] == "v2"
    apps_v1 = requests.get(f"{emulator.url}/apis/apps/v1", timeout=5).json()
    by_name = {r["name"]: r for r in apps_v1["resources"]}
    assert apps_v1["groupVersion"] == "apps/v1"
    assert by_name["deployments"]["kind"] == "Deployment"
    assert (by_name["deployments/scale"]["group"], by_name["deployments/scale"]["kind"]) == ("autoscaling", "Scale")
    assert "deployments/status" in by_name
    assert requests.get(f"{emulator.url}/apis/example.com/v1", timeout=5).status_code == 404
    assert requests.get(f"{emulator.url}/version", timeout=5).json()["major"] == "1"


def test_dynamic_client_discovers_and_lists(api: ApiClient, apps: client.AppsV1Api, ns: str, tmp_path: Path) -> None:
    apps.create_namespaced_deployment(ns, deployment("dyn"))
    dyn = dynamic.DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    pods = dyn.resources.get(api_version="v1", kind="Pod")
    assert [d.metadata.name for d in deployments.get(namespace=ns).items] == ["dyn"]
    assert pods.namespaced


# --------------------------------------------------------------------------------------------------
# Reads, writes and errors
# --------------------------------------------------------------------------------------------------


def test_create_fills_server_metadata(emulator: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    created = core.create_namespaced_config_map(ns, configmap("meta"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    # The server's counter: the object carries the version it was stored at (the fixture controller
    # may have written other objects since, so the counter can only have moved on).
    assert 0 < int(created.metadata.resource_version) <= emulator.resource_version
    stored = core.read_namespaced_config_map("meta", ns)
    assert stored.metadata.resource_version == created.metadata.resource_version
    assert created.metadata.generation == 1
    assert (created.api_version, created.kind, created.metadata.namespace) == ("v1", "ConfigMap", ns)


def test_list_filters_by_label_selector(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("a", tier="web", env="prod"))
    core.create_namespaced_config_map(ns, configmap("b", tier="db", env="prod"))
    core.create_namespaced_config_map(ns, configmap("c", tier="web"))

    def names(selector: str) -> list[str]:
        return [cm.metadata.name for cm in core.list_namespaced_config_map(ns, label_selector=selector).items]

    assert names("tier=web") == ["a", "c"]
    assert names("tier==db") == ["b"]
    assert names("tier!=web") == ["b"]
    assert names("tier in (db, cache)") == ["b"]
    assert names("tier notin (db),env") == ["a"]
    assert names("!env") == ["c"]
    assert names("env=prod,tier=web") == ["a"]
    listing = core.list_namespaced_config_map(ns)
    assert listing.kind == "ConfigMapList" and int(listing.metadata.resource_version) > 0


def test_list_filters_by_field_selector(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("first"))
    core.create_namespaced_config_map(ns, configmap("second"))
    selected = core.list_namespaced_config_map(ns, field_selector="metadata.name!=first").items
    assert [cm.metadata.name for cm in selected] == ["second"]
    with pytest.raises(ApiException) as caught:
        core.list_namespaced_config_map(ns, field_selector="data.k=v")
    assert caught.value.status == 400


def test_list_pages_with_limit_and_continue(core: client.CoreV1Api, ns: str) -> None:
    for index in range(5):
        core.create_namespaced_config_map(ns, configmap(f"page-{index}"))
    first = core.list_namespaced_config_map(ns, limit=2)
    rest = core.list_namespaced_config_map(ns, limit=10, _continue=first.metadata._continue)
    assert [cm.metadata.name for cm in first.items] == ["page-0", "page-1"]
    assert first.metadata.remaining_item_count == 3
    assert [cm.metadata.name for cm in rest.items] == ["page-2", "page-3", "page-4"]


def test_missing_object_is_404_with_status_body(core: client.CoreV1Api, ns: str) -> None:
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("ghost", ns)
    body = json.loads(caught.value.body)
    assert caught.value.status == 404
    assert (body["kind"], body["reason"], body["message"]) == ("Status", "NotFound", 'configmaps "ghost" not found')


def test_duplicate_create_is_409_already_exists(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("twice"))
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(ns, configmap("twice"))
    assert caught.value.status == 409
    assert json.loads(caught.value.body)["reason"] == "AlreadyExists"


def test_replace_with_stale_resource_version_conflicts(core: client.CoreV1Api, ns: str) -> None:
    stale = core.create_namespaced_config_map(ns, configmap("occ"))
    fresh = core.read_namespaced_config_map("occ", ns)
    fresh.data = {"k": "changed"}
    core.replace_namespaced_config_map("occ", ns, fresh)
    stale.data = {"k": "lost update"}
    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_config_map("occ", ns, stale)
    assert caught.value.status == 409
    assert core.read_namespaced_config_map("occ", ns).data == {"k": "changed"}


def test_generation_follows_spec_only(apps: client.AppsV1Api, ns: str) -> None:
    created = apps.create_namespaced_deployment(ns, deployment("gen"))
    relabelled = apps.patch_namespaced_deployment("gen", ns, {"metadata": {"labels": {"team": "ml"}}})
    same = apps.patch_namespaced_deployment("gen", ns, {"metadata": {"labels": {"team": "ml"}}})
    respec = apps.patch_namespaced_deployment("gen", ns, {"spec": {"minReadySeconds": 5}})
    assert (created.metadata.generation, relabelled.metadata.generation, respec.metadata.generation) == (1, 1, 2)
    assert int(relabelled.metadata.resource_version) > int(created.metadata.resource_version)
    assert same.metadata.resource_version == relabelled.metadata.resource_version  # a no-op is not a write


def test_status_is_written_only_through_the_status_subresource(apps: client.AppsV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment("st", replicas=0))
    ignored = apps.patch_namespaced_deployment("st", ns, {"status": {"observedGeneration": 99}})
    written = apps.patch_namespaced_deployment_status("st", ns, {"status": {"observedGeneration": 99}})
    assert ignored.status is None or ignored.status.observed_generation != 99
    assert written.status.observed_generation == 99
    assert written.metadata.generation == 1


def test_quantities_come_back_as_strings(
    emulator: KubeEmulator, api: ApiClient, core: client.CoreV1Api, ns: str, tmp_path: Path
) -> None:
    emulator.put(
        {
            "apiVersion": "v1",
            "kind": "LimitRange",
            "metadata": {"name": "q", "namespace": ns},
            "spec": {"limits": [{"type": "Container", "max": {"cpu": 2}}]},
        }
    )
    pods = dynamic.DynamicClient(api, cache_file=str(tmp_path / "d.json")).resources.get(api_version="v1", kind="Pod")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "q"},
        "spec": {
            "containers": [
                {
                    "name": "c",
                    "image": "x:1",
                    "resources": {"limits": {"nvidia.com/gpu": 1, "cpu": 0.5, "memory": "16Gi"}},
                }
            ]
        },
    }
    pods.create(body=pod, namespace=ns)
    limits = core.read_namespaced_pod("q", ns).spec.containers[0].resources.limits
    assert limits == {"nvidia.com/gpu": "1", "cpu": "500m", "memory": "16Gi"}


def test_finalizers_hold_deletion_until_removed(core: client.CoreV1Api, ns: str) -> None:
    body = configmap("held")
    body["metadata"]["finalizers"] = ["infer-bot/cleanup"]
    core.create_namespaced_config_map(ns, body)
    core.delete_namespaced_config_map("held", ns)
    assert core.read_namespaced_config_map("held", ns).metadata.deletion_timestamp is not None
    release = {"metadata": {"finalizers": None}}
    core.patch_namespaced_config_map("held", ns, release, _content_type="application/merge-patch+json")
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("held", ns)
    assert caught.value.status == 404


def test_fail_next_injects_a_status_error(emulator: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("flaky"))
    emulator.fail_next("GET", rf"/namespaces/{ns}/configmaps/flaky$", 500)
    emulator.fail_next("put", rf"/namespaces/{ns}/configmaps/flaky$", 409, times=2)
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("flaky", ns)
    assert caught.value.status == 500 and json.loads(caught.value.body)["kind"] == "Status"
    current = core.read_namespaced_config_map("flaky", ns)
    for _ in range(2):
        with pytest.raises(ApiException) as conflict:
            core.replace_namespaced_config_map("flaky", ns, current)
        assert conflict.value.status == 409
    core.replace_namespaced_config_map("flaky", ns, current)


def test_requests_are_recorded(emulator: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    core.list_namespaced_config_map(ns, label_selector="app=x")
    assert emulator.requests[-1] == ("GET", f"/api/v1/namespaces/{ns}/configmaps", {"labelSelector": "app=x"})


# --------------------------------------------------------------------------------------------------
# Patches
# --------------------------------------------------------------------------------------------------


def test_merge_patch_deletes_with_null(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("mp", keep="1", drop="1"))
    patched = core.patch_namespaced_config_map(
        "mp", ns, {"metadata": {"labels": {"drop": None}}}, _content_type="application/merge-patch+json"
    )
    assert patched.metadata.labels == {"keep": "1"}


def test_strategic_merge_patch_merges_containers_and_env_by_name(apps: client.AppsV1Api, ns: str) -> None:
    body = deployment("smp", replicas=0)
    body["spec"]["template"]["spec"]["containers"] = [
        {"name": "main", "image": "app:1", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "1"}]},
        {"name": "sidecar", "image": "proxy:1"},
    ]
    apps.create_namespaced_deployment(ns, body)
    patch = {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "main", "image": "app:2", "env": [{"name": "B", "value": "2"}]}]}
            }
        }
    }
    containers = apps.patch_namespaced_deployment("smp", ns, patch).spec.template.spec.containers
    assert [(c.name, c.image) for c in containers] == [("main", "app:2"), ("sidecar", "proxy:1")]
    assert [(e.name, e.value) for e in containers[0].env] == [("A", "1"), ("B", "2")]


def test_json_patch_applies_operations_and_fails_a_test_op(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("jp"))
    ops = [
        {"op": "add", "path": "/metadata/labels/new", "value": "yes"},
        {"op": "replace", "path": "/data/k", "value": "w"},
    ]
    patched = core.patch_namespaced_config_map("jp", ns, ops)
    assert (patched.metadata.labels, patched.data) == ({"new": "yes"}, {"k": "w"})
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_config_map("jp", ns, [{"op": "test", "path": "/data/k", "value": "nope"}])
    assert caught.value.status == 422


def test_server_side_apply_creates_records_manager_and_drops_unapplied_fields(
    emulator: KubeEmulator, core: client.CoreV1Api, ns: str
) -> None:
    url = f"{emulator.url}/api/v1/namespaces/{ns}/configmaps/applied"
    headers = {"Content-Type": "application/apply-patch+yaml"}
    config_v1 = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"a": "1", "b": "2"}}
    config_v2 = {**config_v1, "data": {"a": "1"}}
    missing_manager = requests.patch(url, data=yaml.safe_dump(config_v1), headers=headers, timeout=5)
    created = requests.patch(
        url, params={"fieldManager": "infer-bot"}, data=yaml.safe_dump(config_v1), headers=headers, timeout=5
    )
    requests.patch(url, params={"fieldManager": "infer-bot"}, data=json.dumps(config_v2), headers=headers, timeout=5)
    live = core.read_namespaced_config_map("applied", ns)
    assert (missing_manager.status_code, created.status_code) == (400, 201)
    assert live.data == {"a": "1"}
    assert [(m.manager, m.operation) for m in live.metadata.managed_fields] == [("infer-bot", "Apply")]


def test_server_side_apply_keeps_a_dropped_field_only_while_another_manager_owns_it(
    apps: client.AppsV1Api, ns: str
) -> None:
    # The documented hand-over of replicas to an autoscaler: with a second manager co-owning the field,
    # the applier's next apply without it leaves it; without one, it is removed (and defaulted: 1).
    def apply(name: str, config: dict[str, Any], manager: str) -> None:
        url = f"/apis/apps/v1/namespaces/{ns}/deployments/{name}"
        apps.api_client.call_api(*apps.api_client.param_serialize(
            "PATCH", url, query_params=[("fieldManager", manager), ("force", "true")], body=config,
            header_params={"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"}))

    for name, handed_over in (("handed", True), ("dropped", False)):
        body = deployment(name, replicas=3)
        apply(name, body, "applier")
        if handed_over:
            apply(name, {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
                         "spec": {"replicas": 3}}, "handover")
        apply(name, {**body, "spec": {k: v for k, v in body["spec"].items() if k != "replicas"}}, "applier")
    assert apps.read_namespaced_deployment("handed", ns).spec.replicas == 3
    assert apps.read_namespaced_deployment("dropped", ns).spec.replicas == 1


# --------------------------------------------------------------------------------------------------
# Subresources and the controller
# --------------------------------------------------------------------------------------------------


def test_scale_subresource_reads_and_patches_replicas(apps: client.AppsV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment("scaled", replicas=1))
    scale = apps.read_namespaced_deployment_scale("scaled", ns)
    assert (scale.spec.replicas, scale.status.selector) == (1, "app=scaled")
    apps.patch_namespaced_deployment_scale("scaled", ns, {"spec": {"replicas": 3}})
    assert wait_for(lambda: ready_replicas(apps, "scaled", ns) == 3)
    live = apps.read_namespaced_deployment("scaled", ns)
    assert (live.spec.replicas, live.metadata.generation, live.status.observed_generation) == (3, 2, 2)
    assert [c.type for c in live.status.conditions if c.status == "True"] == ["Available", "Progressing"]
    apps.patch_namespaced_deployment_scale("scaled", ns, {"spec": {"replicas": 1}})
    assert wait_for(lambda: apps.read_namespaced_deployment("scaled", ns).status.replicas == 1)


def test_deployment_creates_replicaset_and_ready_pods(apps: client.AppsV1Api, core: client.CoreV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment("web", replicas=2))
    wait_for(lambda: ready_replicas(apps, "web", ns) == 2)
    replicasets = apps.list_namespaced_replica_set(ns).items
    pods = core.list_namespaced_pod(ns, label_selector="app=web").items
    assert [rs.metadata.owner_references[0].name for rs in replicasets] == ["web"]
    assert {p.metadata.owner_references[0].name for p in pods} == {replicasets[0].metadata.name}
    assert all(p.status.phase == "Running" and p.spec.node_name for p in pods)
    assert all(
        p.metadata.labels["pod-template-hash"] == replicasets[0].metadata.labels["pod-template-hash"] for p in pods
    )


def test_template_change_rolls_to_a_new_replicaset(apps: client.AppsV1Api, core: client.CoreV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment("roll", replicas=2, image="app:1"))
    wait_for(lambda: ready_replicas(apps, "roll", ns) == 2)
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "app:2"}]}}}}
    apps.patch_namespaced_deployment("roll", ns, patch)

    def rolled() -> bool:
        pods = core.list_namespaced_pod(ns, label_selector="app=roll").items
        return (
            len(pods) == 2
            and {p.spec.containers[0].image for p in pods} == {"app:2"}
            and all(p.status.phase == "Running" for p in pods)
        )

    wait_for(rolled)
    revisions = sorted(
        rs.metadata.annotations["deployment.kubernetes.io/revision"]
        for rs in apps.list_namespaced_replica_set(ns).items
    )
    assert revisions == ["1", "2"]
    assert wait_for(lambda: apps.read_namespaced_deployment("roll", ns).status.updated_replicas == 2)


def test_deleting_a_deployment_removes_its_replicasets_and_pods(
    apps: client.AppsV1Api, core: client.CoreV1Api, ns: str
) -> None:
    apps.create_namespaced_deployment(ns, deployment("gone", replicas=2))
    wait_for(lambda: len(core.list_namespaced_pod(ns).items) == 2)
    status = apps.delete_namespaced_deployment("gone", ns)
    assert (status["kind"], status["status"]) == ("Status", "Success")  # Background: the owner goes at once
    # ... and the garbage collector removes its dependents shortly after
    wait_for(lambda: not core.list_namespaced_pod(ns).items and not apps.list_namespaced_replica_set(ns).items)


def test_statefulset_creates_ordinal_pods(apps: client.AppsV1Api, core: client.CoreV1Api, ns: str) -> None:
    body = deployment("db", replicas=2)
    body["kind"] = "StatefulSet"
    body["spec"]["serviceName"] = "db"
    apps.create_namespaced_stateful_set(ns, body)
    wait_for(lambda: (apps.read_namespaced_stateful_set("db", ns).status.ready_replicas or 0) == 2)
    assert sorted(p.metadata.name for p in core.list_namespaced_pod(ns).items) == ["db-0", "db-1"]


def test_failing_image_reports_image_pull_backoff(
    emulator: KubeEmulator, apps: client.AppsV1Api, core: client.CoreV1Api, ns: str
) -> None:
    image = f"registry.example/{ns}/missing:1"
    emulator.controller.failing_images[image] = "ImagePullBackOff"
    apps.create_namespaced_deployment(ns, deployment("pull", image=image))

    def waiting_reason() -> str | None:
        pods = core.list_namespaced_pod(ns).items
        statuses = pods[0].status.container_statuses if pods else None
        return statuses[0].state.waiting.reason if statuses and statuses[0].state.waiting else None

    assert wait_for(lambda: waiting_reason() == "ImagePullBackOff")
    pod = core.list_namespaced_pod(ns).items[0]
    messages = {(e.reason, e.message) for e in events_for(core, ns, pod.metadata.name)}
    assert any(
        reason == "Failed" and message.startswith(f'Failed to pull image "{image}"') for reason, message in messages
    )
    assert ("BackOff", f'Back-off pulling image "{image}"') in messages
    assert (
        pod.status.phase == "Pending" and (apps.read_namespaced_deployment("pull", ns).status.ready_replicas or 0) == 0
    )


def test_oom_killed_container_keeps_restarting(emulator: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    image = f"registry.example/{ns}/hungry:1"
    emulator.controller.failing_images[image] = "OOMKilled"
    core.create_namespaced_pod(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "oom"},
            "spec": {"containers": [{"name": "main", "image": image}]},
        },
    )

    def restarts() -> int:
        statuses = core.read_namespaced_pod("oom", ns).status.container_statuses or []
        return statuses[0].restart_count if statuses else 0

    wait_for(lambda: restarts() >= 2, timeout=5)
    status = core.read_namespaced_pod("oom", ns).status.container_statuses[0]
    assert status.last_state.terminated.reason == "OOMKilled"
    assert status.state.waiting.reason == "CrashLoopBackOff" and not status.ready
    assert any(e.reason == "BackOff" and e.count >= 2 for e in events_for(core, ns, "oom"))


def test_pods_wait_for_gpu_capacity_then_schedule(cluster: tuple[KubeEmulator, ApiClient]) -> None:
    emu, api = cluster
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    emu.put(node("cpu-a"))
    emu.put(node("cpu-b"))
    apps.create_namespaced_deployment("default", deployment("llm", **{"nvidia.com/gpu": "1"}))

    def unschedulable_pod() -> client.V1Pod | None:
        pods = core.list_namespaced_pod("default").items
        conditions = pods[0].status.conditions or [] if pods else []
        return pods[0] if any(c.reason == "Unschedulable" for c in conditions) else None

    pod = wait_for(unschedulable_pod)
    failed = [e for e in events_for(core, "default", pod.metadata.name) if e.reason == "FailedScheduling"]
    assert pod.status.phase == "Pending"
    assert [(e.type, e.message) for e in failed] == [
        ("Warning", "0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")
    ]
    emu.put(node("gpu-a", gpus=1, instance_type="g5.xlarge"))
    wait_for(lambda: ready_replicas(apps, "llm", "default") == 1)
    assert core.read_namespaced_pod(pod.metadata.name, "default").spec.node_name == "gpu-a"


def test_node_selector_and_freed_capacity(cluster: tuple[KubeEmulator, ApiClient]) -> None:
    emu, api = cluster
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    emu.put(node("gpu-a", gpus=1, instance_type="g5.xlarge"))
    emu.put(node("gpu-b", gpus=1, instance_type="g6.xlarge"))
    body = deployment("pinned", replicas=2, **{"nvidia.com/gpu": "1"})
    body["spec"]["template"]["spec"]["nodeSelector"] = {"node.kubernetes.io/instance-type": "g5.xlarge"}
    apps.create_namespaced_deployment("default", body)
    wait_for(lambda: ready_replicas(apps, "pinned", "default") == 1)
    message = (
        "0/2 nodes are available: 1 Insufficient nvidia.com/gpu, 1 node(s) didn't match Pod's node affinity/selector."
    )
    wait_for(lambda: any(e.message == message for e in core.list_namespaced_event("default").items))
    apps.patch_namespaced_deployment_scale("pinned", "default", {"spec": {"replicas": 1}})
    running = core.list_namespaced_pod("default", field_selector="status.phase=Running").items
    assert [p.spec.node_name for p in running] == ["gpu-a"]
    assert wait_for(lambda: len(core.list_namespaced_pod("default").items) == 1)


# --------------------------------------------------------------------------------------------------
# Watches
# --------------------------------------------------------------------------------------------------


def test_watch_resumes_after_a_resource_version(emulator: KubeEmulator, apps: client.AppsV1Api, ns: str) -> None:
    apps.create_namespaced_deployment(ns, deployment("watched", replicas=0))
    start = apps.list_namespaced_deployment(ns).metadata.resource_version
    apps.patch_namespaced_deployment("watched", ns, {"metadata": {"labels": {"step": "1"}}})
    apps.patch_namespaced_deployment("watched", ns, {"metadata": {"labels": {"step": "2"}}})
    seen: list[tuple[str, str]] = []
    stream = watch.Watch()
    for event in stream.stream(apps.list_namespaced_deployment, ns, resource_version=start, timeout_seconds=2):
        seen.append((event["type"], event["object"].metadata.labels.get("step", "")))
        if ("MODIFIED", "2") in seen:
            stream.stop()
    watches = [
        r for r in emulator.requests if r[1] == f"/apis/apps/v1/namespaces/{ns}/deployments" and r[2].get("watch")
    ]
    assert seen[:2] == [("MODIFIED", "1"), ("MODIFIED", "2")]
    assert len(watches) == 1 and watches[0][2]["resourceVersion"] == start


def test_watch_streams_live_events_for_its_selector(emulator: KubeEmulator, core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(ns, configmap("old", app="x"))
    seen: list[tuple[str, str]] = []

    def consume() -> None:
        for event in watch.Watch().stream(
            core.list_namespaced_config_map, ns, label_selector="app=x", timeout_seconds=1
        ):
            seen.append((event["type"], event["object"].metadata.name))

    consumer = threading.Thread(target=consume)
    consumer.start()
    wait_for(lambda: any(r[2].get("watch") and r[1].endswith(f"{ns}/configmaps") for r in emulator.requests))
    core.create_namespaced_config_map(ns, configmap("other", app="y"))
    core.create_namespaced_config_map(ns, configmap("new", app="x"))
    core.patch_namespaced_config_map("old", ns, {"metadata": {"labels": {"app": "y"}}})
    consumer.join(timeout=5)
    assert seen == [("ADDED", "old"), ("ADDED", "new"), ("DELETED", "old")]


def test_watch_from_an_expired_resource_version_is_410(tmp_path: Path) -> None:
    with KubeEmulator(history_size=3) as emu:
        core = client.CoreV1Api(_client_for(emu, tmp_path))
        first = core.create_namespaced_config_map("default", configmap("c0"))
        for index in range(1, 6):
            core.create_namespaced_config_map("default", configmap(f"c{index}"))
        with pytest.raises(ApiException) as caught:
            for _ in watch.Watch().stream(
                core.list_namespaced_config_map,
                "default",
                resource_version=first.metadata.resource_version,
                timeout_seconds=1,
            ):
                pass
    assert caught.value.status == 410


# --------------------------------------------------------------------------------------------------
# CustomResourceDefinitions
# --------------------------------------------------------------------------------------------------

_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "rayservices.ray.io"},
    "spec": {
        "group": "ray.io",
        "scope": "Namespaced",
        "names": {
            "plural": "rayservices",
            "singular": "rayservice",
            "kind": "RayService",
            "listKind": "RayServiceList",
        },
        "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}}],
    },
}


def test_crd_makes_a_custom_resource_servable(emulator: KubeEmulator, api: ApiClient, ns: str) -> None:
    custom = client.CustomObjectsApi(api)
    with pytest.raises(ApiException) as before:
        custom.list_namespaced_custom_object("ray.io", "v1", ns, "rayservices")
    emulator.put(_CRD)
    ray = {"apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "qwen"}, "spec": {"replicas": 1}}
    custom.create_namespaced_custom_object("ray.io", "v1", ns, "rayservices", ray)
    patched = custom.patch_namespaced_custom_object(
        "ray.io", "v1", ns, "rayservices", "qwen", {"spec": {"replicas": 2}}
    )
    custom.patch_namespaced_custom_object_status(
        "ray.io", "v1", ns, "rayservices", "qwen", {"status": {"state": "Running"}}
    )
    live = custom.get_namespaced_custom_object("ray.io", "v1", ns, "rayservices", "qwen")
    resources = requests.get(f"{emulator.url}/apis/ray.io/v1", timeout=5).json()["resources"]
    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition("rayservices.ray.io")
    assert before.value.status == 404
    assert (patched["metadata"]["generation"], live["status"], live["spec"]) == (
        2,
        {"state": "Running"},
        {"replicas": 2},
    )
    assert {r["name"] for r in resources} == {"rayservices", "rayservices/status"}
    assert any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)
    emulator.delete("apiextensions.k8s.io/v1", "CustomResourceDefinition", None, "rayservices.ray.io")
    assert requests.get(f"{emulator.url}/apis/ray.io/v1/namespaces/{ns}/rayservices", timeout=5).status_code == 404


# --------------------------------------------------------------------------------------------------
# Robustness
# --------------------------------------------------------------------------------------------------


def test_a_controller_failure_does_not_break_the_server(
    emulator: KubeEmulator, core: client.CoreV1Api, ns: str, caplog: pytest.LogCaptureFixture
) -> None:
    broken = deployment("broken")
    broken["spec"]["replicas"] = "many"  # seeded directly: no admission to reject it
    broken["metadata"]["namespace"] = ns
    with caplog.at_level("ERROR", logger="bot.sandbox.controller.loop"):
        emulator.put(broken)
        # the proof that the controller tried and failed: its own log line
        wait_for(lambda: any(f"{ns}/broken" in r.getMessage() for r in caplog.records))
    core.create_namespaced_config_map(ns, configmap("alive"))
    assert core.read_namespaced_config_map("alive", ns).metadata.name == "alive"
