"""Quiet hours with a fake clock: across midnight, DST changes, the digest, the allow list."""

from __future__ import annotations

import datetime as dt
import os
import time
import zoneinfo
from collections.abc import Iterator

import pytest

from nbremind import get_session, remind
from nbremind.delivery.quiet import QuietWindow
from nbremind.testing import CapturedNotices, FakeClock, capture_notices

BERLIN = "Europe/Berlin"
NEW_YORK = "America/New_York"


def wall(zone: str, *when: int) -> float:
    """Wall-clock seconds of a local date and time in ``zone``."""
    return dt.datetime(*when, tzinfo=zoneinfo.ZoneInfo(zone)).timestamp()  # type: ignore[misc]


def quiet_session(clock: FakeClock, zone: str, **settings: object) -> Iterator[CapturedNotices]:
    with capture_notices(clock) as cap:
        cap.session.configure(quiet_hours="22:00-07:00", timezone=zone, **settings)
        yield cap


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=wall(BERLIN, 2026, 11, 27, 21, 0))


@pytest.fixture
def cap(clock: FakeClock) -> Iterator[CapturedNotices]:
    yield from quiet_session(clock, BERLIN, quiet_allow=["failure"])


def run(name: str, clock: FakeClock, minutes: float = 1, fail: bool = False) -> None:
    """A task of ``minutes`` that succeeds or fails; returns once its notice was handled (the
    fake clock jumps ahead next, faster than the loop thread would see it)."""
    try:
        _run(name, clock, minutes, fail)
    finally:
        assert get_session().flush(10)


def _run(name: str, clock: FakeClock, minutes: float, fail: bool) -> None:
    if fail:
        with pytest.raises(RuntimeError), remind(name):
            clock.advance(minutes * 60)
            raise RuntimeError("disk full")
    else:
        with remind(name):
            clock.advance(minutes * 60)


def test_across_midnight_held_then_one_digest(cap: CapturedNotices, clock: FakeClock) -> None:
    run("before", clock, minutes=30)  # ends 21:30: not quiet
    clock.advance(90 * 60)  # 23:00
    run("late", clock)  # ends 23:01
    clock.advance(3 * 3600)  # 02:01, the next day
    run("night", clock, minutes=14)  # ends 02:15
    assert cap.titles() == ["✓ before finished"]
    clock.advance(dt.timedelta(hours=4, minutes=44, seconds=59).total_seconds())  # 06:59:59
    cap.session.tick()
    assert cap.titles() == ["✓ before finished"]
    clock.advance(1)  # 07:00
    cap.session.tick()
    cap.session.tick()  # a second tick sends nothing more
    assert cap.titles() == ["✓ before finished", "nbremind: 2 notices during quiet hours"]
    digest = cap.notices[-1]
    assert digest.event == "digest"
    assert digest.body.splitlines() == ["23:01 ✓ late finished", "02:15 ✓ night finished"]
    assert digest.urgency == "normal"
    run("morning", clock)
    assert cap.titles()[-1] == "✓ morning finished"  # after quiet hours: sent at once
    assert len(cap.notices) == 3


def test_the_allow_list_goes_through(cap: CapturedNotices, clock: FakeClock) -> None:
    clock.advance(2 * 3600)  # 23:00
    run("ok", clock)
    run("broken", clock, fail=True)
    assert cap.titles() == ["✗ broken failed"]  # at once, during quiet hours
    clock.advance(8 * 3600)
    cap.session.tick()
    assert cap.titles() == ["✗ broken failed", "nbremind: 1 notice during quiet hours"]
    assert cap.notices[-1].body == "23:01 ✓ ok finished"


