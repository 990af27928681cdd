"""Links from digest rows, `/infer metrics` and `/infer status <name>` to a model server's Grafana dashboard.

Which clusters have a Grafana comes from the config (`clusters[].grafana_url`, `grafana_dashboard_uid`);
the URL itself is ops/grafana.py's. The dashboard's `model_name` is vLLM's label — the served model
name, not the Deployment's — so it is read from the Deployments' pod templates, once per namespace and
shared by the channels a digest goes to (deps.builds).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime

from handlers.deps import Deps
from ops.grafana import DEFAULT_DASHBOARD_UID, Dashboard, served_model_names, slack_link

log = logging.getLogger(__name__)

ServedNames = Callable[[str, str], Mapping[str, str]]  # (cluster, namespace) → Deployment name → model_name


class Links:
    """The dashboard link of each model server, for the clusters that have a Grafana."""

    def __init__(self, dashboards: Mapping[str, Dashboard], served_names: ServedNames | None = None) -> None:
        self.dashboards = dict(dashboards)
        self._served_names = served_names

    def url(self, cluster: str, namespace: str, name: str, start: datetime, end: datetime) -> str | None:
        dashboard = self.dashboards.get(cluster)
        if dashboard is None:
            return None
        names = self._served_names(cluster, namespace) if self._served_names is not None else {}
        # A workload whose command line does not say its model (a RayService, a custom image) gets the
        # namespace alone: the dashboard then offers its model_name list instead of showing a wrong one.
        return dashboard.url(start=start, end=end, namespace=namespace, model_name=names.get(name))

    def link(self, cluster: str, namespace: str, name: str, start: datetime, end: datetime) -> str:
        """`<url|Grafana>`, or "" where there is no Grafana."""
        url = self.url(cluster, namespace, name, start, end)
        return slack_link(url) if url else ""


NO_LINKS = Links({})


def links_for(deps: Deps) -> Links:
    """The links of the configured clusters that set `grafana_url`."""
    dashboards = {}
    for cluster in deps.config.clusters:
        base = getattr(cluster, "grafana_url", None)
        if base:
            dashboards[cluster.name] = Dashboard(base, getattr(cluster, "grafana_dashboard_uid", None)
                                                 or DEFAULT_DASHBOARD_UID)
    if not dashboards:
        return NO_LINKS

    def served(cluster: str, namespace: str) -> Mapping[str, str]:
        names: Mapping[str, str] = deps.builds.get(("grafana-served-names", cluster, namespace),
                                                   lambda: _read_served_names(deps, cluster, namespace))
        return names

    return Links(dashboards, served)


def _read_served_names(deps: Deps, cluster: str, namespace: str) -> dict[str, str]:
    config = deps.clusters.lookup(cluster)
    if config is None:
        return {}
    try:
        return served_model_names(deps.clusters.get(config), namespace)
    except Exception as exc:  # an API that does not answer: links without model_name, the message still posts
        log.info("no served model names for %s/%s: %s", cluster, namespace, type(exc).__name__)
        return {}
