"""The deploy modal, rendered: preset (grouped by framework), cluster, namespace, name, replicas, instance
(each with whether the preset fits and its $/hour) and, from the global shortcut, the channel.

Pure: the caller reads the catalog and the fit estimates (handlers/deploy_modal.py); nothing here does I/O.
Block ids are what `response_action: errors` names, so they are constants the handler shares.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ops.catalog import Preset

CALLBACK = "infer_deploy_submit"
PRESET_ACTION = "deploy_modal_preset"  # dispatches block_actions (views.update) and, external, block_suggestion
PRESET, CLUSTER, NAMESPACE, NAME, REPLICAS, INSTANCE, CHANNEL = (
    "preset", "cluster", "namespace", "name", "replicas", "instance", "channel")
VALUE = "value"
# Slack takes at most 100 options in a static select (and 100 per option group): beyond that the
# presets are served by the block_suggestion handler instead.
STATIC_MAX = 100
OPTION_TEXT_MAX = 75
TITLE = "Deploy a model"


@dataclass(frozen=True)
class InstanceChoice:
    """One instance type as the instance select shows it; `fits` None: no preset chosen yet."""

    name: str
    hourly: float | None  # one replica of the preset (or one instance, before a preset is chosen)
    fits: bool | None


def _text(text: str, limit: int = OPTION_TEXT_MAX) -> dict[str, Any]:
    return {"type": "plain_text", "text": text if len(text) <= limit else text[: limit - 1] + "…"}


def option(text: str, value: str) -> dict[str, Any]:
    return {"text": _text(text), "value": value}


def preset_option(preset: Preset) -> dict[str, Any]:
    return option(f"{preset.id} · {preset.size}", preset.id)


def preset_groups(presets: Sequence[Preset], query: str = "") -> list[dict[str, Any]]:
    """Presets grouped by framework (Slack's option_groups), those matching `query` only, at most 100 each."""
    wanted = query.strip().lower()
    groups: dict[str, list[dict[str, Any]]] = {}
    for preset in sorted(presets, key=lambda p: (p.framework, p.id)):
        if wanted and wanted not in preset.id and wanted not in preset.model.lower():
            continue
        groups.setdefault(preset.framework, []).append(preset_option(preset))
    return [{"label": _text(framework), "options": options[:STATIC_MAX]}
            for framework, options in list(groups.items())[:STATIC_MAX]]


def _money(value: float | None) -> str:
    return f"${value:,.2f}/h" if value is not None else "no price"


def instance_option(choice: InstanceChoice) -> dict[str, Any]:
    mark = {True: "✅ ", False: "✖ ", None: ""}[choice.fits]
    suffix = " · does not fit" if choice.fits is False else ""
    return option(f"{mark}{choice.name} · {_money(choice.hourly)}{suffix}", choice.name)


def instance_groups(choices: Sequence[InstanceChoice]) -> list[dict[str, Any]]:
    """Those that fit first, each group by price: the cheapest that fits is at the top."""
    order = sorted(choices, key=lambda c: (c.hourly is None, c.hourly or 0.0, c.name))
    if all(c.fits is None for c in order):
        return [{"label": _text("Instance types"), "options": [instance_option(c) for c in order][:STATIC_MAX]}]
    fit = [instance_option(c) for c in order if c.fits]
    misfit = [instance_option(c) for c in order if not c.fits]
    return [group for group in ({"label": _text("Fits"), "options": fit[:STATIC_MAX]},
                                {"label": _text("Does not fit"), "options": misfit[:STATIC_MAX]}) if group["options"]]


def _input(block_id: str, label: str, element: dict[str, Any], *, optional: bool = False, hint: str = "",
           dispatch: bool = False) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "input", "block_id": block_id, "label": _text(label, 2000), "element": element,
                             "optional": optional}
    if hint:
        block["hint"] = _text(hint, 2000)
    if dispatch:
        block["dispatch_action"] = True
    return block


def _plain(placeholder: str, initial: str = "") -> dict[str, Any]:
    element: dict[str, Any] = {"type": "plain_text_input", "action_id": VALUE, "placeholder": _text(placeholder, 150)}
    if initial:
        element["initial_value"] = initial
    return element


