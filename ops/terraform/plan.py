"""The model of a Terraform plan: what it would do by resource address (PlanSummary, from
`terraform show -json`), and a saved plan file with everything it was made from (SavedPlan), as
an operation keeps it between approval and apply.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ops.errors import OpsError

# What a plan can do to a managed resource, in the order a summary lists them.
ACTIONS = ("create", "update", "replace", "delete", "forget")


def _action(actions: Iterable[str]) -> str:
    found = set(actions)
    if found == {"create", "delete"}:
        return "replace"
    return next(iter(found)) if len(found) == 1 else "+".join(sorted(found))


@dataclass(frozen=True)
class PlanSummary:
    """What a plan would do, by resource address; never any value (values may be sensitive)."""

    by_action: dict[str, tuple[str, ...]] = field(default_factory=dict)
    drifted: tuple[str, ...] = ()  # changed outside Terraform since the last apply (refresh found it)
    outputs: tuple[str, ...] = ()  # names of outputs that change

    @staticmethod
    def from_show(doc: Mapping[str, Any]) -> PlanSummary:
        version = str(doc.get("format_version", ""))
        if not version.startswith("1."):
            raise OpsError(f"`terraform show -json` format {version or '?'} is not supported (1.x is)")
        by_action: dict[str, list[str]] = {a: [] for a in ACTIONS}
        for change in doc.get("resource_changes") or []:
            if change.get("mode", "managed") != "managed":
                continue  # data sources are read, never changed
            action = _action((change.get("change") or {}).get("actions") or ["no-op"])
            if action in by_action:
                by_action[action].append(str(change.get("address")))
        drifted = [str(d.get("address")) for d in doc.get("resource_drift") or []
                   if _action((d.get("change") or {}).get("actions") or ["no-op"]) != "no-op"]
        outputs = [name for name, oc in (doc.get("output_changes") or {}).items()
                   if _action((oc or {}).get("actions") or ["no-op"]) != "no-op"]
        return PlanSummary({a: tuple(v) for a, v in by_action.items() if v}, tuple(drifted), tuple(sorted(outputs)))

    def count(self, action: str) -> int:
        return len(self.by_action.get(action, ()))

    @property
    def add(self) -> int:  # Terraform's own "N to add" counts replacements too
        return self.count("create") + self.count("replace")

    @property
    def change(self) -> int:
        return self.count("update")

    @property
    def destroy(self) -> int:
        return self.count("delete") + self.count("replace")

    @property
    def resources(self) -> int:
        return sum(len(v) for v in self.by_action.values())

    @property
    def changes(self) -> bool:
        return bool(self.resources or self.outputs)

    def headline(self) -> str:
        line = f"{self.add} to add, {self.change} to change, {self.destroy} to destroy"
        extra = [f"{self.count('replace')} replaced"] if self.count("replace") else []
        if self.count("forget"):
            extra.append(f"{self.count('forget')} to forget")
        if not self.resources and self.outputs:
            extra.append(f"{len(self.outputs)} output(s) change")
        return line + (f" ({', '.join(extra)})" if extra else "")

    def to_dict(self) -> dict[str, Any]:
        return {"by_action": {a: list(v) for a, v in self.by_action.items()}, "drifted": list(self.drifted),
                "outputs": list(self.outputs)}

    @staticmethod
    def from_dict(raw: Mapping[str, Any]) -> PlanSummary:
        return PlanSummary({a: tuple(v) for a, v in (raw.get("by_action") or {}).items()},
                           tuple(raw.get("drifted") or ()), tuple(raw.get("outputs") or ()))


@dataclass(frozen=True)
class SavedPlan:
    """A plan file as the approvers saw it, with what it was made from."""

    id: str
    dir: Path
    destroy: bool
    created_at: datetime
    inputs: dict[str, str]  # input file → sha256 at plan time: module copy, workspace files, plan vars
    plan_sha256: str
    summary: PlanSummary
    vars: dict[str, Any] | None  # the variables given with this plan (None: the workspace's own)
    exit_code: int = 2

    @property
    def plan_file(self) -> Path:
        return self.dir / "plan.tfplan"

    @property
    def vars_file(self) -> Path:
        return self.dir / "vars.tfvars.json"

    def to_params(self) -> dict[str, Any]:
        """What an operation keeps to apply this plan later (no variable values: they stay on disk)."""
        return {"id": self.id, "dir": str(self.dir), "destroy": self.destroy, "created_at": self.created_at.isoformat(),
                "inputs": self.inputs, "plan_sha256": self.plan_sha256, "summary": self.summary.to_dict(),
                "has_vars": self.vars is not None, "exit_code": self.exit_code}

    @staticmethod
    def from_params(raw: Mapping[str, Any]) -> SavedPlan:
        pdir = Path(raw["dir"])
        values = None
        if raw.get("has_vars"):
            try:
                values = json.loads((pdir / "vars.tfvars.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                values = {}  # verify() reports the missing file as a changed input
        return SavedPlan(str(raw["id"]), pdir, bool(raw["destroy"]), datetime.fromisoformat(raw["created_at"]),
                         dict(raw["inputs"]), str(raw["plan_sha256"]), PlanSummary.from_dict(raw["summary"]),
                         values, int(raw.get("exit_code", 2)))

