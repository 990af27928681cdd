"""How replica schedules look in Slack: what their approval card says, and `schedule list`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, SectionBlock

from handlers.blocks import Message, _md, _render, escape, note
from ops.schedules import Footprint, Saving


def at(moment: datetime, timezone: str) -> str:
    """`Fri 2026-12-04 20:00 Europe/Paris`: a run time as the schedule's people read it."""
    return f"{moment.astimezone(ZoneInfo(timezone)):%a %Y-%m-%d %H:%M} {timezone}"


def describe(cron: str, timezone: str, until: datetime | None) -> str:
    end = f", until {at(until, timezone)}" if until else ""
    return f"`{escape(cron)}` ({timezone}{end})"


def saving_line(saving: Saving, footprint: Footprint | None, others: Sequence[int]) -> str:
    """The card's line on money: GPU hours over the next 7 days and what they cost, or why that is unknown."""
    together = (f" together with this workload's other schedule{'s' if len(others) > 1 else ''} "
                f"({', '.join(f'#{i}' for i in others)})" if others else "")
    against = f"vs. {saving.baseline} replica{'s' if saving.baseline != 1 else ''} around the clock"
    price = ""
    if footprint is not None and footprint.usd_per_device_hour is not None and footprint.instance_type:
        price = f", `{footprint.instance_type}` at ${footprint.usd_per_device_hour:,.3f} per GPU hour"
    return (f"*Expected saving over the next 7 days*{together}: {saving.describe()} "
            f"({against}{price}).")


def plan(*, name: str, replicas: int, current: int, cron: str, timezone: str, until: datetime | None,
         upcoming: Sequence[datetime], saving: Saving, footprint: Footprint, others: Sequence[int]) -> dict[str, Any]:
    """The operation's plan: what the approval card shows (blocks.approval_card renders it)."""
    runs = "\n".join(f"• {at(moment, timezone)}" for moment in upcoming)
    details = (f"*Next {len(upcoming)} runs* (now {current} replica{'s' if current != 1 else ''}):\n{runs}\n"
               f"{saving_line(saving, footprint, others)}\n"
               "Once approved, each run needs no further approval and is reported in this thread. A run is "
               "skipped when the Deployment was changed by hand since the last run, or no longer exists.")
    return {"object": f"deployment/{name}", "change": f"replicas → {replicas} on {describe(cron, timezone, until)}",
            "before": current, "after": replicas, "details": details,
            "next_runs": [moment.isoformat() for moment in upcoming], "saving": saving.as_dict()}


def _plural(n: int) -> str:
    return f"{n} replica{'s' if n != 1 else ''}"


def workload_of(row: Any) -> tuple[str, str, str]:
    return (row.cluster, row.namespace, row.name)


def together(workload: tuple[str, str, str], saving: Saving) -> str:
    cluster, namespace, name = workload
    return (f"`{name}` ({cluster}/{namespace}) saves {saving.describe()} over the next 7 days "
            f"(vs. {_plural(saving.baseline)} around the clock)")


def schedules_message(rows: Sequence[tuple[Any, str | None, datetime | None]],
                      savings: Mapping[tuple[str, str, str], Saving], *, scope: str, sandbox: bool = False) -> Message:
    """rows: (schedule, its approval's status, its next run); savings: per workload, its active schedules together."""
    if not rows:
        return note(f"No replica schedules {scope}. `/infer schedule <name> replicas=<n> cron=\"<cron>\"` "
                    "creates one.", sandbox=sandbox)
    lines = []
    for row, _, nxt in rows:
        head = (f"*#{row.id}* `{row.name}` ({row.cluster}/{row.namespace}) → {_plural(row.replicas)} on "
                f"{describe(row.cron, row.timezone, row.until)}")
        if row.status == "active":
            when = f"next {at(nxt, row.timezone)}" if nxt else "no run left"
            lines.append(f":calendar: {head} · {when} · by <@{row.created_by}>")
        else:
            lines.append(f":hourglass_flowing_sand: {head} · awaiting approval (operation #{row.operation_id}) · "
                         f"by <@{row.created_by}>")
    lines += [f":moneybag: {together(workload, saving)}" for workload, saving in savings.items()]
    title = f"Replica schedules {scope}"
    blocks: list[Block] = [HeaderBlock(text=title[:150])]
    for start in range(0, len(lines), 12):
        blocks.append(SectionBlock(text=_md("\n".join(lines[start:start + 12]))))
    blocks.append(ContextBlock(elements=[_md("`/infer unschedule <id>` removes one: yours at once, "
                                             "someone else's after approval.")]))
    return _render(title, blocks[:50], sandbox)


def digest_lines(rows: Sequence[Any], savings: Mapping[tuple[str, str, str], Saving]) -> list[str]:
    """Active schedules for the digest: one line per workload, its schedules and what they save together."""
    lines = []
    for workload, saving in savings.items():
        ids = ", ".join(f"#{row.id} → {row.replicas} on `{escape(row.cron)}` ({row.timezone})"
                        for row in rows if workload_of(row) == workload)
        lines.append(f"{together(workload, saving)}: {ids}")
    return lines
