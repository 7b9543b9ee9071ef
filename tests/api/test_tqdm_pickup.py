"""Existing tqdm bars feed the progress of the running cell or block (real tqdm objects)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from nbremind import TaskState, remind, track
from nbremind.runtime import tqdm_feed as tqdm_bridge
from nbremind.testing import CapturedNotices, FakeClock, capture_notices

std_tqdm = pytest.importorskip("tqdm.std").tqdm
auto_tqdm = pytest.importorskip("tqdm.auto").tqdm
notebook_tqdm = pytest.importorskip("tqdm.notebook").tqdm


@pytest.fixture
def null() -> Iterator[Any]:
    with open(os.devnull, "w") as f:
        yield f


@pytest.fixture
def clock() -> FakeClock:
    # the wall clock a little in the past, so that bars made by the test start after tasks
    return FakeClock(wall=time.time() - 5)


@pytest.fixture(autouse=True)
def no_leftover_bars() -> Iterator[None]:
    yield
    for bar in list(std_tqdm._instances):
        bar.close()


def make_bar(cls: Any, null: Any, **kwargs: Any) -> Any:
    if cls is notebook_tqdm:
        return cls(display=False, **kwargs)  # the widget, not shown outside a notebook
    return cls(file=null, **kwargs)


@pytest.mark.parametrize(
    "cls", [std_tqdm, auto_tqdm, notebook_tqdm], ids=["tqdm", "tqdm.auto", "tqdm.notebook"]
)
def test_a_bar_feeds_a_block(cap: CapturedNotices, null: Any, cls: Any) -> None:
    with remind("train") as task:
        bar = make_bar(cls, null, total=40)
        bar.update(10)
        cap.session.tick()
        assert (task.n, task.total, task.progress) == (10, 40, 0.25)
        bar.update(20)
        cap.session.tick()
        assert task.n == 30
        bar.close()
    assert (task.state, task.n, task.total) == (TaskState.SUCCEEDED, 30, 40)


def test_a_loop_bar_feeds_progress_marks_and_eta(
    cap: CapturedNotices, clock: FakeClock, null: Any
) -> None:
    with remind("train", progress=[0.5]) as task:
        for _ in std_tqdm(range(10), file=null, mininterval=0):
            clock.advance(1)
            cap.session.tick()
        assert task.eta is not None or task.n == task.total
    assert (task.n, task.total) == (10, 10)
    assert cap.titles() == ["train reached 50%", "✓ train finished"]
    assert cap.notices[0].task.eta is not None and cap.notices[0].task.eta > 0


def test_the_outermost_bar_wins(cap: CapturedNotices, null: Any) -> None:
    with remind("epochs") as task:
        for epoch in std_tqdm(range(3), file=null, mininterval=0):
            for _ in std_tqdm(range(50), file=null, mininterval=0, leave=False):
                pass
            cap.session.tick()
            assert (task.n, task.total) == (epoch, 3)  # tqdm counts an epoch once it is done
    assert (task.n, task.total) == (3, 3)


def test_the_outermost_by_position(cap: CapturedNotices, null: Any) -> None:
    with remind("jobs") as task:
        low = std_tqdm(total=7, file=null, position=2)
        high = std_tqdm(total=9, file=null, position=1)
        cap.session.tick()
        assert task.total == 9
        low.close()
        high.close()


def test_a_later_bar_takes_over_when_the_first_closed(cap: CapturedNotices, null: Any) -> None:
    with remind("two loops") as task:
        first = std_tqdm(total=4, file=null)
        first.update(1)
        cap.session.tick()
        first.update(3)
        first.close()
        del first
        cap.session.tick()
        assert (task.n, task.total) == (4, 4)
        second = std_tqdm(total=100, file=null)
        second.update(5)
        cap.session.tick()
        assert (task.n, task.total) == (5, 100)
        second.close()


def test_the_final_count_is_read_at_the_end(cap: CapturedNotices, null: Any) -> None:
    with remind("train") as task:
        bar = std_tqdm(total=10, file=null)
        bar.update(2)
        cap.session.tick()
        bar.update(8)  # after the last tick
        bar.close()
    assert task.n == 10


def test_the_final_count_of_a_loop_bar_already_freed(cap: CapturedNotices, null: Any) -> None:
    with remind("train") as task:
        for i in std_tqdm(range(100), file=null):  # redraws every 0.1 s only
            if i == 0:
                cap.session.tick()
        # the bar was closed and freed with its loop; no tick saw its end
    assert (task.n, task.total) == (100, 100)
    assert cap.notices[-1].task.n == 100


def test_a_freed_bar_is_let_go(cap: CapturedNotices, null: Any) -> None:
    import gc
    import weakref

    class Rows(list):  # type: ignore[type-arg]
        pass

    with remind("train") as task:
        data = Rows([1])
        ref = weakref.ref(data)
        bar = std_tqdm(data, file=null)
        cap.session.tick()
        list(bar)
        del bar
        cap.session.tick()  # reads its last count, then keeps nothing of it (its iterable)
        del data
        gc.collect()
        assert ref() is None
        assert task.n == 1


def test_bars_from_before_the_task_are_ignored(null: Any) -> None:
    bar = std_tqdm(total=10, file=null)
    bar.update(3)
    with capture_notices(FakeClock(wall=time.time() + 60)) as cap, remind("later") as task:
        cap.session.tick()
        assert (task.n, task.total) == (0, None)
    bar.close()


def test_a_cell_task_is_fed(cap: CapturedNotices, null: Any) -> None:
    session = cap.session
    task = session.new_task("cell", kind="cell")
    token = session.start(task)
    bar = std_tqdm(total=8, file=null)
    bar.update(2)
    session.tick()
    assert (task.n, task.total) == (2, 8)
    bar.close()
    session.finish(task, None, token)


def test_tasks_that_count_themselves_are_not_fed(cap: CapturedNotices, null: Any) -> None:
    with remind("counted", total=1000) as counted, remind("advanced") as advanced:
        advanced.advance(3)
        tracked = track(range(5), name="loop")
        for _ in tracked:
            bar = std_tqdm(total=50, file=null)
            bar.update(25)
            cap.session.tick()
            bar.close()
            break
        assert (counted.n, counted.total) == (0, 1000)
        assert (advanced.n, advanced.total) == (3, None)
    assert tracked.task is not None and (tracked.task.n, tracked.task.total) == (1, 5)


def test_tqdm_lock_held_elsewhere_does_not_block_the_tick(cap: CapturedNotices, null: Any) -> None:
    lock = std_tqdm.get_lock()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with lock:
            holding.set()
            release.wait(30)

    holder = threading.Thread(target=hold)
    with remind("busy") as task:
        bar2 = std_tqdm(total=20, file=null)
        bar2.update(4)
        holder.start()
        assert holding.wait(30)
        try:
            start = time.perf_counter()
            cap.session.tick()  # the lock is not free: copies the bars without it
            assert time.perf_counter() - start < 5
            assert (task.n, task.total) == (4, 20)
        finally:
            release.set()
            holder.join(30)
        bar2.close()


def test_live_bars_without_tqdm_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delitem(sys.modules, "tqdm.std")
    assert tqdm_bridge.live_bars() == []


def test_pickup_needs_no_tqdm_import() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from nbremind import remind
        from nbremind.testing import capture_notices
        with capture_notices() as cap:
            with remind("cell") as task:
                cap.session.tick()
        print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] == "tqdm")))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.mark.kernel
def test_a_tqdm_loop_feeds_a_remind_cell(remind_kernel: Any) -> None:
    k = remind_kernel
    k.ok(
        "%%remind train --progress 50%\n"
        "import nbremind\n"
        "from tqdm.auto import tqdm\n"
        "memory = nbremind.get_session().dispatcher.channels['memory']\n"
        "for i in tqdm(range(10), mininterval=0):\n"
        "    if i == 6:  # 6 of 10 done: wait for the ticker to notice the 50% mark\n"
        "        assert memory.wait_for(1, timeout=20), 'no progress notice'\n"
    )
    notices = k.notices()
    assert [n["title"] for n in notices] == ["train reached 50%", "✓ train finished"]
    assert "Progress: 100% (10/10)" in notices[-1]["body"]
