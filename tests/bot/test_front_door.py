"""The public endpoint under hostile connections: Slack's HTTP mode needs a URL anyone can reach, so
stalled connections and huge bodies must not stop the bot from acking Slack's signed requests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from tests.support.slack import OPERATOR
from tests.support.waiting import wait_until

STALLED = 300


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x00" * 8)
    return sock


@pytest.fixture
def stalled(bot) -> Iterator[list[socket.socket]]:
    """STALLED connections that each sent half a request (headers announcing a body, part of it) and stall."""
    with ExitStack() as stack:
        socks = []
        for _ in range(STALLED):
            sock = stack.enter_context(_connect(bot.port))
            sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/x-www-form-"
                         b"urlencoded\r\nContent-Length: 4000\r\n\r\ncommand=%2Finfer&text=sta")
            socks.append(sock)
        yield socks


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(0.05)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def test_stalled_connections_do_not_stop_signed_requests(bot, stalled):
    resp = bot.slash("help", user=OPERATOR)  # waitress' default limit of 100 connections left this hanging
    assert resp.status_code == 200 and "what I can" in resp.text  # the help, acked
    # The stalled ones are closed after the read timeout (5 s by default), not kept for two minutes.
    wait_until(lambda: all(_closed_by_server(s) for s in stalled), timeout=20, what="stalled connections closed")
    assert bot.slash("help", user=OPERATOR).status_code == 200


def test_a_body_over_the_limit_is_refused_before_it_is_read(bot):
    with _connect(bot.port) as sock:
        sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Type: application/x-www-form-urlencoded"
                     b"\r\nContent-Length: 268435456\r\n\r\n")  # 256 MiB announced, not a byte of it sent
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]


def test_the_body_limit_is_a_config_key(make_bot):
    bot = make_bot(server={"max_body_bytes": 65_536})
    with _connect(bot.port) as sock:
        sock.sendall(b"POST /slack/events HTTP/1.1\r\nHost: bot\r\nContent-Length: 70000\r\n\r\n")
        assert sock.recv(4096).startswith(b"HTTP/1.1 413")
    assert bot.slash("help", user=OPERATOR).status_code == 200  # a Slack-sized request still passes
