"""A ``track()`` loop feeds the progress of the cell, block or function it runs in;
``current_task()``; progress marks that never apply; what a progress notice says."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from typing import Any

import pytest

import nbremind
from nbremind import TaskState, current_task, remind, track
from nbremind.core.notice import Notice
from nbremind.core.task import Task
from nbremind.ipython.texts import status_text
from nbremind.testing import CapturedNotices, FakeClock, capture_notices


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cap(clock: FakeClock) -> Iterator[CapturedNotices]:
    with capture_notices(clock) as captured:
        yield captured


def numbers(n: int) -> Iterator[int]:
    """A generator: no length, so ``track()`` knows no total."""
    yield from range(n)


def only(cap: CapturedNotices, event: str) -> Notice:
    [notice] = [n for n in cap.notices if n.event == event]
    return notice


# -- a loop feeds the task it runs in ---------------------------------------------------------


def test_a_loop_feeds_a_block_its_count_total_eta_and_marks(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    with remind("train", progress=[0.5]) as task:
        for epoch in track(range(16), name="epochs"):
            clock.advance(1)
            cap.session.tick()
            assert (task.n, task.total) == (epoch + 1, 16)
            if epoch == 9:
                assert task.eta is not None and task.eta > 0
    assert (task.state, task.n, task.total) == (TaskState.SUCCEEDED, 16, 16)
    assert cap.titles() == ["train reached 50%", "✓ train finished"]
    progress = only(cap, "progress")
    assert progress.body.splitlines()[0] == "Reached 50% (8/16)"
    assert "Progress: 100% (16/16)" in only(cap, "success").body


def test_a_loop_feeds_a_decorated_function(cap: CapturedNotices, clock: FakeClock) -> None:
    seen: list[Task] = []

    @remind("fit", progress="50%")
    def fit() -> None:
        me = current_task()
        assert me is not None
        seen.append(me)
        for _ in track(numbers(4), total=4, name="batches"):
            clock.advance(1)
            cap.session.tick()

    fit()
    [task] = seen
    assert (task.kind, task.n, task.total) == ("function", 4, 4)
    assert cap.titles() == ["fit reached 50%", "✓ fit finished"]
    assert only(cap, "progress").body.splitlines()[0] == "Reached 50% (2/4)"


def test_the_outermost_loop_feeds_and_a_later_loop_takes_over(cap: CapturedNotices) -> None:
    with remind("etl") as task:
        for _ in track(range(3), name="files"):
            for _ in track(range(10), name="rows"):  # a child of "files", not of the block
                cap.session.tick()
                assert task.total == 3
        cap.session.tick()
        assert (task.n, task.total) == (3, 3)
        for i in track(range(5), name="second pass"):
            if i == 1:
                cap.session.tick()
                assert (task.n, task.total) == (2, 5)
    assert (task.n, task.total) == (5, 5)


def test_of_two_loops_running_side_by_side_the_first_started_feeds(cap: CapturedNotices) -> None:
    with remind("pairs") as task:
        pairs = zip(track(range(4), name="left"), track(range(9), name="right"), strict=False)
        for _ in pairs:
            cap.session.tick()
            assert task.total == 4
    assert (task.n, task.total) == (4, 4)


def test_a_block_that_counts_itself_is_not_fed(cap: CapturedNotices) -> None:
    with remind("own total", total=100) as counted:
        for _ in track(range(3)):
            cap.session.tick()
            counted.advance()
    assert (counted.n, counted.total) == (3, 100)
    with remind("own advance") as advanced:
        advanced.advance(7)
        for _ in track(range(3)):
            cap.session.tick()
    assert (advanced.n, advanced.total) == (7, None)


def test_a_block_that_starts_counting_itself_stops_being_fed(cap: CapturedNotices) -> None:
    with remind("mixed") as task:
        for i in track(range(10)):
            cap.session.tick()
            if i == 2:
                task.set(100)
        cap.session.tick()
    assert task.n == 100


def test_a_loop_ending_before_any_tick_still_gives_its_count(cap: CapturedNotices) -> None:
    with remind("quick", progress=[0.5]) as task:
        for _ in track(range(6)):
            pass
    assert (task.n, task.total) == (6, 6)
    assert "never applied" not in only(cap, "success").body


def test_a_top_level_loop_and_a_loop_in_a_loop_feed_nothing_else(cap: CapturedNotices) -> None:
    outer = track(range(2), name="outer")
    for _ in outer:
        for _ in track(range(5), name="inner"):
            cap.session.tick()
    assert outer.task is not None and (outer.task.n, outer.task.total) == (2, 2)


def test_a_tqdm_bar_inside_the_loop_does_not_take_the_block(cap: CapturedNotices) -> None:
    tqdm = pytest.importorskip("tqdm.std").tqdm
    import os

    with open(os.devnull, "w") as null, remind("train") as task:
        for _ in track(range(3), name="epochs"):
            for _ in tqdm(range(50), file=null, mininterval=0):
                pass
            cap.session.tick()
            assert task.total == 3
    assert (task.n, task.total) == (3, 3)


def test_a_block_a_tqdm_bar_feeds_is_left_to_it(cap: CapturedNotices) -> None:
    tqdm = pytest.importorskip("tqdm.std").tqdm
    import os

    with open(os.devnull, "w") as null, remind("train") as task:
        bar = tqdm(total=40, file=null)
        bar.update(10)
        cap.session.tick()
        assert (task.n, task.total) == (10, 40)
        for _ in track(range(3), name="later"):
            cap.session.tick()
            assert (task.n, task.total) == (10, 40)
        bar.close()
    assert (task.n, task.total) == (10, 40)


# -- current_task() -----------------------------------------------------------------------------


def test_current_task_in_a_block_a_function_a_loop_and_nowhere(cap: CapturedNotices) -> None:
    assert current_task() is None
    with remind("block") as block:
        assert current_task() is block

        @remind
        def work() -> Task | None:
            return current_task()

        function = work()
        assert function is not None and function.kind == "function"
        assert function.parent is block
        loop = track(range(2), name="loop")
        for _ in loop:
            assert current_task() is loop.task
        assert current_task() is block
    assert current_task() is None
    assert current_task(session=cap.session) is None


def test_current_task_is_per_thread(cap: CapturedNotices) -> None:
    seen: list[Task | None] = []
    with remind("block"):
        thread = threading.Thread(target=lambda: seen.append(current_task()))
        thread.start()
        thread.join(10)
    assert seen == [None]


def test_current_task_is_exported() -> None:
    assert "current_task" in nbremind.__all__
    assert nbremind.current_task is current_task
    with pytest.raises(ValueError, match="session"):
        current_task(session="nope")  # type: ignore[arg-type]


def test_current_task_advance_in_a_block_reports_its_progress(cap: CapturedNotices) -> None:
    with remind("etl", total=4, progress=[0.5]):
        for _ in range(3):
            task = current_task()
            assert task is not None
            task.advance()
        cap.session.tick()
    assert only(cap, "progress").body.splitlines()[0] == "Reached 50% (2/4)"


# -- marks that can never apply, and what a progress notice says -------------------------------


def test_a_mark_with_no_total_anywhere_is_said_once_on_the_end_notice(
    cap: CapturedNotices,
) -> None:
    with remind("etl", progress=[0.5, 0.75]) as task:
        for _ in track(numbers(3)):
            cap.session.tick()
    note = "progress 50%, 75% never applied: no total"
    assert list(task.snapshot().notes) == [note]
    assert note in only(cap, "success").body.splitlines()
    assert cap.events() == ["success"]


def test_a_cell_says_it_in_its_status_line(cap: CapturedNotices) -> None:
    from nbremind.core.options import TaskOptions

    task = cap.session.new_task("train", options=TaskOptions(progress=(0.5,)), kind="cell")
    token = cap.session.start(task)
    assert status_text(task).startswith("▶ train")
    cap.session.finish(task, None, token)
    assert status_text(task) == (
        "✓ train finished in 0.0 s · --progress 50% never applied: no total"
    )
    assert task.snapshot().notes == ("--progress 50% never applied: no total",)


def test_a_mark_with_a_total_says_nothing_of_it(cap: CapturedNotices) -> None:
    with remind("etl", total=10, progress=[0.5]) as task:
        task.advance(2)
    assert task.snapshot().notes == ()
    assert "never applied" not in only(cap, "success").body


def test_a_progress_notice_states_the_mark_not_the_later_count(cap: CapturedNotices) -> None:
    with remind("etl", total=10, progress=[0.5]) as task:
        task.advance(9)  # the tick sees 90% first
        cap.session.tick()
    lines = only(cap, "progress").body.splitlines()
    assert lines[0] == "Reached 50% (5/10)"
    assert not any(line.startswith("Progress:") for line in lines)


@pytest.mark.parametrize(
    ("mark", "total", "count"),
    [
        (0.5, 16, 8),
        (0.3, 10, 3),
        (1 / 3, 10, 4),
        (0.125, 1000, 125),
        (1.0, 7, 7),
        (0.01, 3, 1),
    ],
)
def test_the_count_of_a_mark_is_the_first_that_reaches_it(
    cap: CapturedNotices, mark: float, total: int, count: int
) -> None:
    with remind("m", total=total, progress=[mark]) as task:
        task.set(total)
        cap.session.tick()
    assert f"({count:,}/{total:,})" in only(cap, "progress").body.splitlines()[0]
    assert count / total >= mark and (count - 1) / total < mark


# -- the user's paths: a script, and a real kernel -----------------------------------------------


def test_a_script_block_with_a_track_loop_notifies_its_mark() -> None:
    code = textwrap.dedent(
        """
        import json, time
        import nbremind
        from nbremind import remind, track

        session = nbremind.get_session()
        memory = session.dispatcher.channel("memory")
        with remind("etl", progress=[0.5], channels=["memory"]):
            for i in track(range(16), name="files"):
                time.sleep(0.01)  # the work
                if i == 15:  # the last item: wait until the ticker saw the mark
                    memory.wait_for(1, timeout=20)
        session.flush()
        print(json.dumps([[n.title, n.body] for n in memory.notices]))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    notices = json.loads(result.stdout.strip().splitlines()[-1])
    assert [title for title, _ in notices] == ["etl reached 50%", "✓ etl finished"]
    assert notices[0][1].splitlines()[0] == "Reached 50% (8/16)"


