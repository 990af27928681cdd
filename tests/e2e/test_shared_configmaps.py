"""Upstream's fixed-name ConfigMaps (here `ray-vllm-serve`) are one object for every release of the
framework in a namespace: a second release with the same content shares it, one with other content
(another chart version) is refused with the difference, and undeploy deletes it only with its last
user. Driven over signed HTTP; the chart is the bundled one plus upstream's ConfigMap template
(tests/support/charts.py), rendered by the real `helm template`."""

from __future__ import annotations

import pytest

from bot.sandbox import operators
from tests.support.binaries import needs_helm
from tests.support.charts import chart_with_shared_configmap
from tests.support.slack import APPROVER, OPERATOR, card_for, op_id_of, text_of

pytestmark = needs_helm

PRESET = "llama-32-1b-ray-vllm"


@pytest.fixture
def ray_cluster(kube):
    operators.install(kube)  # KubeRay's CRD and operator stand-in, Karpenter, the hf-token Secret
    return kube


def finished(bot, slack, card, timeout: float = 40) -> str:
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
    done = slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"]
                          and ("Succeeded" in text_of(c) or "Failed" in text_of(c)), timeout=timeout)
    return text_of(done)


def serve_script(kube):
    return kube.get("v1", "ConfigMap", "default", "ray-vllm-serve")


def users(obj) -> set[str]:
    return {k.removeprefix("users.infer-bot.io/") for k in obj["metadata"].get("annotations", {})
            if k.startswith("users.infer-bot.io/")}


def test_releases_share_the_configmap_and_the_last_undeploy_removes_it(make_bot, slack, ray_cluster, tmp_path):
    # Old code: the second deploy was refused ("Choose another `name=`"), and the first undeploy deleted
    # the ConfigMap the other release still mounted.
    bot = make_bot(chart={"path": str(chart_with_shared_configmap(tmp_path))})
    bot.slash(f"deploy {PRESET} name=ray-a", user=OPERATOR)
    assert "Succeeded" in finished(bot, slack, card_for(slack, n=1))
    assert users(serve_script(ray_cluster)) == {"ray-a"}

    bot.slash(f"deploy {PRESET} name=ray-b", user=OPERATOR)
    card = card_for(slack, n=2)
    assert "`ConfigMap/ray-vllm-serve`" in text_of(card) and "create `RayService/ray-b`" in text_of(card)
    assert "Succeeded" in finished(bot, slack, card)
    assert users(serve_script(ray_cluster)) == {"ray-a", "ray-b"}
    assert "infer-bot.io/release" not in serve_script(ray_cluster)["metadata"]["labels"]  # no one release's

    bot.slash("undeploy ray-a", user=OPERATOR)
    card = card_for(slack, n=3)
    assert "`ConfigMap/ray-vllm-serve` is kept, still used by `ray-b`" in text_of(card)
    result = finished(bot, slack, card)
    assert "Succeeded" in result and "kept the shared `ConfigMap/ray-vllm-serve` (still used by `ray-b`)" in result
    assert ray_cluster.get("ray.io/v1", "RayService", "default", "ray-a") is None
    assert users(serve_script(ray_cluster)) == {"ray-b"}
    assert "Ray Serve entry point" in serve_script(ray_cluster)["data"]["vllm_serve.py"]

    bot.slash("undeploy ray-b", user=OPERATOR)
    card = card_for(slack, n=4)
    assert "`ConfigMap/ray-vllm-serve` is deleted (no other release uses it)" in text_of(card)
    result = finished(bot, slack, card)
    assert "Succeeded" in result and "`ConfigMap/ray-vllm-serve`" in result
    assert serve_script(ray_cluster) is None


def test_other_content_for_a_shared_configmap_is_refused_with_the_difference(make_bot, slack, ray_cluster,
                                                                             tmp_path, db):
    # Old code refused with "Choose another `name=`", which cannot help: the name is fixed by the chart.
    old_chart = make_bot(chart={"path": str(chart_with_shared_configmap(tmp_path, "0.2.1"))})
    old_chart.slash(f"deploy {PRESET} name=ray-a", user=OPERATOR)
    assert "Succeeded" in finished(old_chart, slack, card_for(slack, n=1))
    before = serve_script(ray_cluster)

    new_chart = make_bot(chart={"path": str(chart_with_shared_configmap(tmp_path, "0.2.2"))})
    new_chart.slash(f"deploy {PRESET} name=ray-b", user=OPERATOR)
    reply = slack.wait_for(lambda c: c.method == "response_url" and "ray-vllm-serve" in text_of(c))
    text = text_of(reply)
    assert reply.params.get("response_type") == "ephemeral"
    assert "`ConfigMap/ray-vllm-serve` in `default` is shared" in text and "`ray-a` uses it" in text
    assert "-    # Ray Serve entry point of inference-charts 0.2.1" not in text  # lines, not the YAML indent
    assert "-# Ray Serve entry point of inference-charts 0.2.1" in text
    assert "+# Ray Serve entry point of inference-charts 0.2.2" in text
    assert "another `namespace=`" in text and "Nothing was changed" in text and "Choose another `name=`" not in text
    refused = [r for r in db.audit() if r["action"] == "deploy" and r["outcome"] == "refused"]
    assert refused and "ray-vllm-serve" in refused[-1]["detail"]
    assert db.rows("SELECT count(*) AS n FROM operations WHERE target = 'ray-b'")[0]["n"] == 0
    assert serve_script(ray_cluster)["data"] == before["data"]
    assert ray_cluster.get("ray.io/v1", "RayService", "default", "ray-b") is None


def test_a_shared_configmap_someone_installed_by_hand_is_not_changed_under_them(make_bot, slack, ray_cluster,
                                                                                tmp_path, db):
    ray_cluster.put({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ray-vllm-serve",
                                                                           "namespace": "default"},
                     "data": {"vllm_serve.py": "# a team's own `helm install` of another chart version\n"}})
    bot = make_bot(chart={"path": str(chart_with_shared_configmap(tmp_path))})
    bot.slash(f"deploy {PRESET} name=ray-a", user=OPERATOR)
    text = text_of(slack.wait_for(lambda c: c.method == "response_url" and "ray-vllm-serve" in text_of(c)))
    assert "`(not deployed by infer-bot)` uses it" in text and "+# Ray Serve entry point" in text
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    assert "team's own" in serve_script(ray_cluster)["data"]["vllm_serve.py"]
