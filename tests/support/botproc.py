"""Run `infer-bot serve` as a real process and talk to it the way Slack does (signed HTTP)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
import yaml
from sqlalchemy import create_engine, text

from bot.sandbox.slack.webapi import LocalSlack, SlackRequests

SIGNING_SECRET = "test-signing-secret-0123456789"
BOT_TOKEN = "xoxb-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BotProcess:
    """One `infer-bot serve` replica: its own config file, a shared database URL, real HTTP."""

    def __init__(self, workdir: Path, config: dict[str, Any], slack: LocalSlack, database_url: str) -> None:
        self.workdir = workdir
        self.config_path = workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.slack = slack
        self.database_url = database_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"bot-{self.port}.log"
        self.requests = SlackRequests(SIGNING_SECRET, response_slack=slack)
        self.workers: list[subprocess.Popen[bytes]] = []  # `infer-bot worker` processes started by the test

    def start(self, timeout: float = 30, *, socket_mode: bool = False,
              ready: Callable[[], bool] | None = None) -> BotProcess:
        """Start the process; wait for /healthz (HTTP mode) or for `ready()` (Socket Mode)."""
        mode = ["--socket-mode"] if socket_mode else ["--host", "127.0.0.1", "--port", str(self.port)]
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "serve", *mode], env=self.env(),
                                     stdout=self._log, stderr=self._log)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"infer-bot exited with {self.proc.returncode}:\n{self.log()}")
            if ready is not None:
                if ready():
                    return self
            else:
                try:
                    if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                        return self
                except requests.ConnectionError:
                    pass
            time.sleep(0.1)
        raise RuntimeError(f"infer-bot did not become ready:\n{self.log()}")

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "INFER_BOT_"))}
        env.update(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=self.slack.api_url,
                   SLACK_APP_TOKEN=self.slack.app_token, INFER_BOT_CONFIG=str(self.config_path),
                   INFER_BOT_DATABASE_URL=self.database_url)
        return env

    def start_worker(self) -> subprocess.Popen[bytes]:
        """`infer-bot worker` with this replica's config and database, logging to the same file."""
        log = self.log_path.open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "bot.cli", "worker"], env=self.env(), stdout=log, stderr=log)
        log.close()
        self.workers.append(proc)
        return proc

    def children(self) -> list[int]:
        """Process ids whose parent is this `serve` (the workers it started), from /proc."""
        assert self.proc is not None
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.proc.pid:
                found.append(int(stat.parent.name))
        return found

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to clean up, like a node that died."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        for worker in self.workers:
            if worker.poll() is None:
                worker.terminate()
                try:
                    worker.wait(10)
                except subprocess.TimeoutExpired:
                    worker.kill()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if hasattr(self, "_log"):
            self._log.close()

    # ---- what Slack sends ----------------------------------------------------------------------

    def post(self, body: bytes, headers: dict[str, str]) -> requests.Response:
        return requests.post(f"{self.url}/slack/events", data=body, headers=headers, timeout=10)

    def slash(self, text: str, *, user: str, channel: str = "C0OPS", **kw: Any) -> requests.Response:
        body, headers = self.requests.slash(text, user_id=user, channel_id=channel, **kw)
        return self.post(body, headers)

    def click(self, action_id: str, value: str, *, user: str, channel: str = "C0OPS",
              message_ts: str = "1.0") -> requests.Response:
        body, headers = self.requests.block_action(action_id, value, user_id=user, channel_id=channel,
                                                   message_ts=message_ts)
        return self.post(body, headers)


class Database:
    """Read-only look at what the bot recorded, straight from its database."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url)

    def rows(self, sql: str, **params: Any) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(text(sql), params)]

    def operation(self, op_id: int) -> dict[str, Any]:
        rows = self.rows("SELECT * FROM operations WHERE id = :id", id=op_id)
        assert rows, f"no operation #{op_id}"
        return rows[0]

    def audit(self, op_id: int | None = None) -> list[dict[str, Any]]:
        if op_id is None:
            return self.rows("SELECT * FROM audit_log ORDER BY id")
        return self.rows("SELECT * FROM audit_log WHERE operation_id = :id ORDER BY id", id=op_id)
