"""The bot's own Helm chart: lints, renders, and grants exactly the API access the ops use."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from bot.sandbox.operators import CRDS
from tests.support.binaries import HELM, needs_helm
from tests.support.charts import chart_with_shared_configmap
from tests.support.prometheus import main_dataset
from tests.support.slack import ADMIN, APPROVER, OPERATOR, card_for, op_id_of, text_of

pytestmark = needs_helm

CHART = Path(__file__).resolve().parents[2] / "deploy" / "helm" / "infer-bot"

# A user preset that turns on the chart's Ingress: a kind beyond the workload and its Service.
PUBLIC_PRESET = """\
preset:
  description: Qwen3 1.7B behind an Ingress
  params_billion: 2.03
  precision: bf16
  instance: g6.xlarge
values:
  model: Qwen/Qwen3-1.7B
  inference:
    serviceName: public
    accelerator: gpu
    framework: vllm
    modelServer:
      image:
        repository: public.ecr.aws/deep-learning-containers/vllm
        tag: 0.10.2-gpu-py312-ec2
  ingress:
    enabled: true
    hosts:
      - host: chat.example.com
"""


def helm(*args: str) -> str:
    binary = str(HELM)
    run = subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return run.stdout


def rendered(*sets: str) -> dict[str, dict]:
    flags = [x for s in sets for x in ("--set", s)]
    docs = [d for d in yaml.safe_load_all(helm("template", "bot", str(CHART), "--namespace", "ops", *flags)) if d]
    return {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}


def test_chart_lints_and_renders_a_safe_deployment():
    assert "0 chart(s) failed" in helm("lint", str(CHART))
    objs = rendered("serviceAccount.annotations.eks\\.amazonaws\\.com/role-arn=arn:aws:iam::1:role/bot",
                    "serviceMonitor.enabled=true")
    dep = objs["Deployment/bot"]
    assert dep["spec"]["replicas"] == 2
    pod = dep["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["serviceAccountName"] == "infer-bot"
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/livez"
    assert pod["terminationGracePeriodSeconds"] == 35  # the default 25 s drain plus a margin
    longer = rendered("config.operations.shutdown_grace_seconds=50")["Deployment/bot"]["spec"]["template"]["spec"]
    assert longer["terminationGracePeriodSeconds"] == 60
    env = {e["name"]: e for e in container["env"]}
    for secret in ("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET", "INFER_BOT_DATABASE_URL"):
        assert "secretKeyRef" in env[secret]["valueFrom"] and "value" not in env[secret]
    assert objs["PodDisruptionBudget/bot"]["spec"]["minAvailable"] == 1
    assert objs["ServiceAccount/infer-bot"]["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(
        "role/bot")
    assert objs["ServiceMonitor/bot"]["spec"]["endpoints"][0]["path"] == "/metrics"
    config = yaml.safe_load(objs["ConfigMap/bot-config"]["data"]["config.yaml"])
    assert config["slack"]["command"] == "/infer"
    assert "ServiceMonitor/bot" not in rendered()
    extra = rendered("rbac.presetResources[0].apiGroups[0]=monitoring.coreos.com",
                     "rbac.presetResources[0].resources[0]=podmonitors")["ClusterRole/bot"]["rules"]
    assert {"apiGroups": ["monitoring.coreos.com"], "resources": ["podmonitors"],
            "verbs": ["get", "list", "patch", "delete"]} in extra


def test_recording_rules_are_off_by_default_and_ship_the_rules_the_digest_reads():
    """`recordingRules.enabled`: a PrometheusRule with the rules file the digest's tests backfill."""
    assert not [key for key in rendered() if key.startswith("PrometheusRule/")]
    objs = rendered("recordingRules.enabled=true", "recordingRules.labels.release=kube-prometheus-stack",
                    "recordingRules.interval=30s")
    rule = objs["PrometheusRule/bot-digest"]
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    shipped = yaml.safe_load((CHART / "files" / "recording-rules.yaml").read_text(encoding="utf-8"))
    [group] = rule["spec"]["groups"]
    assert group["interval"] == "30s" and group["rules"] == shipped["groups"][0]["rules"]
    assert all(r["record"].startswith("infer_bot:") for r in group["rules"])
    [default] = rendered("recordingRules.enabled=true")["PrometheusRule/bot-digest"]["spec"]["groups"]
    assert default == shipped["groups"][0]


PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)(?:/namespaces/[^/]+)?/(?P<resource>[^/]+)"
                  r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")


def rbac_verb(method: str, name: str | None, query: dict[str, str]) -> str:
    if method == "GET":
        return "watch" if query.get("watch") in ("true", "1") else ("get" if name else "list")
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}[method]


