"""The ai-on-eks inference-ready cluster, end to end: signed Slack HTTP → `infer-bot serve` → the real
terraform binary on a module shaped like infra/base/terraform with the solution's blueprint.tfvars
(module.vpc, module.eks, add-ons switched on by the tfvars), applied in stages as install.sh does and
destroyed in reverse stages after the bot's releases are removed, as cleanup.sh does.

Each resource of the test module appends "<pid of the terraform run> create|destroy <module>" to an
event log, so the order of the applies (and that they were separate terraform runs) is read from it.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.sandbox.slack.webapi import Call, LocalSlack
from ops.helm import BUNDLED_CHART
from tests.support.binaries import TERRAFORM, needs_helm, needs_terraform
from tests.support.botproc import BotProcess, Database
from tests.support.slack import ADMIN, APPROVER, CHANNEL, OPERATOR, op_id_of, text_of
from tests.support.terraform import BLUEPRINT, apply_card, runs
from tests.support.waiting import wait_until

pytestmark = needs_terraform
VPC, EKS = "module.vpc", "module.eks"
ADDONS, DATA = "module.eks_blueprints_addons", "module.data_addons"
ADMIN2 = "U0ADMIN2"


@dataclass
class Stack:
    bot: BotProcess
    slack: LocalSlack
    db: Database
    root: Path
    workdir: Path
    events: Path

    def card(self, n: int = 1, timeout: float = 30) -> Call:
        return apply_card(self.slack, n=n, timeout=timeout)

    def thread(self, card: Call) -> list[str]:
        """What the card's thread shows, in order (edited progress messages as last edited)."""
        ts = card.response["ts"]
        posts = [c for c in self.slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]
        edits = {c.params.get("ts"): text_of(c) for c in self.slack.calls_to("chat.update")}
        return [edits.get(c.response["ts"], text_of(c)) for c in posts]

    def said(self, card: Call, needle: str, timeout: float = 60) -> Call:
        ts = card.response["ts"]
        return self.slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("thread_ts") == ts
                                   and needle in text_of(c), timeout=timeout)

    def approve(self, card: Call, user: str = APPROVER) -> None:
        assert self.bot.click("op_approve", op_id_of(card), user=user, message_ts=card.response["ts"]).ok

    def plan_cards(self) -> list[Call]:
        return [c for c in self.slack.calls_to("chat.postMessage") if not c.params.get("thread_ts")
                and ("Plan infrastructure" in text_of(c) or "Drift infrastructure" in text_of(c))]

    def terraform_runs(self) -> list[tuple[str, list[str]]]:
        return runs(self.events) if self.events.exists() else []


@pytest.fixture
def stack(make_bot: Callable[..., BotProcess], kube, slack: LocalSlack, tmp_path: Path) -> Stack:
    # The operator's copy of infra/base/terraform, with the solution's blueprint.tfvars beside it
    # (what install.sh does before it applies).
    root = tmp_path / "ai-on-eks"
    shutil.copytree(BLUEPRINT, root)
    events = tmp_path / "terraform-events.log"
    kubeconfig = kube.write_kubeconfig(tmp_path / "provisioned-kubeconfig")
    kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "default"},
              "type": "Opaque", "data": {"token": base64.b64encode(b"hf_test_value").decode()}})
    bot = make_bot(
        roles={"admin": [ADMIN, ADMIN2], "approver": [APPROVER], "operator": [OPERATOR]},
        chart={"path": str(BUNDLED_CHART)},
        terraform={"root": str(root), "workdir": str(tmp_path / "workspaces"), "var_files": ["blueprint.tfvars"],
                   "apply_targets": [VPC, EKS], "destroy_targets": [DATA, ADDONS, EKS],
                   "vars": {"kubeconfig_path": str(kubeconfig), "event_log": str(events)},
                   "progress_seconds": 0.3})
    return Stack(bot, slack, Database(bot.database_url), root, tmp_path / "workspaces", events)


def no_buttons_nor_zero_wait(call: Call) -> None:
    assert not [b for b in call.params.get("blocks") or [] if b["type"] == "actions"], text_of(call)
    assert "Waiting for" not in text_of(call)


