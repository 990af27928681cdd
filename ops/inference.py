"""Talking to a deployed model: one request in the API its server speaks, timed.

The inference chart's servers do not share one API: vLLM (also under Ray, LWS and AIBrix) and NIM
LLMs speak OpenAI completions, Triton its generate extension, the diffusers server
`POST /v1/generations`, and NIM's visual models `POST /v1/infer`. `ask` picks by framework and task
so `/infer test` works for every preset.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass
from typing import Any

import requests

from ops.errors import OpsError

TIMEOUT = (5, 120)  # connect, read: a cold model may take a while to answer its first request
PNG = b"\x89PNG\r\n\x1a\n"
JPEG = b"\xff\xd8\xff"
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # more than any generation; a bigger body is not what we asked for


@dataclass(frozen=True)
class Completion:
    text: str
    latency_s: float
    prompt_tokens: int | None
    completion_tokens: int | None
    url: str
    image: bytes | None = None  # an image model's answer (PNG or JPEG)

    @property
    def image_ext(self) -> str:
        return "jpg" if self.image is not None and self.image.startswith(JPEG) else "png"


def ask(base_url: str, *, framework: str, task: str, model: str, prompt: str, max_tokens: int = 128) -> Completion:
    if task == "image":
        if framework == "nim-container":
            return _image(base_url, "/v1/infer", {"prompt": prompt})
        return _image(base_url, "/v1/generations", {"prompt": prompt})
    if framework == "triton-vllm":
        return _triton(base_url, prompt, max_tokens)
    return complete(base_url, model, prompt, max_tokens=max_tokens)


def complete(base_url: str, model: str, prompt: str, *, max_tokens: int = 128) -> Completion:
    """POST {base_url}/v1/completions; OpsError with what went wrong (never the whole body)."""
    url, resp, latency = _post(base_url, "/v1/completions",
                               {"model": model, "prompt": prompt, "max_tokens": max_tokens})
    try:
        body = resp.json()
        choice = body["choices"][0]
        text = str(choice.get("text") if "text" in choice else (choice.get("message") or {}).get("content", ""))
    except (ValueError, KeyError, IndexError, TypeError):
        raise OpsError(f"`{url}` did not answer like an OpenAI-compatible completions API") from None
    usage = body.get("usage") or {}
    return Completion(text.strip(), latency, usage.get("prompt_tokens"), usage.get("completion_tokens"), url)


def _triton(base_url: str, prompt: str, max_tokens: int) -> Completion:
    # The chart names Triton's model `vllm_model` (its model repository layout).
    url, resp, latency = _post(base_url, "/v2/models/vllm_model/generate",
                               {"text_input": prompt, "parameters": {"max_tokens": max_tokens, "stream": False}})
    try:
        text = str(resp.json()["text_output"])
    except (ValueError, KeyError, TypeError):
        raise OpsError(f"`{url}` did not answer like Triton's generate API (no `text_output`)") from None
    # Triton's vLLM backend echoes the prompt by default; show only what the model added.
    if text.startswith(prompt):
        text = text[len(prompt):]
    return Completion(text.strip(), latency, None, None, url)


def _image(base_url: str, path: str, payload: dict[str, Any]) -> Completion:
    url, resp, latency = _post(base_url, path, payload)
    if len(resp.content) > MAX_IMAGE_BYTES:
        raise OpsError(f"`{url}` answered {len(resp.content) // 1024 // 1024} MiB: not one image")
    if resp.headers.get("Content-Type", "").startswith("image/") or resp.content.startswith((PNG, JPEG)):
        image = resp.content
    else:
        image = _image_in_json(resp)
        if image is None:
            raise OpsError(f"`{url}` answered without an image (expected an image body, or JSON with a base64 "
                           "`image`, `images`, `data[].b64_json` or `artifacts[].base64`)")
    if not image.startswith((PNG, JPEG)):
        raise OpsError(f"`{url}` answered with something that is neither a PNG nor a JPEG image")
    return Completion("", latency, None, None, url, image=image)


def _image_in_json(resp: requests.Response) -> bytes | None:
    """The first base64 image in the shapes image servers answer with."""
    try:
        body = resp.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    candidates: list[Any] = [body.get("image")]
    for key, field in (("images", None), ("data", "b64_json"), ("artifacts", "base64")):
        items = body.get(key)
        if isinstance(items, list) and items:
            first = items[0]
            candidates.append(first.get(field) if field and isinstance(first, dict) else first)
    for value in candidates:
        if isinstance(value, str) and value:
            encoded = value.split(",", 1)[1] if value.startswith("data:") else value
            try:
                return base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                continue
    return None


def _post(base_url: str, path: str, payload: dict[str, Any]) -> tuple[str, requests.Response, float]:
    url = base_url.rstrip("/") + path
    started = time.monotonic()
    try:
        resp = requests.post(url, json=payload, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise OpsError(f"could not reach `{url}` ({type(exc).__name__}): is the release ready, and can the bot "
                       "reach it (in-cluster DNS, or the cluster's `inference_url`)?") from None
    latency = time.monotonic() - started
    if resp.status_code != 200:
        raise OpsError(f"`{url}` answered {resp.status_code}: {resp.text[:300]}")
    return url, resp, latency
