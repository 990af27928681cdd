"""How a digest and `/infer metrics` look in Slack (Block Kit through slack_sdk's models).

Slack's limits shape the layout: at most 50 blocks and ~12k characters per message, sections of
3000, headers of 150. The digest's message holds the headline numbers, the most important
deployments (most severe first, then most expensive) and the first suggestions with their Apply
buttons; the rest goes to the digest's thread, or into a CSV file there when there are many.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from handlers.blocks import SANDBOX_LABEL, Message, escape
from handlers.grafana_links import NO_LINKS, Links
from ops.advisor import Suggestion
from ops.digest import DeploymentReport, Digest
from ops.metrics import DeploymentMetrics, Point

MAX_BLOCKS = 50
TEXT_BUDGET = 11_000  # characters of block text per message, under Slack's ~12k in practice
MAIN_DEPLOYMENTS = 10
MAIN_SUGGESTIONS = 6
THREAD_SECTIONS = 40  # per thread message
FILE_THRESHOLD = 60  # more deployments than this: the full table goes in a CSV file
SEVERITY_ICON = {3: ":red_circle:", 2: ":large_orange_circle:", 1: ":large_yellow_circle:", 0: ":large_green_circle:"}
APPLY_ACTION = "suggestion_apply"


SORTS = ("severity", "cost")


def ordered(reports: Sequence[DeploymentReport], sort: str) -> list[DeploymentReport]:
    """The deployments in the order the digest shows them (ops.digest.build already sorts by severity)."""
    if sort == "cost":
        return sorted(reports, key=lambda r: (-(r.cost_per_day or 0), -r.severity, r.metrics.cluster, r.metrics.name))
    return list(reports)


@dataclass(frozen=True)
class Layout:
    """How much of a digest goes in the message, how the rest is split in the thread, when a CSV takes over.

    The defaults fit Slack's limits with room to spare; a channel that wants a shorter message (or
    a test that wants overflow with five deployments) passes its own.
    """

    main_deployments: int = MAIN_DEPLOYMENTS
    main_suggestions: int = MAIN_SUGGESTIONS
    thread_sections: int = THREAD_SECTIONS
    file_threshold: int = FILE_THRESHOLD
    sort: str = "severity"  # "severity": most severe first, then most expensive; "cost": most expensive first

    def __post_init__(self) -> None:
        if self.sort not in SORTS:
            raise ValueError(f"digest sort must be one of {', '.join(SORTS)}, not {self.sort!r}")
        if min(self.main_deployments, self.main_suggestions, self.file_threshold) < 0 or not (
                1 <= self.thread_sections <= MAX_BLOCKS - 1):
            raise ValueError(f"digest layout out of range: {self}")


@dataclass
class DigestRender:
    main: Message
    thread: list[Message] = field(default_factory=list)
    table_csv: bytes | None = None  # every deployment, when there are too many for messages


# ---- small formatters ------------------------------------------------------------------------------


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _md(text: str) -> MarkdownTextObject:
    return MarkdownTextObject(text=_clip(text, 3000))


def money(v: float | None) -> str:
    return "n/a" if v is None else f"${v:,.2f}"


def per_day(v: float | None) -> str:
    return "n/a" if v is None else f"{money(v)}/day"


def pct(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f} %"


def secs(v: float | None) -> str:
    if v is None:
        return "—"
    if v < 1:
        return f"{v * 1000:.0f} ms"
    return f"{v:.2f} s" if v < 10 else f"{v:.1f} s"


def _when(at: datetime) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC")


SPARK = "▁▂▃▄▅▆▇█"


def sparkline(points: Sequence[Point], width: int = 24, top: float | None = None) -> str:
    """The series as block characters (averaged into `width` buckets), for text-only places."""
    values = [v for _, v in points]
    if not values:
        return ""
    size = max(1, len(values) // width)
    buckets = [sum(values[i:i + size]) / len(values[i:i + size]) for i in range(0, len(values), size)][-width:]
    high = top if top is not None else max(buckets)
    if high <= 0:
        return SPARK[0] * len(buckets)
    return "".join(SPARK[min(len(SPARK) - 1, int(v / high * (len(SPARK) - 1) + 0.5))] for v in buckets)


# ---- one deployment ---------------------------------------------------------------------------------


def _where(m: DeploymentMetrics) -> str:
    hardware = ""
    if m.instance_type:
        hardware = f" · `{m.instance_type}`"
        if m.devices:
            hardware += f" × {m.devices:g} {'Neuron' if m.accelerator == 'neuron' else 'GPU'}"
    return f"{m.cluster}/{m.namespace}{hardware}"


def deployment_lines(r: DeploymentReport, link: str = "") -> list[str]:
    """The compact lines of one deployment; only what was measured. link: its dashboard (`<url|Grafana>`)."""
    m = r.metrics
    head = f"{SEVERITY_ICON.get(r.severity, '')} *{escape(m.name)}* · {_where(m)}"
    if r.cost_per_day is not None:
        head += f" · *{money(r.cost_per_day)}/day*"
        if r.idle_cost_per_day is not None:
            head += f" (idle {money(r.idle_cost_per_day)})"
    if link:
        head += f" · {link}"
    lines = [head]
    kind = "Neuron" if m.accelerator == "neuron" else "GPU"
    part: list[str] = []
    if m.util_mean is not None:
        part.append(f"{kind} util {pct(m.util_mean, 0)} mean · {pct(m.util_p95, 0)} p95"
                    + (f" · {pct(100 * m.idle_share, 0)} idle" if m.idle_share is not None else ""))
    if m.mem_used_mib is not None and m.mem_total_mib:
        part.append(f"mem {m.mem_used_mib / 1024:.1f}/{m.mem_total_mib / 1024:.1f} GiB")
    if part:
        lines.append(" · ".join(part))
    part = []
    if m.rps_mean is not None:
        part.append(f"{m.rps_mean:.2f} req/s")
    if m.e2e_p95 is not None:
        part.append(f"p50/p95/p99 {secs(m.e2e_p50)} / {secs(m.e2e_p95)} / {secs(m.e2e_p99)}")
    if m.ttft_p95 is not None:
        part.append(f"TTFT p95 {secs(m.ttft_p95)}")
    if m.tpot_mean is not None:
        part.append(f"TPOT {secs(m.tpot_mean)}")
    if part:
        lines.append(" · ".join(part))
    part = []
    if m.queue_mean is not None:
        part.append(f"queue {m.queue_mean:.1f} mean / {m.queue_max or 0:.0f} max")
    if m.kv_mean is not None:
        part.append(f"KV {pct(100 * m.kv_mean, 0)} mean / {pct(100 * (m.kv_max or 0), 0)} max")
    if m.preemptions:
        part.append(f"{m.preemptions:.0f} preemptions")
    if m.error_share:  # engine errors (vLLM ≥ 0.11) fail requests as aborts do: say both, and the total
        part.append(f"{pct(100 * (m.failed_share or 0))} failed ({pct(100 * (m.abort_share or 0))} aborted, "
                    f"{pct(100 * m.error_share)} errors)")
    elif m.abort_share:
        part.append(f"{pct(100 * m.abort_share)} aborted")
    if part:
        lines.append(" · ".join(part))
    part = []
    if m.replicas_desired is not None:
        part.append(f"replicas {m.replicas_available if m.replicas_available is not None else '?'}"
                    f"/{m.replicas_desired}")
    if m.restarts:
        part.append(f"{m.restarts} restart{'s' if m.restarts != 1 else ''}")
    if m.startup_seconds is not None:
        part.append(f"start-up {m.startup_seconds / 60:.1f} min")
    if part:
        lines.append(" · ".join(part))
    if len(lines) == 1:
        lines.append("_no metrics in this window_")
    return lines


def deployment_section(r: DeploymentReport, d: Digest | None = None, links: Links = NO_LINKS) -> SectionBlock:
    """One deployment; with `d`, linked to its dashboard over the digest's window where it has a Grafana."""
    m = r.metrics
    link = links.link(m.cluster, m.namespace, m.name, d.start, d.end) if d is not None else ""
    return SectionBlock(text=_md("\n".join(deployment_lines(r, link))))


