"""Delivery: failing, hanging and unavailable channels never reach user code; the rule chain."""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from nbremind import Config, Session, TaskState, configure, remind
from nbremind.channels import Availability, Channel
from nbremind.channels.memory import MemoryChannel
from nbremind.core.notice import Notice, make_notice
from nbremind.core.options import TaskOptions
from nbremind.core.task import Task
from nbremind.delivery.dispatcher import (
    Delivery,
    Dispatcher,
    RuleContext,
    dedup,
    event_filter,
    min_duration,
    mute,
)
from nbremind.testing import FakeClock, capture_notices


class Raising(Channel):
    name = "raising"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def _send(self, notice: Notice) -> None:
        self.calls += 1
        raise RuntimeError("backend exploded")


class Hanging(Channel):
    name = "hanging"

    def __init__(self) -> None:
        super().__init__()
        self.cancelled = threading.Event()

    async def _send(self, notice: Notice) -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise


class Unavailable(Channel):
    name = "off"

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    async def _check(self) -> Availability:
        return Availability(False, "no display")

    async def _send(self, notice: Notice) -> None:
        self.calls += 1


class BrokenCheck(Unavailable):
    async def _check(self) -> Availability:
        raise OSError("bus gone")


def make_session(
    *channels: Channel, send_timeout: float = 10.0, tick: float | None = None
) -> tuple[Session, MemoryChannel]:
    memory = MemoryChannel()
    by_name: dict[str, Channel] = {c.name: c for c in channels}
    by_name["memory"] = memory
    # one try per notice: these tests look at single failures (retries: test_retry.py)
    config = Config(channels=tuple(by_name), send_timeout=send_timeout, retry_attempts=1)
    return Session(config, channels=by_name, tick_interval=tick), memory


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    made: list[Session] = []
    yield made
    for session in made:
        session.close(timeout=1)


def test_a_raising_channel_is_recorded_not_raised(sessions: list[Session]) -> None:
    raising = Raising()
    session, memory = make_session(raising)
    sessions.append(session)
    with remind("etl", session=session) as task:
        pass
    assert task.state is TaskState.SUCCEEDED
    assert session.flush(5)
    assert raising.calls == 1
    assert memory.titles() == ["✓ etl finished"]  # the other channel is not held back
    outcomes = {d.channel: d for d in session.dispatcher.deliveries}
    assert outcomes["raising"].ok is False
    assert outcomes["raising"].error == "RuntimeError: backend exploded"
    assert outcomes["raising"].notice_id == f"{task.id}:success:end"
    assert outcomes["raising"].title == "✓ etl finished"
    assert outcomes["memory"].ok is True and outcomes["memory"].error == ""


def test_a_hanging_channel_is_cut_at_send_timeout(sessions: list[Session]) -> None:
    hanging = Hanging()
    session, memory = make_session(hanging, send_timeout=0.8)
    sessions.append(session)
    assert session.ticker.loop is not None  # start the loop thread before timing
    with remind("etl", session=session):
        began = time.monotonic()
    returned = time.monotonic() - began
    assert returned < 0.2, f"the block's end took {returned:.3f} s"
    assert memory.wait_for(1, timeout=5)[0].title == "✓ etl finished"
    assert memory.received_at[0] - began < 0.5  # not held back by the hanging channel
    assert session.flush(5)
    assert hanging.cancelled.is_set()
    outcomes = {d.channel: d for d in session.dispatcher.deliveries}
    assert outcomes["hanging"].ok is False
    assert outcomes["hanging"].error == "timed out after 0.8 s"


def test_an_unavailable_channel_is_recorded_and_not_sent(sessions: list[Session]) -> None:
    off, broken = Unavailable(), BrokenCheck()
    broken.name = "broken"
    session, memory = make_session(off, broken)
    sessions.append(session)
    with remind("etl", session=session):
        pass
    assert session.flush(5)
    assert off.calls == 0 and broken.calls == 0
    assert memory.titles() == ["✓ etl finished"]
    outcomes = {d.channel: (d.ok, d.error) for d in session.dispatcher.deliveries}
    assert outcomes == {
        "off": (False, "unavailable: no display"),
        "broken": (False, "unavailable: OSError: bus gone"),
        "memory": (True, ""),
    }
    assert session.channel_status() == {
        "off": "unavailable: no display",
        "broken": "unavailable: OSError: bus gone",
        "memory": "available",
    }


