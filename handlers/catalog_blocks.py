"""How the model catalog looks in Slack: `/infer models`.

Presets are grouped by framework and accelerator, one line each. Slack refuses a message over 50
blocks or a section over 3000 characters, so groups are split into sections by length and a very
long catalog (many user presets) ends with a count of what was left out rather than failing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import groupby

from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, SectionBlock

from handlers.blocks import Message, _clip, _md, _render, escape
from ops.catalog import FRAMEWORKS, Preset

MAX_BLOCKS = 50
SECTION_CHARS = 3000
ACCELERATOR_NAMES = {"gpu": "NVIDIA GPU", "neuron": "AWS Neuron"}


def _group_key(p: Preset) -> tuple[int, str, str]:
    known = FRAMEWORKS.index(p.framework) if p.framework in FRAMEWORKS else len(FRAMEWORKS)
    return (known, p.framework, p.accelerator)


def _price(p: Preset, prices: Mapping[str, float | None]) -> str:
    price = prices.get(p.instance)
    if price is None:
        return "no price"
    if p.nodes > 1:
        return f"${price * p.nodes:,.2f}/h ({p.nodes} nodes)"
    return f"${price:,.2f}/h"


def preset_line(p: Preset, prices: Mapping[str, float | None]) -> str:
    where = f"{p.nodes} × `{p.instance}`" if p.nodes > 1 else f"`{p.instance}`"
    user = " · :bust_in_silhouette: user preset" if p.source != "upstream" else ""
    kind = " · image" if p.task == "image" else ""
    return (f"`{p.id}`  {escape(p.model)} · *{p.params_billion:g}B* {p.precision}{kind} · "
            f"{where} {_price(p, prices)}{user}")


def _sections(title: str, lines: Sequence[str]) -> list[tuple[str, int]]:
    """title + lines packed into (text, lines in it) of at most SECTION_CHARS, the title repeated on each."""
    out: list[tuple[str, int]] = []
    current, count = title, 0
    for line in lines:
        line = _clip(line, SECTION_CHARS - len(title) - 20)
        if count and len(current) + 1 + len(line) > SECTION_CHARS:
            out.append((current, count))
            current, count = f"{title} (cont.)", 0
        current += "\n" + line
        count += 1
    out.append((current, count))
    return out


def models_message(presets: Sequence[Preset], prices: Mapping[str, float | None], *, region: str,
                   prices_as_of: str, command: str = "/infer", problems: Sequence[str] = (),
                   sandbox: bool = False) -> Message:
    """prices: instance type → on-demand USD/hour in `region` (None when unknown)."""
    ordered = sorted(presets, key=lambda p: (*_group_key(p), p.id))
    footer = (f"{len(ordered)} presets · prices: on-demand Linux per instance-hour in {region} "
              f"(table as of {prices_as_of}) · `{command} deploy <preset>` deploys one")
    blocks: list[Block] = [HeaderBlock(text="Model presets")]
    # Room kept for the footer, the problems and the "left out" note.
    budget = MAX_BLOCKS - len(blocks) - 3 - (1 if sandbox else 0)
    shown = 0
    truncated = False
    for (_, framework, accelerator), group in groupby(ordered, key=_group_key):
        title = f"*{framework}* · {ACCELERATOR_NAMES.get(accelerator, accelerator)}"
        for text, count in _sections(title, [preset_line(p, prices) for p in group]):
            if budget == 0:
                truncated = True
                break
            blocks.append(SectionBlock(text=_md(text)))
            budget -= 1
            shown += count
        if truncated:
            break
    if truncated:
        blocks.append(ContextBlock(elements=[_md(f"…and {len(ordered) - shown} more presets that do not fit in "
                                                 "one Slack message.")]))
    if problems:
        listed = "\n".join(f"• {escape(p)}" for p in problems)
        blocks.append(SectionBlock(text=_md(f":warning: Preset files that were refused (fix them to use them):\n"
                                            f"{listed}")))
    blocks.append(ContextBlock(elements=[_md(footer)]))
    if not ordered:
        blocks.insert(1, SectionBlock(text=_md("No presets are available.")))
    return _render(f"Model presets ({len(ordered)})", blocks, sandbox)
