"""`/infer …`: parse → dispatch to the verb's handler → answer. Refusals are ephemeral and audited."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from slack_sdk import WebClient

from handlers import blocks, deploy, deploy_modal, history, info, infra, models, scale, schedules
from handlers import digest as digests
from handlers.base import Invocation, Refusal
from handlers.counters import COMMANDS
from handlers.deps import Deps
from handlers.parse import VERBS, Command, UsageError, parse
from ops.errors import OpsError

log = logging.getLogger(__name__)

Handler = Callable[[Command, Invocation], object]  # verbs that request a change return its operation

# Where each verb is executed. A verb missing here parses but is answered as not available yet.
HANDLERS: dict[str, Handler] = {
    "clusters": info.clusters,
    "models": models.list_models,
    "status": info.status,
    "scale": scale.request,
    "deploy": deploy.deploy,
    "undeploy": deploy.undeploy,
    "rollback": deploy.rollback,
    "autoscale": deploy.autoscale,
    "test": deploy.test,
    "secret": deploy.secret,
    "approvals": history.approvals,
    "ops": history.operations,
    "audit": history.audit,
    "provision": infra.provision,
    "destroy": infra.destroy,
    "drift": infra.drift,
    "digest": digests.digest,
    "metrics": digests.metrics,
    "schedule": schedules.schedule,
    "unschedule": schedules.unschedule,
}


def _max_replicas(deps: Deps) -> int:
    return max((c.max_replicas for c in deps.config.clusters), default=20)


def on_command(ack: Callable[..., Any], command: dict[str, Any], context: dict[str, Any],
               client: WebClient, respond: Callable[..., Any]) -> None:
    deps: Deps = context["deps"]
    user, channel = command.get("user_id", ""), command.get("channel_id", "")
    sandbox = deps.config.sandbox
    if (command.get("text") or "").strip().lower() == "deploy":
        ack()  # the form opens after the ack, within the trigger_id's few seconds (nothing slow before it)
        deploy_modal.open_from_command(command, deps, client, respond)
        return
    try:
        cmd = parse(command.get("text") or "", max_replicas=_max_replicas(deps))
    except UsageError as exc:
        msg = blocks.refusal(exc.message, exc.usage, sandbox=sandbox)
        ack(response_type="ephemeral", text=msg.text, blocks=msg.blocks)
        COMMANDS.labels(verb=exc.verb or "?", outcome="refused").inc()
        deps.store.audit(user, f"{exc.verb or 'command'}", "refused", channel_id=channel, detail=exc.message)
        return

    if cmd.verb == "help":
        # Answered inside the ack: no I/O, and the user sees it at once.
        lines = help_lines()
        if cmd.args:  # `help scale`: just that verb, with its role (the parser checked the verb exists)
            spec = VERBS[cmd.args[0]]
            available = spec.name in HANDLERS or spec.name == "help"
            lines = [(spec.usage.split(" ", 1)[1], f"{spec.summary} (needs the {spec.role} role)"
                      + ("" if available else "; not available in this version yet"))]
        msg = blocks.help_message(deps.command, lines, sandbox=sandbox)
        ack(response_type="ephemeral", text=msg.text, blocks=msg.blocks)
        COMMANDS.labels(verb="help", outcome="ok").inc()
        return

    ack()  # everything below may talk to a cluster: Slack must have its answer within 3 s
    inv = Invocation(user=user, channel=channel, deps=deps, client=client, respond=respond,
                     trigger_id=str(command.get("trigger_id") or ""))
    # Off Bolt's listener threads: a burst of slow commands must not delay the next request's ack.
    deps.run_later(_first_delivery_then_run, command, cmd, inv)


def _first_delivery_then_run(command: dict[str, Any], cmd: Command, inv: Invocation) -> None:
    try:
        if not inv.deps.first_delivery(command):
            return
    except Exception:
        log.exception("cannot record the delivery of %s; not acting on it", cmd.verb)
        inv.reply(blocks.refusal("I cannot reach my database just now; nothing was changed. Try again in a "
                                 "minute.", sandbox=inv.sandbox))
        return
    VERB_TABLE.run(cmd, inv)


class VerbTable:
    """Where each verb is executed, handed to the buttons that run a command (the drift report's
    "Plan a fix", a suggestion's Apply) through Deps at wiring time, as Atlantis hands its runners in."""

    def __init__(self, handlers: dict[str, Handler]) -> None:
        self.handlers = handlers

    def request(self, cmd: Command, inv: Invocation) -> object:
        """Run the verb's handler; a change returns its operation. Raises Refusal/OpsError."""
        handler = self.handlers.get(cmd.verb)
        if handler is None:
            raise Refusal(f"`{cmd.verb}` is not available in this version of the bot yet. "
                          f"`{inv.deps.command} help` lists what is.")
        return handler(cmd, inv)

    def run(self, cmd: Command, inv: Invocation) -> None:
        """Run the verb and answer: refusals ephemeral and audited, internal errors with a reference."""
        outcome = "ok"
        try:
            self.request(cmd, inv)
        except (Refusal, OpsError) as exc:
            outcome = "refused"
            usage = exc.usage if isinstance(exc, Refusal) else ""
            cluster = exc.cluster if isinstance(exc, Refusal) else cmd.cluster
            inv.deps.store.audit(inv.user, cmd.verb, "refused", cluster=cluster, channel_id=inv.channel,
                                 detail=exc.message)
            inv.reply(blocks.refusal(exc.message, usage, sandbox=inv.sandbox))
        except Exception:
            outcome = "error"
            ref = uuid.uuid4().hex[:8]
            log.exception("command %s failed (ref %s)", cmd.verb, ref)
            inv.deps.store.audit(inv.user, cmd.verb, "failed", cluster=cmd.cluster, channel_id=inv.channel,
                                 detail=f"internal error, ref {ref}")
            inv.reply(blocks.refusal(f"something went wrong on my side (ref `{ref}`); nothing was changed. "
                                     "The bot's logs have the details.", sandbox=inv.sandbox))
        finally:
            COMMANDS.labels(verb=cmd.verb, outcome=outcome).inc()


VERB_TABLE = VerbTable(HANDLERS)


def help_lines() -> list[tuple[str, str]]:
    """(usage without the command word, summary) of every verb this version executes."""
    return [(spec.usage.split(" ", 1)[1], spec.summary) for name, spec in VERBS.items()
            if name in HANDLERS or name == "help"]