def test_provision_reviews_the_full_plan_then_applies_module_vpc_module_eks_then_everything(stack: Stack):
    bot, slack = stack.bot, stack.slack
    bot.slash("provision prod", user=ADMIN)
    card = stack.card()

    # The plan step needs no approval: its card has no buttons and waits for nobody.
    planning = stack.plan_cards()[0]
    no_buttons_nor_zero_wait(planning)
    assert "none needed" in text_of(planning)
    for update in [c for c in slack.calls_to("chat.update") if c.params.get("ts") == planning.response["ts"]]:
        no_buttons_nor_zero_wait(update)

    shown = text_of(card)
    assert "10 to add, 0 to change, 0 to destroy" in shown  # the full plan is what approvers review
    assert 'module.data_addons.terraform_data.addon["kuberay_operator"]' in shown  # switched on by blueprint.tfvars
    assert "aibrix" not in shown  # not switched on there
    assert "in stages: `-target=module.vpc`, then `-target=module.eks`, then everything" in shown
    assert "var.name" not in shown  # the cluster's name, not a variable someone gave
    assert not stack.events.exists()  # a plan changes nothing

    stack.approve(card)
    done = stack.said(card, "Succeeded")
    assert "10 added, 0 changed, 0 destroyed" in text_of(done) and "cluster=prod" in text_of(done)
    # Three terraform runs, one after the other: module.vpc alone, module.eks alone, then the add-ons.
    assert [(verb, sorted(modules)) for verb, modules in stack.terraform_runs()] == [
        ("create", [VPC]), ("create", [EKS]), ("create", sorted([ADDONS, DATA]))]
    stage_lines = [t for t in stack.thread(card) if "all in the reviewed plan" in t]
    assert [t.split(":")[0] for t in stage_lines] == [
        "Stage 1/3 (-target=module.vpc)", "Stage 2/3 (-target=module.eks)", "Stage 3/3 (everything)"]
    assert "3 to add" in stage_lines[0] and "2 to add" in stage_lines[1] and "5 to add" in stage_lines[2]

    # terraform.name_var defaulted to the module's `name`: the EKS cluster is called prod.
    outputs = stack.said(card, "Outputs of prod")
    assert "update-kubeconfig --name prod" in text_of(outputs) and "`cluster_name` = `prod`" in text_of(outputs)
    applied = json.loads((stack.workdir / "prod" / "infer-bot.auto.tfvars.json").read_text())
    assert applied["name"] == "prod"
    row = stack.db.rows("SELECT * FROM infra_clusters WHERE name = 'prod'")[0]
    assert row["status"] == "provisioned" and row["reach"] == "kubeconfig"

    # Nothing left to do: a drift check finds none, and its plan card has no buttons either.
    bot.slash("drift prod", user=OPERATOR)
    slack.wait_for(lambda c: c.method == "chat.postMessage" and "no drift" in text_of(c), timeout=30)
    no_buttons_nor_zero_wait(stack.plan_cards()[1])

    bot.slash("provision prod var.name=other", user=ADMIN)
    slack.wait_for(lambda c: c.method == "response_url" and "`var.name` is the cluster's name" in text_of(c))


