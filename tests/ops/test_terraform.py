"""ops/terraform/ against the real terraform binary and the test root module (built-in
terraform_data only: init needs no provider and works offline)."""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ops.errors import OpsError
from ops.terraform import (
    VARS_FILE,
    ApplyTracker,
    PlanSummary,
    SavedPlan,
    StalePlan,
    StateLocked,
    Terraform,
    Variable,
    Workspace,
    declared_variables,
)
from tests.support.binaries import TERRAFORM, needs_terraform
from tests.support.terraform import MODULE, SECRET


@pytest.fixture
def module(tmp_path: Path) -> Path:
    root = tmp_path / "module"
    shutil.copytree(MODULE, root)
    return root


@pytest.fixture
def ws(tmp_path: Path, module: Path) -> Workspace:
    return Workspace(Terraform(TERRAFORM or "terraform", timeout=120), module, tmp_path / "workspaces", "alpha")


# ---- variables -------------------------------------------------------------------------------


def test_declared_variables_of_the_test_module():
    found = declared_variables(MODULE)
    assert list(found) == sorted(["cluster_name", "nodes", "instance_type", "spot", "labels", "delay_seconds",
                                  "admin_password", "kubeconfig_path", "region"])
    assert found["cluster_name"] == Variable("cluster_name", "string", False, required=True)
    assert found["nodes"] == Variable("nodes", "number", False, required=False)
    assert found["labels"].type == "map(string)"
    assert found["admin_password"].sensitive and not found["nodes"].sensitive


def test_the_scanner_is_not_fooled_by_comments_strings_and_heredocs(tmp_path: Path):
    (tmp_path / "main.tf").write_text('''
# variable "commented" {}
// variable "also_commented" {}
/* variable "block_commented" {
} */
locals {
  text = "variable \\"in_string\\" { ${jsonencode({a = "}"})} }"
  doc  = <<-EOT
    variable "in_heredoc" {
    }
  EOT
}
variable "one_line" { default = 1 }
variable real {
  type = object({
    a = string
    b = list(number)
  })
  default = { a = "x", b = [1] }  # trailing comment
  validation {
    condition     = length(var.real.b) > 0
    error_message = "b must not be empty: {"
  }
}
variable "plain" {}
''')
    (tmp_path / "more.tf.json").write_text(json.dumps({"variable": {"from_json": {"type": "bool", "default": True,
                                                                                   "sensitive": True}}}))
    (tmp_path / "x_override.tf").write_text('variable "plain" {\n  sensitive = true\n}\n')
    (tmp_path / "notes.txt").write_text('variable "not_terraform" {}')
    found = declared_variables(tmp_path)
    assert sorted(found) == ["from_json", "one_line", "plain", "real"]
    assert found["real"].type == "object({a=stringb=list(number)})" and not found["real"].required
    assert found["plain"] == Variable("plain", "any", sensitive=True, required=True)
    assert found["from_json"] == Variable("from_json", "bool", sensitive=True, required=False)


def test_values_typed_in_slack_are_converted_to_the_declared_type():
    assert Variable("n", "number").coerce("3") == 3
    assert Variable("n", "number").coerce("2.5") == 2.5
    assert Variable("b", "bool").coerce("TRUE") is True
    assert Variable("s", "string").coerce("007") == "007"
    assert Variable("m", "map(string)").coerce('{"team":"ml"}') == {"team": "ml"}
    assert Variable("a", "any").coerce("plain words") == "plain words"
    for var, text in ((Variable("n", "number"), "three"), (Variable("n", "number"), "true"),
                      (Variable("b", "bool"), "yes"), (Variable("l", "list(string)"), "a,b")):
        with pytest.raises(ValueError, match=f"var.{var.name}"):
            var.coerce(text)


def test_a_missing_root_module_is_a_clear_error(tmp_path: Path):
    with pytest.raises(OpsError, match="terraform.root"):
        declared_variables(tmp_path / "nope")


# ---- plan, apply, refusals (real terraform) --------------------------------------------------


def apply_plan(ws: Workspace, saved: SavedPlan) -> ApplyTracker:
    ws.verify(saved, max_age=timedelta(hours=1))
    result = ws.apply(saved)
    assert result.ok, result.error
    return result.tracker


@needs_terraform
def test_plan_summary_apply_progress_and_masked_outputs(ws: Workspace):
    seen: list[tuple[int, int]] = []
    saved = ws.plan("p1", vars={"cluster_name": "alpha", "nodes": 2})
    summary = saved.summary
    assert saved.exit_code == 2 and summary.changes
    assert summary.headline() == "4 to add, 0 to change, 0 to destroy"
    assert summary.by_action["create"] == ("terraform_data.admin", "terraform_data.control_plane",
                                           "terraform_data.node[0]", "terraform_data.node[1]")
    assert summary.outputs == ("admin_token", "nodes")
    manifest = (saved.dir / "manifest.json").read_text()
    assert SECRET not in manifest and SECRET not in json.dumps(saved.to_params())
    result = ws.apply(saved, on_progress=lambda t: seen.append((t.done, t.total)))
    assert result.ok
    tracker = result.tracker
    assert (tracker.done, tracker.total) == (4, 4) and tracker.counts["add"] == 4
    assert seen[-1] == (4, 4) and seen[0][0] < 4  # progress came while it ran
    assert tracker.outputs["admin_token"].sensitive and tracker.outputs["admin_token"].value is None
    assert tracker.outputs["nodes"].value == ["alpha-node-0", "alpha-node-1"]
    outputs = ws.outputs()  # `terraform output -json` has the value: it is dropped on the spot
    assert outputs["admin_token"].value is None and outputs["admin_token"].shown() == "(sensitive)"
    assert SECRET not in repr(outputs)

    ws.record_applied(saved.vars or {})
    again = ws.plan("p2", vars=None, sync=False)  # the workspace's own vars: what was applied
    assert not again.summary.changes and again.exit_code == 0


