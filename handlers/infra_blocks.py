"""What provisioning shows: plan summaries on cards, apply progress, outputs, drift reports.

The approval card itself is handlers/blocks.py's (every operation's card looks alike and is
refreshed from the database); these renderers fill its `plan` fields and draw the messages around
it. Addresses and output values only, never a variable's or a sensitive output's value.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from handlers.blocks import SANDBOX_LABEL, Message, escape
from handlers.deps import ProvisionedCluster
from ops.terraform import ApplyTracker, Diagnostic, Output, PlanSummary

LISTED_PER_ACTION = 10  # addresses a card lists per action before "…and N more"
DETAILS_BUDGET = 2800  # characters of a card's details section (Slack allows 3000)
HEADINGS = {"create": "to add", "update": "to change in place", "replace": "to replace (destroy, then create)",
            "delete": "to destroy", "forget": "to forget (left in place, no longer managed)"}
ICONS = {"create": ":heavy_plus_sign:", "update": ":pencil2:", "replace": ":recycle:", "delete": ":x:",
         "forget": ":wave:"}


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=_clip(text, 3000))


def _render(text: str, blocks: Sequence[Block], sandbox: bool) -> Message:
    out = list(blocks)
    if sandbox:
        out.insert(0, ContextBlock(elements=[_md(SANDBOX_LABEL)]))
    return Message(text=_clip(text, 3000), blocks=[b.to_dict() for b in out])


def _code(text: str) -> str:
    return _raw_code(escape(text))


def _raw_code(text: str) -> str:
    """Inline code for text that the worker's Progress and outcome lines escape themselves."""
    return f"`{text.replace('`', chr(0x2032))}`"


# ---- the plan on the card ------------------------------------------------------------------------


def shown_vars(given: Mapping[str, Any], sensitive: Iterable[str]) -> dict[str, str]:
    """The request's variables as a card may show them: sensitive ones by name only."""
    hidden = set(sensitive)
    return {k: "(sensitive)" if k in hidden else str(v if isinstance(v, str) else _json(v)) for k, v in given.items()}


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _vars_line(shown: Mapping[str, str]) -> str:
    if not shown:
        return ""
    return "Variables given: " + ", ".join(f"`var.{escape(k)}` = {_code(_clip(v, 80))}" for k, v in shown.items())


def _addresses(addresses: Sequence[str]) -> str:
    more = len(addresses) - LISTED_PER_ACTION
    return ", ".join(_code(a) for a in addresses[:LISTED_PER_ACTION]) + (f" …and {more} more" if more > 0 else "")


def collapsed(summary: PlanSummary) -> bool:
    """True when the card cannot list every address (the full list then goes to the thread as a file)."""
    return any(len(v) > LISTED_PER_ACTION for v in summary.by_action.values()) or len(_listing(summary, None)) > 2000


def _listing(summary: PlanSummary, per_action: int | None) -> str:
    parts = []
    for action, heading in HEADINGS.items():
        addresses = summary.by_action.get(action, ())
        if not addresses:
            continue
        shown = addresses if per_action is None else addresses[:per_action]
        lines = [f"{ICONS[action]} *{len(addresses)} {heading}*"] + [f"• {_code(a)}" for a in shown]
        if len(shown) < len(addresses):
            lines.append(f"• …and {len(addresses) - len(shown)} more (the full list is in the thread)")
        parts.append("\n".join(lines))
    return "\n".join(parts)


def plan_request(verb: str, cluster: str, shown: Mapping[str, str]) -> dict[str, Any]:
    """The `plan` fields of the operation that makes the plan (it needs no approval)."""
    what = {"provision": "a provision", "destroy": "a destroy",
            "drift": "a drift check (a plan that is never applied)"}[verb]
    details = f"Planning… for {what} of `{escape(cluster)}` (plans change nothing)."
    if verb != "drift":
        details += " When the plan has changes, its approval card follows in this channel."
    if shown:
        details += "\n" + _vars_line(shown)
    return {"object": f"terraform workspace {cluster}", "change": f"plan ({verb})", "details": details,
            "summary": f"plan for {verb}"}


