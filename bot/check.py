"""`infer-bot check`: the config is valid and every configured dependency answers."""

from __future__ import annotations

from sqlalchemy import text

from bot.clusters import Clusters
from bot.config import Config, Settings
from bot.db.store import make_engine
from ops.errors import OpsError
from ops.metrics import PromError, probe


def run_check(config: Config, settings: Settings) -> int:
    problems: list[str] = []

    def report(name: str, ok: bool, detail: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
        if not ok:
            problems.append(name)

    report("config", True, f"{len(config.clusters)} cluster(s), {len(config.digests)} digest(s)")
    try:
        engine = make_engine(settings.infer_bot_database_url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        report("database", True, engine.url.render_as_string(hide_password=True))
    except Exception as exc:
        report("database", False, type(exc).__name__)

    clusters = Clusters(config)
    for cluster in config.clusters:
        try:
            report(f"cluster {cluster.name}", True, f"Kubernetes {clusters.get(cluster).ping()}")
        except OpsError as exc:
            report(f"cluster {cluster.name}", False, exc.message)

    # Each cluster's Prometheus: digests and `/infer metrics` read it; a dead one would only show up
    # as ":warning: no data" in tomorrow's digest.
    for cluster in config.clusters:
        if not cluster.prometheus_url:
            print(f"skip prometheus {cluster.name}: no `prometheus_url` (digests will say so for this cluster)")
            continue
        try:
            version = probe(cluster.prometheus_url, timeout=min(10.0, config.metrics.timeout_seconds))
            report(f"prometheus {cluster.name}", True, f"Prometheus {version} at {cluster.prometheus_url} answers "
                   "queries")
        except PromError as exc:
            report(f"prometheus {cluster.name}", False, str(exc))

    if settings.slack_bot_token:
        from bot.app import make_client

        try:
            auth = make_client(settings).auth_test()
            report("slack", True, f"bot {auth.get('user_id')} in team {auth.get('team_id')}")
        except Exception as exc:
            report("slack", False, type(exc).__name__)
    else:
        report("slack", False, "SLACK_BOT_TOKEN is not set")
    return 1 if problems else 0
