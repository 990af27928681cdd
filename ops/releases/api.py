"""The Kubernetes API for releases, kind-agnostic: objects as raw JSON through one cluster's
authenticated ApiClient, so that any kind the chart renders (built-in or custom) goes the same way;
discovery of its group/version tells the resource's plural and, for custom resources, whether the
operator behind them is installed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from ops.errors import OpsError
from ops.kube import REQUEST_TIMEOUT, KubeCluster, _api_error, retryable
from ops.releases.manifests import MANAGER, ObjectRef

APPLY_PATCH = "application/apply-patch+yaml"

# The operator behind each custom API group the chart (or autoscale) may render, named in refusals.
OPERATORS = {
    "leaderworkerset.x-k8s.io": "the LeaderWorkerSet controller (kubernetes-sigs/lws)",
    "ray.io": "the KubeRay operator (ray-project/kuberay)",
    "keda.sh": "KEDA (kedacore/keda)",
    "monitoring.coreos.com": "the Prometheus operator",
}


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

    def apply(self, obj: Mapping[str, Any], *, manager: str = MANAGER) -> dict[str, Any]:
        ref = ObjectRef.of(obj)
        # force: the bot owns these fields; a hand edit in between is overwritten, as a re-deploy should.
        got = self.request(f"apply {ref.key}", "PATCH", self.path(ref), body=dict(obj), content_type=APPLY_PATCH,
                           query=[("fieldManager", manager), ("force", "true")])
        return got or {}

    def delete(self, ref: ObjectRef, policy: str = "Foreground",
               preconditions: Mapping[str, str] | None = None) -> str | None:
        """Start deleting: the uid of what was there ("" if the server did not say), None when it was
        already gone. The object may still be readable afterwards (ops/releases/removal.py waits).
        With `preconditions` a 409 (the object changed) is raised, not retried: the caller decides again."""
        try:
            path = self.path(ref)
        except MissingApi:
            return None  # the API is gone, so is the object
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": policy}
        if preconditions:
            body["preconditions"] = dict(preconditions)
        answer = self.request(f"delete {ref.key}", "DELETE", path, body=body, content_type="application/json",
                              retry=not preconditions)
        if answer is None:
            return None
        # The object itself while something holds it; a Status with details.uid once it is gone.
        return str((answer.get("metadata") or {}).get("uid") or (answer.get("details") or {}).get("uid") or "")

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


def put_secret(api: ReleaseApi, namespace: str, name: str, key: str, value: str) -> bool:
    """Create or replace a Secret holding one key; True when it existed before. The value goes only
    into the request body: never into a message, a log line or an error."""
    import base64

    existed = api.get(ObjectRef("v1", "Secret", namespace, name)) is not None
    api.apply({"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
               "metadata": {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": MANAGER}},
               "data": {key: base64.b64encode(value.encode()).decode()}})
    return existed
