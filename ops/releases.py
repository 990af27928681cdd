"""Releases: a model preset rendered by helm, applied by the bot, watched until it serves.

The Argo CD model: helm only renders (ops/helm.py); the bot applies every object with server-side
apply under its own field manager, labels it with the release name and revision, and keeps the
rendered manifests of every revision (in its database, bot/runs/releases.py), so that undeploy deletes
exactly what a release owns and rollback re-applies a stored revision.

Objects are handled as raw JSON through the kubernetes client's ApiClient, so that any kind the
chart renders (built-in or custom) goes the same way; discovery of its group/version tells the
resource's plural and, for custom resources, whether the operator behind them is installed.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml
from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from ops.errors import OpsError
from ops.kube import REQUEST_TIMEOUT, KubeCluster, _api_error, retryable

MANAGER = "infer-bot"  # the field manager of every object the bot applies
RELEASE_LABEL = "infer-bot.io/release"
REVISION_LABEL = "infer-bot.io/revision"
PRESET_ANNOTATION = "infer-bot.io/preset"
APPLY_PATCH = "application/apply-patch+yaml"

# The operator behind each custom API group the chart (or autoscale) may render, named in refusals.
OPERATORS = {
    "leaderworkerset.x-k8s.io": "the LeaderWorkerSet controller (kubernetes-sigs/lws)",
    "ray.io": "the KubeRay operator (ray-project/kuberay)",
    "keda.sh": "KEDA (kedacore/keda)",
    "monitoring.coreos.com": "the Prometheus operator",
}
# Kinds a release may own, in the order they are applied (config and services before workloads,
# autoscalers last) and deleted (the reverse).
KIND_ORDER = ("Secret", "ConfigMap", "ServiceAccount", "Service", "Deployment", "LeaderWorkerSet", "RayService",
              "Ingress", "HorizontalPodAutoscaler", "ScaledObject")
# Where `status` and `undeploy` look for a release's objects.
OWNED_KINDS = (("v1", "Service"), ("apps/v1", "Deployment"), ("leaderworkerset.x-k8s.io/v1", "LeaderWorkerSet"),
               ("ray.io/v1", "RayService"), ("autoscaling/v2", "HorizontalPodAutoscaler"),
               ("keda.sh/v1alpha1", "ScaledObject"))
WORKLOAD_KINDS = ("Deployment", "LeaderWorkerSet", "RayService")

Progress = Callable[[str], None]


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


def _kind_rank(kind: str) -> int:
    return KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER)


def ordered(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(objects, key=lambda o: (_kind_rank(str(o.get("kind"))), ObjectRef.of(o).name))


def stamp(objects: Iterable[Mapping[str, Any]], *, release: str, revision: int, namespace: str,
          preset: str = "") -> list[dict[str, Any]]:
    """The objects with the release's namespace, labels and annotations: what is applied and stored."""
    out = []
    for obj in objects:
        obj = copy.deepcopy(dict(obj))
        meta = obj.setdefault("metadata", {})
        if obj.get("kind") not in ("Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"):
            meta["namespace"] = namespace
        labels = meta.get("labels") or {}
        labels.update({RELEASE_LABEL: release, REVISION_LABEL: str(revision),
                       "app.kubernetes.io/managed-by": MANAGER})
        meta["labels"] = labels
        if preset:
            meta["annotations"] = {**(meta.get("annotations") or {}), PRESET_ANNOTATION: preset}
        out.append(obj)
    return ordered(out)


# ---- the API, kind-agnostic ----------------------------------------------------------------------


@dataclass(frozen=True)
class ApiResource:
    plural: str
    namespaced: bool


class MissingApi(OpsError):
    pass