def suggestion_section(s: Suggestion, apply_id: int | None) -> SectionBlock:
    money_line = ""
    if s.saving_per_day is not None:
        money_line = (f" · saves {money(s.saving_per_day)}/day" if s.saving_per_day >= 0
                      else f" · costs {money(-s.saving_per_day)}/day more")
    evidence = " · ".join(f"{what} {value}" for what, value in s.evidence)
    text = (f"{SEVERITY_ICON.get(s.severity, '')} *{escape(s.title)}*{money_line}\n{escape(s.change)}\n"
            f"_Evidence ({s.cluster}/{s.namespace}):_ {escape(evidence)}")
    accessory = None
    if s.action is not None and apply_id is not None:
        accessory = ButtonElement(text="Apply", action_id=APPLY_ACTION, value=str(apply_id), style="primary")
    return SectionBlock(text=_md(text), accessory=accessory)


# ---- the digest -----------------------------------------------------------------------------------


def headline_fields(d: Digest) -> list[MarkdownTextObject]:
    target = d.thresholds.util_target_pct
    util = d.util_mean
    util_icon = "" if util is None else (":white_check_mark: " if util >= target else ":small_red_triangle_down: ")
    idle_share = (d.idle_cost_per_day / d.cost_per_day * 100) if d.cost_per_day and d.idle_cost_per_day else None
    worst = d.worst_latency
    worst_text = "—" if worst is None else (f"{secs(worst.metrics.e2e_p95)} p95 · `{escape(worst.metrics.name)}` "
                                            f"({worst.metrics.cluster})")
    return [
        _md(f"*Accelerator utilization*\n{util_icon}{pct(util)} (target {target:g} %)"),
        _md(f"*Cost*\n{per_day(d.cost_per_day)}"),
        _md(f"*Idle cost* (below {d.idle_util_pct:g} % util)\n{per_day(d.idle_cost_per_day)}"
            + (f" · {idle_share:.0f} %" if idle_share is not None else "")),
        _md(f"*Worst latency*\n{worst_text}"),
        _md(f"*Deployments*\n{len(d.deployments)} · {len(d.suggestions)} suggestions"),
    ]


