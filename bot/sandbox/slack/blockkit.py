"""Block Kit validation: the limits Slack enforces server-side, so rendering bugs fail locally instead
of in production (https://docs.slack.dev/reference/block-kit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.sandbox.slack.records import JSONDict

MESSAGE_MAX_BLOCKS = 50
VIEW_MAX_BLOCKS = 100
SECTION_TEXT_MAX = 3000
SECTION_FIELDS_MAX = 10
SECTION_FIELD_TEXT_MAX = 2000
HEADER_TEXT_MAX = 150
MARKDOWN_BLOCK_TEXT_MAX = 12000
BUTTON_TEXT_MAX = 75
BUTTON_VALUE_MAX = 2000
BUTTON_URL_MAX = 3000
ACTION_ID_MAX = 255
BLOCK_ID_MAX = 255
ACTIONS_ELEMENTS_MAX = 25
CONTEXT_ELEMENTS_MAX = 10
VIEW_TITLE_MAX = 24
INPUT_LABEL_MAX = 2000
PLACEHOLDER_MAX = 150
OPTIONS_MAX = 100
OPTION_TEXT_MAX = 75
OPTION_VALUE_MAX = 150
OPTION_GROUP_LABEL_MAX = 75
SELECTS = ("static_select", "external_select", "conversations_select", "channels_select", "users_select")
VIEW_PRIVATE_METADATA_MAX = 3000
CALLBACK_ID_MAX = 255
MESSAGE_TEXT_MAX = 40000
# Slack answers msg_blocks_too_long somewhere around 12-13k characters of block text, depending
# on the block mix (it is undocumented). Erring low makes tests flag a message before Slack would.
MESSAGE_TEXT_BUDGET = 12000


def block_kit_errors(blocks: Any, *, surface: str = "message") -> list[str]:
    """Return Slack-style ``[ERROR] … [json-pointer:…]`` messages for ``blocks``; empty if valid.

    ``surface`` is ``"message"`` (50 blocks) or ``"view"`` (100 blocks, pointers under /view).
    Only the limits Slack enforces that our renderers can plausibly break are checked.
    """
    root = "/view/blocks" if surface == "view" else "/blocks"
    max_blocks = VIEW_MAX_BLOCKS if surface == "view" else MESSAGE_MAX_BLOCKS
    if not isinstance(blocks, list):
        return [f"[ERROR] must be an array [json-pointer:{root}]"]
    errors: list[str] = []
    if len(blocks) > max_blocks:
        errors.append(_too_many(max_blocks, root))
    seen_block_ids: set[str] = set()
    for index, block in enumerate(blocks):
        pointer = f"{root}/{index}"
        if not isinstance(block, dict) or not isinstance(block.get("type"), str):
            errors.append(f"[ERROR] missing required field: type [json-pointer:{pointer}]")
            continue
        block_id = block.get("block_id")
        if block_id is not None:
            if not isinstance(block_id, str) or len(block_id) > BLOCK_ID_MAX:
                errors.append(_too_long(BLOCK_ID_MAX, f"{pointer}/block_id"))
            elif block_id in seen_block_ids:
                # Slack refuses repeated block ids in one message; Bolt routes actions by them.
                errors.append(f"[ERROR] duplicate block_id {block_id!r} [json-pointer:{pointer}/block_id]")
            else:
                seen_block_ids.add(block_id)
        if block["type"] == "input" and surface != "view":
            # Slack takes input blocks in modals and Home tabs only (chat.postMessage: invalid_blocks).
            errors.append(f"[ERROR] input blocks are only allowed in views [json-pointer:{pointer}/type]")
        check = _BLOCK_CHECKS.get(block["type"])
        if check is not None:
            errors.extend(check(block, pointer))
    return errors


def _check_section(block: JSONDict, pointer: str) -> list[str]:
    errors: list[str] = []
    has_text = "text" in block and block["text"] is not None
    fields = block.get("fields")
    if not has_text and not fields:
        errors.append(f"[ERROR] must provide either text or fields [json-pointer:{pointer}]")
    if has_text:
        errors.extend(_check_text(block["text"], f"{pointer}/text", SECTION_TEXT_MAX))
    if fields is not None:
        if not isinstance(fields, list):
            errors.append(f"[ERROR] must be an array [json-pointer:{pointer}/fields]")
        else:
            if len(fields) > SECTION_FIELDS_MAX:
                errors.append(_too_many(SECTION_FIELDS_MAX, f"{pointer}/fields"))
            for i, item in enumerate(fields):
                errors.extend(_check_text(item, f"{pointer}/fields/{i}", SECTION_FIELD_TEXT_MAX))
    accessory = block.get("accessory")
    if isinstance(accessory, dict):
        errors.extend(_check_element(accessory, f"{pointer}/accessory"))
    return errors


def _check_header(block: JSONDict, pointer: str) -> list[str]:
    return _check_text(block.get("text"), f"{pointer}/text", HEADER_TEXT_MAX, plain_only=True)


def _check_actions(block: JSONDict, pointer: str) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        return [f"[ERROR] must provide at least 1 item [json-pointer:{pointer}/elements]"]
    errors: list[str] = []
    if len(elements) > ACTIONS_ELEMENTS_MAX:
        errors.append(_too_many(ACTIONS_ELEMENTS_MAX, f"{pointer}/elements"))
    seen_action_ids: set[str] = set()
    for i, element in enumerate(elements):
        element_pointer = f"{pointer}/elements/{i}"
        if not isinstance(element, dict):
            errors.append(f"[ERROR] must be an object [json-pointer:{element_pointer}]")
            continue
        errors.extend(_check_element(element, element_pointer))
        action_id = element.get("action_id")
        if isinstance(action_id, str):
            if action_id in seen_action_ids:
                errors.append(
                    f"[ERROR] duplicate action_id {action_id!r} [json-pointer:{element_pointer}/action_id]"
                )
            seen_action_ids.add(action_id)
    return errors


def _check_context(block: JSONDict, pointer: str) -> list[str]:
    elements = block.get("elements")
    if not isinstance(elements, list) or not elements:
        return [f"[ERROR] must provide at least 1 item [json-pointer:{pointer}/elements]"]
    if len(elements) > CONTEXT_ELEMENTS_MAX:
        return [_too_many(CONTEXT_ELEMENTS_MAX, f"{pointer}/elements")]
    return []


def _check_markdown(block: JSONDict, pointer: str) -> list[str]:
    text = block.get("text")
    if not isinstance(text, str) or not text:
        return [f"[ERROR] must be more than 0 characters [json-pointer:{pointer}/text]"]
    if len(text) > MARKDOWN_BLOCK_TEXT_MAX:
        return [_too_long(MARKDOWN_BLOCK_TEXT_MAX, f"{pointer}/text")]
    return []


def _check_input(block: JSONDict, pointer: str) -> list[str]:
    errors = _check_text(block.get("label"), f"{pointer}/label", INPUT_LABEL_MAX, plain_only=True)
    if block.get("hint") is not None:
        errors.extend(_check_text(block["hint"], f"{pointer}/hint", INPUT_LABEL_MAX, plain_only=True))
    element = block.get("element")
    if not isinstance(element, dict) or not isinstance(element.get("type"), str):
        return [*errors, f"[ERROR] missing required field: element [json-pointer:{pointer}/element]"]
    return errors + _check_element(element, f"{pointer}/element")


def _check_options(options: Any, pointer: str) -> tuple[list[str], list[JSONDict]]:
    if not isinstance(options, list) or not options:
        return [f"[ERROR] must provide at least 1 item [json-pointer:{pointer}]"], []
    errors = [_too_many(OPTIONS_MAX, pointer)] if len(options) > OPTIONS_MAX else []
    valid: list[JSONDict] = []
    for i, item in enumerate(options):
        if not isinstance(item, dict):
            errors.append(f"[ERROR] must be an object [json-pointer:{pointer}/{i}]")
            continue
        errors.extend(_check_text(item.get("text"), f"{pointer}/{i}/text", OPTION_TEXT_MAX, plain_only=True))
        value = item.get("value")
        if not isinstance(value, str) or not value:
            errors.append(f"[ERROR] missing required field: value [json-pointer:{pointer}/{i}/value]")
        elif len(value) > OPTION_VALUE_MAX:
            errors.append(_too_long(OPTION_VALUE_MAX, f"{pointer}/{i}/value"))
        valid.append(item)
    return errors, valid


def _check_select(element: JSONDict, pointer: str) -> list[str]:
    errors: list[str] = []
    if element.get("placeholder") is not None:
        errors.extend(_check_text(element["placeholder"], f"{pointer}/placeholder", PLACEHOLDER_MAX, plain_only=True))
    if element["type"] != "static_select":
        return errors
    options, groups = element.get("options"), element.get("option_groups")
    if (options is None) == (groups is None):
        return [*errors, f"[ERROR] must provide exactly one of options or option_groups [json-pointer:{pointer}]"]
    offered: list[JSONDict] = []
    if options is not None:
        problems, offered = _check_options(options, f"{pointer}/options")
        errors.extend(problems)
    elif not isinstance(groups, list) or not groups:
        errors.append(f"[ERROR] must provide at least 1 item [json-pointer:{pointer}/option_groups]")
    else:
        if len(groups) > OPTIONS_MAX:
            errors.append(_too_many(OPTIONS_MAX, f"{pointer}/option_groups"))
        for i, group in enumerate(groups):
            at = f"{pointer}/option_groups/{i}"
            if not isinstance(group, dict):
                errors.append(f"[ERROR] must be an object [json-pointer:{at}]")
                continue
            errors.extend(_check_text(group.get("label"), f"{at}/label", OPTION_GROUP_LABEL_MAX, plain_only=True))
            problems, valid = _check_options(group.get("options"), f"{at}/options")
            errors.extend(problems)
            offered.extend(valid)
    initial = element.get("initial_option")
    if initial is not None and not any(o.get("value") == (initial or {}).get("value") for o in offered):
        # Slack refuses an initial_option that is not one of the select's options.
        errors.append(f"[ERROR] must match one of the options [json-pointer:{pointer}/initial_option]")
    return errors


def _check_element(element: JSONDict, pointer: str) -> list[str]:
    errors: list[str] = []
    if element.get("type") in SELECTS:
        errors.extend(_check_select(element, pointer))
    action_id = element.get("action_id")
    if isinstance(action_id, str) and len(action_id) > ACTION_ID_MAX:
        errors.append(_too_long(ACTION_ID_MAX, f"{pointer}/action_id"))
    if element.get("type") == "button":
        errors.extend(_check_text(element.get("text"), f"{pointer}/text", BUTTON_TEXT_MAX, plain_only=True))
        value = element.get("value")
        if isinstance(value, str) and len(value) > BUTTON_VALUE_MAX:
            errors.append(_too_long(BUTTON_VALUE_MAX, f"{pointer}/value"))
        url = element.get("url")
        if isinstance(url, str) and len(url) > BUTTON_URL_MAX:
            errors.append(_too_long(BUTTON_URL_MAX, f"{pointer}/url"))
    return errors


def _check_text(obj: Any, pointer: str, max_len: int, *, plain_only: bool = False) -> list[str]:
    allowed = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if not isinstance(obj, dict) or obj.get("type") not in allowed:
        return [f"[ERROR] must be a {' or '.join(allowed)} text object [json-pointer:{pointer}]"]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        # Slack rejects empty text, a classic result of rendering an empty value.
        return [f"[ERROR] must be more than 0 characters [json-pointer:{pointer}/text]"]
    if len(text) > max_len:
        return [_too_long(max_len, f"{pointer}/text")]
    return []


_BLOCK_CHECKS: dict[str, Callable[[JSONDict, str], list[str]]] = {
    "section": _check_section,
    "header": _check_header,
    "actions": _check_actions,
    "context": _check_context,
    "markdown": _check_markdown,
    "input": _check_input,
}


def _too_long(max_len: int, pointer: str) -> str:
    return f"[ERROR] must be less than {max_len + 1} characters [json-pointer:{pointer}]"


def _too_many(max_items: int, pointer: str) -> str:
    return f"[ERROR] no more than {max_items} items allowed [json-pointer:{pointer}]"


def text_length(value: Any) -> int:
    """Characters of every ``text`` string inside a Block Kit structure."""
    if isinstance(value, list):
        return sum(text_length(item) for item in value)
    if isinstance(value, dict):
        total = 0
        for key, item in value.items():
            total += len(item) if key == "text" and isinstance(item, str) else text_length(item)
        return total
    return 0


def view_errors(view: Any) -> list[str]:
    if not isinstance(view, dict):
        return ["[ERROR] missing required field: view [json-pointer:/view]"]
    errors: list[str] = []
    if view.get("type") not in ("modal", "home"):
        errors.append("[ERROR] must be one of modal, home [json-pointer:/view/type]")
    if view.get("type") == "modal" or "title" in view:
        errors.extend(_check_text(view.get("title"), "/view/title", VIEW_TITLE_MAX, plain_only=True))
    for key in ("submit", "close"):
        if view.get(key) is not None:
            errors.extend(_check_text(view[key], f"/view/{key}", VIEW_TITLE_MAX, plain_only=True))
    if len(str(view.get("private_metadata", ""))) > VIEW_PRIVATE_METADATA_MAX:
        errors.append(_too_long(VIEW_PRIVATE_METADATA_MAX, "/view/private_metadata"))
    if len(str(view.get("callback_id", ""))) > CALLBACK_ID_MAX:
        errors.append(_too_long(CALLBACK_ID_MAX, "/view/callback_id"))
    errors.extend(block_kit_errors(view.get("blocks", []), surface="view"))
    return errors
