"""The Grafana deep link (ops/grafana.py): the URL a click opens, and the model name it filters on."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qsl, urlsplit

import pytest

from bot.config import ConfigError, parse_config
from ops.grafana import DEFAULT_DASHBOARD_UID, Dashboard, check_base_url, served_model_name, slack_link

END = datetime(2026, 12, 4, 9, 0, tzinfo=UTC)
START = END - timedelta(hours=24)
END_MS, START_MS = 1796374800000, 1796288400000  # 2026-12-04 09:00 UTC and a day before, in milliseconds


def test_the_url_opens_the_ai_on_eks_dashboard_over_the_window_with_the_model_servers_variables():
    url = Dashboard("https://grafana.example.com").url(start=START, end=END, namespace="team-a",
                                                       model_name="Qwen/Qwen3-1.7B")
    assert url == (f"https://grafana.example.com/d/bec31e71-3ac5-4133-b2e3-b9f75c8ab56c?from={START_MS}"
                   f"&to={END_MS}&var-namespace=team-a&var-model_name=Qwen%2FQwen3-1.7B")
    assert int(END.timestamp() * 1000) == END_MS  # the constants above are what Grafana reads


def test_a_sub_path_and_another_dashboard_are_kept_and_odd_characters_encoded():
    url = Dashboard("https://example.com/grafana/", uid="my-vllm_2").url(
        start=START, end=END, namespace="default", model_name="org/model name&x=1")
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "example.com", "/grafana/d/my-vllm_2")
    # Each value comes back exactly as given: nothing in a model name can add or end a parameter.
    assert parse_qsl(parts.query) == [("from", str(START_MS)), ("to", str(END_MS)), ("var-namespace", "default"),
                                      ("var-model_name", "org/model name&x=1")]
    assert "%20" in parts.query and "%26x%3D1" in parts.query


def test_without_a_known_model_name_only_the_namespace_is_set():
    url = Dashboard("http://grafana:3000").url(start=START, end=END, namespace="default")
    assert url == f"http://grafana:3000/d/{DEFAULT_DASHBOARD_UID}?from={START_MS}&to={END_MS}&var-namespace=default"


def test_the_slack_link_escapes_the_ampersands_slack_would_otherwise_parse():
    assert slack_link("https://g/d/x?from=1&to=2") == "<https://g/d/x?from=1&amp;to=2|Grafana>"


@pytest.mark.parametrize(("container", "expected"), [
    # The project's chart: `vllm serve` with the model as its first argument.
    ({"command": ["vllm", "serve"], "args": ["Qwen/Qwen3-1.7B", "--max-model-len=8192"]}, "Qwen/Qwen3-1.7B"),
    # Upstream's chart: one shell line.
    ({"command": ["/bin/sh", "-c"], "args": ["vllm serve NousResearch/Llama-3.2-1B --max-model-len 8192"]},
     "NousResearch/Llama-3.2-1B"),
    # The OpenAI server module with --model, and a served name, which is what vLLM labels its metrics with.
    ({"command": ["python3", "-m", "vllm.entrypoints.openai.api_server"], "args": ["--model", "m/x"]}, "m/x"),
    ({"args": ["--model=m/x", "--served-model-name", "chat", "chat-v2"]}, "chat"),
    ({"command": ["sh", "-c", "vllm serve m/x --served-model-name=llama"]}, "llama"),
    # Nothing says which model: no guess.
    ({"command": ["tritonserver"], "args": ["--model-repository=/models"]}, None),
    ({"image": "custom"}, None),
])
def test_the_served_model_name_is_read_from_the_command_line(container, expected):
    assert served_model_name({"containers": [{"name": "sidecar"}, container]}) == expected


@pytest.mark.parametrize(("url", "why"), [
    ("grafana.example.com", "not an http(s) URL with a host"),
    ("ftp://grafana.example.com", "not an http(s) URL with a host"),
    ("https://grafana.example.com/?orgId=1", "has a query or fragment"),
    ("https://grafana.example.com/a|b", "characters a URL cannot hold"),
])
def test_a_wrong_grafana_url_is_refused_naming_the_key(url, why):
    with pytest.raises(ConfigError) as caught:
        parse_config({"clusters": [{"name": "dev", "grafana_url": url}]}, "infer-bot.yaml")
    assert "clusters[0].grafana_url" in str(caught.value) and why in str(caught.value)
    with pytest.raises(ValueError, match=re.escape(why)):
        check_base_url(url)


def test_a_wrong_dashboard_uid_is_refused_naming_the_key():
    with pytest.raises(ConfigError) as caught:
        parse_config({"clusters": [{"name": "dev", "grafana_dashboard_uid": "not a uid/"}]}, "infer-bot.yaml")
    assert "clusters[0].grafana_dashboard_uid" in str(caught.value) and "not a Grafana dashboard uid" in str(
        caught.value)
    config = parse_config({"clusters": [{"name": "dev", "grafana_url": "https://g.example.com"}]}, "x")
    assert config.clusters[0].grafana_dashboard_uid == DEFAULT_DASHBOARD_UID
    assert parse_config({"clusters": [{"name": "dev"}]}, "x").clusters[0].grafana_url is None
