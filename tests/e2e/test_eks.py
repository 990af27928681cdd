"""EKS registration against moto's server (boto3 pointed at it with AWS_ENDPOINT_URL): describe_cluster
for endpoint and CA, and bearer tokens made the way `aws eks get-token` makes them."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import shutil
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from moto.server import ThreadedMotoServer

from bot.runs import infra
from ops import aws
from ops.errors import OpsError
from ops.kube import KubeCluster
from ops.terraform import Output
from tests.support.binaries import needs_terraform
from tests.support.botproc import BotProcess, Database
from tests.support.slack import ADMIN, APPROVER, OPERATOR, op_id_of, text_of
from tests.support.terraform import MODULE, apply_card

REGION = "us-west-2"
KEY_ID, SECRET_KEY = "AKIDTESTING", "test-secret-key"


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(moto_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """boto3 (here and in bot processes started by the test) talks to moto, with known credentials."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return moto_url


def create_eks(name: str) -> dict:
    eks = boto3.client("eks", region_name=REGION)
    eks.create_cluster(name=name, roleArn="arn:aws:iam::123456789012:role/eks", resourcesVpcConfig={"subnetIds": []})
    return eks.describe_cluster(name=name)["cluster"]


def test_describe_cluster_gives_endpoint_and_ca(aws_env: str):
    created = create_eks("inference-a")
    found = aws.describe_cluster("inference-a", REGION)
    assert found.endpoint == created["endpoint"] and found.endpoint.startswith("https://")
    assert found.ca_data == created["certificateAuthority"]["data"] and base64.b64decode(found.ca_data)
    assert found.status == "ACTIVE"
    with pytest.raises(OpsError, match="ResourceNotFoundException"):
        aws.describe_cluster("no-such-cluster", REGION)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def verify_presigned(url: str, headers: dict[str, str], secret: str) -> bool:
    """SigV4 query-string verification, written out (what STS does when the authenticator replays the URL)."""
    parts = urlsplit(url)
    pairs = [p.partition("=") for p in parts.query.split("&")]
    given = next(v for k, _, v in pairs if k == "X-Amz-Signature")
    query = "&".join(f"{k}={v}" for k, _, v in sorted(pairs) if k != "X-Amz-Signature")
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    signed = params["X-Amz-SignedHeaders"].split(";")
    all_headers = {"host": parts.netloc, **{k.lower(): v for k, v in headers.items()}}
    canonical_headers = "".join(f"{h}:{all_headers[h].strip()}\n" for h in signed)
    canonical = "\n".join(["GET", parts.path or "/", query, canonical_headers, ";".join(signed),
                           hashlib.sha256(b"").hexdigest()])
    _, date, region, service, _ = params["X-Amz-Credential"].split("/")
    to_sign = "\n".join(["AWS4-HMAC-SHA256", params["X-Amz-Date"], f"{date}/{region}/{service}/aws4_request",
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = _hmac(_hmac(_hmac(_hmac(f"AWS4{secret}".encode(), date), region), service), "aws4_request")
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), given)