_CELL_TASKS = """
import nbremind
result = [[t.name, t.kind, t.n, t.total] for t in nbremind.get_session().tasks()]
"""


@pytest.mark.kernel
def test_a_track_loop_feeds_a_remind_cell_in_a_kernel(remind_kernel: Any) -> None:
    k = remind_kernel
    k.ok(
        "%%remind train --progress 50%\n"
        "import time\n"
        "import nbremind\n"
        "from nbremind import track\n"
        "memory = nbremind.get_session().dispatcher.channel('memory')\n"
        "for epoch in track(range(16), name='epochs'):\n"
        "    time.sleep(0.02)  # the work\n"
        "    if epoch == 15:  # the last epoch: wait until the ticker saw the mark\n"
        "        assert memory.wait_for(1, timeout=20), 'no progress notice'\n"
    )
    notices = k.notices()
    assert [n["title"] for n in notices] == ["train reached 50%", "✓ train finished"]
    assert notices[0]["body"].splitlines()[0] == "Reached 50% (8/16)"
    assert "Progress: 100% (16/16)" in notices[1]["body"]
    rows = k.query(_CELL_TASKS)
    assert ["train", "cell", 16, 16] in rows and ["epochs", "loop", 16, 16] in rows


@pytest.mark.kernel
def test_current_task_and_a_mark_never_applied_in_a_kernel(remind_kernel: Any) -> None:
    k = remind_kernel
    r = k.ok(
        "%%remind count --progress 50%\n"
        "import nbremind\n"
        "task = nbremind.current_task()\n"
        "task.advance(3)  # it counts itself: the loop below does not feed it\n"
        "inner = [nbremind.current_task().name for _ in nbremind.track(range(2), name='rows')]\n"
        "task.name, task.kind, task.n, task.total, inner"
    )
    assert r.result == "('count', 'cell', 3, None, ['rows', 'rows'])"
    assert k.ok("nbremind.current_task() is None").result == "True"
    [notice] = k.notices()
    assert "--progress 50% never applied: no total" in notice["body"].splitlines()