def _context(d: Digest) -> str:
    clusters = ", ".join(f"{c.name} {':x:' if c.error else ':white_check_mark:'}" for c in d.clusters)
    return (f"{d.window_hours:g} h to {_when(d.end)} · clusters: {clusters or 'none'} · "
            f"{d.queries} PromQL queries · built in {d.build_seconds:.1f} s")


def _problems(d: Digest) -> str:
    # "The others are complete" only when there are others that answered: with one cluster it would mislead.
    rest = " The other clusters are complete." if len(d.down) < len(d.clusters) else ""
    lines = [f":warning: *{c.name}*: no data — {escape(c.error or '')}.{rest}" for c in d.down]
    for c in d.clusters:
        for warning in c.warnings[:3]:
            lines.append(f":grey_exclamation: *{c.name}*: some figures missing — {escape(_clip(warning, 300))}")
    return "\n".join(lines)


class _Budget:
    """Blocks and characters left in one message."""

    def __init__(self, blocks: int = MAX_BLOCKS, chars: int = TEXT_BUDGET) -> None:
        self.blocks, self.chars = blocks, chars

    def take(self, block: Block, reserve: int = 0) -> bool:
        size = len(str(block.to_dict()))
        if self.blocks - 1 < reserve or size > self.chars:
            return False
        self.blocks -= 1
        self.chars -= size
        return True


