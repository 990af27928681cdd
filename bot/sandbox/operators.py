"""Stand-ins for the operators an inference-ready EKS cluster runs, inside the API emulator.

* LeaderWorkerSet (kubernetes-sigs/lws): each replica is a group of `size` pods, a leader and
  workers; the set is ready when every pod of every group is.
* RayService (KubeRay): a head pod and the worker groups' pods; `serviceStatus: Running` once all
  are ready.
* Karpenter (karpenter.sh/v1): its CRDs and NodePools are here; the provisioner and the NodeClaim
  lifecycle run in the controller (bot/sandbox/controller/karpenter.py). The sandbox's NodePools
  (g5, g6, g6e — the one upstream's NIM values select — inf2 and trn1) let every preset get a node.

The custom resources' CRDs are in :data:`CRDS`; a test cluster without them is a cluster without
those operators, as the bot's refusal expects.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final

from bot.sandbox.objects import ClusterAPI, Obj, is_ready, meta_of, owned_by, owner_ref

LWS: Final = ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet")
RAY: Final = ("ray.io/v1", "RayService")
KINDS: Final = {LWS[1]: LWS[0], RAY[1]: RAY[0]}
HASH_LABEL: Final = "sandbox.infer-bot.io/template-hash"


def _crd(group: str, version: str, kind: str, plural: str, scale: bool = False, scope: str = "Namespaced") -> Obj:
    subresources: Obj = {"status": {}}
    if scale:
        subresources["scale"] = {"specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope,
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
                     "versions": [{"name": version, "served": True, "storage": True, "subresources": subresources}]}}


CRDS: Final = (
    _crd("leaderworkerset.x-k8s.io", "v1", "LeaderWorkerSet", "leaderworkersets", scale=True),
    _crd("ray.io", "v1", "RayService", "rayservices"),
    _crd("keda.sh", "v1alpha1", "ScaledObject", "scaledobjects"),
    _crd("karpenter.sh", "v1", "NodePool", "nodepools", scope="Cluster"),
    _crd("karpenter.sh", "v1", "NodeClaim", "nodeclaims", scope="Cluster"),
)


def _hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:10]


def desired_pods(obj: Mapping[str, Any]) -> dict[str, tuple[Obj, dict[str, str], str]]:
    """pod name → (pod template, extra labels, group) the resource should have."""
    name, spec = meta_of(obj)["name"], obj.get("spec") or {}
    out: dict[str, tuple[Obj, dict[str, str], str]] = {}
    if obj.get("kind") == LWS[1]:
        template = spec.get("leaderWorkerTemplate") or {}
        size = int(template.get("size") or 1)
        worker = template.get("workerTemplate") or {}
        leader = template.get("leaderTemplate") or worker
        for group in range(int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)):
            for index in range(size):
                labels = {"leaderworkerset.sigs.k8s.io/name": name,
                          "leaderworkerset.sigs.k8s.io/group-index": str(group),
                          "leaderworkerset.sigs.k8s.io/worker-index": str(index)}
                pod_name = f"{name}-{group}" if index == 0 else f"{name}-{group}-{index}"
                out[pod_name] = (leader if index == 0 else worker, labels, str(group))
    else:
        cluster = spec.get("rayClusterConfig") or {}
        head = (cluster.get("headGroupSpec") or {}).get("template") or {}
        out[f"{name}-head"] = (head, {"ray.io/cluster": name, "ray.io/node-type": "head"}, "head")
        for group in cluster.get("workerGroupSpecs") or []:
            group_name = str(group.get("groupName") or "workers")
            for index in range(int(group.get("replicas") or 0)):
                labels = {"ray.io/cluster": name, "ray.io/node-type": "worker", "ray.io/group": group_name}
                out[f"{name}-{group_name}-worker-{index}"] = (group.get("template") or {}, labels, group_name)
    return out


def sync(api: ClusterAPI, kind: str, namespace: str, name: str) -> None:
    """Make the resource's pods match its spec (a changed template replaces them), then write its status.

    The controller's reconcile loop calls this with its cluster API, so operators need nothing else of it."""
    obj = api.get(KINDS[kind], kind, namespace, name)
    if obj is None or meta_of(obj).get("deletionTimestamp"):
        return
    uid = meta_of(obj)["uid"]
    owned = {meta_of(p)["name"]: p for p in api.list("v1", "Pod", namespace)
             if owned_by(p, uid)}
    wanted = desired_pods(obj)
    for pod_name, pod in owned.items():
        template, _, _ = wanted.get(pod_name, ({}, {}, ""))
        if pod_name not in wanted or (meta_of(pod).get("labels") or {}).get(HASH_LABEL) != _hash(template):
            api.delete("v1", "Pod", namespace, pod_name)
    pods = {n: p for n, p in owned.items() if n in wanted
            and (meta_of(p).get("labels") or {}).get(HASH_LABEL) == _hash(wanted[n][0])}
    for pod_name, (template, labels, _) in wanted.items():
        if pod_name not in pods:
            pods[pod_name] = api.put(_pod(obj, pod_name, template, labels))
    ready = {n for n, p in pods.items() if is_ready(p)}
    if kind == LWS[1]:
        groups: dict[str, bool] = {}
        for pod_name, (_, _, group) in wanted.items():
            groups[group] = groups.get(group, True) and pod_name in ready
        count = sum(groups.values())
        replicas = len(groups)
        status: Obj = {"replicas": replicas, "readyReplicas": count, "updatedReplicas": replicas,
                       "conditions": [{"type": "Available", "status": "True" if count >= replicas else "False"}]}
    else:
        running = bool(wanted) and set(wanted) <= ready
        status = {"serviceStatus": "Running" if running else "WaitForServeDeploymentReady",
                  "conditions": [{"type": "Ready", "status": "True" if running else "False"}]}
    status["observedGeneration"] = meta_of(obj).get("generation", 1)
    if status != (obj.get("status") or {}):
        api.put({**obj, "status": status})


