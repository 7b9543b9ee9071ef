"""track(): totals and counts, how a loop ends (exhausted, break, exception), nesting, options,
pandas chunk readers, and the pending end settled by whoever learns the exception first."""

from __future__ import annotations

import collections
import inspect
import io
import json
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nbremind import Task, TaskState, TaskTimeout, remind, track
from nbremind.api.tracking import Tracked
from nbremind.runtime.loop_ends import SETTLE_AFTER
from nbremind.testing import CapturedNotices, FakeClock, capture_notices


def _line() -> int:
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno


def _task(tracked: Tracked[Any]) -> Task:
    assert tracked.task is not None
    return tracked.task


def numbers(n: int) -> Iterator[int]:
    yield from range(n)


class Boom(Exception):
    pass


# -- totals and counts ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("iterable", "total"),
    [
        ([10, 20, 30], 3),
        ((1, 2), 2),
        (range(7), 7),
        ({"a": 1, "b": 2, "c": 3, "d": 4}, 4),
        ({"x", "y"}, 2),
        ("abcde", 5),
        (b"bytes", 5),
        (collections.deque([1, 2, 3]), 3),
        (iter([1, 2, 3, 4]), 4),  # no len(): the iterator's C __length_hint__ tells
    ],
    ids=["list", "tuple", "range", "dict", "set", "str", "bytes", "deque", "list-iterator"],
)
def test_totals_and_counts(cap: CapturedNotices, iterable: Any, total: int) -> None:
    expected = list(iterable) if not isinstance(iterable, Iterator) else None
    tracked = track(iterable, name="items")
    got = list(tracked)
    if expected is not None:
        assert got == expected
    task = _task(tracked)
    assert (task.kind, task.state, task.n, task.total) == (
        "loop",
        TaskState.SUCCEEDED,
        total,
        total,
    )
    assert task.progress == 1.0
    assert cap.titles() == ["✓ items finished"]


def test_a_generator_is_counted_and_has_no_total(cap: CapturedNotices) -> None:
    tracked = track(numbers(6), name="gen")
    assert list(tracked) == [0, 1, 2, 3, 4, 5]
    task = _task(tracked)
    assert (task.state, task.n, task.total, task.progress) == (TaskState.SUCCEEDED, 6, None, None)


def test_an_explicit_total_wins(cap: CapturedNotices) -> None:
    tracked = track(numbers(4), total=10)
    assert len(tracked) == 10
    for _ in tracked:
        pass
    assert (_task(tracked).n, _task(tracked).total) == (4, 10)
    tracked = track([1, 2, 3], total=5)
    list(tracked)
    assert (_task(tracked).n, _task(tracked).total) == (3, 5)


def test_len_of_the_tracked_iterable(cap: CapturedNotices) -> None:
    assert len(track(range(12))) == 12
    with pytest.raises(TypeError, match="unknown"):
        len(track(numbers(3)))


def test_a_dataframe_counts_its_columns(cap: CapturedNotices) -> None:
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame({"a": range(5), "b": range(5), "c": range(5)})
    tracked = track(df)
    assert list(tracked) == ["a", "b", "c"]
    assert (_task(tracked).n, _task(tracked).total) == (3, 3)


@pytest.mark.parametrize(
    "make", [lambda: list(range(100)), lambda: numbers(100)], ids=["hint-path", "counting-path"]
)
def test_n_is_exact_while_the_loop_runs(cap: CapturedNotices, make: Any) -> None:
    tracked = track(make())
    for i, _ in enumerate(tracked):
        task = _task(tracked)
        assert task.n == i + 1  # the item in progress counts
        if i == 41:
            cap.session.tick()
            snap = task.snapshot()
            assert snap.n == 42
    assert _task(tracked).n == 100


def test_each_iteration_is_a_new_task(cap: CapturedNotices) -> None:
    tracked = track([1, 2], name="again")
    list(tracked)
    first = _task(tracked)
    list(tracked)
    assert _task(tracked) is not first
    assert cap.titles() == ["✓ again finished", "✓ again finished"]


