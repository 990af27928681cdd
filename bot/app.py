"""Wiring: one Runtime (config, database, policy, clusters, Slack client, Bolt app, worker) per process.

`serve` and `console` build the same Runtime; only where Slack requests come from differs.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from bot import logs
from bot.after_ack import Deferral, InboxRunner
from bot.clusters import Clusters
from bot.config import Config, Settings
from bot.db.digests import DigestStore
from bot.db.home import HomeTabs
from bot.db.inbox import Inbox
from bot.db.releases import ReleaseHistory
from bot.db.schedules import ScheduleStore
from bot.db.store import Store, make_engine, migrate
from bot.db.tables import PostStatus
from bot.home_refresh import HomeRefresher
from bot.pacing import Pacer, SharedBuilds
from bot.policy import GroupCache, Policy
from bot.runs.infra import check_drift_all
from bot.runs.schedules import POLL_SECONDS, ScheduleRunner
from bot.runs.worker import Worker
from bot.scheduler import DigestScheduler, period_key
from handlers.commands import VERB_TABLE
from handlers.deps import Deps
from handlers.digest import post_digest
from handlers.listeners import register as register_listeners
from ops.cron import make_trigger

log = logging.getLogger(__name__)

DRIFT_SLOT = "drift-check"  # the digest-slot name that stands for the scheduled drift check


class ListenerPool(ThreadPoolExecutor):
    """Bolt's listener executor, counting work in flight so the console can wait for quiet."""

    def __init__(self, max_workers: int, name: str = "listener") -> None:
        super().__init__(max_workers=max_workers, thread_name_prefix=name)
        self._lock = threading.Lock()
        self._in_flight = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        with self._lock:
            self._in_flight += 1
        # The request thread's context (the Slack user, for log lines) follows the work.
        future = super().submit(contextvars.copy_context().run, fn, *args, **kwargs)
        future.add_done_callback(self._done)
        return future

    def _done(self, _future: Future[Any]) -> None:
        with self._lock:
            self._in_flight -= 1

    @property
    def idle(self) -> bool:
        with self._lock:
            return self._in_flight == 0


def make_client(settings: Settings) -> WebClient:
    client = WebClient(token=settings.slack_bot_token or None, base_url=settings.slack_api_url, timeout=15)
    # 429s are safe to retry (nothing was posted). Connection errors are not: a post whose answer
    # was lost may have landed, so slack_sdk's default ConnectionErrorRetryHandler is dropped.
    client.retry_handlers = [RateLimitErrorRetryHandler(max_retry_count=3)]
    return client


@dataclass
class Runtime:
    config: Config
    settings: Settings
    store: Store
    policy: Policy
    clusters: Clusters
    client: WebClient
    app: App
    worker: Worker
    listeners: ListenerPool
    work: ListenerPool | None = None  # what follows an ack (handlers' slow part), off the listener threads
    deps: Deps | None = None
    digests: DigestStore | None = None
    scheduler: DigestScheduler | None = None  # started by `serve` only
    home: HomeRefresher | None = None  # keeps open App Home tabs current
    inbox: InboxRunner | None = None  # a worker process's: requests `serve` acked (server.after_ack: queue)
    role: str = "all"  # see ROLES
    deferral: Deferral | None = None  # the front's: writes acked requests to the inbox

    @property
    def quiet(self) -> bool:
        """Nothing in flight: no listener, no after-ack work, no running operation."""
        return self.listeners.idle and (self.work is None or self.work.idle) and not self.worker.busy

    def start_background(self) -> None:
        """Operations, schedules, digests and Home refreshes: what runs beside the Slack listeners in
        one process (`serve` with after_ack inline, the console) or in each worker process."""
        self.worker.start()
        self.start_scheduler()
        if self.inbox is not None:
            self.inbox.start()

    def start_scheduler(self) -> DigestScheduler:
        """Scheduled digests (config `digests:` and channel subscriptions) in this process."""
        assert self.deps is not None and self.digests is not None
        deps, client = self.deps, self.client
        self.scheduler = DigestScheduler(
            self.config, self.digests,
            lambda channel, clusters, post_id: post_digest(client, deps, channel, clusters, post_id))
        self.digests.on_change = self.scheduler.sync  # a subscribe here takes effect at once
        self.scheduler.start()
        self.start_home()
        if self.config.terraform.drift_cron:
            self.scheduler.add_cron("drift-check", self.config.terraform.drift_cron, "UTC", self.scheduled_drift_check)
        # Replica schedules: every replica looks for due slots; the (schedule, slot) key picks one.
        runner = ScheduleRunner(self.config, self.store, client, self.worker.wake, self.worker.id)
        self.scheduler.add_interval("replica-schedules", POLL_SECONDS, runner.tick_quietly)
        return self.scheduler

    def start_home(self) -> None:
        """Refresh the App Home tabs users have open when operations change (serve and console)."""
        if self.home is not None:
            self.home.start()

    def scheduled_drift_check(self, now: datetime | None = None) -> list[int]:
        """Queue the drift checks of one cron slot; every replica fires, the first claim of the slot wins.

        The slot is claimed through the same unique (channel, period) key as digests, under a name no
        Slack channel can have, so the guard that keeps digests single also keeps drift checks single.
        """
        assert self.digests is not None and self.config.terraform.drift_cron
        grace = timedelta(seconds=self.config.metrics.misfire_grace_seconds)
        slot = period_key(make_trigger(self.config.terraform.drift_cron, "UTC"), now or datetime.now(UTC), grace)
        claim = self.digests.claim_post(DRIFT_SLOT, slot, self.worker.id)
        if claim is None:
            return []
        try:
            created = check_drift_all(self.config, self.store)
        except Exception as exc:
            log.exception("scheduled drift check failed")
            self.digests.finish_post(claim, PostStatus.FAILED, error=f"{type(exc).__name__}: {exc}"[:2000])
            return []
        self.digests.finish_post(claim, PostStatus.POSTED, summary={"operations": created})
        self.worker.wake()
        return created

    def close(self) -> None:
        if self.scheduler is not None:
            self.scheduler.stop()
        if self.home is not None:
            self.home.stop()
        if self.inbox is not None:
            self.inbox.stop()
        if self.deferral is not None and not self.deferral.writer.flush(10):
            log.error("stopping with acked Slack requests not yet written to the inbox")
        self.worker.stop()
        self.store.engine.dispose()


