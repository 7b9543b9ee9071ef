"""Memory per task: what a block leaves behind does not grow with the number of blocks.

Entering a reminder sets no new context variable (one variable holds every reminder entered
in a context), and the history writer's backlog is bounded: a task whose start was not
written yet is written once, ended, and past ``MAX_QUEUED`` waiting tasks the thread that
hands the next one writes them itself. 100,000 blocks and as many decorated calls run in a
fresh process, with the outbox and run history on as by default.
"""

from __future__ import annotations

import asyncio
import contextvars
import json
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from nbremind import Config, Session, remind
from nbremind.core.task import Task, TaskSnapshot, TaskState
from nbremind.runtime.run_recorder import MAX_QUEUED
from nbremind.store.outbox import FILE_NAME
from nbremind.store.runs import History
from nbremind.testing import FakeClock, capture_notices

CHILD = """
import contextvars, gc, json, sys
import psutil
import nbremind
from nbremind import remind
from nbremind.core.task import Task

session = nbremind.get_session()  # the default session, ticking as a user's does
recorder = session.history_recorder
process = psutil.Process()


@remind("f", channels=["null"], on=[])
def decorated():
    pass


marks, largest = {}, 0
for i in range(1, 100_001):
    with remind("b", channels=["null"], on=[]):
        pass
    decorated()
    if i % 100 == 0:
        largest = max(largest, recorder.backlog)
    if i in (20_000, 100_000):
        gc.collect()
        marks[i] = {
            "rss": process.memory_info().rss,
            "context_vars": len(contextvars.copy_context()),
            "tasks": sum(1 for o in gc.get_objects() if type(o) is Task),
        }
print(json.dumps({"marks": marks, "largest": largest}), flush=True)
"""


@pytest.mark.timeout(600)
def test_100000_blocks_leave_memory_flat(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ),
        timeout=540,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    early, late = result["marks"]["20000"], result["marks"]["100000"]
    assert late["context_vars"] == early["context_vars"] < 10
    assert 0 < result["largest"] <= MAX_QUEUED
    # the history backlog, the one being written and the last 200 kept by the session
    assert late["tasks"] <= 2 * MAX_QUEUED + 300
    growth = late["rss"] - early["rss"]
    assert growth < 5_000_000, f"RSS grew by {growth / 1e6:.1f} MB over 80,000 blocks"


FLOOD = """
import gc, json
import psutil
import nbremind
from nbremind import remind
from nbremind.runtime.notifier import MAX_QUEUED

session = nbremind.get_session()
process = psutil.Process()
marks, waiting = {}, 0
for i in range(1, 40_001):
    with remind("b", channels=["null"]):  # a success notice each
        pass
    waiting = max(waiting, session.notifier.queued)
    if i in (5_000, 20_000, 40_000):
        session.flush(120)  # what is left once delivered: nothing per block
        gc.collect()
        marks[i] = process.memory_info().rss
print(json.dumps({"marks": marks, "waiting": waiting, "bound": MAX_QUEUED}), flush=True)
"""


