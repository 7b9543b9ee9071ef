"""``slower``: a task's usual duration read from a real history file when its start is
written (one indexed query on the loop thread), and the one notice once it runs
``slower`` times that long; the history seeded through ``remind()`` on a fake clock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbremind import Session, remind
from nbremind.channels.memory import MemoryChannel
from nbremind.core.config import Config
from nbremind.core.notice import Notice
from nbremind.runtime.session import set_session
from nbremind.testing import FakeClock


@pytest.fixture
def session(clock: FakeClock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Session]:
    """A session on the fake clock, ticked by hand, its history file in ``tmp_path``."""
    channel = MemoryChannel()
    s = Session(
        Config(channels=(channel.name,), data_dir=str(tmp_path)),
        clock=clock,
        channels={channel.name: channel},
        tick_interval=None,
    )
    monkeypatch.setattr(s.sampler, "rss", lambda now: None)
    previous = set_session(s)
    yield s
    set_session(previous)
    s.close()


def notices(session: Session) -> list[Notice]:
    assert session.flush()
    channel = session.dispatcher.channels["memory"]
    assert isinstance(channel, MemoryChannel)
    return list(channel.notices)


def seed(clock: FakeClock, *durations: float, name: str = "etl") -> None:
    """Runs of ``with remind(name):`` that take ``durations`` seconds (of the fake clock)."""
    for seconds in durations:
        with remind(name):
            clock.advance(seconds)
        clock.advance(5)


def seed_failed(clock: FakeClock, seconds: float, name: str = "etl") -> None:
    with pytest.raises(ValueError), remind(name):
        clock.advance(seconds)
        raise ValueError("bad row 7")
    clock.advance(5)


def looked_up(session: Session) -> None:
    """Wait until the starts handed to the loop thread so far are written (and looked up)."""
    assert session.history_recorder.sync()


def test_fewer_than_three_succeeded_runs_give_no_usual_and_the_end_says_so(
    session: Session, clock: FakeClock
) -> None:
    seed(clock, 600, 600)
    seed_failed(clock, 900)  # a failed run does not count
    with remind("etl", slower=1.5) as task:
        looked_up(session)
        assert task.usual is None
        clock.advance(3600)
        session.tick()
    found = notices(session)
    assert [n.event for n in found if n.event == "slower"] == []
    end = found[-1]
    assert end.title == "✓ etl finished"
    assert "slower never applied: fewer than 3 succeeded runs to compare with" in end.body


def test_the_usual_duration_is_the_median_of_the_last_ten_succeeded_runs(
    session: Session, clock: FakeClock
) -> None:
    durations = [60.0 * k for k in range(1, 13)]  # 12 runs: the first two are not counted
    seed(clock, *durations[:6])
    seed_failed(clock, 99_999)  # nor is a failed one
    seed(clock, *durations[6:])
    with remind("etl") as task:
        looked_up(session)
        assert task.usual == pytest.approx(sum(durations[6:8]) / 2)  # median of 180..720 s
        # the ETA comes from it while the task has no progress of its own
        clock.advance(60)
        assert task.snapshot().eta == pytest.approx(task.usual - 60)
        assert task.snapshot().usual == task.usual


def test_slower_fires_once_when_the_run_passes_its_factor_not_before(
    session: Session, clock: FakeClock
) -> None:
    seed(clock, 1400, 1500, 1600)
    seed_failed(clock, 5)
    with remind("etl", slower=1.5) as task:
        looked_up(session)
        assert task.usual == pytest.approx(1500)  # 25 min
        clock.advance(1.5 * 1500 - 1)
        session.tick()
        assert [n for n in notices(session) if n.event == "slower"] == []
        clock.advance(2)
        session.tick()
        clock.advance(600)
        session.tick()
        slower = [n for n in notices(session) if n.event == "slower"]
    assert [n.title for n in slower] == ["🐢 etl slower than usual: 37 min so far, usually 25 min"]
    assert "slower never applied" not in notices(session)[-1].body


def test_the_default_factor_is_one_and_a_half(session: Session, clock: FakeClock) -> None:
    seed(clock, 100, 100, 100)
    with remind("etl", slower=True):
        looked_up(session)
        clock.advance(149)
        session.tick()
        assert [n for n in notices(session) if n.event == "slower"] == []
        clock.advance(2)
        session.tick()
        assert [n.event for n in notices(session) if n.event == "slower"] == ["slower"]


def test_other_work_does_not_count(session: Session, clock: FakeClock) -> None:
    seed(clock, 100, 100, 100, name="load")
    with remind("etl") as etl:
        looked_up(session)
        assert etl.usual is None
    # a cell named like a block is other work: its key has its kind
    seed(clock, 50, 50, 50, name="train")
    cell = session.new_task("train", kind="cell")
    token = session.start(cell)
    looked_up(session)
    assert cell.usual is None
    session.finish(cell, None, token)
    with remind("load") as load:
        looked_up(session)
        assert load.usual == pytest.approx(100)


def _usual_queries(session: Session) -> list[str]:
    """The usual-duration queries the session's history connection makes from now on."""
    history = session.history_recorder.history
    assert history is not None
    seen: list[str] = []
    history._db.set_trace_callback(
        lambda sql: seen.append(sql) if "usual_key =" in sql and "SELECT" in sql else None
    )
    return seen


