"""The two-person rule end to end: a destroy needs two distinct approvers, one of them an admin, in any
order. Signed Slack HTTP → a real `infer-bot serve` → the real terraform binary on the test module.

Destroy is the only kind of change that needs an admin's approval, so these tests provision a cluster
first; their assertions are about the approval card and what each approver is told, not Terraform's
output (tests/e2e/test_terraform_bot.py covers that).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.sandbox.slack.webapi import Call, LocalSlack
from tests.support.binaries import needs_terraform
from tests.support.botproc import BotProcess, Database
from tests.support.slack import ADMIN, APPROVER, APPROVER2, OPERATOR, op_id_of, text_of
from tests.support.terraform import MODULE, apply_card
from tests.support.waiting import wait_until

pytestmark = needs_terraform
ADMIN2 = "U0ADMIN2"  # asks for the destroy, so that ADMIN is free to approve it


@dataclass
class Destroy:
    bot: BotProcess
    slack: LocalSlack
    db: Database
    card: Call

    @property
    def op_id(self) -> int:
        return int(op_id_of(self.card) or 0)

    def approve(self, user: str) -> None:
        assert self.bot.click("op_approve", str(self.op_id), user=user, message_ts=self.card.response["ts"]).ok

    def told(self, user: str, needle: str) -> str:
        """The ephemeral answer to `user`'s click that contains `needle`."""
        return text_of(self.slack.wait_for(lambda c: c.method == "chat.postEphemeral"
                                           and c.params.get("user") == user and needle in text_of(c)))

    def card_now(self, needle: str) -> str:
        """The card as last updated in Slack, once it shows `needle`."""
        ts = self.card.response["ts"]

        def latest() -> str | None:
            updates = [c for c in self.slack.calls_to("chat.update") if c.params.get("ts") == ts]
            shown = text_of(updates[-1]) if updates else ""
            return shown if needle in shown else None

        return wait_until(latest, what=f"the card showing {needle!r}")

    def started(self) -> None:
        """The destroy was approved and the worker started it (what Terraform then does is not ours here)."""
        wait_until(lambda: {"approved", "started"} <= {r["action"] for r in self.db.audit(self.op_id)},
                   timeout=30, what="the destroy approved and started")


@pytest.fixture
def destroy(make_bot: Callable[..., BotProcess], kube, slack: LocalSlack, tmp_path: Path) -> Destroy:
    """A provisioned cluster `alpha` and the approval card of its destroy, asked for by an admin."""
    module = tmp_path / "module"
    shutil.copytree(MODULE, module)
    kubeconfig = kube.write_kubeconfig(tmp_path / "provisioned-kubeconfig")
    bot = make_bot(
        roles={"admin": [ADMIN, ADMIN2], "approver": [APPROVER, APPROVER2], "operator": [OPERATOR]},
        terraform={"root": str(module), "workdir": str(tmp_path / "workspaces"), "name_var": "cluster_name",
                   "vars": {"kubeconfig_path": str(kubeconfig)}, "progress_seconds": 0.3})
    db = Database(bot.database_url)
    bot.slash("provision alpha", user=ADMIN)
    provision = apply_card(slack)
    assert bot.click("op_approve", op_id_of(provision), user=APPROVER, message_ts=provision.response["ts"]).ok
    wait_until(lambda: db.rows("SELECT status FROM infra_clusters WHERE name = 'alpha'") == [{"status": "provisioned"}],
               timeout=60, what="alpha provisioned")
    bot.slash("destroy alpha", user=ADMIN2)
    card = apply_card(slack, n=2)
    shown = text_of(card)
    assert "0 of 2 · needs an admin's approval" in shown
    assert "Waiting for 2 more approval(s), one of them from an admin" in shown
    return Destroy(bot, slack, db, card)


def test_an_approver_first_then_an_admin_runs_the_destroy(destroy: Destroy):
    destroy.approve(APPROVER)
    assert "needs 1 more, from an admin" in destroy.told(APPROVER, "recorded")
    shown = destroy.card_now("1 of 2")
    assert "needs an admin's approval" in shown and "Waiting for 1 more approval(s), from an admin" in shown
    assert destroy.db.operation(destroy.op_id)["status"] == "pending_approval"

    destroy.approve(ADMIN)
    destroy.started()
    shown = destroy.card_now("2 of 2")
    assert f"Approved by <@{APPROVER}>, <@{ADMIN}>" in shown and f"admin: <@{ADMIN}>" in shown
    assert "needs an admin's approval" not in shown


def test_an_admin_first_then_an_approver_runs_the_destroy(destroy: Destroy):
    destroy.approve(ADMIN)
    told = destroy.told(ADMIN, "recorded")
    assert "needs 1 more" in told and "admin" not in told
    shown = destroy.card_now("1 of 2")
    assert "needs an admin's approval" not in shown and "Waiting for 1 more approval(s) (approved by" in shown

    destroy.approve(APPROVER)
    destroy.started()
    assert f"Approved by <@{ADMIN}>, <@{APPROVER}>" in destroy.card_now("2 of 2")


def test_two_approvers_without_an_admin_do_not_run_it_and_the_second_is_told_why(destroy: Destroy):
    destroy.approve(APPROVER)
    destroy.told(APPROVER, "recorded")
    destroy.approve(APPROVER2)
    told = destroy.told(APPROVER2, "needs an admin's approval")
    assert f"#{destroy.op_id}" in told and "not counted" in told and "ask an admin" in told
    # The refusal is audited in the click's transaction, so once it is told the row is there.
    refused = [r for r in destroy.db.audit(destroy.op_id) if r["outcome"] == "refused"]
    assert [(r["actor"], r["action"]) for r in refused] == [(APPROVER2, "approve")]
    assert "needs an admin's approval" in refused[0]["detail"]
    assert destroy.db.operation(destroy.op_id)["status"] == "pending_approval"
    assert [r["action"] for r in destroy.db.audit(destroy.op_id)].count("approval") == 1
    assert "needs an admin's approval" in destroy.card_now("1 of 2")

    destroy.approve(ADMIN)  # the slot kept for an admin is still open
    destroy.started()
