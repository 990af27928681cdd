"""The local Terraform module the provisioning tests apply, and how they find its cards."""

from __future__ import annotations

from pathlib import Path

from bot.sandbox.slack.webapi import Call, LocalSlack
from tests.support.slack import op_id_of, text_of
from tests.support.waiting import wait_until

MODULE = Path(__file__).resolve().parents[1] / "fixtures" / "terraform" / "cluster"
SECRET = "hunter2-never-shown-8c1f"


def apply_card(slack: LocalSlack, n: int = 1, timeout: float = 30) -> Call:
    """The n-th approval card of a provision or destroy (plans have cards of their own)."""

    def cards() -> list[Call]:
        return [c for c in slack.calls_to("chat.postMessage") if c.ok and not c.params.get("thread_ts")
                and op_id_of(c) and ("Provision infrastructure" in text_of(c) or "Destroy infrastructure"
                                     in text_of(c))]

    return wait_until(lambda: cards()[n - 1] if len(cards()) >= n else None, timeout, f"apply card #{n}")
