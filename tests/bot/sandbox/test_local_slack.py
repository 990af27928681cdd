"""LocalSlack and SlackRequests, driven by the real slack_sdk clients (and Bolt) over HTTP."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests
from slack_bolt import App
from slack_bolt.adapter.wsgi import SlackRequestHandler
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler
from slack_sdk.signature import SignatureVerifier
from slack_sdk.webhook import WebhookClient

from bot.sandbox.slack.webapi import Call, LocalSlack, SlackRequests, block_kit_errors
from tests.support.slack import LOCAL_SECRET as SECRET
from tests.support.slack import LOCAL_TOKEN as TOKEN

TS_PATTERN = re.compile(r"^\d{10}\.\d{6}$")



def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def button(action_id: str, value: str, text: str = "Go") -> dict:
    return {
        "type": "button",
        "action_id": action_id,
        "value": value,
        "text": {"type": "plain_text", "text": text},
    }


def payload_of(body: bytes) -> dict:
    return json.loads(parse_qs(body.decode())["payload"][0])


# -- Web API -----------------------------------------------------------------------------------


def test_post_then_update_shows_the_update(slack: LocalSlack, client: WebClient) -> None:
    posted = client.chat_postMessage(channel="C1", text="pending", blocks=[section("*pending*")])
    assert posted["ok"] and posted["channel"] == "C1"
    assert TS_PATTERN.match(posted["ts"])
    assert posted["message"]["blocks"] == [section("*pending*")]

    updated = client.chat_update(channel="C1", ts=posted["ts"], text="approved", blocks=[section("done")])
    assert updated["ts"] == posted["ts"] and updated["message"]["text"] == "approved"

    [message] = slack.messages("C1")
    assert message["ts"] == posted["ts"]
    assert message["text"] == "approved" and message["blocks"] == [section("done")]
    assert message["user"] == "UBOT" and "edited" in message
    assert [c.method for c in slack.calls] == ["chat.postMessage", "chat.update"]
    assert slack.calls_to("chat.update")[0].params["blocks"] == [section("done")]


def test_update_keeps_blocks_it_leaves_out_and_empty_blocks_drop_them(
    slack: LocalSlack, client: WebClient
) -> None:
    ts = client.chat_postMessage(channel="C1", text="t", blocks=[section("b")])["ts"]
    client.chat_update(channel="C1", ts=ts, text="t2")
    assert slack.messages("C1")[0]["blocks"] == [section("b")]
    client.chat_update(channel="C1", ts=ts, text="t3", blocks=[])
    assert "blocks" not in slack.messages("C1")[0]


def test_update_and_delete_of_unknown_message_fail(slack: LocalSlack, client: WebClient) -> None:
    with pytest.raises(SlackApiError) as update_error:
        client.chat_update(channel="C1", ts="1.000001", text="x")
    assert update_error.value.response["error"] == "message_not_found"

    ts = client.chat_postMessage(channel="C1", text="bye")["ts"]
    assert client.chat_delete(channel="C1", ts=ts)["ts"] == ts
    assert slack.messages("C1") == []
    with pytest.raises(SlackApiError, match="message_not_found"):
        client.chat_delete(channel="C1", ts=ts)


def test_timestamps_are_unique_and_increasing_under_concurrency(slack: LocalSlack) -> None:
    stamps: list[str] = []

    def post(n: int) -> None:
        local = WebClient(token=TOKEN, base_url=slack.api_url)
        stamps.extend(local.chat_postMessage(channel="C9", text=f"m{i}")["ts"] for i in range(n))

    threads = [threading.Thread(target=post, args=(5,)) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(stamps)) == 30
    listed = [m["ts"] for m in slack.messages("C9")]
    assert listed == sorted(listed, key=float)
    arrivals = [c.at for c in slack.calls]
    assert arrivals == sorted(arrivals)


def test_thread_replies(slack: LocalSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="card")["ts"]
    first = client.chat_postMessage(channel="C1", thread_ts=parent, text="step 1")["ts"]
    client.chat_postMessage(channel="C2", text="elsewhere")
    second = client.chat_postMessage(channel="C1", thread_ts=parent, text="step 2")["ts"]

    assert [(m["ts"], m["text"]) for m in slack.thread("C1", parent)] == [
        (first, "step 1"),
        (second, "step 2"),
    ]
    parent_message = slack.messages("C1")[0]
    assert parent_message["thread_ts"] == parent and parent_message["reply_count"] == 2
    assert all(m["thread_ts"] == parent for m in slack.messages("C1")[1:])


def test_invalid_and_missing_token(slack: LocalSlack) -> None:
    with pytest.raises(SlackApiError) as wrong:
        WebClient(token="xoxb-wrong", base_url=slack.api_url).chat_postMessage(channel="C1", text="x")
    assert wrong.value.response.status_code == 200
    assert wrong.value.response["error"] == "invalid_auth"

    with pytest.raises(SlackApiError, match="not_authed"):
        WebClient(base_url=slack.api_url).auth_test()
    assert slack.messages("C1") == []


def test_form_body_with_token_field_and_json_string_blocks(slack: LocalSlack) -> None:
    blocks = [section("from a form")]
    response = requests.post(
        f"{slack.api_url}chat.postMessage",
        data={"token": TOKEN, "channel": "C1", "text": "t", "blocks": json.dumps(blocks)},
        timeout=5,
    )
    assert response.status_code == 200 and response.json()["ok"] is True
    assert slack.calls[0].params["blocks"] == blocks
    assert slack.messages("C1")[0]["blocks"] == blocks


def test_multipart_body_as_sent_by_sdk_data_argument(slack: LocalSlack, client: WebClient) -> None:
    response = client.api_call(
        "chat.postMessage", data={"channel": "C1", "text": "m", "blocks": json.dumps([section("b")])}
    )
    assert response["ok"]
    assert slack.messages("C1")[0]["blocks"] == [section("b")]


def test_auth_test_and_unknown_method(client: WebClient) -> None:
    me = client.auth_test()
    assert (me["user_id"], me["bot_id"], me["team_id"]) == ("UBOT", "BBOT", "T0001")
    assert me["url"].startswith("https://")

    with pytest.raises(SlackApiError) as error:
        client.api_call("chat.nope")
    assert error.value.response.status_code == 200
    assert error.value.response.data == {"ok": False, "error": "unknown_method"}


def test_rate_limit_is_honoured_by_the_sdk_retry_handler(slack: LocalSlack) -> None:
    retrying = WebClient(token=TOKEN, base_url=slack.api_url)
    retrying.retry_handlers.append(RateLimitErrorRetryHandler(max_retry_count=1))
    slack.rate_limit("chat.postMessage", times=1, retry_after=1)

    assert retrying.chat_postMessage(channel="C1", text="eventually")["ok"]

    limited, accepted = slack.calls_to("chat.postMessage")
    assert (limited.status, limited.response["error"]) == (429, "ratelimited")
    assert accepted.status == 200 and accepted.ok
    assert accepted.at - limited.at >= 1.0
    assert [m["text"] for m in slack.messages("C1")] == ["eventually"]


def test_injected_failures_are_answered_then_cleared(slack: LocalSlack, client: WebClient) -> None:
    slack.fail("auth.test", times=2, status=503)
    for _ in range(2):
        with pytest.raises(SlackApiError) as error:
            client.auth_test()
        assert error.value.response.status_code == 503
    assert client.auth_test()["ok"]
    assert [c.status for c in slack.calls_to("auth.test")] == [503, 503, 200]


def test_per_channel_limit(slack: LocalSlack, client: WebClient) -> None:
    slack.per_channel_limit(2)
    client.chat_postMessage(channel="C1", text="1")
    client.chat_postMessage(channel="C1", text="2")
    with pytest.raises(SlackApiError) as error:
        client.chat_postMessage(channel="C1", text="3")
    assert error.value.response.status_code == 429
    assert int(error.value.response.headers["Retry-After"][0]) >= 1
    client.chat_postMessage(channel="C2", text="other channel has its own budget")

    slack.per_channel_limit(None)
    client.chat_postMessage(channel="C1", text="unlimited again")
    assert [m["text"] for m in slack.messages("C1")] == ["1", "2", "unlimited again"]


def test_files_upload_v2_end_to_end(slack: LocalSlack, client: WebClient) -> None:
    parent = client.chat_postMessage(channel="C1", text="report below")["ts"]
    content = b"model,replicas\nqwen,3\n" * 100
    response = client.files_upload_v2(
        content=content,
        filename="report.csv",
        title="Weekly report",
        channel="C1",
        thread_ts=parent,
        initial_comment="here it is",
    )

    assert response["file"]["title"] == "Weekly report"
    [uploaded] = slack.files
    assert uploaded.id == response["file"]["id"]
    assert uploaded.content == content and uploaded.length == len(content)
    assert uploaded.completed and uploaded.filename == "report.csv"
    assert (uploaded.channel_id, uploaded.thread_ts, uploaded.initial_comment) == ("C1", parent, "here it is")
    [share] = slack.thread("C1", parent)
    assert share["text"] == "here it is" and share["files"][0]["id"] == uploaded.id
    assert [c.method for c in slack.calls][1:] == [
        "files.getUploadURLExternal",
        "upload_url",
        "files.completeUploadExternal",
    ]


@pytest.mark.parametrize(
    ("blocks", "error", "pointer"),
    [
        ([section(f"b{i}") for i in range(51)], "invalid_blocks", "/blocks]"),
        ([section("x" * 3001)], "invalid_blocks", "/blocks/0/text/text]"),
        (
            [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
            "invalid_blocks",
            "/0/text/text]",
        ),
        ([section("")], "invalid_blocks", "/blocks/0/text/text]"),
        (
            [{"type": "actions", "elements": [button("op_approve", "1"), button("op_approve", "2")]}],
            "invalid_blocks",
            "/elements/1/action_id]",
        ),
        ([section("y" * 3000) for _ in range(5)], "msg_blocks_too_long", None),
    ],
    ids=["51-blocks", "section-3001", "header-151", "empty-text", "duplicate-action", "too-long-total"],
)
def test_block_kit_limits_are_enforced(
    slack: LocalSlack, client: WebClient, blocks: list, error: str, pointer: str | None
) -> None:
    with pytest.raises(SlackApiError) as raised:
        client.chat_postMessage(channel="C1", text="t", blocks=blocks)
    assert raised.value.response["error"] == error
    if pointer is not None:
        messages = raised.value.response["response_metadata"]["messages"]
        assert any(m.startswith("[ERROR]") and m.endswith(pointer) for m in messages), messages
    assert slack.messages("C1") == []


def test_block_kit_limits_accept_the_maximums(client: WebClient) -> None:
    at_limits = [{"type": "header", "text": {"type": "plain_text", "text": "h" * 150}}, section("x" * 3000)]
    at_limits += [{"type": "divider"}] * 48
    assert client.chat_postMessage(channel="C1", text="t", blocks=at_limits)["ok"]
    assert block_kit_errors(at_limits) == []
    assert block_kit_errors([{"type": "divider"}] * 100, surface="view") == []


def test_post_without_content_and_without_channel(client: WebClient) -> None:
    with pytest.raises(SlackApiError, match="no_text"), pytest.warns(UserWarning, match="`text` argument"):
        client.chat_postMessage(channel="C1")
    with pytest.raises(SlackApiError, match="channel_not_found"):
        client.chat_postMessage(channel="", text="x")


def test_post_ephemeral(slack: LocalSlack, client: WebClient) -> None:
    response = client.chat_postEphemeral(channel="C1", user="U1", text="only you")
    assert TS_PATTERN.match(response["message_ts"])
    assert [e["text"] for e in slack.ephemerals("C1", user="U1")] == ["only you"]
    assert slack.messages("C1") == []


def test_users_and_usergroups(slack: LocalSlack, client: WebClient) -> None:
    slack.user_groups["S_APPROVERS"] = ["U1", "U2"]
    slack.users["U1"] = {"name": "alice", "profile": {"display_name": "Alice"}}

    assert client.usergroups_users_list(usergroup="S_APPROVERS")["users"] == ["U1", "U2"]
    with pytest.raises(SlackApiError, match="no_such_subteam"):
        client.usergroups_users_list(usergroup="S_NOPE")

    alice = client.users_info(user="U1")["user"]
    assert (alice["id"], alice["name"], alice["profile"]["display_name"]) == ("U1", "alice", "Alice")
    assert alice["profile"]["real_name"]  # synthesized fields survive a partial override
    assert client.users_info(user="U777")["user"]["name"] == "u777"
    assert client.conversations_info(channel="C42")["channel"]["id"] == "C42"


def test_views_open_and_update(slack: LocalSlack, client: WebClient) -> None:
    modal = {
        "type": "modal",
        "callback_id": "deploy",
        "title": {"type": "plain_text", "text": "Deploy"},
        "blocks": [section("pick a preset")],
    }
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        client.views_open(trigger_id="", view=modal)

    trigger = slack.trigger_id()
    view = client.views_open(trigger_id=trigger, view=modal)["view"]
    assert view["id"].startswith("V") and view["callback_id"] == "deploy"
    with pytest.raises(SlackApiError, match="exchanged_trigger_id"):
        client.views_open(trigger_id=trigger, view=modal)

    changed = dict(modal, blocks=[section("deploying…")])
    assert client.views_update(view_id=view["id"], view=changed, hash=view["hash"])["ok"]
    assert slack.views[view["id"]]["blocks"] == [section("deploying…")]
    with pytest.raises(SlackApiError, match="hash_conflict"):
        client.views_update(view_id=view["id"], view=changed, hash="stale")

    too_big = dict(modal, blocks=[{"type": "divider"}] * 101)
    with pytest.raises(SlackApiError) as error:
        client.views_open(trigger_id=slack.trigger_id(), view=too_big)
    assert error.value.response["error"] == "invalid_arguments"
    assert "no more than 100 items allowed [json-pointer:/view/blocks]" in str(error.value.response.data)


def test_trigger_ids_expire(slack: LocalSlack, client: WebClient) -> None:
    slack.trigger_ttl = 0.05
    trigger = slack.trigger_id()
    time.sleep(0.1)  # the scenario, not a wait for an event: the trigger is used after its TTL
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "T"}, "blocks": []}
    with pytest.raises(SlackApiError, match="expired_trigger_id"):
        client.views_open(trigger_id=trigger, view=modal)


def test_wait_for_returns_a_later_call(slack: LocalSlack, client: WebClient) -> None:
    timer = threading.Timer(0.1, lambda: client.chat_postMessage(channel="C7", text="late"))
    timer.start()
    try:
        call = slack.wait_for(lambda c: c.params["channel"] == "C7", timeout=5)
    finally:
        timer.join()
    assert call.method == "chat.postMessage" and call.response["ok"]


def test_wait_for_timeout_lists_the_calls_seen(slack: LocalSlack, client: WebClient) -> None:
    client.chat_postMessage(channel="C1", text="hello there")
    client.auth_test()
    started = time.monotonic()
    with pytest.raises(AssertionError) as error:
        slack.wait_for(lambda c: c.method == "views.open", timeout=0.2)
    assert time.monotonic() - started < 2
    message = str(error.value)
    assert "within 0.2s" in message and "calls seen (2)" in message
    assert "1. chat.postMessage 200 ok channel=C1 text='hello there'" in message
    assert "2. auth.test 200 ok" in message


def test_on_call_sees_every_recorded_call() -> None:
    seen: list[Call] = []
    with LocalSlack(bot_token=TOKEN, on_call=seen.append) as server:
        WebClient(token=TOKEN, base_url=server.api_url).chat_postMessage(channel="C1", text="x")
        assert [c.method for c in seen] == ["chat.postMessage"]
        assert seen == server.calls


# -- response_url ------------------------------------------------------------------------------


def test_response_url_posts_are_recorded_and_change_what_users_see(
    slack: LocalSlack, client: WebClient
) -> None:
    card = client.chat_postMessage(channel="C1", text="approve?", blocks=[section("approve?")])["ts"]
    url = slack.response_url("approve", channel="C1", message_ts=card, user="U1")

    assert WebhookClient(url).send(text="only you see this").status_code == 200
    assert [e["text"] for e in slack.ephemerals("C1", "U1")] == ["only you see this"]

    WebhookClient(url).send(text="approved", blocks=[section("approved by <@U1>")], replace_original=True)
    assert slack.messages("C1")[0]["blocks"] == [section("approved by <@U1>")]

    WebhookClient(url).send(text="for everyone", response_type="in_channel")
    assert [m["text"] for m in slack.messages("C1")] == ["approved", "for everyone"]

    calls = slack.calls_to("response_url")
    assert [c.target for c in calls] == ["approve"] * 3
    assert calls[1].params["replace_original"] is True


def test_response_url_allows_five_posts_and_rejects_bad_blocks(slack: LocalSlack) -> None:
    url = slack.response_url(channel="C1", user="U1")
    hook = WebhookClient(url)
    assert hook.send(text="x", blocks=[section(f"{i}") for i in range(51)]).status_code == 400
    assert [hook.send(text=str(i)).status_code for i in range(5)] == [200, 200, 200, 200, 404]
    assert slack.calls_to("response_url")[-1].response["error"] == "used_url"


# -- requests to the bot -----------------------------------------------------------------------


def test_signature_verifies_and_slash_body_parses_back(signer: SlackRequests) -> None:
    body, headers = signer.slash("scale qwen 3", user_id="U1", channel_id="C1", extra_headers={"X-Test": "1"})

    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert headers["X-Test"] == "1"

    fields = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
    assert fields["text"] == "scale qwen 3" and fields["command"] == "/infer"
    assert (fields["user_id"], fields["channel_id"], fields["team_id"]) == ("U1", "C1", "T0001")
    assert fields["api_app_id"] == "A0001" and fields["is_enterprise_install"] == "false"
    assert fields["user_name"] and fields["channel_name"] and fields["team_domain"]
    assert re.match(r"^\d+\.\d+\.[0-9a-f]+$", fields["trigger_id"])
    assert fields["response_url"].startswith(signer.response_slack.base_url + "/response/")

    other, _ = signer.slash("help", user_id="U1", channel_id="C1")
    assert parse_qs(other.decode())["trigger_id"] != [fields["trigger_id"]]


def test_sign_uses_the_given_timestamp() -> None:
    signer = SlackRequests(SECRET)
    stale = int(time.time()) - 600
    body, headers = signer.slash("help", user_id="U1", channel_id="C1", timestamp=stale)
    assert headers["X-Slack-Request-Timestamp"] == str(stale)
    assert (
        SignatureVerifier(SECRET).generate_signature(timestamp=str(stale), body=body)
        == headers["X-Slack-Signature"]
    )
    # Bolt (like the verifier) refuses requests more than five minutes old.
    assert not SignatureVerifier(SECRET).is_valid_request(body, headers)
    assert parse_qs(body.decode())["response_url"][0].startswith("https://hooks.slack.com/commands/T0001/")


def test_block_action_payload_round_trips(
    slack: LocalSlack, client: WebClient, signer: SlackRequests
) -> None:
    card_blocks = [
        section("scale qwen to 3?"),
        {"type": "actions", "block_id": "op-7", "elements": [button("op_approve", "7", "Approve")]},
    ]
    ts = client.chat_postMessage(channel="C1", text="approve?", blocks=card_blocks)["ts"]

    body, headers = signer.block_action("op_approve", "7", user_id="U2", channel_id="C1", message_ts=ts)

    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    payload = payload_of(body)
    assert payload["type"] == "block_actions"
    assert payload["user"]["id"] == "U2" and payload["user"]["team_id"] == "T0001"
    assert payload["channel"]["id"] == "C1" and payload["team"]["id"] == "T0001"
    assert payload["container"] == {
        "type": "message",
        "message_ts": ts,
        "channel_id": "C1",
        "is_ephemeral": False,
    }
    assert payload["message"]["ts"] == ts and payload["message"]["blocks"] == card_blocks
    [action] = payload["actions"]
    assert (action["action_id"], action["value"], action["type"]) == ("op_approve", "7", "button")
    assert action["block_id"] == "op-7" and action["text"]["text"] == "Approve"
    assert payload["trigger_id"] and payload["response_url"].startswith(slack.base_url)

    given = {"type": "message", "ts": ts, "text": "stale copy", "blocks": []}
    payload = payload_of(
        signer.block_action("op_reject", "7", user_id="U2", channel_id="C1", message_ts=ts, message=given)[0]
    )
    assert payload["message"] == given and payload["actions"][0]["block_id"] == "b"


def test_view_submission_payload(signer: SlackRequests) -> None:
    values = {"preset": {"preset_select": {"type": "static_select", "selected_option": {"value": "qwen"}}}}
    body, headers = signer.view_submission("deploy", values, user_id="U3", private_metadata="C1")

    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    payload = payload_of(body)
    assert payload["type"] == "view_submission" and payload["user"]["id"] == "U3"
    view = payload["view"]
    assert (view["id"], view["callback_id"], view["private_metadata"]) == ("V1", "deploy", "C1")
    assert view["state"]["values"] == values


# -- the whole loop through Bolt over HTTP -----------------------------------------------------


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def bolt_url(slack: LocalSlack) -> Iterator[str]:
    """A Bolt app served over HTTP whose WebClient talks to the local Slack."""
    app = App(
        signing_secret=SECRET,
        client=WebClient(token=TOKEN, base_url=slack.api_url),
        process_before_response=True,
    )

    @app.command("/infer")
    def infer(ack, command, respond, client) -> None:
        ack()
        respond(text=f"you said {command['text']}")
        client.chat_postMessage(
            channel=command["channel_id"],
            text="approve?",
            blocks=[
                section("approve?"),
                {"type": "actions", "block_id": "op", "elements": [button("op_approve", "1", "Approve")]},
            ],
        )

    @app.action("op_approve")
    def approve(ack, body, client) -> None:
        ack()
        client.chat_update(
            channel=body["container"]["channel_id"],
            ts=body["container"]["message_ts"],
            text="approved",
            blocks=[section(f"approved by <@{body['user']['id']}>")],
        )

    server = make_server("127.0.0.1", 0, SlackRequestHandler(app), WSGIServer, _QuietHandler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/slack/events"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_bolt_accepts_the_signed_requests_and_replies_land_here(
    slack: LocalSlack, signer: SlackRequests, bolt_url: str
) -> None:
    body, headers = signer.slash("status", user_id="U1", channel_id="C1")
    assert requests.post(bolt_url, data=body, headers=headers, timeout=5).status_code == 200
    assert [e["text"] for e in slack.ephemerals("C1", "U1")] == ["you said status"]
    [card] = slack.messages("C1")

    body, headers = signer.block_action(
        "op_approve", "1", user_id="U2", channel_id="C1", message_ts=card["ts"]
    )
    assert requests.post(bolt_url, data=body, headers=headers, timeout=5).status_code == 200
    assert slack.messages("C1")[0]["blocks"] == [section("approved by <@U2>")]

    forged = dict(headers, **{"X-Slack-Signature": "v0=" + "0" * 64})
    assert requests.post(bolt_url, data=body, headers=forged, timeout=5).status_code == 401
