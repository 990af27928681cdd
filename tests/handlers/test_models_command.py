"""`/infer models`: end to end through signed HTTP to a real `infer-bot serve`, and the renderer's limits."""

from __future__ import annotations

from dataclasses import replace

from handlers.catalog_blocks import models_message
from ops.catalog import load_catalog
from tests.support.presets import USER_PRESET
from tests.support.slack import VIEWER, text_of


def _sections(blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in blocks if b.get("type") == "section"]


def test_models_lists_every_preset_grouped_with_size_instance_and_price(bot, slack):
    assert bot.slash("models", user=VIEWER).status_code == 200
    reply = slack.wait_for(lambda c: c.method == "response_url")
    assert reply.params.get("response_type") == "ephemeral"
    shown = text_of(reply)
    for pid in load_catalog():
        assert f"`{pid}`" in shown
    # Grouped by framework and accelerator, in the chart's framework order.
    assert shown.index("*vllm* · NVIDIA GPU") < shown.index("*vllm* · AWS Neuron") < shown.index("*ray-vllm*")
    assert shown.index("*lws-vllm*") < shown.index("*diffusers*") < shown.index("*nim-container*")
    qwen = next(line for line in shown.splitlines() if line.startswith("`qwen3-1.7b-vllm`"))
    assert "Qwen/Qwen3-1.7B" in qwen and "*2.03B* bf16" in qwen and "`g6.xlarge` $0.80/h" in qwen
    scout = next(line for line in shown.splitlines() if line.startswith("`llama-4-scout-17b-lws-vllm`"))
    assert "2 × `g5.48xlarge` $32.58/h (2 nodes)" in scout
    assert "26 presets" in shown and "us-west-2" in shown
    blocks = reply.params["blocks"]
    assert len(blocks) <= 50 and all(len(t) <= 3000 for t in _sections(blocks))


def test_models_shows_user_presets_and_the_files_it_refused(make_bot, slack, tmp_path):
    folder = tmp_path / "presets"
    folder.mkdir()
    (folder / "team-qwen25.yaml").write_text(USER_PRESET)
    (folder / "broken.yaml").write_text(USER_PRESET.replace("framework: vllm", "framework: tgi"))
    bot = make_bot(catalog={"presets_dir": str(folder), "region": "us-east-1"})
    bot.slash("models", user=VIEWER)
    shown = text_of(slack.wait_for(lambda c: c.method == "response_url"))
    mine = next(line for line in shown.splitlines() if line.startswith("`team-qwen25`"))
    assert "user preset" in mine and "`g6e.xlarge` $1.86/h" in mine
    assert "refused" in shown and "broken.yaml" in shown and "values.inference.framework" in shown
    assert "27 presets" in shown and "us-east-1" in shown


def test_many_presets_stay_within_slacks_limits():
    base = load_catalog()["qwen3-1.7b-vllm"]
    many = [replace(base, id=f"user-preset-{i:03d}", model="org/" + "m" * 80, source="/x.yaml") for i in range(1000)]
    msg = models_message(many, {"g6.xlarge": 0.8048}, region="us-west-2", prices_as_of="t")
    sections = _sections(msg.blocks)
    assert len(msg.blocks) <= 50 and all(len(t) <= 3000 for t in sections)
    assert len(sections) > 1 and sections[1].startswith("*vllm* · NVIDIA GPU (cont.)")  # split, title repeated
    shown = sum(t.count("`user-preset-") for t in sections)
    left = 1000 - shown
    assert left > 0 and f"…and {left} more presets" in str(msg.blocks)


def test_no_price_and_no_presets():
    base = load_catalog()["qwen3-1.7b-vllm"]
    assert "no price" in str(models_message([base], {}, region="eu-west-1", prices_as_of="t").blocks)
    assert "No presets are available" in str(models_message([], {}, region="us-west-2", prices_as_of="t").blocks)
