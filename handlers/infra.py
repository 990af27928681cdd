"""`provision <cluster> [var.<k>=<v> …]`, `destroy <cluster>`, `drift <cluster>`, and the drift
report's "Plan a fix" button.

The handler checks who asks and what they give (variable names against the module's declarations,
values against their types), then creates the operation that plans: the worker plans when the
workspace is free (a request while another run holds it waits, "queued behind #N") and posts the
approval card of the plan (bot/runs/infra.py). No Terraform runs here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers import cards, infra_blocks
from handlers.base import Invocation, Refusal
from handlers.deps import Deps
from handlers.parse import VERBS, Command, UsageError, parse
from ops import lock_keys, terraform

log = logging.getLogger(__name__)

PLAN_KIND = {"provision": "plan", "destroy": "plan", "drift": "drift"}


def provision(cmd: Command, inv: Invocation) -> None:
    _request_plan(cmd, inv, "provision")


def destroy(cmd: Command, inv: Invocation) -> None:
    _request_plan(cmd, inv, "destroy")


def drift(cmd: Command, inv: Invocation) -> None:
    _request_plan(cmd, inv, "drift")


def _request_plan(cmd: Command, inv: Invocation, verb: str) -> None:
    deps = inv.deps
    name = cmd.args[0]
    inv.authorize(deps.clusters.lookup(name), VERBS[verb].role, verb)
    tf = deps.config.terraform
    if not tf.root:
        raise Refusal("Terraform is not set up here: the bot's config needs `terraform.root` (the root module "
                      "to provision with).", cluster=name)
    if verb != "provision" and not terraform.workspace_exists(Path(tf.workdir), name):
        raise Refusal(f"`{name}` has no Terraform workspace: the bot never provisioned it, so there is nothing "
                      f"to {'destroy' if verb == 'destroy' else 'compare'}.", cmd.usage, cluster=name)
    given: dict[str, Any] = {}
    shown: dict[str, str] = {}
    if verb == "provision":
        declared = terraform.declared_variables(Path(tf.root))
        given = _variables(cmd, declared, dict(tf.vars), tf.name_var, name)
        shown = infra_blocks.shown_vars(given, {n for n, v in declared.items() if v.sensitive})
    # A plan needs no approval (it changes nothing) but runs as an operation of its own, under the
    # workspace's lock: its card says "Planning…", and the approval card follows when it is done.
    op = deps.store.create_operation(
        kind=PLAN_KIND[verb], cluster=name, namespace="-", target="infrastructure",
        params={"verb": verb, "vars": given}, plan=infra_blocks.plan_request(verb, name, shown),
        requested_by=inv.user, channel_id=inv.channel, approvals_needed=0, ttl=deps.approval_ttl,
        lock_key=lock_keys.workspace(name))
    try:
        cards.publish(inv.client, deps.store, op, sandbox=inv.sandbox, wake=deps.wake_worker)
    except cards.CardNotPosted as exc:
        raise Refusal(exc.message, cluster=name) from None


def _variables(cmd: Command, declared: dict[str, terraform.Variable], defaults: dict[str, Any],
               name_var: str | None, cluster: str) -> dict[str, Any]:
    """The command's `var.` values, typed as the module declares them; refused before any plan."""
    allowed = ", ".join(f"`{n}`" for n in declared if n != name_var) or "none"
    unknown = [k for k in cmd.sets if k not in declared]
    if unknown:
        names = ", ".join(f"`var.{k}`" for k in unknown)
        raise Refusal(f"the Terraform module does not declare {names}; its variables are: {allowed}.",
                      cmd.usage, cluster=cluster)
    if name_var and name_var in cmd.sets:
        raise Refusal(f"`var.{name_var}` is the cluster's name: it comes from `provision <cluster>`.", cmd.usage,
                      cluster=cluster)
    misconfigured = [k for k in defaults if k not in declared]
    if misconfigured:
        raise Refusal("the bot's config sets " + ", ".join(f"`terraform.vars.{k}`" for k in misconfigured)
                      + f", which the module does not declare (its variables: {allowed}); an admin must fix the "
                        "config.", cluster=cluster)
    values = {}
    for key, text in cmd.sets.items():
        try:
            values[key] = declared[key].coerce(text)
        except ValueError as exc:
            raise Refusal(f"{exc}.", cmd.usage, cluster=cluster) from None
    return values


def on_drift_fix(ack: Callable[..., Any], body: dict[str, Any], action: dict[str, Any],
                 context: dict[str, Any], client: WebClient) -> None:
    """"Plan a fix" on a drift report: exactly `/infer provision <cluster>` by whoever clicked."""
    ack()
    deps: Deps = context["deps"]
    if not deps.first_delivery(body):
        return
    user = body.get("user", {}).get("id", "")
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")

    def respond(text: str, blocks: list[dict[str, Any]] | None = None, **_: Any) -> None:
        try:
            client.chat_postEphemeral(channel=channel, user=user, text=text, blocks=blocks)
        except SlackApiError as exc:
            log.warning("cannot tell %s: %s", user, exc.response.get("error"))

    inv = Invocation(user=user, channel=channel, deps=deps, client=client, respond=respond)
    try:
        cmd = parse(f"provision {action.get('value') or ''}")
    except UsageError as exc:
        inv.reply(infra_blocks.Message(text=f":no_entry: {exc.message}"))
        return
    deps.verbs.run(cmd, inv)