def test_no_task_until_the_loop_takes_an_item(cap: CapturedNotices) -> None:
    tracked = track([1, 2, 3])
    it = iter(tracked)
    assert tracked.task is None and cap.session.tasks() == []
    del it  # a generator never started has nothing to end
    assert cap.session.tasks() == []


# -- default names -------------------------------------------------------------------------------


def test_default_names(cap: CapturedNotices) -> None:
    line = _line() + 1
    assert track([1]).name == f"list at test_track.py:{line}"
    line = _line() + 1
    assert track(numbers(2)).name == f"numbers() at test_track.py:{line}"
    line = _line() + 1
    assert track(x for x in "ab").name == f"generator at test_track.py:{line}"
    namespace: dict[str, Any] = {"track": track}
    exec(compile("\n\nt = track(range(3))\n", "<cell>", "exec"), namespace)
    assert namespace["t"].name == "range at line 3"


def test_default_names_are_kept_per_call_and_type(cap: CapturedNotices) -> None:
    def both(first: Any, second: Any) -> tuple[str, str]:
        return track(first).name, track(second).name

    line = _line() - 2
    for _ in range(3):  # made once per call and type, then taken as made
        assert both([1], (2,)) == (
            f"list at test_track.py:{line}",
            f"tuple at test_track.py:{line}",
        )
        assert both((1,), [2]) == (
            f"tuple at test_track.py:{line}",
            f"list at test_track.py:{line}",
        )
    source = "\n".join(["def f(it):", "    return track(it).name"] * 2)  # the same code twice
    first: dict[str, Any] = {"track": track}
    exec(compile(source, "<a>", "exec"), first)
    second: dict[str, Any] = {"track": track}
    exec(compile("\n" + source, "<b>", "exec"), second)
    assert (first["f"]([1]), second["f"]([1])) == ("list at line 4", "list at line 5")


# -- how a loop ends -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make", [lambda: list(range(10)), lambda: numbers(10)], ids=["hint-path", "counting-path"]
)
def test_break_succeeds_with_the_partial_count(cap: CapturedNotices, make: Any) -> None:
    tracked = track(make(), name="partial")
    for x in tracked:
        if x == 3:
            break
    task = _task(tracked)
    assert (task.state, task.n) == (TaskState.SUCCEEDED, 4)
    assert cap.session.pending() == []
    assert cap.titles() == ["✓ partial finished"]
    assert ("Progress: 40% (4/10)" if task.total else "Done: 4") in cap.notices[0].body


def test_return_inside_the_loop_succeeds(cap: CapturedNotices) -> None:
    tracked = track(numbers(10))

    def first_big() -> int:
        for x in tracked:
            if x > 4:
                return x
        return -1

    assert first_big() == 5
    assert (_task(tracked).state, _task(tracked).n) == (TaskState.SUCCEEDED, 6)
    assert cap.session.pending() == []


def test_deleting_the_iterator_succeeds(cap: CapturedNotices) -> None:
    tracked = track([1, 2, 3])
    it = iter(tracked)
    next(it)
    del it
    assert (_task(tracked).state, _task(tracked).n) == (TaskState.SUCCEEDED, 1)


def test_exception_in_the_body_fails_the_loop(cap: CapturedNotices) -> None:
    error = Boom("row 2 is bad")
    tracked = track([1, 2, 3], name="rows")
    with pytest.raises(Boom) as info, remind("etl") as block:
        for x in tracked:
            if x == 2:
                raise error
    assert info.value is error  # the user's exception, unchanged
    loop = _task(tracked)
    assert loop.parent is block
    assert (loop.state, loop.n) == (TaskState.FAILED, 2)
    assert loop.error is not None and (loop.error.type, loop.error.message) == (
        "Boom",
        "row 2 is bad",
    )
    assert block.state is TaskState.FAILED
    assert loop.end_mono is not None and block.end_mono is not None
    assert cap.titles() == ["✗ etl failed"]  # the loop inside the block leaves it the end notice
    assert cap.session.pending() == []


