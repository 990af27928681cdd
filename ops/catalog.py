"""Model presets: what `/infer models` lists and `/infer deploy <preset>` renders.

A preset is one YAML file: `values:` is a values document for the inference chart (the same keys as
its values.yaml; the shipped ones are the upstream values files copied unchanged) and `preset:` is
what the bot needs on top: size, precision and placement. Everything else (framework, devices,
tensor parallelism, context length) is read from the values, so the two cannot disagree.

Shipped presets live in ops/data/presets/; users add or override them in a folder of their own
(config `catalog.presets_dir` or `INFER_BOT_PRESETS_DIR`), without touching the code.
"""

from __future__ import annotations

import copy
import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ops import instances
from ops.errors import OpsError

DATA_DIR = Path(__file__).parent / "data" / "presets"
ENV_DIR = "INFER_BOT_PRESETS_DIR"
PRESET_ID = re.compile(r"[a-z0-9][a-z0-9.-]{0,99}")  # the grammar's preset id (handlers/parse.py)

FRAMEWORKS = ("vllm", "ray-vllm", "triton-vllm", "lws-vllm", "aibrix", "diffusers", "nim-container")
PRECISIONS = ("fp32", "fp16", "bf16", "fp8", "int8", "int4", "mxfp4")

# Upstream values files that are not a model server. values-s3-copy-llama3-8b.yaml renders only the
# chart's S3 copy Job (weights from Hugging Face into a bucket): nothing to serve, size or price.
SKIPPED_UPSTREAM = {"s3-copy-llama3-8b": "a utility Job that copies model weights to S3, not a model server"}

# Chart defaults (inference-charts 0.2.1 values.yaml) that the derivations below depend on.
CHART_DEVICES = 1  # resources.gpu nvidia.com/gpu: 1 and resources.neuron aws.amazon.com/neuron: 1
CHART_STARTUP_PROBE = (60, 10)  # startupProbe failureThreshold × periodSeconds = 600 s
CHART_NIM_READINESS = (900, 10, 3)  # nim.readinessProbe initialDelaySeconds, periodSeconds, failureThreshold
VLLM_GPU_MEMORY_UTILIZATION = 0.9  # vLLM's own default when modelParameters leaves it out
DEVICE_RESOURCE = {"gpu": "nvidia.com/gpu", "neuron": "aws.amazon.com/neuron"}
INSTANCE_TYPE_LABELS = ("node.kubernetes.io/instance-type", "beta.kubernetes.io/instance-type")


@dataclass(frozen=True)
class Architecture:
    """What sizes the KV cache: per token it holds layers × kv_heads × head_dim × 2 (K and V) values."""

    layers: int
    kv_heads: int
    head_dim: int
    context: int  # the model's own max context: vLLM's max_model_len when the preset sets none


@dataclass(frozen=True)
class Preset:
    id: str
    model: str
    framework: str
    accelerator: str  # "gpu" | "neuron"
    params_billion: float  # every parameter resident in accelerator memory (MoE: all experts)
    precision: str
    devices: int  # accelerator devices each pod requests (GPUs, or Neuron chips)
    instance: str  # the default instance type
    max_model_len: int | None
    gpu_memory_utilization: float
    values: Mapping[str, Any]  # the chart values document as written in the file (a plain dict, your copy)
    source: str  # "upstream" or the path of the user's file
    description: str = ""
    task: str = "text"  # "text" | "image"
    tensor_parallel: int = 1  # modelParameters.tensorParallelSize (GPUs, or NeuronCores)
    pipeline_parallel: int = 1
    nodes: int = 1  # pods (each on its own node) per replica: pipelineParallelSize for lws-vllm
    startup_seconds: int = 600  # how long a pod may take to become ready before it counts as failing
    cpu_request: float | None = None  # the pod's requests, when the values set them
    memory_request_gib: float | None = None
    architecture: Architecture | None = None  # given in the preset file; else ops/fit.py's table
    service_name: str = ""

    def __hash__(self) -> int:
        return hash((self.id, self.source))  # `values` is a mapping: the generated hash would fail

    @property
    def units_per_node(self) -> int:
        """GPUs or NeuronCores one copy of the model spans on each node."""
        if self.framework == "lws-vllm":
            return self.tensor_parallel  # pipeline stages are the LWS group's pods
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def size(self) -> str:
        return f"{self.params_billion:g}B {self.precision}"


# ---- the file format -------------------------------------------------------------------------


class _Open(BaseModel):
    # Values documents keep whatever the chart accepts below the levels we read.
    model_config = ConfigDict(extra="allow", frozen=True, populate_by_name=True)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _ArchitectureIn(_Strict):
    layers: int = Field(ge=1)
    kv_heads: int = Field(ge=1)
    head_dim: int = Field(ge=1)
    context: int = Field(ge=1)


