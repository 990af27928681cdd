"""The preset catalog: shipped presets (one per upstream values file), derivations, user folders."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ops import catalog
from ops.catalog import get_preset, load_catalog, load_catalog_report, parse_cpu, parse_memory_gib
from ops.errors import OpsError
from tests.support.presets import USER_PRESET

# The values files published with inference-charts 0.2.1, verbatim (tests/fixtures/…/SOURCE.md).
UPSTREAM = Path(__file__).resolve().parents[1] / "fixtures" / "inference-charts-values"
SHIPPED = {
    "deepseek-r1-distill-llama-8b-ray-vllm-gpu", "deepseek-r1-distill-llama-8b-vllm-neuron", "flux-1-diffusers",
    "gpt-oss-20b-vllm", "kolors-diffusers", "latent-diffusion-diffusers", "llama-2-13b-ray-vllm-neuron",
    "llama-3-70b-ray-vllm-neuron", "llama-3-8b-instruct-nim", "llama-31-8b-ray-vllm-neuron",
    "llama-31-8b-vllm-neuron", "llama-32-1b-aibrix", "llama-32-1b-ray-vllm-autoscaling", "llama-32-1b-ray-vllm",
    "llama-32-1b-triton-vllm-gpu", "llama-32-1b-vllm", "llama-4-scout-17b-lws-vllm", "llama-4-scout-17b-vllm",
    "mistral-small-24b-ray-vllm", "omni-gen-diffusers", "qwen-3-coder-480b-a35b-instruct-lws-vllm",
    "qwen3-1.7b-triton", "qwen3-1.7b-vllm", "stable-diffusion-3.5-large-diffusers-nim",
    "stable-diffusion-3.5-large-diffusers", "stable-diffusion-xl-base-1-diffusers",
}


@pytest.fixture(autouse=True)
def _no_env_folder(monkeypatch):
    monkeypatch.delenv(catalog.ENV_DIR, raising=False)


def test_one_preset_per_upstream_values_file_and_s3_copy_skipped():
    presets = load_catalog()
    assert set(presets) == SHIPPED
    assert all(p.source == "upstream" for p in presets.values())
    assert "s3-copy-llama3-8b" in catalog.SKIPPED_UPSTREAM and "s3-copy-llama3-8b" not in presets


def test_shipped_values_are_the_upstream_documents_unchanged():
    upstream = {p.name[len("values-"):-len(".yaml")] for p in UPSTREAM.glob("values-*.yaml")}
    assert upstream - set(catalog.SKIPPED_UPSTREAM) == SHIPPED
    for pid, preset in load_catalog().items():
        assert preset.values == yaml.safe_load((UPSTREAM / f"values-{pid}.yaml").read_text()), pid


def test_every_framework_of_the_chart_is_covered():
    presets = load_catalog().values()
    assert {p.framework for p in presets} == set(catalog.FRAMEWORKS)
    assert {p.accelerator for p in presets} == {"gpu", "neuron"}
    assert {p.task for p in presets} == {"text", "image"}


def test_every_preset_id_is_valid_for_the_grammar():
    from handlers.parse import _PRESET_ID

    assert all(_PRESET_ID.fullmatch(pid) for pid in load_catalog())


@pytest.mark.parametrize(("pid", "expected"), [
    # devices from resources.<accelerator>, tensor parallelism from modelParameters, instance from the values
    ("mistral-small-24b-ray-vllm", dict(framework="ray-vllm", devices=4, tensor_parallel=4, instance="g5.12xlarge",
                                        max_model_len=8192, gpu_memory_utilization=0.9, params_billion=23.6)),
    ("llama-4-scout-17b-lws-vllm", dict(framework="lws-vllm", devices=8, tensor_parallel=8, pipeline_parallel=2,
                                        nodes=2, instance="g5.48xlarge", params_billion=109, precision="bf16")),
    ("qwen-3-coder-480b-a35b-instruct-lws-vllm", dict(nodes=4, devices=8, instance="g6e.48xlarge",
                                                      max_model_len=None)),
    ("llama-2-13b-ray-vllm-neuron", dict(accelerator="neuron", devices=12, tensor_parallel=20,
                                         instance="inf2.48xlarge", gpu_memory_utilization=0.8)),
    ("llama-31-8b-ray-vllm-neuron", dict(accelerator="neuron", devices=1, tensor_parallel=2,
                                         instance="trn1.2xlarge")),
    ("llama-3-8b-instruct-nim", dict(framework="nim-container", max_model_len=4096, startup_seconds=930,
                                     cpu_request=4.0, memory_request_gib=32.0, instance="g6e.2xlarge")),
    ("stable-diffusion-3.5-large-diffusers-nim", dict(task="image", startup_seconds=1830, instance="g6e.4xlarge")),
    ("flux-1-diffusers", dict(framework="diffusers", task="image", max_model_len=None, instance="g6e.2xlarge")),
    ("gpt-oss-20b-vllm", dict(precision="mxfp4", params_billion=20.9, gpu_memory_utilization=0.9)),
    ("qwen3-1.7b-vllm", dict(params_billion=2.03, startup_seconds=600, service_name="qwen3-1-7b-vllm",
                             model="Qwen/Qwen3-1.7B")),
    ("llama-32-1b-triton-vllm-gpu", dict(instance="g5.2xlarge", cpu_request=4.0, memory_request_gib=16.0)),
])
def test_metadata_derived_from_the_values(pid, expected):
    preset = load_catalog()[pid]
    for key, value in expected.items():
        assert getattr(preset, key) == value, (pid, key)


def test_host_requests_in_decimal_units():
    preset = load_catalog()["deepseek-r1-distill-llama-8b-ray-vllm-gpu"]
    assert preset.cpu_request == 12.0
    assert preset.memory_request_gib == pytest.approx(60e9 / 2**30)  # "60G" is decimal


def test_units_per_node_counts_pipeline_stages_only_outside_lws():
    presets = load_catalog()
    assert presets["llama-4-scout-17b-lws-vllm"].units_per_node == 8  # the 2 stages are 2 pods
    assert presets["mistral-small-24b-ray-vllm"].units_per_node == 4


def test_values_are_a_private_copy():
    first = load_catalog()["qwen3-1.7b-vllm"]
    first.values["model"] = "changed"  # type: ignore[index]
    first.values["inference"]["framework"] = "changed"  # type: ignore[index]
    again = load_catalog()["qwen3-1.7b-vllm"]
    assert again.values["model"] == "Qwen/Qwen3-1.7B" and again.values["inference"]["framework"] == "vllm"


def test_user_folder_adds_and_overrides_presets(tmp_path):
    (tmp_path / "qwen25-7b-vllm.yaml").write_text(USER_PRESET)
    override = USER_PRESET.replace("Qwen/Qwen2.5-7B-Instruct", "Qwen/Qwen3-1.7B").replace("7.6", "2.03")
    (tmp_path / "values-qwen3-1.7b-vllm.yaml").write_text(override)  # upstream-style file name
    presets = load_catalog(tmp_path)
    mine = presets["qwen25-7b-vllm"]
    assert mine.source == str(tmp_path / "qwen25-7b-vllm.yaml")
    assert (mine.instance, mine.max_model_len, mine.gpu_memory_utilization, mine.devices) == (
        "g6e.xlarge", 16384, 0.85, 1)
    assert presets["qwen3-1.7b-vllm"].source.endswith("values-qwen3-1.7b-vllm.yaml")
    assert presets["qwen3-1.7b-vllm"].instance == "g6e.xlarge"
    assert set(presets) == SHIPPED | {"qwen25-7b-vllm"}


def test_the_environment_names_the_folder_too(tmp_path, monkeypatch):
    (tmp_path / "mine.yml").write_text(USER_PRESET)
    monkeypatch.setenv(catalog.ENV_DIR, str(tmp_path))
    assert "mine" in load_catalog()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert "mine" not in load_catalog(elsewhere)  # the configured folder wins over the environment


def test_a_missing_folder_is_an_error(tmp_path):
    with pytest.raises(OpsError, match="does not exist"):
        load_catalog(tmp_path / "nope")


@pytest.mark.parametrize(("change", "key"), [
    (lambda t: t.replace("modelParameters:", "modelParamters:"), "values.modelParamters: unknown key"),
    (lambda t: t.replace("framework: vllm", "framework: tgi"), "values.inference.framework"),
    (lambda t: t.replace("precision: bf16", "precision: fp12"), "preset.precision"),
    (lambda t: t.replace("  params_billion: 7.6\n", ""), "preset.params_billion: Field required"),
    (lambda t: t.replace("gpuMemoryUtilization: 0.85", "gpuMemoryUtilization: 1.5"),
     "values.modelParameters.gpuMemoryUtilization"),
    (lambda t: t.replace("instanceType: g6e.xlarge", "instanceType: g6e.xlarg"),
     "values.inference.modelServer.deployment.instanceType: `g6e.xlarg` is not an instance type"),
    (lambda t: t.replace("instanceType: g6e.xlarge", "instanceType: inf2.xlarge"),
     "values.inference.modelServer.deployment.instanceType: `inf2.xlarge` has neuron accelerators"),
    (lambda t: t.replace("    maxModelLen: 16384\n", "    maxModelLen: 16384\n    tensorParallelSize: 2\n"),
     "values.modelParameters.tensorParallelSize: tensor × pipeline parallelism needs 2 GPUs"),
    (lambda t: t.replace("serviceName: qwen25-7b", "serviceName: Qwen_7B"), "values.inference.serviceName"),
    (lambda t: t.replace("  description:", "  instance: g5.xlarge\n  description:"),
     "preset.instance: `g5.xlarge` contradicts the values' instance type `g6e.xlarge`"),
    (lambda t: t + "extra: 1\n", "extra: unknown key"),
    (lambda t: "preset: [", "not valid YAML"),
])
def test_invalid_user_files_are_refused_with_the_file_and_the_key(tmp_path, change, key):
    path = tmp_path / "broken.yaml"
    path.write_text(change(USER_PRESET))
    (tmp_path / "fine.yaml").write_text(USER_PRESET)
    with pytest.raises(OpsError) as err:
        load_catalog(tmp_path)
    assert str(path) in err.value.message and key in err.value.message
    report = load_catalog_report(tmp_path)  # the lenient load keeps the rest
    assert "fine" in report.presets and "broken" not in report.presets
    assert len(report.problems) == 1 and str(path) in report.problems[0]


def test_an_invalid_id_is_refused(tmp_path):
    (tmp_path / "Bad_Name.yaml").write_text(USER_PRESET)
    with pytest.raises(OpsError, match="not a valid preset id"):
        load_catalog(tmp_path)


def test_without_an_instance_the_cheapest_host_for_the_pod_is_chosen(tmp_path):
    text = USER_PRESET.replace("        instanceType: g6e.xlarge\n", (
        "        resources:\n          gpu:\n            requests: {nvidia.com/gpu: 4, memory: 100Gi}\n"))
    (tmp_path / "four.yaml").write_text(text)
    preset = load_catalog(tmp_path)["four"]
    # 4 GPUs and 100 GiB of host memory: g6.12xlarge (4 × L4, 192 GiB) is the cheapest such instance.
    assert (preset.devices, preset.instance) == (4, "g6.12xlarge")


def test_get_preset_suggests_close_ids():
    assert get_preset("qwen3-1.7b-vllm").model == "Qwen/Qwen3-1.7B"
    with pytest.raises(OpsError, match="`qwen3-1.7b-vllm`"):
        get_preset("qwen3-1.7-vllm")


def test_kubernetes_quantities():
    assert parse_cpu("500m") == 0.5 and parse_cpu(4) == 4 and parse_cpu("1.5") == 1.5
    assert parse_memory_gib("16Gi") == 16 and parse_memory_gib("512Mi") == 0.5
    assert parse_memory_gib("60G") == pytest.approx(55.88, abs=0.01)
    assert parse_memory_gib(2**30) == 1
    with pytest.raises(catalog._KeyProblem):
        parse_memory_gib("lots")
    with pytest.raises(catalog._KeyProblem):
        parse_cpu("2 cores")