def render_digest(d: Digest, apply_ids: Mapping[str, int], *, sandbox: bool = False,
                  title: str = "Inference digest", layout: Layout = Layout(),
                  schedules: Sequence[str] = (), links: Links = NO_LINKS,
                  budgets: Sequence[str] = ()) -> DigestRender:
    """apply_ids: suggestion key → stored suggestion id (the Apply button's value); schedules: one line
    per workload with replica schedules (handlers/schedule_blocks.digest_lines); links: the clusters'
    Grafana dashboards (handlers/grafana_links.links_for); budgets: one line per budgeted cluster
    (budget_line)."""
    blocks: list[Block] = []
    if sandbox:
        blocks.append(ContextBlock(elements=[_md(SANDBOX_LABEL)]))
    blocks += [HeaderBlock(text=_clip(f"{title} · {d.end:%a %d %b %H:%M} UTC", 150)),
               SectionBlock(fields=headline_fields(d)),
               ContextBlock(elements=[_md(f"{_context(d)} · sorted by {layout.sort}")])]
    problems = _problems(d)
    if problems:
        blocks.append(SectionBlock(text=_md(problems)))
    blocks.append(DividerBlock())
    budget = _Budget(MAX_BLOCKS - len(blocks), TEXT_BUDGET - sum(len(str(b.to_dict())) for b in blocks))
    reports, suggestions = ordered(d.deployments, layout.sort), d.suggestions
    shown_reports = 0
    for report in reports[:layout.main_deployments]:
        # Keep room for the overflow note, the suggestions header and a few suggestions.
        if not budget.take(section := deployment_section(report, d, links), reserve=4 + min(3, len(suggestions))):
            break
        blocks.append(section)
        shown_reports += 1
    rest_reports = reports[shown_reports:]
    if rest_reports:
        where = "in the CSV file in the thread" if len(reports) > layout.file_threshold else "in the thread"
        note = ContextBlock(elements=[_md(f"…and {len(rest_reports)} more deployments {where}.")])
        budget.take(note)
        blocks.append(note)
    if schedules:  # a short list; what does not fit in one section is left to `/infer schedule list`
        text = "\n".join([f"*Replica schedules* ({len(schedules)} workload{'s' if len(schedules) > 1 else ''})",
                          *schedules[:10]])
        if budget.take(section := SectionBlock(text=_md(text)), reserve=2):
            blocks.append(section)
    if budgets:
        text = "\n".join(["*Budgets* (this month)", *budgets])
        if budget.take(section := SectionBlock(text=_md(_clip(text, 3000))), reserve=2):
            blocks.append(section)
    shown_suggestions = 0
    if suggestions:
        header = HeaderBlock(text=f"Suggestions ({len(suggestions)})")
        if budget.take(header, reserve=2):
            blocks += [DividerBlock(), header]
            budget.blocks -= 1
            for s in suggestions[:layout.main_suggestions]:
                if not budget.take(section := suggestion_section(s, apply_ids.get(s.key)), reserve=1):
                    break
                blocks.append(section)
                shown_suggestions += 1
    rest_suggestions = suggestions[shown_suggestions:]
    if rest_suggestions:
        blocks.append(ContextBlock(elements=[_md(f"…and {len(rest_suggestions)} more suggestions in the thread.")]))
    text = (f"{title}: utilization {pct(d.util_mean)} (target {d.thresholds.util_target_pct:g} %), "
            f"cost {per_day(d.cost_per_day)}, idle {per_day(d.idle_cost_per_day)}, "
            f"{len(suggestions)} suggestions")
    render = DigestRender(Message(text=_clip(text, 3000), blocks=[b.to_dict() for b in blocks]))
    if len(reports) > layout.file_threshold:
        render.table_csv = table_csv(d)
    else:
        render.thread += _chunks("More deployments", [deployment_section(r, d, links) for r in rest_reports],
                                 sandbox, layout.thread_sections)
    render.thread += _chunks("More suggestions", [suggestion_section(s, apply_ids.get(s.key))
                                                  for s in rest_suggestions], sandbox, layout.thread_sections)
    return render


def _chunks(title: str, sections: Sequence[SectionBlock], sandbox: bool, per_message: int) -> list[Message]:
    messages: list[Message] = []
    current: list[Block] = []
    budget = _Budget(per_message)

    def flush() -> None:
        if current:
            label = [ContextBlock(elements=[_md(SANDBOX_LABEL)])] if sandbox else []
            messages.append(Message(text=f"{title} ({len(messages) + 1})",
                                    blocks=[b.to_dict() for b in [*label, *current]]))

    for section in sections:
        if not budget.take(section):
            flush()
            current, budget = [], _Budget(per_message)
            budget.take(section)
        current.append(section)
    flush()
    return messages


CSV_COLUMNS = ("cluster", "namespace", "name", "instance_type", "devices", "cost_per_day", "idle_cost_per_day",
               "util_mean", "util_p95", "idle_share", "rps_mean", "e2e_p50", "e2e_p95", "e2e_p99", "ttft_p95",
               "tpot_mean", "queue_mean", "queue_max", "kv_mean", "kv_max", "preemptions", "abort_share",
               "error_share", "failed_share",
               "replicas_desired", "replicas_available", "restarts", "startup_seconds", "suggestions")


