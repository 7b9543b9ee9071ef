"""Thresholds with a fake clock: each fires as documented, and the rules drop what they should."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from _captured import run_for
from nbremind import TaskState, configure, remind
from nbremind.core.notice import make_notice
from nbremind.core.task import Task
from nbremind.core.thresholds import Due, Watch
from nbremind.testing import CapturedNotices, FakeClock, capture_notices


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


class Memory:
    """Feeds the session the process RSS a test wants."""

    def __init__(self) -> None:
        self.rss: int | None = None

    def __call__(self, now: float) -> int | None:
        return self.rss


@pytest.fixture
def memory() -> Memory:
    return Memory()


@pytest.fixture
def cap(
    clock: FakeClock, memory: Memory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[CapturedNotices]:
    with capture_notices(clock) as captured:
        monkeypatch.setattr(captured.session.sampler, "rss", memory)
        yield captured


def after_times(cap: CapturedNotices) -> list[float]:
    return [round(n.task.elapsed) for n in cap.notices if n.event == "after"]


def test_after_fires_once(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl", after="10m"):
        run_for(cap, clock, 590)
        assert cap.notices == []
        run_for(cap, clock, 10)
        assert cap.titles() == ["⏱ etl still running (10 min)"]
        run_for(cap, clock, 3600)
    assert after_times(cap) == [600]
    assert cap.events() == ["after", "success"]


def test_after_then_every(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl", after="10m", every="5m"):
        run_for(cap, clock, 1800)
    assert after_times(cap) == [600, 900, 1200, 1500, 1800]
    ids = [n.id for n in cap.notices if n.event == "after"]
    assert len(set(ids)) == len(ids)


def test_every_alone(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl", every="5m"):
        run_for(cap, clock, 1000)
    assert after_times(cap) == [300, 600, 900]


def test_every_after_a_long_sleep_fires_once_not_a_burst(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    with remind("etl", every="1m"):
        clock.advance(3600)  # the laptop slept for an hour
        cap.session.tick()
        assert len(cap.notices) == 1
        run_for(cap, clock, 60)
    assert after_times(cap) == [3600, 3660]


def test_progress_marks_fire_once_each(cap: CapturedNotices) -> None:
    with remind("etl", total=100, progress=[0.25, "50%", 0.75]) as task:
        task.set(10)
        cap.session.tick()
        assert cap.notices == []
        task.set(30)
        cap.session.tick()
        cap.session.tick()
        assert cap.titles() == ["etl reached 25%"]
        task.set(90)  # 50% and 75% crossed between two ticks
        cap.session.tick()
        task.set(100)
        cap.session.tick()
    assert cap.titles() == ["etl reached 25%", "etl reached 75%", "✓ etl finished"]


def test_progress_without_a_total_never_fires(cap: CapturedNotices) -> None:
    with remind("etl", progress=0.5) as task:
        task.advance(1000)
        cap.session.tick()
        task.total = 4000
        cap.session.tick()
        assert cap.notices == []
        task.total = 1000
        cap.session.tick()
    assert cap.titles() == ["etl reached 50%", "✓ etl finished"]


def test_memory_fires_once_per_crossing(
    cap: CapturedNotices, clock: FakeClock, memory: Memory
) -> None:
    with remind("etl", mem="8GB") as task:
        for rss in (1e9, 8e9, 9e9, 9.5e9, 2e9, 2e9, 8.5e9, 8.6e9):
            memory.rss = int(rss)
            clock.advance(1)
            cap.session.tick()
        assert task.rss == 8_600_000_000
        assert task.peak_rss == 9_500_000_000
    assert cap.titles() == ["⚠ etl memory 9.0 GB", "⚠ etl memory 8.5 GB", "✓ etl finished"]


def test_memory_unknown_never_fires(cap: CapturedNotices, memory: Memory) -> None:
    memory.rss = None
    with remind("etl", mem="1B"):
        cap.session.tick()
    assert cap.events() == ["success"]


def test_when_fires_once(cap: CapturedNotices) -> None:
    calls = []

    def converged(task: Task) -> bool:
        calls.append(task)
        return task.metrics.get("loss", 1.0) < 0.1

    with remind("train", when=converged) as task:
        cap.session.tick()
        assert cap.notices == []
        task.metric(loss=0.05)
        cap.session.tick()
        cap.session.tick()
    assert calls == [task, task]  # not asked again once true
    assert cap.titles() == ["train: condition met", "✓ train finished"]


def test_a_raising_predicate_is_recorded_never_raised(cap: CapturedNotices) -> None:
    calls = []

    def broken(task: Task) -> bool:
        calls.append(1)
        raise ZeroDivisionError("division by zero")

    with remind("train", when=broken) as task:
        cap.session.tick()  # must not raise
        cap.session.tick()
    assert calls == [1]  # a broken predicate is not called again
    assert task.state is TaskState.SUCCEEDED
    note = "when= predicate failed: ZeroDivisionError: division by zero"
    assert task.snapshot().notes == (note,)
    assert cap.events() == ["success"]
    assert note in cap.notices[0].body


def test_min_duration_drops_end_notices_of_short_tasks(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    with remind("quick", min_duration="1m"):
        clock.advance(30)
    with pytest.raises(ValueError), remind("quick-fail", min_duration="1m"):
        clock.advance(30)
        raise ValueError("bad row")
    with remind("slow", min_duration="1m"):
        clock.advance(61)
    assert cap.titles() == ["✓ slow finished"]


def test_min_duration_keeps_threshold_notices(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl", after="10s", min_duration="1m"):
        run_for(cap, clock, 30)
    assert cap.events() == ["after"]


def test_configured_min_duration(cap: CapturedNotices, clock: FakeClock) -> None:
    configure(min_duration="1m")
    with remind("quick"):
        clock.advance(30)
    with remind("override", min_duration="10s"):
        clock.advance(30)
    assert cap.titles() == ["✓ override finished"]


@pytest.mark.parametrize("on", [[], "none"])
def test_on_none_notifies_nothing_but_the_task_is_tracked(
    cap: CapturedNotices, clock: FakeClock, memory: Memory, on: object
) -> None:
    memory.rss = 10**12
    with remind("etl", on=on, after="1m", total=10, progress=0.5, mem="1GB", timeout="2m") as task:
        assert cap.session.running() == [task]
        task.set(6)
        run_for(cap, clock, 300)
    assert cap.notices == []
    assert task in cap.session.tasks()
    assert task.state is TaskState.TIMED_OUT
    assert task.peak_rss == 10**12
    assert cap.session.running() == []


def test_on_selects_events(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl", on="start,after", after="1m"):
        run_for(cap, clock, 60)
    assert cap.titles() == ["▶ etl started", "⏱ etl still running (1 min)"]


def test_mute_and_unmute(cap: CapturedNotices, clock: FakeClock) -> None:
    configure(muted=True)
    with remind("etl", after="1m") as task:
        run_for(cap, clock, 120)
    assert task.state is TaskState.SUCCEEDED
    assert cap.notices == []
    assert cap.session.dispatcher.dropped == 2  # the "after" notice and the end notice
    configure(muted=False)
    with remind("etl2"):
        pass
    assert cap.titles() == ["✓ etl2 finished"]


def test_same_notice_twice_is_delivered_once(cap: CapturedNotices) -> None:
    with remind("etl", after="1h") as task:
        notice = make_notice("after", task.snapshot(), created=0.0, key=1)
        again = make_notice("after", task.snapshot(), created=1.0, key=1)
        other = make_notice("after", task.snapshot(), created=2.0, key=2)
        assert notice.id == again.id != other.id
        for n in (notice, again, other):
            cap.session.send(n, task.options)
    notices = cap.notices
    assert notices[:2] == [notice, other]
    assert [n.event for n in notices] == ["after", "after", "success"]
    assert cap.session.dispatcher.dropped == 1


def test_tick_without_running_tasks(cap: CapturedNotices) -> None:
    assert cap.session.tick() is False
    with remind("etl"):
        assert cap.session.tick() is True
    assert cap.session.tick() is False


def test_watch_check_directly(clock: FakeClock) -> None:
    from nbremind.core.options import TaskOptions

    task = Task(
        "etl",
        clock=clock,
        total=4,
        options=TaskOptions.parse(after=5, progress=[0.5, 1.0], mem=100, timeout=20),
    )
    task.mark_started()
    watch = Watch(task)
    assert watch.check(rss=50) == []
    clock.advance(5)
    task.set(4)
    assert watch.check(rss=150) == [
        Due("after", 1),
        Due("progress", 1.0, 1.0),
        Due("memory", 1, 150),
    ]
    assert watch.check(rss=150) == []
    clock.advance(15)
    assert watch.check(rss=None) == [Due("timeout", "passed")]
    assert task.timeout_hit


class FakeProcess:
    """Stands in for ``psutil.Process``: counts the samples taken."""

    def __init__(self, rss: int) -> None:
        self.rss = rss
        self.samples = 0
        self.fail = False

    def memory_info(self) -> SimpleNamespace:
        self.samples += 1
        if self.fail:
            raise OSError("process table unreadable")
        return SimpleNamespace(rss=self.rss)


def test_memory_is_sampled_at_most_once_a_second(clock: FakeClock) -> None:
    process = FakeProcess(rss=2 * 10**9)
    with capture_notices(clock) as cap:
        cap.session.sampler.process = process
        with remind("etl", mem="1GB") as task:
            cap.session.tick()
            cap.session.tick()
            clock.advance(0.5)
            cap.session.tick()
            assert process.samples == 1
            process.rss = 3 * 10**9
            clock.advance(0.5)
            cap.session.tick()
            assert process.samples == 2
            assert task.rss == 3 * 10**9
            process.fail = True
            clock.advance(1)
            cap.session.tick()  # a failing sample is not raised
            assert process.samples == 3
            assert task.rss == 3 * 10**9  # the last good value stays
        assert cap.titles() == ["⚠ etl memory 2.0 GB", "✓ etl finished"]