def test_an_unknown_channel_name_is_recorded(sessions: list[Session]) -> None:
    session, _ = make_session()
    sessions.append(session)
    with remind("etl", session=session) as task:
        notice = make_notice("success", task.snapshot(), created=0, channels=("pager",))
        session.send(notice, TaskOptions())
    assert session.flush(5)
    failed = [d for d in session.dispatcher.deliveries if d.channel == "pager"]
    assert len(failed) == 1
    assert "ValueError" in failed[0].error and "'pager'" in failed[0].error


def test_session_test_reports_each_channel(sessions: list[Session]) -> None:
    raising, off = Raising(), Unavailable()
    session, memory = make_session(raising, off)
    sessions.append(session)
    session.configure(muted=True)  # a test notice goes out even while muted
    assert session.test() == {
        "raising": "RuntimeError: backend exploded",
        "off": "unavailable: no display",
        "memory": "delivered",
    }
    assert memory.titles() == ["nbremind test notice"]
    assert session.test(["memory"]) == {"memory": "delivered"}
    assert memory.titles() == ["nbremind test notice"] * 2  # a new id each time


def test_session_test_of_a_hanging_channel(sessions: list[Session]) -> None:
    session, _ = make_session(Hanging(), send_timeout=0.2)
    sessions.append(session)
    assert session.test(["hanging"]) == {"hanging": "timed out after 0.2 s"}


def test_nothing_is_sent_after_close() -> None:
    session, memory = make_session()
    with remind("first", session=session):
        pass
    session.close()
    assert memory.titles() == ["✓ first finished"]  # close delivers what is pending
    assert not session.ticker.running
    with remind("second", session=session):
        pass
    assert session.flush(1)
    assert memory.titles() == ["✓ first finished"]


def test_task_end_reaches_the_channel_quickly_with_the_real_ticker(
    sessions: list[Session],
) -> None:
    session, memory = make_session(tick=0.25)
    sessions.append(session)
    latencies = []
    for i in range(5):
        with remind(f"job{i}", session=session):
            ended = time.monotonic()
        memory.wait_for(i + 1, timeout=5)
        latencies.append(memory.received_at[i] - ended)
    assert memory.titles() == [f"✓ job{i} finished" for i in range(5)]
    assert max(latencies) < 0.5, latencies
    assert statistics.median(latencies) < 0.5


def test_the_real_ticker_evaluates_thresholds_by_itself() -> None:
    clock = FakeClock()
    with capture_notices(clock, tick=True) as cap:
        cap.session.configure(tick_interval=0.01)
        with remind("etl", after="1m"):
            clock.advance(60)
            cap.channel.wait_for(1, timeout=5)
    assert cap.titles() == ["⏱ etl still running (1 min)", "✓ etl finished"]


# -- the rule chain ----------------------------------------------------------------------------


def _notice(event: str = "success", elapsed: float = 5.0, key: object = 0) -> Notice:
    clock = FakeClock()
    task = Task("etl", clock=clock)
    task.mark_started()
    clock.advance(elapsed)
    if event in ("success", "failure", "cancel", "timeout"):
        task.mark_ended(TaskState.SUCCEEDED)
    return make_notice(event, task.snapshot(), created=clock.time(), key=key)


def _ctx(
    options: TaskOptions | None = None, config: Config | None = None, sent: set[str] | None = None
) -> RuleContext:
    return RuleContext(options or TaskOptions(), config or Config(), sent or set())


