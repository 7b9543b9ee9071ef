"""The memory guard: a task's ``mem_limit`` judged on a thread of its own, from the task's
first moment and whatever the loop thread is doing; a stop decided as the task ends never
lands after it."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import threading
import time

import psutil
import pytest

from _deadline import eventually
from nbremind import TaskMemoryLimit, track
from nbremind.core.clock import SystemClock
from nbremind.core.notice import format_size
from nbremind.core.options import TaskOptions
from nbremind.core.task import Task, TaskState
from nbremind.runtime.memory_guard import MemoryGuard, memory_limit_reason
from nbremind.runtime.memory_limit import MemoryScope, find_scope
from nbremind.runtime.tracker import stop_for_memory
from nbremind.testing import capture_notices

#: The sample of docs/thresholds.md, in a fresh process (its session cold: the loop thread
#: still opening its files while the loop allocates as fast as it can, with no pause).
COLD_SCRIPT = """
import json, sys, time
import nbremind
from nbremind import TaskMemoryLimit, remind
nbremind.configure(channels=["null"])
limit = int(sys.argv[1])
chunks = []
started = time.perf_counter()
try:
    with remind("grow", mem_limit=limit):
        for step in range(100):  # 10 MB a step: stopped on the way to 1 GB
            chunks.append(b"\\1" * 10_000_000)
    print(json.dumps({"stopped": False, "held": len(chunks)}))
except TaskMemoryLimit as exc:
    took = time.perf_counter() - started
    print(json.dumps({"stopped": True, "used": exc.used, "limit": exc.limit,
                      "source": exc.source, "took": took, "words": str(exc)}))
