"""The sandbox's stand-in for every deployed model server, so `/infer test` answers there too.

The emulator's pods run nothing, so the sandbox cluster's `inference_url` points here. It speaks
the APIs ops/inference.py talks (OpenAI completions and chat, Triton's generate, the diffusers
server's `/v1/generations`, NIM's `/v1/infer`) and says plainly that it is the sandbox: the
answers show the bot's plumbing, not a model.
"""

from __future__ import annotations

import base64
import json
import struct
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def gradient_png(width: int = 64, height: int = 64) -> bytes:
    """A small RGB gradient, encoded by hand: no imaging library for a placeholder."""
    rows = b"".join(b"\x00" + bytes(v for x in range(width) for v in (x * 4 % 256, y * 4 % 256, 160))
                    for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def _answer(prompt: str) -> str:
    return f"(sandbox model server: no model runs here) You asked: {prompt[:200]}"


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        try:
            body: dict[str, Any] = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        except ValueError:
            self._send(400, b'{"error": "the body is not JSON"}')
            return
        prompt = str(body.get("prompt") or body.get("text_input") or "")
        if self.path == "/v1/generations":
            self._send(200, gradient_png(), "image/png")
        elif self.path == "/v1/infer":
            image = base64.b64encode(gradient_png()).decode()
            self._json({"artifacts": [{"base64": image, "finishReason": "SUCCESS"}]})
        elif self.path.endswith("/generate"):
            self._json({"model_name": "vllm_model", "text_output": prompt + " " + _answer(prompt)})
        elif self.path in ("/v1/completions", "/v1/chat/completions"):
            text = _answer(prompt)
            self._json({"object": "text_completion", "model": body.get("model"),
                        "choices": [{"index": 0, "text": text, "finish_reason": "stop"}],
                        "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}})
        else:
            self._send(404, b'{"error": "not an inference API path"}')

    def _json(self, payload: dict[str, Any]) -> None:
        self._send(200, json.dumps(payload).encode())

    def _send(self, status: int, data: bytes, content_type: str = "application/json") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:  # the console's output is the user's
        pass


class ModelServer:
    def __init__(self) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, name="sandbox-model-server", daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
