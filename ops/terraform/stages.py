"""Applying in stages, as ai-on-eks' install.sh does: `-target=module.vpc`, then `-target=module.eks`,
then everything (its Kubernetes and Helm providers need the cluster to exist before they can plan).

Approvers review the full plan. A stage is planned with its `-target` just before it is applied, and
applied only when every change it would make is in the reviewed plan, with the same action; the
stage plan's changes are checked here, against the reviewed PlanSummary (no terraform involved).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ops.terraform.plan import PlanSummary

_NAME = r"[A-Za-z_][A-Za-z0-9_-]*"
_INDEX = r'(?:\[(?:[0-9]+|"(?:[^"\\]|\\.)*")\])?'
# Terraform's resource address grammar, as `-target` takes it: module path steps, then optionally a
# managed resource `type.name` (data sources are read, never applied, so they are not targets).
_MODULE = rf"module\.{_NAME}{_INDEX}"
_ADDRESS = re.compile(rf"^(?:{_MODULE}\.)*(?:{_MODULE}|(?!module\.|data\.){_NAME}\.{_NAME}{_INDEX})$")


def is_address(text: str) -> bool:
    """True for a module (`module.eks`) or managed resource (`aws_iam_role.x`) address."""
    return bool(_ADDRESS.match(text))


def first_step(address: str) -> tuple[str, str]:
    """("module", name) or (resource type, name) of the address' first step in the root module."""
    head, _, rest = address.partition(".")
    name = re.split(r"[.\[]", rest, maxsplit=1)[0]
    return head, name


@dataclass(frozen=True)
class Stage:
    number: int  # 1-based
    total: int
    target: str | None  # None: the last stage, everything

    @property
    def label(self) -> str:
        what = f"-target={self.target}" if self.target else "everything"
        return f"stage {self.number}/{self.total} ({what})"


def stages(targets: Sequence[str]) -> list[Stage]:
    """The applies of a staged run: each target in the order given, then everything. No targets: one
    stage, everything (the reviewed plan file itself is applied then)."""
    steps: list[str | None] = [*dict.fromkeys(targets), None]
    return [Stage(i, len(steps), t) for i, t in enumerate(steps, start=1)]


@dataclass(frozen=True)
class Deviation:
    """A change a later plan would make that the reviewed plan did not show (or showed otherwise)."""

    address: str
    action: str  # what the later plan would do ("no-op": it no longer changes it)
    reviewed: str | None  # what the reviewed plan showed for it (None: not there)

    def line(self) -> str:
        if self.action == "no-op":
            return f"no change to {self.address} any more (the reviewed plan showed {self.reviewed})"
        if self.reviewed is None:
            return f"{self.action} {self.address} (not in the reviewed plan)"
        return f"{self.action} {self.address} (the reviewed plan showed {self.reviewed})"


def actions(summary: PlanSummary) -> dict[str, str]:
    """address → action of every change in a plan."""
    return {address: action for action, addresses in summary.by_action.items() for address in addresses}


def unreviewed(reviewed: PlanSummary, stage: PlanSummary) -> list[Deviation]:
    """The stage plan's changes that are not in the reviewed plan with the same action; empty when the
    stage is a subset of what the approvers saw."""
    seen = actions(reviewed)
    return sorted((Deviation(a, act, seen.get(a)) for a, act in actions(stage).items() if seen.get(a) != act),
                  key=lambda d: d.address)


def difference(reviewed: PlanSummary, now: PlanSummary) -> list[Deviation]:
    """Every address whose action differs between two full plans (both ways)."""
    before, after = actions(reviewed), actions(now)
    return sorted((Deviation(a, after.get(a, "no-op"), before.get(a)) for a in before.keys() | after.keys()
                   if before.get(a) != after.get(a)), key=lambda d: d.address)
