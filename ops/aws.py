"""Amazon EKS: where a cluster's API is (describe_cluster) and a bearer token to talk to it.

The token is made exactly the way `aws eks get-token` makes it (awscli's
`customizations/eks/get_token.py`): a presigned STS GetCallerIdentity URL, valid 60 s, whose
signature covers an `x-k8s-aws-id: <cluster name>` header; base64url without padding, prefixed
`k8s-aws-v1.`. The EKS authenticator replays the URL with that header to learn who is calling. No
kubeconfig file and no `aws` binary are needed. boto3 finds credentials and endpoints as usual
(`AWS_PROFILE`, `AWS_REGION`, `AWS_ENDPOINT_URL`, instance roles, …).
"""

from __future__ import annotations

import base64
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError
from kubernetes import client as k8s

from ops.errors import OpsError

K8S_AWS_ID_HEADER = "x-k8s-aws-id"
TOKEN_PREFIX = "k8s-aws-v1."
URL_EXPIRES_SECONDS = 60
# awscli reports 14 minutes: the authenticator accepts a URL up to 15 minutes after it was signed.
TOKEN_LIFETIME = timedelta(minutes=14)
REFRESH_BEFORE = timedelta(minutes=1)
_BOTO = BotoConfig(connect_timeout=5, read_timeout=30, retries={"max_attempts": 3, "mode": "standard"})


@dataclass(frozen=True)
class EksCluster:
    name: str
    region: str
    endpoint: str
    ca_data: str  # base64 PEM, as EKS returns it
    status: str
    version: str


@dataclass(frozen=True)
class EksToken:
    value: str
    expires_at: datetime


def _session(region: str) -> boto3.session.Session:
    return boto3.session.Session(region_name=region)


def describe_cluster(name: str, region: str) -> EksCluster:
    try:
        raw = _session(region).client("eks", config=_BOTO).describe_cluster(name=name)["cluster"]
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise OpsError(f"EKS cluster `{name}` in {region}: {error.get('Code', 'error')}: "
                       f"{error.get('Message', '')}".rstrip(": ")) from None
    except BotoCoreError as exc:
        raise OpsError(f"cannot reach EKS in {region} for cluster `{name}`: {exc}") from None
    return EksCluster(name=name, region=region, endpoint=str(raw.get("endpoint") or ""),
                      ca_data=str((raw.get("certificateAuthority") or {}).get("data") or ""),
                      status=str(raw.get("status") or ""), version=str(raw.get("version") or ""))


def get_token(cluster_name: str, region: str, *, now: datetime | None = None) -> EksToken:
    """A bearer token for the cluster's Kubernetes API, as `aws eks get-token` prints it."""
    sts = _session(region).client("sts", config=_BOTO)

    # The header is not a parameter of GetCallerIdentity: take it out of the params before they are
    # validated and put it on the request before it is signed, so the signature covers it.
    def take_header(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        if K8S_AWS_ID_HEADER in params:
            context[K8S_AWS_ID_HEADER] = params.pop(K8S_AWS_ID_HEADER)

    def add_header(request: Any, **_: Any) -> None:
        if K8S_AWS_ID_HEADER in request.context:
            request.headers[K8S_AWS_ID_HEADER] = request.context[K8S_AWS_ID_HEADER]

    sts.meta.events.register("provide-client-params.sts.GetCallerIdentity", take_header)
    sts.meta.events.register("before-sign.sts.GetCallerIdentity", add_header)
    try:
        url = sts.generate_presigned_url("get_caller_identity", Params={K8S_AWS_ID_HEADER: cluster_name},
                                         ExpiresIn=URL_EXPIRES_SECONDS, HttpMethod="GET")
    except BotoCoreError as exc:  # no credentials, most often
        raise OpsError(f"cannot make an EKS token for `{cluster_name}`: {exc}") from None
    encoded = base64.urlsafe_b64encode(url.encode("utf-8")).decode("utf-8").rstrip("=")
    return EksToken(TOKEN_PREFIX + encoded, (now or datetime.now(UTC)) + TOKEN_LIFETIME)


class _TokenSource:
    """Keeps a Kubernetes client's bearer token fresh (the client calls this before each request)."""

    def __init__(self, cluster_name: str, region: str) -> None:
        self.cluster_name = cluster_name
        self.region = region
        self._token: EksToken | None = None
        self._lock = threading.Lock()

    def __call__(self, configuration: k8s.Configuration) -> None:
        with self._lock:
            if self._token is None or self._token.expires_at - REFRESH_BEFORE <= datetime.now(UTC):
                self._token = get_token(self.cluster_name, self.region)
            configuration.api_key["authorization"] = self._token.value


def api_client(cluster: EksCluster) -> k8s.ApiClient:
    """A Kubernetes client for an EKS cluster: its endpoint, its CA, fresh tokens."""
    configuration = k8s.Configuration()
    configuration.host = cluster.endpoint
    if cluster.ca_data:
        ca_file = Path(tempfile.mkdtemp(prefix="infer-bot-eks-")) / "ca.crt"
        try:
            ca_file.write_bytes(base64.b64decode(cluster.ca_data))
        except ValueError:
            raise OpsError(f"EKS returned a certificate authority for `{cluster.name}` that is not base64") from None
        configuration.ssl_ca_cert = str(ca_file)
    configuration.api_key_prefix["authorization"] = "Bearer"
    # The client asks for a fresh key only when one is set: the first token comes on first use.
    configuration.api_key["authorization"] = ""
    configuration.refresh_api_key_hook = _TokenSource(cluster.name, cluster.region)  # type: ignore[assignment]  # the client stubs type the hook as None
    return k8s.ApiClient(configuration)
