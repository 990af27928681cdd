"""Grafana deep links end to end: a real `infer-bot serve` over signed HTTP, the local Slack, the Kubernetes
emulator (whose Deployments say which model they serve) and a real Prometheus over the generated data set."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import pytest

from bot.sandbox.slack.webapi import block_kit_errors
from tests.support.cluster import model
from tests.support.prometheus import main_dataset, put_nodes
from tests.support.slack import OPERATOR, VIEWER, text_of

GRAFANA = "https://grafana.example.com/monitoring"
DASHBOARD_PATH = "/monitoring/d/bec31e71-3ac5-4133-b2e3-b9f75c8ab56c"  # the ai-on-eks inference dashboard
DAY_MS = 24 * 3600 * 1000
LINK = re.compile(r"<(https?://[^|>]+)\|Grafana>")


@pytest.fixture(scope="module")
def prom():
    return main_dataset()


def reply_to(slack, command: str, timeout: float = 30):
    return slack.wait_for(lambda c: c.method == "response_url" and c.target.endswith(command), timeout=timeout)


def digest_message(slack, timeout: float = 60):
    return slack.wait_for(lambda c: c.method == "chat.postMessage" and not c.params.get("thread_ts")
                          and "Inference digest" in str(c.params.get("text")), timeout=timeout)


def line_of(call, name: str) -> str:
    """The block text that shows deployment `name` (a digest row, a metrics section, a status line)."""
    for block in call.params.get("blocks") or []:
        for line in ((block.get("text") or {}).get("text") or "").splitlines():
            if f"*{name}*" in line:
                return line
    raise AssertionError(f"{name} is not shown in {text_of(call)!r}")


def link_in(line: str) -> tuple[str, str, dict[str, str]]:
    """(host, path, query) of the one Grafana link in a line, as the browser would open it."""
    [url] = LINK.findall(line)
    parts = urlsplit(url.replace("&amp;", "&"))  # Slack unescapes its control characters before opening
    return parts.netloc, parts.path, dict(parse_qsl(parts.query, strict_parsing=True))


def ms(at: float) -> int:
    return int(at * 1000)


def test_digest_rows_metrics_and_status_link_to_the_model_servers_dashboard(make_bot, slack, kube, prom):
    dataset, server = prom
    put_nodes(kube, dataset)
    kube.put(model("busy-qwen", replicas=2))  # its pods run `--model Qwen/Qwen3-1.7B`: vLLM's model_name label
    bot = make_bot(cluster={"prometheus_url": server.url, "grafana_url": GRAFANA})

    before = time.time()
    bot.slash("metrics busy-qwen", user=VIEWER)
    reply = reply_to(slack, "metrics busy-qwen")
    after = time.time()
    assert block_kit_errors(reply.params["blocks"]) == []
    host, path, query = link_in(line_of(reply, "busy-qwen"))
    assert (host, path) == ("grafana.example.com", DASHBOARD_PATH)
    assert query["var-namespace"] == "default" and query["var-model_name"] == "Qwen/Qwen3-1.7B"
    # The window the numbers were read over: the last 24 h, ending when the command ran.
    assert int(query["to"]) - int(query["from"]) == DAY_MS and ms(before) - 1000 <= int(query["to"]) <= ms(after)
    assert set(query) == {"from", "to", "var-namespace", "var-model_name"}

    bot.slash("digest now", user=OPERATOR)
    posted = digest_message(slack)
    assert block_kit_errors(posted.params["blocks"]) == []
    _, _, busy = link_in(line_of(posted, "busy-qwen"))
    assert busy["var-model_name"] == "Qwen/Qwen3-1.7B" and busy["var-namespace"] == "default"
    # Every row shows the digest's own window, the one its context line states.
    end = datetime.fromtimestamp(int(busy["to"]) / 1000, UTC)
    assert f"24 h to {end:%Y-%m-%d %H:%M} UTC" in text_of(posted) and int(busy["to"]) - int(busy["from"]) == DAY_MS
    # A model server whose Deployment the cluster does not hold: the namespace alone, no guessed model name.
    host, path, idle = link_in(line_of(posted, "idle-llama"))
    assert (host, path) == ("grafana.example.com", DASHBOARD_PATH)
    assert idle == {"from": busy["from"], "to": busy["to"], "var-namespace": "default"}

    before = time.time()
    bot.slash("status qwen", user=VIEWER)  # the cluster's own model server, `--model Qwen/Qwen3-1.7B`
    status = reply_to(slack, "status qwen")
    assert block_kit_errors(status.params["blocks"]) == []
    host, path, query = link_in(line_of(status, "qwen"))
    assert (host, path) == ("grafana.example.com", DASHBOARD_PATH)
    assert query["var-namespace"] == "default" and query["var-model_name"] == "Qwen/Qwen3-1.7B"
    assert int(query["to"]) - int(query["from"]) == DAY_MS and int(query["to"]) >= ms(before) - 1000
    # The whole list stays as it was: a link per row would outgrow a section.
    bot.slash("status", user=VIEWER)
    listing = reply_to(slack, "status")
    assert "*qwen*" in text_of(listing) and "Grafana" not in text_of(listing)


def test_no_grafana_url_no_links(make_bot, slack, kube, prom):
    dataset, server = prom
    put_nodes(kube, dataset)
    bot = make_bot(cluster={"prometheus_url": server.url})
    bot.slash("metrics busy-qwen", user=VIEWER)
    bot.slash("status qwen", user=VIEWER)
    bot.slash("digest now", user=OPERATOR)
    shown = [reply_to(slack, "metrics busy-qwen"), reply_to(slack, "status qwen"), digest_message(slack)]
    assert "busy-qwen" in text_of(shown[0]) and "*qwen*" in text_of(shown[1]) and "idle-llama" in text_of(shown[2])
    for call in shown:
        assert "Grafana" not in text_of(call) and "/d/" not in text_of(call)