"""


def _base() -> int:
    """What the guard judges before the script allocates: in a memory-limited cgroup its
    working set (this test's process and all), else nothing (the script's RSS is small)."""
    scope = find_scope()
    return (scope.working_set() or 0) if scope.cgroup else 0


@pytest.mark.parametrize("run", range(3))
def test_a_cold_scripts_tight_loop_is_stopped_on_the_way_to_1_gb(run: int) -> None:
    limit = _base() + 200_000_000
    done = subprocess.run(
        [sys.executable, "-c", COLD_SCRIPT, str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""  # nothing landed after the block, nothing logged
    told = json.loads(done.stdout)
    assert told["stopped"], f"the loop held {told.get('held')} chunks and was not stopped"
    assert told["limit"] == limit
    # (the guard's looks, 50 ms apart, held it to +50 MB; a tick-only guard let +160-320 MB by)
    assert limit <= told["used"] < limit + 150_000_000, told
    assert told["words"].startswith("stopped at ") and told["words"].endswith(": memory limit")


def _task(name: str, mem_limit: int | str) -> Task:
    """A task the guard may watch, never started: the guards here stop nothing for real."""
    return Task(name, clock=SystemClock(), options=TaskOptions.parse(mem_limit=mem_limit))


def test_the_guard_watches_from_the_start_and_stops_once() -> None:
    stops: list[tuple[Task, TaskMemoryLimit]] = []
    scope = MemoryScope("RAM", 10**12)
    guard = MemoryGuard(lambda: scope, lambda t, r: stops.append((t, r)), every=0.01)
    task = _task("small", 1)  # 1 byte: past it at once
    guard.watch(task)
    eventually(lambda: stops, seconds=5.0, what="the guard's stop")
    (stopped, reason) = stops[0]
    assert stopped is task
    assert (reason.limit, reason.source) == (1, "process RSS")
    assert str(reason) == f"stopped at {format_size(reason.used)} of 1 B: memory limit"
    task.mark_ended(TaskState.FAILED, None)
    eventually(lambda: not guard.watched(), seconds=5.0, what="the ended task let go")


def test_a_percent_waits_for_the_limit_a_size_does_not() -> None:
    stops: list[str] = []
    found = threading.Event()
    scope = MemoryScope("RAM", 10**12)

    def slow_scope() -> MemoryScope:
        found.wait(10.0)  # finding the limit takes long (a busy GIL, many small files)
        return scope

    known: list[MemoryScope | None] = [None]
    guard = MemoryGuard(
        slow_scope, lambda t, r: stops.append(t.name), every=0.01, known=lambda: known[0]
    )
    percent, size = _task("percent", "0.0001%"), _task("size", 1)
    guard.watch(percent)
    guard.watch(size)
    eventually(lambda: "size" in stops, seconds=5.0, what="the size's stop")
    assert "percent" not in stops  # a percent of a limit not known yet: not judged
    known[0] = scope
    found.set()
    eventually(lambda: "percent" in stops, seconds=5.0, what="the percent's stop")
    guard.stop()


def test_a_stop_decided_as_the_task_ends_is_withdrawn_not_raised_later() -> None:
    inside, go, after = threading.Event(), threading.Event(), threading.Event()
    raised: list[BaseException] = []
    tasks: list[Task] = []
    with capture_notices() as cap:
        session = cap.session

        def work() -> None:
            task = Task("late", clock=session.clock, options=TaskOptions(mem_limit=1))
            session.start(task)
            tasks.append(task)
            try:
                inside.set()
                go.wait(10.0)  # (a C wait: an exception raised into this thread waits too)
                for _ in range(1000):  # Python code again: a pending exception lands here
                    pass
                after.set()
            except BaseException as exc:
                raised.append(exc)

        thread = threading.Thread(target=work)
        thread.start()
        assert inside.wait(10.0)
        [task] = tasks
        stop_for_memory(task, memory_limit_reason(300_000_000, 200_000_000, "process RSS"))
        session.finish(task)  # it ends (from here) before its thread runs again
        go.set()
        thread.join(10.0)
    assert raised == [] and after.is_set()
    assert task.state is TaskState.FAILED
    assert task.error is not None and task.error.type == "TaskMemoryLimit"


def test_a_stop_comes_once_from_the_guard_and_the_tick_together() -> None:
    task = Task("twice", clock=SystemClock(), options=TaskOptions(mem_limit=1))
    task.stopper = lambda reason: None  # (nothing to raise into: only the decision counts)
    first = memory_limit_reason(2, 1, "process RSS")
    stop_for_memory(task, first)
    stop_for_memory(task, memory_limit_reason(3, 1, "process RSS"))
    assert task.stopped_by is first


def test_the_guard_judges_a_commands_tree_never() -> None:
    guard = MemoryGuard(lambda: MemoryScope("RAM", 10**12), lambda t, r: None)
    task = Task("cmd", kind="command", clock=SystemClock(), options=TaskOptions(mem_limit=1))
    guard.watch(task)
    assert guard.watched() == []


def test_a_track_loop_stopped_at_its_limit_ends_failed_as_its_loop_is_left() -> None:
    scope = find_scope()
    base = (scope.working_set() if scope.cgroup else psutil.Process().memory_info().rss) or 0
    held: list[bytes] = []
    gc.disable()  # (the loop's end must not wait for a collection)
    try:
        with capture_notices() as cap:
            with pytest.raises(TaskMemoryLimit):
                loop = track(
                    range(200), name="grow", session=cap.session, mem_limit=int(base + 1e8)
                )
                for _ in loop:
                    held.append(b"\1" * 10_000_000)
                    time.sleep(0.005)  # (paced: the stop arrives in the loop's Python code)
            held.clear()
            [task] = [t for t in cap.session.tasks() if t.name == "grow"]
            assert task.state is TaskState.FAILED  # now, not when the generator is collected
            assert task.error is not None and task.error.type == "TaskMemoryLimit"
            cap.session.flush()
            [end] = [n for n in cap.notices if n.event == "failure"]
            assert end.title.startswith("■ grow stopped at ") and end.urgency == "critical"
    finally:
        gc.enable()
        held.clear()
