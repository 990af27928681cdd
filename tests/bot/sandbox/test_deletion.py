"""Deletion in the Kubernetes API emulator as kube-apiserver documents it, seen through the real
``kubernetes`` client: propagation policies (Foreground, Background, Orphan and the legacy
``orphanDependents``), finalizers that hold an object, and the garbage collector that removes
dependents through their ownerReferences, asynchronously.

Each check that something did *not* happen (yet) waits for the event that proves the state it
reads: the owner's MODIFIED with a deletionTimestamp, the DELETED that ends it.
"""

from __future__ import annotations

import json
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client import ApiClient
from kubernetes.client.rest import ApiException
from urllib3.exceptions import ProtocolError

from bot.sandbox import operators
from bot.sandbox.kubeapi import KubeEmulator
from tests.support.waiting import wait_until


@pytest.fixture(scope="module")
def emulator() -> Iterator[KubeEmulator]:
    with KubeEmulator() as emu:
        emu.gc_delay = 0.1  # a visible gap between a DELETE and the collector's work, as on a real cluster
        for crd in operators.CRDS:
            emu.put(crd)
        emu.controller.custom_operators = True
        yield emu


@pytest.fixture(scope="module")
def api(emulator: KubeEmulator, tmp_path_factory: pytest.TempPathFactory) -> ApiClient:
    path = emulator.write_kubeconfig(Path(tmp_path_factory.mktemp("kube")) / "kubeconfig")
    return config.new_client_from_config(config_file=str(path))


@pytest.fixture
def core(api: ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def ns() -> str:
    return f"d-{uuid.uuid4().hex[:8]}"


def deployment(name: str, replicas: int = 2) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}}


def running(apps: client.AppsV1Api, core: client.CoreV1Api, ns: str, name: str, replicas: int = 2) -> None:
    apps.create_namespaced_deployment(ns, deployment(name, replicas))
    wait_until(lambda: (apps.read_namespaced_deployment(name, ns).status.ready_replicas or 0) == replicas)


def pods(core: client.CoreV1Api, ns: str) -> list[Any]:
    return core.list_namespaced_pod(ns).items


def replica_sets(apps: client.AppsV1Api, ns: str) -> list[Any]:
    return apps.list_namespaced_replica_set(ns).items