def test_event_filter() -> None:
    assert event_filter(_notice("success"), _ctx()) is not None
    assert event_filter(_notice("start"), _ctx()) is None
    assert event_filter(_notice("after"), _ctx(TaskOptions.parse(after=1))) is not None
    assert event_filter(_notice("success"), _ctx(TaskOptions.parse(on=[]))) is None
    # a configured ``on`` replaces the default end events, thresholds still notify
    config = Config(on=("failure",))
    assert event_filter(_notice("success"), _ctx(config=config)) is None
    assert event_filter(_notice("after"), _ctx(TaskOptions.parse(after=1), config)) is not None


def test_min_duration_rule() -> None:
    short, long = _notice(elapsed=5), _notice(elapsed=120)
    opts = TaskOptions.parse(min_duration="1m")
    assert min_duration(short, _ctx(opts)) is None
    assert min_duration(long, _ctx(opts)) is long
    assert min_duration(short, _ctx(config=Config(min_duration=60))) is None
    assert min_duration(short, _ctx()) is short
    running = _notice("after", elapsed=5)
    assert min_duration(running, _ctx(opts)) is running


def test_mute_and_dedup_rules() -> None:
    notice = _notice()
    assert mute(notice, _ctx(config=Config(muted=True))) is None
    assert mute(notice, _ctx()) is notice
    assert dedup(notice, _ctx(sent={notice.id})) is None
    assert dedup(notice, _ctx(sent={"other"})) is notice


def test_a_rule_can_rewrite_or_drop_a_notice() -> None:
    import dataclasses

    def shout(notice: Notice, ctx: RuleContext) -> Notice | None:
        return dataclasses.replace(notice, title=notice.title.upper())

    def drop_failures(notice: Notice, ctx: RuleContext) -> Notice | None:
        return None if notice.event == "failure" else notice

    with capture_notices() as cap:
        cap.session.dispatcher.rules = (*cap.session.dispatcher.rules, shout, drop_failures)
        with remind("etl"):
            pass
        with pytest.raises(ValueError), remind("bad"):
            raise ValueError("x")
        assert cap.titles() == ["✓ ETL FINISHED"]
        assert cap.session.dispatcher.dropped == 1


def test_dispatch_applies_rules_then_fans_out() -> None:
    memory = MemoryChannel()
    dispatcher = Dispatcher(channels={"memory": memory})
    notice = _notice()
    config = Config(channels=("memory",))

    async def run() -> None:
        await dispatcher.dispatch(notice, TaskOptions(), config)
        await dispatcher.dispatch(notice, TaskOptions(), config)  # same id: dropped
        await dispatcher.dispatch(notice, TaskOptions(), config.updated(muted=True))

    asyncio.run(run())
    assert memory.notices == [notice]
    assert dispatcher.dropped == 2
    assert [(d.channel, d.ok) for d in dispatcher.deliveries] == [("memory", True)]


def test_dispatch_returns_its_deliveries_and_listeners_hear_each_outcome() -> None:
    from nbremind.channels.null import NullChannel

    memory, null = MemoryChannel(), NullChannel()
    dispatcher = Dispatcher(channels={"memory": memory, "null": null})
    heard: list[tuple[str, bool]] = []
    stop = dispatcher.listen(lambda d: heard.append((d.channel, d.ok)))
    config = Config(channels=("memory", "null"))

    notice = _notice()

    async def run() -> tuple[list[Delivery], list[Delivery], list[Delivery]]:
        first = await dispatcher.dispatch(notice, TaskOptions(), config)
        again = await dispatcher.dispatch(notice, TaskOptions(), config)  # same id: dropped
        stop()
        later = await dispatcher.dispatch(_notice(key=2), TaskOptions(), config)
        return first, again, later

    first, again, later = asyncio.run(run())
    assert sorted((d.channel, d.ok) for d in first) == [("memory", True), ("null", True)]
    assert again == []  # a rule dropped it: nothing was tried
    assert len(later) == 2
    assert sorted(heard) == [("memory", True), ("null", True)]  # not after stop()


def test_configure_reaches_the_captured_session() -> None:
    with capture_notices() as cap:
        configure(send_timeout="2s", muted=True)
        assert cap.session.config.send_timeout == 2.0
        assert cap.session.config.muted is True
