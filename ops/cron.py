"""Standard crontab (what users type) → APScheduler 3 triggers (what runs it), without surprises.

The one crontab grammar: the slash-command parser, the config and the scheduler all use it.

Two differences would otherwise bite silently:
- day of week: crontab counts 0 (and 7) = Sunday; APScheduler counts 0 = Monday, so "1-5" or
  "*/2" mean other days there. Every field is expanded to explicit values here, days as names.
- both day fields restricted (`0 9 1 * mon`): crontab fires when *either* matches, APScheduler
  when both do. `either_day` tells the scheduler to combine two triggers with OrTrigger.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger

_ITEM = re.compile(r"(?:(?P<star>\*)|(?P<first>[a-z0-9]{1,3})(?:-(?P<last>[a-z0-9]{1,3}))?)(?:/(?P<step>[0-9]{1,2}))?")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
Shown = Callable[[str], str]
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_FIELDS = (("minute", 0, 59, ()), ("hour", 0, 23, ()), ("day-of-month", 1, 31, ()), ("month", 1, 12, _MONTHS),
           ("day-of-week", 0, 7, _DAYS))


@dataclass(frozen=True)
class CronSpec:
    """APScheduler CronTrigger keyword values."""

    minute: str
    hour: str
    day: str
    month: str
    day_of_week: str  # names: "mon,tue"
    either_day: bool  # crontab's OR of day-of-month and day-of-week


def _number(token: str, label: str, low: int, high: int, names: tuple[str, ...], shown: Shown) -> int:
    if token.isdigit():
        value = int(token)
    elif token in names:
        value = low + names.index(token)
    else:
        raise ValueError(f"cron {label} value {shown(token)} is not valid")
    if not low <= value <= high:
        raise ValueError(f"cron {label} {value} is out of range {low}-{high}")
    return value


def _expand(text: str, label: str, low: int, high: int, names: tuple[str, ...], shown: Shown) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"cron {label} field {shown(text)} is not valid")
        step = int(match["step"]) if match["step"] else 1
        if step == 0:
            raise ValueError(f"cron {label} field {shown(text)} has a step of 0")
        if match["star"]:
            start, end = low, high
        else:
            start = _number(match["first"], label, low, high, names, shown)
            # `5/15` is Vixie cron's "from 5 to the end, every 15".
            end = _number(match["last"], label, low, high, names, shown) if match["last"] else (
                high if match["step"] else start)
            if end < start:
                raise ValueError(f"cron {label} range {shown(item)} runs backwards")
        values.update(range(start, end + 1, step))
    return values


def parse_crontab(expr: str, shown: Shown = repr) -> CronSpec:
    """Raises ValueError naming the field that is wrong; `shown` quotes what the user typed."""
    fields = (expr.lower() if expr.isascii() else expr).split()
    if len(fields) != 5:
        raise ValueError("a cron schedule has 5 fields (minute hour day-of-month month day-of-week), "
                         f"got {len(fields)} in {shown(expr)}")
    expanded = [_expand(text, label, low, high, names, shown)
                for text, (label, low, high, names) in zip(fields, _FIELDS, strict=True)]
    minute, hour, day, month, dow = expanded
    dow = {d % 7 for d in dow}  # 7 is Sunday too

    def listed(values: set[int], low: int, high: int) -> str:
        return "*" if values == set(range(low, high + 1)) else ",".join(str(v) for v in sorted(values))

    days = "*" if dow == set(range(7)) else ",".join(_DAYS[d] for d in sorted(dow))
    either = not fields[2].startswith("*") and not fields[4].startswith("*")
    return CronSpec(minute=listed(minute, 0, 59), hour=listed(hour, 0, 23), day=listed(day, 1, 31),
                    month=listed(month, 1, 12), day_of_week=days, either_day=either)


def make_trigger(cron: str, timezone: str) -> BaseTrigger:
    """The APScheduler trigger that fires when crontab would."""
    spec = parse_crontab(cron)
    common: dict[str, Any] = {"minute": spec.minute, "hour": spec.hour, "month": spec.month,
                              "timezone": ZoneInfo(timezone)}
    if spec.either_day:
        return OrTrigger([CronTrigger(day=spec.day, **common), CronTrigger(day_of_week=spec.day_of_week, **common)])
    return CronTrigger(day=spec.day, day_of_week=spec.day_of_week, **common)


def next_runs(cron: str, timezone: str, after: datetime, count: int, until: datetime | None = None) -> list[datetime]:
    """The next `count` fire times strictly after `after`, in `timezone`, none at or after `until`."""
    trigger = make_trigger(cron, timezone)
    out: list[datetime] = []
    fire = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    while fire is not None and len(out) < count and (until is None or fire < until):
        out.append(fire)
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return out


def latest_fire(cron: str, timezone: str, now: datetime, since: datetime) -> datetime | None:
    """The last fire time in (since, now], or None: the slot a scheduler that looks now should run."""
    trigger = make_trigger(cron, timezone)
    last = None
    fire = trigger.get_next_fire_time(None, since + timedelta(microseconds=1))
    while fire is not None and fire <= now:
        last = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(seconds=1))
    return last