class ReleaseApi:
    """Raw JSON requests for any kind, through one cluster's authenticated ApiClient.

    Discovery answers are cached per instance: one instance serves one command or one operation.
    """

    def __init__(self, kube: KubeCluster) -> None:
        self.kube = kube
        self._discovery: dict[str, dict[str, ApiResource] | None] = {}

    @property
    def api(self) -> k8s.ApiClient:
        return self.kube.api_client

    def request(self, what: str, method: str, path: str, *, query: Sequence[tuple[str, Any]] = (),
                body: Any = None, content_type: str | None = None, retry: bool = True) -> dict[str, Any] | None:
        """One request; None for 404. 5xx, 409 and connection errors are retried (ops.kube.retryable):
        every call made here is idempotent (reads, server-side applies of a whole configuration, deletes)."""
        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        attempts = self.kube_retries() if retry else 1
        for attempt in range(attempts):
            try:
                params = self.api.param_serialize(method=method, resource_path=path, query_params=list(query),
                                                  header_params=headers, body=body, auth_settings=["BearerToken"])
                resp = self.api.call_api(*params, _request_timeout=REQUEST_TIMEOUT)
                data = resp.read()
                status = resp.status
                if status == 404:
                    return None
                if status >= 400:
                    raise ApiException(status=status, reason=resp.reason, body=data.decode("utf-8", "replace"))
                return json.loads(data) if data else {}
            except ApiException as exc:
                if not (retryable(exc.status) and attempt < attempts - 1):
                    raise _api_error(self.kube.name, exc, what) from None
            except (HTTPError, OSError) as exc:
                if attempt == attempts - 1:
                    raise OpsError(f"cannot reach the Kubernetes API of cluster `{self.kube.name}` "
                                   f"({type(exc).__name__}); check the cluster and the bot's network") from None
            time.sleep(0.2 * 2**attempt)
        raise AssertionError("unreachable")

    @staticmethod
    def kube_retries() -> int:
        return 3

    def resources_of(self, api_version: str) -> dict[str, ApiResource] | None:
        """kind → resource of a group/version, or None when the server does not serve it."""
        if api_version not in self._discovery:
            path = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            found = self.request(f"discover {api_version}", "GET", path)
            self._discovery[api_version] = None if found is None else {
                r["kind"]: ApiResource(r["name"], bool(r.get("namespaced")))
                for r in found.get("resources", []) if "/" not in r.get("name", "")}
        return self._discovery[api_version]

    def resource(self, api_version: str, kind: str) -> ApiResource:
        served = self.resources_of(api_version)
        if served is None or kind not in served:
            group = api_version.rpartition("/")[0]
            operator = OPERATORS.get(group)
            who = f"{operator} is not installed" if operator else "its API is not served"
            raise MissingApi(f"cluster `{self.kube.name}` has no `{kind}` ({api_version}): {who}. "
                             "Install it first (the ai-on-eks inference-ready cluster includes it); "
                             "nothing was applied.")
        return served[kind]

    def path(self, ref: ObjectRef, *, with_name: bool = True) -> str:
        res = self.resource(ref.api_version, ref.kind)
        base = "/api/v1" if ref.api_version == "v1" else f"/apis/{ref.api_version}"
        if res.namespaced:
            base += f"/namespaces/{ref.namespace}"
        base += f"/{res.plural}"
        return f"{base}/{ref.name}" if with_name else base

    def get(self, ref: ObjectRef) -> dict[str, Any] | None:
        return self.request(f"read {ref.key}", "GET", self.path(ref))

    def apply(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        ref = ObjectRef.of(obj)
        # force: the bot owns these fields; a hand edit in between is overwritten, as a re-deploy should.
        got = self.request(f"apply {ref.key}", "PATCH", self.path(ref), body=dict(obj), content_type=APPLY_PATCH,
                           query=[("fieldManager", MANAGER), ("force", "true")])
        return got or {}

    def delete(self, ref: ObjectRef) -> bool:
        """True when it was there (deleted now), False when it was already gone."""
        try:
            path = self.path(ref)
        except MissingApi:
            return False  # the API is gone, so is the object
        return self.request(f"delete {ref.key}", "DELETE", path,
                            body={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": "Foreground"},
                            content_type="application/json") is not None

    def list_labelled(self, api_version: str, kind: str, namespace: str, selector: str) -> list[dict[str, Any]]:
        served = self.resources_of(api_version)
        if served is None or kind not in served:
            return []
        ref = ObjectRef(api_version, kind, namespace, "")
        found = self.request(f"list {kind}", "GET", self.path(ref, with_name=False),
                             query=[("labelSelector", selector)]) or {}
        return [{**item, "apiVersion": api_version, "kind": kind} for item in found.get("items", [])]


def check_apis(api: ReleaseApi, objects: Iterable[Mapping[str, Any]]) -> None:
    """Refuse (MissingApi) when any object's kind is not served: before anything is applied."""
    for obj in objects:
        api.resource(str(obj.get("apiVersion")), str(obj.get("kind")))


# ---- what a deploy changes -----------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    action: str  # create | update | unchanged | delete
    ref: ObjectRef
    fields: tuple[str, ...] = ()  # "spec.replicas: 1 → 2"

    @property
    def line(self) -> str:
        shown = "; ".join(self.fields[:6]) + (f"; …{len(self.fields) - 6} more" if len(self.fields) > 6 else "")
        return f"{self.action} `{self.ref.key}`" + (f": {shown}" if shown else "")


_IGNORED_LABELS = {REVISION_LABEL}


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:39] + "…"


def diff(desired: Any, live: Any, path: str = "") -> list[str]:
    """Fields `desired` sets that `live` has differently: what applying `desired` would change."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return [f"{path or '.'}: changed"]
        out: list[str] = []
        for key, value in desired.items():
            if key in _IGNORED_LABELS:
                continue
            out += diff(value, live.get(key), f"{path}.{key}" if path else key)
        return out
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return [f"{path}: changed"]
        out = []
        for i, (a, b) in enumerate(zip(desired, live, strict=True)):
            out += diff(a, b, f"{path}[{i}]")
        return out
    if live is None:
        return [f"{path}: (none) → {_short(desired)}"]
    if str(desired) != str(live):  # the server answers quantities as strings ("1" for 1)
        return [f"{path}: {_short(live)} → {_short(desired)}"]
    return []


def plan(api: ReleaseApi, objects: Sequence[Mapping[str, Any]], previous: Iterable[ObjectRef] = ()) -> list[Change]:
    """create/update/unchanged for each object, delete for objects of `previous` no longer rendered."""
    changes = []
    for obj in objects:
        ref = ObjectRef.of(obj)
        live = api.get(ref)
        if live is None:
            changes.append(Change("create", ref))
            continue
        wanted = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "status")}
        fields = tuple(diff(wanted, live))
        changes.append(Change("update" if fields else "unchanged", ref, fields))
    rendered = {ObjectRef.of(o) for o in objects}
    changes += [Change("delete", ref) for ref in sorted(set(previous) - rendered)]
    return changes


def apply_all(api: ReleaseApi, objects: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [api.apply(obj) for obj in objects]


def delete_all(api: ReleaseApi, refs: Iterable[ObjectRef]) -> list[ObjectRef]:
    """Delete in reverse apply order (autoscalers first, Services last); returns what existed."""
    doomed = sorted(refs, key=lambda r: (_kind_rank(r.kind), r.name), reverse=True)
    return [ref for ref in doomed if api.delete(ref)]


def owned_objects(api: ReleaseApi, namespace: str, release: str) -> list[ObjectRef]:
    """Every object in the namespace labelled as this release's (of the kinds a release may own)."""
    found = []
    for api_version, kind in OWNED_KINDS:
        for obj in api.list_labelled(api_version, kind, namespace, f"{RELEASE_LABEL}={release}"):
            found.append(ObjectRef(api_version, kind, namespace, obj["metadata"]["name"]))
    return found


# ---- status --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorkloadState:
    ref: ObjectRef
    desired: int
    ready: int
    settled: bool  # the controller has caught up with the latest spec and `desired` copies serve
    created: datetime | None
    revision: str
    preset: str


def workload_state(obj: Mapping[str, Any]) -> WorkloadState:
    meta, spec, status = obj.get("metadata") or {}, obj.get("spec") or {}, obj.get("status") or {}
    kind = obj.get("kind")
    created_text = meta.get("creationTimestamp")
    created = datetime.fromisoformat(created_text.replace("Z", "+00:00")) if created_text else None
    caught_up = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    if kind == "Deployment":
        desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        ready = int(status.get("readyReplicas") or 0)
        settled = (caught_up and int(status.get("updatedReplicas") or 0) >= desired
                   and int(status.get("availableReplicas") or 0) >= desired
                   and int(status.get("replicas") or 0) == desired)
    elif kind == "LeaderWorkerSet":
        desired = int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1)
        ready = int(status.get("readyReplicas") or 0)
        settled = ready >= desired and int(status.get("updatedReplicas", ready) or 0) >= desired
    else:  # RayService: KubeRay reports the serve application as a whole
        groups = spec.get("rayClusterConfig", {}).get("workerGroupSpecs") or [{}]
        desired = sum(int(g.get("replicas") or 0) for g in groups) or 1
        running = status.get("serviceStatus") == "Running" or any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        ready = desired if running else 0
        settled = running
    labels = meta.get("labels") or {}
    return WorkloadState(ObjectRef.of(obj), desired, ready, settled, created, labels.get(REVISION_LABEL, "?"),
                         (meta.get("annotations") or {}).get(PRESET_ANNOTATION, ""))


