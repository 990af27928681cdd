"""What `/infer clusters <name>` shows: one line per piece of the readiness doctor (ops/readiness.py),
an icon for its level, then the line as ops wrote it. `infer-bot check` prints the same lines with a
text prefix (ICON_TEXT), so the console, the CLI and Slack agree."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from handlers.blocks import SANDBOX_LABEL, Message
from ops.readiness import Finding, Readiness

ICONS = {"ok": ":white_check_mark:", "info": ":information_source:", "warn": ":warning:", "fail": ":x:"}
ICON_TEXT = {"ok": "ok  ", "info": "info", "warn": "warn", "fail": "FAIL"}
SECTION_CHARS = 2900  # Slack allows 3000 per section


def line(finding: Finding) -> str:
    return f"{ICONS[finding.level]} {finding.text}"


def summary(readiness: Readiness) -> str:
    counts = {level: sum(1 for f in readiness.findings if f.level == level) for level in ICONS}
    if counts["fail"]:
        return f"{counts['fail']} problem(s) block the bot on `{readiness.cluster}`; {counts['warn']} warning(s)"
    if counts["warn"]:
        return f"`{readiness.cluster}` works; {counts['warn']} optional piece(s) missing, each line says what it costs"
    return f"`{readiness.cluster}` has everything the presets, digests and provisioning use"


def readiness_message(readiness: Readiness, tools: Sequence[Finding] = (), *, sandbox: bool = False) -> Message:
    title = f"Readiness of {readiness.cluster}"
    blocks: list[Block] = []
    if sandbox:
        blocks.append(ContextBlock(elements=[MarkdownTextObject(text=SANDBOX_LABEL)]))
    blocks.append(HeaderBlock(text=title[:150]))
    chunk: list[str] = []
    for text in [line(f) for f in readiness.findings] + ([line(f) for f in tools]):
        if chunk and len("\n".join([*chunk, text])) > SECTION_CHARS:
            blocks.append(SectionBlock(text=MarkdownTextObject(text="\n".join(chunk))))
            chunk = []
        chunk.append(text[:SECTION_CHARS])
    if chunk:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="\n".join(chunk))))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=summary(readiness))]))
    return Message(text=f"{title}: {summary(readiness)}", blocks=[b.to_dict() for b in blocks])
