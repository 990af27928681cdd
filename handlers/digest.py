"""`digest now|subscribe|unsubscribe|list`, `metrics <name>`, and the suggestions' Apply button.

The digest itself is built in ops/digest.py (Prometheus, Kubernetes, prices, advisor) and drawn by
handlers/digest_blocks.py; this module stores the suggestions (their ids are the Apply buttons'
values), posts the message, its thread and its chart, and turns an Apply click into the same
operation a typed command would request, approval card included.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
import zoneinfo
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers import blocks, digest_blocks, grafana_links, scale, schedules
from handlers.base import Invocation, Refusal
from handlers.counters import ACTIONS
from handlers.deps import Deps, DigestRows
from handlers.parse import Command, UsageError, parse
from ops import instances, releases
from ops.advisor import Suggestion, thresholds_from
from ops.digest import ClusterSource, Digest, build
from ops.errors import OpsError
from ops.metrics import QuerySettings
from ops.metrics.client import PromError

log = logging.getLogger(__name__)

MANUAL = "manual:"  # period prefix of digests posted on request (never claimed twice)


# ---- building -------------------------------------------------------------------------------------


def query_settings(config: Any) -> QuerySettings:
    m = config.metrics
    return QuerySettings(window=timedelta(hours=m.window_hours), step=timedelta(seconds=m.step_seconds),
                         rate_window=timedelta(seconds=m.rate_window_seconds), timeout=m.timeout_seconds,
                         idle_util_pct=m.idle_util_pct)


def sources(deps: Deps, names: Sequence[str] = ()) -> list[ClusterSource]:
    default_region = getattr(getattr(deps.config, "catalog", None), "region", None) or instances.DEFAULT_REGION
    out = []
    for cluster in deps.config.clusters:
        if names and cluster.name not in names:
            continue
        try:
            kube: Any = deps.clusters.get(cluster)
        except OpsError:
            kube = None  # no start-up times for this one; Prometheus still answers
        eks = getattr(cluster, "eks", None)
        out.append(ClusterSource(cluster.name, cluster.prometheus_url,
                                 region=getattr(eks, "region", None) or default_region,
                                 max_replicas=cluster.max_replicas, kube=kube))
    return out


def build_digest(deps: Deps, names: Sequence[str] = (), *, scope: tuple[str, str] | None = None,
                 end: datetime | None = None) -> Digest:
    config = deps.config
    return build(sources(deps, names), end or datetime.now(UTC), query_settings(config),
                 thresholds_from(config.advisor.thresholds), disabled=config.advisor.disabled, scope=scope)


def _rows(deps: Deps) -> DigestRows:
    if deps.digests is None:
        raise Refusal("digests are not set up in this bot process.")
    return deps.digests


def apply_commands(suggestions: Sequence[Suggestion], deps: Deps | None) -> dict[str, str]:
    """Suggestion key → the slash command its Apply button requests, for those that have one."""
    commands = {s.key: _command(s, deps) for s in suggestions if s.action is not None}
    return {key: command for key, command in commands.items() if command}


def store_suggestions(rows: DigestRows, channel: str, post_id: int | None,
                      suggestions: Sequence[Suggestion], commands: Mapping[str, str]) -> dict[str, int]:
    """Suggestions that map to an operation get a row; its id is what their Apply button carries."""
    actionable = [s for s in suggestions if s.key in commands]
    ids = rows.save_suggestions(channel, post_id, [
        {"cluster": s.cluster, "namespace": s.namespace, "deployment": s.deployment, "rule": s.rule,
         "title": s.title, "command": commands[s.key], "evidence": dict(s.evidence)} for s in actionable])
    return {s.key: i for s, i in zip(actionable, ids, strict=True)}


def _command(s: Suggestion, deps: Deps | None) -> str:
    """The slash command the Apply button requests; "" when no operation of this bot can do it.

    An instance change is a deploy of the release's own preset with `instance=`, so only a release
    the bot deployed (its workload carries the preset) gets a button; a model server installed by
    hand gets the advice alone. The approval card then shows exactly which fields change.
    """
    assert s.action is not None
    if s.action.verb != "instance":
        return s.action.command
    if deps is None:
        return ""
    name, instance = s.action.args
    cluster = deps.clusters.lookup(s.cluster)
    if cluster is None:
        return ""
    try:
        found = releases.releases(releases.ReleaseApi(deps.clusters.get(cluster)), s.namespace, name)
    except Exception as exc:  # a cluster that does not answer now: the advice still posts, without a button
        log.info("no Apply for %s/%s: cannot read the release (%s)", s.cluster, name, type(exc).__name__)
        return ""
    if not found or not found[0].preset:
        return ""
    return " ".join(["deploy", found[0].preset, f"name={name}", f"instance={instance}",
                     f"replicas={found[0].desired}", f"namespace={s.namespace}", f"cluster={s.cluster}"])


# ---- posting --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Posted:
    ts: str | None
    summary: dict[str, Any]


def summary_of(d: Digest, thread_messages: int, files: Sequence[str]) -> dict[str, Any]:
    return {"util_mean": d.util_mean, "cost_per_day": d.cost_per_day, "idle_cost_per_day": d.idle_cost_per_day,
            "deployments": len(d.deployments), "suggestions": len(d.suggestions), "queries": d.queries,
            "build_seconds": round(d.build_seconds, 3), "clusters_down": [c.name for c in d.down],
            "thread_messages": thread_messages, "files": list(files)}


class _Built:
    """One built digest and its chart, drawn at most once however many channels post it."""

    def __init__(self, digest: Digest, deps: Deps | None = None) -> None:
        self.digest = digest
        self.deps = deps  # resolves the Apply commands
        self.at = time.monotonic()
        self._chart: bytes | None = None
        self._drawn = False
        self._commands: dict[str, str] | None = None
        self._lock = threading.Lock()

    def chart(self) -> bytes | None:
        with self._lock:
            if not self._drawn:
                self._chart, self._drawn = _chart(self.digest), True
            return self._chart

    def commands(self) -> dict[str, str]:
        """The Apply commands, resolved once (an instance change reads the cluster), not per channel."""
        with self._lock:
            if self._commands is None:
                self._commands = apply_commands(self.digest.suggestions, self.deps)
            return self._commands


def budget_lines(deps: Deps, channel: str, clusters: Sequence[str]) -> list[str]:
    """Per budgeted cluster of this digest, its burn rate and projected month end: read at each post
    (one query per budget), since a budget may name the one channel whose digest shows it."""
    now = datetime.now(UTC)
    lines = []
    for cluster in deps.config.clusters:
        budget = deps.config.budget(cluster.name)
        if (clusters and cluster.name not in clusters) or budget is None or not cluster.prometheus_url:
            continue
        if getattr(budget, "channel", None) not in (None, channel):
            continue
        try:
            spend = scale.cluster_spend(deps, cluster, now)
        except PromError as exc:
            lines.append(digest_blocks.budget_unknown_line(cluster.name, budget.monthly_usd, str(exc.args[0])))
            continue
        lines.append(digest_blocks.budget_line(cluster.name, budget.monthly_usd, spend))
    return lines


def _shared_build(deps: Deps, clusters: Sequence[str]) -> _Built:
    """The digest of `clusters`, built once for every channel that posts it within the builds' ttl."""
    built: _Built = deps.builds.get(("digest", *sorted(clusters)),
                                    lambda: _Built(build_digest(deps, clusters), deps))
    return built


