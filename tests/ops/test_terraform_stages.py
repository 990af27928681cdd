"""Staged applies (ai-on-eks' install.sh: -target=module.vpc, -target=module.eks, then everything):
the address grammar, stage order and the check that a stage stays within the reviewed plan; then
var files and `-target` against the real terraform binary on the blueprint-shaped test module."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ops.terraform import (
    PlanSummary,
    Terraform,
    Workspace,
    declared_blocks,
    declared_variables,
    difference,
    first_step,
    is_address,
    stages,
    unreviewed,
)
from tests.support.binaries import TERRAFORM, needs_terraform
from tests.support.terraform import BLUEPRINT


def test_targets_are_module_or_managed_resource_addresses():
    for good in ("module.vpc", "module.eks", "module.eks.module.node_group", 'module.addons["x"]',
                 "aws_iam_role.karpenter", "module.eks.aws_eks_cluster.this", "terraform_data.node[2]"):
        assert is_address(good), good
    for bad in ("vpc", "module.", "module.vpc.", "data.aws_ami.x", "module.vpc.data.aws_ami.x", "-target=module.vpc",
                "module vpc", "module.eks[", ""):
        assert not is_address(bad), bad
    assert first_step("module.eks.aws_eks_cluster.this") == ("module", "eks")
    assert first_step('module.addons["x"]') == ("module", "addons")
    assert first_step("terraform_data.node[2]") == ("terraform_data", "node")


def test_stages_run_each_target_in_the_order_given_then_everything():
    plan = stages(["module.vpc", "module.eks"])
    assert [s.target for s in plan] == ["module.vpc", "module.eks", None]
    assert [s.label for s in plan] == ["stage 1/3 (-target=module.vpc)", "stage 2/3 (-target=module.eks)",
                                       "stage 3/3 (everything)"]
    assert [s.target for s in stages(["module.eks", "module.vpc", "module.eks"])] == ["module.eks", "module.vpc", None]
    assert [s.target for s in stages([])] == [None]


def summary(**by_action: list[str]) -> PlanSummary:
    return PlanSummary({a: tuple(v) for a, v in by_action.items()})


def test_a_stage_is_within_the_reviewed_plan_only_with_the_same_addresses_and_actions():
    reviewed = summary(create=["module.vpc.a", "module.eks.b", "module.eks.c"], update=["module.x.d"])
    assert unreviewed(reviewed, summary(create=["module.vpc.a"])) == []
    assert unreviewed(reviewed, summary(create=["module.eks.b"], update=["module.x.d"])) == []
    assert unreviewed(reviewed, summary()) == []
    sneaked = unreviewed(reviewed, summary(create=["module.vpc.a", "module.vpc.z"]))
    assert [(d.address, d.action, d.reviewed) for d in sneaked] == [("module.vpc.z", "create", None)]
    assert sneaked[0].line() == "create module.vpc.z (not in the reviewed plan)"
    other = unreviewed(reviewed, summary(replace=["module.x.d"], delete=["module.vpc.old"]))
    assert [(d.address, d.action, d.reviewed) for d in other] == [("module.vpc.old", "delete", None),
                                                                  ("module.x.d", "replace", "update")]
    assert "the reviewed plan showed update" in other[1].line()


def test_the_difference_of_two_full_plans_goes_both_ways():
    before = summary(create=["a.x", "a.y"])
    after = summary(create=["a.x", "a.z"], update=["a.y"])
    found = {(d.address, d.action, d.reviewed) for d in difference(before, after)}
    assert found == {("a.y", "update", "create"), ("a.z", "create", None)}
    gone = difference(before, summary(create=["a.x"]))
    assert [(d.address, d.action) for d in gone] == [("a.y", "no-op")] and "no change to a.y" in gone[0].line()


def test_the_blueprint_module_declares_what_targets_name():
    blocks = declared_blocks(BLUEPRINT)
    assert {("module", "vpc"), ("module", "eks"), ("module", "eks_blueprints_addons"),
            ("module", "data_addons")} <= blocks
    variables = declared_variables(BLUEPRINT)
    assert not variables["name"].required and variables["enable_kuberay_operator"].type == "bool"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "module"
    shutil.copytree(BLUEPRINT, root)
    return Workspace(Terraform(TERRAFORM or "terraform", timeout=120), root, tmp_path / "workspaces", "prod",
                     var_files=[root / "blueprint.tfvars"])


@needs_terraform
def test_var_files_switch_add_ons_on_and_a_target_plans_one_module_and_what_it_needs(ws: Workspace):
    full = ws.plan("full", vars={"name": "prod"})
    created = full.summary.by_action["create"]
    assert 'module.data_addons.terraform_data.addon["kuberay_operator"]' in created  # from blueprint.tfvars
    assert 'module.data_addons.terraform_data.addon["aibrix"]' not in created  # off there, off by default
    assert "-var-file=" + str(ws.path / "blueprint.tfvars") in " ".join(ws._var_file_args())

    vpc = ws.plan("vpc", vars={"name": "prod"}, sync=False, target="module.vpc")
    assert set(vpc.summary.by_action["create"]) == {"module.vpc.terraform_data.vpc",
                                                    "module.vpc.terraform_data.subnet[0]",
                                                    "module.vpc.terraform_data.subnet[1]"}
    assert unreviewed(full.summary, vpc.summary) == []
    eks = ws.plan("eks", vars={"name": "prod"}, sync=False, target="module.eks")
    assert {a.split(".")[1] for a in eks.summary.by_action["create"]} == {"vpc", "eks"}  # with its dependency
    assert ws.changed_inputs(full) == ""


@needs_terraform
def test_a_var_file_outside_the_root_module_is_an_input_of_the_plan(tmp_path: Path):
    root = tmp_path / "module"
    shutil.copytree(BLUEPRINT, root)
    (root / "blueprint.tfvars").unlink()
    solution = tmp_path / "solution.tfvars"
    solution.write_text("enable_aibrix_stack = true\n")
    ws = Workspace(Terraform(TERRAFORM or "terraform", timeout=120), root, tmp_path / "ws", "prod",
                   var_files=[solution])
    saved = ws.plan("p", vars={"name": "prod"})
    assert 'module.data_addons.terraform_data.addon["aibrix"]' in saved.summary.by_action["create"]
    solution.write_text("enable_aibrix_stack = false\n")
    assert str(solution) in ws.changed_inputs(saved)
