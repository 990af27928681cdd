"""The deploy modal over signed HTTP to `infer-bot serve`: opened by `/infer deploy` and by the global
shortcut, refreshed with views.update when the preset changes, and submitted through the same checks
and the same card as the typed command."""

from __future__ import annotations

import base64
import json

import pytest

from handlers import deploy_modal_blocks as mb
from ops.catalog import DATA_DIR as BUNDLED_PRESETS
from ops.helm import BUNDLED_CHART
from tests.support.binaries import needs_helm
from tests.support.slack import CHANNEL, OPERATOR, VIEWER, card_for, text_of

pytestmark = needs_helm


@pytest.fixture
def deploy_bot(make_bot, kube):
    kube.put({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "default"},
              "type": "Opaque", "data": {"token": base64.b64encode(b"hf_test_value").decode()}})
    return make_bot(chart={"path": str(BUNDLED_CHART)})


def _opened(slack):
    return slack.wait_for(lambda c: c.method == "views.open" and c.status == 200).response["view"]


def _block(view, block_id):
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def _options(view, block_id):
    return {g["label"]["text"]: [o["text"]["text"] for o in g["options"]]
            for g in _block(view, block_id)["element"]["option_groups"]}


def _submit(bot, view, values):
    state = {block: {(mb.PRESET_ACTION if block == mb.PRESET else mb.VALUE): element}
             for block, element in values.items()}
    body, headers = bot.requests.view_submission(mb.CALLBACK, state, user_id=OPERATOR, view_id=view["id"],
                                                 private_metadata=None)
    return bot.post(body, headers)


def _text(value):
    return {"type": "plain_text_input", "value": value}


def _select(value):
    return {"type": "static_select", "selected_option": {"value": value}}


def _key_lines(card):
    """What a reviewer reads on a deploy card: the fit, the preset, its price and the objects."""
    return [line for line in text_of(card).splitlines()
            if line.startswith(("*Fit:*", "*Preset:*", "• create", "• update"))]


def test_deploy_without_arguments_opens_the_form_with_presets_grouped_by_framework(deploy_bot, slack, db):
    assert deploy_bot.slash("deploy", user=OPERATOR).status_code == 200
    view = _opened(slack)
    assert view["callback_id"] == mb.CALLBACK and view["title"]["text"] == "Deploy a model"
    groups = _options(view, mb.PRESET)
    assert any(t.startswith("qwen3-1.7b-vllm") for t in groups["vllm"])
    assert any(t.startswith("flux-1-diffusers") for t in groups["diffusers"])
    # the command's channel is where the card will go: no channel to choose
    assert json.loads(view["private_metadata"])["channel"] == CHANNEL
    assert {b.get("block_id") for b in view["blocks"]} >= {mb.PRESET, mb.CLUSTER, mb.NAMESPACE, mb.NAME,
                                                           mb.REPLICAS, mb.INSTANCE}
    assert not [c for c in slack.calls if c.method == "response_url"]  # no usage error instead


def test_a_viewer_is_told_why_and_gets_no_form(deploy_bot, slack, db):
    deploy_bot.slash("deploy", user=VIEWER)
    reply = slack.wait_for(lambda c: c.method == "response_url")
    assert "needs the *operator* role" in text_of(reply)
    assert not slack.calls_to("views.open")
    assert [r for r in db.audit() if r["action"] == "deploy" and r["outcome"] == "refused"]


def test_choosing_a_preset_updates_the_instances_with_fit_and_price(deploy_bot, slack):
    deploy_bot.slash("deploy", user=OPERATOR)
    view = _opened(slack)
    assert all("✅" not in t for ts in _options(view, mb.INSTANCE).values() for t in ts)  # nothing chosen yet

    body, headers = deploy_bot.requests.view_select(view["id"], mb.PRESET_ACTION, "qwen3-1.7b-vllm", user_id=OPERATOR)
    assert deploy_bot.post(body, headers).status_code == 200
    update = slack.wait_for(lambda c: c.method == "views.update")
    assert update.ok, update.response
    assert update.params["view_id"] == view["id"] and update.params["hash"] == view["hash"]
    new = update.response["view"]
    groups = _options(new, mb.INSTANCE)
    assert any(t.startswith("✅ g6.xlarge · $") and t.endswith("/h") for t in groups["Fits"])
    assert any(t.startswith("✖ inf2.xlarge") and "does not fit" in t for t in groups["Does not fit"])
    assert _block(new, mb.PRESET)["element"]["initial_option"]["value"] == "qwen3-1.7b-vllm"