def test_exception_raised_deeper_in_the_body(cap: CapturedNotices) -> None:
    def check(x: int) -> None:
        if x == 3:
            raise KeyError(f"missing {x}")

    tracked = track(numbers(5), name="deep", on=["failure"])
    with pytest.raises(KeyError), remind("etl"):
        for x in tracked:
            check(x)
    loop = _task(tracked)
    assert loop.state is TaskState.FAILED and loop.error is not None
    assert loop.error.type == "KeyError" and loop.n == 4
    assert cap.titles() == ["✗ deep failed", "✗ etl failed"]


def test_a_bare_reraise_in_the_body_fails_the_loop(cap: CapturedNotices) -> None:
    tracked = track([1, 2])
    cleaned = []
    with pytest.raises(ZeroDivisionError), remind("etl"):
        for x in tracked:
            try:
                x / 0
            except ZeroDivisionError:
                cleaned.append(x)
                raise
    assert cleaned == [1]
    assert _task(tracked).state is TaskState.FAILED
    assert _task(tracked).error is not None and _task(tracked).error.type == "ZeroDivisionError"


def test_exception_in_a_comprehension_fails_the_loop(cap: CapturedNotices) -> None:
    tracked = track([1, 2, 3])
    with pytest.raises(ZeroDivisionError), remind("etl"):
        [1 / (x - 2) for x in tracked]
    assert _task(tracked).state is TaskState.FAILED


def test_exception_from_the_iterable_fails_the_loop(cap: CapturedNotices) -> None:
    def rows() -> Iterator[int]:
        yield 1
        raise Boom("file truncated")

    tracked = track(rows(), name="rows")
    with pytest.raises(Boom, match="file truncated") as info:
        for _ in tracked:
            pass
    # the traceback still leads to where the iterable raised
    assert info.traceback[-1].name == "rows"
    task = _task(tracked)
    assert task.state is TaskState.FAILED and task.n == 1
    assert cap.titles() == ["✗ rows failed"]
    assert cap.session.pending() == []


def test_keyboard_interrupt_from_the_iterable_cancels(cap: CapturedNotices) -> None:
    def rows() -> Iterator[int]:
        yield 1
        raise KeyboardInterrupt

    tracked = track(rows())
    with pytest.raises(KeyboardInterrupt):
        list(tracked)
    assert _task(tracked).state is TaskState.CANCELLED


def test_keyboard_interrupt_in_the_body_cancels(cap: CapturedNotices) -> None:
    tracked = track([1, 2])
    with pytest.raises(KeyboardInterrupt), remind("cell"):
        for _ in tracked:
            raise KeyboardInterrupt
    assert _task(tracked).state is TaskState.CANCELLED


def test_caught_exception_then_the_block_ends_normally(cap: CapturedNotices) -> None:
    tracked = track([1, 2, 3])
    with remind("etl") as block:
        try:
            for x in tracked:
                if x == 2:
                    raise Boom("handled")
        except Boom:
            pass
        assert cap.session.pending() == [_task(tracked)]
    assert block.state is TaskState.SUCCEEDED
    assert (_task(tracked).state, _task(tracked).n) == (TaskState.SUCCEEDED, 2)


def test_caught_exception_then_another_one_elsewhere(cap: CapturedNotices) -> None:
    tracked = track([1, 2, 3])

    def later() -> None:
        raise RuntimeError("unrelated")

    with pytest.raises(RuntimeError), remind("etl"):
        try:
            for x in tracked:
                if x == 2:
                    raise Boom("handled")
        except Boom:
            pass
        later()
    # the exception that ended the block never went through the loop
    assert _task(tracked).state is TaskState.SUCCEEDED


def test_loop_failure_chained_into_the_blocks_exception(cap: CapturedNotices) -> None:
    tracked = track([1, 2, 3])
    with pytest.raises(RuntimeError), remind("etl"):
        try:
            for x in tracked:
                if x == 2:
                    raise Boom("root cause")
        except Boom as exc:
            raise RuntimeError("load failed") from exc
    loop = _task(tracked)
    assert loop.state is TaskState.FAILED
    assert loop.error is not None and (loop.error.type, loop.error.message) == (
        "Boom",
        "root cause",
    )


