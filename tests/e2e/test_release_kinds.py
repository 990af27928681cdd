"""What a release owns is whatever it rendered, not a fixed list of kinds: an Ingress a user preset
enables is pruned by a rollback to a revision without it and deleted by undeploy. And a re-deploy
of a release an autoscaler drives leaves the replicas to the autoscaler. Driven over signed HTTP
against the Kubernetes API emulator, with the real `helm template`."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from kubernetes import client, config

from bot.sandbox.environment import node
from ops.helm import BUNDLED_CHART
from tests.support.binaries import needs_helm
from tests.support.slack import APPROVER, OPERATOR, card_for, op_id_of, text_of

pytestmark = needs_helm

PRESET = """\
preset:
  description: Qwen3 1.7B for the team{note}
  params_billion: 2.03
  precision: bf16
  instance: g6.xlarge
values:
  model: Qwen/Qwen3-1.7B
  modelParameters:
    maxModelLen: 8192
  inference:
    serviceName: team-chat
    accelerator: gpu
    framework: vllm
    modelServer:
      image:
        repository: public.ecr.aws/deep-learning-containers/vllm
        tag: 0.10.2-gpu-py312-ec2
{extra}"""

INGRESS = """\
  ingress:
    enabled: true
    className: alb
    hosts:
      - host: chat.example.com
"""


@pytest.fixture
def hf_token(kube):
    kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "default"},
              "type": "Opaque", "data": {"token": base64.b64encode(b"hf_test_value").decode()}})


@pytest.fixture
def presets(tmp_path: Path) -> Path:
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "team-chat.yaml").write_text(PRESET.format(note="", extra=""))
    (folder / "team-chat-public.yaml").write_text(PRESET.format(note=", behind an Ingress", extra=INGRESS))
    return folder


def finished(bot, slack, card, timeout: float = 40) -> str:
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
    done = slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"]
                          and ("Succeeded" in text_of(c) or "Failed" in text_of(c)), timeout=timeout)
    return text_of(done)


def ingress(kube, name):
    return kube.get("networking.k8s.io/v1", "Ingress", "default", name)


def test_an_ingress_a_preset_enables_is_pruned_by_rollback_and_deleted_by_undeploy(make_bot, slack, kube,
                                                                                  hf_token, presets):
    # Old code looked for a fixed list of kinds (no Ingress): the rollback card did not list it, the
    # rollback left it, and undeploy left it behind.
    bot = make_bot(chart={"path": str(BUNDLED_CHART)}, catalog={"presets_dir": str(presets)})
    bot.slash("deploy team-chat name=web", user=OPERATOR)
    assert "Succeeded" in finished(bot, slack, card_for(slack, n=1))
    bot.slash("deploy team-chat-public name=web", user=OPERATOR)
    card = card_for(slack, n=2)
    assert "create `Ingress/web`" in text_of(card)
    assert "Succeeded" in finished(bot, slack, card)
    assert ingress(kube, "web")["spec"]["rules"][0]["host"] == "chat.example.com"

    bot.slash("rollback web revision=1", user=OPERATOR)
    card = card_for(slack, n=3)
    assert "delete `Ingress/web`" in text_of(card)
    result = finished(bot, slack, card)
    assert "Succeeded" in result and "removed `Ingress/web`" in result
    assert ingress(kube, "web") is None

    bot.slash("rollback web revision=2", user=OPERATOR)
    assert "Succeeded" in finished(bot, slack, card_for(slack, n=4))
    assert ingress(kube, "web") is not None
    bot.slash("undeploy web", user=OPERATOR)
    card = card_for(slack, n=5)
    assert "`Ingress/web`" in text_of(card)  # the card names it among what is deleted
    result = finished(bot, slack, card)
    assert "Succeeded" in result and "`Ingress/web`" in result
    assert ingress(kube, "web") is None and kube.get("apps/v1", "Deployment", "default", "web") is None


def test_a_redeploy_under_an_autoscaler_leaves_the_replicas_to_it(make_bot, slack, kube, hf_token):
    # Old code: the re-deploy applied the preset's `replicas: 1` over the HPA's choice, and pruned the HPA.
    for i in range(2):  # room for the new pods of the rolling update next to the old ones
        kube.put(node({"name": f"gpu-node-surge-{i}", "instance_type": "g5.xlarge", "gpus": 1}))
    bot = make_bot(chart={"path": str(BUNDLED_CHART)})
    bot.slash("deploy qwen3-1.7b-vllm name=chat", user=OPERATOR)
    assert "Succeeded" in finished(bot, slack, card_for(slack, n=1))
    bot.slash("autoscale chat min=1 max=2 metric=cpu", user=OPERATOR)
    assert "Succeeded" in finished(bot, slack, card_for(slack, n=2))
    # The HPA controller scales through the scale subresource, under its own field manager.
    api = config.new_client_from_config(config_file=str(kube.write_kubeconfig(Path(bot.workdir) / "hpa-kubeconfig")))
    client.AppsV1Api(api).patch_namespaced_deployment_scale("chat", "default", {"spec": {"replicas": 2}},
                                                            field_manager="horizontal-pod-autoscaler")

    bot.slash("deploy qwen3-1.7b-vllm name=chat replicas=1 set.modelParameters.maxModelLen=4096", user=OPERATOR)
    card = card_for(slack, n=3)
    shown = text_of(card)
    assert "owned by `HorizontalPodAutoscaler/chat`" in shown and "`replicas=1` is not applied" in shown
    assert "spec.replicas" not in shown
    assert "Succeeded" in finished(bot, slack, card)
    live = kube.get("apps/v1", "Deployment", "default", "chat")
    assert live["spec"]["replicas"] == 2  # the autoscaler's number
    assert "--max-model-len=4096" in live["spec"]["template"]["spec"]["containers"][0]["args"]
    hpa = kube.get("autoscaling/v2", "HorizontalPodAutoscaler", "default", "chat")
    assert hpa is not None and hpa["metadata"]["labels"]["infer-bot.io/revision"] == "3"
