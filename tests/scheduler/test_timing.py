"""When schedules fire: cron and every, in UTC and IANA zones, across the 2026 DST nights."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import zoneinfo
from dataclasses import dataclass
from itertools import pairwise

import pytest

from _deadline import within
from nbremind.core.parse import parse_duration
from nbremind.scheduler.timing import (
    check_schedule,
    describe,
    fires_between,
    last_fire,
    local_zone,
    next_fire,
    zone,
)

UTC = dt.timezone.utc
BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"
US = dt.timedelta(microseconds=1)

#: The DST nights of 2026: (zone, date, hours in that local day).
NIGHTS = [
    (BERLIN, dt.date(2026, 3, 29), 23),
    (BERLIN, dt.date(2026, 10, 25), 25),
    (NEW_YORK, dt.date(2026, 3, 8), 23),
    (NEW_YORK, dt.date(2026, 11, 1), 25),
]


@dataclass(frozen=True)
class Schedule:
    """The shape of a job's schedule."""

    cron: str | None = None
    every: float | None = None
    timezone: str | None = None


def cron(expr: str, timezone: str | None = "UTC") -> Schedule:
    return Schedule(cron=expr, timezone=timezone)


def every(text: str, timezone: str | None = "UTC") -> Schedule:
    return Schedule(every=parse_duration(text, "every"), timezone=timezone)


def at(zone_name: str, *when: int, fold: int = 0) -> dt.datetime:
    """The instant the clock of ``zone_name`` shows ``when`` (``fold=1``: its second showing),
    in UTC (a datetime in the zone would do wall-clock arithmetic and comparisons)."""
    local = dt.datetime(*when, tzinfo=zoneinfo.ZoneInfo(zone_name), fold=fold)  # type: ignore[arg-type]
    return local.astimezone(UTC)


def day_fires(schedule: Schedule, zone_name: str, day: dt.date) -> list[dt.datetime]:
    """The fires during local day ``day`` of ``zone_name`` (from 00:00, to 24:00 excluded)."""
    start = at(zone_name, day.year, day.month, day.day)
    nxt = day + dt.timedelta(days=1)
    end = at(zone_name, nxt.year, nxt.month, nxt.day)
    return fires_between(schedule, start - US, end - US)


def shown(fires: list[dt.datetime], zone_name: str) -> list[str]:
    """Fires as their local clock shows them, with the offset: ``"02:30+0200"``."""
    return [f"{f.astimezone(zoneinfo.ZoneInfo(zone_name)):%H:%M%z}" for f in fires]


def shown_one(fire: dt.datetime | None, zone_name: str) -> str:
    """One fire as its local clock shows it (``"none"`` for no fire)."""
    return "none" if fire is None else shown([fire], zone_name)[0]


def hours(offsets: list[tuple[int, str]]) -> list[str]:
    return [f"{hour:02d}:00{offset}" for hour, offset in offsets]


# -- plain cases ------------------------------------------------------------------------------


def test_cron_in_utc_and_a_fire_exactly_at_after_is_not_next() -> None:
    daily = cron("0 2 * * *")
    fire = dt.datetime(2026, 6, 2, 2, 0, tzinfo=UTC)
    assert next_fire(daily, dt.datetime(2026, 6, 1, 12, 0, tzinfo=UTC)) == fire
    assert next_fire(daily, fire - US) == fire
    assert next_fire(daily, fire) == fire + dt.timedelta(days=1)  # strictly after
    assert last_fire(daily, fire) == fire  # at or before
    assert last_fire(daily, fire - US) == fire - dt.timedelta(days=1)
    assert next_fire(daily, fire).tzinfo is UTC