def table_csv(d: Digest) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for r in d.deployments:
        m = r.metrics
        row: list[Any] = []
        for column in CSV_COLUMNS:
            if column == "cost_per_day":
                value: Any = r.cost_per_day
            elif column == "idle_cost_per_day":
                value = r.idle_cost_per_day
            elif column == "suggestions":
                value = "; ".join(s.title for s in r.suggestions)
            else:
                value = getattr(m, column)
            row.append("" if value is None else (f"{value:.6g}" if isinstance(value, float) else value))
        writer.writerow(row)
    return out.getvalue().encode("utf-8")


# ---- one deployment, on request --------------------------------------------------------------------


def metrics_message(r: DeploymentReport, d: Digest, apply_ids: Mapping[str, int], *,
                    sandbox: bool = False, links: Links = NO_LINKS) -> Message:
    m = r.metrics
    blocks: list[Block] = []
    if sandbox:
        blocks.append(ContextBlock(elements=[_md(SANDBOX_LABEL)]))
    blocks.append(HeaderBlock(text=_clip(f"{m.name} · last {d.window_hours:g} h", 150)))
    blocks.append(deployment_section(r, d, links))
    trend = []
    if m.util_series:
        trend.append(f"util   `{sparkline(m.util_series, top=100)}` now {pct(m.util_now, 0)}")
    if m.latency_series:
        trend.append(f"p95    `{sparkline(m.latency_series)}` now {secs(m.e2e_p95_now)}")
    if trend:
        blocks.append(SectionBlock(text=_md("\n".join(trend))))
    for s in r.suggestions[:10]:
        blocks.append(suggestion_section(s, apply_ids.get(s.key)))
    if not r.suggestions:
        blocks.append(SectionBlock(text=_md(":large_green_circle: No suggestions: nothing here crosses the "
                                            "advisor's thresholds.")))
    blocks.append(ContextBlock(elements=[_md(_context(d))]))
    text = f"{m.name}: utilization {pct(m.util_mean)}, p95 {secs(m.e2e_p95)}, {per_day(r.cost_per_day)}"
    return Message(text=_clip(text, 3000), blocks=[b.to_dict() for b in blocks[:MAX_BLOCKS]])


def schedules_message(channel: str, rows: Sequence[tuple[str, str, str, datetime | None]], *,
                      others: int = 0, sandbox: bool = False) -> Message:
    """rows: (source, cron, time zone, next run)."""
    if not rows:
        text = (f"No digest is scheduled for <#{channel}>. `/infer digest subscribe \"0 9 * * 1-5\" "
                "tz=Europe/Paris` sets one.")
    else:
        lines = [f"• `{escape(cron)}` ({escape(tz)}) · {source}"
                 + (f" · next {_when(next_run)}" if next_run else "") for source, cron, tz, next_run in rows]
        text = f"Digest schedules for <#{channel}>:\n" + "\n".join(lines)
    if others:
        text += f"\n_{others} other channel(s) have subscriptions._"
    blocks: list[Block] = [SectionBlock(text=_md(text))]
    if sandbox:
        blocks.insert(0, ContextBlock(elements=[_md(SANDBOX_LABEL)]))
    return Message(text=_clip(text, 3000), blocks=[b.to_dict() for b in blocks])


def budget_line(cluster: str, monthly_usd: float, spend: Any) -> str:
    """A budgeted cluster in the digest (spend: ops.budgets.Spend): burn rate and where the month ends."""
    projected = spend.projected_usd
    text = (f"`{cluster}`: burn rate ${spend.usd_per_hour:,.2f}/h · month to date ${spend.mtd_usd:,.2f} · "
            f"projected month end ${projected:,.2f} of ${monthly_usd:,.2f} ({100 * projected / monthly_usd:.0f} %)")
    if projected > monthly_usd:
        text += f" · *over budget* by ${projected - monthly_usd:,.2f}"
    if spend.unpriced:
        text += f" · devices on {len(spend.unpriced)} node(s) of unknown price not counted"
    return text


def budget_unknown_line(cluster: str, monthly_usd: float, why: str) -> str:
    return f"`{cluster}`: ${monthly_usd:,.2f}/month · spend unknown ({why})"
