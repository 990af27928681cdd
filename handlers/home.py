"""The App Home tab: published when a user opens it, refreshed when what it shows them changes.

Only users who opened the tab get it (Slack's `app_home_opened`; bot/db/home.py remembers them), and
at most once every MIN_INTERVAL each: the claim in the database coalesces a burst of changes, and
several replicas that notice the same change publish it once. bot/home_refresh.py polls for changes
and calls `refresh`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from handlers import home_blocks, info, release_blocks
from handlers.deps import ClusterConfig, Deps, HomeTab
from handlers.digest import query_settings, sources
from handlers.home_blocks import ClusterView, Personal, Server, Waiting
from ops.digest import Digest, build
from ops.errors import OpsError

log = logging.getLogger(__name__)

OPEN_FOR = timedelta(hours=12)  # a tab opened longer ago than this is taken as closed
MIN_INTERVAL = timedelta(seconds=3)  # between two publishes to one user
WAITING_SHOWN = 10
RECENT_SHOWN = 8
METRICS_KEY = "home-metrics"


def on_app_home_opened(event: dict[str, Any], body: dict[str, Any], context: dict[str, Any],
                       client: WebClient) -> None:
    """Bolt acknowledges events itself; this runs after the ack."""
    deps: Deps = context["deps"]
    user = str(event.get("user") or "")
    # The Messages tab sends the same event; only the Home tab has a view to publish.
    if event.get("tab") != "home" or not user or deps.home is None:
        return
    if not deps.first_delivery(body):
        return
    deps.home.opened(user)
    deps.run_later(publish, client, deps, user, Reading(deps), False)


class Reading:
    """What one round of publishing reads once for every user it publishes to."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self._pending: list[Waiting] | None = None
        self._fleet: list[ClusterView] | None = None

    def pending(self) -> list[Waiting]:
        if self._pending is None:
            assert self.deps.home is not None
            self._pending = [Waiting(op, self.deps.store.approvers(op.id)) for op in self.deps.home.pending()]
        return self._pending

    def fleet(self) -> list[ClusterView]:
        if self._fleet is None:
            self._fleet = read_fleet(self.deps)
        return self._fleet


# ---- what the user sees of their own ------------------------------------------------------------


def may_approve(deps: Deps, user: str, w: Waiting) -> bool:
    """Whether `user`'s Approve would count: never their own request, the approver role where it is asked."""
    op = w.op
    if op.requested_by == user or user in w.approvers or op.expires_at <= datetime.now(UTC):
        return False
    if not deps.policy.check(user, op.channel_id, deps.config.cluster(op.cluster), "approver", "approve").allowed:
        return False
    if not op.admin_needed or deps.policy.is_admin(user):
        return True
    # An operation that needs an admin keeps its last slot for one (bot/db/store.py, Store.approve).
    return op.approvals_needed - len(w.approvers) > 1 or bool(deps.store.admin_approvers(op.id))


def personal(deps: Deps, user: str, reading: Reading) -> Personal:
    assert deps.home is not None
    waiting = [w for w in reading.pending() if may_approve(deps, user, w)]
    subscriptions: Sequence[Any] = ()
    scope = "all"
    if deps.digests is not None:
        channels = deps.home.channels_of(user)
        every = deps.digests.subscriptions()
        if channels:
            scope, subscriptions = "channels", [s for s in every if s.channel_id in channels]
        else:
            subscriptions = every
    return Personal(waiting=waiting[:WAITING_SHOWN], waiting_more=max(0, len(waiting) - WAITING_SHOWN),
                    recent=deps.home.operations_of(user, RECENT_SHOWN), subscriptions=list(subscriptions)[:20],
                    subscriptions_of=scope)


# ---- the fleet -----------------------------------------------------------------------------------


def _severity(ready: int, desired: int) -> int:
    if desired > 0 and ready == 0:
        return 2
    return 1 if ready < desired else 0


def _metrics(deps: Deps, clusters: Sequence[ClusterConfig]) -> Digest | str:
    """Utilization and cost from the digest's own reading of Prometheus (shared for a minute); or why not."""
    names = sorted(c.name for c in clusters)

    def make() -> Digest:
        return build(sources(deps, names), datetime.now(UTC), query_settings(deps.config))

    try:
        digest: Digest = deps.builds.get((METRICS_KEY, *names), make)
    except Exception as exc:  # the tab must show, metrics or not
        log.warning("home tab: cannot read metrics: %s", exc)
        return f"{type(exc).__name__}: {exc}"
    return digest


