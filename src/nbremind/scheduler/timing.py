"""When a job fires: the next fire after a moment, the latest one before it, the fires in a
range, and a schedule's one-line description.

A schedule is a cron line (``"0 2 * * *"``, five fields: minute hour day-of-month month
day-of-week, parsed by cronsim) or an ``every`` interval in seconds, read in the job's IANA
time zone (the machine's local zone when it names none). Every function takes and returns
aware datetimes; fires come back in UTC. A naive datetime is a ``ValueError``.

Daylight-saving changes (measured on cronsim 2.8, and tested on the 2026 changes in
Europe/Berlin and America/New_York):

* **cron, a fixed time** (neither the minute nor the hour field starts with ``*``:
  ``30 2 * * *``, ``0 9 * * 1-5``) follows the wall clock, as Debian's cron does. A time the
  clock skips runs once at the first minute after the gap: ``30 2 * * *`` runs at 03:00 on
  the spring-forward night in Berlin. A time the clock shows twice runs once, at its first
  showing: 02:30 summer time on the fall-back night in Berlin (01:30 daylight time in New
  York, where the repeated hour is 01:00-01:59).
* **cron, a wildcard minute or hour** (``0 * * * *``, ``*/15 * * * *``, ``0 */2 * * *``)
  follows elapsed time: it fires whenever the clock shows a matching time, so it does not
  fire in the skipped hour and fires twice in the repeated one. ``0 * * * *`` fires 23 times
  on the 23-hour day and 25 times on the 25-hour day; ``0 */2 * * *`` loses its 02:00 run on
  the spring-forward night (the clock never shows it).
* **every, a period that divides 24 h** (``15m``, ``1h``, ``1d``) is aligned to midnight of
  the job's zone: it fires whenever the local clock shows a multiple of the period since
  midnight (every 15 min: :00, :15, :30, :45 local; ``1d``: each local midnight). In the
  repeated hour the clock shows those times twice, so they fire twice and the interval stays
  an interval: every 1 h fires 25 times on the 25-hour day. A multiple the clock skips fires
  once, at the end of the gap (like a fixed cron time): every 1 h fires at 01:00 and then
  03:00 on the 23-hour day in Berlin, 23 times in all; every 15 min fires at 01:45, then
  03:00, then 03:15.
* **every, any other period** (``7m``, ``2d``) counts from the Unix epoch (00:00 UTC, 1 Jan
  1970) and ignores the zone: a fire every period of elapsed time, DST or not.

cronsim's own loop gives up after 50 years without a fire; a line that can never fire
(``0 0 31 2 *``) is refused at once: both are a ``ValueError`` saying it never fires.
:func:`last_fire` looks back :data:`HORIZON` (400 days) at most.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
import os
import time
import zoneinfo
from typing import Protocol

from cronsim import CronSim, CronSimError

from ..core.jobs import MIN_EVERY

__all__ = [
    "HORIZON",
    "ScheduleLike",
    "check_schedule",
    "describe",
    "fires_between",
    "last_fire",
    "local_zone",
    "next_fire",
    "zone",
]

UTC = dt.timezone.utc
#: How far back :func:`last_fire` looks for the run that should have happened.
HORIZON = dt.timedelta(days=400)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)
_US = dt.timedelta(microseconds=1)
_SECOND_US = 1_000_000
_DAY_US = 86_400 * _SECOND_US
_FIELDS = "minute hour day-of-month month day-of-week"
#: Steps any loop here takes at most (a DST correction needs one or two).
_STEPS = 16


class ScheduleLike(Protocol):
    """What the timing functions read of a schedule: exactly one of ``cron`` (a five-field
    cron line) and ``every`` (seconds), and ``timezone`` (an IANA name; ``None``: local)."""

    @property
    def cron(self) -> str | None: ...

    @property
    def every(self) -> float | None: ...

    @property
    def timezone(self) -> str | None: ...


# -- time zones -------------------------------------------------------------------------------


class _SystemLocalTime(dt.tzinfo):
    """The process's local time as the C library keeps it (:func:`time.localtime`), as a
    tzinfo that follows DST; for machines whose zone has no IANA name zoneinfo can load (a
    POSIX ``TZ`` rule, Windows)."""

    def __repr__(self) -> str:
        return "_SystemLocalTime()"

    def __str__(self) -> str:
        return "local"

    @staticmethod
    def _gmtoff(seconds: float) -> int:
        return time.localtime(math.floor(seconds)).tm_gmtoff

    def _wall_seconds(self, when: dt.datetime) -> float:
        return (when.replace(tzinfo=None) - _NAIVE_EPOCH).total_seconds()

    def utcoffset(self, when: dt.datetime | None) -> dt.timedelta:
        if when is None:
            return dt.timedelta(seconds=-time.timezone)
        wall = self._wall_seconds(when)
        # the offsets a day either side: at most one change lies between them
        before, after = self._gmtoff(wall - 86_400), self._gmtoff(wall + 86_400)
        valid = [o for o in {before, after} if self._gmtoff(wall - o) == o]
        if len(valid) == 2:  # shown twice: fold 0 is the earlier instant (the larger offset)
            offset = min(valid) if when.fold else max(valid)
        elif valid:
            offset = valid[0]
        else:  # skipped: fold 0 reads it with the offset before the change (PEP 495)
            offset = after if when.fold else before
        return dt.timedelta(seconds=offset)

    def dst(self, when: dt.datetime | None) -> dt.timedelta:
        return self.utcoffset(when) - dt.timedelta(seconds=-time.timezone)

    def tzname(self, when: dt.datetime | None) -> str:
        if when is None:
            return time.tzname[0]
        wall = self._wall_seconds(when) - self.utcoffset(when).total_seconds()
        return time.localtime(math.floor(wall)).tm_zone

    def fromutc(self, when: dt.datetime) -> dt.datetime:
        seconds = (when.replace(tzinfo=None) - _NAIVE_EPOCH).total_seconds()
        offset = self._gmtoff(seconds)
        local = when + dt.timedelta(seconds=offset)
        earlier = self._gmtoff(seconds - 86_400)
        # the same wall time was shown before, with the larger offset of the last day
        shown_before = earlier > offset and self._gmtoff(seconds + offset - earlier) == earlier
        return local.replace(fold=1 if shown_before else 0)


@functools.lru_cache(maxsize=8)
def _local_zone(tz_variable: str | None) -> dt.tzinfo:
    if tz_variable:
        name = tz_variable.removeprefix(":")
        try:
            if os.path.isabs(name):
                with open(name, "rb") as file:
                    return zoneinfo.ZoneInfo.from_file(file, key=name)
            return zoneinfo.ZoneInfo(name)
        # not found (a KeyError): a POSIX rule such as "CET-1CEST,M3.5.0,M10.5.0/3"
        except (OSError, ValueError, KeyError):
            return _SystemLocalTime()
    target = os.path.realpath("/etc/localtime")
    if "/zoneinfo/" in target:
        try:
            return zoneinfo.ZoneInfo(target.split("/zoneinfo/", 1)[1])
        except (OSError, ValueError, KeyError):
            pass
    return _SystemLocalTime()


def local_zone() -> dt.tzinfo:
    """The machine's local time zone: the IANA zone named by ``TZ`` or ``/etc/localtime``
    (a :class:`zoneinfo.ZoneInfo`), else the C library's local time as a tzinfo; either
    follows DST. Read once per value of ``TZ``."""
    return _local_zone(os.environ.get("TZ"))


def zone(schedule: ScheduleLike) -> dt.tzinfo:
    """The time zone ``schedule`` is read in: its IANA ``timezone``, else the local zone."""
    if schedule.timezone is None:
        return local_zone()
    try:
        return zoneinfo.ZoneInfo(schedule.timezone)
    except (ValueError, zoneinfo.ZoneInfoNotFoundError):
        raise ValueError(
            f"timezone {schedule.timezone!r} is not an IANA time zone such as Europe/Berlin"
        ) from None


# -- checks -----------------------------------------------------------------------------------


def _kind(schedule: ScheduleLike) -> str:
    """``"cron"`` or ``"every"``; a ``ValueError`` unless exactly one is set and valid."""
    cron, every = schedule.cron, schedule.every
    if (cron is None) == (every is None):
        raise ValueError("a schedule needs exactly one of cron and every")
    if cron is not None:
        if not isinstance(cron, str) or len(cron.split()) != 5:
            raise ValueError(f"cron {cron!r} is not a cron line of five fields ({_FIELDS})")
        return "cron"
    if isinstance(every, bool) or not isinstance(every, (int, float)) or not math.isfinite(every):
        raise ValueError(f"every {every!r} is not a number of seconds")
    if every < MIN_EVERY:
        raise ValueError(f"every {every!r} is shorter than {MIN_EVERY:g} s, the shortest it may be")
    return "every"


def _cronsim(expr: str, start: dt.datetime, reverse: bool = False) -> CronSim:
    try:
        return CronSim(expr, start, reverse=reverse)
    except CronSimError as exc:
        fields = expr.split()
        try:  # each field valid, and valid with any month: its days are in none of its months
            CronSim(f"0 0 1 {fields[3]} *", start)
            CronSim(" ".join([*fields[:3], "*", fields[4]]), start)
        except CronSimError:
            raise ValueError(f"cron {expr!r}: {str(exc).lower()} field ({_FIELDS})") from None
        raise ValueError(
            f"cron {expr!r} never fires: none of its months has day {fields[2]}"
        ) from None


def _never(expr: str) -> ValueError:
    return ValueError(f"cron {expr!r} never fires (no fire within 50 years)")


def check_schedule(schedule: ScheduleLike) -> None:
    """Raise ``ValueError`` (naming the value) unless ``schedule`` can be computed: exactly
    one of ``cron`` and ``every``, a cron line cronsim reads and that can fire, an interval of
    at least ``MIN_EVERY`` (:mod:`nbremind.core.jobs`) seconds, a known time zone."""
    zone(schedule)
    if _kind(schedule) == "cron":
        next_fire(schedule, dt.datetime.now(UTC))


def _aware(when: object, name: str) -> dt.datetime:
    if not isinstance(when, dt.datetime):
        raise TypeError(f"{name} must be a datetime, not {type(when).__name__}")
    if when.utcoffset() is None:
        raise ValueError(
            f"{name} {when.isoformat()} is a naive datetime: give an aware one,"
            " such as datetime.now(timezone.utc)"
        )
    # in UTC: two datetimes of one zone compare by wall clock, blind to a repeated hour
    return when.astimezone(UTC)


# -- cron -------------------------------------------------------------------------------------


def _next_cron(expr: str, tz: dt.tzinfo, after: dt.datetime) -> dt.datetime:
    fires = _cronsim(expr, after.astimezone(tz))
    for _ in range(_STEPS):
        try:
            fire = next(fires).astimezone(UTC)
        except StopIteration:
            raise _never(expr) from None
        # cronsim walks fixed times on the naive wall clock: from the second showing of a
        # repeated hour it can give the first showing, which is earlier than ``after``
        if fire > after:
            return fire
    raise _never(expr)  # pragma: no cover - cronsim moves forward at every step


def _last_cron(expr: str, tz: dt.tzinfo, before: dt.datetime) -> dt.datetime | None:
    local = before.astimezone(tz)
    # cronsim going back yields fires strictly before its start (whole seconds)
    start = local.replace(microsecond=0) + dt.timedelta(seconds=1)
    fires = _cronsim(expr, start, reverse=True)
    found: dt.datetime | None = None
    try:
        for _ in range(_STEPS):
            fire = next(fires).astimezone(UTC)
            if fire <= before:
                found = fire
                break
    except StopIteration:
        found = None
    if local.fold:
        # in the second showing of a repeated hour cronsim's naive walk back misses a fire
        # of the first showing; step forward from what it found
        probe = found if found is not None else before - HORIZON
        for _ in range(_STEPS):
            fire = _next_cron(expr, tz, probe)
            if fire > before:
                break
            found = probe = fire
    return found


# -- every ------------------------------------------------------------------------------------


def _period_us(every: float) -> int:
    return max(1, round(every * _SECOND_US))


def _offset_us(tz: dt.tzinfo, t: int) -> int:
    offset = (_EPOCH + t * _US).astimezone(tz).utcoffset()
    return 0 if offset is None else offset // _US


def _change(tz: dt.tzinfo, lo: int, hi: int) -> int:
    """The first instant in ``(lo, hi]`` whose UTC offset is that of ``hi`` (one change)."""
    target = _offset_us(tz, hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _offset_us(tz, mid) == target:
            hi = mid
        else:
            lo = mid
    return hi


def _skips_multiple(start: int, end: int, period: int) -> bool:
    """Whether the wall-clock readings ``[start, end)`` (µs) hold a multiple of ``period``."""
    return -(-start // period) * period < end


def _next_local(tz: dt.tzinfo, t: int, period: int) -> int:
    """The first instant after ``t`` when the clock of ``tz`` shows a multiple of ``period``
    (or the end of a gap that skips one)."""
    offset = _offset_us(tz, t)
    for _ in range(_STEPS):
        fire = ((t + offset) // period + 1) * period - offset
        if _offset_us(tz, fire) == offset:
            return fire
        change = _change(tz, t, fire)
        new = _offset_us(tz, change)
        if new > offset and _skips_multiple(change + offset, change + new, period):
            return change
        t, offset = change - 1, new
    raise AssertionError("no fire found")  # pragma: no cover - a change a step at most


def _last_local(tz: dt.tzinfo, t: int, period: int) -> int:
    """The latest instant at or before ``t`` when the clock of ``tz`` shows a multiple of
    ``period`` (or the end of a gap that skipped one)."""
    offset = _offset_us(tz, t)
    for _ in range(_STEPS):
        fire = ((t + offset) // period) * period - offset
        if _offset_us(tz, fire) == offset:
            return fire
        change = _change(tz, fire, t)
        old = _offset_us(tz, change - 1)
        if offset > old and _skips_multiple(change + old, change + offset, period):
            return change
        t, offset = change - 1, old
    raise AssertionError("no fire found")  # pragma: no cover - a change a step at most


def _us(when: dt.datetime) -> int:
    return (when - _EPOCH) // _US


def _utc(t: int) -> dt.datetime:
    return _EPOCH + t * _US


def _every(schedule: ScheduleLike) -> tuple[int, dt.tzinfo | None]:
    """The period in µs, and the zone it is aligned in (``None``: the Unix epoch)."""
    assert schedule.every is not None
    period = _period_us(schedule.every)
    return period, zone(schedule) if _DAY_US % period == 0 else None


# -- the calls --------------------------------------------------------------------------------


def next_fire(schedule: ScheduleLike, after: dt.datetime) -> dt.datetime:
    """The first fire of ``schedule`` strictly after ``after`` (aware), in UTC."""
    after = _aware(after, "after")
    if _kind(schedule) == "cron":
        assert schedule.cron is not None
        return _next_cron(schedule.cron, zone(schedule), after)
    period, tz = _every(schedule)
    t = _us(after)
    return _utc((t // period + 1) * period if tz is None else _next_local(tz, t, period))


def last_fire(schedule: ScheduleLike, before: dt.datetime) -> dt.datetime | None:
    """The latest fire of ``schedule`` at or before ``before`` (aware), in UTC: the run that
    should have happened most recently; ``None`` when there was none in :data:`HORIZON`."""
    before = _aware(before, "before")
    if _kind(schedule) == "cron":
        assert schedule.cron is not None
        fire = _last_cron(schedule.cron, zone(schedule), before)
    else:
        period, tz = _every(schedule)
        t = _us(before)
        fire = _utc((t // period) * period if tz is None else _last_local(tz, t, period))
    return None if fire is None or fire < before - HORIZON else fire


def fires_between(
    schedule: ScheduleLike, start: dt.datetime, end: dt.datetime, limit: int = 1000
) -> list[dt.datetime]:
    """The fires of ``schedule`` after ``start`` and at or before ``end`` (aware), in UTC and
    in order; the first ``limit`` of them when there are more."""
    start, end = _aware(start, "start"), _aware(end, "end")
    fires: list[dt.datetime] = []
    if end <= start or limit <= 0:
        return fires
    if _kind(schedule) == "cron":
        assert schedule.cron is not None
        tz = zone(schedule)
        walk = _cronsim(schedule.cron, start.astimezone(tz))
        last = start
        while len(fires) < limit:
            try:
                fire = next(walk).astimezone(UTC)
            except StopIteration:
                break
            if fire > end:
                break
            if fire > last:  # (the naive walk may repeat a fire of a repeated hour)
                fires.append(fire)
                last = fire
        return fires
    period, every_tz = _every(schedule)
    t, stop = _us(start), _us(end)
    while len(fires) < limit:
        t = (t // period + 1) * period if every_tz is None else _next_local(every_tz, t, period)
        if t > stop:
            break
        fires.append(_utc(t))
    return fires


def _period_text(seconds: float) -> str:
    if seconds != int(seconds):
        return f"{seconds:g} s"
    rest, parts = int(seconds), []
    for size, one, many in ((86_400, "day", "days"), (3600, "h", "h"), (60, "min", "min")):
        count, rest = divmod(rest, size)
        if count:
            parts.append(f"{count} {one if count == 1 else many}")
    if rest:
        parts.append(f"{rest} s")
    return " ".join(parts)


def describe(schedule: ScheduleLike) -> str:
    """``schedule`` in a few words for listings: ``"0 2 * * * (Europe/Berlin)"``,
    ``"30 2 * * * (local)"``, ``"every 15 min"``, ``"every 1 day (Europe/Berlin)"`` (the
    zone is named for an interval aligned to its midnight)."""
    if _kind(schedule) == "cron":
        return f"{' '.join(str(schedule.cron).split())} ({schedule.timezone or 'local'})"
    assert schedule.every is not None
    text = f"every {_period_text(schedule.every)}"
    if schedule.timezone and _DAY_US % _period_us(schedule.every) == 0:
        text += f" ({schedule.timezone})"
    return text