@dataclass(frozen=True)
class ModalState:
    """What the modal shows; `preset` None until one is chosen."""

    presets: Sequence[Preset]
    clusters: Sequence[str]
    default_namespace: str
    instances: Sequence[InstanceChoice]
    preset: Preset | None = None
    cluster: str | None = None
    channel: str | None = None  # the command's; None (the shortcut): a channel select is shown
    command: str = "/infer"


def deploy_view(state: ModalState) -> dict[str, Any]:
    """The modal's view (views.open and views.update). `private_metadata` carries the channel the card goes to."""
    chosen = state.preset
    preset_element: dict[str, Any] = {"type": "static_select", "action_id": PRESET_ACTION,
                                      "placeholder": _text("Choose a preset", 150)}
    if len(state.presets) > STATIC_MAX:
        preset_element = {"type": "external_select", "action_id": PRESET_ACTION, "min_query_length": 0,
                          "placeholder": _text("Type to search the presets", 150)}
    else:
        preset_element["option_groups"] = preset_groups(state.presets)
    if chosen is not None:
        preset_element["initial_option"] = preset_option(chosen)

    cluster = state.cluster or (state.clusters[0] if state.clusters else "")
    cluster_options = [option(name, name) for name in state.clusters][:STATIC_MAX]
    cluster_element: dict[str, Any] = {"type": "static_select", "action_id": VALUE, "options": cluster_options,
                                       "placeholder": _text("Cluster", 150)}
    if cluster in state.clusters:
        cluster_element["initial_option"] = option(cluster, cluster)

    instance_element: dict[str, Any] = {
        "type": "static_select", "action_id": VALUE, "option_groups": instance_groups(state.instances),
        "placeholder": _text(f"The preset's own ({chosen.instance})" if chosen else "The preset's own", 150)}

    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": (
            "The same checks as the typed command (`" + state.command + " deploy <preset> …`) run when you "
            "submit; the approval card is posted in the channel.")}},
        _input(PRESET, "Preset", preset_element, dispatch=True,
               hint=(f"{chosen.model} · {chosen.framework} · default instance {chosen.instance}"
                     if chosen else "Choosing one shows which instance types it fits, and their price")),
        _input(CLUSTER, "Cluster", cluster_element),
        _input(NAMESPACE, "Namespace", _plain(state.default_namespace or "default"), optional=True),
        _input(NAME, "Name", _plain(chosen.service_name if chosen else "the preset's service name"), optional=True),
        _input(REPLICAS, "Replicas", _plain("the preset's replicas"), optional=True),
        _input(INSTANCE, "Instance type", instance_element, optional=True,
               hint="✅ fits · ✖ does not fit; the price is one replica, on demand" if chosen
               else "Prices are one instance, on demand"),
    ]
    if state.channel is None:
        blocks.append(_input(CHANNEL, "Post the approval card in", {
            "type": "conversations_select", "action_id": VALUE, "default_to_current_conversation": True,
            "filter": {"include": ["public", "private"], "exclude_bot_users": True},
            "placeholder": _text("Channel", 150)}))
    return {"type": "modal", "callback_id": CALLBACK, "title": _text(TITLE, 24), "submit": _text("Propose", 24),
            "close": _text("Cancel", 24), "private_metadata": json.dumps({"channel": state.channel or ""}),
            "blocks": blocks}


def submitted(view: dict[str, Any]) -> dict[str, str]:
    """The values of a view_submission (or of a view in block_actions), by block id; empty ones left out."""
    values = (view.get("state") or {}).get("values") or {}
    out: dict[str, str] = {}
    for block_id, actions in values.items():
        for element in (actions or {}).values():
            if not isinstance(element, dict):
                continue
            picked = ((element.get("selected_option") or {}).get("value") or element.get("selected_conversation")
                      or element.get("value") or "")
            if isinstance(picked, str) and picked.strip():
                out[str(block_id)] = picked.strip()
    return out


def command_text(values: dict[str, str]) -> str:
    """The typed command the form is equivalent to, in Slack's wire encoding (the parser decodes it)."""
    words = ["deploy", _quote(values.get(PRESET, ""))]
    for key in (NAME, REPLICAS, NAMESPACE, INSTANCE, CLUSTER):
        if values.get(key):
            words.append(f"{key}={_quote(values[key])}")
    return " ".join(words)


def _quote(value: str) -> str:
    # Slack escapes these three in a slash command's text; the parser decodes them.
    return shlex.quote(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
