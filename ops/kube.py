"""Kubernetes through the official client: read Deployments, scale them, watch rollouts, diagnose.

Raw JSON (`_preload_content=False` / `deserialize=False`) is used where we read objects, so that
what we reason about is exactly what the API server sent, independent of client model versions.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from ops.errors import OpsError

MERGE_PATCH = "application/merge-patch+json"
REQUEST_TIMEOUT = (5, 30)  # connect, read seconds: a dead API server must not hang a Slack reply
RETRIES = 2
BACKOFF = 0.2  # seconds, doubled per retry


@dataclass(frozen=True)
class DeploymentInfo:
    name: str
    namespace: str
    replicas: int
    ready: int
    available: int
    updated: int
    created: datetime | None
    images: tuple[str, ...]
    selector: dict[str, str] = field(default_factory=dict)
    generation: int = 0
    observed_generation: int = 0
    resource_version: str = ""
    status_replicas: int = 0

    @staticmethod
    def from_raw(obj: dict[str, Any]) -> DeploymentInfo:
        meta, spec, status = obj.get("metadata", {}), obj.get("spec", {}), obj.get("status", {}) or {}
        containers = spec.get("template", {}).get("spec", {}).get("containers", []) or []
        created = meta.get("creationTimestamp")
        return DeploymentInfo(
            name=meta.get("name", ""),
            namespace=meta.get("namespace", ""),
            replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
            ready=int(status.get("readyReplicas") or 0),
            available=int(status.get("availableReplicas") or 0),
            updated=int(status.get("updatedReplicas") or 0),
            created=datetime.fromisoformat(created.replace("Z", "+00:00")) if created else None,
            images=tuple(c.get("image", "") for c in containers),
            selector=dict((spec.get("selector") or {}).get("matchLabels") or {}),
            generation=int(meta.get("generation") or 0),
            observed_generation=int(status.get("observedGeneration") or 0),
            resource_version=str(meta.get("resourceVersion") or ""),
            status_replicas=int(status.get("replicas") or 0),
        )

    def settled_at(self, replicas: int) -> bool:
        """True when the controller has caught up and exactly `replicas` pods are available."""
        return (self.observed_generation >= self.generation and self.replicas == replicas
                and self.updated >= replicas and self.available >= replicas
                and self.status_replicas == replicas)


@dataclass(frozen=True)
class ScaleResult:
    ok: bool
    message: str
    deployment: DeploymentInfo | None = None


Progress = Callable[[str], None]


def retryable(status: int | None) -> bool:
    """A 5xx, or a 409 conflict: the object changed between the server's read and its write. Every write
    the bot makes carries absolute values and no resourceVersion (a merge patch of replicas, a forced
    server-side apply), so sending it again makes the server read the object afresh and apply it once."""
    return status is not None and (status >= 500 or status == 409)


def _api_error(cluster: str, exc: ApiException, what: str) -> OpsError:
    try:
        message = json.loads(exc.body or "{}").get("message") or exc.reason
    except (ValueError, AttributeError):
        message = exc.reason
    return OpsError(f"Kubernetes API of cluster `{cluster}` refused to {what}: {exc.status} {message}",
                    status=exc.status)


class KubeCluster:
    """One cluster's API, made from a kubeconfig file (and context) or a ready ApiClient."""

    def __init__(self, name: str, *, kubeconfig: str | None = None, context: str | None = None,
                 api_client: k8s.ApiClient | None = None) -> None:
        self.name = name
        self._kubeconfig = kubeconfig
        self._context = context
        self._api_client = api_client

    @property
    def api_client(self) -> k8s.ApiClient:
        if self._api_client is None:
            try:
                if self._kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
                    # The bot runs in the cluster it manages: its ServiceAccount (the chart's RBAC).
                    configuration = k8s.Configuration()
                    k8s_config.load_incluster_config(client_configuration=configuration)
                    self._api_client = k8s.ApiClient(configuration)
                else:
                    self._api_client = k8s_config.new_client_from_config(
                        config_file=self._kubeconfig, context=self._context)
            except (k8s_config.ConfigException, OSError) as exc:
                raise OpsError(f"cannot load the kubeconfig of cluster `{self.name}`: {exc}") from None
        return self._api_client

    @property
    def apps(self) -> k8s.AppsV1Api:
        return k8s.AppsV1Api(self.api_client)

    @property
    def core(self) -> k8s.CoreV1Api:
        return k8s.CoreV1Api(self.api_client)

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call the API; 5xx answers, 409 conflicts and connection errors are retried with backoff.

        Safe because every call made here is idempotent: reads, and a merge patch that sets an
        absolute value (replicas = N), which applied twice is the same as applied once.
        """
        for attempt in range(RETRIES + 1):
            try:
                return fn(*args, _request_timeout=REQUEST_TIMEOUT, **kwargs)
            except ApiException as exc:
                if not (retryable(exc.status) and attempt < RETRIES):
                    raise _api_error(self.name, exc, what) from None
            except (HTTPError, OSError) as exc:
                if attempt == RETRIES:
                    raise OpsError(f"cannot reach the Kubernetes API of cluster `{self.name}` "
                                   f"({type(exc).__name__}); check the cluster and the bot's network") from None
            time.sleep(BACKOFF * 2**attempt)
        raise AssertionError("unreachable")

    def _raw(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        resp = self._call(what, fn, *args, _preload_content=False, **kwargs)
        try:
            return json.loads(resp.data)
        finally:
            resp.release_conn()

    # ---- reads ---------------------------------------------------------------------------------

    def get_deployment(self, name: str, namespace: str) -> DeploymentInfo:
        try:
            raw = self._raw(f"read deployment {namespace}/{name}",
                            self.apps.read_namespaced_deployment_with_http_info, name, namespace)
        except OpsError as exc:
            if exc.status == 404:
                raise OpsError(f"no Deployment `{name}` in namespace `{namespace}` of cluster "
                               f"`{self.name}`. `/infer status cluster={self.name}` lists what runs there.") from None
            raise
        return DeploymentInfo.from_raw(raw)

    def list_deployments(self, namespace: str) -> list[DeploymentInfo]:
        raw = self._raw(f"list deployments in {namespace}",
                        self.apps.list_namespaced_deployment_with_http_info, namespace)
        return sorted((DeploymentInfo.from_raw(o) for o in raw.get("items", [])), key=lambda d: d.name)

    def ping(self) -> str:
        """The server's version; raises OpsError when unreachable."""
        info = self._call("report its version", k8s.VersionApi(self.api_client).get_code)
        return str(info.git_version)

    # ---- scale ---------------------------------------------------------------------------------

    def scale(self, name: str, namespace: str, replicas: int, *, timeout: float,
              progress: Progress) -> ScaleResult:
        """Patch the scale subresource, then watch the Deployment until it settles or time runs out."""
        self._call(f"scale deployment {namespace}/{name}",
                   self.apps.patch_namespaced_deployment_scale, name, namespace,
                   {"spec": {"replicas": replicas}}, _content_type=MERGE_PATCH)
        progress(f"Patched `deployment/{name}` scale to {replicas}; waiting for the pods.")
        return self.wait_settled(name, namespace, replicas, timeout=timeout, progress=progress)

    def wait_settled(self, name: str, namespace: str, replicas: int, *, timeout: float,
                     progress: Progress) -> ScaleResult:
        deadline = time.monotonic() + timeout
        current = self.get_deployment(name, namespace)
        last_seen = (current.ready, current.available)
        last_diagnosis = ""
        while not current.settled_at(replicas):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                why = self.diagnose(current) or "no pod reported a reason"
                return ScaleResult(False, f"{current.available} of {replicas} replicas available after "
                                          f"{int(timeout)} s: {why}", current)
            # Short watch windows: between them we look at pods and events once, to say *why*
            # the rollout is stuck while it is stuck, not only when it has failed.
            window_began = time.monotonic()
            for obj in self._watch_deployment(name, namespace, current.resource_version,
                                              window=min(remaining, 10.0)):
                current = DeploymentInfo.from_raw(obj)
                seen = (current.ready, current.available)
                if seen != last_seen:
                    last_seen = seen
                    progress(f"{current.ready}/{replicas} ready, {current.available} available")
                if current.settled_at(replicas):
                    break
            else:
                if time.monotonic() - window_began < 1:  # the watch failed at once: do not spin on it
                    time.sleep(1)
                current = self.get_deployment(name, namespace)
                diagnosis = self.diagnose(current)
                if diagnosis and diagnosis != last_diagnosis:
                    last_diagnosis = diagnosis
                    progress(f"Still waiting: {diagnosis}")
        return ScaleResult(True, f"`deployment/{name}` has {replicas}/{replicas} replicas available.", current)

    def _watch_deployment(self, name: str, namespace: str, resource_version: str,
                          window: float) -> Iterator[dict[str, Any]]:
        w = k8s_watch.Watch()
        try:
            for event in w.stream(self.apps.list_namespaced_deployment, namespace,
                                  field_selector=f"metadata.name={name}", resource_version=resource_version,
                                  timeout_seconds=max(1, int(window)), deserialize=False,
                                  _request_timeout=(5, window + 5)):
                if event.get("type") in ("ADDED", "MODIFIED"):
                    yield event["object"]
                elif event.get("type") == "DELETED":
                    raise OpsError(f"`deployment/{name}` was deleted while waiting for it.")
        except ApiException as exc:
            # 410: our resourceVersion is too old; 5xx: the server hiccupped. Either way the caller
            # re-reads the object and watches again from its current resourceVersion.
            if exc.status != 410 and not (exc.status and exc.status >= 500):
                raise _api_error(self.name, exc, f"watch deployment {namespace}/{name}") from None
        except (HTTPError, OSError):
            pass  # a dropped stream: the caller re-reads the object and watches again
        finally:
            w.stop()

    def diagnose(self, deployment: DeploymentInfo) -> str:
        """Why pods of a Deployment are not ready, in Kubernetes' own words (events, waiting reasons)."""
        if not deployment.selector:
            return ""
        selector = ",".join(f"{k}={v}" for k, v in sorted(deployment.selector.items()))
        pods = self._raw("list pods", self.core.list_namespaced_pod_with_http_info, deployment.namespace,
                         label_selector=selector).get("items", [])
        reasons: list[str] = []
        for pod in pods:
            reason = self._pod_problem(pod)
            if reason and reason not in reasons:
                reasons.append(reason)
        return "; ".join(reasons[:3])

    def _pod_problem(self, pod: dict[str, Any]) -> str:
        meta, status = pod.get("metadata", {}), pod.get("status", {}) or {}
        name = meta.get("name", "?")
        if status.get("phase") == "Pending" and not pod.get("spec", {}).get("nodeName"):
            events = self._raw("list events", self.core.list_namespaced_event_with_http_info,
                               meta.get("namespace", "default"),
                               field_selector=f"involvedObject.name={name}").get("items", [])
            scheduling = [e for e in events if e.get("reason") == "FailedScheduling"]
            if scheduling:
                return f"pod `{name}` Pending: {scheduling[-1].get('message', '').strip()}"
            return f"pod `{name}` Pending"
        for cs in status.get("containerStatuses", []) or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") and waiting["reason"] not in ("ContainerCreating", "PodInitializing"):
                return f"pod `{name}` {waiting['reason']}: {waiting.get('message', '')}".rstrip(": ")
        return ""


def age(created: datetime | None, now: datetime | None = None) -> str:
    if created is None:
        return "?"
    seconds = int(((now or datetime.now(UTC)) - created).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"