@needs_terraform
def test_apply_is_refused_when_the_module_or_the_vars_changed_after_the_plan(ws: Workspace, module: Path):
    saved = ws.plan("p1", vars={"cluster_name": "alpha"})
    (module / "main.tf").write_text((module / "main.tf").read_text() + "\n# edited after the plan\n")
    with pytest.raises(StalePlan, match="module/main.tf"):
        ws.verify(saved, max_age=timedelta(hours=1))

    saved = ws.plan("p2", vars={"cluster_name": "alpha"})
    ws.record_applied({"cluster_name": "alpha", "nodes": 5})
    with pytest.raises(StalePlan, match=VARS_FILE):
        ws.verify(saved, max_age=timedelta(hours=1))

    saved = ws.plan("p3", vars={"cluster_name": "alpha"})
    saved.vars_file.write_text('{"cluster_name": "beta"}')
    with pytest.raises(StalePlan, match="plan vars"):
        ws.verify(saved, max_age=timedelta(hours=1))

    saved = ws.plan("p4", vars={"cluster_name": "alpha"})
    with pytest.raises(StalePlan, match="not applied"):
        ws.verify(saved, max_age=timedelta(minutes=5), now=datetime.now(UTC) + timedelta(minutes=6))
    ws.verify(saved, max_age=timedelta(minutes=5))  # young and untouched: fine


@needs_terraform
def test_a_plan_made_stale_by_another_apply_is_refused_by_terraform(ws: Workspace):
    first = ws.plan("p1", vars={"cluster_name": "alpha", "nodes": 1})
    second = ws.plan("p2", vars={"cluster_name": "alpha", "nodes": 1})
    apply_plan(ws, first)
    ws.verify(second, max_age=timedelta(hours=1))  # same files: only the state tells
    result = ws.apply(second)
    assert isinstance(result.error, StalePlan) and "state changed" in result.error.message


@needs_terraform
def test_a_held_state_lock_is_reported_not_retried(ws: Workspace):
    apply_plan(ws, ws.plan("p1", vars={"cluster_name": "alpha", "nodes": 1}))
    with (ws.path / "terraform.tfstate").open("r+") as state:
        fcntl.lockf(state, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running terraform holds
        with pytest.raises(StateLocked, match="locked by another run; I did not retry"):
            ws.plan("p2", vars={"cluster_name": "alpha"})


@needs_terraform
def test_drift_after_a_change_behind_the_bots_back(ws: Workspace):
    applied = {"cluster_name": "alpha", "nodes": 1}
    apply_plan(ws, ws.plan("p1", vars=applied))
    ws.record_applied(applied)
    assert not ws.plan("d1", vars=None, sync=False).summary.changes
    # Someone runs terraform by hand in the workspace.
    subprocess.run([TERRAFORM, "apply", "-auto-approve", "-input=false", "-no-color", "-var", "nodes=2"],
                   cwd=ws.path, check=True, capture_output=True)
    drift = ws.plan("d2", vars=None, sync=False).summary
    assert drift.by_action == {"delete": ("terraform_data.node[1]",)}


@needs_terraform
def test_plan_failures_carry_terraforms_diagnostics(ws: Workspace, module: Path):
    (module / "broken.tf").write_text('resource "terraform_data" "x" {\n  input = var.nope\n}\n')
    with pytest.raises(OpsError) as failed:
        ws.plan("p1", vars={"cluster_name": "alpha"})
    assert "Reference to undeclared input variable" in failed.value.message
    assert any("nope" in d.detail for d in failed.value.diagnostics)


def test_summary_round_trips_and_counts_replacements_like_terraform():
    show = {"format_version": "1.2", "resource_changes": [
        {"address": "a.x", "mode": "managed", "change": {"actions": ["delete", "create"]}},
        {"address": "a.y", "mode": "managed", "change": {"actions": ["update"]}},
        {"address": "a.z", "mode": "managed", "change": {"actions": ["no-op"]}},
        {"address": "data.d.r", "mode": "data", "change": {"actions": ["read"]}},
    ], "resource_drift": [{"address": "a.y", "change": {"actions": ["update"]}}]}
    summary = PlanSummary.from_show(show)
    assert summary.headline() == "1 to add, 1 to change, 1 to destroy (1 replaced)"
    assert summary.drifted == ("a.y",)
    assert PlanSummary.from_dict(json.loads(json.dumps(summary.to_dict()))) == summary
    tracker = ApplyTracker(summary)
    for event in ({"type": "apply_start", "hook": {"resource": {"addr": "a.x"}, "action": "delete"}},
                  {"type": "apply_complete", "hook": {"resource": {"addr": "a.x"}, "action": "delete"}}):
        tracker.feed(event)
    assert (tracker.done, tracker.total) == (0, 2)  # a replacement is done when its create is
    tracker.feed({"type": "apply_start", "hook": {"resource": {"addr": "a.x"}, "action": "create"}})
    assert tracker.current == ("a.x", "create")
    tracker.feed({"type": "apply_complete", "hook": {"resource": {"addr": "a.x"}, "action": "create"}})
    assert tracker.done == 1 and tracker.current is None
    with pytest.raises(OpsError, match="format 2.0"):
        PlanSummary.from_show({"format_version": "2.0"})
