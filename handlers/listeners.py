"""Every Slack listener of the bot, attached to a Bolt app in one place."""

from __future__ import annotations

from slack_bolt import App

from handlers import commands, decisions, deploy, deploy_modal, deploy_modal_blocks, digest, home, infra


def register(app: App, command: str) -> None:
    """Attach the slash command, the card buttons, the modals and the App Home to `app`."""
    app.command(command)(commands.on_command)
    app.action("op_approve")(decisions.on_approve)
    app.action("op_reject")(decisions.on_reject)
    app.view("reject_reason")(decisions.on_reject_submit)
    app.action("drift_fix")(infra.on_drift_fix)
    app.view(deploy.SECRET_CALLBACK)(deploy.on_secret_submit)
    app.action("suggestion_apply")(digest.on_apply)
    app.event("app_home_opened")(home.on_app_home_opened)
    # The deploy modal: opened by `deploy` without arguments or the shortcut, refreshed when the preset
    # changes, its presets searched once the catalog outgrows a static select, and submitted.
    app.shortcut(deploy_modal.SHORTCUT)(deploy_modal.on_shortcut)
    app.action(deploy_modal_blocks.PRESET_ACTION)(deploy_modal.on_preset_change)
    app.options(deploy_modal_blocks.PRESET_ACTION)(deploy_modal.on_preset_options)
    app.view(deploy_modal_blocks.CALLBACK)(deploy_modal.on_submit)
