"""`schedule` and `unschedule` in the slash grammar, and how `until=` is read."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from handlers.base import Refusal
from handlers.parse import UsageError, parse
from handlers.schedules import parse_until

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize("text", [
    'schedule qwen replicas=0 cron="0 20 * * 1-5" tz=Europe/Paris',
    "schedule qwen replicas=0 cron='0 20 * * 1-5' tz=Europe/Paris",
    "schedule qwen replicas=0 cron=\u201c0 20 * * 1-5\u201d tz=Europe/Paris",  # a Slack client's smart quotes
    'schedule qwen tz=Europe/Paris cron="0  20 * *  1-5" replicas=0',
])
def test_a_quoted_cron_is_one_option_whatever_the_quotes(text):
    cmd = parse(text)
    assert cmd.args == ("qwen",)
    assert dict(cmd.options) == {"replicas": "0", "cron": "0 20 * * 1-5", "tz": "Europe/Paris"}
    assert parse(cmd.text) == cmd  # the canonical text parses back to the same command


def test_schedule_list_takes_only_a_cluster_and_a_schedule_needs_replicas_and_cron():
    assert parse("schedule list cluster=dev").args == ("list",)
    with pytest.raises(UsageError, match="takes only `cluster=`"):
        parse('schedule list cron="0 8 * * *"')
    with pytest.raises(UsageError, match="missing required options `replicas=`, `cron=`"):
        parse("schedule qwen")
    with pytest.raises(UsageError, match="cron minute 61 is out of range"):
        parse('schedule qwen replicas=1 cron="61 8 * * *"')
    with pytest.raises(UsageError, match="schedule id must be a whole number"):
        parse("unschedule x")


def test_until_is_the_whole_day_in_the_schedules_zone_or_an_exact_time():
    assert parse_until("2026-12-31", "Europe/Paris", NOW, "") == datetime(2026, 12, 31, 23, 0, tzinfo=UTC)
    assert parse_until("2026-12-31T18:30", "UTC", NOW, "") == datetime(2026, 12, 31, 18, 30, tzinfo=UTC)
    assert parse_until(None, "UTC", NOW, "") is None
    with pytest.raises(Refusal, match="is in the past"):
        parse_until("2026-12-03", "UTC", NOW, "")
    with pytest.raises(Refusal, match="is not a valid date"):
        parse_until("2026-02-30", "UTC", NOW, "")
    with pytest.raises(Refusal, match="is not a date: use YYYY-MM-DD"):
        parse_until("next friday", "UTC", NOW, "")