def test_a_digest_of_many_lists_twenty_and_counts_the_rest(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    clock.advance(2 * 3600)
    for i in range(25):
        run(f"job{i}", clock, minutes=1)
    clock.advance(8 * 3600)
    cap.session.tick()
    assert cap.titles() == ["nbremind: 25 notices during quiet hours"]
    [digest] = cap.notices
    assert digest.title == "nbremind: 25 notices during quiet hours"
    lines = digest.body.splitlines()
    assert len(lines) == 21 and lines[0] == "23:01 ✓ job0 finished"
    assert lines[-1] == "… and 5 more"


def test_a_night_with_the_clocks_going_back_is_an_hour_longer() -> None:
    # Europe/Berlin leaves summer time on 2026-10-25 at 03:00 (back to 02:00)
    clock = FakeClock(wall=wall(BERLIN, 2026, 10, 24, 23, 0))
    for cap in quiet_session(clock, BERLIN):
        run("late", clock)  # 23:01 CEST
        clock.advance(8 * 3600)  # 06:01 CET: eight hours later, still quiet
        cap.session.tick()
        assert cap.titles() == []
        clock.advance(59 * 60 - 1)  # 06:59:59
        cap.session.tick()
        assert cap.titles() == []
        clock.advance(1)  # 07:00 CET, nine hours after 22:00 CEST
        cap.session.tick()
        assert cap.titles() == ["nbremind: 1 notice during quiet hours"]
        assert clock.time() == wall(BERLIN, 2026, 10, 25, 7, 0)


def test_a_night_with_the_clocks_going_forward_is_an_hour_shorter() -> None:
    # America/New_York starts daylight saving time on 2026-03-08 at 02:00 (to 03:00)
    clock = FakeClock(wall=wall(NEW_YORK, 2026, 3, 7, 23, 30))
    for cap in quiet_session(clock, NEW_YORK):
        run("late", clock)  # 23:31 EST
        clock.advance(dt.timedelta(hours=6, minutes=28, seconds=59).total_seconds())
        cap.session.tick()  # 06:59:59 EDT
        assert cap.titles() == []
        clock.advance(1)  # 07:00 EDT: 7.5 h after 23:30, not 8.5
        cap.session.tick()
        assert cap.titles() == ["nbremind: 1 notice during quiet hours"]
        assert cap.notices[0].body == "23:31 ✓ late finished"


def test_a_daytime_window_and_its_boundaries() -> None:
    window = QuietWindow(12 * 60, 13 * 60 + 30, "UTC")
    noon = wall("UTC", 2026, 6, 1, 12, 0)
    assert window.end_after(noon - 1) is None
    assert window.end_after(noon) == noon + 5400
    assert window.end_after(noon + 5399) == noon + 5400
    assert window.end_after(noon + 5400) is None
    night = QuietWindow(22 * 60, 7 * 60, "UTC")
    late = wall("UTC", 2026, 12, 31, 23, 0)  # across midnight, month and year
    assert night.end_after(late) == wall("UTC", 2027, 1, 1, 7, 0)
    assert night.end_after(wall("UTC", 2027, 1, 1, 6, 59)) == wall("UTC", 2027, 1, 1, 7, 0)
    assert night.contains(late) and not night.contains(wall("UTC", 2027, 1, 1, 12, 0))


@pytest.fixture
def local_zone_new_york() -> Iterator[None]:
    previous = os.environ.get("TZ")
    os.environ["TZ"] = NEW_YORK
    time.tzset()
    try:
        yield
    finally:
        if previous is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = previous
        time.tzset()


@pytest.mark.usefixtures("local_zone_new_york")
def test_without_a_timezone_the_local_zone_is_used() -> None:
    window = QuietWindow(22 * 60, 7 * 60, None)
    late = wall(NEW_YORK, 2026, 3, 7, 23, 0)
    assert window.end_after(late) == wall(NEW_YORK, 2026, 3, 8, 7, 0)  # across the DST change
    assert window.end_after(wall(NEW_YORK, 2026, 3, 8, 7, 0)) is None


def test_the_digest_goes_out_without_a_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """No task runs at the end of quiet hours: the dispatcher's own timer sends it."""
    # the timer sleeps in real time; look at the fake clock often
    monkeypatch.setattr("nbremind.delivery.dispatcher._QUIET_CHECK_EVERY", 0.02)
    clock = FakeClock(wall=wall(BERLIN, 2026, 11, 28, 6, 59))
    for cap in quiet_session(clock, BERLIN):
        run("late", clock, minutes=0.5)  # ends 06:59:30, quiet
        assert cap.titles() == []
        clock.advance(30)  # 07:00; nobody calls tick()
        assert [n.title for n in cap.channel.wait_for(1, timeout=10)] == [
            "nbremind: 1 notice during quiet hours"
        ]


def test_a_task_with_its_own_channels_gets_its_own_digest(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    from nbremind.channels.memory import MemoryChannel

    other = MemoryChannel()  # stands in for a second, real channel
    cap.session.dispatcher._channels["null"] = other
    clock.advance(2 * 3600)
    run("plain", clock)
    with remind("routed", channels=["null"]):
        clock.advance(60)
    assert cap.session.flush(10)
    clock.advance(8 * 3600)
    cap.session.tick()
    assert cap.titles() == ["nbremind: 1 notice during quiet hours"]
    assert cap.notices[0].body.endswith("✓ plain finished")
    assert [n.body for n in other.notices] == ["23:02 ✓ routed finished"]


def test_a_test_notice_is_never_held(cap: CapturedNotices, clock: FakeClock) -> None:
    clock.advance(2 * 3600)  # 23:00
    assert cap.session.test(["memory"]) == {"memory": "delivered"}
    assert cap.titles() == ["nbremind test notice"]


def test_notices_still_held_at_exit_are_reported(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    for cap in quiet_session(clock, BERLIN):
        clock.advance(2 * 3600)
        run("late", clock)
        run("later", clock)
        assert cap.titles() == []
        with caplog.at_level("WARNING", logger="nbremind"):
            cap.session.close()
    assert "2 notices held for quiet hours not sent" in caplog.text
