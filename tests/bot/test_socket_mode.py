"""`infer-bot serve --socket-mode`: Slack's Socket Mode protocol over a real WebSocket on loopback.

The bot asks `apps.connections.open` (with the app-level token) for a URL, connects, and receives
envelopes; each one must be acknowledged with its envelope_id, and the work then happens as in
HTTP mode.
"""

from __future__ import annotations

import json
import queue
import threading
import uuid
from collections.abc import Iterator
from urllib.parse import parse_qsl

import pytest
from websockets.sync.server import ServerConnection, serve

from tests.support.botproc import BotProcess
from tests.support.slack import APPROVER, OPERATOR, card_for, op_id_of, text_of
from tests.support.waiting import wait_until


class SocketModeServer:
    """Slack's side of Socket Mode: says hello, sends envelopes, collects the bot's acks."""

    def __init__(self) -> None:
        self.acks: queue.Queue[dict] = queue.Queue()
        self.connection: ServerConnection | None = None
        self._server = serve(self._handle, "127.0.0.1", 0)
        self.url = f"ws://127.0.0.1:{self._server.socket.getsockname()[1]}/link"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _handle(self, connection: ServerConnection) -> None:
        connection.send(json.dumps({"type": "hello", "num_connections": 1,
                                    "connection_info": {"app_id": "A0001"}}))
        self.connection = connection
        for message in connection:
            self.acks.put(json.loads(message))

    def send(self, kind: str, payload: dict) -> dict:
        """Send one envelope and return the bot's acknowledgement of it."""
        envelope_id = str(uuid.uuid4())
        assert self.connection is not None
        self.connection.send(json.dumps({"envelope_id": envelope_id, "type": kind, "payload": payload,
                                         "accepts_response_payload": kind != "events_api"}))
        while True:
            ack = self.acks.get(timeout=10)
            if ack.get("envelope_id") == envelope_id:
                return ack

    def close(self) -> None:
        self._server.shutdown()


@pytest.fixture
def socket_server() -> Iterator[SocketModeServer]:
    server = SocketModeServer()
    yield server
    server.close()


def test_socket_mode_runs_the_same_pipeline(tmp_path, kube, slack, socket_server):
    from tests.support.config import base_config

    slack.socket_mode_url = socket_server.url
    bot = BotProcess(tmp_path, base_config(kube.write_kubeconfig(tmp_path / "kubeconfig")), slack,
                     f"sqlite:///{tmp_path / 'bot.sqlite3'}")
    bot.start(socket_mode=True, ready=lambda: socket_server.connection is not None)
    try:
        opened = slack.calls_to("apps.connections.open")
        assert opened and opened[0].status == 200  # asked with the app-level token, not the bot token

        body, _ = bot.requests.slash("scale qwen 2", user_id=OPERATOR, channel_id="C0OPS")
        ack = socket_server.send("slash_commands", dict(parse_qsl(body.decode())))
        assert "payload" not in ack or not ack["payload"]  # a plain ack; the card follows
        card = card_for(slack)
        assert "replicas 1 → 2" in text_of(card)

        click, _ = bot.requests.block_action("op_approve", op_id_of(card), user_id=APPROVER, channel_id="C0OPS",
                                             message_ts=card.response["ts"])
        socket_server.send("interactive", json.loads(dict(parse_qsl(click.decode()))["payload"]))
        slack.wait_for(lambda c: c.params.get("thread_ts") == card.response["ts"] and "Succeeded" in text_of(c),
                       timeout=30)
        wait_until(lambda: (kube.get("apps/v1", "Deployment", "default", "qwen") or {})
                   .get("status", {}).get("readyReplicas") == 2, what="2 replicas ready")

        body, _ = bot.requests.slash("scale qwen", user_id=OPERATOR, channel_id="C0OPS")
        ack = socket_server.send("slash_commands", dict(parse_qsl(body.decode())))
        assert "missing argument: replicas" in ack["payload"]["text"]  # refusals ride on the ack
    finally:
        bot.stop()


def test_socket_mode_publishes_the_home_tab_on_app_home_opened(tmp_path, kube, slack, socket_server):
    from tests.support.config import base_config

    slack.socket_mode_url = socket_server.url
    bot = BotProcess(tmp_path, base_config(kube.write_kubeconfig(tmp_path / "kubeconfig")), slack,
                     f"sqlite:///{tmp_path / 'bot.sqlite3'}")
    bot.start(socket_mode=True, ready=lambda: socket_server.connection is not None)
    try:
        body, _ = bot.requests.app_home_opened(user_id=APPROVER)
        ack = socket_server.send("events_api", json.loads(body))
        assert not ack.get("payload")  # events are acknowledged without a response payload
        tab = slack.wait_for(lambda c: c.method == "views.publish" and c.params.get("user_id") == APPROVER)
        assert tab.ok and tab.params["view"]["type"] == "home"
        assert "qwen" in json.dumps(tab.params["view"]["blocks"])
    finally:
        bot.stop()