@dataclass(frozen=True)
class ReleaseInfo:
    name: str
    namespace: str
    revision: str
    kind: str
    ready: int
    desired: int
    created: datetime | None
    endpoint: str
    preset: str
    autoscaler: str = ""


def endpoint(name: str, namespace: str, kind: str, port: int = 8000) -> str:
    service = f"{name}-serve-svc" if kind == "RayService" else name
    return f"http://{service}.{namespace}.svc.cluster.local:{port}"


def releases(api: ReleaseApi, namespace: str, name: str | None = None) -> list[ReleaseInfo]:
    """The bot's releases in a namespace (one workload each), with their autoscaler if any."""
    selector = f"{RELEASE_LABEL}={name}" if name else RELEASE_LABEL
    out = []
    scalers: dict[str, str] = {}
    for api_version, kind in (("autoscaling/v2", "HorizontalPodAutoscaler"), ("keda.sh/v1alpha1", "ScaledObject")):
        for obj in api.list_labelled(api_version, kind, namespace, selector):
            spec = obj.get("spec") or {}
            low = spec.get("minReplicas", spec.get("minReplicaCount", "?"))
            high = spec.get("maxReplicas", spec.get("maxReplicaCount", "?"))
            how = "HPA" if kind == "HorizontalPodAutoscaler" else "KEDA"
            scalers[obj["metadata"]["labels"][RELEASE_LABEL]] = f"{how} {low}–{high}"
    for api_version, kind in OWNED_KINDS:
        if kind not in WORKLOAD_KINDS:
            continue
        for obj in api.list_labelled(api_version, kind, namespace, selector):
            state = workload_state(obj)
            release = obj["metadata"]["labels"][RELEASE_LABEL]
            out.append(ReleaseInfo(release, namespace, state.revision, kind, state.ready, state.desired,
                                   state.created, endpoint(state.ref.name, namespace, kind), state.preset,
                                   scalers.get(release, "")))
    return sorted(out, key=lambda r: r.name)


