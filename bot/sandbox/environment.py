"""The local sandbox: an emulated Kubernetes cluster with GPU nodes and model servers, a SQLite file,
and a config whose roles are the console's personas. Nothing outside this machine is touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.config import ClusterConfig, Config, OperationsConfig, Roles
from bot.sandbox.kubeapi import KubeEmulator

SEED = Path(__file__).with_name("seed.yaml")
NAMESPACE = "default"
CHANNEL = "C0SANDBOX"
PERSONAS = {"U0OPERATOR": "operator", "U0APPROVER": "approver", "U0ADMIN": "admin", "U0VIEWER": "viewer"}


@dataclass
class Sandbox:
    emulator: KubeEmulator
    config: Config
    database_url: str

    def stop(self) -> None:
        self.emulator.stop()


def node(spec: dict[str, Any]) -> dict[str, Any]:
    gpus = str(spec["gpus"])
    capacity = {"cpu": "4", "memory": "16Gi", "pods": "58", "nvidia.com/gpu": gpus}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": spec["name"], "labels": {
            "node.kubernetes.io/instance-type": spec["instance_type"],
            "kubernetes.io/os": "linux", "nvidia.com/gpu.present": "true"}},
        "status": {"capacity": capacity, "allocatable": capacity},
    }


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
    kubeconfig = emulator.write_kubeconfig(workdir / "kubeconfig", context="sandbox", namespace=NAMESPACE)
    config = Config(
        sandbox=True,
        roles=Roles(admin=["U0ADMIN"], approver=["U0APPROVER"], operator=["U0OPERATOR"]),
        clusters=[ClusterConfig(name="sandbox", kubeconfig=str(kubeconfig), context="sandbox",
                                namespace=NAMESPACE, approvals=1, rollout_timeout_seconds=20)],
        operations=OperationsConfig(poll_seconds=0.2),
    )
    return Sandbox(emulator=emulator, config=config, database_url=f"sqlite:///{workdir / 'sandbox.sqlite3'}")
