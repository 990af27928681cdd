"""Digest schedules: crontab semantics on APScheduler 3, slots, and exactly one post per (channel, slot)."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest

from bot.app import build_runtime, make_client
from bot.config import ConfigError, Settings, parse_config
from bot.sandbox.slack.webapi import LocalSlack
from bot.scheduler import period_key
from ops.cron import make_trigger, parse_crontab
from tests.support.botproc import BOT_TOKEN, Database
from tests.support.prometheus import main_dataset
from tests.support.waiting import wait_until

SATURDAY_NOON = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(("cron", "days"), [
    ("0 9 * * 0", "sun"), ("0 9 * * 7", "sun"), ("0 9 * * 1-5", "mon,tue,wed,thu,fri"),
    ("0 9 * * */2", "sun,tue,thu,sat"), ("0 9 * * 5-7", "sun,fri,sat"), ("0 9 * * sat,sun", "sun,sat"),
    ("0 9 * * *", "*"), ("0 9 * * 0-6", "*"),
])
def test_crontab_days_of_week_become_apscheduler_day_names(cron, days):
    assert parse_crontab(cron).day_of_week == days


def test_other_fields_are_expanded_the_crontab_way():
    spec = parse_crontab("5/15 9-17/4 1,15 jan-mar *")
    assert (spec.minute, spec.hour, spec.day, spec.month) == ("5,20,35,50", "9,13,17", "1,15", "1,2,3")
    assert not spec.either_day and parse_crontab("0 9 1 * fri").either_day
    with pytest.raises(ValueError, match="out of range"):
        parse_crontab("0 24 * * *")


def test_triggers_carry_the_time_zone_and_crontab_day_rules():
    weekdays_paris = make_trigger("0 9 * * 1-5", "Europe/Paris")
    # Saturday noon → Monday 09:00 in Paris, which is 08:00 UTC in winter.
    assert weekdays_paris.get_next_fire_time(None, SATURDAY_NOON) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    sunday = make_trigger("30 7 * * 0", "UTC")  # 0 is Sunday in crontab (Monday in APScheduler)
    assert sunday.get_next_fire_time(None, SATURDAY_NOON) == datetime(2026, 11, 29, 7, 30, tzinfo=UTC)
    either = make_trigger("0 9 1 * fri", "UTC")  # crontab: the 1st OR a Friday
    first = either.get_next_fire_time(None, SATURDAY_NOON)
    assert first == datetime(2026, 12, 1, 9, 0, tzinfo=UTC)  # a Tuesday
    assert either.get_next_fire_time(first, first + timedelta(seconds=1)) == datetime(2026, 12, 4, 9, 0, tzinfo=UTC)


def test_the_slot_is_the_same_for_every_process_and_for_late_runs():
    trigger = make_trigger("0 9 * * *", "Europe/Paris")
    grace = timedelta(minutes=15)
    on_time = datetime(2026, 11, 28, 8, 0, 0, 40_000, tzinfo=UTC)
    assert period_key(trigger, on_time, grace) == "2026-11-28T08:00Z"
    assert period_key(trigger, on_time + timedelta(minutes=9), grace) == "2026-11-28T08:00Z"
    assert period_key(trigger, on_time + timedelta(hours=5), grace) == "2026-11-28T08:00Z"  # run by hand later


def test_config_digests_are_validated():
    with pytest.raises(ConfigError, match="day-of-week"):
        parse_config({"digests": [{"channel": "C1", "cron": "0 9 * * 8"}]}, "cfg.yaml")
    with pytest.raises(ConfigError, match="unknown time zone"):
        parse_config({"digests": [{"channel": "C1", "cron": "0 9 * * *", "timezone": "Mars/Olympus"}]}, "cfg.yaml")
    with pytest.raises(ConfigError, match="unknown thresholds"):
        parse_config({"advisor": {"thresholds": {"low_util": 3}}}, "cfg.yaml")
    cfg = parse_config({"advisor": {"thresholds": {"low_util_pct": 25}, "disabled": ["slow_startup"]},
                        "metrics": {"window_hours": 12}}, "cfg.yaml")
    assert cfg.advisor.thresholds == {"low_util_pct": 25} and cfg.metrics.window_hours == 12


CHANNEL = "C0DIGEST"


@pytest.fixture
def two_replicas(tmp_path):
    """Two bot runtimes (each with its scheduler) on one database, posting to one local Slack."""
    _, server = main_dataset()
    config = parse_config({
        "clusters": [{"name": "dev", "prometheus_url": server.url}],
        "digests": [{"channel": CHANNEL, "cron": "0 9 * * *", "timezone": "Europe/Paris"}],
    }, "test")
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    with LocalSlack(bot_token=BOT_TOKEN) as slack:
        settings = Settings(infer_bot_database_url=url, slack_api_url=slack.api_url, slack_bot_token=BOT_TOKEN)
        runtimes = [build_runtime(config, settings, client=make_client(settings)) for _ in range(2)]
        for runtime in runtimes:
            runtime.start_scheduler()
        yield runtimes, slack, Database(url)
        for runtime in runtimes:
            runtime.close()


def test_two_schedulers_post_one_digest_per_channel_and_slot(two_replicas, caplog):
    runtimes, slack, db = two_replicas
    caplog.set_level(logging.INFO, logger="bot.scheduler")
    job = "config:0:" + CHANNEL
    assert all(r.scheduler.next_run(job) is not None for r in runtimes)
    barrier = threading.Barrier(2)

    def fire(runtime):
        barrier.wait()
        runtime.scheduler.fire_now(job)

    threads = [threading.Thread(target=fire, args=(r,)) for r in runtimes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wait_until(lambda: db.rows("SELECT * FROM digest_posts WHERE status = 'posted'"), timeout=30,
               what="a digest posted")
    # The loser's run ends at its refused claim, which it logs: after that line it cannot post.
    lost = wait_until(lambda: [r for r in caplog.records if r.name == "bot.scheduler"
                               and r.getMessage().startswith(f"digest for {CHANNEL} at ")
                               and r.getMessage().endswith("another process has it")],
                      what="the other replica's lost claim")
    posts = db.rows("SELECT * FROM digest_posts")
    assert len(posts) == 1 and posts[0]["status"] == "posted", posts
    top_level = [m for m in slack.messages(CHANNEL) if m.get("thread_ts") in (None, m["ts"])]
    assert len(top_level) == 1 and top_level[0]["ts"] == posts[0]["ts"]
    # The slot is the schedule's 09:00 Paris of today or yesterday, in UTC: the same key in both.
    assert posts[0]["period"].endswith("T08:00Z")
    assert {r.getMessage() for r in lost} == {f"digest for {CHANNEL} at {posts[0]['period']}: another process has it"}
    assert {p["claimed_by"] for p in posts} <= {r.scheduler.id for r in runtimes}


def test_subscriptions_reach_the_scheduler_of_every_replica(two_replicas):
    runtimes, _, _ = two_replicas
    first, second = runtimes
    first.digests.subscribe("C0OTHER", "15 8 * * 1-5", "Asia/Tokyo", "U1")
    first.digests.changed()
    assert any(s.job_id == "sub:C0OTHER" for s in first.scheduler.schedules)
    second.scheduler.sync()  # what its periodic re-read does
    [schedule] = [s for s in second.scheduler.schedules if s.job_id == "sub:C0OTHER"]
    assert (schedule.cron, schedule.timezone) == ("15 8 * * 1-5", "Asia/Tokyo")
    assert second.scheduler.next_run("sub:C0OTHER").utcoffset() is not None
    first.digests.unsubscribe("C0OTHER")
    second.scheduler.sync()
    assert not any(s.job_id == "sub:C0OTHER" for s in second.scheduler.schedules)


def test_many_channels_at_the_same_time_post_in_parallel_from_one_build(tmp_path):
    """Twenty channels on one schedule: not ten at a time (APScheduler's default pool), and one build's PromQL."""
    from ops.metrics import QUERIES

    _, server = main_dataset()
    channels = [f"C0FAN{i:02d}" for i in range(20)]
    config = parse_config({
        "clusters": [{"name": "dev", "prometheus_url": server.url}],
        "digests": [{"channel": c, "cron": "0 9 * * *", "timezone": "UTC"} for c in channels],
    }, "test")
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    with LocalSlack(bot_token=BOT_TOKEN) as slack:
        slack.per_channel_limit(1, burst=1)
        settings = Settings(infer_bot_database_url=url, slack_api_url=slack.api_url, slack_bot_token=BOT_TOKEN)
        runtime = build_runtime(config, settings, client=make_client(settings))
        try:
            scheduler = runtime.start_scheduler()
            assert scheduler.workers == config.metrics.digest_workers >= len(channels)
            before = server.queries_logged()
            for index, channel in enumerate(channels):
                scheduler.fire_now(f"config:{index}:{channel}")
            db = Database(url)
            wait_until(lambda: len(db.rows("SELECT * FROM digest_posts WHERE status = 'posted'")) >= len(channels),
                       timeout=60, what="every channel's digest posted")
        finally:
            runtime.close()
        assert len(db.rows("SELECT * FROM digest_posts WHERE status = 'posted'")) == len(channels)
        firsts = [min(c.at for c in slack.calls_to("chat.postMessage") if c.params.get("channel") == channel
                      and c.status == 200) for channel in channels]
        charts = [c for c in slack.calls_to("files.completeUploadExternal") if c.status == 200]
        assert len(charts) == len(channels)
        # Every channel's digest went out within one pacing second of the first: none waited for another
        # channel's thread. A pool of 10 would have held the eleventh back until a first one was done.
        print(f"\nfirst posts of {len(channels)} channels within {max(firsts) - min(firsts):.2f} s")
        assert max(firsts) - min(firsts) < 1.0, sorted(round(f - min(firsts), 2) for f in firsts)
        assert slack.calls_to("chat.postMessage")[0].status == 200 and all(
            c.status == 200 for c in slack.calls_to("chat.postMessage"))  # and none was over Slack's limit
    assert server.queries_logged() - before == len(QUERIES)  # one build for all twenty


def test_a_bot_started_within_the_misfire_grace_posts_the_digest_it_missed(tmp_path, caplog):
    """Restarted 5 minutes after a digest's time: posted now. 20 minutes after (grace 15 min): tomorrow."""
    _, server = main_dataset()
    now = datetime.now(UTC)
    missed, too_late = now - timedelta(minutes=5), now - timedelta(minutes=20)
    config = parse_config({
        "clusters": [{"name": "dev", "prometheus_url": server.url}],
        "metrics": {"misfire_grace_seconds": 900},
        "digests": [{"channel": "C0LATE05", "cron": f"{missed.minute} {missed.hour} * * *", "timezone": "UTC"},
                    {"channel": "C0LATE20", "cron": f"{too_late.minute} {too_late.hour} * * *", "timezone": "UTC"}],
    }, "test")
    url = f"sqlite:///{tmp_path / 'bot.sqlite3'}"
    with LocalSlack(bot_token=BOT_TOKEN) as slack:
        settings = Settings(infer_bot_database_url=url, slack_api_url=slack.api_url, slack_bot_token=BOT_TOKEN)
        runtime = build_runtime(config, settings, client=make_client(settings))
        caplog.set_level(logging.INFO, logger="bot.scheduler")
        try:
            scheduler = runtime.start_scheduler()
            # The catch-up pass is over when start returns; what it left for C0LATE20 is its next
            # regular run, tomorrow. So once the one late run is posted, no run of C0LATE20 is due.
            late = [r.args[0] for r in caplog.records if r.name == "bot.scheduler"
                    and r.getMessage().endswith("posting it now")]
            tomorrow = scheduler.next_run("config:1:C0LATE20")
            db = Database(url)
            wait_until(lambda: db.rows("SELECT * FROM digest_posts WHERE status = 'posted'"), timeout=30,
                       what="the late digest posted")
        finally:
            runtime.close()
        [post] = db.rows("SELECT * FROM digest_posts")
        assert post["channel_id"] == "C0LATE05" and post["period"] == missed.strftime("%Y-%m-%dT%H:%MZ")
        assert [m["ts"] for m in slack.messages("C0LATE05") if "thread_ts" not in m or m["thread_ts"] == m["ts"]] == [
            post["ts"]]
        assert slack.messages("C0LATE20") == []
        assert late == ["C0LATE05"]
        assert tomorrow == too_late.replace(second=0, microsecond=0) + timedelta(days=1)
