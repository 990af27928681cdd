"""Slack-facing verbs. `register` attaches every listener to a Bolt app."""

from __future__ import annotations

from typing import Any


def register(app: Any, command: str) -> None:
    """Attach the slash command, the card buttons and the reject modal to `app` (a slack_bolt.App)."""
    from handlers import commands, decisions, provision

    app.command(command)(commands.on_command)
    app.action("op_approve")(decisions.on_approve)
    app.action("op_reject")(decisions.on_reject)
    app.view("reject_reason")(decisions.on_reject_submit)
    app.action("drift_fix")(provision.on_drift_fix)
    from handlers import deploy

    app.view(deploy.SECRET_CALLBACK)(deploy.on_secret_submit)
    from handlers import digest

    app.action("suggestion_apply")(digest.on_apply)
