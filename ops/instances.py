"""The EC2 instance table (ops/data/instances.yaml): accelerators per instance and on-demand prices.

The table is data so that refreshing prices or adding a size is a YAML edit, not a code change.
It is validated once at load: a typo in the shipped file fails every test instead of pricing a
deployment at zero.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ops.errors import OpsError

DATA_FILE = Path(__file__).parent / "data" / "instances.yaml"
DEFAULT_REGION = "us-west-2"


@dataclass(frozen=True)
class Instance:
    name: str
    family: str  # the part before the dot: "g5", "inf2"
    accelerator: str  # "nvidia-a10g", "aws-inferentia2", …
    accelerator_kind: str  # "gpu" | "neuron"
    devices: int  # GPUs, or Neuron chips
    memory_per_device_gib: float
    vcpus: int
    memory_gib: float  # host memory
    prices: Mapping[str, float]  # region -> on-demand USD/hour
    cores_per_device: int = 1  # NeuronCores per chip (2 on Inferentia2/Trainium); 1 for GPUs
    accelerator_label: str = ""  # for people: "NVIDIA A10G"

    def __hash__(self) -> int:
        # The generated hash would hash `prices`, a mapping; the name identifies a row.
        return hash(self.name)

    @property
    def accelerator_memory_gib(self) -> float:
        return self.devices * self.memory_per_device_gib

    @property
    def hardware(self) -> str:
        """`4 × NVIDIA A10G 24 GiB`"""
        return f"{self.devices} × {self.accelerator_label} {self.memory_per_device_gib:g} GiB"

    @property
    def cores(self) -> int:
        """What a runtime's tensor parallelism counts: GPUs, or NeuronCores."""
        return self.devices * self.cores_per_device


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Accelerator(_Strict):
    label: str = ""
    kind: Literal["gpu", "neuron"]
    memory_per_device_gib: float = Field(gt=0)
    cores_per_device: int = Field(default=1, ge=1)


class _InstanceRow(_Strict):
    accelerator: str
    devices: int = Field(ge=1)
    vcpus: int = Field(ge=1)
    memory_gib: float = Field(gt=0)
    # A price of 0 would make the cheapest-fit search pick this row: every price must be real.
    prices: dict[str, Annotated[float, Field(gt=0)]] = Field(min_length=1)


class _Table(_Strict):
    prices_as_of: str
    accelerators: dict[str, _Accelerator]
    instances: dict[str, _InstanceRow]

    @model_validator(mode="after")
    def _known_accelerators(self) -> _Table:
        unknown = {n: r.accelerator for n, r in self.instances.items() if r.accelerator not in self.accelerators}
        if unknown:
            raise ValueError(f"instances name accelerators not listed under accelerators: {unknown}")
        return self


def parse_table(text: str, source: str = str(DATA_FILE)) -> dict[str, Instance]:
    """Validate an instance table document; errors name the source and the key path."""
    try:
        table = _Table.model_validate(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise OpsError(f"{source}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or '(top)'}: {e['msg']}" for e in exc.errors())
        raise OpsError(f"{source}: {where}") from exc
    out: dict[str, Instance] = {}
    for name, row in table.instances.items():
        acc = table.accelerators[row.accelerator]
        out[name] = Instance(
            name=name, family=name.split(".", 1)[0], accelerator=row.accelerator, accelerator_kind=acc.kind,
            devices=row.devices, memory_per_device_gib=acc.memory_per_device_gib, vcpus=row.vcpus,
            memory_gib=row.memory_gib, prices=MappingProxyType(dict(row.prices)),
            cores_per_device=acc.cores_per_device, accelerator_label=acc.label or row.accelerator,
        )
    return out


@cache
def _loaded() -> MappingProxyType[str, Instance]:
    return MappingProxyType(parse_table(DATA_FILE.read_text(encoding="utf-8")))


@cache
def prices_as_of() -> str:
    """When the table's prices were last checked (its `prices_as_of`), for people reading a price."""
    return str(yaml.safe_load(DATA_FILE.read_text(encoding="utf-8")).get("prices_as_of", "unknown"))


def load_instances() -> dict[str, Instance]:
    """Every instance type in the table (a fresh dict over the cached, immutable rows)."""
    return dict(_loaded())


def instance(name: str) -> Instance:
    table = _loaded()
    found = table.get(name.strip().lower())
    if found is not None:
        return found
    close = difflib.get_close_matches(name.strip().lower(), list(table), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(f'`{c}`' for c in close)}?" if close else ""
    families = sorted({i.family for i in table.values()})
    raise OpsError(f"`{name}` is not an instance type I know.{hint} "
                   f"Known families: {', '.join(families)}.")


def hourly_price(name: str, region: str = DEFAULT_REGION) -> float:
    """On-demand USD/hour of one instance of `name` in `region`."""
    inst = instance(name)
    price = inst.prices.get(region)
    if price is None:
        raise OpsError(f"I have no on-demand price for `{inst.name}` in `{region}` "
                       f"(known regions: {', '.join(sorted(inst.prices))}). "
                       "Add it to ops/data/instances.yaml.")
    return price