def test_one_query_per_task_start_and_none_for_short_nested_tasks(
    session: Session, clock: FakeClock
) -> None:
    seed(clock, 10, 20, 30)
    queries = _usual_queries(session)
    with remind("etl") as task:
        for i in range(20):
            with remind(f"step {i}"):  # nested and short: folded into the block, no start
                clock.advance(0.1)
        looked_up(session)
        assert len(queries) == 1 and task.usual == pytest.approx(20)
        with remind("long step") as long_step:  # nested, running past history_min (1 s):
            clock.advance(2)  # its start is written at the tick, and looked up with it
            session.tick()
            looked_up(session)
            assert len(queries) == 2 and long_step.usual is None
    looked_up(session)
    assert len(queries) == 2  # ends make no query


def test_the_usual_duration_is_set_without_waiting_for_anyone(tmp_path: Path) -> None:
    """With the periodic tick running, the look-up happens on the loop thread by itself."""
    clock = FakeClock()
    channel = MemoryChannel()
    s = Session(
        Config(channels=(channel.name,), data_dir=str(tmp_path)),
        clock=clock,
        channels={channel.name: channel},
    )
    previous = set_session(s)
    try:
        seed(clock, 30, 40, 50)
        assert s.history_recorder.sync()
        with remind("etl") as task:
            deadline = time.monotonic() + 10
            while task.usual is None and time.monotonic() < deadline:
                time.sleep(0.005)
            assert task.usual == pytest.approx(40)
    finally:
        set_session(previous)
        s.close()


def test_no_history_no_usual_and_no_query(session: Session, clock: FakeClock) -> None:
    seed(clock, 10, 20, 30)
    queries = _usual_queries(session)
    session.configure(history_keep="off")
    with remind("etl", slower=1.5) as task:
        looked_up(session)
        clock.advance(100)
        session.tick()
    assert task.usual is None and queries == []
    assert [n for n in notices(session) if n.event == "slower"] == []


def test_the_look_up_stays_off_the_users_thread_when_it_writes_the_backlog(
    session: Session, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread that writes the backlog itself (the loop thread is behind) hands the
    look-up of the starts it wrote to the loop thread."""
    from nbremind.runtime import run_recorder

    seed(clock, 10, 20, 30)
    history = session.history_recorder.history
    assert history is not None
    real, threads = history.usual_duration, []

    def usual_duration(key: str) -> float | None:
        threads.append(threading.current_thread())
        return real(key)

    monkeypatch.setattr(history, "usual_duration", usual_duration)
    monkeypatch.setattr(run_recorder, "MAX_QUEUED", 1)  # every start written where it starts
    with remind("etl") as task:
        looked_up(session)
        assert task.usual == pytest.approx(20)
    assert len(threads) == 1 and threads[0] is not threading.current_thread()