class _Meta(_Strict):
    params_billion: float = Field(gt=0, le=10_000)
    precision: Literal[PRECISIONS]  # type: ignore[valid-type]
    description: str = Field(default="", max_length=200)
    instance: str | None = None
    devices: int | None = Field(default=None, ge=1, le=64)
    task: Literal["text", "image"] | None = None
    startup_seconds: int | None = Field(default=None, ge=30, le=24 * 3600)
    architecture: _ArchitectureIn | None = None


class _ModelParameters(_Open):
    gpuMemoryUtilization: float | None = Field(default=None, gt=0, le=1)
    maxModelLen: int | None = Field(default=None, ge=1)
    tensorParallelSize: int | None = Field(default=None, ge=1, le=256)
    pipelineParallelSize: int | None = Field(default=None, ge=1, le=64)


class _Deployment(_Strict):
    replicas: int | None = Field(default=None, ge=0)
    minReplicas: int | None = Field(default=None, ge=0)
    maxReplicas: int | None = Field(default=None, ge=0)
    instanceType: str | None = None
    resources: dict[str, Any] | None = None
    nim: dict[str, Any] | None = None
    nodeSelector: dict[str, str] | None = None
    tolerations: list[Any] | None = None
    annotations: dict[str, Any] | None = None
    topologySpreadConstraints: dict[str, Any] | None = None
    podAffinity: dict[str, Any] | None = None
    startupProbe: dict[str, Any] | None = None


class _ModelServer(_Strict):
    image: dict[str, Any] | None = None
    deployment: _Deployment | None = None
    env: dict[str, Any] | None = None
    vllmVersion: str | float | None = None
    pythonVersion: str | float | None = None


class _Inference(_Strict):
    serviceName: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
    serviceNamespace: str | None = None
    accelerator: Literal["gpu", "neuron"] = "gpu"
    framework: Literal[FRAMEWORKS]  # type: ignore[valid-type]
    rayOptions: dict[str, Any] | None = None
    modelServer: _ModelServer | None = None


class _Values(_Strict):
    # The chart's top-level keys (values.yaml, plus imagePullSecrets that its NIM presets use):
    # a misspelt one would be ignored by helm, so it is refused here.
    model: str = Field(min_length=1)
    modelParameters: _ModelParameters | None = None
    inference: _Inference
    global_: dict[str, Any] | None = Field(default=None, alias="global")
    fluentbit: dict[str, Any] | None = None
    vllm: dict[str, Any] | None = None
    s3ModelCopy: dict[str, Any] | None = None
    serviceAccountName: str | None = None
    service: dict[str, Any] | None = None
    ingress: dict[str, Any] | None = None
    imagePullSecrets: list[Any] | None = None


class _File(_Strict):
    preset: _Meta
    values: _Values


# ---- loading ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class CatalogLoad:
    """Every preset that loaded, and one line per file that did not (file: key: what is wrong)."""

    presets: dict[str, Preset]
    problems: tuple[str, ...]


def preset_id(path: Path) -> str:
    stem = path.name.rsplit(".", 1)[0]
    # An upstream-style name (values-<id>.yaml) gives the same id as the upstream convention.
    return stem.removeprefix("values-")


def parse_preset(text: str, pid: str, source: str) -> Preset:
    """One preset file's text → Preset; OpsError names the file and the key when it is invalid."""
    label = "upstream preset " + pid if source == "upstream" else source
    if not PRESET_ID.fullmatch(pid):
        raise OpsError(f"{label}: `{pid}` is not a valid preset id: lowercase letters, digits, '-' and '.'")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise OpsError(f"{label}: not valid YAML: {exc}") from exc
    try:
        doc = _File.model_validate(raw)
    except ValidationError as exc:
        raise OpsError(f"{label}: {_errors(exc)}") from exc
    try:
        return _build(pid, source, doc, raw["values"])
    except _KeyProblem as exc:
        raise OpsError(f"{label}: {exc.key}: {exc.message}") from exc


def load_catalog_report(extra_dir: Path | str | None = None) -> CatalogLoad:
    """Shipped presets overlaid with the user's folder; invalid user files are reported, not fatal."""
    # Copies: callers merge options into `values`; the cached shipped presets must not change.
    presets = {pid: replace(p, values=copy.deepcopy(p.values)) for pid, p in _shipped().items()}
    problems: list[str] = []
    folder = _user_dir(extra_dir)
    if folder is not None:
        if not folder.is_dir():
            raise OpsError(f"the presets folder `{folder}` does not exist (catalog.presets_dir / {ENV_DIR}).")
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            try:
                preset = parse_preset(path.read_text(encoding="utf-8"), preset_id(path), str(path))
            except OpsError as exc:
                problems.append(exc.message)
                continue
            except (OSError, UnicodeDecodeError) as exc:
                problems.append(f"{path}: cannot be read: {exc}")
                continue
            presets[preset.id] = preset  # a user preset with an upstream id replaces it
    return CatalogLoad(presets=presets, problems=tuple(problems))


