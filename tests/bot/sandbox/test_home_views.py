"""views.publish on the local Slack and the App Home requests SlackRequests signs, driven by the real
slack_sdk client (and Bolt) over HTTP."""

from __future__ import annotations

import json
import threading
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.signature import SignatureVerifier

from bot.sandbox.slack.webapi import LocalSlack, SlackRequests
from tests.support.slack import LOCAL_SECRET as SECRET
from tests.support.slack import LOCAL_TOKEN as TOKEN


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def home(*blocks: dict) -> dict:
    return {"type": "home", "blocks": list(blocks)}


def error_of(call) -> str:
    with pytest.raises(SlackApiError) as caught:
        call()
    return str(caught.value.response["error"])


def test_publish_answers_like_slack_and_each_user_keeps_their_own_tab(slack: LocalSlack, client: WebClient):
    first = client.views_publish(user_id="U1", view=home(section("hello")))
    assert first["ok"] and first["view"]["type"] == "home" and first["view"]["blocks"] == [section("hello")]
    again = client.views_publish(user_id="U1", view=home(section("again")))
    assert again["view"]["id"] == first["view"]["id"]  # one Home tab per user, replaced in place
    client.views_publish(user_id="U2", view=home(section("other")))
    tabs = slack.home_views
    assert tabs["U1"]["blocks"] == [section("again")] and tabs["U2"]["blocks"] == [section("other")]
    assert tabs["U2"]["id"] != tabs["U1"]["id"]
    assert slack.views == {}  # not a modal
    assert "user_id=U1" in slack.calls_to("views.publish")[0].describe()


def test_publish_enforces_home_views_limits(slack: LocalSlack, client: WebClient):
    assert client.views_publish(user_id="U1", view=home(*[section(f"{i}") for i in range(100)]))["ok"]
    assert error_of(lambda: client.views_publish(user_id="U1", view=home(*[section(f"{i}") for i in range(101)]))) \
        == "invalid_arguments"
    assert "[json-pointer:/view/blocks]" in str(slack.calls_to("views.publish")[-1].response)
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "x"}, "blocks": []}
    assert error_of(lambda: client.views_publish(user_id="U1", view=modal)) == "invalid_arguments"
    assert error_of(lambda: client.views_publish(user_id="", view=home())) == "invalid_arguments"
    big = home(*[section("x" * 2900) for _ in range(90)])
    assert error_of(lambda: client.views_publish(user_id="U1", view=big)) == "view_too_large"
    stale = client.views_publish(user_id="U1", view=home(section("now")))["view"]["hash"]
    client.views_publish(user_id="U1", view=home(section("newer")))
    assert error_of(lambda: client.views_publish(user_id="U1", view=home(), hash=stale)) == "hash_conflict"
    slack.home_tab_enabled = False
    assert error_of(lambda: client.views_publish(user_id="U1", view=home())) == "not_enabled"
    assert slack.home_views["U1"]["blocks"] == [section("newer")]  # refused publishes changed nothing


def test_app_home_opened_is_a_signed_event_callback_carrying_the_tab(signer: SlackRequests, client: WebClient):
    body, headers = signer.app_home_opened(user_id="U1")
    assert headers["Content-Type"] == "application/json"
    verifier = SignatureVerifier(SECRET)
    assert verifier.is_valid(body=body, timestamp=headers["X-Slack-Request-Timestamp"],
                             signature=headers["X-Slack-Signature"])
    envelope = json.loads(body)
    assert envelope["type"] == "event_callback" and envelope["event_id"].startswith("Ev")
    event = envelope["event"]
    assert (event["type"], event["user"], event["tab"]) == ("app_home_opened", "U1", "home")
    assert "view" not in event  # nothing published yet

    published = client.views_publish(user_id="U1", view=home(section("tab")))["view"]
    event = json.loads(signer.app_home_opened(user_id="U1")[0])["event"]
    assert event["view"]["id"] == published["id"] and event["view"]["blocks"] == [section("tab")]
    assert "view" not in json.loads(signer.app_home_opened(user_id="U1", tab="messages")[0])["event"]


def test_a_home_tab_click_names_the_view_and_no_channel(signer: SlackRequests, client: WebClient):
    button = {"type": "button", "action_id": "op_approve", "value": "7", "text": {"type": "plain_text", "text": "Ok"}}
    view = client.views_publish(user_id="U1", view=home({"type": "actions", "block_id": "decide-7",
                                                         "elements": [button]}))["view"]
    body, _ = signer.home_action("op_approve", "7", user_id="U1")
    payload = json.loads(parse_qs(body.decode())["payload"][0])
    assert payload["type"] == "block_actions" and payload["container"] == {"type": "view", "view_id": view["id"]}
    assert payload["view"]["type"] == "home" and "channel" not in payload and "response_url" not in payload
    assert payload["actions"][0]["block_id"] == "decide-7" and payload["actions"][0]["value"] == "7"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


def test_bolt_routes_the_event_and_its_publish_lands_here(slack: LocalSlack, signer: SlackRequests):
    app = App(signing_secret=SECRET, client=WebClient(token=TOKEN, base_url=slack.api_url),
              process_before_response=True)

    @app.event("app_home_opened")
    def opened(event, client) -> None:
        client.views_publish(user_id=event["user"], view=home(section(f"hi <@{event['user']}>")))

    server = make_server("127.0.0.1", 0, SlackRequestHandler(app), WSGIServer, _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        body, headers = signer.app_home_opened(user_id="U9")
        url = f"http://127.0.0.1:{server.server_port}/slack/events"
        assert requests.post(url, data=body, headers=headers, timeout=5).status_code == 200
        assert slack.home_views["U9"]["blocks"] == [section("hi <@U9>")]
        forged = dict(headers, **{"X-Slack-Signature": "v0=" + "0" * 64})
        assert requests.post(url, data=body, headers=forged, timeout=5).status_code == 401
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
