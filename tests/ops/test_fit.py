"""The hardware fit check against hand-computed cases.

Numbers by hand (GiB = 2**30 bytes):
- 24 B bf16 weights: 24e9 × 2 / 2**30 = 44.70 GiB ("about 48 GB").
- Fallback KV cache: 32 KiB/token/B × 24 B × 8192 tokens = 6.00 GiB.
- One L40S at 0.9: 48 × 0.9 = 43.2 GiB < 44.70 of weights alone: cannot fit.
- 4 × A10G at 0.9, TP 4: (44.70 + 6.00) / 4 + 1.5 = 14.18 GiB per GPU ≤ 21.6; TP 2: 26.85 > 21.6.
"""

from __future__ import annotations

import pytest

from ops import fit, instances
from ops.catalog import Architecture, load_catalog
from ops.errors import OpsError
from ops.fit import check_preset, estimate

GIB = 2**30


@pytest.fixture(scope="module")
def presets():
    return load_catalog()


def test_weights_by_precision():
    assert fit.weights_gib(24, "bf16") == pytest.approx(48e9 / GIB)
    assert fit.weights_gib(24, "fp16") == fit.weights_gib(24, "bf16")
    assert fit.weights_gib(8, "fp32") == pytest.approx(32e9 / GIB)
    assert fit.weights_gib(8, "fp8") == fit.weights_gib(8, "int8") == pytest.approx(8e9 / GIB)
    assert fit.weights_gib(8, "int4") == fit.weights_gib(8, "mxfp4") == pytest.approx(4e9 / GIB)
    with pytest.raises(OpsError, match="unknown weight precision"):
        fit.weights_gib(8, "fp12")


def test_kv_cache_from_the_architecture():
    # Llama 3 8B: 32 layers × 8 KV heads × 128 × 2 (K, V) × 2 bytes = 131072 bytes = 128 KiB per token.
    kv, tokens, estimated = fit.kv_cache_gib(8.03, "bf16", 8192, Architecture(32, 8, 128, 131072))
    assert (kv, tokens, estimated) == (pytest.approx(1.0), 8192, False)
    # No maxModelLen: vLLM uses the model's own context.
    kv, tokens, _ = fit.kv_cache_gib(8.03, "bf16", None, Architecture(32, 8, 128, 131072))
    assert (kv, tokens) == (pytest.approx(16.0), 131072)
    # Unknown architecture: 32 KiB per token per billion parameters, flagged as an estimate.
    kv, tokens, estimated = fit.kv_cache_gib(24, "bf16", 8192, None)
    assert (kv, tokens, estimated) == (pytest.approx(6.0), 8192, True)
    assert fit.kv_cache_gib(24, "bf16", None, None)[1] == fit.FALLBACK_CONTEXT


def test_architecture_table_matches_mirrors_by_repository_name():
    assert fit.architecture_for("NousResearch/Llama-3.2-1B") == fit.architecture_for("meta-llama/Llama-3.2-1B")
    assert fit.architecture_for("Qwen/Qwen3-1.7B") == Architecture(28, 8, 128, 40960)
    assert fit.architecture_for("someone/unknown-model") is None


def test_24b_bf16_does_not_fit_one_48gb_l40s():
    r = estimate(params_billion=24, precision="bf16", instance="g6e.xlarge", max_model_len=8192,
                 gpu_memory_utilization=0.9)
    assert not r.fits
    assert r.weights_gib == pytest.approx(44.70, abs=0.01)
    assert r.weights_gib > r.per_unit_available_gib == pytest.approx(43.2)  # the weights alone are too big
    assert r.kv_cache_gib == pytest.approx(6.0) and r.kv_estimated
    assert r.required_gib == pytest.approx(44.70 + 6.0 + 1.5, abs=0.01)
    assert r.tensor_parallel_needed is None  # one GPU: no tensor parallelism can help
    # The cheapest instance that holds it: 4 × L4 with TP 4 ((44.70 + 6) / 4 + 1.5 = 14.2 ≤ 21.6).
    assert (r.smallest_fit, r.smallest_fit_tensor_parallel) == ("g6.12xlarge", 4)
    assert r.smallest_fit_hourly_cost == pytest.approx(4.6016)
    assert "Does not fit on `g6e.xlarge`" in r.message and "52.2 GiB needed of 43.2 usable" in r.message
    assert "weights 44.7" in r.message and "Smallest instance that fits: `g6.12xlarge`" in r.message


