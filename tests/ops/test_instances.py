"""The instance table (ops/data/instances.yaml): coverage, facts per family, lookups and validation."""

from __future__ import annotations

import pytest

from ops import instances
from ops.errors import OpsError
from ops.instances import hourly_price, instance, load_instances, parse_table

REQUIRED = {
    "g5": ["xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"],
    "g6": ["xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"],
    "g6e": ["xlarge", "2xlarge", "4xlarge", "8xlarge", "12xlarge", "16xlarge", "24xlarge", "48xlarge"],
    "p4d": ["24xlarge"],
    "p5": ["48xlarge"],
    "inf2": ["xlarge", "8xlarge", "24xlarge", "48xlarge"],
    "trn1": ["2xlarge", "32xlarge"],
}


def test_every_required_size_is_there_with_prices_in_both_regions():
    table = load_instances()
    for family, sizes in REQUIRED.items():
        for size in sizes:
            inst = table[f"{family}.{size}"]
            assert inst.family == family
            for region in ("us-east-1", "us-west-2"):
                assert 0 < inst.prices[region] < 200, (inst.name, region)


@pytest.mark.parametrize(("name", "accelerator", "kind", "devices", "memory", "cores"), [
    ("g5.xlarge", "nvidia-a10g", "gpu", 1, 24, 1),
    ("g5.12xlarge", "nvidia-a10g", "gpu", 4, 24, 4),
    ("g5.48xlarge", "nvidia-a10g", "gpu", 8, 24, 8),
    ("g6.12xlarge", "nvidia-l4", "gpu", 4, 24, 4),
    ("g6e.xlarge", "nvidia-l40s", "gpu", 1, 48, 1),
    ("g6e.48xlarge", "nvidia-l40s", "gpu", 8, 48, 8),
    ("p4d.24xlarge", "nvidia-a100-40gb", "gpu", 8, 40, 8),
    ("p5.48xlarge", "nvidia-h100-80gb", "gpu", 8, 80, 8),
    # Neuron: devices are chips, 32 GiB each, 2 NeuronCores each (the AWS Neuron architecture pages).
    ("inf2.xlarge", "aws-inferentia2", "neuron", 1, 32, 2),
    ("inf2.24xlarge", "aws-inferentia2", "neuron", 6, 32, 12),
    ("inf2.48xlarge", "aws-inferentia2", "neuron", 12, 32, 24),
    ("trn1.2xlarge", "aws-trainium1", "neuron", 1, 32, 2),
    ("trn1.32xlarge", "aws-trainium1", "neuron", 16, 32, 32),
])
def test_accelerators_per_instance(name, accelerator, kind, devices, memory, cores):
    inst = instance(name)
    assert (inst.accelerator, inst.accelerator_kind, inst.devices, inst.memory_per_device_gib, inst.cores) == (
        accelerator, kind, devices, memory, cores)
    assert inst.accelerator_memory_gib == devices * memory


def test_host_sizes_and_known_prices():
    g5 = instance("g5.12xlarge")
    assert (g5.vcpus, g5.memory_gib) == (48, 192)
    assert instance("inf2.48xlarge").memory_gib == 768
    assert hourly_price("g5.xlarge") == pytest.approx(1.006)  # default region us-west-2
    assert hourly_price("g5.12xlarge", "us-east-1") == pytest.approx(5.672)
    assert hourly_price("inf2.xlarge", "us-east-1") == pytest.approx(0.7582)
    # Bigger sizes of one family never cost less than smaller ones with the same devices.
    assert hourly_price("g6e.2xlarge") < hourly_price("g6e.4xlarge") < hourly_price("g6e.8xlarge")
    assert instances.prices_as_of() != "unknown"


def test_unknown_instance_names_close_matches():
    with pytest.raises(OpsError) as err:
        instance("g5.12xlarg")
    assert "`g5.12xlarge`" in err.value.message and "Known families" in err.value.message
    with pytest.raises(OpsError, match="not an instance type I know"):
        instance("m5.large")


def test_lookup_ignores_case_and_spaces():
    assert instance(" G5.XLARGE ").name == "g5.xlarge"


def test_a_region_without_a_price_is_refused_not_free():
    with pytest.raises(OpsError) as err:
        hourly_price("g5.xlarge", "ap-south-2")
    assert "ap-south-2" in err.value.message and "us-west-2" in err.value.message


def test_the_table_is_a_copy_and_rows_are_immutable_and_hashable():
    table = load_instances()
    table.pop("g5.xlarge")
    assert "g5.xlarge" in load_instances()
    inst = instance("g5.xlarge")
    with pytest.raises(TypeError):
        inst.prices["us-west-2"] = 0  # type: ignore[index]
    assert {inst, instance("g5.xlarge")} == {inst}


def test_invalid_tables_name_the_key():
    good_acc = "accelerators: {a: {kind: gpu, memory_per_device_gib: 24}}\n"
    with pytest.raises(OpsError, match=r"instances\.x\.prices\.r: .*greater than 0"):
        parse_table("prices_as_of: t\n" + good_acc +
                    "instances: {x: {accelerator: a, devices: 1, vcpus: 1, memory_gib: 1, prices: {r: 0}}}", "t.yaml")
    with pytest.raises(OpsError, match="not listed under accelerators"):
        parse_table("prices_as_of: t\n" + good_acc +
                    "instances: {x: {accelerator: b, devices: 1, vcpus: 1, memory_gib: 1, prices: {r: 1}}}", "t.yaml")
    with pytest.raises(OpsError, match=r"t\.yaml: instances\.x\.gpus"):
        parse_table("prices_as_of: t\n" + good_acc +
                    "instances: {x: {accelerator: a, gpus: 1, devices: 1, vcpus: 1, memory_gib: 1, prices: {r: 1}}}",
                    "t.yaml")
    with pytest.raises(OpsError, match="not valid YAML"):
        parse_table("a: [", "t.yaml")
