"""`schedule <name> replicas= cron=`, `schedule list`, `unschedule <id>`: replica schedules.

Creating a schedule is a change like `scale`: one approval card (kind `schedule`) with the next
five runs and the expected saving; the approval covers every run after it (bot/runs/schedules.py).

Removing one is lighter, as in Atlantis (whoever holds a lock may drop it) and Kubecost (an owner
turns their own automation off): a schedule only ever scales, and removing it only stops future
runs, so its creator removes it at once. Anyone else's removal stops something a colleague set up
and had approved, so it goes through an approval card of its own (kind `unschedule`).
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from handlers import blocks, cards, schedule_blocks
from handlers.base import Invocation, Refusal
from handlers.blocks import Operation
from handlers.deps import Deps, ScheduleRows
from handlers.parse import Command
from ops.cron import next_runs
from ops.instances import DEFAULT_REGION
from ops.schedules import Rule, Saving, footprint, saving_of, weekly_saving

_DATE = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})(?:[T ]([0-9]{2}):([0-9]{2}))?")
UNTIL_HELP = ("use YYYY-MM-DD (the last day it runs, in the schedule's time zone) or YYYY-MM-DDTHH:MM "
              "(the moment it stops)")


def _rows(inv: Invocation) -> ScheduleRows:
    if inv.deps.schedules is None:
        raise Refusal("replica schedules are not available in this bot process.")
    return inv.deps.schedules


def schedule(cmd: Command, inv: Invocation) -> Operation | None:
    if cmd.args[0] == "list":
        list_schedules(cmd, inv)
        return None
    return request(cmd, inv)


def parse_until(given: str | None, timezone: str, now: datetime, usage: str) -> datetime | None:
    """`until=` as a UTC instant: a date means through that whole day in the schedule's time zone."""
    if given is None:
        return None
    match = _DATE.fullmatch(given.strip())
    shown = blocks.escape(given[:40])
    if match is None:
        raise Refusal(f"`until={shown}` is not a date: {UNTIL_HELP}.", usage)
    year, month, day, hour, minute = match.groups()
    try:
        local = datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0),
                         tzinfo=zoneinfo.ZoneInfo(timezone))
    except ValueError as exc:
        raise Refusal(f"`until={shown}` is not a valid date ({exc}): {UNTIL_HELP}.", usage) from None
    if hour is None:
        local += timedelta(days=1)  # through the end of that day
    until = local.astimezone(UTC)
    if until <= now:
        today = now.astimezone(zoneinfo.ZoneInfo(timezone)).date().isoformat()
        raise Refusal(f"`until={shown}` is in the past (today is {today} in {timezone}); give a later date, "
                      "or leave `until=` out for a schedule that runs until it is removed.", usage)
    return until


def request(cmd: Command, inv: Invocation) -> Operation:
    rows = _rows(inv)
    cluster = inv.cluster_for(cmd)
    inv.authorize(cluster, "operator", "schedule")
    name, replicas, cron = cmd.args[0], int(cmd.options["replicas"]), cmd.options["cron"]
    if replicas > cluster.max_replicas:
        raise Refusal(f"`replicas={replicas}` is more than cluster `{cluster.name}` allows "
                      f"({cluster.max_replicas}); use a count from 0 to {cluster.max_replicas}.", cmd.usage,
                      cluster=cluster.name)
    tz = cmd.options.get("tz") or "UTC"
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Refusal(f"`tz={blocks.escape(tz)}` is not a time zone I know; use a tz database name such as "
                      "UTC, Europe/Paris or America/New_York.", cmd.usage, cluster=cluster.name) from None
    now = datetime.now(UTC)
    until = parse_until(cmd.options.get("until"), tz, now, cmd.usage)
    upcoming = next_runs(cron, tz, now, 5, until)
    if not upcoming:
        raise Refusal(f"`cron={blocks.escape(cron)}` never fires before `until=`; move `until=` later or change "
                      "the cron.", cmd.usage, cluster=cluster.name)
    namespace = cmd.options.get("namespace") or cluster.namespace
    kube = inv.deps.clusters.get(cluster)
    current = kube.get_deployment(name, namespace)  # refuses a Deployment that does not exist
    region = str(getattr(getattr(inv.deps.config, "catalog", None), "region", DEFAULT_REGION))
    fp = footprint(kube, name, namespace, region)
    others = rows.of_workload(cluster.name, namespace, name)
    rules = [Rule(o.replicas, o.cron, o.timezone, o.until) for o in others] + [Rule(replicas, cron, tz, until)]
    saving = weekly_saving(rules, current.replicas, fp, now)
    row = rows.create(cluster=cluster.name, namespace=namespace, name=name, replicas=replicas, cron=cron,
                      timezone=tz, until=until, channel=inv.channel, user=inv.user, saving=saving.as_dict())
    deps = inv.deps
    op = deps.store.create_operation(
        kind="schedule", cluster=cluster.name, namespace=namespace, target=name,
        params={"schedule_id": row.id, "replicas": replicas, "cron": cron, "tz": tz,
                "until": until.isoformat() if until else None},
        plan=schedule_blocks.plan(name=name, replicas=replicas, current=current.replicas, cron=cron, timezone=tz,
                                  until=until, upcoming=upcoming, saving=saving, footprint=fp,
                                  others=[o.id for o in others]),
        requested_by=inv.user, channel_id=inv.channel,
        approvals_needed=deps.policy.approvals_needed(cluster, "schedule"), ttl=deps.approval_ttl,
    )
    rows.attach(row.id, op.id)
    try:
        cards.publish(inv.client, deps.store, op, sandbox=inv.sandbox, wake=deps.wake_worker)
    except cards.CardNotPosted as exc:
        raise Refusal(exc.message, cluster=cluster.name) from None
    return op