def test_24b_bf16_fits_four_a10g_with_tensor_parallelism_4():
    r = estimate(params_billion=24, precision="bf16", instance="g5.12xlarge", max_model_len=8192,
                 gpu_memory_utilization=0.9)
    assert r.fits and r.tensor_parallel == r.tensor_parallel_needed == 4 and r.needs_tensor_parallel
    assert r.per_unit_required_gib == pytest.approx((44.70 + 6.0) / 4 + 1.5, abs=0.01)
    assert r.per_unit_available_gib == pytest.approx(21.6)
    assert r.available_gib == pytest.approx(86.4)
    assert r.devices == 4 and r.hourly_cost == pytest.approx(5.672)
    assert "with tensor parallelism 4 across 4 GPUs" in r.message
    assert "fits only with tensor parallelism 4" in r.message and "$5.67/h" in r.message


def test_24b_configured_without_tensor_parallelism_is_told_how_to_fit():
    r = estimate(params_billion=24, precision="bf16", instance="g5.12xlarge", max_model_len=8192,
                 tensor_parallel=1)
    assert not r.fits and r.tensor_parallel == 1 and r.tensor_parallel_needed == 4
    assert "set modelParameters.tensorParallelSize=4 and request 4 GPUs" in r.message


@pytest.mark.parametrize("name", sorted(n for n, i in instances.load_instances().items()
                                        if i.accelerator_kind == "gpu"))
def test_a_1b_model_fits_any_gpu_instance(name):
    r = estimate(params_billion=1.24, precision="bf16", instance=name, model="meta-llama/Llama-3.2-1B",
                 max_model_len=8192, gpu_memory_utilization=0.9)
    assert r.fits and r.tensor_parallel == 1 and not r.needs_tensor_parallel
    # 2.31 weights + 0.25 KV (16 × 8 × 64 × 4 bytes × 8192) + 1.5
    assert r.required_gib == pytest.approx(1.24e9 * 2 / GIB + 0.25 + 1.5, abs=0.01)


def test_neuron_8b_on_inferentia2_counts_neuroncores():
    # Llama 3.1 8B bf16 on inf2.xlarge (1 chip = 2 NeuronCores of 16 GiB), TP 2, at 0.8:
    # (14.96 weights + 0.125 KV for 1024 tokens) / 2 + 0.5 overhead = 8.04 GiB per core ≤ 12.8.
    r = estimate(params_billion=8.03, precision="bf16", instance="inf2.xlarge",
                 model="meta-llama/Llama-3.1-8B-Instruct", max_model_len=1024,
                 gpu_memory_utilization=0.8, tensor_parallel=2, accelerator="neuron")
    assert r.fits and r.unit == "NeuronCore" and r.devices == 1
    assert r.per_unit_required_gib == pytest.approx((8.03e9 * 2 / GIB + 0.125) / 2 + 0.5, abs=0.01)
    assert r.per_unit_available_gib == pytest.approx(12.8)
    assert "across 2 NeuronCores" in r.message and "$0.76/h" in r.message
    # On one NeuronCore it does not: 15.08 + 0.5 > 12.8; the check says TP 2 fits on the same chip.
    one = estimate(params_billion=8.03, precision="bf16", instance="inf2.xlarge", max_model_len=1024,
                   model="meta-llama/Llama-3.1-8B-Instruct", gpu_memory_utilization=0.8, tensor_parallel=1)
    assert not one.fits and one.tensor_parallel_needed == 2
    assert "tensor parallelism 2 across 2 NeuronCores" in one.message


def test_neuron_70b_needs_inf2_48xlarge():
    # 131.5 GiB of weights + 1.25 KV (80 × 8 × 128 × 4 bytes × 4096). inf2.24xlarge's 12 cores allow TP 8:
    # 132.75 / 8 + 0.5 = 17.1 > 12.8. inf2.48xlarge with TP 16: 8.8 ≤ 12.8, and cheaper than trn1.32xlarge.
    r = estimate(params_billion=70.6, precision="bf16", instance="inf2.24xlarge",
                 model="NousResearch/Meta-Llama-3-70B-Instruct", max_model_len=4096, gpu_memory_utilization=0.8)
    assert not r.fits and r.tensor_parallel_needed is None
    assert (r.smallest_fit, r.smallest_fit_tensor_parallel) == ("inf2.48xlarge", 16)
    assert r.smallest_fit_hourly_cost == pytest.approx(12.9813)