def load_catalog(extra_dir: Path | str | None = None) -> dict[str, Preset]:
    """Every preset by id. Any invalid user file refuses the whole load, naming the file and key:
    deploying from a catalog that silently lacks a preset someone wrote would be worse."""
    report = load_catalog_report(extra_dir)
    if report.problems:
        raise OpsError("invalid preset file(s): " + "; ".join(report.problems))
    return report.presets


def get_preset(preset: str, extra_dir: Path | str | None = None) -> Preset:
    catalog = load_catalog(extra_dir)
    if preset in catalog:
        return catalog[preset]
    close = difflib.get_close_matches(preset, list(catalog), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""
    raise OpsError(f"there is no preset `{preset}`.{hint} `models` lists them.")


@cache
def _shipped() -> MappingProxyType[str, Preset]:
    out = {}
    for path in sorted(DATA_DIR.glob("*.yaml")):
        preset = parse_preset(path.read_text(encoding="utf-8"), preset_id(path), "upstream")
        out[preset.id] = preset
    return MappingProxyType(out)


def _user_dir(extra_dir: Path | str | None) -> Path | None:
    chosen = extra_dir if extra_dir not in (None, "") else os.environ.get(ENV_DIR) or None
    return Path(chosen).expanduser() if chosen is not None else None


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join("global" if p == "global_" else str(p) for p in err["loc"]) or "(top)"
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)


# ---- derivations: everything the bot needs that the values already say --------------------------


class _KeyProblem(Exception):
    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key, self.message = key, message


def _build(pid: str, source: str, doc: _File, raw_values: dict[str, Any]) -> Preset:
    meta, values = doc.preset, doc.values
    inf = values.inference
    server = inf.modelServer or _ModelServer()
    dep = server.deployment or _Deployment()
    params = values.modelParameters or _ModelParameters()
    accelerator = inf.accelerator
    resources = (dep.resources or {}).get(accelerator) or {}
    res_key = f"values.inference.modelServer.deployment.resources.{accelerator}"
    nim_env = {k: str(v) for k, v in ((dep.nim or {}).get("env") or {}).items()}

    devices = meta.devices or _device_request(resources, accelerator, res_key) or CHART_DEVICES
    tp = params.tensorParallelSize or _int_env(nim_env, "NIM_TENSOR_PARALLEL_SIZE") or 1
    pp = params.pipelineParallelSize or 1
    nodes = pp if inf.framework == "lws-vllm" else 1
    cpu, memory = _host_requests(resources, res_key)

    instance_name = _instance(meta, dep, accelerator, devices, cpu, memory)
    inst = instances.instance(instance_name)
    units_per_node = tp if inf.framework == "lws-vllm" else tp * pp
    if units_per_node > devices * inst.cores_per_device:
        unit = "NeuronCores" if accelerator == "neuron" else "GPUs"
        raise _KeyProblem("values.modelParameters.tensorParallelSize",
                          f"tensor × pipeline parallelism needs {units_per_node} {unit} per pod but the pod "
                          f"requests {devices} device(s) ({devices * inst.cores_per_device} {unit})")

    arch = meta.architecture
    return Preset(
        id=pid, model=values.model, framework=inf.framework, accelerator=accelerator,
        params_billion=meta.params_billion, precision=meta.precision, devices=devices, instance=inst.name,
        max_model_len=params.maxModelLen or _int_env(nim_env, "NIM_MAX_MODEL_LEN"),
        gpu_memory_utilization=params.gpuMemoryUtilization or VLLM_GPU_MEMORY_UTILIZATION,
        values=raw_values, source=source, description=meta.description,
        task=meta.task or ("image" if inf.framework == "diffusers" else "text"),
        tensor_parallel=tp, pipeline_parallel=pp, nodes=nodes,
        startup_seconds=meta.startup_seconds or _startup_seconds(inf.framework, dep),
        cpu_request=cpu, memory_request_gib=memory,
        architecture=Architecture(arch.layers, arch.kv_heads, arch.head_dim, arch.context) if arch else None,
        service_name=inf.serviceName,
    )