def _pod(owner: Obj, name: str, template: Mapping[str, Any], labels: Mapping[str, str]) -> Obj:
    meta = meta_of(owner)
    template_meta = template.get("metadata") or {}
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": meta.get("namespace"),
                         "labels": {**(template_meta.get("labels") or {}), **labels, HASH_LABEL: _hash(template)},
                         "ownerReferences": [owner_ref(owner)]},
            "spec": copy.deepcopy(template.get("spec") or {})}


# ---- Karpenter ------------------------------------------------------------------------------------

KARPENTER_API: Final = "karpenter.sh/v1"


def nodepool(name: str, families: list[str], *, limits: Mapping[str, Any] | None = None,
             zones: list[str] | None = None, weight: int | None = None) -> Obj:
    """A NodePool as the Karpenter docs (and ai-on-eks' GPU NodePools) write one."""
    reqs: list[Obj] = [{"key": "karpenter.k8s.aws/instance-family", "operator": "In", "values": list(families)},
                       {"key": "karpenter.sh/capacity-type", "operator": "In", "values": ["on-demand"]},
                       {"key": "kubernetes.io/arch", "operator": "In", "values": ["amd64"]}]
    if zones:
        reqs.append({"key": "topology.kubernetes.io/zone", "operator": "In", "values": list(zones)})
    spec: Obj = {"template": {"metadata": {"labels": {"type": "karpenter"}},
                              "spec": {"nodeClassRef": {"group": "karpenter.k8s.aws", "kind": "EC2NodeClass",
                                                        "name": "default"},
                                       "requirements": reqs, "expireAfter": "720h"}},
                 "disruption": {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "300s"}}
    if limits:
        spec["limits"] = {k: str(v) for k, v in limits.items()}
    if weight is not None:
        spec["weight"] = weight
    return {"apiVersion": KARPENTER_API, "kind": "NodePool", "metadata": {"name": name}, "spec": spec}


SANDBOX_NODEPOOLS: Final = (
    nodepool("g5-nvidia", ["g5"], limits={"nvidia.com/gpu": 256}),
    nodepool("g6-nvidia", ["g6"], limits={"nvidia.com/gpu": 256}),
    nodepool("g6e-nvidia", ["g6e"], limits={"nvidia.com/gpu": 256}),
    nodepool("inferentia-inf2", ["inf2"], limits={"aws.amazon.com/neuron": 256}),
    nodepool("trainium-trn1", ["trn1"], limits={"aws.amazon.com/neuron": 256}),
)


def install(emulator: Any, namespace: str = "default") -> None:
    """What the sandbox cluster has beyond its seed: the operators' CRDs, Karpenter's NodePools, and
    placeholder `hf-token`/`ngc-api` Secrets (the sandbox downloads nothing; `/infer secret hf-token`
    replaces the first)."""
    for crd in CRDS:
        emulator.put(crd)
    for pool in SANDBOX_NODEPOOLS:
        emulator.put(pool)
    emulator.controller.custom_operators = True
    placeholder = base64.b64encode(b"sandbox-placeholder").decode()
    for name, key in (("hf-token", "token"), ("ngc-api", "NGC_API_KEY")):  # NIM presets read the NGC key
        emulator.put({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                      "metadata": {"name": name, "namespace": namespace}, "data": {key: placeholder}})