def post_digest(client: WebClient, deps: Deps, channel: str, clusters: Sequence[str] = (),
                post_id: int | None = None, *, digest: Digest | None = None,
                layout: digest_blocks.Layout = digest_blocks.Layout()) -> Posted:
    """Build (unless given) and post one digest: message, overflow in the thread, chart and table files.

    Safe to call from many threads at once for different channels (that is what the scheduler and
    post_digests do): the pacing is per channel, so channels do not wait for each other, and
    callers within a minute of each other share one build (deps.builds).
    """
    built = _Built(digest, deps) if digest is not None else _shared_build(deps, clusters)
    d = built.digest
    apply_ids = store_suggestions(_rows(deps), channel, post_id, d.suggestions, built.commands())
    render = digest_blocks.render_digest(d, apply_ids, sandbox=deps.config.sandbox, layout=layout,
                                         schedules=schedules.digest_lines(deps, clusters),
                                         budgets=budget_lines(deps, channel, clusters),
                                         links=grafana_links.links_for(deps))
    with deps.pacer.slot(channel):
        resp = client.chat_postMessage(channel=channel, text=render.main.text, blocks=render.main.blocks)
    ts = str(resp["ts"])
    for message in render.thread:
        with deps.pacer.slot(channel):
            client.chat_postMessage(channel=channel, thread_ts=ts, text=message.text, blocks=message.blocks)
    files = []
    chart = built.chart()
    if chart is not None and _upload(client, deps, channel, ts, chart, "digest.png",
                                     f"Accelerator utilization and p95 latency, last {d.window_hours:g} h"):
        files.append("digest.png")
    if render.table_csv is not None and _upload(client, deps, channel, ts, render.table_csv, "digest.csv",
                                                f"All {len(d.deployments)} deployments"):
        files.append("digest.csv")
    return Posted(ts, summary_of(d, len(render.thread), files))


