"""Will a model fit on an instance? An estimate of accelerator memory per replica, before any card.

    required = weights + KV cache + overhead
    weights  = parameters × bytes per parameter (fp32 4, fp16/bf16 2, fp8/int8 1, int4/mxfp4 0.5)
    KV cache = layers × kv_heads × head_dim × 2 (K and V) × 2 bytes × maxModelLen tokens  (batch 1:
               vLLM refuses to start unless one sequence of maxModelLen fits in the cache)
    overhead = 1.5 GiB per GPU (CUDA context, cuBLAS workspaces, activations, CUDA graphs: vLLM
               measures 1–2 GiB on one GPU), 1 GiB per Neuron chip (runtime and scratchpad),
               plus 3 GiB of activations for image pipelines (VAE decode at 1024², the peak)

compared, per GPU or per NeuronCore, against memory × gpuMemoryUtilization — the share vLLM is
allowed to take, and what it divides between exactly these three. With tensor parallelism t the
weights and the KV cache are split t ways (LeaderWorkerSet: t per node × pipeline stages); the
overhead is paid on every device. Neuron tensor parallelism counts NeuronCores (2 per chip, each
with half of the chip's 32 GiB).

It is an estimate: it ignores the vocabulary's logits buffer, fragmentation and quantisation
scales, so a fit within a few percent of the limit can still OOM (lower gpuMemoryUtilization or a
larger instance, as the ai-on-eks guidance says). Everything is pure: no I/O besides the data tables.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, replace

from ops import instances
from ops.catalog import Architecture, Preset
from ops.errors import OpsError
from ops.instances import Instance

GIB = 2**30
BYTES_PER_PARAM = {"fp32": 4.0, "fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "mxfp4": 0.5}
OVERHEAD_PER_DEVICE_GIB = {"gpu": 1.5, "neuron": 1.0}
IMAGE_ACTIVATIONS_GIB = 3.0
# Pod requests are compared with what Kubernetes can allocate: kubelet and system reservations
# and the eviction threshold take roughly this share of a node (EKS AMIs on GPU instances).
ALLOCATABLE_MEMORY = 0.9
ALLOCATABLE_CPU = 0.95

# Without a known architecture: 32 KiB of KV cache per token per billion parameters (bf16). Real
# GQA models need less (Llama 3 8B: 16 KiB/B), multi-head-attention models more (Llama 2 13B:
# 62 KiB/B); the estimate is flagged so the message says so. Give `preset.architecture` to be exact.
FALLBACK_KV_KIB_PER_TOKEN_PER_B = 32
FALLBACK_CONTEXT = 8192

# The shipped models' attention shapes (their config.json): layers, KV heads, head dim, context.
# Keyed by the lowercase Hugging Face repository name without the owner, so mirrors match too.
ARCHITECTURES: dict[str, Architecture] = {
    "llama-3.2-1b": Architecture(16, 8, 64, 131072),
    "qwen3-1.7b": Architecture(28, 8, 128, 40960),
    "deepseek-r1-distill-llama-8b": Architecture(32, 8, 128, 131072),
    "llama-3.1-8b-instruct": Architecture(32, 8, 128, 131072),
    "meta-llama-3-8b-instruct": Architecture(32, 8, 128, 8192),
    "llama3-8b-instruct": Architecture(32, 8, 128, 8192),
    "llama-2-13b-chat-hf": Architecture(40, 40, 128, 4096),
    "meta-llama-3-70b-instruct": Architecture(80, 8, 128, 8192),
    "mistral-small-24b-instruct-2501": Architecture(40, 8, 128, 32768),
    # Half of gpt-oss's layers use a 128-token sliding window; counting all 24 is conservative.
    "gpt-oss-20b": Architecture(24, 8, 64, 131072),
    # Llama 4 uses chunked attention in 3 of 4 layers; counting all 48 is conservative.
    "llama-4-scout-17b-16e-instruct": Architecture(48, 8, 128, 10_485_760),
    "llama-4-scout-17b-16e-instruct-int4": Architecture(48, 8, 128, 10_485_760),
    "qwen3-coder-480b-a35b-instruct": Architecture(62, 8, 128, 262144),
}


@dataclass(frozen=True)
class FitEstimate:
    model: str
    instance: str
    region: str
    accelerator_kind: str  # of the instance
    unit: str  # what tensor parallelism counts: "GPU" | "NeuronCore"
    precision: str
    params_billion: float
    weights_gib: float
    kv_cache_gib: float
    kv_tokens: int
    kv_estimated: bool  # True: no known architecture, the KV cache is estimated from the size
    overhead_gib: float  # every device's overhead plus image activations
    required_gib: float  # weights + KV cache + overhead, one replica
    available_gib: float  # units used × memory per unit × gpuMemoryUtilization
    per_unit_required_gib: float
    per_unit_available_gib: float
    gpu_memory_utilization: float
    tensor_parallel: int  # units per node this estimate uses: the smallest that fits, or as configured
    tensor_parallel_needed: int | None  # the smallest that fits on this instance; None: none does
    nodes: int  # per replica (LeaderWorkerSet group size)
    devices: int  # accelerator devices each pod requests
    fits: bool
    host_problem: str | None  # pod CPU/memory requests the node cannot hold
    replicas: int
    hourly_price: float | None  # one instance, on demand, in `region`
    hourly_cost: float | None  # replicas × nodes × price
    smallest_fit: str | None  # the cheapest instance of the model's accelerator kind that fits (maybe this one)
    smallest_fit_tensor_parallel: int | None
    smallest_fit_hourly_cost: float | None  # replicas × nodes × its price
    message: str

    @property
    def needs_tensor_parallel(self) -> bool:
        return (self.tensor_parallel_needed or 1) > 1


def architecture_for(model: str) -> Architecture | None:
    return ARCHITECTURES.get(model.rsplit("/", 1)[-1].lower())


def weights_gib(params_billion: float, precision: str) -> float:
    if precision not in BYTES_PER_PARAM:
        raise OpsError(f"unknown weight precision `{precision}`; one of {', '.join(BYTES_PER_PARAM)}")
    return params_billion * 1e9 * BYTES_PER_PARAM[precision] / GIB


def kv_cache_gib(params_billion: float, precision: str, max_model_len: int | None,
                 architecture: Architecture | None) -> tuple[float, int, bool]:
    """(GiB, tokens, estimated) for one sequence of max_model_len tokens.

    The cache is in the model's activation dtype: fp32 for fp32 models, else 16-bit (vLLM's
    kv_cache_dtype=auto; quantised weights still compute in bf16)."""
    kv_bytes = 4 if precision == "fp32" else 2
    if architecture is not None:
        tokens = max_model_len or architecture.context
        per_token: float = architecture.layers * architecture.kv_heads * architecture.head_dim * 2 * kv_bytes
        return per_token * tokens / GIB, tokens, False
    tokens = max_model_len or FALLBACK_CONTEXT
    per_token = FALLBACK_KV_KIB_PER_TOKEN_PER_B * 1024 * params_billion * kv_bytes / 2
    return per_token * tokens / GIB, tokens, True


def tensor_parallel_choices(inst: Instance) -> list[int]:
    """Sizes one node can shard over: powers of two, what attention head counts divide (a preset may
    still configure another size, e.g. 20 NeuronCores for Llama 2's 40 heads; that is checked as given)."""
    return [2**k for k in range(int(math.log2(inst.cores)) + 1)]


@dataclass(frozen=True)
class _Problems:
    kind: str | None  # wrong kind of accelerator
    devices: str | None  # the pod asks for more devices (or tensor parallelism) than a node has
    host: str | None  # CPU/memory requests
    memory_ok: bool


@dataclass(frozen=True)
class _Need:
    weights: float
    kv: float
    kv_tokens: int
    kv_estimated: bool
    extra: float  # per replica, not split: image activations
    image: bool


def _per_unit(need: _Need, inst: Instance, tp: int, nodes: int) -> float:
    units = tp * nodes
    return (need.weights + need.kv) / units + OVERHEAD_PER_DEVICE_GIB[inst.accelerator_kind] / inst.cores_per_device \
        + need.extra / units


def _unit_budget(inst: Instance, utilization: float) -> float:
    return inst.memory_per_device_gib / inst.cores_per_device * utilization


def _host_problem(inst: Instance, cpu: float | None, memory_gib: float | None) -> str | None:
    if cpu is not None and cpu > inst.vcpus * ALLOCATABLE_CPU:
        return (f"the pod requests {cpu:g} vCPUs; `{inst.name}` has {inst.vcpus} "
                f"(about {inst.vcpus * ALLOCATABLE_CPU:.1f} allocatable)")
    if memory_gib is not None and memory_gib > inst.memory_gib * ALLOCATABLE_MEMORY:
        return (f"the pod requests {memory_gib:.1f} GiB of memory; `{inst.name}` has {inst.memory_gib:g} GiB "
                f"(about {inst.memory_gib * ALLOCATABLE_MEMORY:.1f} allocatable)")
    return None


def _smallest_tp(need: _Need, inst: Instance, utilization: float, nodes: int) -> int | None:
    budget = _unit_budget(inst, utilization)
    # Image pipelines (diffusers, NIM) run on one device: they do not shard.
    choices = [1] if need.image else tensor_parallel_choices(inst)
    return next((tp for tp in choices if _per_unit(need, inst, tp, nodes) <= budget), None)


def _price(name: str, region: str) -> float | None:
    try:
        return instances.hourly_price(name, region)
    except OpsError:
        return None


def estimate(*, params_billion: float, precision: str, instance: str, model: str = "",
             max_model_len: int | None = None, gpu_memory_utilization: float = 0.9,
             architecture: Architecture | None = None, task: str = "text", accelerator: str | None = None,
             tensor_parallel: int | None = None, devices: int | None = None, nodes: int = 1,
             replicas: int = 1, region: str = instances.DEFAULT_REGION, cpu_request: float | None = None,
             memory_request_gib: float | None = None) -> FitEstimate:
    """Fit of one model on `instance`.

    tensor_parallel: units per node the deployment is configured with; None lets the estimate pick the
    smallest that fits. devices: accelerator devices the pod requests (default: what that TP needs).
    accelerator: "gpu"/"neuron" the model is built for (default: the instance's)."""
    if not 0 < gpu_memory_utilization <= 1:
        raise OpsError(f"gpuMemoryUtilization must be in (0, 1], not {gpu_memory_utilization}")
    if replicas < 0 or nodes < 1:
        raise OpsError("replicas must be ≥ 0 and nodes ≥ 1")
    inst = instances.instance(instance)
    arch = architecture or (architecture_for(model) if model else None)
    weights = weights_gib(params_billion, precision)
    if task == "image":
        kv, tokens, kv_est, extra = 0.0, 0, False, IMAGE_ACTIVATIONS_GIB
    else:
        (kv, tokens, kv_est), extra = kv_cache_gib(params_billion, precision, max_model_len, arch), 0.0
    need = _Need(weights, kv, tokens, kv_est, extra, task == "image")

    needed_tp = _smallest_tp(need, inst, gpu_memory_utilization, nodes)
    tp = tensor_parallel or needed_tp or (1 if need.image else max(tensor_parallel_choices(inst)))
    pod_devices = devices or math.ceil(tp / inst.cores_per_device)
    per_unit = _per_unit(need, inst, tp, nodes)
    budget = _unit_budget(inst, gpu_memory_utilization)
    kind = accelerator or inst.accelerator_kind
    host = _host_problem(inst, cpu_request, memory_request_gib)

    problems = _Problems(
        kind=(f"`{inst.name}` has {_kind_name(inst.accelerator_kind)}; this model is built for {_kind_name(kind)}"
              if kind != inst.accelerator_kind else None),
        devices=(f"the pod requests {pod_devices} {_device_word(inst, pod_devices)}; `{inst.name}` has {inst.devices}"
                 if pod_devices > inst.devices else
                 f"tensor parallelism {tp} needs {tp} {_unit(inst)}s per node; `{inst.name}` has {inst.cores}"
                 if tp > inst.cores else None),
        host=host, memory_ok=per_unit <= budget)
    if problems.kind:
        problems = replace(problems, devices=None)  # moot on the wrong kind of accelerator
    fits = problems.memory_ok and not (problems.kind or problems.devices or problems.host)

    price = _price(inst.name, region)
    # Searched even when it fits: a cheaper instance that also fits is worth a line on the card.
    alt = _cheapest_fit(need, kind, gpu_memory_utilization, nodes, region,
                                          cpu_request, memory_request_gib)
    alt_cost = alt[2] * replicas * nodes if alt else None
    result = FitEstimate(
        model=model, instance=inst.name, region=region, accelerator_kind=inst.accelerator_kind, unit=_unit(inst),
        precision=precision, params_billion=params_billion, weights_gib=weights, kv_cache_gib=kv, kv_tokens=tokens,
        kv_estimated=kv_est,
        overhead_gib=OVERHEAD_PER_DEVICE_GIB[inst.accelerator_kind] / inst.cores_per_device * tp * nodes + extra,
        required_gib=per_unit * tp * nodes, available_gib=budget * tp * nodes,
        per_unit_required_gib=per_unit, per_unit_available_gib=budget,
        gpu_memory_utilization=gpu_memory_utilization, tensor_parallel=tp, tensor_parallel_needed=needed_tp,
        nodes=nodes, devices=pod_devices, fits=fits, host_problem=host, replicas=replicas, hourly_price=price,
        hourly_cost=price * replicas * nodes if price is not None else None,
        smallest_fit=alt[0] if alt else None, smallest_fit_tensor_parallel=alt[1] if alt else None,
        smallest_fit_hourly_cost=alt_cost, message="",
    )
    return _with_message(result, inst, problems, kind, configured=tensor_parallel is not None)


def check_preset(preset: Preset, instance: str | None = None, *, replicas: int = 1,
                 region: str = instances.DEFAULT_REGION) -> FitEstimate:
    """The preset as configured (its devices and tensor parallelism) on `instance` (default: its own)."""
    return estimate(
        params_billion=preset.params_billion, precision=preset.precision, instance=instance or preset.instance,
        model=preset.model, max_model_len=preset.max_model_len,
        gpu_memory_utilization=preset.gpu_memory_utilization, architecture=preset.architecture,
        task=preset.task, accelerator=preset.accelerator, tensor_parallel=preset.units_per_node,
        devices=preset.devices, nodes=preset.nodes, replicas=replicas, region=region,
        cpu_request=preset.cpu_request, memory_request_gib=preset.memory_request_gib,
    )


def cheapest_allowed(preset: Preset, allowed: Collection[str], *, replicas: int = 1,
                     region: str = instances.DEFAULT_REGION) -> FitEstimate | None:
    """The preset on the cheapest of `allowed` instance types (e.g. what Karpenter's NodePools may
    launch) that fits it as configured; None when none does."""
    table = instances.load_instances()
    priced = sorted((table[n].prices[region], n) for n in allowed if n in table and region in table[n].prices)
    for _, name in priced:
        estimate = check_preset(preset, name, replicas=replicas, region=region)
        if estimate.fits:
            return estimate
    return None


def _cheapest_fit(need: _Need, kind: str, utilization: float, nodes: int, region: str,
                  cpu: float | None, memory: float | None) -> tuple[str, int, float] | None:
    best: tuple[float, str, int] | None = None
    for inst in instances.load_instances().values():
        price = inst.prices.get(region)
        if inst.accelerator_kind != kind or price is None or _host_problem(inst, cpu, memory):
            continue
        tp = _smallest_tp(need, inst, utilization, nodes)
        if tp is not None and (best is None or (price, inst.name) < (best[0], best[1])):
            best = (price, inst.name, tp)
    return (best[1], best[2], best[0]) if best else None


# ---- the sentence a person reads --------------------------------------------------------------


def _kind_name(kind: str) -> str:
    return "NVIDIA GPUs" if kind == "gpu" else "AWS Neuron accelerators (inf2/trn1)" if kind == "neuron" else kind


def _unit(inst: Instance) -> str:
    return "NeuronCore" if inst.accelerator_kind == "neuron" else "GPU"


def _device_word(inst: Instance, n: int) -> str:
    word = "Neuron device" if inst.accelerator_kind == "neuron" else "GPU"
    return word if n == 1 else word + "s"


def _money(value: float | None) -> str:
    return f"${value:,.2f}/h" if value is not None else "no price known"


def _with_message(r: FitEstimate, inst: Instance, problems: _Problems, kind: str, *,
                  configured: bool) -> FitEstimate:
    units = r.tensor_parallel * r.nodes
    where = f"`{r.instance}` ({inst.hardware}" + (f", {r.nodes} nodes" if r.nodes > 1 else "") + ")"
    kv = (f"KV cache {r.kv_cache_gib:.1f} ({r.kv_tokens} tokens{', estimated from size' if r.kv_estimated else ''})"
          if r.kv_tokens else "no KV cache")
    per_unit = f" ({r.per_unit_required_gib:.1f} of {r.per_unit_available_gib:.1f} per {r.unit})" if units > 1 else ""
    numbers = (f"~{r.required_gib:.1f} GiB needed of {r.available_gib:.1f} usable{per_unit} at gpuMemoryUtilization "
               f"{r.gpu_memory_utilization:g}; weights {r.weights_gib:.1f} + {kv} + overhead {r.overhead_gib:.1f} GiB")
    n = r.nodes * r.replicas
    cost = (f"{_money(r.hourly_price)} × {n} = {_money(r.hourly_cost)}" if r.hourly_cost is not None and n != 1
            else _money(r.hourly_cost))
    spread = f" with tensor parallelism {r.tensor_parallel} across {units} {r.unit}s" if units > 1 else ""
    if r.fits:
        lines = [f"Fits on {where}{spread}: {numbers}."]
        if not configured and r.tensor_parallel > 1:
            lines.append(f"It fits only with tensor parallelism {r.tensor_parallel} "
                         f"(modelParameters.tensorParallelSize={r.tensor_parallel}).")
        lines.append(f"Cost: {cost} on demand in {r.region}." if r.hourly_cost is not None
                     else f"Cost: no on-demand price known for `{r.instance}` in {r.region}.")
        if (r.smallest_fit and r.smallest_fit != r.instance and r.hourly_cost is not None
                and r.smallest_fit_hourly_cost is not None and r.smallest_fit_hourly_cost < r.hourly_cost):
            lines.append(f"Cheapest instance that fits: {_alternative(r)}, {_money(r.smallest_fit_hourly_cost)}.")
        return replace(r, message=" ".join(lines))

    lines = [_sentence(p) for p in (problems.kind, problems.devices, problems.host) if p]
    if not problems.memory_ok:
        how = ("" if r.tensor_parallel == 1 else f"with tensor parallelism {r.tensor_parallel}" if configured
               else f"even with tensor parallelism {r.tensor_parallel}")
        lines.append(f"Does not fit on {where}{' ' + how if how else ''}: {numbers}.")
    needed = r.tensor_parallel_needed
    if needed is not None and not problems.kind and not problems.host and needed != r.tensor_parallel:
        pod = math.ceil(needed / inst.cores_per_device)
        ask = f" and request {pod} {_device_word(inst, pod)}" if pod != r.devices else ""
        lines.append(f"It fits on `{r.instance}` with tensor parallelism {needed} across {needed} {r.unit}s "
                     f"(set modelParameters.tensorParallelSize={needed}{ask}).")
    if r.smallest_fit and r.smallest_fit != r.instance:
        lines.append(f"Smallest instance that fits: {_alternative(r)}, {_money(r.smallest_fit_hourly_cost)}"
                     f" for {r.replicas} replica{'s' if r.replicas != 1 else ''} in {r.region}.")
    elif not r.smallest_fit:
        lines.append(f"No instance in the table fits it on {_kind_name(kind)} in {r.region}.")
    return replace(r, message=" ".join(lines))


def _alternative(r: FitEstimate) -> str:
    tp = r.smallest_fit_tensor_parallel or 1
    spread = f", tensor parallelism {tp}" if tp > 1 else ""
    return f"`{r.smallest_fit}` ({instances.instance(r.smallest_fit or '').hardware}{spread})"


def _sentence(text: str) -> str:
    return text[0].upper() + text[1:] + "."