def _metrics_line(cluster: ClusterConfig, metrics: Digest | str | None, servers: Sequence[Server]) -> str:
    if not cluster.prometheus_url:
        return "No Prometheus is configured (`prometheus_url`), so no utilization or cost."
    if isinstance(metrics, str) or metrics is None:
        return f"Prometheus could not be read ({metrics or 'no answer'}), so no utilization or cost."
    status = next((c for c in metrics.clusters if c.name == cluster.name), None)
    if status is not None and status.error:
        return f"Prometheus could not be read ({status.error}), so no utilization or cost."
    costs = [s.cost_per_day for s in servers if s.cost_per_day is not None]
    if not costs:
        return f"No cost known yet (Prometheus has no accelerator-hours of the last {metrics.window_hours:g} h)."
    return f"{home_blocks.money(sum(costs))}/day in all, from the last {metrics.window_hours:g} h"


def _cluster(deps: Deps, cluster: ClusterConfig, metrics: Future[Digest | str] | None) -> ClusterView:
    try:
        found, others = info.read_status(deps.clusters.get(cluster), cluster.namespace)
    except OpsError as exc:
        return ClusterView(cluster.name, cluster.namespace, error=exc.message)
    digest = metrics.result() if metrics is not None else None
    figures: dict[str, tuple[float | None, float | None]] = {}
    if isinstance(digest, Digest):
        figures = {r.metrics.name: (r.metrics.util_now, r.cost_per_day) for r in digest.deployments
                   if r.metrics.cluster == cluster.name and r.metrics.namespace == cluster.namespace}
    servers = [Server(release_blocks.release_line(r), _severity(r.ready, r.desired), *figures.get(r.name, (None, None)))
               for r in found]
    servers += [Server(release_blocks.deployment_line(d), _severity(d.available, d.replicas),
                       *figures.get(d.name, (None, None))) for d in others]
    servers.sort(key=lambda s: -s.severity)  # stable: alphabetical within a severity
    return ClusterView(cluster.name, cluster.namespace, servers, metrics=_metrics_line(cluster, digest, servers))


def read_fleet(deps: Deps) -> list[ClusterView]:
    """Every configured cluster as `/infer status` reads it, with utilization and cost where Prometheus answers."""
    clusters = list(deps.config.clusters)
    if not clusters:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(clusters)) + 1, thread_name_prefix="home-fleet") as pool:
        watched = [c for c in clusters if c.prometheus_url]
        metrics = pool.submit(_metrics, deps, watched) if watched else None
        # One slow or dead API server must not hold up the others.
        return list(pool.map(lambda c: _cluster(deps, c, metrics), clusters))


# ---- publishing ----------------------------------------------------------------------------------


def publish(client: WebClient, deps: Deps, user: str, reading: Reading, changed_only: bool,
            mine: Personal | None = None) -> bool:
    """Publish `user`'s tab if the claim is ours (see module doc); False when it was not (too soon, or
    with `changed_only`, nothing changed). A publish Slack refused is logged and retried on the next change."""
    assert deps.home is not None
    mine = mine or personal(deps, user, reading)
    shown = home_blocks.shown_digest(mine, deps.command)
    if not deps.home.claim(user, shown, interval=MIN_INTERVAL, changed_only=changed_only):
        return False
    view = home_blocks.home_view(user, str(deps.policy.role_of(user)), reading.fleet(), mine, command=deps.command,
                                 updated=datetime.now(UTC), sandbox=deps.config.sandbox)
    try:
        client.views_publish(user_id=user, view=view)
    except (SlackApiError, OSError) as exc:
        error = exc.response.get("error") if isinstance(exc, SlackApiError) else type(exc).__name__
        log.warning("cannot publish the home tab of %s: %s", user, error)
        deps.home.forget(user)  # the next refresh publishes again
        return True
    deps.home.published(user)
    return True


def refresh(client: WebClient, deps: Deps, tabs: Sequence[HomeTab],
            now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> list[str]:
    """Publish the open tabs whose personal part changed; returns the users owed one that came too soon."""
    reading = Reading(deps)
    owed = []
    for tab in tabs:
        mine = personal(deps, tab.user, reading)
        if home_blocks.shown_digest(mine, deps.command) == tab.shown:
            continue
        if tab.published_at is not None and now() - tab.published_at < MIN_INTERVAL:
            owed.append(tab.user)
            continue
        if not publish(client, deps, tab.user, reading, True, mine):
            owed.append(tab.user)  # another replica published meanwhile: look again next time
    return owed
