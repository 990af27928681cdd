"""The advisor's rules on hand-made numbers: what fires, with which evidence and change, and what does not."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ops.advisor import RULES, Facts, Thresholds, advise, thresholds_from
from ops.digest import cheaper_instance, price_per_device_hour, startup_times
from ops.metrics import DeploymentMetrics

PRICE = 1.006  # g5.xlarge, one A10G


def healthy(**changes) -> DeploymentMetrics:
    base = DeploymentMetrics(cluster="dev", namespace="default", name="m", accelerator="gpu",
                             instance_type="g5.xlarge", devices=2, device_hours=48, util_mean=75, util_p95=85,
                             idle_share=0.02, mem_used_mib=30000, mem_total_mib=49152, rps_mean=2, requests=172800,
                             abort_share=0.0, e2e_p50=1.2, e2e_p95=3.5, e2e_p99=4, ttft_p95=0.4, tpot_mean=0.05,
                             queue_mean=0.2, queue_max=3, queue_slope_per_hour=0.0, kv_mean=0.5, kv_max=0.7,
                             preemptions=0, replicas_desired=2, replicas_available=2, restarts=0,
                             startup_seconds=120)
    return replace(base, **changes)


def run(m: DeploymentMetrics, thresholds: Thresholds = Thresholds(), **kw):
    facts = Facts(m=m, price_per_device_hour=PRICE, max_replicas=kw.pop("max_replicas", 20),
                  cheaper=cheaper_instance(m.instance_type, "us-west-2", thresholds.memory_headroom))
    return advise(facts, thresholds, **kw)


def test_a_healthy_deployment_gets_no_suggestion():
    assert run(healthy()) == []


def test_low_utilization_with_an_empty_queue_scales_down_with_the_saving():
    [s] = run(healthy(util_mean=4, util_p95=6, replicas_desired=3, devices=3, queue_mean=0))
    assert s.rule == "underused" and s.action is not None
    assert s.action.command == "scale m 1 namespace=default cluster=dev"
    assert s.saving_per_day == pytest.approx(2 * PRICE * 24)
    assert dict(s.evidence)["accelerator utilization (mean)"].startswith("4.0 %")


def test_low_utilization_with_a_queue_is_not_underused():
    assert run(healthy(util_mean=20, util_p95=25, queue_mean=5, queue_slope_per_hour=0)) == []


def test_one_replica_underused_gets_a_cheaper_instance_as_an_instance_change():
    [s] = run(healthy(util_mean=5, util_p95=8, replicas_desired=1, devices=1, mem_used_mib=8000))
    # The digest turns an `instance` action into a deploy of the release's preset (bot releases only).
    assert s.rule == "underused" and s.action is not None
    assert (s.action.verb, s.action.args) == ("instance", ("m", "g6.xlarge"))
    assert "g6.xlarge" in s.change  # an L4 (24 GiB) holds 8 GB × 1.25 for less than an A10G
    assert s.saving_per_day == pytest.approx((PRICE - 0.8048) * 24)


def test_saturated_with_a_growing_queue_scales_up_and_names_autoscale():
    [s] = run(healthy(util_mean=97, util_p95=99, e2e_p95=30, queue_mean=24, queue_max=48, queue_slope_per_hour=2))
    assert s.rule == "saturated" and s.action.command == "scale m 4 namespace=default cluster=dev"
    assert "autoscale m min=2 max=8 metric=queue" in s.change
    assert s.saving_per_day == pytest.approx(-2 * PRICE * 24)  # costs more; said so


def test_slow_without_a_queue_is_not_saturation():
    assert run(healthy(e2e_p95=30, queue_mean=0, queue_slope_per_hour=0)) == []


def test_scale_up_respects_the_clusters_replica_limit():
    [s] = run(healthy(e2e_p95=30, queue_mean=24, replicas_desired=4, devices=4), max_replicas=4)
    assert s.action is None and "maximum of 4" in s.change


def test_kv_cache_full_with_preemptions():
    [s] = run(healthy(kv_mean=0.9, kv_max=0.99, preemptions=1728))
    assert s.rule == "kv_pressure" and "gpuMemoryUtilization" in s.change and s.action is None
    assert run(healthy(kv_mean=0.9, kv_max=0.99, preemptions=0)) == []


def test_slow_startup_and_restarts():
    rules = {s.rule: s for s in run(healthy(startup_seconds=420, restarts=4))}
    assert set(rules) == {"slow_startup", "restarts"}
    assert "7.0 min" in dict(rules["slow_startup"].evidence)["pod start → Ready"]
    assert "SOCI" in rules["slow_startup"].change and "0.90 → 0.80" in rules["restarts"].change
    assert run(healthy(startup_seconds=299, restarts=2)) == []


def test_no_traffic_is_an_undeploy_candidate_not_also_underused():
    [s] = run(healthy(util_mean=0, util_p95=0, requests=0, rps_mean=0, e2e_p95=None, queue_mean=0))
    assert s.rule == "no_traffic" and s.action.command == "scale m 0 namespace=default cluster=dev"
    assert s.saving_per_day == pytest.approx(2 * PRICE * 24)


def test_no_suggestion_without_the_numbers_behind_it():
    blank = DeploymentMetrics(cluster="dev", namespace="default", name="m", replicas_desired=2)
    assert run(blank) == []
    every = run(healthy(util_mean=4, util_p95=5, replicas_desired=3, devices=3, kv_max=0.99, preemptions=9,
                        startup_seconds=900, restarts=9))
    assert every and all(s.evidence for s in every)


def test_thresholds_come_from_config_and_rules_can_be_disabled():
    m = healthy(util_mean=40, util_p95=45, replicas_desired=3, devices=3)
    assert run(m) == []
    assert [s.rule for s in run(m, thresholds_from({"low_util_pct": 50}))] == ["underused"]
    assert run(m, thresholds_from({"low_util_pct": 50}), disabled=("underused",)) == []
    with pytest.raises(ValueError, match="unknown advisor thresholds: nope"):
        thresholds_from({"nope": 1})


def test_rules_are_data_with_unique_ids():
    ids = [r.id for r in RULES]
    assert len(ids) == len(set(ids)) and {"no_traffic", "saturated", "kv_pressure", "underused", "slow_startup",
                                          "restarts"} == set(ids)


def test_prices_per_device_hour_from_the_instance_table():
    assert price_per_device_hour("g5.xlarge", "us-west-2") == pytest.approx(1.006)
    assert price_per_device_hour("g5.12xlarge", "us-west-2") == pytest.approx(
        price_per_device_hour("g5.12xlarge", "us-west-2", "nvidia_com_gpu"))
    inf2 = price_per_device_hour("inf2.xlarge", "us-west-2", "aws_amazon_com_neuron")
    assert price_per_device_hour("inf2.xlarge", "us-west-2", "aws_amazon_com_neuroncore") == pytest.approx(inf2 / 2)
    assert price_per_device_hour("x9.nothing", "us-west-2") is None
    assert price_per_device_hour(None, "us-west-2") is None


def pod(name: str, ns: str, rs: str, template_hash: str, start: str, ready: str | None) -> dict:
    conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": ready}] if ready else [
        {"type": "Ready", "status": "False", "lastTransitionTime": start}]
    return {"metadata": {"name": name, "namespace": ns, "labels": {"pod-template-hash": template_hash},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": rs}]},
            "status": {"startTime": start, "conditions": conditions}}


def test_startup_time_is_the_slowest_ready_pod_of_each_deployment():
    pods = [pod("qwen-7d9f-a", "default", "qwen-7d9f", "7d9f", "2026-01-01T10:00:00Z", "2026-01-01T10:04:00Z"),
            pod("qwen-7d9f-b", "default", "qwen-7d9f", "7d9f", "2026-01-01T10:00:00Z", "2026-01-01T10:07:30Z"),
            pod("qwen-7d9f-c", "default", "qwen-7d9f", "7d9f", "2026-01-01T10:00:00Z", None),  # not ready: skipped
            pod("big-model-5c6b-x", "ml", "big-model-5c6b", "5c6b", "2026-01-01T10:00:00Z", "2026-01-01T10:01:00Z")]
    assert startup_times(pods) == {("default", "qwen"): 450.0, ("ml", "big-model"): 60.0}
