"""Pure logic of a release's objects: why a deleted object is still there, shared ConfigMaps' stamping
and difference, and workloads an autoscaler drives."""

from __future__ import annotations

from ops import releases
from ops.releases import ObjectRef, shared


def test_what_holds_a_deleted_object_is_named():
    ref = ObjectRef("apps/v1", "Deployment", "default", "qwen")
    held = {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z",
                         "finalizers": ["foregroundDeletion", "example.com/protect"]}}
    assert releases.holding(ref, held).startswith("Deployment qwen is held by finalizer example.com/protect")
    waiting = {"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": ["foregroundDeletion"]}}
    assert "garbage collector to delete its dependents" in releases.holding(ref, waiting)
    assert "not being deleted" in releases.holding(ref, {"metadata": {}})


def test_a_shared_configmap_is_stamped_for_every_release_not_one():
    rendered = [{"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "ray-vllm-serve", "labels": {"app.kubernetes.io/component": "a"}},
                 "data": {"vllm_serve.py": "print(1)"}},
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a-settings"}, "data": {}}]
    stamped = {o["metadata"]["name"]: o for o in releases.stamp(rendered, release="a", revision=2, namespace="ml")}
    meta = stamped["ray-vllm-serve"]["metadata"]
    assert releases.RELEASE_LABEL not in meta["labels"] and releases.REVISION_LABEL not in meta["labels"]
    assert meta["labels"]["infer-bot.io/shared"] == "true" and meta["annotations"] == {"users.infer-bot.io/a": "in-use"}
    assert stamped["a-settings"]["metadata"]["labels"][releases.RELEASE_LABEL] == "a"  # a release's own
    assert shared.users({"metadata": {**meta, "labels": {**meta["labels"], releases.RELEASE_LABEL: "old"}}}) \
        == {"a", "old"}


def test_the_difference_of_shared_content_names_keys_and_lines():
    mine = {"data": {"vllm_serve.py": "import ray\nVERSION = 2\n", "new.txt": "x"}}
    theirs = {"data": {"vllm_serve.py": "import ray\nVERSION = 1\n"}}
    lines = shared.difference(mine, theirs)
    assert lines[0] == "`data.new.txt`: only in this release's"
    assert "-VERSION = 1" in lines[1] and "+VERSION = 2" in lines[1] and "import ray" not in lines[1]
    assert shared.difference(theirs, theirs) == []


def test_replicas_are_left_out_only_of_the_workload_an_autoscaler_drives():
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "chat"},
                  "spec": {"replicas": 1, "template": {}}}
    other = {**deployment, "metadata": {"name": "other"}}
    keda = {"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": "chat"},
            "spec": {"scaleTargetRef": {"name": "chat"}}}
    out = {o["metadata"]["name"] + o["kind"]: o for o in releases.without_replicas_under_autoscaler(
        [deployment, other, keda])}
    assert "replicas" not in out["chatDeployment"]["spec"] and out["otherDeployment"]["spec"]["replicas"] == 1
    assert releases.without_replicas_under_autoscaler([deployment]) == [deployment]