class Events:
    """A watch on one kind in a namespace, running in the background from a resourceVersion."""

    def __init__(self, list_fn: Callable[..., Any], ns: str, resource_version: str) -> None:
        self.seen: queue.Queue[tuple[str, dict[str, Any]]] = queue.Queue()
        self._watch = watch.Watch()
        self._thread = threading.Thread(target=self._run, args=(list_fn, ns, resource_version), daemon=True)
        self._thread.start()

    def _run(self, list_fn: Callable[..., Any], ns: str, resource_version: str) -> None:
        try:
            for event in self._watch.stream(list_fn, ns, resource_version=resource_version, timeout_seconds=20,
                                            deserialize=False):
                self.seen.put((event["type"], event["object"]))
        except ProtocolError:
            pass  # stop() closed the stream under it

    def next(self, want: Callable[[str, dict[str, Any]], bool], timeout: float = 10) -> tuple[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            kind, obj = self.seen.get(timeout=max(deadline - time.monotonic(), 0.01))
            if want(kind, obj):
                return kind, obj

    def stop(self) -> None:
        self._watch.stop()


def raw_delete(api: ApiClient, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """A DELETE as any client sends it, answered as-is (the typed client would coerce the object into a V1Status)."""
    response = api.call_api(*api.param_serialize("DELETE", path, body=body,
                                                 header_params={"Content-Type": "application/json",
                                                                "Accept": "application/json"}),
                            _request_timeout=10)
    return response.status, json.loads(response.read())


def test_foreground_keeps_the_owner_readable_until_its_dependents_are_gone(api, apps, core, ns):
    running(apps, core, ns, "fg")
    rv = apps.list_namespaced_deployment(ns).metadata.resource_version
    events = Events(apps.list_namespaced_deployment, ns, rv)
    try:
        code, answer = raw_delete(api, f"/apis/apps/v1/namespaces/{ns}/deployments/fg",
                                  {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"})
        # the answer is the object, still there: marked, and held by the collector's finalizer
        assert code == 200 and answer["kind"] == "Deployment"
        assert answer["metadata"]["deletionTimestamp"] and answer["metadata"]["finalizers"] == ["foregroundDeletion"]
        kind, marked = events.next(lambda k, o: k == "MODIFIED" and bool(o["metadata"].get("deletionTimestamp")))
        held = apps.read_namespaced_deployment("fg", ns)
        assert held.metadata.deletion_timestamp is not None and held.metadata.finalizers == ["foregroundDeletion"]
        assert replica_sets(apps, ns), "the dependents were still there when the owner was read back"
        events.next(lambda k, o: k == "DELETED" and o["metadata"]["name"] == "fg")
        # the owner went last: by then its ReplicaSet and pods were gone
        assert pods(core, ns) == [] and replica_sets(apps, ns) == []
    finally:
        events.stop()
    with pytest.raises(ApiException) as gone:
        apps.read_namespaced_deployment("fg", ns)
    assert gone.value.status == 404


def test_background_is_the_default_the_owner_goes_at_once_and_dependents_after(apps, core, ns):
    running(apps, core, ns, "bg")
    status = apps.delete_namespaced_deployment("bg", ns)  # no policy: Background
    assert (status["kind"], status["status"]) == ("Status", "Success")
    with pytest.raises(ApiException) as gone:
        apps.read_namespaced_deployment("bg", ns)
    assert gone.value.status == 404
    assert replica_sets(apps, ns), "the collector works after the DELETE, not inside it"
    wait_until(lambda: not pods(core, ns) and not replica_sets(apps, ns))


def test_orphan_keeps_dependents_running_without_an_owner_reference(apps, core, ns):
    running(apps, core, ns, "orph")
    rv = apps.list_namespaced_deployment(ns).metadata.resource_version
    events = Events(apps.list_namespaced_deployment, ns, rv)
    try:
        marked = apps.delete_namespaced_deployment("orph", ns, propagation_policy="Orphan")
        assert marked["metadata"]["finalizers"] == ["orphan"]
        events.next(lambda k, o: k == "DELETED" and o["metadata"]["name"] == "orph")
    finally:
        events.stop()
    [rs] = replica_sets(apps, ns)
    assert rs.metadata.owner_references is None
    assert len(pods(core, ns)) == 2
    assert all(p.metadata.owner_references[0].name == rs.metadata.name for p in pods(core, ns))
    assert rs.status.ready_replicas == 2  # still managed by its own controller


def test_legacy_orphan_dependents_maps_onto_the_policies(api, apps, core, ns):
    running(apps, core, ns, "legacy-true", replicas=1)
    apps.delete_namespaced_deployment("legacy-true", ns, orphan_dependents=True)
    wait_until(lambda: [rs for rs in replica_sets(apps, ns) if rs.metadata.owner_references is None])
    assert len(pods(core, ns)) == 1

    both = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground",
            "orphanDependents": False}
    code, refused = raw_delete(api, f"/api/v1/namespaces/{ns}/pods/{pods(core, ns)[0].metadata.name}", both)
    assert code == 422 and "cannot be both set" in refused["message"]

    body = {"kind": "DeleteOptions", "apiVersion": "v1", "orphanDependents": False}
    held = {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "held", "finalizers": ["example.com/protect"]}}
    core.create_namespaced_config_map(ns, held)
    code, answer = raw_delete(api, f"/api/v1/namespaces/{ns}/configmaps/held", body)
    assert code == 202 and answer["metadata"]["deletionTimestamp"]  # not deleted at once: Accepted


def test_a_finalizer_holds_an_object_until_a_patch_removes_it(core, ns):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "data": {"k": "v"},
            "metadata": {"name": "guarded", "finalizers": ["example.com/protect"]}}
    core.create_namespaced_config_map(ns, body)
    rv = core.list_namespaced_config_map(ns).metadata.resource_version
    events = Events(core.list_namespaced_config_map, ns, rv)
    try:
        core.delete_namespaced_config_map("guarded", ns, propagation_policy="Foreground")
        _, marked = events.next(lambda k, o: k == "MODIFIED" and bool(o["metadata"].get("deletionTimestamp")))
        assert set(marked["metadata"]["finalizers"]) == {"example.com/protect", "foregroundDeletion"}
        # the collector has nothing to wait for: it drops its own finalizer, the foreign one stays
        _, waiting = events.next(
            lambda k, o: k == "MODIFIED" and o["metadata"]["finalizers"] == ["example.com/protect"])
        assert waiting["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
        # still readable and patchable; a new finalizer cannot be added once deletion started
        core.patch_namespaced_config_map("guarded", ns, {"data": {"k": "changed"}})
        assert core.read_namespaced_config_map("guarded", ns).data == {"k": "changed"}
        with pytest.raises(ApiException) as refused:
            core.patch_namespaced_config_map(
                "guarded", ns, {"metadata": {"finalizers": ["example.com/protect", "example.com/more"]}},
                _content_type="application/merge-patch+json")
        assert refused.value.status == 422 and "no new finalizers" in json.loads(refused.value.body)["message"]
        core.patch_namespaced_config_map("guarded", ns, {"metadata": {"finalizers": None}},
                                         _content_type="application/merge-patch+json")
        events.next(lambda k, o: k == "DELETED" and o["metadata"]["name"] == "guarded")
    finally:
        events.stop()
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("guarded", ns)
    assert gone.value.status == 404


def test_a_finalizer_removed_by_put_releases_the_object(core, ns):
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "put", "finalizers": ["example.com/x"]}}
    core.create_namespaced_config_map(ns, body)
    core.delete_namespaced_config_map("put", ns)
    live = core.read_namespaced_config_map("put", ns)
    assert live.metadata.deletion_timestamp is not None
    live.metadata.finalizers = []
    core.replace_namespaced_config_map("put", ns, live)
    wait_until(lambda: not core.list_namespaced_config_map(ns, field_selector="metadata.name=put").items)


