"""Hostile and broken input against a running bot: fuzzed commands and tampered clicks never give a
5xx or an unhandled error, never change anything, and no secret reaches Slack or the logs."""

from __future__ import annotations

import json
import re
import time

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.botproc import BOT_TOKEN, SIGNING_SECRET, Database
from tests.support.slack import APPROVER, OPERATOR, card_for, op_id_of, text_of

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

    @FUZZ
    @given(text=ODD_TEXT, user=st.sampled_from([OPERATOR, "U0VIEWER", "U0NOBODY"]))
    def fuzz(text: str, user: str) -> None:
        if re.fullmatch(r"scale qwen [0-9]{1,2}", text.strip(), flags=re.ASCII | re.IGNORECASE):
            return  # a well-formed scale is a legitimate request, not a hostile one
        resp = bot.slash(text, user=user)
        assert resp.status_code == 200
        if resp.content:
            payload = resp.json()
            assert payload["response_type"] == "ephemeral" and len(payload["text"]) < 3000

    fuzz()
    time.sleep(1)
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    assert not [r for r in kube.requests if r[0] in ("PATCH", "PUT", "POST", "DELETE")]
    assert "Traceback" not in bot.log()
    assert all(c.status == 200 for c in slack.calls)  # every reply was valid Block Kit for Slack


def test_tampered_clicks_are_refused_and_change_nothing(bot, slack, kube):
    db = Database(bot.database_url)
    bot.slash("scale qwen 2", user=OPERATOR)
    card = card_for(slack)
    op_id = op_id_of(card)

    @FUZZ
    @given(action=st.sampled_from(["op_approve", "op_reject", "suggestion_apply", "nope", "x" * 300]),
           value=st.one_of(st.just(op_id), st.text(max_size=40), st.integers(-5, 10**30).map(str),
                           st.just("9" * 40_000), st.just(f"{op_id} "), st.just(f"+{op_id}"), st.just(f"{op_id}.0")),
           user=st.one_of(STRANGERS, st.just(APPROVER)), channel=st.sampled_from(["C0OPS", "C0OTHER", ""]))
    def fuzz(action: str, value: str, user: str, channel: str) -> None:
        if action == "op_approve" and value == op_id and user == APPROVER and channel == "C0OPS":
            return  # that is the one legitimate approval
        body, headers = bot.requests.block_action(action, value, user_id=user, channel_id=channel,
                                                  message_ts=card.response["ts"])
        resp = bot.post(body, headers)
        assert resp.status_code < 500

    fuzz()
    time.sleep(1)
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
    time.sleep(0.5)
    recorded = json.dumps([{"params": c.params, "response": c.response} for c in slack.calls], default=str)
    for secret in (BOT_TOKEN, SIGNING_SECRET):
        assert secret not in recorded
        assert secret not in bot.log()