def post_digests(client: WebClient, deps: Deps, channels: Sequence[str], clusters: Sequence[str] = (), *,
                 max_workers: int = 32, layout: digest_blocks.Layout = digest_blocks.Layout()
                 ) -> dict[str, Posted | Exception]:
    """Post the same clusters' digest to many channels at once: one build, then one thread per channel.

    Slack allows about one message per second per channel, so channels must not wait for each
    other: N channels take about as long as one (while N ≤ max_workers). A channel that fails gets
    its exception in the result; the others still post.
    """
    from concurrent.futures import ThreadPoolExecutor

    out: dict[str, Posted | Exception] = {}
    if not channels:
        return out
    _shared_build(deps, clusters)  # build once before fanning out (the threads would wait for it anyway)

    def one(channel: str) -> Posted | Exception:
        try:
            return post_digest(client, deps, channel, clusters, layout=layout)
        except Exception as exc:  # one channel's refusal (not_in_channel…) must not stop the others
            log.warning("digest for %s failed: %s", channel, exc)
            return exc

    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(channels))),
                            thread_name_prefix="digest-post") as pool:
        for channel, result in zip(channels, pool.map(one, channels), strict=True):
            out[channel] = result
    return out


def _chart(d: Digest) -> bytes | None:
    # matplotlib loads only when a digest draws its chart: serve and the console start without it.
    from ops.charts import MAX_LINES, Line, render_png

    # The most expensive deployments first: that is where utilization matters.
    ranked = sorted(d.deployments, key=lambda r: -(r.cost_per_day or 0))
    lines = [Line(f"{r.metrics.name} ({r.metrics.cluster})", r.metrics.util_series, r.metrics.latency_series)
             for r in ranked if r.metrics.util_series or r.metrics.latency_series]
    if not lines:
        return None
    try:
        return render_png(lines, title=f"Last {d.window_hours:g} h to {d.end:%Y-%m-%d %H:%M} UTC",
                          util_target=d.thresholds.util_target_pct)
    except Exception:  # a chart is a bonus: the digest is posted without it
        log.exception("cannot draw the digest chart (%d lines, top %d)", len(lines), MAX_LINES)
        return None


def _upload(client: WebClient, deps: Deps, channel: str, ts: str, content: bytes, filename: str,
            title: str) -> bool:
    # files_upload_v2 = files.getUploadURLExternal + the upload + files.completeUploadExternal, which
    # shares the file into the digest's thread (and counts as a post there).
    try:
        with deps.pacer.slot(channel):
            client.files_upload_v2(channel=channel, thread_ts=ts, file=content, filename=filename, title=title)
    except (SlackApiError, OSError) as exc:
        log.warning("cannot upload %s to %s: %s", filename, channel, getattr(exc, "response", {}) or exc)
        return False
    return True


# ---- `/infer digest …` ------------------------------------------------------------------------------


def digest(cmd: Command, inv: Invocation) -> None:
    action = cmd.args[0]
    {"now": _now, "subscribe": _subscribe, "unsubscribe": _unsubscribe, "list": _list}[action](cmd, inv)


def _clusters(cmd: Command, inv: Invocation) -> list[str]:
    if cmd.cluster is None:
        return []
    return [inv.cluster_for(cmd).name]