# -- a pending end, settled by evidence or after the window -------------------------------------


def test_explicit_close_succeeds_after_the_settle_window(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    tracked = track(numbers(10), name="closed")
    it = iter(tracked)
    next(it)
    next(it)
    clock.advance(3)
    it.close()  # closed by a call, not a break: it waits for evidence
    task = _task(tracked)
    assert cap.session.pending() == [task]
    assert task.state is TaskState.RUNNING and task.n == 2
    clock.advance(SETTLE_AFTER / 2)
    cap.session.tick()
    assert task.state is TaskState.RUNNING
    clock.advance(SETTLE_AFTER / 2)
    cap.session.tick()
    assert (task.state, task.n) == (TaskState.SUCCEEDED, 2)
    assert task.elapsed == 3  # it ended when it was closed, not when it was settled
    assert cap.session.pending() == []
    assert cap.titles() == ["✓ closed finished"]


def test_settle_pending_with_the_exception_that_escaped(cap: CapturedNotices) -> None:
    tracked = track([1, 2, 3], name="top")
    try:
        for x in tracked:
            if x == 2:
                raise Boom("at the top")
    except Boom as exc:
        assert cap.session.pending() == [_task(tracked)]
        assert cap.session.settle_pending(exc) == 1  # what post_run_cell does in IPython
    task = _task(tracked)
    assert task.state is TaskState.FAILED
    assert task.error is not None and task.error.message == "at the top"
    assert cap.titles() == ["✗ top failed"]
    assert cap.session.settle_pending(None) == 0


def test_settle_pending_without_an_exception(cap: CapturedNotices) -> None:
    tracked = track([1, 2, 3])
    try:
        for x in tracked:
            if x == 2:
                raise Boom("caught")
    except Boom:
        pass
    assert cap.session.settle_pending(None) == 1
    assert _task(tracked).state is TaskState.SUCCEEDED


def test_settle_pending_with_an_unrelated_exception(cap: CapturedNotices) -> None:
    tracked = track([1, 2, 3])
    try:
        for x in tracked:
            if x == 2:
                raise Boom("caught")
    except Boom:
        pass
    assert cap.session.settle_pending(ValueError("another cell's")) == 1
    assert _task(tracked).state is TaskState.SUCCEEDED


def test_the_window_waits_while_the_exception_is_being_handled(
    cap: CapturedNotices, clock: FakeClock
) -> None:
    tracked = track([1, 2, 3])
    try:
        for x in tracked:
            if x == 2:
                raise Boom("slow cleanup")
    except Boom:
        # a slow except block (or finally, or __exit__) is still handling it
        clock.advance(SETTLE_AFTER * 5)
        cap.session.tick()
        assert _task(tracked).state is TaskState.RUNNING
    clock.advance(SETTLE_AFTER)
    cap.session.tick()
    assert _task(tracked).state is TaskState.SUCCEEDED


def test_the_last_uncaught_exception_is_evidence(
    cap: CapturedNotices, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracked = track([1, 2, 3])
    try:
        for x in tracked:
            if x == 3:
                raise Boom("shown by IPython")
    except Boom as exc:
        error = exc
    # what IPython (or Python, for a script) records for an error that reached the top
    monkeypatch.setattr(sys, "last_value", error, raising=False)
    monkeypatch.setattr(sys, "last_exc", error, raising=False)
    clock.advance(SETTLE_AFTER)
    cap.session.tick()
    assert _task(tracked).state is TaskState.FAILED


def test_a_closed_consumer_generator_settles(cap: CapturedNotices, clock: FakeClock) -> None:
    tracked = track([1, 2, 3])

    def firsts() -> Iterator[int]:
        for x in tracked:  # noqa: UP028 - this frame, not a delegation, is the consumer
            yield x

    consumer = firsts()
    next(consumer)
    consumer.close()
    clock.advance(SETTLE_AFTER)
    cap.session.tick()
    assert (_task(tracked).state, _task(tracked).n) == (TaskState.SUCCEEDED, 1)


def test_closing_the_session_settles_pending_loops(clock: FakeClock) -> None:
    with capture_notices(clock) as cap:
        tracked = track([1, 2], name="left")
        it = iter(tracked)
        next(it)
        it.close()
        assert cap.session.pending() == [_task(tracked)]
    assert _task(tracked).state is TaskState.SUCCEEDED
    assert cap.channel.titles() == ["✓ left finished"]


def test_excepthooks_are_installed_only_while_a_loop_is_pending(cap: CapturedNotices) -> None:
    sys_hook, thread_hook = sys.excepthook, threading.excepthook
    it = iter(track([1, 2]))
    next(it)
    it.close()
    assert sys.excepthook is not sys_hook and threading.excepthook is not thread_hook
    cap.session.settle_pending()
    assert sys.excepthook is sys_hook and threading.excepthook is thread_hook


def test_the_excepthook_chains_to_the_previous_one(
    cap: CapturedNotices, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[BaseException] = []
    monkeypatch.setattr(sys, "excepthook", lambda t, e, tb: seen.append(e))
    tracked = track([1, 2])
    try:
        for _ in tracked:
            raise Boom("uncaught")
    except Boom as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)  # what Python does at the top
        assert seen == [exc]
    assert _task(tracked).state is TaskState.FAILED


def test_uncaught_exceptions_in_a_script_and_a_thread(tmp_path: Path) -> None:
    script = tmp_path / "etl.py"
    script.write_text(
        textwrap.dedent(
            """
        import atexit, json, threading
        from nbremind import Session, track
        from nbremind.channels.memory import MemoryChannel
        from nbremind.core.config import Config
        from nbremind.runtime.session import set_session

        channel = MemoryChannel()

        def report():  # runs after the session was closed and its notices delivered
            print(json.dumps([[n.title, n.body.splitlines()[0]] for n in channel.notices]))

        atexit.register(report)
        set_session(Session(Config(channels=("memory",)), channels={"memory": channel}))

        def work():
            for x in track([1, 2, 3], name="thread loop"):
                if x == 2:
                    raise RuntimeError("thread broke")

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()

        def rows():
            yield from range(10)

        for x in track(rows(), name="script loop"):
            if x == 3:
                raise ValueError("row 3 is bad")
        """
        )
    )
    result = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 1, result.stderr
    assert "ValueError: row 3 is bad" in result.stderr  # the usual traceback, still printed
    assert "RuntimeError: thread broke" in result.stderr
    notices = json.loads(result.stdout.strip().splitlines()[-1])
    assert notices == [
        ["✗ thread loop failed", "RuntimeError: thread broke"],
        ["✗ script loop failed", "ValueError: row 3 is bad"],
    ]


# -- nesting -------------------------------------------------------------------------------------


def test_nested_loops_nest(cap: CapturedNotices) -> None:
    outer_t = track(["a", "b"], name="files")
    inners: list[Task] = []
    with remind("etl") as block:
        for _ in outer_t:
            outer = _task(outer_t)
            assert cap.session.current() is outer
            inner_t = track(range(3), name="rows")
            for _ in inner_t:
                assert cap.session.current() is _task(inner_t)
            inners.append(_task(inner_t))
            assert cap.session.current() is outer
        assert cap.session.current() is block
    assert outer.parent is block
    assert [i.parent for i in inners] == [outer, outer]
    assert all(i.state is TaskState.SUCCEEDED and i.n == 3 for i in inners)
    assert cap.titles() == ["✓ etl finished"]


def test_a_loop_in_a_block_notifies_what_it_was_asked_to(cap: CapturedNotices) -> None:
    with remind("etl"):
        list(track([1], name="quiet"))
        list(track([1], name="loud", on=["success"]))
    assert cap.titles() == ["✓ loud finished", "✓ etl finished"]


def test_exception_in_an_inner_loop_fails_both_loops(cap: CapturedNotices) -> None:
    outer_t = track(range(3), name="outer")
    inner_t = track(range(3), name="inner")
    with pytest.raises(Boom), remind("etl"):
        for i in outer_t:
            for j in inner_t:
                if (i, j) == (1, 2):
                    raise Boom("deep")
    outer, inner = _task(outer_t), _task(inner_t)
    assert inner.parent is outer
    assert (outer.state, outer.n) == (TaskState.FAILED, 2)
    assert (inner.state, inner.n) == (TaskState.FAILED, 3)
    assert cap.session.current() is None


# -- options and thresholds ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"after": "soon"}, "track\\(\\): after"),
        ({"every": -1}, "track\\(\\): every"),
        ({"progress": 2}, "track\\(\\): progress"),
        ({"mem": "lots"}, "track\\(\\): mem"),
        ({"timeout": "1x"}, "track\\(\\): timeout"),
        ({"interrupt": True}, "track\\(\\): interrupt"),
        ({"on": ["sucess"]}, "track\\(\\): on"),
        ({"channels": ["nowhere"]}, "track\\(\\): channels"),
        ({"min_duration": "long"}, "track\\(\\): min_duration"),
        ({"when": 3}, "track\\(\\): when"),
        ({"name": 3}, "track\\(\\): name"),
        ({"total": -1}, "track\\(\\): total"),
        ({"total": 2.5}, "track\\(\\): total"),
    ],
)
def test_bad_options_raise_before_the_loop(
    cap: CapturedNotices, kwargs: dict[str, Any], match: str
) -> None:
    started = []

    def rows() -> Iterator[int]:
        started.append(True)
        yield 1

    with pytest.raises(ValueError, match=match):
        track(rows(), **kwargs)
    assert started == [] and cap.session.tasks() == []