def test_cron_in_a_zone_follows_its_offset_summer_and_winter() -> None:
    daily = cron("0 2 * * *", BERLIN)
    summer = next_fire(daily, dt.datetime(2026, 6, 30, 12, tzinfo=UTC))
    winter = next_fire(daily, dt.datetime(2026, 12, 1, tzinfo=UTC))
    assert (summer, winter) == (
        dt.datetime(2026, 7, 1, 0, 0, tzinfo=UTC),
        dt.datetime(2026, 12, 1, 1, 0, tzinfo=UTC),
    )
    ny = next_fire(cron("0 2 * * *", NEW_YORK), dt.datetime(2026, 6, 30, 12, tzinfo=UTC))
    assert ny == dt.datetime(2026, 7, 1, 6, 0, tzinfo=UTC)
    # the zone ``after`` is given in does not matter, only the instant
    tokyo = dt.datetime(2026, 6, 30, 21, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Tokyo"))
    assert next_fire(daily, tokyo) == summer


def test_every_dividing_a_day_is_aligned_to_local_midnight() -> None:
    quarter = every("15m", BERLIN)
    after = at(BERLIN, 2026, 6, 1, 10, 7, 30)
    assert shown_one(next_fire(quarter, after), BERLIN) == "10:15+0200"
    assert shown_one(last_fire(quarter, after), BERLIN) == "10:00+0200"
    # 90 min divides 24 h: 00:00, 01:30, 03:00, ... local; a fire exactly at ``after`` is skipped
    ninety = every("90m", NEW_YORK)
    assert shown_one(next_fire(ninety, at(NEW_YORK, 2026, 6, 1, 1, 30)), NEW_YORK) == "03:00-0400"
    daily = every("1d", BERLIN)
    assert shown_one(next_fire(daily, at(BERLIN, 2026, 6, 1, 0, 0)), BERLIN) == "00:00+0200"
    assert next_fire(daily, at(BERLIN, 2026, 6, 1, 0, 0)) == at(BERLIN, 2026, 6, 2)


def test_every_not_dividing_a_day_counts_from_the_epoch_in_any_zone() -> None:
    seven = [every("7m", tz) for tz in ("UTC", BERLIN, NEW_YORK, None)]
    after = dt.datetime(2026, 6, 1, 12, 0, 1, tzinfo=UTC)
    fires = {next_fire(s, after) for s in seven}
    assert len(fires) == 1
    (fire,) = fires
    assert fire.timestamp() % 420 == 0 and dt.timedelta(0) < fire - after <= dt.timedelta(minutes=7)
    two_days = every("2d", BERLIN)
    fire = next_fire(two_days, after)
    assert fire.timestamp() % (2 * 86_400) == 0  # UTC midnight of an even epoch day
    assert fire.time() == dt.time(0, 0)


def test_fires_between_is_start_exclusive_end_inclusive_and_limited() -> None:
    hourly = cron("0 * * * *")
    start = dt.datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
    end = dt.datetime(2026, 6, 1, 3, 0, tzinfo=UTC)
    assert fires_between(hourly, start, end) == [start + dt.timedelta(hours=h) for h in (1, 2, 3)]
    assert fires_between(hourly, start, end, limit=2) == [
        start + dt.timedelta(hours=h) for h in (1, 2)
    ]
    assert fires_between(hourly, end, start) == []
    assert fires_between(every("1h"), start, end) == fires_between(hourly, start, end)
    # the runs missed over a week of weekdays at 09:00 Berlin time
    weekdays = cron("0 9 * * 1-5", BERLIN)
    missed = fires_between(weekdays, at(BERLIN, 2026, 6, 5, 12), at(BERLIN, 2026, 6, 12, 12))
    assert shown(missed, BERLIN) == ["09:00+0200"] * 5
    assert [f.astimezone(zoneinfo.ZoneInfo(BERLIN)).day for f in missed] == [8, 9, 10, 11, 12]


# -- DST nights -------------------------------------------------------------------------------


def test_a_0230_cron_job_on_the_dst_nights_runs_once() -> None:
    job = "30 2 * * *"
    # spring forward: 02:30 is never shown, it runs at the end of the gap
    assert shown(day_fires(cron(job, BERLIN), BERLIN, dt.date(2026, 3, 29)), BERLIN) == [
        "03:00+0200"
    ]
    assert shown(day_fires(cron(job, NEW_YORK), NEW_YORK, dt.date(2026, 3, 8)), NEW_YORK) == [
        "03:00-0400"
    ]
    # fall back: 02:30 is shown twice in Berlin, it runs at the first
    assert shown(day_fires(cron(job, BERLIN), BERLIN, dt.date(2026, 10, 25)), BERLIN) == [
        "02:30+0200"
    ]
    # New York repeats 01:00-01:59: 02:30 is shown once; 01:30 runs at its first showing
    fall = dt.date(2026, 11, 1)
    assert shown(day_fires(cron(job, NEW_YORK), NEW_YORK, fall), NEW_YORK) == ["02:30-0500"]
    assert shown(day_fires(cron("30 1 * * *", NEW_YORK), NEW_YORK, fall), NEW_YORK) == [
        "01:30-0400"
    ]
    # and the days around keep their 02:30
    assert shown(day_fires(cron(job, BERLIN), BERLIN, dt.date(2026, 3, 30)), BERLIN) == [
        "02:30+0200"
    ]


SPRING_BERLIN = hours([(0, "+0100"), (1, "+0100")] + [(h, "+0200") for h in range(3, 24)])
FALL_BERLIN = hours(
    [(0, "+0200"), (1, "+0200"), (2, "+0200")] + [(h, "+0100") for h in range(2, 24)]
)
SPRING_NEW_YORK = hours([(0, "-0500"), (1, "-0500")] + [(h, "-0400") for h in range(3, 24)])
FALL_NEW_YORK = hours([(0, "-0400"), (1, "-0400")] + [(h, "-0500") for h in range(1, 24)])


@pytest.mark.parametrize(
    ("zone_name", "day", "expected"),
    [
        (BERLIN, dt.date(2026, 3, 29), SPRING_BERLIN),
        (BERLIN, dt.date(2026, 10, 25), FALL_BERLIN),
        (NEW_YORK, dt.date(2026, 3, 8), SPRING_NEW_YORK),
        (NEW_YORK, dt.date(2026, 11, 1), FALL_NEW_YORK),
    ],
)
def test_hourly_cron_and_every_1h_follow_elapsed_time(
    zone_name: str, day: dt.date, expected: list[str]
) -> None:
    for schedule in (cron("0 * * * *", zone_name), every("1h", zone_name)):
        fires = day_fires(schedule, zone_name, day)
        assert shown(fires, zone_name) == expected, schedule
        assert all(b - a == dt.timedelta(hours=1) for a, b in pairwise(fires))


def test_a_wildcard_hour_step_follows_the_clock_it_shows() -> None:
    two_hourly = cron("0 */2 * * *", BERLIN)
    spring = shown(day_fires(two_hourly, BERLIN, dt.date(2026, 3, 29)), BERLIN)
    assert spring[:3] == ["00:00+0100", "04:00+0200", "06:00+0200"]  # 02:00 is never shown
    fall = shown(day_fires(two_hourly, BERLIN, dt.date(2026, 10, 25)), BERLIN)
    assert fall[:4] == ["00:00+0200", "02:00+0200", "02:00+0100", "04:00+0100"]
    # every 2h fires at the end of the gap instead (it is aligned to the local midnight)
    spring_every = shown(day_fires(every("2h", BERLIN), BERLIN, dt.date(2026, 3, 29)), BERLIN)
    assert spring_every[:3] == ["00:00+0100", "03:00+0200", "04:00+0200"]


@pytest.mark.parametrize(("zone_name", "day", "day_hours"), NIGHTS)
def test_every_15m_keeps_its_interval_and_its_quarter_hours(
    zone_name: str, day: dt.date, day_hours: int
) -> None:
    fires = day_fires(every("15m", zone_name), zone_name, day)
    assert len(fires) == 4 * day_hours
    assert all(b - a == dt.timedelta(minutes=15) for a, b in pairwise(fires))
    tz = zoneinfo.ZoneInfo(zone_name)
    assert all(f.astimezone(tz).minute % 15 == 0 for f in fires)
    if day_hours == 23:  # the gap: 01:45 standard time, then 03:00 daylight time
        text = shown(fires, zone_name)
        i = text.index("03:00" + ("+0200" if zone_name == BERLIN else "-0400"))
        assert text[i - 1].startswith("01:45") and text[i + 1].startswith("03:15")


@pytest.mark.parametrize(("zone_name", "day", "day_hours"), NIGHTS)
def test_every_7m_ignores_the_change(zone_name: str, day: dt.date, day_hours: int) -> None:
    fires = day_fires(every("7m", zone_name), zone_name, day)
    assert all(b - a == dt.timedelta(minutes=7) for a, b in pairwise(fires))
    assert all(f.timestamp() % 420 == 0 for f in fires)
    assert len(fires) in (day_hours * 60 // 7, day_hours * 60 // 7 + 1)


@pytest.mark.parametrize(("zone_name", "day", "day_hours"), NIGHTS)
def test_every_1d_fires_at_each_local_midnight(
    zone_name: str, day: dt.date, day_hours: int
) -> None:
    daily = every("1d", zone_name)
    start = at(zone_name, day.year, day.month, day.day)
    first = next_fire(daily, start - US)
    second = next_fire(daily, first)
    assert first == start
    assert second - first == dt.timedelta(hours=day_hours)  # the next local midnight
    assert shown([second], zone_name)[0].startswith("00:00")


def test_last_fire_around_the_berlin_nights() -> None:
    job = cron("30 2 * * *", BERLIN)
    # spring forward: the run of that night is at 03:00
    gap_end = at(BERLIN, 2026, 3, 29, 3, 0)
    assert last_fire(job, gap_end) == gap_end
    assert last_fire(job, gap_end - US) == at(BERLIN, 2026, 3, 28, 2, 30)
    # fall back, in the second showing of 02:00-02:59: the run was at the first 02:30
    first_0230 = at(BERLIN, 2026, 10, 25, 2, 30)
    for minute in (15, 30, 45):
        before = at(BERLIN, 2026, 10, 25, 2, minute, fold=1)
        assert last_fire(job, before) == first_0230, minute
        assert next_fire(job, before) == at(BERLIN, 2026, 10, 26, 2, 30), minute
    assert last_fire(job, at(BERLIN, 2026, 10, 25, 2, 15)) == at(BERLIN, 2026, 10, 24, 2, 30)
    # hourly and every 1h at 02:30 of the second showing: the 02:00 of that showing
    for schedule in (cron("0 * * * *", BERLIN), every("1h", BERLIN)):
        fire = last_fire(schedule, at(BERLIN, 2026, 10, 25, 2, 30, fold=1))
        assert shown_one(fire, BERLIN) == "02:00+0100"
    quarter = every("15m", BERLIN)
    assert shown_one(last_fire(quarter, at(BERLIN, 2026, 3, 29, 3, 14)), BERLIN) == "03:00+0200"
    assert shown_one(last_fire(quarter, gap_end - US), BERLIN) == "01:45+0100"
    two_hours = every("2h", BERLIN)  # 02:00 is skipped: it fires at the end of the gap
    assert last_fire(two_hours, at(BERLIN, 2026, 3, 29, 3, 59)) == gap_end


def test_last_fire_in_new_yorks_repeated_hour() -> None:
    job = cron("30 1 * * *", NEW_YORK)
    first_0130 = at(NEW_YORK, 2026, 11, 1, 1, 30)
    assert last_fire(job, at(NEW_YORK, 2026, 11, 1, 1, 10, fold=1)) == first_0130
    assert next_fire(job, at(NEW_YORK, 2026, 11, 1, 1, 10, fold=1)) == at(
        NEW_YORK, 2026, 11, 2, 1, 30
    )
    assert last_fire(job, at(NEW_YORK, 2026, 3, 8, 3, 0)) == at(NEW_YORK, 2026, 3, 8, 1, 30)


SCHEDULES = ["30 2 * * *", "30 1 * * *", "0 * * * *", "*/20 * * * *", "1h", "15m", "7m", "1d", "2h"]


@pytest.mark.parametrize("spec", SCHEDULES)
@pytest.mark.parametrize(("zone_name", "day", "day_hours"), NIGHTS)
def test_next_last_and_between_agree_across_the_nights(
    spec: str, zone_name: str, day: dt.date, day_hours: int
) -> None:
    schedule = cron(spec, zone_name) if " " in spec else every(spec, zone_name)
    start = at(zone_name, day.year, day.month, day.day) - dt.timedelta(hours=2)
    fires = fires_between(schedule, start, start + dt.timedelta(hours=30))
    assert fires == sorted(set(fires)) and fires
    previous = last_fire(schedule, start)
    assert previous is not None and previous <= start
    for fire in fires:
        assert next_fire(schedule, previous) == fire
        assert next_fire(schedule, fire - US) == fire
        assert last_fire(schedule, fire) == fire
        assert last_fire(schedule, fire - US) == previous
        # halfway between two fires, in the zone's own terms: still the previous one
        assert last_fire(schedule, previous + (fire - previous) / 2) == previous
        previous = fire


# -- bounds and errors ------------------------------------------------------------------------


def test_last_fire_looks_back_400_days() -> None:
    leap_day = cron("0 0 29 2 *")
    assert last_fire(leap_day, dt.datetime(2025, 3, 1, tzinfo=UTC)) == dt.datetime(
        2024, 2, 29, tzinfo=UTC
    )
    assert last_fire(leap_day, dt.datetime(2026, 12, 1, tzinfo=UTC)) is None
    rare = Schedule(every=500 * 86_400.0, timezone="UTC")
    epoch_day = 20_000 * 86_400  # a multiple of 500 days since the epoch
    fire = dt.datetime.fromtimestamp(epoch_day, UTC)
    assert last_fire(rare, fire + dt.timedelta(days=399)) == fire
    assert last_fire(rare, fire + dt.timedelta(days=401)) is None


@pytest.mark.parametrize("expr", ["0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *"])
def test_a_cron_line_that_never_fires_is_a_clear_error(expr: str) -> None:
    never = cron(expr, BERLIN)
    now = dt.datetime(2026, 6, 1, tzinfo=UTC)
    calls = [
        lambda: next_fire(never, now),
        lambda: last_fire(never, now),
        lambda: fires_between(never, now, now + dt.timedelta(days=400)),
        lambda: check_schedule(never),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=re.escape(f"cron '{expr}' never fires")):
            within(5, call)


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        (Schedule(cron="61 0 * * *"), "bad minute field"),
        (Schedule(cron="0 0 1 13 *"), "bad month field"),
        (Schedule(cron="0 0 * *"), "five fields"),
        (Schedule(cron="0 0 0 * * *"), "five fields"),
        (Schedule(), "exactly one of cron and every"),
        (Schedule(cron="0 0 * * *", every=60.0), "exactly one of cron and every"),
        (Schedule(every=0.5), "shorter than 1 s"),
        (Schedule(every=float("nan")), "not a number of seconds"),
        (Schedule(every=60.0, timezone="Mars/Olympus"), "not an IANA time zone"),
    ],
)
def test_bad_schedules_are_value_errors_naming_the_value(schedule: Schedule, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_schedule(schedule)
    with pytest.raises(ValueError, match=message):
        next_fire(schedule, dt.datetime(2026, 6, 1, tzinfo=UTC))


def test_a_naive_datetime_is_refused() -> None:
    naive = dt.datetime(2026, 6, 1, 12, 0)
    for call in (
        lambda: next_fire(cron("0 2 * * *"), naive),
        lambda: last_fire(every("15m"), naive),
        lambda: fires_between(every("15m"), naive, dt.datetime(2026, 6, 2, tzinfo=UTC)),
    ):
        with pytest.raises(ValueError, match="naive datetime: give an aware one"):
            call()
    with pytest.raises(TypeError, match="after must be a datetime, not float"):
        next_fire(cron("0 2 * * *"), 1_780_000_000.0)  # type: ignore[arg-type]


def test_describe() -> None:
    assert describe(cron("0 2 * * *", BERLIN)) == "0 2 * * * (Europe/Berlin)"
    assert describe(cron("30  2 * * *", None)) == "30 2 * * * (local)"
    assert describe(every("15m", None)) == "every 15 min"
    assert describe(every("1d", BERLIN)) == "every 1 day (Europe/Berlin)"
    assert describe(every("7m", BERLIN)) == "every 7 min"  # not aligned to the zone
    assert describe(every("1h30m", None)) == "every 1 h 30 min"
    assert describe(every("2d", None)) == "every 2 days"
    assert describe(every("90s", None)) == "every 1 min 30 s"
    assert describe(every("1.5s", None)) == "every 1.5 s"


# -- the local zone ---------------------------------------------------------------------------

_PROBE = """
import datetime as dt, json
from nbremind.scheduler.timing import fires_between, local_zone, zone
class S:
    every = None
    timezone = None
    def __init__(self, cron=None, every=None):
        self.cron, self.every = cron, every
out = {"zone": str(local_zone()), "type": type(zone(S("0 2 * * *"))).__name__}
jobs = {"cron": S("30 2 * * *"), "hourly": S("0 * * * *"), "every": S(every=3600.0)}
for name, s in jobs.items():
    start = dt.datetime(2026, 3, 27, 12, tzinfo=dt.timezone.utc)
    fires = fires_between(s, start, start + dt.timedelta(days=214))
    out[name] = [f.isoformat() for f in fires if f.month in (3, 10) and f.day in (28, 29, 25, 26)]
print(json.dumps(out))
"""


def _local_run(tz: str) -> dict[str, object]:
    env = {**os.environ, "TZ": tz}
    done = subprocess.run(
        [sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def _berlin_fires() -> dict[str, list[str]]:
    start = dt.datetime(2026, 3, 27, 12, tzinfo=UTC)
    out = {}
    for name, s in {
        "cron": cron("30 2 * * *", BERLIN),
        "hourly": cron("0 * * * *", BERLIN),
        "every": every("1h", BERLIN),
    }.items():
        fires = fires_between(s, start, start + dt.timedelta(days=214))
        out[name] = [
            f.isoformat() for f in fires if f.month in (3, 10) and f.day in (28, 29, 25, 26)
        ]
    return out


@pytest.mark.parametrize(
    ("tz", "zone_text", "zone_type"),
    [
        ("Europe/Berlin", "Europe/Berlin", "ZoneInfo"),
        # a POSIX rule zoneinfo cannot load: the C library's local time, DST included
        ("CET-1CEST,M3.5.0,M10.5.0/3", "local", "_SystemLocalTime"),
    ],
)
def test_no_timezone_means_the_machines_zone_with_its_dst(
    tz: str, zone_text: str, zone_type: str
) -> None:
    seen = _local_run(tz)
    assert (seen.pop("zone"), seen.pop("type")) == (zone_text, zone_type)
    assert seen == _berlin_fires()
    assert seen["cron"] == [
        "2026-03-28T01:30:00+00:00",
        "2026-03-29T01:00:00+00:00",  # 03:00 summer time, the end of the gap
        "2026-10-25T00:30:00+00:00",  # the first 02:30
        "2026-10-26T01:30:00+00:00",
    ]


def test_the_local_zone_here_is_a_tzinfo() -> None:
    here = local_zone()
    assert isinstance(here, dt.tzinfo)
    assert zone(Schedule(cron="0 0 * * *")) is here
    now = dt.datetime.now(UTC)
    assert now.astimezone(here).utcoffset() is not None
