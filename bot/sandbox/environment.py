"""The local sandbox: an emulated Kubernetes cluster with GPU nodes and model servers, a real
Prometheus over a generated day of their metrics (when the `prometheus` package is installed), a
SQLite file, and a config whose roles are the console's personas. Nothing outside this machine is
touched.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bot.config import ChartConfig, ClusterConfig, Config, MetricsConfig, OperationsConfig, Roles
from bot.sandbox import metrics_data, operators
from bot.sandbox.kubeapi import KubeEmulator
from bot.sandbox.metrics_data import (
    SANDBOX_RATE_WINDOW,
    PrometheusServer,
    find_binaries,
    free_port,
    sandbox_cases,
    sandbox_dataset,
    serve_dataset,
)
from bot.sandbox.model_server import ModelServer
from ops import instances
from ops.errors import OpsError
from ops.helm import BUNDLED_CHART

SEED = Path(__file__).with_name("seed.yaml")
NAMESPACE = "default"
CHANNEL = "C0SANDBOX"
PERSONAS = {"U0OPERATOR": "operator", "U0APPROVER": "approver", "U0ADMIN": "admin", "U0VIEWER": "viewer"}


@dataclass
class Sandbox:
    emulator: KubeEmulator
    config: Config
    database_url: str
    prometheus: PrometheusServer | None = None
    notes: list[str] = field(default_factory=list)  # what the console tells the user at start
    models: ModelServer | None = None  # answers `/infer test` for every release

    def stop(self) -> None:
        if self.prometheus is not None:
            self.prometheus.stop()
        if self.models is not None:
            self.models.stop()
        self.emulator.stop()


def node(spec: dict[str, Any]) -> dict[str, Any]:
    """A Node as EKS registers one: instance-type and zone labels, `spec.providerID` naming the EC2
    instance (what kube-state-metrics' kube_node_info carries), accelerators as the device plugins
    advertise them (`gpus`, or `neuron_devices` with `neuron_cores`)."""
    capacity = {"cpu": "4", "memory": "16Gi", "pods": "58"}
    labels = {"node.kubernetes.io/instance-type": spec["instance_type"],
              "topology.kubernetes.io/zone": metrics_data.ZONE, "topology.kubernetes.io/region": metrics_data.REGION,
              "kubernetes.io/os": "linux"}
    if spec.get("neuron_devices"):
        capacity.update({"aws.amazon.com/neuron": str(spec["neuron_devices"]),
                         "aws.amazon.com/neuroncore": str(spec.get("neuron_cores", 2 * spec["neuron_devices"]))})
    else:
        capacity["nvidia.com/gpu"] = str(spec["gpus"])
        labels["nvidia.com/gpu.present"] = "true"
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": spec["name"], "labels": labels},
        "spec": {"providerID": metrics_data.provider_id_of(spec["name"])},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


def dataset_node(spec: metrics_data.NodeSpec) -> dict[str, Any]:
    """The Node object of a generated data set's node (its accelerators as the instance table says)."""
    try:
        inst = instances.instance(spec.instance_type)
        devices, cores = inst.devices, inst.cores
    except OpsError:
        devices, cores = 1, 2
    if spec.accelerator == "neuron":
        return node({"name": spec.name, "instance_type": spec.instance_type, "neuron_devices": devices,
                     "neuron_cores": cores})
    return node({"name": spec.name, "instance_type": spec.instance_type, "gpus": devices})


def deployment(spec: dict[str, Any], namespace: str = NAMESPACE) -> dict[str, Any]:
    """A Deployment shaped like the inference chart's vllm template renders one."""
    labels = {"app.kubernetes.io/name": spec["name"], "app.kubernetes.io/component": "inference",
              "app.kubernetes.io/managed-by": "Helm"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": spec["name"], "namespace": namespace, "labels": labels},
        "spec": {
            "replicas": spec["replicas"],
            "selector": {"matchLabels": {"app.kubernetes.io/name": spec["name"]}},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{
                    "name": "vllm", "image": spec["image"],
                    "args": ["--model", spec["model"], "--port", "8000"],
                    "ports": [{"name": "http", "containerPort": 8000}],
                    "resources": {"limits": {"nvidia.com/gpu": str(spec["gpus"])},
                                  "requests": {"nvidia.com/gpu": str(spec["gpus"])}},
                }]},
            },
        },
    }


def start_sandbox(workdir: Path) -> Sandbox:
    seed = yaml.safe_load(SEED.read_text(encoding="utf-8"))
    emulator = KubeEmulator()
    emulator.start()
    for spec in seed["nodes"]:
        emulator.put(node(spec))
    for spec in seed["deployments"]:
        emulator.put(deployment(spec))
    operators.install(emulator, NAMESPACE)  # LWS, KubeRay, KEDA CRDs and node provisioning: every preset deploys
    kubeconfig = emulator.write_kubeconfig(workdir / "kubeconfig", context="sandbox", namespace=NAMESPACE)
    prometheus, prometheus_url, notes = _start_prometheus(seed["deployments"], seed["nodes"], workdir / "prometheus")
    models = ModelServer()
    config = Config(
        sandbox=True,
        roles=Roles(admin=["U0ADMIN"], approver=["U0APPROVER"], operator=["U0OPERATOR"]),
        clusters=[ClusterConfig(name="sandbox", kubeconfig=str(kubeconfig), context="sandbox",
                                namespace=NAMESPACE, approvals=1, rollout_timeout_seconds=20,
                                prometheus_url=prometheus_url, inference_url=models.url)],
        operations=OperationsConfig(poll_seconds=0.2),
        chart=ChartConfig(path=str(BUNDLED_CHART)),  # the project's inference chart: no chart download
        # The generated data is sampled every 2 minutes: rate() needs a window spanning a few samples,
        # and a local Prometheus that does not answer within 5 s is not going to.
        metrics=MetricsConfig(rate_window_seconds=SANDBOX_RATE_WINDOW, timeout_seconds=5),
    )
    return Sandbox(emulator=emulator, config=config, database_url=f"sqlite:///{workdir / 'sandbox.sqlite3'}",
                   prometheus=prometheus, notes=notes, models=models)


def _start_prometheus(deployments: list[dict[str, Any]], nodes: list[dict[str, Any]], workdir: Path
                      ) -> tuple[PrometheusServer | None, str, list[str]]:
    """A real Prometheus over a generated day of the seed deployments' metrics, when it is installed.

    Without it the cluster still gets a `prometheus_url` (a loopback port nobody listens on), so
    that digests and `/infer metrics` show what they show for a Prometheus that is down, and the
    console says why at start instead of leaving the user to guess.
    """
    if find_binaries() is None:
        return None, f"http://127.0.0.1:{free_port()}", [
            ":warning: No Prometheus in this sandbox: `prometheus`/`promtool` are not on PATH "
            "(Debian: `apt-get install -y --no-install-recommends prometheus`). "
            "Until then `/infer digest now` and `/infer metrics` report Prometheus as unreachable."]
    try:
        server = serve_dataset(sandbox_dataset(sandbox_cases(deployments, NAMESPACE, nodes)), workdir)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        return None, f"http://127.0.0.1:{free_port()}", [
            f":warning: The sandbox's Prometheus did not start ({exc}); digests report it as unreachable."]
    names = ", ".join(d["name"] for d in deployments)
    return server, server.url, [f"Prometheus at {server.url} holds a generated day of metrics for {names}: "
                                "try `/infer digest now` or `/infer metrics <name>`."]
