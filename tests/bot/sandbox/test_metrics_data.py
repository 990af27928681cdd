"""The generated metrics look like a default install (METRICS.md): what the sandbox serves and the tests read."""

from __future__ import annotations

from pathlib import Path

import yaml

from bot.sandbox.environment import SEED, dataset_node
from bot.sandbox.metrics_data import instance_id_of, sandbox_cases, sandbox_dataset, vllm_version_of
from tests.support.prometheus import ALLOWLISTED_CASES, CASES, NEURON_CASES, dataset_at


def names_and_labels(dataset) -> list[tuple[str, dict[str, str]]]:
    return [(name, labels) for name, labels, _ in dataset.series()]


def test_a_default_install_has_no_instance_type_series_but_every_node_has_its_provider_id():
    dataset = dataset_at(CASES)
    series = names_and_labels(dataset)
    assert not [labels for name, labels in series if name == "kube_node_labels"]
    info = {labels["node"]: labels["provider_id"] for name, labels in series if name == "kube_node_info"}
    for node in dataset.nodes():
        assert info[node.name] == f"aws:///us-west-2a/{instance_id_of(node.name)}"
    allowlisted = names_and_labels(dataset_at(ALLOWLISTED_CASES, node_labels=True))
    assert {labels["label_node_kubernetes_io_instance_type"] for name, labels in allowlisted
            if name == "kube_node_labels"} == {"g6.xlarge", "inf2.xlarge"}


def test_neuron_monitor_labels_name_the_instance_not_the_model_server():
    dataset = dataset_at(NEURON_CASES)
    model_pods = {p.pod.name for p in dataset.placements()}
    cores = [labels for name, labels in names_and_labels(dataset) if name == "neuroncore_utilization_ratio"]
    assert cores and all(labels["pod"] not in model_pods and labels["pod"].startswith("neuron-monitor-")
                         for labels in cores)
    assert {"instance_id", "instance_type", "neuroncore", "runtime_tag", "region", "availability_zone",
            "subnet_id"} <= set(cores[0])
    # The shared node's cores are numbered across its two runtimes, as on one instance.
    shared = sorted(int(c["neuroncore"]) for c in cores if c["instance_id"] == instance_id_of(
        "ip-10-0-7-1.us-west-2.compute.internal"))
    assert shared == [0, 1, 2, 3, 4, 5]
    # A neuron-monitor inside the model server's pod (the allow-listed variant) is scraped as that pod.
    sidecar = dataset_at(ALLOWLISTED_CASES)
    pods = {p.pod.name for p in sidecar.placements() if p.case.accelerator == "neuron"}
    assert {labels["pod"] for name, labels in names_and_labels(sidecar)
            if name == "neuroncore_utilization_ratio" and labels["pod"] in pods} == pods


def test_vllm_servers_export_the_names_of_their_version():
    series = names_and_labels(dataset_at(CASES))

    def tpot_names(model: str) -> set[str]:
        counts = ("vllm:time_per_output_token_seconds_count", "vllm:inter_token_latency_seconds_count")
        return {name.removesuffix("_count") for name, labels in series
                if name in counts and labels.get("model_name") == model}

    def reasons(model: str) -> set[str]:
        return {labels["finished_reason"] for name, labels in series
                if name == "vllm:request_success_total" and labels.get("model_name") == model}

    assert tpot_names("idle-llama") == {"vllm:time_per_output_token_seconds"}  # 0.10.2
    assert tpot_names("busy-qwen") == {"vllm:time_per_output_token_seconds",  # 0.11: both, the old deprecated
                                       "vllm:inter_token_latency_seconds"}
    assert tpot_names("healthy-mistral") == {"vllm:inter_token_latency_seconds"}  # 0.12: hidden
    assert reasons("idle-llama") == {"stop", "abort"} and reasons("healthy-mistral") == {"stop", "abort", "error"}


def test_the_sandbox_runs_its_model_servers_on_its_own_nodes_with_both_vllm_generations():
    seed = yaml.safe_load(Path(SEED).read_text(encoding="utf-8"))
    cases = sandbox_cases(seed["deployments"], "default", seed["nodes"])
    dataset = sandbox_dataset(cases)
    seed_nodes = {n["name"]: n["instance_type"] for n in seed["nodes"]}
    assert all(p.node in seed_nodes and seed_nodes[p.node] == p.case.instance_type for p in dataset.placements())
    assert {c.vllm for c in cases} == {"0.10.2", "0.11.0"}
    assert not [1 for name, _ in names_and_labels(dataset) if name == "kube_node_labels"]
    assert vllm_version_of("public.ecr.aws/deep-learning-containers/vllm:0.10.2-gpu-py312-ec2") == "0.10.2"
    assert vllm_version_of("vllm/vllm-openai:v0.11.0") == "0.11.0"
    # The Node objects the emulator gets for a data set's node: the instance type and the EC2 instance.
    spec = next(n for n in dataset_at(NEURON_CASES).nodes())
    node = dataset_node(spec)
    assert node["metadata"]["labels"]["node.kubernetes.io/instance-type"] == "inf2.24xlarge"
    assert node["spec"]["providerID"] == spec.provider_id
    assert node["status"]["capacity"]["aws.amazon.com/neuroncore"] == "12"


def test_the_sandbox_model_servers_label_their_series_with_the_model_they_serve():
    # vLLM's `model_name` is the served model name: the id given to `vllm serve` (upstream's chart sets
    # no --served-model-name), which is also what the Grafana link reads from the pod's command line.
    seed = yaml.safe_load(Path(SEED).read_text(encoding="utf-8"))
    dataset = sandbox_dataset(sandbox_cases(seed["deployments"], "default", seed["nodes"]))
    served = {labels["model_name"] for name, labels in names_and_labels(dataset) if name.startswith("vllm:")}
    assert served == {d["model"] for d in seed["deployments"]}
    assert not served & {d["name"] for d in seed["deployments"]}