def test_foreground_owner_waits_for_a_dependent_held_by_a_finalizer(apps, core, ns):
    running(apps, core, ns, "blocked", replicas=1)
    [pod] = pods(core, ns)
    core.patch_namespaced_pod(pod.metadata.name, ns, {"metadata": {"finalizers": ["example.com/drain"]}})
    apps.delete_namespaced_deployment("blocked", ns, propagation_policy="Foreground")
    # the collector deletes down the chain; the pod is marked but its finalizer holds it, and so the
    # ReplicaSet (blockOwnerDeletion) and the Deployment wait
    wait_until(lambda: core.read_namespaced_pod(pod.metadata.name, ns).metadata.deletion_timestamp is not None)
    assert apps.read_namespaced_deployment("blocked", ns).metadata.finalizers == ["foregroundDeletion"]
    core.patch_namespaced_pod(pod.metadata.name, ns, {"metadata": {"finalizers": None}},
                              _content_type="application/merge-patch+json")
    wait_until(lambda: not apps.list_namespaced_deployment(ns).items and not replica_sets(apps, ns)
             and not pods(core, ns))


def test_statefulset_pods_are_collected(apps, core, ns):
    body = deployment("db", replicas=2)
    body["kind"] = "StatefulSet"
    body["spec"]["serviceName"] = "db"
    apps.create_namespaced_stateful_set(ns, body)
    wait_until(lambda: len(pods(core, ns)) == 2)
    apps.delete_namespaced_stateful_set("db", ns, propagation_policy="Foreground")
    wait_until(lambda: not apps.list_namespaced_stateful_set(ns).items)
    assert pods(core, ns) == []


def test_the_operators_dependents_are_collected(api, core, ns):
    custom = client.CustomObjectsApi(api)
    lws = {"apiVersion": "leaderworkerset.x-k8s.io/v1", "kind": "LeaderWorkerSet", "metadata": {"name": "big"},
           "spec": {"replicas": 1, "leaderWorkerTemplate": {"size": 2, "workerTemplate": {
               "spec": {"containers": [{"name": "main", "image": "vllm:1"}]}}}}}
    custom.create_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", ns, "leaderworkersets", lws)
    wait_until(lambda: len(pods(core, ns)) == 2)
    assert all(p.metadata.owner_references[0].kind == "LeaderWorkerSet" for p in pods(core, ns))
    custom.delete_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", ns, "leaderworkersets", "big",
                                           propagation_policy="Foreground")
    assert custom.get_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", ns, "leaderworkersets",
                                               "big")["metadata"]["deletionTimestamp"]
    wait_until(lambda: not pods(core, ns) and not custom.list_namespaced_custom_object(
        "leaderworkerset.x-k8s.io", "v1", ns, "leaderworkersets")["items"])


def test_a_dependent_with_another_living_owner_stays(core, ns):
    first = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner-a"}})
    second = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner-b"}})
    refs = [{"apiVersion": "v1", "kind": "ConfigMap", "name": o.metadata.name, "uid": o.metadata.uid}
            for o in (first, second)]
    core.create_namespaced_config_map(ns, {"metadata": {"name": "shared", "ownerReferences": refs}})
    core.delete_namespaced_config_map("owner-a", ns)
    # the collector drops the reference to the owner that went, and keeps the object
    wait_until(lambda: len(core.read_namespaced_config_map("shared", ns).metadata.owner_references) == 1)
    assert core.read_namespaced_config_map("shared", ns).metadata.owner_references[0].name == "owner-b"
    core.delete_namespaced_config_map("owner-b", ns)
    wait_until(lambda: not core.list_namespaced_config_map(ns, field_selector="metadata.name=shared").items)