@needs_helm
def test_destroy_removes_the_bots_releases_first_then_destroys_in_reverse_stages(stack: Stack, kube):
    bot, slack = stack.bot, stack.slack
    bot.slash("provision prod", user=ADMIN)
    card = stack.card()
    stack.approve(card)
    stack.said(card, "Succeeded")
    bot.slash("deploy qwen3-1.7b-vllm name=qwen3 cluster=prod", user=OPERATOR)
    deploy = slack.wait_for(lambda c: c.method == "chat.postMessage" and not c.params.get("thread_ts")
                            and "Deploy qwen3 on prod" in text_of(c), timeout=30)
    stack.approve(deploy)
    stack.said(deploy, "Succeeded")
    assert kube.get("apps/v1", "Deployment", "default", "qwen3") is not None
    created = len(stack.terraform_runs())

    bot.slash("destroy prod", user=ADMIN)
    card = stack.card(n=2)
    shown = text_of(card)
    assert "DESTROY 10 resource(s)" in shown
    assert "releases on it are removed" in shown and "`default/qwen3`" in shown
    assert ("in stages: `-target=module.data_addons`, then `-target=module.eks_blueprints_addons`, then "
            "`-target=module.eks`, then the rest") in shown
    no_buttons_nor_zero_wait(stack.plan_cards()[-1])
    stack.approve(card, ADMIN2)  # the requester never approves their own change
    stack.approve(card, APPROVER)
    done = stack.said(card, "Succeeded", timeout=90)
    assert "10 destroyed" in text_of(done)

    thread = stack.thread(card)
    removed = next(i for i, t in enumerate(thread) if "Removed release `default/qwen3`" in t)
    first_stage = next(i for i, t in enumerate(thread) if t.startswith("Stage 1/4 (-target=module.data_addons)"))
    assert removed < first_stage
    assert kube.get("apps/v1", "Deployment", "default", "qwen3") is None
    assert kube.get("v1", "Service", "default", "qwen3") is None
    # Reverse stages, each its own terraform run: the data add-ons, the blueprints add-ons, EKS, then the VPC.
    assert stack.terraform_runs()[created:] == [("destroy", [DATA]), ("destroy", [ADDONS]), ("destroy", [EKS]),
                                                ("destroy", [VPC])]
    undeploy = stack.db.rows("SELECT action, status FROM release_revisions WHERE name = 'qwen3' ORDER BY revision")
    assert undeploy[-1] == {"action": "undeploy", "status": "removed"}
    assert stack.db.rows("SELECT status FROM infra_clusters WHERE name = 'prod'")[0]["status"] == "destroyed"


def test_a_stage_that_leaves_the_reviewed_plan_stops_shows_the_difference_and_asks_again(stack: Stack):
    bot = stack.bot
    bot.slash("provision prod", user=ADMIN)
    card = stack.card()
    # Between review and approval someone applies the VPC by hand with a third subnet: the reviewed plan
    # never showed what stage 1 must now do about it.
    workspace = stack.workdir / "prod"
    subprocess.run([TERRAFORM, "apply", "-auto-approve", "-input=false", "-no-color", "-target=module.vpc",
                    "-var-file=blueprint.tfvars", "-var", "name=prod", "-var", "subnets=3",
                    "-var", f"event_log={stack.events}"], cwd=workspace, check=True, capture_output=True)
    by_hand = len(stack.terraform_runs())
    stack.approve(card)
    failed = stack.said(card, "Failed")
    assert "stopped before stage 1/3 (-target=module.vpc)" in text_of(failed)
    stopped = stack.said(card, "Difference from the reviewed plan")
    assert "delete module.vpc.terraform_data.subnet[2] (not in the reviewed plan)" in text_of(stopped)
    assert len(stack.terraform_runs()) == by_hand  # nothing was applied
    assert stack.db.operation(int(op_id_of(card)))["status"] == "failed"

    again = stack.card(n=2)  # a new card, for a new approval
    assert "subnet[2]" in text_of(again) and "1 to destroy" in text_of(again)
    assert f"#{op_id_of(again)}" in text_of(failed)
    stack.approve(again)
    stack.said(again, "Succeeded")
    assert [m for _, m in stack.terraform_runs()[by_hand:]][:2] == [[VPC], [EKS]]


def test_a_module_changed_after_review_stops_before_any_stage_and_asks_again(stack: Stack):
    stack.bot.slash("provision prod", user=ADMIN)
    card = stack.card()
    vpc = stack.root / "modules" / "vpc" / "main.tf"
    vpc.write_text(vpc.read_text() + '\nresource "terraform_data" "sneaked_in" {}\n')
    stack.approve(card)
    failed = stack.said(card, "Failed")
    assert "stopped before stage 1/3" in text_of(failed) and "modules/vpc/main.tf" in text_of(failed)
    stopped = stack.said(card, "Difference from the reviewed plan")
    assert "create module.vpc.terraform_data.sneaked_in (not in the reviewed plan)" in text_of(stopped)
    assert not stack.events.exists()  # nothing was applied
    again = stack.card(n=2)
    assert "11 to add" in text_of(again) and "sneaked_in" in text_of(again)
    wait_until(lambda: stack.db.operation(int(op_id_of(again)))["status"] == "pending_approval",
               what="the new card waits for approval")
    assert again.params["channel"] == CHANNEL