def test_the_token_is_a_presigned_get_caller_identity_covering_the_cluster_header(aws_env: str):
    now = datetime.now(UTC)
    token = aws.get_token("inference-a", REGION, now=now)
    assert token.value.startswith("k8s-aws-v1.") and "=" not in token.value
    assert token.expires_at == now + timedelta(minutes=14)
    encoded = token.value.removeprefix("k8s-aws-v1.")
    url = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode()
    assert url.startswith(aws_env + "/?")  # AWS_ENDPOINT_URL is honoured
    params = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert params["Action"] == "GetCallerIdentity" and params["Version"] == "2011-06-15"
    assert params["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256" and params["X-Amz-Expires"] == "60"
    assert params["X-Amz-SignedHeaders"] == "host;x-k8s-aws-id"
    assert params["X-Amz-Credential"].startswith(f"{KEY_ID}/") and params["X-Amz-Credential"].endswith(
        f"/{REGION}/sts/aws4_request")
    # Valid for this cluster only: replayed with another cluster's name, the signature no longer holds.
    assert verify_presigned(url, {"x-k8s-aws-id": "inference-a"}, SECRET_KEY)
    assert not verify_presigned(url, {"x-k8s-aws-id": "inference-b"}, SECRET_KEY)
    assert not verify_presigned(url, {"x-k8s-aws-id": "inference-a"}, "another-secret")


class _Api(http.server.BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.headers.get("Authorization", ""))
        body = json.dumps({"major": "1", "minor": "31", "gitVersion": "v1.31.2-eks", "gitCommit": "0",
                           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                           "compiler": "gc", "platform": "linux/amd64"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[tuple[str, list[str]]]:
    _Api.seen = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Api.seen
    server.shutdown()


def test_the_kubernetes_client_sends_a_fresh_token_and_renews_it_before_expiry(aws_env: str, api_server):
    url, seen = api_server
    client = aws.api_client(aws.EksCluster("inference-a", REGION, url, "", "ACTIVE", "1.31"))
    kube = KubeCluster("inference-a", api_client=client)
    assert kube.ping() == "v1.31.2-eks"
    assert seen[-1].startswith("Bearer k8s-aws-v1.")
    source = client.configuration.refresh_api_key_hook
    first = source._token
    kube.ping()
    assert source._token is first  # still fresh: reused
    source._token = aws.EksToken(first.value, datetime.now(UTC) + timedelta(seconds=30))  # about to expire
    kube.ping()
    assert source._token is not first and seen[-1] == f"Bearer {source._token.value}"


def test_registration_reads_the_usual_output_shapes_of_eks_modules(aws_env: str):
    eks = create_eks("inference-c")
    printed = Output("configure_kubectl", False, f"aws eks --region {REGION} update-kubeconfig --name inference-c")
    reach = infra._reach("c", {"configure_kubectl": printed})
    assert (reach["reach"], reach["eks_name"], reach["region"], reach["endpoint"]) == (
        "eks", "inference-c", REGION, eks["endpoint"])
    named = {"eks_cluster_name": Output("eks_cluster_name", False, "inference-c"),
             "eks_cluster_region": Output("eks_cluster_region", False, REGION)}
    assert infra._reach("c", named)["endpoint"] == eks["endpoint"]
    hidden = {"kubeconfig_path": Output("kubeconfig_path", True, None)}  # sensitive: never used
    assert infra._reach("c", hidden)["reach"] == "none"


@needs_terraform
def test_a_provisioned_eks_cluster_is_registered_through_describe_cluster(
        aws_env: str, make_bot: Callable[..., BotProcess], slack, tmp_path: Path):
    eks = create_eks("beta")
    module = tmp_path / "module"
    shutil.copytree(MODULE, module)
    bot = make_bot(terraform={"root": str(module), "workdir": str(tmp_path / "ws"), "name_var": "cluster_name"})
    db = Database(bot.database_url)

    bot.slash(f"provision beta var.region={REGION}", user=ADMIN)
    card = apply_card(slack)
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
    done = slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"] and "Succeeded" in text_of(c),
                          timeout=30)
    assert f"EKS cluster `beta` in {REGION}" in text_of(done) and "cluster=beta" in text_of(done)
    row = db.rows("SELECT * FROM infra_clusters WHERE name = 'beta'")[0]
    assert (row["reach"], row["eks_name"], row["region"]) == ("eks", "beta", REGION)
    assert row["endpoint"] == eks["endpoint"] and row["note"] == ""

    # No such EKS cluster (yet): registered all the same, with the reason it cannot be reached.
    bot.slash(f"provision gamma var.region={REGION}", user=ADMIN)
    card = apply_card(slack, n=2)
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
    done = slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"] and "Succeeded" in text_of(c),
                          timeout=30)
    assert "Not reachable yet" in text_of(done) and "ResourceNotFoundException" in text_of(done)
    bot.slash("status cluster=gamma", user=OPERATOR)
    refused = slack.wait_for(lambda c: c.method == "response_url", timeout=15)
    assert "ResourceNotFoundException" in text_of(refused)
    # The AWS secret key the bot process signs with reaches neither Slack nor the bot's log.
    seen = json.dumps([{"params": c.params, "response": c.response} for c in slack.calls], default=str)
    assert SECRET_KEY not in seen and SECRET_KEY not in bot.log()
