"""How releases look in Slack: `status` and the answer of `test`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, SectionBlock

from handlers.blocks import Message, _clip, _md, _render, escape
from ops.kube import DeploymentInfo, age
from ops.releases import ReleaseInfo


def status_message(cluster: str, namespace: str, found: Sequence[ReleaseInfo], others: Sequence[DeploymentInfo], *,
                   sandbox: bool = False, links: Mapping[str, str] | None = None) -> Message:
    """Releases the bot deployed (revision, ready/desired, age, endpoint), then other Deployments.

    links: workload name → its dashboard link (`<url|Grafana>`), added at the end of its line.
    """
    title = f"Deployments in {cluster}/{namespace}"
    blocks: list[Block] = [HeaderBlock(text=_clip(title, 150))]
    links = links or {}
    lines = [_linked(release_line(r), links.get(r.name)) for r in found]
    for start in range(0, len(lines), 15):
        blocks.append(SectionBlock(text=_md("\n".join(lines[start:start + 15]))))
    if others:
        other_lines = [_linked(deployment_line(d), links.get(d.name)) for d in others[:40]]
        blocks.append(ContextBlock(elements=[_md("Other Deployments (not deployed by the bot):")]))
        blocks.append(SectionBlock(text=_md("\n".join(other_lines))))
    if len(blocks) == 1:
        blocks.append(SectionBlock(text=_md(f"Nothing is deployed in `{namespace}` on cluster `{cluster}`.")))
    return _render(title, blocks[:50], sandbox)


def _linked(line: str, link: str | None) -> str:
    return f"{line} · {link}" if link else line


def release_line(r: ReleaseInfo) -> str:
    """One release as `status` and the Home tab's fleet show it."""
    icon = ":large_green_circle:" if r.ready >= r.desired > 0 else ":large_yellow_circle:"
    scaler = f" · autoscale {r.autoscaler}" if r.autoscaler else ""
    preset = f" · `{r.preset}`" if r.preset else ""
    return (f"{icon} *{r.name}* rev {r.revision} · {r.ready}/{r.desired} ready · age {age(r.created)}"
            f"{preset}{scaler} · {r.kind} · {r.endpoint}")


def deployment_line(d: DeploymentInfo) -> str:
    """A Deployment the bot did not deploy, as `status` and the Home tab's fleet show it."""
    return (f"{':large_green_circle:' if d.available >= d.replicas else ':large_yellow_circle:'} "
            f"*{d.name}*  {d.ready}/{d.replicas} ready · age {age(d.created)} · "
            f"`{_clip(', '.join(d.images), 80)}`")


def test_message(name: str, prompt: str, answer: str, *, latency_s: float, prompt_tokens: int | None,
                 completion_tokens: int | None, url: str, image_bytes: int | None = None,
                 sandbox: bool = False) -> Message:
    """The answer of `/infer test`; an image model's answer is the image, shared beside this."""
    if image_bytes is not None:
        tokens = f"{image_bytes / 1024:.0f} KiB image"
        answer = f"(an image, {image_bytes / 1024:.0f} KiB, shared in the channel)"
    else:
        tokens = (f"{prompt_tokens if prompt_tokens is not None else '?'} prompt + "
                  f"{completion_tokens if completion_tokens is not None else '?'} completion tokens")
    body = f"*Prompt:* {escape(_clip(prompt, 500))}\n*Answer:*\n{escape(_clip(answer, 2500))}"
    return _render(f"{name}: {_clip(answer, 200)}", [
        HeaderBlock(text=_clip(f"Test of {name}", 150)),
        SectionBlock(text=_md(body)),
        ContextBlock(elements=[_md(f"{latency_s * 1000:.0f} ms · {tokens} · {escape(url)}")]),
    ], sandbox)