@pytest.mark.timeout(300)
def test_a_flood_of_notifying_blocks_keeps_memory_flat(tmp_path: Path) -> None:
    """Each block's notice waits for the loop thread; their number is bounded, so a flood
    runs at the pace of delivery instead of growing without bound."""
    done = subprocess.run(
        [sys.executable, "-c", FLOOD],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=dict(os.environ),
        timeout=280,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert 0 < result["waiting"] <= result["bound"] + 1
    growth = result["marks"]["20000"] - result["marks"]["5000"]
    # unbounded, the waiting notices alone add ~5 KB a block (~78 MB here); what is allowed
    # is bounded caches filling up (SQLite's page cache, the 10,000 ids kept for
    # de-duplication) and the allocator keeping a busy moment's peak
    assert growth < 20_000_000, f"RSS grew by {growth / 1e6:.1f} MB over 15,000 blocks"
    # once those are full, nothing more: a title kept per notice (~150 B a block) is 3 MB
    late = result["marks"]["40000"] - result["marks"]["20000"]
    assert late < 2_000_000, f"RSS grew by {late / 1e6:.1f} MB from 20,000 to 40,000 blocks"


# -- one variable for every reminder, entered however -----------------------------------------


def _context_size_after(run: Callable[[], None]) -> int:
    """The variables set in a fresh context after ``run()`` ran in it."""

    def measured() -> int:
        run()
        return len(contextvars.copy_context())

    return contextvars.Context().run(measured)


def test_no_way_of_entering_a_reminder_adds_a_context_variable() -> None:
    @remind("f")
    def function() -> None:
        pass

    @remind("g")
    def generator() -> Iterator[int]:
        yield 1

    @remind("c")
    async def coroutine() -> None:
        await asyncio.sleep(0)

    @remind("a")
    async def async_generator() -> AsyncIterator[int]:
        yield 1

    async def asynchronous(times: int) -> None:
        for _ in range(times):
            async with remind("x"):
                await coroutine()
            async for _ in async_generator():
                pass

    shared = remind("shared")

    def blocks(times: int) -> None:
        for _ in range(times):
            with remind("outer"), shared, shared:  # nested, and one reminder twice
                function()
                list(generator())
        asyncio.run(asynchronous(times))

    with capture_notices(FakeClock()):
        once = _context_size_after(lambda: blocks(1))
        many = _context_size_after(lambda: blocks(200))
    assert many == once <= 2  # nbremind's variable (and the session's current task)


def test_one_reminder_entered_by_threads_at_once_ends_each_threads_own_tasks() -> None:
    shared = remind("shared")
    barrier = threading.Barrier(4, timeout=10)
    seen: dict[int, tuple[Task, Task]] = {}

    def work(index: int) -> None:
        with shared as outer:
            barrier.wait()  # all four threads inside the same reminder at once
            with shared as inner:
                barrier.wait()
            assert inner.done and not outer.done
            seen[index] = (outer, inner)

    with capture_notices(FakeClock()) as cap:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(15)
        notices = cap.notices
    assert sorted(seen) == [0, 1, 2, 3]
    for outer, inner in seen.values():
        assert inner.parent is outer and outer.parent is None
        assert outer.state is inner.state is TaskState.SUCCEEDED
        assert outer.thread_id == inner.thread_id
    assert len({outer.thread_id for outer, _ in seen.values()}) == 4
    assert len(notices) == 8


def test_an_async_generator_closed_from_another_task_still_ends_its_task() -> None:
    @remind("stream")
    async def stream() -> AsyncIterator[int]:
        yield 1
        yield 2

    async def main() -> None:
        agen = stream()

        async def first() -> int:
            return await agen.__anext__()

        async def close() -> None:
            await agen.aclose()

        assert await asyncio.create_task(first()) == 1  # entered in one asyncio task
        await asyncio.create_task(close())  # left in another one

    with capture_notices(FakeClock()) as cap:
        asyncio.run(main())
        (task,) = [t for t in cap.session.tasks() if t.name == "stream"]
        events = cap.events()
    assert task.state is TaskState.CANCELLED  # closed before it was exhausted
    assert events == ["cancel"]


# -- the history backlog -------------------------------------------------------------------------


@pytest.fixture
def session(nbremind_data_dir: Path) -> Iterator[Session]:
    made = Session(Config(channels=("null",)))
    yield made
    made.close(timeout=5)


def _blocked(session: Session) -> threading.Event:
    """Hold the session's loop thread until the returned event is set."""
    release, holding = threading.Event(), threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(30)

    session.ticker.call_soon(hold)
    assert holding.wait(10)
    return release


def test_a_task_that_ends_before_its_start_is_written_takes_one_place(
    session: Session,
    nbremind_data_dir: Path,
) -> None:
    recorder = session.history_recorder
    release = _blocked(session)
    try:
        for _ in range(100):
            with remind("b", session=session, on=[]):
                pass
        with remind("still running", session=session, on=[]):
            assert recorder.backlog == 101  # 100 ended tasks and one start: not 201
    finally:
        release.set()
    assert recorder.sync(10)
    history = History(nbremind_data_dir / FILE_NAME)
    try:
        rows = history.query(limit=None)
    finally:
        history.close()
    assert len(rows) == 101 and {r["state"] for r in rows} == {"succeeded"}


def test_past_its_bound_the_backlog_is_written_by_the_thread_that_hands_more(
    session: Session,
    nbremind_data_dir: Path,
) -> None:
    recorder = session.history_recorder
    total = 3 * MAX_QUEUED + 7
    release = _blocked(session)  # the loop thread writes nothing meanwhile
    largest = 0
    try:
        for _ in range(total):
            with remind("b", session=session, on=[]):
                pass
            largest = max(largest, recorder.backlog)
        assert MAX_QUEUED // 2 < largest <= MAX_QUEUED
        history = History(nbremind_data_dir / FILE_NAME)
        try:
            written = history.count()
        finally:
            history.close()
        # everything but the backlog is on disk already, written by this thread
        assert total - recorder.backlog <= written < total
    finally:
        release.set()
    assert recorder.sync(10)
    history = History(nbremind_data_dir / FILE_NAME)
    try:
        states = [r["state"] for r in history.query(limit=None)]
    finally:
        history.close()
    assert len(states) == total and set(states) == {"succeeded"}


def test_a_snapshot_has_every_field_of_its_class() -> None:
    task = Task("etl", clock=FakeClock(), total=4)
    task.mark_started()
    task.advance(3)
    snap = task.snapshot()
    assert sorted(vars(snap)) == sorted(TaskSnapshot.FIELDS)
    assert snap.replace() == snap  # the class's own __init__ agrees
    assert (snap.n, snap.total, snap.progress, snap.state) == (3, 4, 0.75, TaskState.RUNNING)
    with pytest.raises(AttributeError, match="frozen"):
        snap.n = 4  # type: ignore[misc]
