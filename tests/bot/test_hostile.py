"""Hostile and broken input against a running bot: fuzzed commands and tampered clicks never give a
5xx or an unhandled error, never change anything, and no secret reaches Slack or the logs."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.botproc import BOT_TOKEN, SIGNING_SECRET, Database
from tests.support.slack import APPROVER, OPERATOR, card_for, op_id_of, text_of
from tests.support.waiting import wait_until

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
ODD_TEXT = st.one_of(
    st.text(max_size=200),
    st.text(alphabet=st.characters(categories=["Zs", "Cc", "Cf", "So", "Mn"]), max_size=50),
    st.sampled_from(["scale qwen 2 " + "x" * 40_000, "scale " + "q" * 40_000 + " 2", "\u202escale qwen 2",
                     "scale qwen ２", "scale qwen 2 cluster=" + "é" * 70, "<!channel> scale", "audit 9" * 3]),
)
STRANGERS = st.sampled_from(["U0VIEWER", "U0NOBODY", "", "W" + "9" * 30, "U0OPERATOR\u0000"])


def test_fuzzed_commands_are_answered_and_change_nothing(bot, slack, kube):
    db = Database(bot.database_url)
    answered_later: Counter[str] = Counter()  # response_url name → commands acknowledged with an empty 200
    refused_at_once = 0

    @FUZZ
    @given(text=ODD_TEXT, user=st.sampled_from([OPERATOR, "U0VIEWER", "U0NOBODY"]))
    def fuzz(text: str, user: str) -> None:
        nonlocal refused_at_once
        if re.fullmatch(r"scale qwen [0-9]{1,2}", text.strip(), flags=re.ASCII | re.IGNORECASE):
            return  # a well-formed scale is a legitimate request, not a hostile one
        resp = bot.slash(text, user=user)
        assert resp.status_code == 200
        if resp.content:
            payload = resp.json()
            assert payload["response_type"] == "ephemeral" and len(payload["text"]) < 3000
            refused_at_once += ":no_entry:" in payload["text"]
        else:
            answered_later[f"/infer {text}".strip()] += 1  # the name SlackRequests gives its response_url

    fuzz()

    # Done when every command has had its answer and every refusal its audit row (written after
    # the ack, before a later answer): only then can "nothing changed" be read off the state.
    def all_answered() -> bool:
        if db.rows("SELECT count(*) AS n FROM operations")[0]["n"]:
            return True  # something did change: let the assertions below say what
        replies = slack.calls_to("response_url")
        got = Counter(c.target for c in replies)
        if any(got[name] < n for name, n in answered_later.items()):
            return False
        refused_later = sum(":no_entry:" in text_of(c) for c in replies)
        audited = db.rows("SELECT count(*) AS n FROM audit_log WHERE outcome IN ('refused', 'failed')")[0]["n"]
        return audited >= refused_at_once + refused_later

    wait_until(all_answered, what="an answer to every command and an audit row for every refusal")
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    assert not [r for r in kube.requests if r[0] in ("PATCH", "PUT", "POST", "DELETE")]
    assert "Traceback" not in bot.log()
    assert all(c.status == 200 for c in slack.calls)  # every reply was valid Block Kit for Slack


def test_tampered_clicks_are_refused_and_change_nothing(bot, slack, kube):
    db = Database(bot.database_url)
    bot.slash("scale qwen 2", user=OPERATOR)
    card = card_for(slack)
    op_id = op_id_of(card)
    handled = told = 0  # clicks on a button the bot listens to (an unknown action_id is answered 404 at once)
    refused_before = db.rows("SELECT count(*) AS n FROM audit_log WHERE outcome = 'refused'")[0]["n"]

    @FUZZ
    @given(action=st.sampled_from(["op_approve", "op_reject", "suggestion_apply", "nope", "x" * 300]),
           value=st.one_of(st.just(op_id), st.text(max_size=40), st.integers(-5, 10**30).map(str),
                           st.just("9" * 40_000), st.just(f"{op_id} "), st.just(f"+{op_id}"), st.just(f"{op_id}.0")),
           user=st.one_of(STRANGERS, st.just(APPROVER)), channel=st.sampled_from(["C0OPS", "C0OTHER", ""]))
    def fuzz(action: str, value: str, user: str, channel: str) -> None:
        nonlocal handled, told
        if action == "op_approve" and value == op_id and user == APPROVER and channel == "C0OPS":
            return  # that is the one legitimate approval
        body, headers = bot.requests.block_action(action, value, user_id=user, channel_id=channel,
                                                  message_ts=card.response["ts"])
        resp = bot.post(body, headers)
        assert resp.status_code < 500
        handled += resp.status_code == 200
        # Refused in a channel: an ephemeral; an Apply button answers on its response_url anywhere.
        told += resp.status_code == 200 and (channel != "" or action == "suggestion_apply")

    fuzz()

    # Every click the bot acknowledged ends in a refusal's audit row and the refusal message (none
    # where there is no channel to post it in), or (a real approver's Reject) in the reason form:
    # once there are as many, no click is still being acted on.
    def all_decided() -> bool:
        if db.operation(int(op_id))["status"] != "pending_approval":
            return True  # something did change: let the assertions below say what
        refused = db.rows("SELECT count(*) AS n FROM audit_log WHERE outcome = 'refused'")[0]["n"] - refused_before
        forms = len(slack.calls_to("views.open"))
        messages = len(slack.calls_to("chat.postEphemeral")) + len(slack.calls_to("response_url"))
        return refused + forms >= handled and messages + forms >= told

    wait_until(all_decided, what="a refusal or a reason form for every click")
    assert db.operation(int(op_id))["status"] == "pending_approval"
    assert not [r for r in kube.requests if r[0] == "PATCH"]
    assert not slack.calls_to("views.open") or all(
        c.params["view"]["private_metadata"] == op_id for c in slack.calls_to("views.open"))
    assert "Traceback" not in bot.log()


def test_forged_payload_json_and_replays_are_refused(bot, slack):
    body, headers = bot.requests.slash("status", user_id=OPERATOR, channel_id="C0OPS")
    assert bot.post(body, headers).status_code == 200
    assert bot.post(body + b"&text=scale+qwen+9", headers).status_code == 401  # body changed after signing
    assert bot.post(b"payload=%7Bnot+json", bot.requests.sign(b"payload=%7Bnot+json")).status_code < 500
    unsigned = {k: v for k, v in headers.items() if not k.lower().startswith("x-slack")}
    assert bot.post(body, unsigned).status_code == 401
    stale = bot.requests.sign(body, timestamp=int(time.time()) - 301)
    assert bot.post(body, dict(headers, **stale)).status_code == 401


def test_no_secret_reaches_slack_or_the_logs(bot, slack, kube):
    bot.slash("scale qwen 2", user=OPERATOR)
    card = card_for(slack)
    bot.click("op_approve", op_id_of(card), user=APPROVER, message_ts=card.response["ts"])
    slack.wait_for(lambda c: "Succeeded" in text_of(c) and c.params.get("thread_ts"), timeout=30)
    bot.slash("scale nope 2", user=OPERATOR)  # an error path too
    bot.post(b"token=" + BOT_TOKEN.encode(), {"Content-Type": "application/x-www-form-urlencoded"})
    requests.get(f"{bot.url}/metrics", timeout=5)
    # The unsigned post and /metrics are answered synchronously; the error path answers later.
    refused = slack.wait_for(lambda c: c.method == "response_url" and c.target == "/infer scale nope 2")
    assert ":no_entry:" in text_of(refused)
    recorded = json.dumps([{"params": c.params, "response": c.response} for c in slack.calls], default=str)
    for secret in (BOT_TOKEN, SIGNING_SECRET):
        assert secret not in recorded
        assert secret not in bot.log()