def test_preset_on_the_wrong_kind_of_accelerator(presets):
    r = check_preset(presets["llama-31-8b-vllm-neuron"], "g5.xlarge")
    assert not r.fits and "built for AWS Neuron" in r.message
    assert instances.instance(r.smallest_fit).accelerator_kind == "neuron"
    gpu = check_preset(presets["qwen3-1.7b-vllm"], "inf2.xlarge")
    assert not gpu.fits and "built for NVIDIA GPUs" in gpu.message and gpu.smallest_fit == "g6.xlarge"


def test_preset_asking_for_more_devices_than_the_instance_has(presets):
    r = check_preset(presets["mistral-small-24b-ray-vllm"], "g6e.xlarge")
    assert not r.fits and "The pod requests 4 GPUs; `g6e.xlarge` has 1." in r.message
    assert r.smallest_fit == "g6.12xlarge"


def test_mistral_preset_fits_its_default_instance_with_its_own_architecture(presets):
    r = check_preset(presets["mistral-small-24b-ray-vllm"])
    # 23.6 B: 43.96 GiB; KV 40 × 8 × 128 × 4 bytes × 8192 = 1.25 GiB; TP 4 across 4 × A10G.
    assert r.fits and r.instance == "g5.12xlarge" and r.tensor_parallel == 4 and not r.kv_estimated
    assert r.weights_gib == pytest.approx(43.96, abs=0.01) and r.kv_cache_gib == pytest.approx(1.25)
    assert r.required_gib == pytest.approx(43.96 + 1.25 + 4 * 1.5, abs=0.01)


def test_every_shipped_preset_fits_its_default_instance(presets):
    for preset in presets.values():
        r = check_preset(preset)
        assert r.fits, (preset.id, r.message)
        assert r.hourly_cost == pytest.approx(instances.hourly_price(preset.instance) * preset.nodes)


def test_cost_scales_with_replicas_and_lws_nodes(presets):
    assert check_preset(presets["qwen3-1.7b-vllm"], replicas=3).hourly_cost == pytest.approx(3 * 0.8048)
    lws = check_preset(presets["llama-4-scout-17b-lws-vllm"], replicas=2)
    assert lws.nodes == 2 and lws.hourly_cost == pytest.approx(2 * 2 * 16.288)
    assert "× 4 = $65.15/h" in lws.message
    assert check_preset(presets["qwen3-1.7b-vllm"], replicas=0).hourly_cost == 0


def test_pod_host_requests_must_fit_the_node(presets):
    r = check_preset(presets["deepseek-r1-distill-llama-8b-ray-vllm-gpu"], "g5.2xlarge")
    assert not r.fits and r.host_problem and "12 vCPUs" in r.host_problem
    assert instances.instance(r.smallest_fit).vcpus >= 16


def test_image_pipelines_do_not_shard(presets):
    r = check_preset(presets["flux-1-diffusers"], "g6.12xlarge")
    # 31.5 GiB of weights + 1.5 + 3 activations on one L4 (21.6 usable): four L4s do not help.
    assert not r.fits and r.tensor_parallel == 1 and r.kv_cache_gib == 0
    assert r.smallest_fit == "g6e.xlarge" and r.smallest_fit_tensor_parallel == 1


def test_a_cheaper_instance_that_fits_is_mentioned(presets):
    r = check_preset(presets["deepseek-r1-distill-llama-8b-ray-vllm-gpu"])
    assert r.fits and r.smallest_fit == "g6.4xlarge" and "Cheapest instance that fits: `g6.4xlarge`" in r.message


def test_a_region_without_prices(presets):
    r = check_preset(presets["qwen3-1.7b-vllm"], region="eu-west-1")
    assert r.fits and r.hourly_price is None and r.hourly_cost is None
    assert "no on-demand price known" in r.message


def test_nothing_fits_a_model_larger_than_any_instance():
    r = estimate(params_billion=2000, precision="bf16", instance="p5.48xlarge", max_model_len=1024)
    assert not r.fits and r.smallest_fit is None and "No instance in the table fits it" in r.message


def test_bad_inputs_are_refused():
    with pytest.raises(OpsError, match="gpuMemoryUtilization"):
        estimate(params_billion=1, precision="bf16", instance="g5.xlarge", gpu_memory_utilization=1.5)
    with pytest.raises(OpsError, match="not an instance type I know"):
        estimate(params_billion=1, precision="bf16", instance="g9.xlarge")