def test_rbac_allows_exactly_what_the_pipeline_calls(make_bot, slack, kube, tmp_path):
    # Everything the bot does today: status, a scale that succeeds, one that fails and is diagnosed,
    # and the life of releases of every workload kind (with the operators' CRDs installed), of a
    # preset with an Ingress, and of one with upstream's shared ConfigMap (ray-vllm-serve), and a digest
    # on a default kube-state-metrics (the instance types come from the Node objects). CRDS include
    # Karpenter's: deploys list NodePools, and the failed scale lists NodeClaims for its Pending pods.
    for crd in CRDS:
        kube.put(crd)
    presets = tmp_path / "presets"
    presets.mkdir()
    (presets / "public-chat.yaml").write_text(PUBLIC_PRESET)
    chart = chart_with_shared_configmap(tmp_path)
    _, prometheus = main_dataset()
    bot = make_bot(cluster={"rollout_timeout_seconds": 3, "prometheus_url": prometheus.url},
                   chart={"path": str(chart)}, catalog={"presets_dir": str(presets)})
    bot.slash("status", user=OPERATOR)
    bot.slash("digest now", user=OPERATOR)
    slack.wait_for(lambda c: c.method == "chat.postMessage" and "Inference digest" in str(c.params.get("text")))
    cards = 0

    def approved(command: str, outcome: str = "") -> None:
        nonlocal cards
        bot.slash(command, user=OPERATOR)
        cards += 1
        card = card_for(slack, n=cards)
        bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
        slack.wait_for(lambda c, ts=card.response["ts"]: c.params.get("thread_ts") == ts
                       and ("Succeeded" in text_of(c) or "Failed" in text_of(c)) and outcome in text_of(c),
                       timeout=60)

    approved("scale qwen 2", "Succeeded")
    approved("scale qwen 9", "Failed")
    approved("deploy qwen3-1.7b-vllm name=a")  # no hf-token yet: it fails, the calls are the same
    approved("autoscale a min=1 max=2 metric=cpu")
    approved("autoscale a min=1 max=2 metric=queue")  # the HPA is pruned
    approved("rollback a revision=2")  # the card reads the HPA it brings back; the ScaledObject is pruned
    approved("rollback a revision=3")
    approved("undeploy a")
    for preset, name in (("llama-4-scout-17b-lws-vllm", "l"), ("llama-32-1b-ray-vllm", "r"), ("public-chat", "p")):
        approved(f"deploy {preset} name={name}")
        approved(f"undeploy {name}")
    bot.slash("secret hf-token", user=ADMIN)
    view = slack.wait_for(lambda c: c.method == "views.open" and c.status == 200).response["view"]
    body, headers = bot.requests.view_submission(
        "hf_token_submit", {"token": {"value": {"type": "plain_text_input", "value": "hf_rbac_test_token"}}},
        user_id=ADMIN, private_metadata=view["private_metadata"], view_id=view["id"])
    bot.post(body, headers)
    slack.wait_for(lambda c: c.method == "chat.postEphemeral" and "hf-token" in text_of(c))

    used: set[tuple[str, str, str]] = set()
    for method, path, query in kube.requests:
        match = PATH.match(path)
        if not match:
            continue  # discovery and /version: non-resource URLs every authenticated client may read
        resource = match["resource"] + (f"/{match['sub']}" if match["sub"] else "")
        used.add((match["group"] or "", resource, rbac_verb(method, match["name"], query)))

    role = rendered()["ClusterRole/bot"]
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    assert used <= granted, f"calls the chart does not allow: {sorted(used - granted)}"
    assert granted <= used, f"granted but never used (not least privilege): {sorted(granted - used)}"


def test_the_chart_runs_serve_and_workers_as_separate_deployments_by_default():
    objs = rendered()
    serve, worker = objs["Deployment/bot"], objs["Deployment/bot-worker"]
    assert serve["spec"]["template"]["spec"]["containers"][0]["args"][0] == "serve"
    [container] = worker["spec"]["template"]["spec"]["containers"]
    assert container["args"][:1] == ["worker"] and container["livenessProbe"]["httpGet"]["port"] == "metrics"
    assert "SLACK_SIGNING_SECRET" not in {e["name"] for e in container["env"]}  # workers verify nothing
    # The Service, the PDB and the serve Deployment never select a worker pod.
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    for selector in (objs["Service/bot"]["spec"]["selector"], serve["spec"]["selector"]["matchLabels"],
                     objs["PodDisruptionBudget/bot"]["spec"]["selector"]["matchLabels"]):
        assert not selector.items() <= worker_labels.items()
    config = yaml.safe_load(objs["ConfigMap/bot-config"]["data"]["config.yaml"])
    assert config["server"] == {"after_ack": "queue", "worker_processes": 0}  # serve starts none of its own

    inline = rendered("afterAck=inline", "config.server.read_timeout_seconds=7")
    assert "Deployment/bot-worker" not in inline
    config = yaml.safe_load(inline["ConfigMap/bot-config"]["data"]["config.yaml"])
    assert config["server"] == {"after_ack": "inline", "worker_processes": 0, "read_timeout_seconds": 7}