def test_not_iterable(cap: CapturedNotices) -> None:
    with pytest.raises(TypeError, match="not iterable"):
        track(5)  # type: ignore[arg-type]


def test_progress_marks_fire_from_a_loop(cap: CapturedNotices) -> None:
    tracked = track(range(10), name="rows", progress=[0.5, "90%"])
    for _ in tracked:
        cap.session.tick()
    assert cap.titles() == ["rows reached 50%", "rows reached 90%", "✓ rows finished"]
    assert [n.task.n for n in cap.notices[:2]] == [5, 9]


def test_progress_marks_fire_from_a_nested_loop(cap: CapturedNotices) -> None:
    with remind("etl"):
        for _ in track(numbers(4), name="rows", total=4, progress=[0.5]):
            cap.session.tick()
    assert cap.titles() == ["rows reached 50%", "✓ etl finished"]


def test_after_and_timeout_from_a_loop(cap: CapturedNotices, clock: FakeClock) -> None:
    tracked = track(range(3), name="slow", after="1m", timeout="2m")
    for _ in tracked:
        clock.advance(50)
        cap.session.tick()
    assert _task(tracked).state is TaskState.TIMED_OUT
    assert cap.events() == ["after", "timeout", "timeout"]


def test_interrupt_at_timeout_inside_the_iterable(
    cap: CapturedNotices, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_box: list[Task] = []

    def interrupt(task: Task) -> None:  # instead of a real SIGINT to this thread
        task.interrupted_by_timeout = True
        task_box.append(task)

    monkeypatch.setattr(cap.session, "interrupt", interrupt)

    def rows() -> Iterator[int]:
        yield 1
        clock.advance(61)
        cap.session.tick()
        raise KeyboardInterrupt  # the signal arrives while the iterable runs

    tracked = track(rows(), name="slow", timeout="1m", interrupt=True)
    with pytest.raises(TaskTimeout, match="passed its timeout"):
        list(tracked)
    assert task_box == [_task(tracked)]
    assert _task(tracked).state is TaskState.TIMED_OUT


def test_an_explicit_session(clock: FakeClock) -> None:
    with capture_notices(clock) as mine, capture_notices(clock) as other:
        tracked = track([1, 2], name="here", session=mine.session)
        list(tracked)
        assert mine.titles() == ["✓ here finished"]
        assert other.notices == []


def test_nbremind_trouble_never_stops_the_loop(
    cap: CapturedNotices, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(task: Task) -> None:
        raise RuntimeError("nbremind bug")

    monkeypatch.setattr(cap.session, "start", broken)
    assert list(track([1, 2, 3])) == [1, 2, 3]
    assert list(track(numbers(3))) == [0, 1, 2]


# -- task.advance() ------------------------------------------------------------------------------


def test_advance_and_set(cap: CapturedNotices) -> None:
    with remind("etl", total=100) as task:
        task.advance()
        task.advance()
        task.advance(5)
        assert task.n == 7
        task.set(50)
        assert task.n == 50
        task.advance()
        assert task.n == 51 and task.progress == 0.51
        assert task.snapshot().n == 51


def test_advance_from_many_threads(cap: CapturedNotices) -> None:
    with remind("etl") as task:

        def work() -> None:
            for i in range(20_000):
                task.advance(1 if i % 2 else 3)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert task.n == 4 * 10_000 * (1 + 3)


# -- pandas chunk readers ------------------------------------------------------------------------


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    pd = pytest.importorskip("pandas")
    path = tmp_path / "sales.csv"
    pd.DataFrame({"id": range(50_000), "text": ["x" * 30] * 50_000}).to_csv(path, index=False)
    return path


def test_chunk_reader_progress_in_bytes(cap: CapturedNotices, csv_path: Path) -> None:
    import pandas as pd

    size = csv_path.stat().st_size
    tracked = track(pd.read_csv(csv_path, chunksize=12_000))
    assert tracked.name == f"sales.csv at test_track.py:{_line() - 1}"
    seen = []
    for _ in tracked:
        task = _task(tracked)
        seen.append((task.n, task.metrics["rows"]))
        assert task.total == size and task.unit == "B"
        assert 0 < task.n <= size
    assert [rows for _, rows in seen] == [12_000, 24_000, 36_000, 48_000, 50_000]
    positions = [n for n, _ in seen]
    assert positions == sorted(positions)
    task = _task(tracked)
    assert (task.state, task.n, task.total, task.progress) == (TaskState.SUCCEEDED, size, size, 1.0)
    assert task.snapshot().unit == "B" and task.metrics["rows"] == 50_000


def test_chunk_reader_break_keeps_partial_progress(cap: CapturedNotices, csv_path: Path) -> None:
    import pandas as pd

    tracked = track(pd.read_csv(csv_path, chunksize=10_000), name="load")
    for i, _ in enumerate(tracked):
        if i == 1:
            break
    task = _task(tracked)
    assert task.state is TaskState.SUCCEEDED
    assert task.metrics["rows"] == 20_000
    assert 0 < task.n < csv_path.stat().st_size


def test_chunk_reader_with_nrows_counts_rows(cap: CapturedNotices, csv_path: Path) -> None:
    import pandas as pd

    tracked = track(pd.read_csv(csv_path, chunksize=10_000, nrows=25_000))
    for _ in tracked:
        pass
    task = _task(tracked)
    assert (task.n, task.total, task.unit) == (25_000, 25_000, None)
    assert task.metrics["bytes"] > 0


def test_chunk_reader_with_an_explicit_total_counts_rows(
    cap: CapturedNotices, csv_path: Path
) -> None:
    import pandas as pd

    tracked = track(pd.read_csv(csv_path, chunksize=20_000), total=50_000, progress=[0.5])
    for _ in tracked:
        cap.session.tick()
    task = _task(tracked)
    assert (task.n, task.total) == (50_000, 50_000)
    assert cap.titles()[0].endswith("reached 50%")


def test_chunk_reader_over_a_buffer_counts_rows(cap: CapturedNotices) -> None:
    pd = pytest.importorskip("pandas")
    buffer = io.StringIO("a,b\n" + "1,2\n" * 1000)
    tracked = track(pd.read_csv(buffer, chunksize=300))
    for _ in tracked:
        pass
    task = _task(tracked)
    assert (task.n, task.total, task.unit) == (1000, None, None)
    assert tracked.name.startswith("TextFileReader chunks at ")


def test_chunk_reader_failure(cap: CapturedNotices, tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n" + "1,2\n" * 10 + "1,2,3,4\n")
    tracked = track(pd.read_csv(path, chunksize=4))
    with pytest.raises(pd.errors.ParserError):
        for _ in tracked:
            pass
    assert _task(tracked).state is TaskState.FAILED


# -- staying light -------------------------------------------------------------------------------


def test_a_tracked_loop_imports_nothing_heavy() -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from nbremind import track
        from nbremind.testing import capture_notices
        with capture_notices() as cap:
            for _ in track(range(3), name="light"):
                cap.session.tick()
            for _ in track(iter(lambda: None, 0), name="gen"):
                break
            assert cap.titles() == ["✓ light finished", "✓ gen finished"], cap.titles()
        heavy = ("pandas", "tqdm", "IPython", "ipywidgets", "numpy", "desktop_notifier")
        print(json.dumps(sorted(m for m in heavy if m in sys.modules)))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


# -- in a real kernel ----------------------------------------------------------------------------


def _wait_for_titles(k: Any, count: int, timeout: float = 20.0) -> list[str]:
    """The kernel's notice titles once there are ``count`` of them (or at the deadline)."""
    import time

    deadline = time.monotonic() + timeout
    titles: list[str] = k.titles()
    while len(titles) < count and time.monotonic() < deadline:
        k.query("import time\ntime.sleep(0.05)\nresult = None")  # polls a condition
        titles = k.titles()
    return titles


@pytest.mark.kernel
def test_a_failing_loop_in_a_remind_cell(remind_kernel: Any) -> None:
    k = remind_kernel
    r = k.run(
        "%%remind etl\n"
        "from nbremind import track\n"
        "for x in track([1, 2, 3], name='rows'):\n"
        "    if x == 2:\n"
        "        raise ValueError('bad row')\n"
    )
    assert (r.status, r.ename, r.evalue) == ("error", "ValueError", "bad row")
    assert "nbremind" not in r.traceback_text.replace("from nbremind import track", "")
    assert k.titles() == ["✗ etl failed"]
    tasks = k.tasks()[-2:]
    assert [(t["name"], t["state"], t["parent"]) for t in tasks] == [
        ("etl", "failed", None),
        ("rows", "failed", "etl"),
    ]


@pytest.mark.kernel
def test_loops_in_plain_cells(remind_kernel: Any) -> None:
    k = remind_kernel
    k.ok(
        "from nbremind import track\nfor x in track(range(10), name='head'):\n"
        "    if x == 2:\n        break\n"
    )
    assert k.titles() == ["✓ head finished"]
    r = k.run(
        "for x in track(range(10), name='rows'):\n    if x == 3:\n        raise KeyError(x)\n"
    )
    assert r.status == "error"
    # settled by the cell's end (post_run_cell) or, at the latest, by the next tick after
    # the settle window, from the error IPython recorded
    assert _wait_for_titles(k, 2) == ["✓ head finished", "✗ rows failed"]
    failure = k.notices()[-1]
    assert failure["error"] == ["KeyError", "3"]


def test_zipped_loops_end_out_of_order(cap: CapturedNotices) -> None:
    with remind("etl") as block:
        a, b = track([1, 2, 3], name="a"), track([1, 2], name="b")
        pairs = list(zip(a, b, strict=False))
        assert pairs == [(1, 1), (2, 2)]
        assert _task(b).parent is _task(a)
        assert cap.session.current() is block
        with remind("next") as after:
            pass
    assert after.parent is block


def test_a_loop_ended_by_its_parent_then_closed_late(cap: CapturedNotices) -> None:
    tracked = track([1, 2, 3])
    with remind("first") as first:
        it = iter(tracked)
        next(it)
        with pytest.raises(Boom):
            raise Boom("in the block, outside the loop's body")
        assert _task(tracked).state is TaskState.RUNNING
    # the block ended; the loop it enclosed is still open
    assert cap.session.current() is None
    with remind("second") as second:
        del it  # the generator closes now, long after its parent ended
        with remind("child") as child:
            pass
    assert child.parent is second and first.state is TaskState.SUCCEEDED
    assert _task(tracked).state is TaskState.SUCCEEDED
