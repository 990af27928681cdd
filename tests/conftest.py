"""Fixtures only (helpers live in tests/support/): the real parts on loopback, the Kubernetes API
emulator, the local Slack Web API and the bot process."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox.environment import node
from bot.sandbox.kubeapi import KubeEmulator
from bot.sandbox.slack.webapi import LocalSlack
from tests.support.botproc import BOT_TOKEN, BotProcess, Database
from tests.support.cluster import model
from tests.support.config import base_config
from tests.support.postgres import PostgresServer
from tests.support.waiting import wait_until


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    """A cluster with three 1-GPU nodes and one model server `qwen` (1 replica, 1 GPU)."""
    emu = KubeEmulator()
    emu.start()
    for i in range(3):
        emu.put(node({"name": f"gpu-node-{i}", "instance_type": "g5.xlarge", "gpus": 1}))
    emu.put(model("qwen"))
    wait_until(lambda: (emu.get("apps/v1", "Deployment", "default", "qwen") or {})
               .get("status", {}).get("readyReplicas") == 1, what="qwen ready")
    yield emu
    emu.stop()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """One throw-away PostgreSQL server for the session; each test takes a fresh database from it."""
    server = PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture
def slack() -> Iterator[LocalSlack]:
    with LocalSlack(bot_token=BOT_TOKEN) as server:
        yield server


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'bot.sqlite3'}"


@pytest.fixture
def make_bot(tmp_path: Path, kube: KubeEmulator, slack: LocalSlack,
             db_url: str) -> Iterator[Callable[..., BotProcess]]:
    """Start `infer-bot serve` processes; all share one SQLite database unless told otherwise."""
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    started: list[BotProcess] = []

    def make(config: dict[str, Any] | None = None, *, cluster: dict[str, Any] | None = None,
             database_url: str | None = None, **top: Any) -> BotProcess:
        cfg = copy.deepcopy(config or base_config(kubeconfig))
        if cluster:
            cfg["clusters"][0].update(cluster)
        for key, value in top.items():
            if isinstance(value, dict) and isinstance(cfg.get(key), dict):
                cfg[key].update(value)
            else:
                cfg[key] = value
        workdir = tmp_path / f"bot{len(started)}"
        workdir.mkdir()
        proc = BotProcess(workdir, cfg, slack, database_url or db_url)
        started.append(proc)
        return proc.start()

    yield make
    for proc in started:
        proc.stop()


@pytest.fixture
def bot(make_bot: Callable[..., BotProcess]) -> BotProcess:
    return make_bot()


@pytest.fixture
def db(db_url: str) -> Database:
    """What the bots of this test recorded (it starts none itself)."""
    return Database(db_url)


