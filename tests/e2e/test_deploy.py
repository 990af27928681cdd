"""Model deployment end to end: signed Slack HTTP → `infer-bot serve` → real `helm template` of the
project's inference chart → server-side apply against the Kubernetes API emulator, whose controller
makes pods ready (or fail the way real ones do) → progress and result in the card's thread."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bot.sandbox.environment import node
from ops.helm import BUNDLED_CHART
from tests.support.binaries import needs_helm
from tests.support.slack import ADMIN, APPROVER, CHANNEL, OPERATOR, card_for, op_id_of, text_of
from tests.support.waiting import wait_until

pytestmark = needs_helm

QWEN_IMAGE = "public.ecr.aws/deep-learning-containers/vllm:0.10.2-gpu-py312-ec2"


@pytest.fixture
def hf_token(kube):
    kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "default"},
              "type": "Opaque", "data": {"token": base64.b64encode(b"hf_test_value").decode()}})


@pytest.fixture
def deploy_bot(make_bot, hf_token):
    return make_bot(chart={"path": str(BUNDLED_CHART)})


def replies(slack) -> list[str]:
    return [text_of(c) for c in slack.calls if c.method == "response_url"]


def thread(slack, card) -> list[str]:
    return [text_of(c) for c in slack.calls if c.method in ("chat.postMessage", "chat.update")
            and (c.params.get("thread_ts") == card.response["ts"]
                 or (c.method == "chat.update" and c.params.get("ts") != card.response["ts"]
                     and _in_thread(slack, card, c.params.get("ts"))))]


def _in_thread(slack, card, ts) -> bool:
    return any(c.method == "chat.postMessage" and c.response and c.response.get("ts") == ts
               and c.params.get("thread_ts") == card.response["ts"] for c in slack.calls)


def approve_and_wait(bot, slack, card, word: str = "Succeeded", timeout: float = 40) -> str:
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
    done = slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"]
                          and ("Succeeded" in text_of(c) or "Failed" in text_of(c)), timeout=timeout)
    assert word in text_of(done), text_of(done)
    return text_of(done)


def deployment(kube, name):
    return kube.get("apps/v1", "Deployment", "default", name)


def test_deploy_shows_fit_and_cost_then_applies_and_reports_ready(deploy_bot, slack, kube, db):
    deploy_bot.slash("deploy qwen3-1.7b-vllm name=qwen3", user=OPERATOR)
    card = card_for(slack)
    shown = text_of(card)
    assert "Fits on `g6.xlarge`" in shown and "GiB needed" in shown  # the fit estimate
    assert "$" in shown and "/h" in shown  # the hourly cost
    assert "create `Deployment/qwen3`" in shown and "create `Service/qwen3`" in shown
    assert deployment(kube, "qwen3") is None  # nothing before approval

    before = len(kube.requests)
    result = approve_and_wait(deploy_bot, slack, card)
    assert "ready: 1/1 serving" in result and "qwen3.default.svc.cluster.local:8000" in result
    # apply + watch stay cheap for the API server: discovery, 2 applies, a few reads and watches
    executed = len(kube.requests) - before
    print(f"API requests from approval to ready: {executed}")
    assert executed < 30
    dep = deployment(kube, "qwen3")
    labels = dep["metadata"]["labels"]
    assert labels["infer-bot.io/release"] == "qwen3" and labels["infer-bot.io/revision"] == "1"
    assert any(m["manager"] == "infer-bot" and m["operation"] == "Apply" for m in dep["metadata"]["managedFields"])
    assert dep["status"]["readyReplicas"] == 1
    args = dep["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "Qwen/Qwen3-1.7B" and "--max-model-len=8192" in args
    stored = db.rows("SELECT revision, status, manifests FROM release_revisions WHERE name = 'qwen3'")
    assert [(r["revision"], r["status"]) for r in stored] == [(1, "ready")]
    assert {m["kind"] for m in json.loads(stored[0]["manifests"])} == {"Deployment", "Service"}
    # one progress message, edited in place, not a line per change
    progress = [c for c in slack.calls if c.method == "chat.postMessage"
                and c.params.get("thread_ts") == card.response["ts"] and "ready" in text_of(c)
                and "Succeeded" not in text_of(c)]
    assert len(progress) <= 1

    deploy_bot.slash("status", user=OPERATOR)
    status = wait_until(lambda: [t for t in replies(slack) if "qwen3" in t and "rev 1" in t], what="status")
    assert "1/1 ready" in status[0] and "http://qwen3.default.svc.cluster.local:8000" in status[0]
    assert "*qwen*" in status[0]  # the Deployment the bot did not make is listed too


def test_a_model_too_big_for_its_instance_is_refused_with_the_smallest_that_fits(deploy_bot, slack, kube, db):
    deploy_bot.slash("deploy flux-1-diffusers instance=g5.xlarge", user=OPERATOR)
    reply = slack.wait_for(lambda c: c.method == "response_url")
    text = text_of(reply)
    assert reply.params.get("response_type") == "ephemeral"
    assert "does not fit" in text and "GiB needed" in text and "Smallest instance that fits" in text
    assert "Usage:" in text
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    assert [r for r in db.audit() if r["action"] == "deploy" and r["outcome"] == "refused"]


def test_a_set_key_outside_the_allow_list_is_refused(deploy_bot, slack, kube, db):
    deploy_bot.slash("deploy qwen3-1.7b-vllm set.serviceAccountName=admin", user=OPERATOR)
    reply = slack.wait_for(lambda c: c.method == "response_url")
    text = text_of(reply)
    assert "`set.serviceAccountName` is not allowed" in text and "modelParameters.gpuMemoryUtilization" in text
    assert reply.params.get("response_type") == "ephemeral"
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    refused = [r for r in db.audit() if r["outcome"] == "refused"]
    assert refused and "serviceAccountName" in refused[-1]["detail"]


def test_a_custom_resource_without_its_operator_is_refused_before_anything_is_applied(deploy_bot, slack, kube, db):
    deploy_bot.slash("deploy llama-32-1b-ray-vllm", user=OPERATOR)
    text = text_of(slack.wait_for(lambda c: c.method == "response_url"))
    assert "KubeRay operator" in text and "RayService" in text
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    assert not [r for r in kube.requests if r[0] == "PATCH"]


def test_image_pull_failure_is_diagnosed(deploy_bot, slack, kube):
    kube.controller.failing_images[QWEN_IMAGE.rsplit(":", 1)[0] + ":no-such-tag"] = "ImagePullBackOff"
    deploy_bot.slash("deploy qwen3-1.7b-vllm name=broken set.inference.modelServer.image.tag=no-such-tag",
                     user=OPERATOR)
    card = card_for(slack)
    assert "inference.modelServer.image.tag=no-such-tag" in text_of(card)
    started = time.monotonic()
    result = approve_and_wait(deploy_bot, slack, card, word="Failed")
    assert time.monotonic() - started < 15  # a pull failure ends the watch; it does not wait for the timeout
    assert "ImagePullBackOff" in result and "no-such-tag" in result and "image.repository" in result


def test_apply_conflicts_and_server_errors_are_sent_again(deploy_bot, slack, kube):
    kube.fail_next("PATCH", r"/deployments/flaky$", 409, times=1)
    kube.fail_next("PATCH", r"/services/flaky$", 503, times=1)
    deploy_bot.slash("deploy qwen3-1.7b-vllm name=flaky", user=OPERATOR)
    result = approve_and_wait(deploy_bot, slack, card_for(slack))
    assert "ready: 1/1 serving" in result
    applies = [r for r in kube.requests if r[0] == "PATCH" and r[1].endswith(("/deployments/flaky", "/services/flaky"))]
    assert len(applies) == 4  # each object: the refused apply, then the one that took


def test_an_oom_killed_model_server_is_diagnosed_with_what_to_lower(deploy_bot, slack, kube):
    kube.controller.failing_images[QWEN_IMAGE.rsplit(":", 1)[0] + ":too-big"] = "OOMKilled"
    deploy_bot.slash("deploy qwen3-1.7b-vllm name=oom set.inference.modelServer.image.tag=too-big", user=OPERATOR)
    result = approve_and_wait(deploy_bot, slack, card_for(slack), word="Failed")
    assert "OOMKilled" in result and "gpuMemoryUtilization" in result and "larger `instance=`" in result


def test_missing_hf_token_secret_is_diagnosed_with_how_to_create_it(make_bot, slack, kube):
    bot = make_bot(chart={"path": str(BUNDLED_CHART)})  # no hf-token Secret in this cluster
    bot.slash("deploy qwen3-1.7b-vllm name=gated", user=OPERATOR)
    card = card_for(slack)
    assert "The Secret `hf-token` does not exist in `default`" in text_of(card)  # warned before approval
    result = approve_and_wait(bot, slack, card, word="Failed")
    assert "hf-token" in result and "/infer secret hf-token" in result


# A real 1×1 PNG, as a diffusers server would send (any bytes with the PNG signature would do for the bot).
STUB_PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmM"
                            "IQAAAABJRU5ErkJggg==")


class _Stub(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Stub.seen.append({"path": self.path, **body})
        content_type = "application/json"
        if self.path == "/v1/generations":  # the diffusers server: the image itself
            data, content_type = STUB_PNG, "image/png"
        elif self.path == "/v2/models/vllm_model/generate":  # Triton echoes the prompt before the answer
            data = json.dumps({"model_name": "vllm_model",
                               "text_output": body["text_input"] + " Paris, of course."}).encode()
        else:
            answer = {"id": "cmpl-1", "object": "text_completion", "model": body.get("model"),
                      "choices": [{"index": 0, "text": " Paris is the capital of France.", "finish_reason": "stop"}],
                      "usage": {"prompt_tokens": 7, "completion_tokens": 8, "total_tokens": 15}}
            data = json.dumps(answer).encode()
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def openai_stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Stub.seen = []
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_rollback_restores_the_previous_spec_and_removes_an_object_added_later(deploy_bot, slack, kube, db):
    deploy_bot.slash("deploy qwen3-1.7b-vllm name=chat", user=OPERATOR)
    approve_and_wait(deploy_bot, slack, card_for(slack, n=1))
    first_spec = deployment(kube, "chat")["spec"]["template"]["spec"]

    deploy_bot.slash("deploy qwen3-1.7b-vllm name=chat set.modelParameters.maxModelLen=4096", user=OPERATOR)
    card = card_for(slack, n=2)
    assert "update `Deployment/chat`" in text_of(card) and "--max-model-len=8192" in text_of(card)
    approve_and_wait(deploy_bot, slack, card)
    assert "--max-model-len=4096" in deployment(kube, "chat")["spec"]["template"]["spec"]["containers"][0]["args"]

    deploy_bot.slash("autoscale chat min=1 max=3 metric=cpu target=60", user=OPERATOR)
    approve_and_wait(deploy_bot, slack, card_for(slack, n=3))
    hpa = kube.get("autoscaling/v2", "HorizontalPodAutoscaler", "default", "chat")
    assert hpa["spec"]["maxReplicas"] == 3 and hpa["metadata"]["labels"]["infer-bot.io/revision"] == "3"

    deploy_bot.slash("rollback chat revision=9", user=OPERATOR)
    refused = slack.wait_for(lambda c: c.method == "response_url" and "revision 9" in text_of(c))
    assert "no stored revision 9" in text_of(refused) and "(revisions: 1, 2, 3)" in text_of(refused)
    assert refused.params.get("response_type") == "ephemeral"

    deploy_bot.slash("rollback chat revision=1", user=OPERATOR)
    card = card_for(slack, n=4)
    shown = text_of(card)
    assert "revision 3 to revision 1" in shown
    # What approval will change, before approval: the argument back, the autoscaler gone.
    assert "update `Deployment/chat`" in shown and "--max-model-len=8192" in shown
    assert "delete `HorizontalPodAutoscaler/chat`" in shown
    result = approve_and_wait(deploy_bot, slack, card)
    assert "HorizontalPodAutoscaler/chat" in result
    assert deployment(kube, "chat")["spec"]["template"]["spec"] == first_spec
    assert kube.get("autoscaling/v2", "HorizontalPodAutoscaler", "default", "chat") is None
    assert deployment(kube, "chat")["metadata"]["labels"]["infer-bot.io/revision"] == "4"
    rows = db.rows("SELECT revision, action, note FROM release_revisions WHERE name = 'chat' ORDER BY revision")
    assert [(r["revision"], r["action"]) for r in rows] == [(1, "deploy"), (2, "deploy"), (3, "autoscale"),
                                                             (4, "rollback")]
    assert rows[-1]["note"] == "from revision 1"


def test_undeploy_leaves_nothing_behind(deploy_bot, slack, kube):
    deploy_bot.slash("deploy qwen3-1.7b-vllm name=gone replicas=2", user=OPERATOR)
    approve_and_wait(deploy_bot, slack, card_for(slack, n=1))
    assert len([p for p in kube.list("v1", "Pod", "default") if p["metadata"]["name"].startswith("gone-")]) == 2

    deploy_bot.slash("undeploy gone", user=OPERATOR)
    card = card_for(slack, n=2)
    assert "`Deployment/gone`" in text_of(card) and "`Service/gone`" in text_of(card)
    result = approve_and_wait(deploy_bot, slack, card)
    assert "removed" in result
    wait_until(lambda: not [p for p in kube.list("v1", "Pod", "default") if p["metadata"]["name"].startswith("gone-")],
               what="pods gone")
    assert deployment(kube, "gone") is None and kube.get("v1", "Service", "default", "gone") is None
    replica_sets = kube.list("apps/v1", "ReplicaSet", "default")
    assert not [rs for rs in replica_sets if rs["metadata"]["name"].startswith("gone-")]
    assert deployment(kube, "qwen") is not None  # the other model is untouched


def test_deploy_refuses_to_take_over_an_object_it_did_not_create(deploy_bot, slack, kube, db):
    deploy_bot.slash("deploy qwen3-1.7b-vllm name=qwen", user=OPERATOR)
    text = text_of(slack.wait_for(lambda c: c.method == "response_url"))
    assert "`Deployment/qwen` already exists" in text and "name=" in text
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0


def test_a_test_request_reaches_the_release_and_shows_the_answer(make_bot, hf_token, openai_stub, slack, kube):
    bot = make_bot(chart={"path": str(BUNDLED_CHART)}, cluster={"inference_url": openai_stub})
    bot.slash("deploy qwen3-1.7b-vllm name=qa", user=OPERATOR)
    approve_and_wait(bot, slack, card_for(slack))
    bot.slash("test qa What is the capital of France?", user=OPERATOR)
    reply = slack.wait_for(lambda c: c.method == "response_url" and "Paris" in text_of(c))
    shown = text_of(reply)
    assert "Paris is the capital of France." in shown and "What is the capital of France?" in shown
    assert " ms" in shown and "7 prompt + 8 completion tokens" in shown
    assert reply.params.get("response_type") == "ephemeral"
    assert _Stub.seen == [{"path": "/v1/completions", "model": "Qwen/Qwen3-1.7B",
                           "prompt": "What is the capital of France?", "max_tokens": 128}]


def test_a_test_request_to_a_diffusion_model_shares_the_generated_image(make_bot, hf_token, openai_stub, slack,
                                                                        kube):
    kube.put(node({"name": "l40s-node", "instance_type": "g6e.2xlarge", "gpus": 1}))  # where the preset asks to run
    bot = make_bot(chart={"path": str(BUNDLED_CHART)}, cluster={"inference_url": openai_stub})
    bot.slash("deploy flux-1-diffusers name=flux", user=OPERATOR)
    approve_and_wait(bot, slack, card_for(slack))
    bot.slash("test flux a lighthouse at dusk", user=OPERATOR)
    reply = slack.wait_for(lambda c: c.method == "response_url" and "Test of flux" in text_of(c))
    assert "an image" in text_of(reply) and "shared in the channel" in text_of(reply)
    assert _Stub.seen == [{"path": "/v1/generations", "prompt": "a lighthouse at dusk"}]
    # files upload v2: ask for an upload URL, send the bytes, then share it into the channel
    slack.wait_for(lambda c: c.method == "files.completeUploadExternal")
    [image] = slack.files
    assert image.completed and image.filename == "flux-test.png" and image.content == STUB_PNG
    assert image.channel_id == CHANNEL and "flux" in (image.initial_comment or "")


def test_a_test_request_to_triton_uses_its_generate_api(make_bot, hf_token, openai_stub, slack, kube):
    bot = make_bot(chart={"path": str(BUNDLED_CHART)}, cluster={"inference_url": openai_stub})
    bot.slash("deploy qwen3-1.7b-triton name=tri", user=OPERATOR)
    approve_and_wait(bot, slack, card_for(slack))
    bot.slash("test tri What is the capital of France?", user=OPERATOR)
    reply = slack.wait_for(lambda c: c.method == "response_url" and "Test of tri" in text_of(c))
    assert "Paris, of course." in text_of(reply)
    assert "What is the capital of France? Paris" not in text_of(reply)  # the echoed prompt is cut
    assert [s["path"] for s in _Stub.seen] == ["/v2/models/vllm_model/generate"]
    assert _Stub.seen[0]["text_input"] == "What is the capital of France?"


def test_hf_token_is_set_through_a_modal_and_never_echoed(bot_with_chart, slack, kube, db):
    token = "hf_SuperSecretValue123"
    bot_with_chart.slash("secret hf-token", user=ADMIN, channel=CHANNEL)
    opened = slack.wait_for(lambda c: c.method == "views.open" and c.status == 200)
    view = opened.response["view"]
    assert view["callback_id"] == "hf_token_submit"
    body, headers = bot_with_chart.requests.view_submission(
        "hf_token_submit", {"token": {"value": {"type": "plain_text_input", "value": token}}}, user_id=ADMIN,
        private_metadata=view["private_metadata"], view_id=view["id"])
    assert bot_with_chart.post(body, headers).status_code == 200
    told = slack.wait_for(lambda c: c.method == "chat.postEphemeral" and "hf-token" in text_of(c))
    assert "created" in text_of(told)
    secret = wait_until(lambda: kube.get("v1", "Secret", "default", "hf-token"), what="secret")
    assert base64.b64decode(secret["data"]["token"]).decode() == token
    # the value appears nowhere a person or a log reader could see it
    assert not [c for c in slack.calls if token in json.dumps(c.params) and c.method != "views.open"]
    assert all(token not in json.dumps(row, default=str) for row in db.audit())
    assert token not in bot_with_chart.log()


def test_only_an_admin_may_set_the_hf_token(bot_with_chart, slack, kube):
    bot_with_chart.slash("secret hf-token", user=OPERATOR, channel=CHANNEL)
    reply = slack.wait_for(lambda c: c.method == "response_url")
    assert "needs the *admin* role" in text_of(reply)
    assert not slack.calls_to("views.open")


@pytest.fixture
def bot_with_chart(make_bot):
    return make_bot(chart={"path": str(BUNDLED_CHART)})


def test_queue_autoscaling_needs_keda_and_then_creates_a_scaled_object(deploy_bot, slack, kube):
    from bot.sandbox.operators import CRDS

    deploy_bot.slash("deploy qwen3-1.7b-vllm name=busy", user=OPERATOR)
    approve_and_wait(deploy_bot, slack, card_for(slack, n=1))
    deploy_bot.slash("autoscale busy min=1 max=4 metric=queue", user=OPERATOR)
    text = text_of(slack.wait_for(lambda c: c.method == "response_url"))
    assert "KEDA is not installed" in text and "vllm:num_requests_waiting" in text and "metric=cpu" in text

    kube.put(next(c for c in CRDS if c["spec"]["group"] == "keda.sh"))
    deploy_bot.slash("autoscale busy min=1 max=4 metric=queue target=3", user=OPERATOR)
    card = card_for(slack, n=2)
    assert "autoscale 1–4 replicas on vllm:num_requests_waiting above 3" in text_of(card)
    approve_and_wait(deploy_bot, slack, card)
    scaled = kube.get("keda.sh/v1alpha1", "ScaledObject", "default", "busy")
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == "3"
    assert "vllm:num_requests_waiting" in trigger["metadata"]["query"]
    assert scaled["spec"]["maxReplicaCount"] == 4 and scaled["spec"]["scaleTargetRef"] == {"name": "busy"}
    deploy_bot.slash("status busy", user=OPERATOR)
    status = wait_until(lambda: [t for t in replies(slack) if "rev 2" in t], what="status")
    assert "autoscale KEDA 1–4" in status[0]
