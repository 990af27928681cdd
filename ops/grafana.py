"""Grafana deep links: the URL of one model server's dashboard over a time window.

The URL and the served model name are pure logic; served_model_names reads the names from a
cluster, one list call per namespace. handlers/grafana_links.py decides which clusters have a
Grafana; the blocks modules put the link in a message.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

# The ai-on-eks inference dashboard ("Inference Dashboard"). Its JSON is
# awslabs/ai-ml-observability-reference-architecture, chart/files/dashboards/ray-vllm-inference-dashboard.json
# ("uid": "bec31e71-3ac5-4133-b2e3-b9f75c8ab56c"), the observability stack ai-on-eks installs; ai-on-eks'
# infra/solutions/inference-ready-cluster/README.md links to it as
# http://localhost:3000/d/bec31e71-3ac5-4133-b2e3-b9f75c8ab56c/inference-dashboard.
DEFAULT_DASHBOARD_UID = "bec31e71-3ac5-4133-b2e3-b9f75c8ab56c"
# That dashboard's template variables (its "templating.list"): `DS_PROMETHEUS` (the data source, left to
# Grafana), `namespace`, `server` (the Ray cluster, `ray_io_cluster`: only Ray serving has one) and
# `model_name`, vLLM's own label — the *served* model name (`vllm serve <model>`, or
# `--served-model-name`), not the Deployment's name. A link sets the ones a model server determines.
VAR_NAMESPACE = "namespace"
VAR_MODEL_NAME = "model_name"
# Grafana's own limit on a dashboard uid (40 characters of letters, digits, - and _).
UID_PATTERN = r"^[A-Za-z0-9_-]{1,40}$"


def check_base_url(url: str) -> str:
    """The Grafana root URL as the config gives it, or ValueError saying what is wrong with it."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{url!r} is not an http(s) URL with a host (e.g. https://grafana.example.com)")
    if parts.query or parts.fragment:
        raise ValueError(f"{url!r} has a query or fragment; give Grafana's root URL only")
    # These would end the Slack link (<url|text>) early or are not valid in a URL at all.
    if any(c in url for c in "<>|\"' ") or any(ord(c) < 33 for c in url):
        raise ValueError(f"{url!r} contains characters a URL cannot hold")
    return url


def _ms(at: datetime) -> str:
    # Grafana's from/to take epoch milliseconds; an aware datetime keeps the window where the digest put it.
    return str(int(at.timestamp() * 1000))


@dataclass(frozen=True)
class Dashboard:
    """One Grafana's copy of a dashboard: where it lives and which one."""

    base_url: str  # Grafana's root, sub-path included (https://example.com/grafana)
    uid: str = DEFAULT_DASHBOARD_UID

    def url(self, *, start: datetime, end: datetime, namespace: str, model_name: str | None = None) -> str:
        """The dashboard over [start, end] with the model server's variables set."""
        params = [("from", _ms(start)), ("to", _ms(end)), (f"var-{VAR_NAMESPACE}", namespace)]
        if model_name:
            params.append((f"var-{VAR_MODEL_NAME}", model_name))
        # quote, not quote_plus: `/` in a Hugging Face model id becomes %2F and a space %20, which Grafana
        # reads back exactly (a `+` would be taken literally by some proxies).
        query = urlencode(params, quote_via=quote, safe="")
        return f"{self.base_url.rstrip('/')}/d/{quote(self.uid, safe='')}?{query}"


def slack_link(url: str, label: str = "Grafana") -> str:
    """A mrkdwn link. `&` is one of Slack's three control characters, so it is sent as &amp; (Slack
    unescapes it in the URL it opens); the builder percent-encodes everything else that could end the link."""
    return f"<{url.replace('&', '&amp;')}|{label}>"


# ---- the served model name, from a pod template ----------------------------------------------------------


def _tokens(container: Mapping[str, Any]) -> list[str]:
    words: list[str] = []
    for item in [*(container.get("command") or []), *(container.get("args") or [])]:
        text = str(item)
        if any(c.isspace() for c in text):  # `sh -c "vllm serve <model> --flag …"` (upstream's chart)
            try:
                words += shlex.split(text)
            except ValueError:
                words += text.split()
        else:
            words.append(text)
    return words


def _option(words: Sequence[str], name: str) -> str | None:
    for i, word in enumerate(words):
        if word == name and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(name + "="):
            return word.split("=", 1)[1]
    return None


def served_model_name(pod_spec: Mapping[str, Any]) -> str | None:
    """The `model_name` label vLLM will export for this pod template, when its command line says it.

    vLLM labels its metrics with the first `--served-model-name`, else the model it serves: the
    positional argument of `vllm serve` or `--model`.
    """
    for container in pod_spec.get("containers") or []:
        words = _tokens(container)
        served = _option(words, "--served-model-name")
        if served:
            return served
        for i, word in enumerate(words[:-1]):
            if word.endswith("vllm") and words[i + 1] == "serve" and i + 2 < len(words) \
                    and not words[i + 2].startswith("-"):
                return words[i + 2]
        model = _option(words, "--model")
        if model:
            return model
    return None


NAMES_TIMEOUT = (3, 10)  # connect, read: a link is a bonus and must not hold a digest up for long


def served_model_names(kube: Any, namespace: str) -> dict[str, str]:
    """Deployment name → served model name, for a namespace's Deployments whose command line says it.

    kube: ops.kube.KubeCluster (its `apps`). One list call; raises what the client raises.
    """
    listed = kube.apps.list_namespaced_deployment(namespace, _request_timeout=NAMES_TIMEOUT)
    out = {}
    for item in listed.items or []:
        template = item.spec.template if item.spec else None
        spec = template.spec if template else None
        containers = [{"command": c.command, "args": c.args} for c in (spec.containers or [])] if spec else []
        model = served_model_name({"containers": containers})
        if model and item.metadata and item.metadata.name:
            out[item.metadata.name] = model
    return out
