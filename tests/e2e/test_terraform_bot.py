"""Provisioning end to end: signed Slack HTTP → a real `infer-bot serve` → the real terraform binary on
the test root module → the Kubernetes emulator for the provisioned cluster; Slack is LocalSlack."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.app import build_runtime, make_client
from bot.config import Settings, load_config
from bot.sandbox.slack.webapi import Call, LocalSlack
from tests.support.binaries import TERRAFORM, needs_terraform
from tests.support.botproc import BOT_TOKEN, BotProcess, Database
from tests.support.slack import ADMIN, APPROVER, APPROVER2, CHANNEL, OPERATOR, VIEWER, op_id_of, text_of
from tests.support.terraform import MODULE, SECRET, apply_card
from tests.support.waiting import wait_until

pytestmark = needs_terraform
ADMIN2 = "U0ADMIN2"
DRIFT_CHANNEL = "C0DRIFT"


@dataclass
class Infra:
    bot: BotProcess
    slack: LocalSlack
    db: Database
    module: Path
    workdir: Path

    def workspace(self, name: str) -> Path:
        return self.workdir / name

    def card(self, n: int = 1, timeout: float = 30) -> Call:
        return apply_card(self.slack, n=n, timeout=timeout)

    def thread(self, ts: str) -> list[Call]:
        return [c for c in self.slack.calls_to("chat.postMessage") if c.params.get("thread_ts") == ts]

    def said_in_thread(self, ts: str, needle: str, timeout: float = 30) -> Call:
        return self.slack.wait_for(lambda c: c.method == "chat.postMessage" and c.params.get("thread_ts") == ts
                                   and needle in text_of(c), timeout=timeout)

    def approve(self, card: Call, user: str = APPROVER) -> None:
        assert self.bot.click("op_approve", op_id_of(card), user=user, message_ts=card.response["ts"]).ok

    def provision(self, name: str, *options: str, approver: str = APPROVER, n: int = 1) -> Call:
        """provision → card → approve → succeeded; returns the card."""
        self.bot.slash(" ".join(["provision", name, *options]), user=ADMIN)
        card = self.card(n)
        self.approve(card, approver)
        self.said_in_thread(card.response["ts"], "Succeeded")
        return card

    def everything_slack_saw(self) -> str:
        calls = json.dumps([[c.method, c.params] for c in self.slack.calls], default=str)
        files = "".join(f.content.decode("utf-8", "replace") for f in self.slack.files)
        return calls + files


@pytest.fixture
def infra(make_bot: Callable[..., BotProcess], kube, slack: LocalSlack, tmp_path: Path) -> Infra:
    module = tmp_path / "module"
    shutil.copytree(MODULE, module)
    workdir = tmp_path / "workspaces"
    # The provisioned cluster's API is the emulator: the module outputs this kubeconfig's path.
    kubeconfig = kube.write_kubeconfig(tmp_path / "provisioned-kubeconfig")
    bot = make_bot(
        roles={"admin": [ADMIN, ADMIN2], "approver": [APPROVER, APPROVER2], "operator": [OPERATOR]},
        terraform={"root": str(module), "workdir": str(workdir), "name_var": "cluster_name",
                   "vars": {"kubeconfig_path": str(kubeconfig)}, "progress_seconds": 0.3,
                   "drift_cron": "0 6 * * *", "drift_channel": DRIFT_CHANNEL})
    return Infra(bot, slack, Database(bot.database_url), module, workdir)


def test_provision_plan_card_approval_progress_outputs_and_registration(infra: Infra, kube):
    bot, slack = infra.bot, infra.slack
    started = time.monotonic()
    assert bot.slash("provision alpha var.nodes=3 var.delay_seconds=1", user=ADMIN).status_code == 200
    assert time.monotonic() - started < 3
    planning = slack.wait_for(lambda c: c.method == "chat.postMessage" and "Planning" in text_of(c))
    assert "provision" in text_of(planning) and "alpha" in text_of(planning)
    # A plan needs no approval: nothing to click, nobody to wait for.
    assert op_id_of(planning) is None and "Waiting for" not in text_of(planning)

    card = infra.card()
    shown = text_of(card)
    assert "Provision infrastructure on alpha" in shown
    assert "5 to add, 0 to change, 0 to destroy" in shown
    assert "terraform_data.node[2]" in shown and "terraform_data.control_plane" in shown
    assert "`var.nodes` = `3`" in shown
    assert not infra.workspace("alpha").joinpath("terraform.tfstate").exists()  # nothing applied yet
    plan_op = wait_until(lambda: infra.db.rows("SELECT * FROM operations WHERE kind = 'plan' AND status = "
                                               "'succeeded'"), what="the plan operation done")[0]
    assert f"#{op_id_of(card)}" in plan_op["result"]

    infra.approve(card)
    ts = card.response["ts"]
    done = infra.said_in_thread(ts, "Succeeded")
    assert "5 added, 0 changed, 0 destroyed" in text_of(done) and "cluster=alpha" in text_of(done)

    # Progress: one message in the thread, edited in place, no more often than progress_seconds.
    progress = [c for c in infra.thread(ts) if "Applying" in text_of(c) or "Applied" in text_of(c)]
    assert len(progress) == 1
    edits = [c for c in slack.calls_to("chat.update") if c.params.get("ts") == progress[0].response["ts"]]
    assert edits and "Applied: 5/5 resources" in text_of(edits[-1])
    assert any("/5 resources done" in text_of(c) for c in [progress[0], *edits[:-1]])
    times = [progress[0].at] + [c.at for c in edits]
    assert all(later - earlier >= 0.25 for earlier, later in zip(times[:-2], times[1:-1], strict=True))

    outputs = infra.said_in_thread(ts, "Outputs of alpha")
    assert "alpha-node-2" in text_of(outputs) and "admin_token" in text_of(outputs)
    assert "sensitive, not shown" in text_of(outputs)

    row = infra.db.rows("SELECT * FROM infra_clusters WHERE name = 'alpha'")[0]
    assert row["status"] == "provisioned" and row["reach"] == "kubeconfig"
    assert json.loads(row["vars"]) == {"nodes": 3, "delay_seconds": 1}
    applied = json.loads((infra.workspace("alpha") / "infer-bot.auto.tfvars.json").read_text())
    assert applied["nodes"] == 3 and applied["cluster_name"] == "alpha"
    assert not list(infra.workspace("alpha").glob(".infer-bot/plans/*/plan.tfplan"))  # secrets in clear: gone

    # The new cluster answers later commands by name.
    bot.slash("status cluster=alpha", user=VIEWER)
    status = slack.wait_for(lambda c: c.method == "response_url" and "Deployments in alpha" in text_of(c))
    assert "qwen" in text_of(status)
    bot.slash("clusters", user=VIEWER)
    listed = slack.wait_for(lambda c: c.method == "response_url" and "Clusters" in text_of(c))
    assert "provisioned by Terraform" in text_of(listed) and "last run: apply ok" in text_of(listed)
    assert "reachable" in text_of(listed)

    # A sensitive output or variable never reaches Slack or the bot's log.
    for secret in (SECRET, f"token-{SECRET}"):
        assert secret not in infra.everything_slack_saw()
        assert secret not in bot.log()


def test_undeclared_or_mistyped_variables_are_refused_before_any_plan(infra: Infra):
    bot, slack = infra.bot, infra.slack
    bot.slash("provision alpha var.colour=red var.nodes=2", user=ADMIN)
    refused = slack.wait_for(lambda c: c.method == "response_url")
    shown = text_of(refused)
    assert "does not declare `var.colour`" in shown
    assert "`nodes`" in shown and "`instance_type`" in shown and "`cluster_name`" not in shown
    bot.slash("provision alpha var.nodes=three", user=ADMIN)
    slack.wait_for(lambda c: c.method == "response_url" and "`var.nodes` is a number" in text_of(c))
    bot.slash("provision alpha var.cluster_name=other", user=ADMIN)
    slack.wait_for(lambda c: c.method == "response_url" and "comes from `provision <cluster>`" in text_of(c))
    bot.slash("provision alpha", user=OPERATOR)
    slack.wait_for(lambda c: c.method == "response_url" and "needs the *admin* role" in text_of(c))
    bot.slash("destroy alpha", user=ADMIN)
    slack.wait_for(lambda c: c.method == "response_url" and "has no Terraform workspace" in text_of(c))
    assert infra.db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    assert not infra.workdir.exists()  # no plan ran
    assert slack.calls_to("chat.postMessage") == []


def test_a_long_plan_is_collapsed_on_the_card_and_attached_in_full(infra: Infra):
    typed = "typed-in-slack-0d9e"  # a value for a sensitive variable, given with the command
    infra.bot.slash(f"provision wide var.nodes=25 var.admin_password={typed}", user=ADMIN)
    card = infra.card()
    shown = text_of(card)
    assert "27 to add" in shown and "…and 17 more" in shown and "terraform_data.node[24]" not in shown
    assert "`var.admin_password` = `(sensitive)`" in shown
    upload = wait_until(lambda: [f for f in infra.slack.files if f.completed], what="the address list uploaded")[0]
    assert upload.thread_ts == card.response["ts"] and upload.channel_id == CHANNEL
    listing = upload.content.decode()
    assert "terraform_data.node[24]" in listing and "27 to add" in listing
    assert typed not in infra.everything_slack_saw() and typed not in infra.bot.log()


def test_apply_is_refused_when_the_workspace_changed_after_the_plan(infra: Infra):
    infra.bot.slash("provision alpha", user=ADMIN)
    card = infra.card()
    main = infra.module / "main.tf"
    main.write_text(main.read_text() + '\nresource "terraform_data" "sneaked_in" {}\n')
    infra.approve(card)
    failed = infra.said_in_thread(card.response["ts"], "Failed")
    shown = text_of(failed)
    assert "changed after this plan was made" in shown and "module/main.tf" in shown
    assert "/infer provision alpha" in shown  # how to get a new plan
    assert infra.db.operation(int(op_id_of(card)))["status"] == "failed"
    assert not (infra.workspace("alpha") / "terraform.tfstate").exists()
    assert infra.db.rows("SELECT count(*) AS n FROM infra_clusters")[0]["n"] == 0


def test_a_second_provision_queues_behind_the_running_one_then_plans_and_applies(infra: Infra):
    bot, slack = infra.bot, infra.slack
    bot.slash("provision alpha var.delay_seconds=3", user=ADMIN)
    first = infra.card()
    infra.approve(first)
    first_id = int(op_id_of(first))
    wait_until(lambda: infra.db.operation(first_id)["status"] == "running", what="first apply running")
    bot.slash("provision alpha var.nodes=1", user=ADMIN)
    queued = slack.wait_for(lambda c: c.method == "chat.postMessage" and f"queued behind #{first_id}" in text_of(c))
    assert "Queued" in text_of(queued)
    second = infra.card(n=2, timeout=40)
    assert infra.db.operation(first_id)["status"] == "succeeded"  # planned only after the first finished
    assert "0 to add, 0 to change, 1 to destroy" in text_of(second)
    infra.approve(second)
    infra.said_in_thread(second.response["ts"], "Succeeded")
    kinds = [(r["kind"], r["status"]) for r in infra.db.rows("SELECT kind, status FROM operations ORDER BY id")]
    assert kinds == [("plan", "succeeded"), ("provision", "succeeded"), ("plan", "succeeded"),
                     ("provision", "succeeded")]
    bot.slash("ops", user=VIEWER)
    slack.wait_for(lambda c: c.method == "response_url" and "plan" in text_of(c) and "provision" in text_of(c))


def test_destroy_needs_two_approvers_one_of_them_an_admin_in_any_order(infra: Infra):
    bot, slack = infra.bot, infra.slack
    infra.provision("alpha")
    bot.slash("destroy alpha", user=OPERATOR)
    slack.wait_for(lambda c: c.method == "response_url" and "needs the *admin* role" in text_of(c))
    bot.slash("destroy alpha", user=ADMIN)
    card = infra.card(n=2)
    shown = text_of(card)
    assert "DESTROY 4 resource(s)" in shown and "everything on it" in shown and "admin" in shown
    assert "0 of 2" in shown
    op_id = int(op_id_of(card))

    def told(user: str) -> str:
        return text_of(slack.wait_for(lambda c: c.method == "chat.postEphemeral" and c.params.get("user") == user))

    infra.approve(card, APPROVER)  # an approver may come first; the last slot is kept for an admin
    assert "needs 1 more, from an admin" in told(APPROVER)
    infra.approve(card, ADMIN)
    assert "someone else has to approve" in told(ADMIN)
    infra.approve(card, APPROVER2)
    assert "needs an admin's approval" in told(APPROVER2)
    assert infra.db.operation(op_id)["status"] == "pending_approval"
    infra.approve(card, ADMIN2)
    done = infra.said_in_thread(card.response["ts"], "Succeeded")
    assert "4 destroyed" in text_of(done)
    assert infra.db.rows("SELECT status FROM infra_clusters WHERE name = 'alpha'")[0]["status"] == "destroyed"
    bot.slash("status cluster=alpha", user=VIEWER)
    slack.wait_for(lambda c: c.method == "response_url" and "unknown cluster `alpha`" in text_of(c))


def test_drift_behind_the_bots_back_is_reported_with_a_fix_button_and_lock_errors_are_reported(infra: Infra):
    bot, slack = infra.bot, infra.slack
    infra.provision("alpha")
    workspace = infra.workspace("alpha")
    # Someone applies by hand in the workspace: a third node the configuration does not have.
    subprocess.run([TERRAFORM, "apply", "-auto-approve", "-input=false", "-no-color", "-var", "nodes=3"],
                   cwd=workspace, check=True, capture_output=True)
    bot.slash("drift alpha", user=OPERATOR)
    report = slack.wait_for(lambda c: c.method == "chat.postMessage" and "Drift in alpha" in text_of(c), timeout=30)
    assert "terraform_data.node[2]" in text_of(report) and "1 to destroy" in text_of(report)
    button = [e for b in report.params["blocks"] if b["type"] == "actions" for e in b["elements"]][0]
    assert (button["action_id"], button["value"]) == ("drift_fix", "alpha")
    assert infra.db.rows("SELECT count(*) AS n FROM operations WHERE kind = 'provision'")[0]["n"] == 1

    bot.click("drift_fix", "alpha", user=ADMIN)
    fix = infra.card(n=2)
    assert "0 to add, 0 to change, 1 to destroy" in text_of(fix)
    infra.approve(fix)
    infra.said_in_thread(fix.response["ts"], "Succeeded")
    bot.slash("drift alpha", user=OPERATOR)
    slack.wait_for(lambda c: c.method == "chat.postMessage" and "no drift" in text_of(c), timeout=30)

    # Terraform's own state lock, held by someone else: reported, not retried.
    with (workspace / "terraform.tfstate").open("r+") as state:
        fcntl.lockf(state, fcntl.LOCK_EX | fcntl.LOCK_NB)
        bot.slash("drift alpha", user=OPERATOR)
        failed = slack.wait_for(lambda c: c.method == "chat.postMessage" and "Failed" in text_of(c), timeout=30)
    assert "locked by another run; I did not retry" in text_of(failed)


def test_the_scheduled_drift_check_is_quiet_when_clean_and_reports_drift(infra: Infra):
    infra.provision("alpha")
    config = load_config(infra.bot.config_path)
    settings = Settings(slack_bot_token=BOT_TOKEN, slack_api_url=infra.slack.api_url,
                        infer_bot_database_url=infra.bot.database_url)
    # Two more replicas' schedulers fire the 06:00 slot with the serving bot: one check, not two.
    replicas = [build_runtime(config, settings, client=make_client(settings)) for _ in range(2)]
    try:
        def fire(day: int) -> int:
            slot = datetime(2026, 11, day, 6, 0, 3, tzinfo=UTC)
            queued = [replica.scheduled_drift_check(now=slot) for replica in replicas]
            assert sorted(map(len, queued)) == [0, 1]
            return (queued[0] or queued[1])[0]

        first = fire(27)
        wait_until(lambda: infra.db.operation(first)["status"] == "succeeded", what="clean check done")
        assert [c for c in infra.slack.calls if c.params.get("channel") == DRIFT_CHANNEL] == []

        subprocess.run([TERRAFORM, "apply", "-auto-approve", "-input=false", "-no-color", "-var", "nodes=1"],
                       cwd=infra.workspace("alpha"), check=True, capture_output=True)
        second = fire(28)
    finally:
        for replica in replicas:
            replica.close()
    report = infra.slack.wait_for(lambda c: c.params.get("channel") == DRIFT_CHANNEL, timeout=30)
    assert "Drift in alpha" in text_of(report) and not report.params.get("thread_ts")
    assert "terraform_data.node[1]" in text_of(report)
    # The check posts its report before it finishes, and it is the only check of that slot: once it
    # is done, nothing more can come to the drift channel.
    wait_until(lambda: infra.db.operation(second)["status"] == "succeeded", what="drift check done")
    assert infra.db.rows("SELECT count(*) AS n FROM operations WHERE kind = 'drift'")[0]["n"] == 2
    assert len([c for c in infra.slack.calls if c.params.get("channel") == DRIFT_CHANNEL]) == 1


def test_plan_and_apply_through_the_bot_against_terraform_alone(infra: Infra, tmp_path: Path, capsys: Any):
    """Measures the bot's overhead; the ratio is printed for the record (run with -s)."""
    alone_dir = tmp_path / "alone"
    shutil.copytree(MODULE, alone_dir)
    kubeconfig = load_config(infra.bot.config_path).terraform.vars["kubeconfig_path"]
    started = time.monotonic()
    for args in (["init", "-input=false"],
                 ["plan", "-input=false", "-out=p.tfplan", "-var", "cluster_name=solo", "-var",
                  f"kubeconfig_path={kubeconfig}"],
                 ["show", "-json", "p.tfplan"],
                 ["apply", "-input=false", "p.tfplan"]):
        subprocess.run([TERRAFORM, f"-chdir={alone_dir}", *args], check=True, capture_output=True)
    alone = time.monotonic() - started

    started = time.monotonic()
    infra.bot.slash("provision timed", user=ADMIN)
    card = infra.card()
    planned = time.monotonic() - started
    infra.approve(card)
    infra.said_in_thread(card.response["ts"], "Succeeded")
    through_bot = time.monotonic() - started
    with capsys.disabled():
        print(f"\nterraform alone (init+plan+show+apply): {alone:.2f} s; through the bot (command → "
              f"card {planned:.2f} s → approve → succeeded): {through_bot:.2f} s; ratio {through_bot / alone:.1f}")
    assert through_bot < alone + 15  # the bot adds seconds, not minutes


