"""Replica schedules as pure logic: their next run times (crontab rules, time zones, `until`) and the
GPU hours and dollars a workload's schedules save over a week."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ops.cron import latest_fire, next_runs
from ops.schedules import Footprint, Rule, replica_hours_saved, saving_of, weekly_saving

FRIDAY_NOON = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
MONDAY_MIDNIGHT = datetime(2026, 12, 7, 0, 0, tzinfo=UTC)
NIGHTS_OFF = [Rule(0, "0 20 * * 1-5", "UTC"), Rule(1, "0 8 * * 1-5", "UTC")]
G5 = Footprint(devices=1, resource="nvidia.com/gpu", instance_type="g5.xlarge", usd_per_device_hour=1.006)


def test_next_five_runs_skip_the_weekend_in_the_schedules_zone():
    runs = next_runs("0 20 * * 1-5", "Europe/Paris", FRIDAY_NOON, 5)
    assert [r.strftime("%a %H:%M") for r in runs] == ["Fri 20:00", "Mon 20:00", "Tue 20:00", "Wed 20:00", "Thu 20:00"]
    assert runs[0].astimezone(UTC) == datetime(2026, 12, 4, 19, 0, tzinfo=UTC)  # Paris is UTC+1 in winter


def test_next_runs_follow_daylight_saving_and_stop_at_until():
    # Paris moves to summer time at 02:00 on Sunday 2027-03-28: 08:00 local is 07:00 UTC on Saturday, 06:00 after.
    runs = next_runs("0 8 * * *", "Europe/Paris", datetime(2027, 3, 26, 12, 0, tzinfo=UTC), 3)
    assert [r.astimezone(UTC).hour for r in runs] == [7, 6, 6]
    until = datetime(2026, 12, 8, 0, 0, tzinfo=UTC)
    assert len(next_runs("0 20 * * 1-5", "UTC", FRIDAY_NOON, 5, until)) == 2  # Friday and Monday only
    assert next_runs("0 20 * * 1-5", "UTC", FRIDAY_NOON, 5, FRIDAY_NOON + timedelta(hours=1)) == []


def test_a_run_exactly_at_now_is_not_next_and_the_latest_fire_is_the_due_slot():
    at_eight = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)
    assert next_runs("0 8 * * *", "UTC", at_eight, 1)[0] == at_eight + timedelta(days=1)
    late = at_eight + timedelta(seconds=3)
    assert latest_fire("0 8 * * *", "UTC", late, at_eight - timedelta(minutes=15)) == at_eight
    # Nothing due when the fire time is before `since` (the schedule was approved after it).
    assert latest_fire("0 8 * * *", "UTC", late, at_eight) is None


def test_nights_and_weekends_off_save_108_gpu_hours_a_week():
    # Starting from a night (0 replicas): 8 h Monday morning, 4 × 12 h nights, Friday 20:00 → Monday 00:00.
    assert replica_hours_saved(NIGHTS_OFF, 0, MONDAY_MIDNIGHT) == pytest.approx(8 + 48 + 52)
    saving = weekly_saving(NIGHTS_OFF, 0, G5, MONDAY_MIDNIGHT)
    assert saving.baseline == 1 and saving.device_hours == pytest.approx(108)
    assert saving.usd == pytest.approx(108 * 1.006)
    assert "108 GPU hours ≈ $108.65" in saving.describe()


def test_a_scale_down_without_its_scale_up_saves_until_the_end_of_the_week():
    down_only = [Rule(0, "0 20 * * 1-5", "UTC")]
    # From Friday noon at 1 replica: 8 h of Friday pass, then it stays down for the rest of the week.
    assert replica_hours_saved(down_only, 1, FRIDAY_NOON) == pytest.approx(7 * 24 - 8)
    two_gpus = Footprint(2, "nvidia.com/gpu", "g5.12xlarge", 5.672 / 4)
    assert weekly_saving(down_only, 1, two_gpus, FRIDAY_NOON).device_hours == pytest.approx(2 * 160)


def test_an_unknown_price_says_so_and_why():
    unpriced = Footprint(1, "nvidia.com/gpu", "x9.mega", None)
    saving = weekly_saving(NIGHTS_OFF, 1, unpriced, MONDAY_MIDNIGHT)
    assert saving.usd is None and "saving unknown" in saving.describe() and "x9.mega" in saving.describe()
    assert "no GPU" in weekly_saving(NIGHTS_OFF, 1, Footprint(0, None, "g5.xlarge", None), MONDAY_MIDNIGHT).note
    assert "instance type is unknown" in weekly_saving(NIGHTS_OFF, 1, Footprint(1, None, None, None),
                                                       MONDAY_MIDNIGHT).note


def test_a_listing_recomputes_the_saving_from_what_the_card_recorded():
    recorded = weekly_saving(NIGHTS_OFF[:1], 1, G5, FRIDAY_NOON).as_dict()
    both = saving_of(NIGHTS_OFF, recorded, MONDAY_MIDNIGHT)
    assert both.usd == pytest.approx(both.device_hours * 1.006) and both.device_hours == pytest.approx(100)
    assert saving_of(NIGHTS_OFF, {}, MONDAY_MIDNIGHT).usd is None


def test_several_schedules_firing_at_once_apply_in_order():
    same_time = [Rule(0, "0 20 * * *", "UTC"), Rule(2, "0 20 * * *", "UTC")]
    # The later one wins: from 20:00 on it runs 2 replicas, the baseline, so nothing is saved.
    assert replica_hours_saved(same_time, 2, MONDAY_MIDNIGHT) == pytest.approx(0)
