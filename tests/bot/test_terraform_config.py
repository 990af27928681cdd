"""`terraform:` config for the ai-on-eks layout: var files, staged targets and the name variable,
each mistake refused at load with the key and what to write instead."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bot.config import ConfigError, load_config
from tests.support.terraform import BLUEPRINT, MODULE


@pytest.fixture
def root(tmp_path: Path) -> Path:
    copy = tmp_path / "base"
    shutil.copytree(BLUEPRINT, copy)
    return copy


def load(tmp_path: Path, terraform: str):
    path = tmp_path / "infer-bot.yaml"
    path.write_text(f"terraform:\n{terraform}", encoding="utf-8")
    return load_config(path).terraform


def test_the_ai_on_eks_layout_loads_and_name_defaults_to_the_modules_name_variable(tmp_path: Path, root: Path):
    tf = load(tmp_path, f"""  root: {root}
  var_files: [blueprint.tfvars]
  apply_targets: [module.vpc, module.eks]
  destroy_targets: [module.data_addons, module.eks_blueprints_addons, module.eks]
""")
    assert tf.var_file_paths() == [root / "blueprint.tfvars"]
    assert tf.apply_targets == ["module.vpc", "module.eks"]
    assert tf.name_var == "name"  # the module declares `name`: provision <cluster> sets it
    assert load(tmp_path, f"  root: {root}\n  name_var: null\n").name_var is None  # opted out
    assert load(tmp_path, f"  root: {MODULE}\n").name_var is None  # no `name` there
    assert load(tmp_path, f"  root: {MODULE}\n  name_var: cluster_name\n").name_var == "cluster_name"
    outside = tmp_path / "solution.tfvars"
    outside.write_text("enable_aibrix_stack = true\n")
    assert load(tmp_path, f"  root: {root}\n  var_files: [{outside}]\n").var_file_paths() == [outside]


@pytest.mark.parametrize(("extra", "expected"), [
    ("var_files: [solutions/blueprint.tfvars]", "var_files: 'solutions/blueprint.tfvars' is not a file"),
    ("apply_targets: [vpc]", "apply_targets: 'vpc' is not a module or resource address"),
    ("apply_targets: ['-target=module.vpc']", "is not a module or resource address"),
    ("destroy_targets: [data.aws_ami.x]", "destroy_targets: 'data.aws_ami.x' is not a module or resource address"),
    ("apply_targets: [module.vpc, module.vpc]", "apply_targets names a target twice"),
    ("apply_targets: [module.vpcc]", "the root module declares no module.vpcc (its modules: module.data_addons"),
    ("name_var: cluster_name", "declares no variable 'cluster_name'"),
    ("apply_targets: module.vpc", "apply_targets"),
])
def test_mistakes_are_refused_with_the_key_and_the_reason(tmp_path: Path, root: Path, extra: str, expected: str):
    with pytest.raises(ConfigError) as refused:
        load(tmp_path, f"  root: {root}\n  {extra}\n")
    assert "terraform" in str(refused.value) and expected in str(refused.value)


def test_staging_without_a_root_module_is_refused(tmp_path: Path):
    with pytest.raises(ConfigError, match="need `root`"):
        load(tmp_path, "  apply_targets: [module.vpc]\n")
