"""The deploy modal: `/infer deploy` with no arguments, or the global shortcut `infer_deploy`.

The form is a way of typing the command, not a second implementation: a submission becomes the
equivalent typed text (deploy_modal_blocks.command_text), goes through the same parser and the same
checks (handlers/deploy.check_deploy) and proposes the same operation with the same card. The checks
run inside the submission's ack so that a refusal can be shown next to its field
(`response_action: errors`), and is audited as a typed refusal is; the card is posted after the ack.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers import blocks, deploy
from handlers import deploy_modal_blocks as view_blocks
from handlers.base import Invocation, Refusal
from handlers.counters import COMMANDS
from handlers.deploy_modal_blocks import (
    CHANNEL,
    CLUSTER,
    INSTANCE,
    NAME,
    NAMESPACE,
    PRESET,
    REPLICAS,
    InstanceChoice,
    ModalState,
)
from handlers.deps import Deps
from handlers.models import catalog_settings
from handlers.parse import UsageError, parse
from ops import catalog, fit, instances
from ops.errors import OpsError

log = logging.getLogger(__name__)

SHORTCUT = "infer_deploy"
ERROR_MAX = 1000  # what a field's error shows; the audit row keeps the whole message


# ---- what the form shows -------------------------------------------------------------------------


def _presets(deps: Deps) -> dict[str, catalog.Preset]:
    presets_dir, _ = catalog_settings(deps.config)
    return catalog.load_catalog_report(presets_dir).presets


def instance_choices(preset: catalog.Preset | None, region: str) -> list[InstanceChoice]:
    """Every instance type of the table; with a preset, whether it fits one replica and what that costs."""
    choices = []
    for name, inst in sorted(instances.load_instances().items()):
        if preset is None:
            choices.append(InstanceChoice(name, inst.prices.get(region), None))
            continue
        try:
            estimate = fit.check_preset(preset, name, replicas=1, region=region)
        except OpsError:
            choices.append(InstanceChoice(name, inst.prices.get(region), False))
            continue
        choices.append(InstanceChoice(name, estimate.hourly_cost, estimate.fits))
    return choices


def modal_state(deps: Deps, *, channel: str | None, preset_id: str | None = None,
                cluster: str | None = None) -> ModalState:
    presets = _presets(deps)
    _, region = catalog_settings(deps.config)
    preset = presets.get(preset_id or "")
    names = deps.clusters.names()
    chosen = cluster if cluster in names else (names[0] if names else None)
    configured = deps.clusters.lookup(chosen) if chosen else None
    return ModalState(presets=list(presets.values()), clusters=names,
                      default_namespace=configured.namespace if configured else "default",
                      instances=instance_choices(preset, region), preset=preset, cluster=chosen,
                      channel=channel, command=deps.command)


# ---- opening -------------------------------------------------------------------------------------


def open_modal(client: WebClient, deps: Deps, *, user: str, channel: str | None, trigger_id: str) -> str | None:
    """Open the form for `user`; None, or why it could not be opened (already audited)."""
    decision = deps.policy.check(user, channel or "", None, "operator", "deploy")
    if not decision.allowed:
        deps.store.audit(user, "deploy", "refused", channel_id=channel or None, detail=decision.reason)
        return decision.reason
    view = view_blocks.deploy_view(modal_state(deps, channel=channel))
    try:
        client.views_open(trigger_id=trigger_id, view=view)
    except (SlackApiError, OSError) as exc:
        error = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        log.warning("cannot open the deploy modal for %s: %s", user, error)
        return f"I could not open the deploy form ({error}); run the command again, or type it in full."
    return None


def open_from_command(command: dict[str, Any], deps: Deps, client: WebClient, respond: Callable[..., Any]) -> None:
    """`/infer deploy` with nothing after it (acknowledged already): the form, or an ephemeral why not."""
    user, channel = str(command.get("user_id") or ""), str(command.get("channel_id") or "")
    problem = open_modal(client, deps, user=user, channel=channel, trigger_id=str(command.get("trigger_id") or ""))
    COMMANDS.labels(verb="deploy", outcome="refused" if problem else "ok").inc()
    if problem:
        msg = blocks.refusal(problem, sandbox=deps.config.sandbox)
        respond(text=msg.text, blocks=msg.blocks, response_type="ephemeral", replace_original=False)


def on_shortcut(ack: Callable[..., Any], shortcut: dict[str, Any], context: dict[str, Any],
                client: WebClient) -> None:
    """The global shortcut carries no channel: the form asks where the card goes (conversations_select)."""
    ack()
    deps: Deps = context["deps"]
    user = str((shortcut.get("user") or {}).get("id") or "")
    problem = open_modal(client, deps, user=user, channel=None, trigger_id=str(shortcut.get("trigger_id") or ""))
    if problem:
        # No channel to answer in: a direct message from the bot says why.
        try:
            client.chat_postMessage(channel=user, text=f":no_entry: {problem}")
        except (SlackApiError, OSError) as exc:
            log.warning("cannot tell %s why the deploy form did not open: %s", user, exc)


def _channel_of(view: dict[str, Any]) -> str | None:
    try:
        meta = json.loads(view.get("private_metadata") or "{}")
    except ValueError:
        return None
    return str(meta.get("channel") or "") or None if isinstance(meta, dict) else None


def on_preset_change(ack: Callable[..., Any], body: dict[str, Any], context: dict[str, Any],
                     client: WebClient) -> None:
    """A preset was chosen: show which instance types it fits, and their price, in the same view."""
    ack()
    deps: Deps = context["deps"]
    view = body.get("view") or {}
    action: dict[str, Any] = next(iter(body.get("actions") or []), {})
    preset_id = str((action.get("selected_option") or {}).get("value") or "")
    cluster = view_blocks.submitted(view).get(CLUSTER)
    new = view_blocks.deploy_view(modal_state(deps, channel=_channel_of(view), preset_id=preset_id, cluster=cluster))
    try:
        # The hash makes Slack refuse an update of a view that changed meanwhile (a later choice wins).
        client.views_update(view_id=str(view.get("id") or ""), hash=view.get("hash"), view=new)
    except (SlackApiError, OSError) as exc:
        error = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        log.info("deploy modal not updated: %s", error)


def on_preset_options(ack: Callable[..., Any], body: dict[str, Any], context: dict[str, Any]) -> None:
    """block_suggestion for the preset select, once the catalog is too large for a static one."""
    deps: Deps = context["deps"]
    ack(option_groups=view_blocks.preset_groups(list(_presets(deps).values()), str(body.get("value") or "")))


# ---- submitting ----------------------------------------------------------------------------------

# Which field a refusal belongs next to, by what it says (the first match wins); the preset otherwise.
_FIELDS: tuple[tuple[str, str], ...] = (
    ("does not fit", INSTANCE), ("nodepool", INSTANCE),
    ("replicas", REPLICAS), ("over its hard budget", REPLICAS),
    ("release name", NAME), ("choose another `name=`", NAME), ("would change it under them", NAME),
    ("namespace", NAMESPACE), ("instance type", INSTANCE),
    ("takes commands only in", CHANNEL), ("cluster", CLUSTER), ("preset", PRESET),
)


def field_for(message: str, *, has_channel_field: bool) -> str:
    lowered = message.lower()
    for needle, field in _FIELDS:
        if needle in lowered:
            return CLUSTER if field == CHANNEL and not has_channel_field else field
    return PRESET


def on_submit(ack: Callable[..., Any], body: dict[str, Any], view: dict[str, Any], context: dict[str, Any],
              client: WebClient) -> None:
    deps: Deps = context["deps"]
    user = str((body.get("user") or {}).get("id") or "")
    values = view_blocks.submitted(view)
    from_command = _channel_of(view)
    channel = from_command or values.get(CHANNEL, "")
    if not channel:
        ack(response_action="errors", errors={CHANNEL: "choose the channel the approval card goes to."})
        return
    inv = Invocation(user=user, channel=channel, deps=deps, client=client, respond=_ephemeral(client, channel, user))
    text = view_blocks.command_text(values)
    max_replicas = max((c.max_replicas for c in deps.config.clusters), default=20)
    try:
        proposal = deploy.check_deploy(parse(text, max_replicas=max_replicas), inv)
    except (UsageError, Refusal, OpsError) as exc:
        message = exc.message
        cluster = exc.cluster if isinstance(exc, Refusal) else values.get(CLUSTER)
        deps.store.audit(user, "deploy", "refused", cluster=cluster, channel_id=channel, detail=message)
        COMMANDS.labels(verb="deploy", outcome="refused").inc()
        field = field_for(message, has_channel_field=from_command is None)
        ack(response_action="errors", errors={field: _plain(message)})
        return
    except Exception:
        ref = uuid.uuid4().hex[:8]
        log.exception("deploy form failed (ref %s)", ref)
        deps.store.audit(user, "deploy", "failed", cluster=values.get(CLUSTER), channel_id=channel,
                         detail=f"internal error, ref {ref}")
        COMMANDS.labels(verb="deploy", outcome="error").inc()
        ack(response_action="errors", errors={PRESET: f"something went wrong on my side (ref {ref}); nothing "
                                                      "was changed. The bot's logs have the details."})
        return
    ack()
    deps.run_later(_propose, proposal, body)


def _propose(proposal: deploy.DeployProposal, body: dict[str, Any]) -> None:
    inv = proposal.inv
    if not inv.deps.first_delivery(body):
        return  # a replayed submission: the first one proposed it
    try:
        proposal.propose()
    except Refusal as exc:  # the card could not be posted: the operation was rejected, nothing will run
        inv.deps.store.audit(inv.user, "deploy", "refused", cluster=exc.cluster, channel_id=inv.channel,
                             detail=exc.message)
        COMMANDS.labels(verb="deploy", outcome="refused").inc()
        inv.reply(blocks.refusal(exc.message, sandbox=inv.sandbox))
        return
    COMMANDS.labels(verb="deploy", outcome="ok").inc()


def _plain(message: str) -> str:
    # A field's error is plain text: the mrkdwn code marks would show as backticks.
    text = message.replace("`", "")
    return text if len(text) <= ERROR_MAX else text[: ERROR_MAX - 1] + "…"


def _ephemeral(client: WebClient, channel: str, user: str) -> Callable[..., Any]:
    """A modal has no response_url: what the typed command answers privately goes as an ephemeral."""

    def respond(text: str = "", blocks: Any = None, **_: Any) -> None:
        try:
            client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
            return
        except (SlackApiError, OSError) as exc:
            log.warning("cannot tell %s in %s: %s", user, channel, exc)
        # The usual reason is the one that also kept the card out (the bot is not in that channel):
        # the form has closed, so a direct message is the only place left to say so.
        try:
            client.chat_postMessage(channel=user, text=text, blocks=blocks)
        except (SlackApiError, OSError) as exc:
            log.warning("cannot tell %s directly either: %s", user, exc)

    return respond