# What a process built by build_runtime does with Slack's requests:
#   "all"    answer them and do all the work (the console; `serve` with server.after_ack: inline)
#   "front"  answer them, and hand what follows the ack to worker processes through the inbox
#   "worker" replay what a front handed over; no HTTP
ROLES = ("all", "front", "worker")


def build_runtime(config: Config, settings: Settings, *, client: WebClient | None = None,
                  role: str = "all") -> Runtime:
    assert role in ROLES, role
    engine = make_engine(settings.infer_bot_database_url)
    migrate(engine)
    store = Store(engine)
    client = client or make_client(settings)

    def group_members(group: str) -> list[str]:
        return list(client.usergroups_users_list(usergroup=group).get("users", []))

    policy = Policy(config, GroupCache(group_members))
    clusters = Clusters(config, store)  # the store: clusters the bot provisioned
    worker = Worker(store, config, clusters, client)
    digests = DigestStore(store)
    home_tabs = HomeTabs(store)
    # Commands' slow part (cluster reads, cards, replies). Mostly network waits, which release the
    # interpreter lock, so 8 threads keep 8 slow cluster calls in flight; more only gives the acks
    # more threads to queue behind for the lock when CPU-bound bursts arrive (bench/ack_latency.py).
    work = ListenerPool(max_workers=8, name="work")
    inbox = Inbox(store)
    deferral = Deferral(inbox) if role == "front" else None
    # A worker replays a request on one of its inbox threads, which does the after-ack part itself.
    run_later: Callable[..., Any] = (deferral.run_later if deferral is not None
                                     else _inline if role == "worker" else work.submit)
    deps = Deps(config=config, store=store, policy=policy, clusters=clusters,
                approval_ttl=timedelta(hours=config.operations.approval_timeout_hours),
                wake_worker=worker.wake, pacer=Pacer(), builds=SharedBuilds(), verbs=VERB_TABLE,
                command=config.slack.command, digests=digests, run_later=run_later,
                releases=ReleaseHistory(store), schedules=ScheduleStore(store), home=home_tabs)
    # Listener threads only verify, dispatch and ack, so a few suffice; the slow part goes to `work`.
    listeners = ListenerPool(max_workers=16)
    app = build_app(settings, client, deps, listeners, deferral=deferral, replaying=role == "worker")
    runner = InboxRunner(inbox, app, worker.id) if role == "worker" else None
    return Runtime(config, settings, store, policy, clusters, client, app, worker, listeners, work=work, deps=deps,
                   digests=digests, home=HomeRefresher(deps, client, home_tabs), inbox=runner, role=role,
                   deferral=deferral)


def _inline(fn: Callable[..., Any], *args: Any) -> None:
    fn(*args)


def build_app(settings: Settings, client: WebClient, deps: Deps, listeners: ThreadPoolExecutor, *,
              deferral: Deferral | None = None, replaying: bool = False) -> App:
    app = App(
        client=client,
        signing_secret=settings.slack_signing_secret,
        token_verification_enabled=False,  # no Slack call at start-up; auth.test runs on first use
        # Ack first, work after: Slack wants its answer within 3 s. A worker replaying an acked
        # request runs the listener to its end instead, so the request is done when dispatch returns.
        process_before_response=replaying,
        # The acking process verified the signature; a replay may come minutes later, past its window.
        request_verification_enabled=not replaying,
        listener_executor=listeners,
    )

    @app.middleware
    def inject(body: dict[str, Any], context: dict[str, Any], next: Any) -> Any:
        context["deps"] = deps
        user = body.get("user_id") or (body.get("user") or {}).get("id")
        logs.slack_user.set(str(user) if user else None)
        return next()

    if deferral is not None:
        app.middleware(deferral.middleware)
    register_listeners(app, deps.command)
    return app
