"""Who is in the test workspace, and how a test finds what the bot posted to the local Slack Web API."""

from __future__ import annotations

from bot.sandbox.slack.webapi import Call, LocalSlack
from tests.support.waiting import wait_until

OPERATOR, APPROVER, APPROVER2, ADMIN, VIEWER = "U0OPERATOR", "U0APPROVER", "U0APPROVER2", "U0ADMIN", "U0VIEWER"
CHANNEL = "C0OPS"
# The local Slack Web API on its own (tests/bot/sandbox): its bot token and the signing secret of the
# requests the tests sign.
LOCAL_TOKEN = "xoxb-test"
LOCAL_SECRET = "local-signing-secret"


def card_for(slack: LocalSlack, channel: str = CHANNEL, timeout: float = 10, n: int = 1) -> Call:
    """The n-th approval card posted in channel (a top-level message with an Approve button)."""

    def cards() -> list[Call]:
        return [c for c in slack.calls if c.method == "chat.postMessage" and c.status == 200
                and c.params.get("channel") == channel and not c.params.get("thread_ts")
                and op_id_of(c) is not None]

    return wait_until(lambda: cards()[n - 1] if len(cards()) >= n else None, timeout, f"approval card #{n}")


def op_id_of(call: Call) -> str | None:
    for block in call.params.get("blocks") or []:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == "op_approve":
                return str(element["value"])
    return None


def text_of(call: Call) -> str:
    """Everything a person would read in a message: its text and the text of its blocks."""
    parts = [str(call.params.get("text", ""))]
    for block in call.params.get("blocks") or []:
        if isinstance(block.get("text"), dict):
            parts.append(block["text"].get("text", ""))
        for f in block.get("fields", []) or []:
            parts.append(f.get("text", ""))
        for e in block.get("elements", []) or []:
            parts.append(e.get("text", "") if isinstance(e.get("text"), str) else (e.get("text") or {}).get("text", ""))
    return "\n".join(parts)
