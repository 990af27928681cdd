"""Chart folders for tests that need what upstream's inference-charts render beyond the bundled copy.

Upstream (awslabs/ai-on-eks-charts inference-charts) renders, for the ray-vllm framework, a ConfigMap
with a fixed name, `ray-vllm-serve`, holding the Ray Serve script, labelled with the release's
service name; every ray-vllm release in a namespace renders the same object. Its content changes
only with the chart version, so two chart versions are two contents.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from ops.helm import BUNDLED_CHART

RAY_VLLM_SERVE = """\
{{- if eq .Values.inference.framework "ray-vllm" }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: ray-vllm-serve
  labels:
    "app.kubernetes.io/component": "{{ .Values.inference.serviceName }}"
data:
  vllm_serve.py: |
    # Ray Serve entry point of inference-charts {{ .Chart.Version }}
    import json
    from ray import serve
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.engine.async_llm_engine import AsyncLLMEngine
{{- end }}
"""


def chart_with_shared_configmap(folder: Path, version: str = "0.2.1") -> Path:
    """A copy of the bundled chart at `version` that also renders upstream's `ray-vllm-serve` ConfigMap."""
    target = folder / f"inference-charts-{version}"
    shutil.copytree(BUNDLED_CHART, target)
    meta = yaml.safe_load((target / "Chart.yaml").read_text())
    meta["version"] = meta["appVersion"] = version
    (target / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    (target / "templates" / "ray-vllm-serve.yaml").write_text(RAY_VLLM_SERVE)
    return target