def _now(cmd: Command, inv: Invocation) -> None:
    inv.authorize(inv.deps.config.cluster(cmd.cluster) if cmd.cluster else None, "operator", "digest")
    names = _clusters(cmd, inv)
    if not inv.deps.config.clusters:
        raise Refusal("no cluster is configured; a digest needs at least one with a `prometheus_url`.")
    rows = _rows(inv.deps)
    post_id = rows.claim_post(inv.channel, f"{MANUAL}{uuid.uuid4().hex}", inv.user)
    try:
        posted = post_digest(inv.client, inv.deps, inv.channel, names, post_id,
                             layout=digest_blocks.Layout(sort=cmd.options.get("sort") or "severity"))
    except SlackApiError as exc:
        error = exc.response.get("error", "error")
        if post_id is not None:
            rows.finish_post(post_id, "failed", error=error)
        hint = " Invite the bot to this channel first (`/invite @infer-bot`)." if error == "not_in_channel" else ""
        raise Refusal(f"I could not post the digest here ({error}).{hint}") from None
    if post_id is not None:
        rows.finish_post(post_id, "posted", ts=posted.ts, summary=posted.summary)
    inv.deps.store.audit(inv.user, "digest.now", channel_id=inv.channel,
                         detail=f"{posted.summary['deployments']} deployments, {posted.summary['queries']} queries")


def _subscribe(cmd: Command, inv: Invocation) -> None:
    inv.authorize(None, "operator", "digest")
    cron = cmd.arg("cron") or ""
    tz = cmd.options.get("tz") or "UTC"
    try:
        zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise Refusal(f"`{blocks.escape(tz)}` is not a time zone I know; use a tz database name such as "
                      "`UTC` or `Europe/Paris`.", cmd.usage) from None
    rows = _rows(inv.deps)
    try:
        next_run = rows.next_run(cron, tz)
    except ValueError as exc:
        raise Refusal(f"cron `{cron}`: {exc}", cmd.usage) from None
    names = _clusters(cmd, inv)
    _, previous = rows.subscribe(inv.channel, cron, tz, inv.user, names)
    rows.changed()
    replaced = f" (replacing `{blocks.escape(previous.cron)}` {previous.timezone})" if previous else ""
    inv.deps.store.audit(inv.user, "digest.subscribe", channel_id=inv.channel, detail=f"{cron} {tz}{replaced}")
    when = f" Next: {next_run.astimezone(UTC):%Y-%m-%d %H:%M} UTC ({next_run:%H:%M} {tz})." if next_run else ""
    inv.reply(blocks.note(f":calendar: This channel gets the digest on `{cron}` ({tz}){replaced}.{when}",
                          sandbox=inv.sandbox))


def _unsubscribe(cmd: Command, inv: Invocation) -> None:
    inv.authorize(None, "operator", "digest")
    rows = _rows(inv.deps)
    removed = rows.unsubscribe(inv.channel)
    rows.changed()
    configured = [d for d in inv.deps.config.digests if d.channel == inv.channel]
    note = " Schedules from the bot's config (`digests:`) stay; change them there." if configured else ""
    if removed is None:
        inv.reply(blocks.note(f"This channel had no digest subscription.{note}", sandbox=inv.sandbox))
        return
    inv.deps.store.audit(inv.user, "digest.unsubscribe", channel_id=inv.channel,
                         detail=f"{removed.cron} {removed.timezone}")
    inv.reply(blocks.note(f"Unsubscribed: no more digests on `{removed.cron}` ({removed.timezone}).{note}",
                          sandbox=inv.sandbox))


def _list(cmd: Command, inv: Invocation) -> None:
    inv.authorize(None, "viewer", "digest")
    rows = _rows(inv.deps)
    listed: list[tuple[str, str, str, datetime | None]] = []
    for d in inv.deps.config.digests:
        if d.channel == inv.channel:
            listed.append(("config", d.cron, d.timezone, _next(rows, d.cron, d.timezone)))
    mine = rows.subscriptions(inv.channel)
    for sub in mine:
        listed.append((f"subscribed by <@{sub.created_by}>", sub.cron, sub.timezone,
                       _next(rows, sub.cron, sub.timezone)))
    others = len({s.channel_id for s in rows.subscriptions()} - {inv.channel})
    inv.reply(digest_blocks.schedules_message(inv.channel, listed, others=others, sandbox=inv.sandbox))


def _next(rows: DigestRows, cron: str, tz: str) -> datetime | None:
    try:
        return rows.next_run(cron, tz)
    except (ValueError, KeyError):
        return None


# ---- `/infer metrics <name>` -------------------------------------------------------------------------


