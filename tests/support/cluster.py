"""What the test cluster holds: a vLLM model server as the inference chart renders it, and the
requests the API server received for it."""

from __future__ import annotations

from typing import Any

from bot.sandbox.environment import deployment
from bot.sandbox.kubeapi import KubeEmulator

IMAGE = "public.ecr.aws/deep-learning-containers/vllm:0.10.2-gpu-py312-ec2"


def model(name: str, replicas: int = 1, gpus: int = 1, image: str = IMAGE) -> dict[str, Any]:
    return deployment({"name": name, "model": "Qwen/Qwen3-1.7B", "image": image, "replicas": replicas,
                       "gpus": gpus})


def scale_patches(kube: KubeEmulator, name: str = "qwen") -> list:
    """PATCHes of a Deployment's scale subresource the API server received."""
    return [r for r in kube.requests if r[0] == "PATCH" and r[1].endswith(f"/deployments/{name}/scale")]
