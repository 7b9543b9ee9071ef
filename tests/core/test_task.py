"""Task states from how a block ends, and the Task reporting API."""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

import pytest

from nbremind import Task, TaskState, TaskTimeout, remind
from nbremind.core.task import TERMINAL_STATES, TaskSnapshot
from nbremind.testing import CapturedNotices, FakeClock, capture_notices

WAIT = 10.0  # seconds a test waits for another thread before failing


class Boom(Exception):
    pass


def _raise_boom() -> None:
    raise Boom("disk on fire")


# -- states ----------------------------------------------------------------------------------


def test_success(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl") as task:
        assert task.state is TaskState.RUNNING
        clock.advance(3)
    assert task.state is TaskState.SUCCEEDED
    assert task.done
    assert task.error is None
    assert cap.events() == ["success"]


def test_failure_propagates_the_same_exception_with_its_traceback(cap: CapturedNotices) -> None:
    with pytest.raises(Boom) as info, remind("etl") as task:
        _raise_boom()
    exc = info.value
    assert task.state is TaskState.FAILED
    assert task.error is not None
    assert task.error.type == "Boom"
    assert task.error.message == "disk on fire"
    # the traceback still reaches the line that raised
    frames = traceback.extract_tb(exc.__traceback__)
    assert frames[-1].name == "_raise_boom"
    assert frames[-1].line == 'raise Boom("disk on fire")'
    assert exc.__context__ is None and exc.__cause__ is None
    assert cap.events() == ["failure"]


def test_failure_is_the_same_object() -> None:
    error = Boom("x")
    with capture_notices():
        try:
            with remind("etl"):
                raise error
        except Boom as caught:
            assert caught is error
        else:
            pytest.fail("the exception was swallowed")


def test_keyboard_interrupt_cancels(cap: CapturedNotices) -> None:
    with pytest.raises(KeyboardInterrupt), remind("etl") as task:
        raise KeyboardInterrupt
    assert task.state is TaskState.CANCELLED
    assert cap.events() == ["cancel"]


@pytest.mark.parametrize(
    ("code", "state"),
    [
        (0, TaskState.SUCCEEDED),
        (None, TaskState.SUCCEEDED),
        (2, TaskState.FAILED),
        ("bye", TaskState.FAILED),
    ],
)
def test_system_exit(cap: CapturedNotices, code: object, state: TaskState) -> None:
    with pytest.raises(SystemExit), remind("etl") as task:
        raise SystemExit(code)
    assert task.state is state


def test_timeout_without_interrupt_notifies_then_ends_timed_out(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    with remind("etl", timeout="10m") as task:
        clock.advance(599)
        cap.session.tick()
        assert cap.notices == []
        clock.advance(1)
        cap.session.tick()
        assert task.state is TaskState.RUNNING  # not interrupted
        assert cap.titles() == ["⏱ etl passed its timeout (10 min)"]
        clock.advance(60)
        cap.session.tick()  # the timeout notice fires once
        assert len(cap.notices) == 1
    assert task.state is TaskState.TIMED_OUT
    assert cap.titles() == ["⏱ etl passed its timeout (10 min)", "⏱ etl timed out (11 min)"]
    assert [n.event for n in cap.notices] == ["timeout", "timeout"]


def test_timeout_not_reached_succeeds(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl", timeout="10m") as task:
        clock.advance(300)
        cap.session.tick()
    assert task.state is TaskState.SUCCEEDED


def test_timeout_with_interrupt_stops_a_worker_thread(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    started = threading.Event()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            with remind("etl", timeout="5s", interrupt=True) as task:
                outcome["task"] = task
                started.set()
                deadline = time.monotonic() + WAIT
                while time.monotonic() < deadline:  # Python-level work the interrupt can reach
                    pass
                outcome["ran_to_the_end"] = True
        except BaseException as exc:
            outcome["exc"] = exc

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    assert started.wait(WAIT)
    task: Task = outcome["task"]
    clock.advance(4)
    cap.session.tick()
    assert task.state is TaskState.RUNNING
    clock.advance(2)
    cap.session.tick()
    worker.join(WAIT)
    assert not worker.is_alive()
    assert "ran_to_the_end" not in outcome
    assert isinstance(outcome["exc"], TaskTimeout)
    assert task.state is TaskState.TIMED_OUT
    assert cap.titles() == ["⏱ etl timed out (6.0 s)"]


def test_timeout_with_interrupt_on_the_main_thread_raises_task_timeout(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    started = threading.Event()

    def ticker() -> None:
        if started.wait(WAIT):
            clock.advance(6)
            cap.session.tick()

    helper = threading.Thread(target=ticker, daemon=True)
    helper.start()
    caught: BaseException | None = None
    try:
        with remind("etl", timeout="5s", interrupt=True) as task:
            started.set()
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                pass
    except BaseException as exc:  # a KeyboardInterrupt here must not end the test run
        caught = exc
    helper.join(WAIT)
    # the user sees a timeout, not a Ctrl-C they never pressed
    assert isinstance(caught, TaskTimeout), repr(caught)
    assert isinstance(caught.__cause__, KeyboardInterrupt)
    assert "5 s" in str(caught)
    assert task.state is TaskState.TIMED_OUT


def test_a_real_ctrl_c_after_the_timeout_notice_cancels(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    with pytest.raises(KeyboardInterrupt), remind("etl", timeout="5s") as task:
        clock.advance(6)
        cap.session.tick()
        raise KeyboardInterrupt  # the user's own Ctrl-C, not nbremind's: it stays a Ctrl-C
    assert task.state is TaskState.CANCELLED
    assert cap.events() == ["timeout", "cancel"]


def test_ending_twice_keeps_the_first_state(cap: CapturedNotices) -> None:
    task = cap.session.new_task("etl")
    cap.session.start(task)
    assert cap.session.finish(task) is TaskState.SUCCEEDED
    assert cap.session.finish(task, Boom("late")) is TaskState.SUCCEEDED
    assert task.state is TaskState.SUCCEEDED
    assert cap.events() == ["success"]


def test_states_are_strings() -> None:
    assert str(TaskState.TIMED_OUT) == "timed_out"
    assert TaskState("cancelled") is TaskState.CANCELLED
    ended = {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT}
    assert ended == TERMINAL_STATES


# -- the reporting API ---------------------------------------------------------------------


def test_advance_set_and_total(clock: FakeClock) -> None:
    task = Task("etl", clock=clock, total=10)
    assert (task.n, task.total, task.progress) == (0, 10, 0.0)
    task.advance()
    task.advance(3)
    assert task.n == 4
    assert task.progress == pytest.approx(0.4)
    task.set(7)
    assert task.n == 7
    task.total = 20
    assert task.total == 20
    assert task.progress == pytest.approx(0.35)
    task.total = None
    assert task.progress is None
    task.total = 0
    assert task.progress is None


@pytest.mark.parametrize("total", [-1, "10", True, [3]])
def test_bad_total_raises(clock: FakeClock, total: object) -> None:
    task = Task("etl", clock=clock)
    with pytest.raises(ValueError, match="total"):
        task.total = total  # type: ignore[assignment]
    assert task.total is None
    with pytest.raises(ValueError, match="total"):
        Task("etl", clock=clock, total=total)  # type: ignore[arg-type]


def test_metric_and_note(clock: FakeClock) -> None:
    task = Task("etl", clock=clock)
    task.metric(loss=0.5, rows=10)
    task.metric(loss=0.25)
    assert dict(task.metrics) == {"loss": 0.25, "rows": 10}
    with pytest.raises(TypeError):
        task.metrics["loss"] = 1  # type: ignore[index]
    task.note("first")
    task.note(42)  # type: ignore[arg-type]
    assert task.snapshot().notes == ("first", "42")


def test_elapsed_runs_then_freezes(cap: CapturedNotices, clock: FakeClock) -> None:
    task = cap.session.new_task("etl")
    assert task.elapsed == 0.0
    assert task.state is TaskState.PENDING
    cap.session.start(task)
    clock.advance(2.5)
    assert task.elapsed == pytest.approx(2.5)
    cap.session.finish(task)
    clock.advance(100)
    assert task.elapsed == pytest.approx(2.5)
    assert task.end_wall is not None and task.start_wall is not None
    assert task.end_wall - task.start_wall == pytest.approx(2.5)


def test_rate_and_eta_from_ticks(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl", total=200) as task:
        assert task.rate is None and task.eta is None
        cap.session.tick()  # first sample: no rate yet
        task.advance(40)
        clock.advance(2)
        # before a second sample the rate is the average so far
        assert task.rate == pytest.approx(20)
        cap.session.tick()
        assert task.rate == pytest.approx(20)
        assert task.eta == pytest.approx((200 - 40) / 20)
        task.advance(10)
        clock.advance(1)
        cap.session.tick()  # instant 10/s, smoothed with the previous 20/s
        assert task.rate == pytest.approx(0.3 * 10 + 0.7 * 20)
        assert task.eta == pytest.approx(150 / (0.3 * 10 + 0.7 * 20))
    assert task.eta is None  # ended


def test_rate_is_unknown_while_nothing_moved(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl") as task:
        cap.session.tick()
        clock.advance(5)
        cap.session.tick()
        assert task.rate is None
        assert task.eta is None  # no total either


def test_eta_needs_a_total(clock: FakeClock) -> None:
    task = Task("etl", clock=clock)
    task.mark_started()
    task.advance(5)
    clock.advance(1)
    assert task.rate == pytest.approx(5)
    assert task.eta is None


def test_snapshot_is_a_frozen_copy(cap: CapturedNotices, clock: FakeClock) -> None:
    with remind("etl", total=10) as task:
        task.advance(3)
        task.metric(loss=1.0)
        clock.advance(4)
        snap = task.snapshot()
        task.advance(5)
        task.metric(loss=0.5)
    assert isinstance(snap, TaskSnapshot)
    assert (snap.n, snap.total, snap.state) == (3, 10, TaskState.RUNNING)
    assert snap.metrics == {"loss": 1.0}
    assert snap.elapsed == pytest.approx(4)
    assert snap.name == "etl" and snap.id == task.id
    with pytest.raises(AttributeError, match="frozen"):
        snap.n = 9  # type: ignore[misc]


def test_task_ids_are_unique(clock: FakeClock) -> None:
    ids = {Task("t", clock=clock).id for _ in range(100)}
    assert len(ids) == 100


def test_repr(clock: FakeClock) -> None:
    task = Task("etl", clock=clock, total=5)
    task.advance(2)
    assert repr(task) == "<Task 'etl' pending 2/5 0.0s>"


def test_advance_from_many_threads_loses_nothing(clock: FakeClock) -> None:
    task = Task("etl", clock=clock)
    threads, per_thread = 8, 100_000
    barrier = threading.Barrier(threads)

    def work() -> None:
        barrier.wait()
        advance = task.advance
        for _ in range(per_thread):
            advance()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert task.n == threads * per_thread == 800_000