def metrics(cmd: Command, inv: Invocation) -> None:
    cluster = inv.cluster_for(cmd)
    inv.authorize(cluster, "viewer", "metrics")
    name = cmd.args[0]
    namespace = cmd.options.get("namespace") or cluster.namespace
    if not cluster.prometheus_url:
        raise Refusal(f"cluster `{cluster.name}` has no `prometheus_url` in the bot's config, so I have no metrics "
                      "for it.", cluster=cluster.name)
    d = build_digest(inv.deps, [cluster.name], scope=(namespace, name))
    status = next(c for c in d.clusters if c.name == cluster.name)
    if status.error:
        raise Refusal(f"I cannot read the metrics of `{cluster.name}`: {status.error}", cluster=cluster.name)
    report = next((r for r in d.deployments if r.metrics.key == (namespace, name)), None)
    if report is None:
        raise Refusal(f"no metrics for `{name}` in namespace `{namespace}` of `{cluster.name}` over the last "
                      f"{d.window_hours:g} h. `/infer status cluster={cluster.name}` lists what runs there.",
                      cmd.usage, cluster=cluster.name)
    apply_ids = store_suggestions(_rows(inv.deps), inv.channel, None, report.suggestions,
                                  apply_commands(report.suggestions, inv.deps))
    inv.reply(digest_blocks.metrics_message(report, d, apply_ids, sandbox=inv.sandbox,
                                            links=grafana_links.links_for(inv.deps)))


# ---- the Apply button -----------------------------------------------------------------------------------


def on_apply(ack: Callable[..., Any], body: dict[str, Any], action: dict[str, Any], context: dict[str, Any],
             client: WebClient, respond: Callable[..., Any]) -> None:
    ack()
    deps: Deps = context["deps"]
    if not deps.first_delivery(body):
        return
    user = (body.get("user") or {}).get("id", "")
    channel = (body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", "")
    inv = Invocation(user=user, channel=channel, deps=deps, client=client, respond=respond)
    try:
        outcome = apply_suggestion(str(action.get("value") or ""), inv)
    except (Refusal, OpsError) as exc:
        ACTIONS.labels(action="suggestion_apply", outcome="refused").inc()
        deps.store.audit(user, "suggestion.apply", "refused", channel_id=channel or None, detail=exc.message)
        inv.reply(blocks.refusal(exc.message, sandbox=inv.sandbox))
        return
    ACTIONS.labels(action="suggestion_apply", outcome="ok").inc()
    inv.reply(blocks.note(outcome, sandbox=inv.sandbox))


def apply_suggestion(value: str, inv: Invocation) -> str:
    """Request the suggestion's operation exactly once; returns what to tell the clicker."""
    rows = _rows(inv.deps)
    if not value.isascii() or not value.isdigit() or len(value) > 12:
        raise Refusal("that button does not name a suggestion I know.")
    row = rows.suggestion(int(value))
    if row is None or not row.command:
        raise Refusal("that button does not name a suggestion I know.")
    if row.channel_id != inv.channel:
        raise Refusal("that suggestion belongs to another channel; apply it there.")
    try:
        cmd = parse(row.command, max_replicas=_max_replicas(inv.deps))
    except UsageError as exc:
        raise Refusal(f"the suggested change no longer fits this bot's limits: {exc.message}") from None
    if not rows.claim_suggestion(row.id, inv.user):
        current = rows.suggestion(row.id)
        who = f" by <@{current.applied_by}>" if current is not None and current.applied_by else ""
        op = f" as operation #{current.operation_id}" if current is not None and current.operation_id else ""
        return f"This suggestion was already applied{who}{op}; nothing new was requested."
    operation = None
    try:
        operation = _request(cmd, inv)
    except (Refusal, OpsError):
        rows.finish_suggestion(row.id, operation_id=None, applied=False)  # someone else may try again
        raise
    rows.finish_suggestion(row.id, operation_id=operation.id if operation is not None else None, applied=True)
    inv.deps.store.audit(inv.user, "suggestion.apply", cluster=row.cluster, channel_id=inv.channel,
                         operation_id=operation.id if operation is not None else None,
                         detail=f"#{row.id} {row.rule}: {row.command}")
    if operation is None:
        return f"Applied `{row.command}`."
    return (f"Requested `{blocks.escape(cmd.text)}` as operation #{operation.id}; its approval card is in this "
            "channel.")


def _request(cmd: Command, inv: Invocation) -> Any:
    """The operation a typed command would create, by the same code path."""
    if cmd.verb == "scale":
        return scale.propose(cmd, inv)
    operation = inv.deps.verbs.request(cmd, inv)
    return operation if getattr(operation, "id", None) is not None else None


def _max_replicas(deps: Deps) -> int:
    return max((c.max_replicas for c in deps.config.clusters), default=20)
