"""`infer-bot check`: the config is valid, every configured dependency answers, and per cluster what
is there and what each missing piece costs (ops/readiness.py). Exit 1 only on what blocks the bot."""

from __future__ import annotations

from sqlalchemy import text

from bot.clusters import Clusters
from bot.config import Config, Settings
from bot.db.store import make_engine
from handlers.readiness_blocks import ICON_TEXT
from ops import readiness
from ops.errors import OpsError


def run_check(config: Config, settings: Settings) -> int:
    problems: list[str] = []

    def report(name: str, ok: bool, detail: str) -> None:
        print(f"{'ok  ' if ok else 'FAIL'} {name}: {detail}")
        if not ok:
            problems.append(name)

    def show(name: str, finding: readiness.Finding) -> None:
        print(f"{ICON_TEXT[finding.level]} {name}: {finding.text}")
        if finding.level == "fail":
            problems.append(name)

    report("config", True, f"{len(config.clusters)} cluster(s), {len(config.digests)} digest(s)")
    try:
        engine = make_engine(settings.infer_bot_database_url)
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        report("database", True, engine.url.render_as_string(hide_password=True))
    except Exception as exc:
        report("database", False, type(exc).__name__)

    # Per cluster, the readiness doctor: what is there and what each missing piece costs. Only an
    # unreachable cluster or Prometheus (and a binary a configured verb needs) fails the check.
    clusters = Clusters(config)
    timeout = min(10.0, config.metrics.timeout_seconds)
    for cluster in config.clusters:
        try:
            kube = clusters.get(cluster)
        except OpsError as exc:
            report(f"cluster {cluster.name}", False, exc.message)
            continue
        found = readiness.check_cluster(kube, cluster.namespace, cluster.prometheus_url, timeout=timeout,
                                        command=config.slack.command)
        for finding in found.findings:
            name = {"Kubernetes": f"cluster {cluster.name}", "Prometheus": f"prometheus {cluster.name}"}.get(
                finding.piece, cluster.name)
            show(name, finding)
    for finding in readiness.binary_findings(helm=settings.helm_bin, terraform=settings.terraform_bin,
                                             terraform_needed=bool(config.terraform.root)):
        show(finding.piece, finding)

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
