"""Fixtures: the real parts on loopback — Kubernetes API emulator, local Slack Web API, the bot process."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.sandbox.environment import deployment, node
from bot.sandbox.kubeapi import KubeEmulator
from bot.sandbox.slack.webapi import Call, LocalSlack
from tests.support.botproc import BOT_TOKEN, BotProcess, Database
from tests.support.postgres import PostgresServer

OPERATOR, APPROVER, APPROVER2, ADMIN, VIEWER = "U0OPERATOR", "U0APPROVER", "U0APPROVER2", "U0ADMIN", "U0VIEWER"
CHANNEL = "C0OPS"
IMAGE = "public.ecr.aws/deep-learning-containers/vllm:0.10.2-gpu-py312-ec2"


def model(name: str, replicas: int = 1, gpus: int = 1, image: str = IMAGE) -> dict[str, Any]:
    return deployment({"name": name, "model": "Qwen/Qwen3-1.7B", "image": image, "replicas": replicas,
                       "gpus": gpus})


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


def base_config(kubeconfig: Path) -> dict[str, Any]:
    return {
        "roles": {"admin": [ADMIN], "approver": [APPROVER, APPROVER2, "S0APPROVERS"], "operator": [OPERATOR]},
        "clusters": [{"name": "dev", "kubeconfig": str(kubeconfig), "namespace": "default", "approvals": 1,
                      "rollout_timeout_seconds": 20}],
        "operations": {"poll_seconds": 0.2, "lease_seconds": 5, "shutdown_grace_seconds": 3},
    }


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


def wait_until(predicate: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def card_for(slack: LocalSlack, channel: str = CHANNEL, timeout: float = 10, n: int = 1) -> Call:
    """The n-th approval card posted in channel (a top-level message with an Approve button)."""

    def cards() -> list[Call]:
        return [c for c in slack.calls if c.method == "chat.postMessage" and c.status == 200
                and c.params.get("channel") == channel and not c.params.get("thread_ts")
                and op_id_of(c) is not None]

    return wait_until(lambda: cards()[n - 1] if len(cards()) >= n else None, timeout, f"approval card #{n}")


def op_id_of(call: Call) -> str | None:
    for block in call.params.get("blocks") or []:
        for element in block.get("elements", []) if block.get("type") == "actions" else []:
            if element.get("action_id") == "op_approve":
                return str(element["value"])
    return None


def text_of(call: Call) -> str:
    """Everything a person would read in a message: its text and the text of its blocks."""
    parts = [str(call.params.get("text", ""))]
    for block in call.params.get("blocks") or []:
        if isinstance(block.get("text"), dict):
            parts.append(block["text"].get("text", ""))
        for f in block.get("fields", []) or []:
            parts.append(f.get("text", ""))
        for e in block.get("elements", []) or []:
            parts.append(e.get("text", "") if isinstance(e.get("text"), str) else (e.get("text") or {}).get("text", ""))
    return "\n".join(parts)


def scale_patches(kube: KubeEmulator, name: str = "qwen") -> list:
    """PATCHes of a Deployment's scale subresource the API server received."""
    return [r for r in kube.requests if r[0] == "PATCH" and r[1].endswith(f"/deployments/{name}/scale")]
