"""`/infer test`'s client against each model server API the inference chart runs (the sandbox's
stand-in server speaks all of them over real HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bot.sandbox.model_server import ModelServer, gradient_png
from ops import inference
from ops.errors import OpsError


@pytest.fixture(scope="module")
def server() -> Iterator[ModelServer]:
    s = ModelServer()
    yield s
    s.stop()


@pytest.mark.parametrize("framework", ["vllm", "ray-vllm", "lws-vllm", "aibrix", "nim-container", "triton-vllm"])
def test_text_models_answer_with_text(server: ModelServer, framework: str) -> None:
    answer = inference.ask(server.url, framework=framework, task="text", model="m", prompt="Hello there")
    assert answer.image is None and answer.text.endswith("You asked: Hello there")
    assert not answer.text.startswith("Hello there")  # Triton's echo of the prompt is cut


@pytest.mark.parametrize(("framework", "path"), [("diffusers", "/v1/generations"), ("nim-container", "/v1/infer")])
def test_image_models_answer_with_a_png(server: ModelServer, framework: str, path: str) -> None:
    answer = inference.ask(server.url, framework=framework, task="image", model="m", prompt="a red fox")
    assert answer.image == gradient_png() and answer.image_ext == "png" and answer.url.endswith(path)


def test_a_server_without_that_api_is_a_clear_error(server: ModelServer) -> None:
    with pytest.raises(OpsError, match=r"/v1/generations` answered 404"):
        inference.ask(server.url + "/nowhere", framework="diffusers", task="image", model="m", prompt="x")
    with pytest.raises(OpsError, match="could not reach"):
        inference.ask("http://127.0.0.1:9", framework="vllm", task="text", model="m", prompt="x")
