"""The local Terraform modules the provisioning tests apply, and how they find their cards."""

from __future__ import annotations

from pathlib import Path

from bot.sandbox.slack.webapi import Call, LocalSlack
from tests.support.slack import op_id_of, text_of
from tests.support.waiting import wait_until

MODULE = Path(__file__).resolve().parents[1] / "fixtures" / "terraform" / "cluster"
# Shaped like ai-on-eks' infra/base/terraform with the inference-ready solution's blueprint.tfvars in it.
BLUEPRINT = Path(__file__).resolve().parents[1] / "fixtures" / "terraform" / "blueprint"
SECRET = "hunter2-never-shown-8c1f"


def apply_card(slack: LocalSlack, n: int = 1, timeout: float = 30) -> Call:
    """The n-th approval card of a provision or destroy (plans have cards of their own)."""

    def cards() -> list[Call]:
        return [c for c in slack.calls_to("chat.postMessage") if c.ok and not c.params.get("thread_ts")
                and op_id_of(c) and ("Provision infrastructure" in text_of(c) or "Destroy infrastructure"
                                     in text_of(c))]

    return wait_until(lambda: cards()[n - 1] if len(cards()) >= n else None, timeout, f"apply card #{n}")


def runs(event_log: Path) -> list[tuple[str, list[str]]]:
    """The blueprint module's event log grouped by terraform run, in order: (create|destroy, modules)."""
    out: list[tuple[str, list[str]]] = []
    last_pid = None
    for line in event_log.read_text().splitlines():
        pid, verb, module = line.split()
        if pid != last_pid:
            out.append((verb, []))
            last_pid = pid
        if module not in out[-1][1]:
            out[-1][1].append(module)
    return out
