"""The local Slack's modals: what it refuses in a view (as Slack does), views.update with a hash, and the
shortcut, block_actions-in-a-view and block_suggestion payloads it signs for the tests."""

from __future__ import annotations

import json
from urllib.parse import parse_qs

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from bot.sandbox.slack.blockkit import block_kit_errors, view_errors
from bot.sandbox.slack.webapi import LocalSlack, SlackRequests
from tests.support.slack import LOCAL_SECRET as SECRET


def _opt(value: str, text: str | None = None) -> dict:
    return {"text": {"type": "plain_text", "text": text or value}, "value": value}


def _modal(options: list[dict], initial: dict | None = None) -> dict:
    select: dict = {"type": "static_select", "action_id": "pick",
                    "option_groups": [{"label": {"type": "plain_text", "text": "Group"}, "options": options}]}
    if initial is not None:
        select["initial_option"] = initial
    return {"type": "modal", "callback_id": "form", "title": {"type": "plain_text", "text": "Form"},
            "blocks": [{"type": "input", "block_id": "choice", "dispatch_action": True,
                        "label": {"type": "plain_text", "text": "Choice"}, "element": select}]}


def _payload(body: bytes) -> dict:
    return json.loads(parse_qs(body.decode())["payload"][0])


def test_views_are_refused_where_slack_refuses_them() -> None:
    assert view_errors(_modal([_opt("a"), _opt("b")], _opt("b"))) == []
    too_many = view_errors(_modal([_opt(f"o{i}") for i in range(101)]))
    assert any("no more than 100 items" in e for e in too_many)
    assert any("less than 76 characters" in e for e in view_errors(_modal([_opt("a", "x" * 76)])))
    assert any("must match one of the options" in e for e in view_errors(_modal([_opt("a")], _opt("z"))))
    input_block = _modal([_opt("a")])["blocks"]
    assert any("only allowed in views" in e for e in block_kit_errors(input_block))  # not in a message


def test_views_update_needs_the_current_hash(slack: LocalSlack, client: WebClient) -> None:
    trigger = slack.trigger_id()
    opened = client.views_open(trigger_id=trigger, view=_modal([_opt("a")]))["view"]
    updated = client.views_update(view_id=opened["id"], hash=opened["hash"], view=_modal([_opt("a"), _opt("b")]))
    assert len(updated["view"]["blocks"][0]["element"]["option_groups"][0]["options"]) == 2
    with pytest.raises(SlackApiError) as stale:
        client.views_update(view_id=opened["id"], hash=opened["hash"] + "x", view=_modal([_opt("c")]))
    assert stale.value.response["error"] == "hash_conflict"


def test_shortcut_payload_has_a_trigger_and_no_channel(signer: SlackRequests, slack: LocalSlack,
                                                       client: WebClient) -> None:
    body, headers = signer.shortcut("infer_deploy", user_id="U1")
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    payload = _payload(body)
    assert payload["type"] == "shortcut" and payload["callback_id"] == "infer_deploy"
    assert payload["user"]["id"] == "U1" and "channel" not in payload and "response_url" not in payload
    assert client.views_open(trigger_id=payload["trigger_id"], view=_modal([_opt("a")]))["ok"]


def test_a_select_in_a_view_and_a_suggestion_carry_the_view(signer: SlackRequests, slack: LocalSlack,
                                                             client: WebClient) -> None:
    opened = client.views_open(trigger_id=slack.trigger_id(), view=_modal([_opt("a"), _opt("b", "Bee")]))["view"]
    payload = _payload(signer.view_select(opened["id"], "pick", "b", user_id="U1")[0])
    assert payload["type"] == "block_actions" and payload["container"] == {"type": "view", "view_id": opened["id"]}
    action = payload["actions"][0]
    assert (action["block_id"], action["type"], action["selected_option"]["text"]["text"]) == (
        "choice", "static_select", "Bee")
    assert payload["view"]["hash"] == opened["hash"]
    assert payload["view"]["state"]["values"]["choice"]["pick"]["selected_option"]["value"] == "b"

    suggestion = _payload(signer.block_suggestion(opened["id"], "pick", "be", user_id="U1")[0])
    assert suggestion["type"] == "block_suggestion" and suggestion["value"] == "be"
    assert (suggestion["action_id"], suggestion["block_id"]) == ("pick", "choice")
    assert suggestion["view"]["id"] == opened["id"]