# ---- the rollout watch ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    text: str
    terminal: bool  # waiting longer will not help: stop and say why


@dataclass
class RolloutResult:
    ok: bool
    message: str
    problems: list[Problem] = field(default_factory=list)


def pod_problem(pod: Mapping[str, Any], *, startup_seconds: float, now: datetime | None = None) -> Problem | None:
    """Why one pod does not serve, with what to do about it; None when nothing is wrong (yet)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    name = meta.get("name", "?")
    namespace = meta.get("namespace", "default")
    if not spec.get("nodeName"):
        cond = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
        if cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            message = str(cond.get("message", ""))
            hint = ""
            if "nvidia.com/gpu" in message or "aws.amazon.com/neuron" in message:
                hint = (" No node has the free accelerators this pod requests: add nodes (Karpenter/node group), "
                        "lower `replicas=`, or pick another `instance=`.")
            return Problem(f"pod `{name}` Pending: {message}{hint}", terminal=False)
        return None
    for cs in status.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason, message = waiting.get("reason") or "", waiting.get("message") or ""
        last = (cs.get("lastState") or {}).get("terminated") or {}
        if reason in ("ImagePullBackOff", "ErrImagePull", "InvalidImageName"):
            return Problem(f"pod `{name}` {reason}: image `{cs.get('image', '?')}` cannot be pulled. Check "
                           "`inference.modelServer.image.repository`/`tag` and that the nodes can reach the "
                           "registry (and have pull credentials for a private one).", terminal=True)
        if reason == "CreateContainerConfigError":
            if "hf-token" in message:
                return Problem(f"pod `{name}`: the Secret `hf-token` is missing in namespace `{namespace}` "
                               f"({message}). Create it with `/infer secret hf-token` (a private form; the "
                               "token is never shown), or `kubectl create secret generic hf-token "
                               f"--from-literal=token=<your Hugging Face token> -n {namespace}`.", terminal=True)
            if "ngc-api" in message:
                return Problem(f"pod `{name}`: the Secret `ngc-api` (NVIDIA NGC API key for NIM) is missing in "
                               f"`{namespace}`: `kubectl create secret generic ngc-api "
                               f"--from-literal=NGC_API_KEY=<your key> -n {namespace}`.", terminal=True)
            return Problem(f"pod `{name}` CreateContainerConfigError: {message}", terminal=True)
        if last.get("reason") == "OOMKilled":
            return Problem(f"pod `{name}` was OOMKilled (exit code {last.get('exitCode', 137)}, restarted "
                           f"{cs.get('restartCount', 0)}×): the model server ran out of memory. Lower "
                           "`set.modelParameters.gpuMemoryUtilization` (e.g. 0.8) or `maxModelLen`, or choose a "
                           "larger `instance=`.", terminal=True)
        if reason == "CrashLoopBackOff" and int(cs.get("restartCount") or 0) >= 2:
            return Problem(f"pod `{name}` CrashLoopBackOff: the container exits (code {last.get('exitCode', '?')}, "
                           f"restarted {cs.get('restartCount')}×). Its log says why: "
                           f"`kubectl logs {name} -n {namespace} --previous`.", terminal=True)
        if "running" in (cs.get("state") or {}) and not cs.get("ready"):
            started = (cs["state"]["running"] or {}).get("startedAt")
            if started:
                since = datetime.fromisoformat(started.replace("Z", "+00:00"))
                waited = ((now or datetime.now(UTC)) - since).total_seconds()
                if waited > startup_seconds:
                    return Problem(f"pod `{name}` has run {int(waited)} s without becoming ready, past the "
                                   f"model's startup allowance of {int(startup_seconds)} s: the startup probe "
                                   "keeps failing (weights still downloading, or the server stuck).", terminal=True)
    return None


def _pod_phase_counts(pods: Mapping[str, Mapping[str, Any]]) -> tuple[int, int, int, int]:
    total = scheduled = pulled = ready = 0
    for pod in pods.values():
        if (pod.get("metadata") or {}).get("deletionTimestamp"):
            continue
        total += 1
        status = pod.get("status") or {}
        if (pod.get("spec") or {}).get("nodeName"):
            scheduled += 1
        statuses = status.get("containerStatuses") or []
        if statuses and all("running" in (s.get("state") or {}) or s.get("restartCount") for s in statuses):
            pulled += 1
        if any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or []):
            ready += 1
    return total, scheduled, pulled, ready


def pod_selector(workload: Mapping[str, Any]) -> str:
    """The label selector of a workload's pods (for progress and diagnosis), from the workload itself,
    so that a chart with other pod labels (the upstream one) is watched right too."""
    meta, spec = workload.get("metadata") or {}, workload.get("spec") or {}
    name = meta.get("name", "")
    if workload.get("kind") == "Deployment":
        labels = (spec.get("selector") or {}).get("matchLabels") or {}
        if labels:
            return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    if workload.get("kind") == "LeaderWorkerSet":
        return f"leaderworkerset.sigs.k8s.io/name={name}"
    head = ((spec.get("rayClusterConfig") or {}).get("headGroupSpec") or {}).get("template") or {}
    head_name = ((head.get("metadata") or {}).get("labels") or {}).get("app.kubernetes.io/name")
    return f"app.kubernetes.io/name={head_name or name}"


def wait_ready(api: ReleaseApi, workload: ObjectRef, *, pod_selector: str, timeout: float, progress: Progress,
               startup_seconds: float, window: float = 10.0) -> RolloutResult:
    """Watch the workload's pods (watch API, resumed from the last resourceVersion) until the workload
    serves, a pod fails in a way waiting cannot fix, or `timeout` runs out. `progress` gets one line
    whenever the picture changes (the caller edits one message with it)."""
    core = k8s.CoreV1Api(api.api)
    deadline = time.monotonic() + timeout
    pods: dict[str, dict[str, Any]] = {}
    shown = ""
    resource_version = ""
    relisted = True
    while True:
        obj = api.get(workload)
        if obj is None:
            return RolloutResult(False, f"`{workload.key}` was deleted during the rollout.")
        state = workload_state(obj)
        if relisted:  # start (and restart after a 410) from a list: the watch then resumes from it
            listing = api.request("list pods", "GET", f"/api/v1/namespaces/{workload.namespace}/pods",
                                  query=[("labelSelector", pod_selector)]) or {}
            pods = {p["metadata"]["name"]: p for p in listing.get("items", [])}
            resource_version = str((listing.get("metadata") or {}).get("resourceVersion") or "")
            relisted = False
        total, scheduled, pulled, ready = _pod_phase_counts(pods)
        line = (f"`{workload.key}`: {state.ready}/{state.desired} ready · pods {scheduled}/{total} scheduled, "
                f"{pulled}/{total} started")
        problems = [p for p in (pod_problem(pod, startup_seconds=startup_seconds) for pod in pods.values()) if p]
        if problems:
            line += f" · {problems[0].text}"
        if line != shown:
            shown = line
            progress(line)
        if state.settled:
            return RolloutResult(True, f"`{workload.key}` is ready: {state.ready}/{state.desired} serving.")
        terminal = [p for p in problems if p.terminal]
        if terminal:
            return RolloutResult(False, terminal[0].text, problems)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            why = problems[0].text if problems else "no pod reported a reason"
            return RolloutResult(False, f"{state.ready}/{state.desired} ready after {int(timeout)} s: {why}", problems)
        began = time.monotonic()
        # All pods ready but the workload's status not caught up yet: its controller writes it in a
        # moment, and no pod event will come to wake us, so look again soon.
        span = 1.0 if total and ready >= state.desired else window
        w = k8s_watch.Watch()
        try:
            for event in w.stream(core.list_namespaced_pod, workload.namespace, label_selector=pod_selector,
                                  resource_version=resource_version, allow_watch_bookmarks=True,
                                  timeout_seconds=max(1, int(min(remaining, span))), deserialize=False,
                                  _request_timeout=(5, min(remaining, span) + 5)):
                kind, pod = event.get("type"), event.get("object") or {}
                resource_version = str((pod.get("metadata") or {}).get("resourceVersion") or resource_version)
                if kind == "DELETED":
                    pods.pop(pod["metadata"]["name"], None)
                elif kind in ("ADDED", "MODIFIED"):
                    pods[pod["metadata"]["name"]] = pod
                elif kind == "ERROR":
                    relisted = True
                if kind != "BOOKMARK":
                    break  # re-evaluate after each change; the next watch resumes from here
        except ApiException as exc:
            if exc.status != 410 and not (exc.status and exc.status >= 500):
                raise _api_error(api.kube.name, exc, "watch pods") from None
            relisted = True
        except (HTTPError, OSError):
            relisted = True
        finally:
            w.stop()
        if relisted and time.monotonic() - began < 1:
            time.sleep(1)  # a watch that fails at once must not spin


def put_secret(api: ReleaseApi, namespace: str, name: str, key: str, value: str) -> bool:
    """Create or replace a Secret holding one key; True when it existed before. The value goes only
    into the request body: never into a message, a log line or an error."""
    import base64

    existed = api.get(ObjectRef("v1", "Secret", namespace, name)) is not None
    api.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": MANAGER}},
               "data": {key: base64.b64encode(value.encode()).decode()}})
    return existed