def plan_card(verb: str, cluster: str, summary: PlanSummary, shown: Mapping[str, str], *, approvals_needed: int,
              waiting: Sequence[int], command: str, targets: Sequence[str] = (),
              releases: Sequence[str] = ()) -> dict[str, Any]:
    """The `plan` fields of a provision/destroy card: counts, addresses (collapsed), warnings."""
    head: list[str] = []
    if verb == "destroy":
        change = f":rotating_light: *DESTROY {summary.destroy} resource(s)* of `{cluster}`"
        head.append(f":rotating_light: *This destroys `{escape(cluster)}` and everything on it: "
                    f"{summary.destroy} resource(s).* It needs {approvals_needed} approvals from different people, "
                    "one of them an admin's, in any order.")
    else:
        change = summary.headline()
    if releases:
        head.append(f"First the bot's releases on it are removed (undeployed): {_addresses(list(releases))}.")
    if summary.drifted:
        head.append(":warning: Changed outside Terraform since the last run: " + _addresses(summary.drifted))
    if summary.outputs:
        head.append("Outputs that change: " + ", ".join(_code(n) for n in summary.outputs[:20]))
    if shown:
        head.append(_vars_line(shown))
    if waiting:
        others = ", ".join(f"#{i}" for i in waiting)
        head.append(f":warning: {others} (another plan of this workspace) also waits for approval: whichever is "
                    f"applied first makes the other stale, and it will be refused.")
    tail = f"Approving applies exactly this saved plan. If the workspace changes first, it is refused: " \
           f"then `{command} {verb} {cluster}` plans again."
    if targets:
        steps = ", then ".join(f"`-target={escape(t)}`" for t in targets)
        tail = (f"Approving {'destroys' if verb == 'destroy' else 'applies'} this plan in stages: {steps}, then "
                f"{'the rest' if verb == 'destroy' else 'everything'}. Each stage is planned just before it runs and "
                "runs only if its changes are in this plan (same addresses, same actions); otherwise the run stops, "
                "shows the difference and asks for a new approval.")
    budget = DETAILS_BUDGET - sum(len(x) + 1 for x in head) - len(tail) - 2
    listing = _listing(summary, LISTED_PER_ACTION)
    per_action = LISTED_PER_ACTION
    while len(listing) > budget and per_action > 0:
        per_action //= 2
        listing = _listing(summary, per_action)
    details = "\n".join([*head, listing, tail])
    return {"object": f"terraform workspace {cluster}", "change": change, "details": details,
            "summary": summary.headline()}


def addresses_text(verb: str, cluster: str, summary: PlanSummary) -> str:
    """The full list of a plan's changes, for the file attached to the card's thread."""
    lines = [f"{verb} {cluster}: {summary.headline()}", ""]
    for action, heading in HEADINGS.items():
        addresses = summary.by_action.get(action, ())
        if addresses:
            lines.append(f"{len(addresses)} {heading}:")
            lines += [f"  {a}" for a in addresses]
            lines.append("")
    if summary.drifted:
        lines.append("changed outside Terraform since the last run:")
        lines += [f"  {a}" for a in summary.drifted]
    return "\n".join(lines).rstrip() + "\n"


# ---- apply ---------------------------------------------------------------------------------------


def apply_counts(tracker: ApplyTracker) -> str:
    c = tracker.counts
    if c:
        return f"{c.get('add', 0)} added, {c.get('change', 0)} changed, {c.get('remove', 0)} destroyed"
    return f"{tracker.done} of {tracker.total} resources done"


def total_counts(trackers: Sequence[ApplyTracker]) -> str:
    """apply_counts over the applies of one run (a staged run has several)."""
    if len(trackers) == 1:
        return apply_counts(trackers[0])
    if not all(t.counts for t in trackers):
        return f"{sum(t.done for t in trackers)} of {sum(t.total for t in trackers)} resources done"
    add, change, remove = (sum(t.counts.get(k, 0) for t in trackers) for k in ("add", "change", "remove"))
    return f"{add} added, {change} changed, {remove} destroyed"


def apply_progress(verb: str, tracker: ApplyTracker, *, final: bool = False, ok: bool = True) -> str:
    """One line: resources done of total, what runs now, time so far (raw: Progress escapes it)."""
    elapsed = f"{tracker.elapsed:.0f} s"
    done = f"{tracker.done}/{tracker.total} resources"
    if final:
        if ok:
            return f":white_check_mark: {'Destroyed' if verb == 'destroy' else 'Applied'}: {done} · {elapsed}"
        return f":x: Stopped: {done} done · {elapsed}"
    now = tracker.current
    current = f" · now {_raw_code(now[0])} ({now[1]})" if now else ""
    return f":gear: {'Destroying' if verb == 'destroy' else 'Applying'}: {done} done{current} · {elapsed} elapsed"


