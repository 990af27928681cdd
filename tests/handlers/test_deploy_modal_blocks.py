"""The deploy modal's view, built from plain data: what Slack would show, and that Slack would take it."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from bot.sandbox.slack.blockkit import view_errors
from handlers import deploy_modal_blocks as mb
from handlers.deploy_modal import field_for, instance_choices
from handlers.parse import UsageError, parse
from ops import catalog, instances

PRESETS = list(catalog.load_catalog().values())


def _state(**kw):
    base = mb.ModalState(presets=PRESETS, clusters=["dev", "prod"], default_namespace="default",
                         instances=instance_choices(None, instances.DEFAULT_REGION), channel="C0OPS")
    return replace(base, **kw)


def _block(view, block_id):
    return next(b for b in view["blocks"] if b.get("block_id") == block_id)


def _labels(select):
    return [o["text"]["text"] for g in select["option_groups"] for o in g["options"]]


def test_presets_are_grouped_by_framework_and_the_view_is_valid_block_kit():
    view = mb.deploy_view(_state())
    assert view_errors(view) == []
    select = _block(view, mb.PRESET)["element"]
    assert select["type"] == "static_select" and _block(view, mb.PRESET)["dispatch_action"] is True
    groups = {g["label"]["text"]: [o["value"] for o in g["options"]] for g in select["option_groups"]}
    assert "qwen3-1.7b-vllm" in groups["vllm"] and "flux-1-diffusers" in groups["diffusers"]
    assert sum(len(v) for v in groups.values()) == len(PRESETS)
    # from a command the channel is known: it rides in private_metadata, no channel select is shown
    assert json.loads(view["private_metadata"]) == {"channel": "C0OPS"}
    assert not [b for b in view["blocks"] if b.get("block_id") == mb.CHANNEL]


def test_a_chosen_preset_marks_which_instances_fit_with_their_price():
    qwen = next(p for p in PRESETS if p.id == "qwen3-1.7b-vllm")
    view = mb.deploy_view(_state(preset=qwen, instances=instance_choices(qwen, instances.DEFAULT_REGION)))
    assert view_errors(view) == []
    select = _block(view, mb.INSTANCE)["element"]
    groups = {g["label"]["text"]: g["options"] for g in select["option_groups"]}
    fits = [o["text"]["text"] for o in groups["Fits"]]
    assert fits[0].startswith("✅ ") and "$" in fits[0] and "/h" in fits[0]
    assert any("g6.xlarge" in t for t in fits)
    assert all(o["text"]["text"].startswith("✖ ") and "does not fit" in o["text"]["text"]
               for o in groups["Does not fit"])
    assert any("inf2" in o["value"] for o in groups["Does not fit"])  # a GPU model on Neuron
    assert _block(view, mb.PRESET)["element"]["initial_option"]["value"] == "qwen3-1.7b-vllm"


def test_more_than_100_presets_use_an_external_select_and_the_suggestions_filter():
    many = [replace(PRESETS[0], id=f"extra-{i:03d}") for i in range(120)]
    view = mb.deploy_view(_state(presets=many))
    assert view_errors(view) == []
    select = _block(view, mb.PRESET)["element"]
    assert select["type"] == "external_select" and "option_groups" not in select
    found = mb.preset_groups(many, "extra-11")
    assert [o["value"] for g in found for o in g["options"]] == [f"extra-{i}" for i in range(110, 120)]
    assert all(len(g["options"]) <= 100 for g in mb.preset_groups(many))


def test_from_the_shortcut_the_form_asks_for_the_channel():
    view = mb.deploy_view(_state(channel=None))
    assert view_errors(view) == []
    assert _block(view, mb.CHANNEL)["element"]["type"] == "conversations_select"


def test_the_form_becomes_the_typed_command():
    values = {mb.PRESET: "qwen3-1.7b-vllm", mb.NAME: "q1", mb.REPLICAS: "2", mb.CLUSTER: "dev",
              mb.INSTANCE: "g6.xlarge"}
    text = mb.command_text(values)
    assert text == "deploy qwen3-1.7b-vllm name=q1 replicas=2 instance=g6.xlarge cluster=dev"
    cmd = parse(text)
    assert cmd.args == ("qwen3-1.7b-vllm",) and cmd.options["replicas"] == "2" and cmd.cluster == "dev"
    # what a user types is quoted: one value (here refused as a name), never read as more options
    with pytest.raises(UsageError, match="`a replicas=9` is not a valid release name"):
        parse(mb.command_text({mb.PRESET: "qwen3-1.7b-vllm", mb.NAME: "a replicas=9"}))


def test_submitted_values_are_read_from_every_element_kind():
    view = {"state": {"values": {
        mb.PRESET: {mb.PRESET_ACTION: {"type": "static_select", "selected_option": {"value": "qwen3-1.7b-vllm"}}},
        mb.NAME: {mb.VALUE: {"type": "plain_text_input", "value": " q1 "}},
        mb.REPLICAS: {mb.VALUE: {"type": "plain_text_input", "value": None}},
        mb.CHANNEL: {mb.VALUE: {"type": "conversations_select", "selected_conversation": "C9"}},
    }}}
    assert mb.submitted(view) == {mb.PRESET: "qwen3-1.7b-vllm", mb.NAME: "q1", mb.CHANNEL: "C9"}


def test_refusals_land_next_to_their_field():
    assert field_for("replicas must be a whole number from 0 to 20, got `500`", has_channel_field=False) == mb.REPLICAS
    assert field_for("`Deployment/x` already exists in `default` and was not deployed by me (no label). "
                     "Choose another `name=`; nothing was changed.", has_channel_field=False) == mb.NAME
    assert field_for("`flux` does not fit: 40 GiB needed, 21 GiB per replica", has_channel_field=False) == mb.INSTANCE
    assert field_for("cluster `dev` takes commands only in <#C1>.", has_channel_field=True) == mb.CHANNEL
    assert field_for("cluster `dev` takes commands only in <#C1>.", has_channel_field=False) == mb.CLUSTER
    assert field_for("`deploy` needs the *operator* role", has_channel_field=False) == mb.PRESET