def _terraform_applying(workspace: Path) -> list[int]:
    """Pids of the terraform apply running in `workspace` (its -chdir names the folder)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        if f"-chdir={workspace}".encode() in argv and b"apply" in argv:
            pids.append(int(cmdline.parent.name))
    return pids


def test_a_killed_or_timed_out_apply_fails_with_its_reason_and_frees_the_lock(
        make_bot: Callable[..., BotProcess], kube, slack: LocalSlack, tmp_path: Path):
    module = tmp_path / "module"
    shutil.copytree(MODULE, module)
    bot = make_bot(roles={"admin": [ADMIN], "approver": [APPROVER], "operator": [OPERATOR]},
                   terraform={"root": str(module), "workdir": str(tmp_path / "ws"), "name_var": "cluster_name",
                              "timeout_minutes": 0.15, "progress_seconds": 0.3})
    infra = Infra(bot, slack, Database(bot.database_url), module, tmp_path / "ws")

    # Killed from outside (the OOM killer, an admin) half-way through.
    bot.slash("provision alpha var.nodes=2 var.delay_seconds=60", user=ADMIN)
    card = infra.card()
    infra.approve(card)
    pids = wait_until(lambda: _terraform_applying(infra.workspace("alpha")), what="terraform apply running")
    # Half-way: the progress message says a node is being made (its local-exec sleeps 60 s).
    slack.wait_for(lambda c: c.method in ("chat.postMessage", "chat.update")
                   and "now `terraform_data.node[" in text_of(c), timeout=30)
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    failed = infra.said_in_thread(card.response["ts"], "Failed")
    assert "killed (SIGKILL)" in text_of(failed) and "drift check" in text_of(failed)
    assert "terraform_data.node" in text_of(failed)  # what it was changing
    assert infra.db.operation(int(op_id_of(card)))["status"] == "failed"
    assert infra.db.rows("SELECT count(*) AS n FROM locks")[0]["n"] == 0

    # Past terraform.timeout_minutes (9 s here): stopped, reported, lock freed.
    bot.slash("provision beta var.nodes=1 var.delay_seconds=60", user=ADMIN)
    card = infra.card(n=2)
    infra.approve(card)
    failed = infra.said_in_thread(card.response["ts"], "Failed", timeout=90)
    assert "did not finish within" in text_of(failed)
    assert infra.db.rows("SELECT count(*) AS n FROM locks")[0]["n"] == 0
    assert not _terraform_applying(infra.workspace("beta"))
    assert [r["action"] for r in infra.db.audit(int(op_id_of(card)))][-1] == "failed"