def diagnostics_text(diagnostics: Sequence[Diagnostic]) -> str:
    """terraform's own error messages, summary and detail, as it printed them (raw: Progress escapes it)."""
    parts = []
    for d in diagnostics[:5]:
        where = f" ({_raw_code(d.address)})" if d.address else ""
        text = f":warning: *{d.summary}*{where}"
        if d.detail:
            text += f"\n```{_clip(d.detail, 1200)}```"
        parts.append(text)
    if len(diagnostics) > 5:
        parts.append(f"…and {len(diagnostics) - 5} more")
    return _clip("\n".join(parts), 3900)


def registration_sentence(cluster: str, reach: Mapping[str, Any], *, configured: bool) -> str:
    """Where the new cluster is registered (raw: an outcome line, escaped by whoever shows it)."""
    if configured:
        return (f"`{cluster}` is also in the bot's config, which keeps deciding how it is reached; "
                "the registration is kept for reference.")
    if reach.get("reach") == "eks":
        sentence = (f"Registered `{cluster}`: EKS cluster `{reach.get('eks_name')}` in {reach.get('region')}; "
                    f"later commands can use `cluster={cluster}`.")
        return sentence + (f" (Not reachable yet: {reach['note']}.)" if reach.get("note") else "")
    if reach.get("reach") == "kubeconfig":
        return f"Registered `{cluster}` (kubeconfig {_raw_code(str(reach.get('kubeconfig')))}); later commands " \
               f"can use `cluster={cluster}`."
    return f"Recorded `{cluster}` as provisioned, but {reach.get('note', 'it cannot be reached')}."


def outputs_message(cluster: str, outputs: Sequence[Output], registration: str, *, sandbox: bool = False) -> Message:
    lines = [f"{_code(o.name)} = " + ("_(sensitive, not shown)_" if o.sensitive else _code(o.shown()))
             for o in outputs]
    body = "\n".join(lines) if lines else "The module has no outputs."
    return _render(f"Outputs of {cluster}", [HeaderBlock(text=_clip(f"Outputs of {cluster}", 150)),
                                             SectionBlock(text=_md(body)),
                                             ContextBlock(elements=[_md(escape(registration))])], sandbox)


# ---- drift ---------------------------------------------------------------------------------------


def drift_message(cluster: str, summary: PlanSummary, *, sandbox: bool = False) -> Message:
    listing = _listing(summary, LISTED_PER_ACTION)
    if summary.drifted:
        listing = f"Changed outside Terraform: {_addresses(summary.drifted)}\n{listing}"
    if summary.outputs and not summary.resources:
        listing += "\nOutputs that differ: " + ", ".join(_code(n) for n in summary.outputs[:20])
    blocks: list[Block] = [
        HeaderBlock(text=_clip(f"Drift in {cluster}", 150)),
        SectionBlock(text=_md(f"`{escape(cluster)}` no longer matches its Terraform configuration: a plan now "
                              f"shows *{summary.headline()}*.\n{listing}")),
        ContextBlock(elements=[_md("Nothing was changed. *Plan a fix* asks for a reviewed provision: a new plan, "
                                   "its card, approval, then apply.")]),
        ActionsBlock(block_id=f"drift-{cluster}", elements=[
            ButtonElement(text="Plan a fix", action_id="drift_fix", value=cluster, style="primary")]),
    ]
    return _render(f":warning: Drift in {cluster}: {summary.headline()}", blocks, sandbox)


# ---- `clusters` ----------------------------------------------------------------------------------


def provisioned_state(p: ProvisionedCluster, reachability: str) -> str:
    """What `clusters` says of a cluster the bot provisioned."""
    parts = [reachability] if reachability else []
    parts.append(f"{p.status} by Terraform" + (f" ({p.where})" if p.where else ""))
    if p.note and p.status != "destroyed":
        parts.append(escape(p.note))
    if p.last_run:
        when = p.last_run_at.strftime("%Y-%m-%d %H:%M UTC") if p.last_run_at else "?"
        parts.append(f"last run: {escape(p.last_run)} at {when}")
    return " · ".join(parts)
