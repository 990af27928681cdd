"""Where releases stand: the bot's releases in a namespace with their workloads' readiness, and the
rollout watch that follows a workload's pods until it serves or fails in a way waiting cannot fix.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from ops import karpenter
from ops.errors import OpsError
from ops.kube import _api_error
from ops.releases.api import ReleaseApi
from ops.releases.manifests import (
    OWNED_KINDS,
    PRESET_ANNOTATION,
    RELEASE_LABEL,
    REVISION_LABEL,
    WORKLOAD_KINDS,
    ObjectRef,
)

Progress = Callable[[str], None]


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
        cond: Mapping[str, Any] = next(
            (c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"), {})
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


# Seconds between reads of Karpenter's NodeClaims while pods are Pending: soon at first, then twice
# as long each time, up to KARPENTER_MOST (a launch takes minutes: polling at a fixed pace would spend
# a rollout's request budget while little changes); soon again once pods are Pending anew.
KARPENTER_FIRST, KARPENTER_MOST = 2.0, 16.0


def _has_karpenter(api: ReleaseApi) -> bool:
    try:
        return karpenter.list_nodepools(api) is not None
    except OpsError:
        return False  # a read the bot may not make: the rollout goes on without Karpenter's view


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
    # Karpenter's NodeClaims change without a pod event: with pods Pending on a cluster that has
    # NodePools, read what it does every few seconds and say it before the scheduler's words.
    has_karpenter: bool | None = None
    explained: list[str] = []
    explained_at = 0.0
    karpenter_every = KARPENTER_FIRST
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
        pending = [p for p in pods.values() if karpenter.is_unschedulable(p)]
        if pending and has_karpenter is None:
            has_karpenter = _has_karpenter(api)
        if not pending:
            explained, karpenter_every = [], KARPENTER_FIRST
        elif has_karpenter and time.monotonic() - explained_at >= karpenter_every:
            explained, explained_at = karpenter.explain(api, workload.namespace, pending), time.monotonic()
            karpenter_every = min(karpenter_every * 2, KARPENTER_MOST)
        if explained:
            problems.insert(0, Problem(" ".join(explained), terminal=False))
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
        if pending and has_karpenter:
            span = min(span, max(1.0, explained_at + karpenter_every - time.monotonic()))
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
