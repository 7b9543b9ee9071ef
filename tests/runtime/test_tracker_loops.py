"""The tracker's cheap path for ``track()`` loops: a loop is registered, current and listed
from its first item, watched from the first tick it runs at, and ended with its exact count;
``done`` follows the state; the finished tasks that never notify are trimmed without telling
the notifier."""

from __future__ import annotations

import pytest

import nbremind
from nbremind import Task, TaskState, remind, track
from nbremind.core.clock import FakeClock
from nbremind.core.options import NO_OPTIONS
from nbremind.core.thresholds import Watch
from nbremind.runtime.tracker import KEEP_FINISHED, Tracker
from nbremind.testing import CapturedNotices


def _watched(cap: CapturedNotices) -> list[Task]:
    return [watch.task for watch in cap.session.tracker.watches()]


def test_a_nested_loop_is_current_listed_and_watched_at_the_first_tick(
    cap: CapturedNotices,
) -> None:
    session = cap.session
    with remind("job") as job:
        for _ in track([1, 2, 3], name="files"):
            loop = nbremind.current_task(session)
            assert loop is not None and loop.kind == "loop" and loop.parent is job
            assert loop in session.tasks() and loop in session.running()
            assert loop.done is False and loop.state is TaskState.RUNNING
            assert loop in _watched(cap)  # the tick's view: its watch is made now
        assert nbremind.current_task(session) is job
        assert loop.done and loop.state is TaskState.SUCCEEDED and loop.n == 3
        assert loop not in _watched(cap)
    assert job.done and cap.titles() == ["✓ job finished"]


def test_a_loop_that_ends_between_ticks_never_gets_a_watch(cap: CapturedNotices) -> None:
    made: list[Task] = []
    real = Watch.__init__

    def spy(self: Watch, task: Task, **kwargs: object) -> None:
        made.append(task)
        real(self, task, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Watch, "__init__", spy)
        with remind("job") as job:
            for _ in range(5):
                for _ in track(range(4)):
                    pass
    assert made == [job]  # the block's own (its thresholds, the loop feeding it)
    loops = [t for t in cap.session.tasks() if t.kind == "loop"]
    assert len(loops) == 5 and all(t.n == 4 and t.done for t in loops)


def test_a_loop_still_fires_its_thresholds_once_a_tick_watches_it(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    with remind("job"):
        for i in track(range(3), name="slow", after="1m"):
            if i == 1:
                clock.advance(61)
                cap.session.tick()
    assert cap.events() == ["after", "success"]
    assert cap.titles()[0] == "⏱ slow still running (1 min 1 s)"


def test_a_loop_in_a_block_still_feeds_its_progress(cap: CapturedNotices) -> None:
    with remind("job", progress=[0.5]) as job:
        for i in track(range(10)):
            if i == 6:
                cap.session.tick()
    assert (job.n, job.total) == (10, 10)
    assert cap.events() == ["progress", "success"]


def test_done_follows_the_end() -> None:
    task = Task("t", clock=FakeClock())
    assert task.done is False
    task.mark_started()
    assert task.done is False
    task.mark_ended(TaskState.FAILED)
    assert task.done is True


def test_only_tasks_that_could_notify_are_forgotten_by_the_notifier() -> None:
    forgotten: list[str] = []
    tracker = Tracker(
        FakeClock(),
        origin=lambda: ("", "host"),
        is_pending=lambda task_id: False,
        settle_inside=lambda task, exc: None,
        on_end=lambda task, state: None,
        on_forget=forgotten.append,
    )
    quiet = NO_OPTIONS.thresholds_only()
    assert quiet.on == ()
    ids = []
    for i in range(KEEP_FINISHED + 60):
        task = tracker.new_task("t", quiet if i % 2 else None, None, "block", None)
        ids.append(task.id)
        token = tracker.start(task)
        tracker.reset(task, token)
        tracker.end(task, None)
    kept = {task.id for task in tracker.tasks()}
    trimmed = [key for key in ids if key not in kept]
    assert len(trimmed) >= 50  # the oldest, in a batch
    # of those, only the ones that could notify were told (they may have a last notice)
    assert forgotten == [key for key in trimmed if ids.index(key) % 2 == 0]