def list_schedules(cmd: Command, inv: Invocation) -> None:
    rows = _rows(inv)
    cluster = inv.cluster_for(cmd) if cmd.cluster else None
    inv.authorize(cluster, "viewer", "schedule list")
    now = datetime.now(UTC)
    found = rows.listing([cluster.name] if cluster else None)
    shown = [(item.schedule, item.approval_status,
              next(iter(next_runs(item.schedule.cron, item.schedule.timezone, now, 1, item.schedule.until)), None))
             for item in found]
    scope = f"on `{cluster.name}`" if cluster else "on every cluster"
    active = [item.schedule for item in found if item.schedule.status == "active"]
    inv.reply(schedule_blocks.schedules_message(shown, savings(active, now), scope=scope, sandbox=inv.sandbox))


def digest_lines(deps: Deps, clusters: Sequence[str]) -> list[str]:
    """The digest's section: active schedules of these clusters (empty: all) and what they save."""
    if deps.schedules is None:
        return []
    found = deps.schedules.listing(list(clusters) or None)
    active = [item.schedule for item in found if item.schedule.status == "active"]
    return schedule_blocks.digest_lines(active, savings(active, datetime.now(UTC)))


def savings(active: Sequence[Any], now: datetime) -> dict[tuple[str, str, str], Saving]:
    """Per workload, what its active schedules save together, priced as its latest card priced it."""
    out: dict[tuple[str, str, str], Saving] = {}
    for workload in dict.fromkeys(schedule_blocks.workload_of(row) for row in active):
        mine = [row for row in active if schedule_blocks.workload_of(row) == workload]
        rules = [Rule(row.replicas, row.cron, row.timezone, row.until) for row in mine]
        out[workload] = saving_of(rules, dict(mine[-1].saving or {}), now)
    return out


def unschedule(cmd: Command, inv: Invocation) -> Operation | None:
    rows = _rows(inv)
    schedule_id = int(cmd.args[0])
    row = rows.get(schedule_id)
    if row is None or row.status != "active":
        state = f" (it is {row.status})" if row is not None else ""
        raise Refusal(f"there is no active schedule #{schedule_id}{state}; `/infer schedule list` shows the active "
                      "ones and their ids.", cmd.usage)
    cluster = inv.deps.clusters.lookup(row.cluster)
    inv.authorize(cluster, "operator", "unschedule")
    deps = inv.deps
    what = (f"`deployment/{row.name}` → {row.replicas} replicas on "
            f"{schedule_blocks.describe(row.cron, row.timezone, row.until)}")
    if inv.user == row.created_by:
        removed = rows.remove(schedule_id, inv.user, f"removed by its creator {inv.user}")
        if removed is None:
            raise Refusal(f"schedule #{schedule_id} was removed a moment ago by someone else.", cmd.usage)
        approval = deps.store.get(row.operation_id) if row.operation_id else None
        if approval is not None:
            cards.post_in_thread(inv.client, approval, f":wastebasket: Schedule #{schedule_id} removed by "
                                                       f"<@{inv.user}>; it will not run again.")
        inv.reply(blocks.note(f":wastebasket: Schedule #{schedule_id} ({what}) is removed; it will not run again. "
                              "It was yours, so no approval was needed.", sandbox=inv.sandbox))
        return None
    if cluster is None:
        raise Refusal(f"cluster `{row.cluster}` of schedule #{schedule_id} is no longer configured; ask an admin.")
    op = deps.store.create_operation(
        kind="unschedule", cluster=row.cluster, namespace=row.namespace, target=row.name,
        params={"schedule_id": schedule_id},
        plan={"object": f"schedule #{schedule_id}", "change": f"remove: {what}",
              "details": f"Set up by <@{row.created_by}>. Removing it stops its future runs; it changes nothing "
                         "on the cluster now."},
        requested_by=inv.user, channel_id=inv.channel,
        approvals_needed=deps.policy.approvals_needed(cluster, "unschedule"), ttl=deps.approval_ttl,
    )
    try:
        cards.publish(inv.client, deps.store, op, sandbox=inv.sandbox, wake=deps.wake_worker)
    except cards.CardNotPosted as exc:
        raise Refusal(exc.message, cluster=row.cluster) from None
    return op