def test_a_valid_submission_posts_the_same_card_as_the_typed_command(deploy_bot, slack, db):
    deploy_bot.slash("deploy qwen3-1.7b-vllm name=same replicas=1", user=OPERATOR)
    typed = card_for(slack, n=1)

    deploy_bot.slash("deploy", user=OPERATOR)
    view = _opened(slack)
    response = _submit(deploy_bot, view, {mb.PRESET: _select("qwen3-1.7b-vllm"), mb.NAME: _text("same"),
                                          mb.REPLICAS: _text("1"), mb.CLUSTER: _select("dev")})
    assert response.status_code == 200 and not response.content.strip(b"{} ")  # accepted: the modal closes
    formed = card_for(slack, n=2)
    assert _key_lines(formed) == _key_lines(typed) and _key_lines(formed)
    assert "Fits on `g6.xlarge`" in text_of(formed) and "create `Deployment/same`" in text_of(formed)
    ops = db.rows("SELECT kind, target, channel_id, requested_by FROM operations ORDER BY id")
    assert ops[1] == {"kind": "deploy", "target": "same", "channel_id": CHANNEL, "requested_by": OPERATOR}


@pytest.mark.parametrize(("values", "block", "words"), [
    ({mb.REPLICAS: _text("500")}, mb.REPLICAS, "replicas must be a whole number"),
    ({mb.NAME: _text("qwen")}, mb.NAME, "Choose another name="),  # the test cluster's own Deployment
    ({mb.PRESET: _select("flux-1-diffusers"), mb.INSTANCE: _select("g5.xlarge")}, mb.INSTANCE, "does not fit"),
])
def test_an_invalid_submission_is_shown_next_to_its_field_and_nothing_is_created(deploy_bot, slack, db, values,
                                                                                 block, words):
    deploy_bot.slash("deploy", user=OPERATOR)
    view = _opened(slack)
    response = _submit(deploy_bot, view, {mb.PRESET: _select("qwen3-1.7b-vllm"), mb.CLUSTER: _select("dev"),
                                          **values})
    answer = response.json()
    assert answer["response_action"] == "errors" and list(answer["errors"]) == [block]
    assert words in answer["errors"][block]
    assert db.rows("SELECT count(*) AS n FROM operations")[0]["n"] == 0
    refused = [r for r in db.audit() if r["action"] == "deploy" and r["outcome"] == "refused"]
    assert refused and refused[-1]["channel_id"] == CHANNEL and refused[-1]["actor"] == OPERATOR
    assert not [c for c in slack.calls if c.method == "chat.postMessage"]


def test_the_shortcut_opens_the_form_and_its_card_goes_to_the_chosen_channel(deploy_bot, slack, db):
    body, headers = deploy_bot.requests.shortcut("infer_deploy", user_id=OPERATOR)
    assert deploy_bot.post(body, headers).status_code == 200
    view = _opened(slack)
    assert _block(view, mb.CHANNEL)["element"]["type"] == "conversations_select"
    assert "vllm" in _options(view, mb.PRESET)

    missing = _submit(deploy_bot, view, {mb.PRESET: _select("qwen3-1.7b-vllm"), mb.CLUSTER: _select("dev")})
    assert list(missing.json()["errors"]) == [mb.CHANNEL]

    chosen = {"type": "conversations_select", "selected_conversation": CHANNEL}
    _submit(deploy_bot, view, {mb.PRESET: _select("qwen3-1.7b-vllm"), mb.CLUSTER: _select("dev"),
                               mb.NAME: _text("from-shortcut"), mb.CHANNEL: chosen})
    card = card_for(slack)
    assert "create `Deployment/from-shortcut`" in text_of(card)
    assert db.rows("SELECT channel_id FROM operations") == [{"channel_id": CHANNEL}]


def test_a_catalog_of_more_than_100_presets_is_searched_through_block_suggestion(make_bot, slack, tmp_path):
    own = tmp_path / "presets"
    own.mkdir()
    source = (BUNDLED_PRESETS / "qwen3-1.7b-vllm.yaml").read_text(encoding="utf-8")
    for i in range(110):
        (own / f"team-qwen-{i:03d}.yaml").write_text(source, encoding="utf-8")
    bot = make_bot(chart={"path": str(BUNDLED_CHART)}, catalog={"presets_dir": str(own)})
    bot.slash("deploy", user=OPERATOR)
    view = _opened(slack)
    select = _block(view, mb.PRESET)["element"]
    assert select["type"] == "external_select" and "option_groups" not in select

    body, headers = bot.requests.block_suggestion(view["id"], mb.PRESET_ACTION, "team-qwen-10", user_id=OPERATOR)
    answer = bot.post(body, headers).json()
    offered = [o["value"] for g in answer["option_groups"] for o in g["options"]]
    assert offered == [f"team-qwen-{i}" for i in range(100, 110)]


def test_a_card_that_cannot_be_posted_after_the_form_closed_is_reported_to_the_user(deploy_bot, slack, db):
    deploy_bot.slash("deploy", user=OPERATOR)
    view = _opened(slack)
    slack.fail("chat.postMessage", 1, status=500)
    response = _submit(deploy_bot, view, {mb.PRESET: _select("qwen3-1.7b-vllm"), mb.CLUSTER: _select("dev")})
    assert response.status_code == 200 and not response.content.strip(b"{} ")  # the checks passed
    told = slack.wait_for(lambda c: c.method == "chat.postEphemeral" and c.params.get("user") == OPERATOR)
    assert "could not post the approval card" in text_of(told) and "nothing was changed" in text_of(told)
    assert db.rows("SELECT status FROM operations") == [{"status": "rejected"}]  # it will never run
