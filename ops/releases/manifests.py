"""A release's manifests before they reach a cluster: the preset's values with a command's options
(what helm renders), object references, and stamping with the release's namespace, labels and
annotations in apply order (what is applied and stored per revision).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

MANAGER = "infer-bot"  # the field manager of every object the bot applies
RELEASE_LABEL = "infer-bot.io/release"
REVISION_LABEL = "infer-bot.io/revision"
PRESET_ANNOTATION = "infer-bot.io/preset"

# Kinds a release may own, in the order they are applied (config and services before workloads,
# autoscalers last) and deleted (the reverse).
KIND_ORDER = ("Secret", "ConfigMap", "ServiceAccount", "Service", "Deployment", "LeaderWorkerSet", "RayService",
              "Ingress", "HorizontalPodAutoscaler", "ScaledObject")
# Where `status` and `undeploy` look for a release's objects.
OWNED_KINDS = (("v1", "Service"), ("apps/v1", "Deployment"), ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
               ("ray.io/v1", "RayService"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
               ("keda.sh/v1alpha1", "ScaledObject"))
WORKLOAD_KINDS = ("Deployment", "LeaderWorkerSet", "RayService")
AUTOSCALER_KINDS = ("HorizontalPodAutoscaler", "ScaledObject")

# ConfigMaps the upstream chart renders under a fixed name, whatever the release is called: every
# release of that framework in a namespace uses the same one. They are stamped as shared (no release
# label; one annotation per release that uses them) and deleted only with their last user.
SHARED_CONFIGMAPS = frozenset({"ray-vllm-serve", "triton-model-repository", "diffusers-serve", "fluentbit-config"})
SHARED_LABEL = "infer-bot.io/shared"
USER_ANNOTATION_PREFIX = "users.infer-bot.io/"  # + release name: this release uses the shared object


# ---- values --------------------------------------------------------------------------------------


def set_path(values: dict[str, Any], dotted: str, value: Any) -> None:
    """values[a][b][c] = value for "a.b.c", creating the maps on the way."""
    node = values
    parts = dotted.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def typed(text: str) -> Any:
    """A `set.` value as YAML reads it (8192 → int, 0.8 → float, true → bool), as `helm --set` would."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, str | int | float | bool) else text


def release_values(preset_values: Mapping[str, Any], *, name: str, namespace: str, replicas: int | None,
                   instance: str | None, sets: Mapping[str, Any]) -> dict[str, Any]:
    """The preset's values with the command's options: what `helm template` renders."""
    values = copy.deepcopy(dict(preset_values))
    set_path(values, "inference.serviceName", name)
    set_path(values, "inference.serviceNamespace", namespace)
    if replicas is not None:
        set_path(values, "inference.modelServer.deployment.replicas", replicas)
    if instance is not None:
        set_path(values, "inference.modelServer.deployment.instanceType", instance)
    for key, value in sets.items():
        set_path(values, key, value)
    return values


# ---- objects -------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ObjectRef:
    api_version: str
    kind: str
    namespace: str  # "" for cluster-scoped objects
    name: str

    @property
    def key(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def group(self) -> str:
        return self.api_version.rpartition("/")[0]

    @staticmethod
    def of(obj: Mapping[str, Any]) -> ObjectRef:
        meta = obj.get("metadata") or {}
        return ObjectRef(str(obj.get("apiVersion", "")), str(obj.get("kind", "")), str(meta.get("namespace") or ""),
                         str(meta.get("name", "")))

    def as_dict(self) -> dict[str, str]:
        return {"apiVersion": self.api_version, "kind": self.kind, "namespace": self.namespace, "name": self.name}

    @staticmethod
    def from_dict(data: Mapping[str, str]) -> ObjectRef:
        return ObjectRef(data["apiVersion"], data["kind"], data.get("namespace", ""), data["name"])


def is_shared(ref: ObjectRef) -> bool:
    return ref.kind == "ConfigMap" and ref.api_version == "v1" and ref.name in SHARED_CONFIGMAPS


def shared_manager(release: str) -> str:
    """The field manager a release applies shared objects with: one per release, so that one release's
    apply never drops another's annotation (server-side apply removes what a manager stops applying)."""
    return f"{MANAGER}-{release}"[:128]


def kind_rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def autoscaled(objects: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(kind, name) of each workload an autoscaler among `objects` drives (KEDA's default kind: Deployment)."""
    targets = set()
    for obj in objects:
        if obj.get("kind") in AUTOSCALER_KINDS:
            target = (obj.get("spec") or {}).get("scaleTargetRef") or {}
            targets.add((str(target.get("kind") or "Deployment"), str(target.get("name") or "")))
    return targets


def without_replicas_under_autoscaler(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The objects with `spec.replicas` left out of each workload an autoscaler among them targets: the
    HPA or KEDA owns that number, and an apply that set it would undo the autoscaler's choice."""
    objects = list(objects)
    targets = autoscaled(objects)
    out = []
    for obj in objects:
        if obj.get("kind") in WORKLOAD_KINDS and (obj["kind"], ObjectRef.of(obj).name) in targets \
                and "replicas" in (obj.get("spec") or {}):
            obj = {**obj, "spec": {k: v for k, v in obj["spec"].items() if k != "replicas"}}
        out.append(obj)
    return out


def ordered(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(objects, key=lambda o: (kind_rank(str(o.get("kind"))), ObjectRef.of(o).name))


def stamp(objects: Iterable[Mapping[str, Any]], *, release: str, revision: int, namespace: str,
          preset: str = "") -> list[dict[str, Any]]:
    """The objects with the release's namespace, labels and annotations: what is applied and stored."""
    out: list[dict[str, Any]] = []
    for source in objects:
        obj = copy.deepcopy(dict(source))
        meta = obj.setdefault("metadata", {})
        if obj.get("kind") not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"):
            meta["namespace"] = namespace
        if is_shared(ObjectRef.of(obj)):
            labels = {k: v for k, v in (meta.get("labels") or {}).items() if k not in (RELEASE_LABEL, REVISION_LABEL)}
            meta["labels"] = {**labels, SHARED_LABEL: "true", "app.kubernetes.io/managed-by": MANAGER}
            meta["annotations"] = {**(meta.get("annotations") or {}), USER_ANNOTATION_PREFIX + release: "in-use"}
            out.append(obj)
            continue
        labels = meta.get("labels") or {}
        labels.update({RELEASE_LABEL: release, REVISION_LABEL: str(revision),
                       "app.kubernetes.io/managed-by": MANAGER})
        meta["labels"] = labels
        if preset:
            meta["annotations"] = {**(meta.get("annotations") or {}), PRESET_ANNOTATION: preset}
        out.append(obj)
    return ordered(out)