def _device_request(resources: Mapping[str, Any], accelerator: str, key: str) -> int | None:
    name = DEVICE_RESOURCE[accelerator]
    for section in ("limits", "requests"):  # a limit is what the scheduler must find for extended resources
        value = (resources.get(section) or {}).get(name)
        if value is not None:
            try:
                count = int(str(value))
            except ValueError:
                raise _KeyProblem(f"{key}.{section}.{name}", f"{value!r} is not a whole number") from None
            if count < 1:
                raise _KeyProblem(f"{key}.{section}.{name}", "must be at least 1")
            return count
    return None


def _host_requests(resources: Mapping[str, Any], key: str) -> tuple[float | None, float | None]:
    requests = resources.get("requests") or resources.get("limits") or {}
    cpu = memory = None
    if requests.get("cpu") is not None:
        cpu = parse_cpu(requests["cpu"], f"{key}.requests.cpu")
    if requests.get("memory") is not None:
        memory = parse_memory_gib(requests["memory"], f"{key}.requests.memory")
    return cpu, memory


_QUANTITY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_MEMORY_UNITS = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
                 "Ti": 2**40}


def parse_cpu(value: Any, key: str = "cpu") -> float:
    """A Kubernetes CPU quantity (`4`, `"500m"`, `1.5`) in cores."""
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in ("", "m"):
        raise _KeyProblem(key, f"{value!r} is not a CPU quantity (e.g. 4 or 500m)")
    number = float(match.group(1))
    return number / 1000 if match.group(2) == "m" else number


def parse_memory_gib(value: Any, key: str = "memory") -> float:
    """A Kubernetes memory quantity (`16Gi`, `"60G"`, `512Mi`, bytes) in GiB."""
    match = _QUANTITY.match(str(value))
    if not match or match.group(2) not in _MEMORY_UNITS:
        raise _KeyProblem(key, f"{value!r} is not a memory quantity (e.g. 16Gi or 60G)")
    return float(match.group(1)) * _MEMORY_UNITS[match.group(2)] / 2**30


def _int_env(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    return int(value) if value is not None and value.isdigit() and int(value) > 0 else None


def _startup_seconds(framework: str, dep: _Deployment) -> int:
    if framework == "nim-container":
        # NIM containers have no startup probe in the chart: readiness starts after initialDelaySeconds.
        probe = (dep.nim or {}).get("readinessProbe") or {}
        delay, period, failures = CHART_NIM_READINESS
        return int(probe.get("initialDelaySeconds", delay)
                   + probe.get("periodSeconds", period) * probe.get("failureThreshold", failures))
    probe = dep.startupProbe or {}
    failures, period = CHART_STARTUP_PROBE
    return int(probe.get("failureThreshold", failures) * probe.get("periodSeconds", period))


def _instance(meta: _Meta, dep: _Deployment, accelerator: str, devices: int,
              cpu: float | None, memory: float | None) -> str:
    from_values = dep.instanceType or next(
        (v for k, v in (dep.nodeSelector or {}).items() if k in INSTANCE_TYPE_LABELS), None)
    if meta.instance and from_values and meta.instance != from_values:
        raise _KeyProblem("preset.instance", f"`{meta.instance}` contradicts the values' instance type "
                                             f"`{from_values}`; set it in one place")
    chosen = meta.instance or from_values
    key = "preset.instance" if meta.instance else "values.inference.modelServer.deployment.instanceType"
    if chosen is None:
        return _cheapest_host(accelerator, devices, cpu, memory)
    try:
        inst = instances.instance(chosen)
    except OpsError as exc:
        raise _KeyProblem(key, exc.message) from None
    if inst.accelerator_kind != accelerator:
        raise _KeyProblem(key, f"`{inst.name}` has {inst.accelerator_kind} accelerators, "
                               f"the values ask for {accelerator}")
    if inst.devices < devices:
        raise _KeyProblem(key, f"`{inst.name}` has {inst.devices} {accelerator} device(s), "
                               f"the pod requests {devices}")
    return inst.name


def _cheapest_host(accelerator: str, devices: int, cpu: float | None, memory: float | None) -> str:
    """Neither the preset nor the values name an instance: the cheapest that can host the pod.
    Whether the model fits in its memory is ops/fit.py's question, asked at deploy time."""
    candidates = [
        i for i in instances.load_instances().values()
        if i.accelerator_kind == accelerator and i.devices >= devices
        and (cpu is None or cpu <= i.vcpus) and (memory is None or memory <= i.memory_gib)
        and instances.DEFAULT_REGION in i.prices
    ]
    if not candidates:
        raise _KeyProblem("preset.instance", f"no instance type has {devices} {accelerator} device(s) "
                                             "and the requested CPU/memory; name one")
    return min(candidates, key=lambda i: (i.prices[instances.DEFAULT_REGION], i.name)).name