def test_a_running_pod_is_terminating_for_its_grace_period_until_its_kubelet_removes_it(emulator, api, apps,
                                                                                      core, ns):
    running(apps, core, ns, "grace", replicas=1)
    [pod] = pods(core, ns)
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    events = Events(core.list_namespaced_pod, ns, rv)
    emulator.controller.termination_delay = 0.5  # a model server draining its requests
    try:
        code, answer = raw_delete(api, f"/api/v1/namespaces/{ns}/pods/{pod.metadata.name}",
                                  {"kind": "DeleteOptions", "apiVersion": "v1"})
        # 200 with the pod, still there: Terminating for the pod's terminationGracePeriodSeconds (30 by
        # default), its deletionTimestamp when that period ends
        assert code == 200 and answer["kind"] == "Pod"
        assert answer["metadata"]["deletionGracePeriodSeconds"] == 30
        assert answer["metadata"]["deletionTimestamp"] > answer["metadata"]["creationTimestamp"]
        events.next(lambda k, o: k == "MODIFIED" and bool(o["metadata"].get("deletionTimestamp")))
        assert core.read_namespaced_pod(pod.metadata.name, ns).metadata.deletion_timestamp is not None
        # its ReplicaSet does not count it, and starts a replacement at once (as kube-controller-manager does)
        fresh = wait_until(lambda: [p for p in pods(core, ns) if p.metadata.deletion_timestamp is None])
        assert fresh[0].metadata.name != pod.metadata.name
        events.next(lambda k, o: k == "DELETED" and o["metadata"]["name"] == pod.metadata.name)
    finally:
        events.stop()
        emulator.controller.termination_delay = 0.2


def test_grace_zero_and_unscheduled_pods_are_deleted_at_once(emulator, core, ns):
    running_pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "now", "namespace": ns},
                   "spec": {"nodeName": "sandbox-node", "terminationGracePeriodSeconds": 60,
                            "containers": [{"name": "main", "image": "nginx:1.27"}]}}
    emulator.put(running_pod)
    core.delete_namespaced_pod("now", ns, grace_period_seconds=0)  # `kubectl delete --grace-period=0 --force`
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod("now", ns)
    assert gone.value.status == 404
    emulator.put({**running_pod, "metadata": {"name": "unbound", "namespace": ns},
                  "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}})  # no node: no kubelet
    core.delete_namespaced_pod("unbound", ns)
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod("unbound", ns)
    assert gone.value.status == 404


def test_foreground_deletion_of_a_deployment_waits_for_its_pods_to_terminate(emulator, api, apps, core, ns):
    running(apps, core, ns, "slow", replicas=2)
    emulator.controller.termination_delay = 0.5
    rv = core.list_namespaced_pod(ns).metadata.resource_version
    events = Events(core.list_namespaced_pod, ns, rv)
    try:
        apps.delete_namespaced_deployment("slow", ns, propagation_policy="Foreground")
        # the pods pass through Terminating before they go, and the Deployment outlives them
        events.next(lambda k, o: k == "MODIFIED" and bool(o["metadata"].get("deletionTimestamp")))
        assert apps.read_namespaced_deployment("slow", ns).metadata.deletion_timestamp is not None
        wait_until(lambda: not pods(core, ns), what="the pods gone")
        wait_until(lambda: not apps.list_namespaced_deployment(ns).items, what="the Deployment gone after them")
    finally:
        events.stop()
        emulator.controller.termination_delay = 0.2


def test_a_terminated_pod_with_a_finalizer_stays_until_the_finalizer_goes(emulator, core, ns):
    emulator.put({"apiVersion": "v1", "kind": "Pod",
                  "metadata": {"name": "held", "namespace": ns, "finalizers": ["example.com/keep"]},
                  "spec": {"nodeName": "sandbox-node", "terminationGracePeriodSeconds": 5,
                           "containers": [{"name": "main", "image": "nginx:1.27"}]}})
    core.delete_namespaced_pod("held", ns)
    # the kubelet has stopped it (grace down to 0); the finalizer still holds it
    held = wait_until(lambda: (p := core.read_namespaced_pod("held", ns)).metadata.deletion_grace_period_seconds == 0
                      and p, what="the kubelet's delete with grace 0")
    assert held.metadata.finalizers == ["example.com/keep"]
    core.patch_namespaced_pod("held", ns, {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_pod("held", ns)
    assert gone.value.status == 404
