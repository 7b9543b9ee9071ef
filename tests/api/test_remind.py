"""remind() as a sync or async context manager and as a decorator; nesting; default names."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Iterator

import pytest

from nbremind import Session, Task, TaskState, configure, get_session, remind
from nbremind.channels.memory import MemoryChannel
from nbremind.core.config import Config
from nbremind.testing import CapturedNotices, FakeClock, capture_notices


@pytest.fixture
def cap() -> Iterator[CapturedNotices]:
    with capture_notices(FakeClock()) as captured:
        yield captured


def _line() -> int:
    frame = inspect.currentframe()
    assert frame is not None and frame.f_back is not None
    return frame.f_back.f_lineno


# -- context managers ----------------------------------------------------------------------


def test_sync_context_manager(cap: CapturedNotices) -> None:
    with remind("etl", total=3) as task:
        assert isinstance(task, Task)
        assert task.name == "etl"
        assert task.total == 3
        assert task.state is TaskState.RUNNING
        assert cap.session.current() is task
        assert cap.session.running() == [task]
    assert task.state is TaskState.SUCCEEDED
    assert cap.session.current() is None
    assert cap.titles() == ["✓ etl finished"]
    assert cap.session.last_notice(task) == "✓ etl finished"


def test_async_context_manager(cap: CapturedNotices) -> None:
    async def main() -> Task:
        async with remind("fetch") as task:
            assert task.state is TaskState.RUNNING
            await asyncio.sleep(0)
        return task

    task = asyncio.run(main())
    assert task.state is TaskState.SUCCEEDED
    assert task.name == "fetch"
    assert cap.titles() == ["✓ fetch finished"]


def test_async_context_manager_failure_propagates(cap: CapturedNotices) -> None:
    error = KeyError("missing")

    async def main() -> None:
        async with remind("fetch"):
            await asyncio.sleep(0)
            raise error

    with pytest.raises(KeyError) as info:
        asyncio.run(main())
    assert info.value is error
    assert cap.titles() == ["✗ fetch failed"]


def test_async_cancellation_cancels_the_task(cap: CapturedNotices) -> None:
    tasks: list[Task] = []

    async def slow() -> None:
        async with remind("slow") as task:
            tasks.append(task)
            await asyncio.sleep(3600)

    async def main() -> None:
        job = asyncio.ensure_future(slow())
        await asyncio.sleep(0)
        job.cancel()
        with pytest.raises(asyncio.CancelledError):
            await job

    asyncio.run(main())
    assert tasks[0].state is TaskState.CANCELLED


def test_a_reminder_can_be_entered_again(cap: CapturedNotices) -> None:
    reminder = remind("step")
    with reminder as first:
        pass
    with reminder as second:
        pass
    assert first is not second
    assert first.state is second.state is TaskState.SUCCEEDED
    assert cap.titles() == ["✓ step finished", "✓ step finished"]


def test_explicit_session() -> None:
    channel = MemoryChannel()
    session = Session(
        Config(channels=("memory",)), channels={"memory": channel}, tick_interval=None
    )
    try:
        with capture_notices() as cap:
            with remind("etl", session=session) as task:
                pass
            assert cap.notices == []
            assert get_session() is cap.session
        session.flush()
        assert channel.titles() == ["✓ etl finished"]
        assert session.tasks() == [task]
    finally:
        session.close()


def test_task_channels_replace_the_default_ones(cap: CapturedNotices) -> None:
    configure(channels=["null"])
    with remind("quiet"):
        pass
    with remind("loud", channels=["memory"]):
        pass
    assert cap.titles() == ["✓ loud finished"]
    delivered = {(d.title, d.channel) for d in cap.session.dispatcher.deliveries}
    assert delivered == {("✓ quiet finished", "null"), ("✓ loud finished", "memory")}


# -- default names ---------------------------------------------------------------------------


def test_default_name_is_file_and_line(cap: CapturedNotices) -> None:
    line = _line() + 1
    with remind() as task:
        pass
    assert task.name == f"test_remind.py:{line}"


def test_default_name_in_async_with(cap: CapturedNotices) -> None:
    async def main() -> tuple[Task, int]:
        line = _line() + 1
        async with remind(after="1h") as task:
            pass
        return task, line

    task, line = asyncio.run(main())
    assert task.name == f"test_remind.py:{line}"


def test_default_name_of_code_without_a_file(cap: CapturedNotices) -> None:
    namespace: dict[str, object] = {"remind": remind}
    exec(compile("\n\nwith remind() as task:\n    pass\n", "<cell>", "exec"), namespace)
    task = namespace["task"]
    assert isinstance(task, Task)
    assert task.name == "line 3"


# -- decorators ------------------------------------------------------------------------------


def test_decorator_with_a_name(cap: CapturedNotices) -> None:
    seen: list[Task | None] = []

    @remind("nightly")
    def job(x: int, *, y: int = 1) -> int:
        """Does the nightly job."""
        seen.append(cap.session.current())
        return x + y

    assert job(1, y=2) == 3
    assert job(5) == 6
    assert job.__name__ == "job"
    assert job.__doc__ == "Does the nightly job."
    first, second = seen
    assert first is not None and second is not None and first is not second
    assert first.name == second.name == "nightly"
    assert first.kind == "function"
    assert first.state is second.state is TaskState.SUCCEEDED
    assert cap.titles() == ["✓ nightly finished", "✓ nightly finished"]


def test_decorator_without_a_name_uses_the_qualname(cap: CapturedNotices) -> None:
    @remind()
    def load() -> str:
        return "rows"

    assert load() == "rows"
    expected = "test_decorator_without_a_name_uses_the_qualname.<locals>.load"
    assert cap.titles() == [f"✓ {expected} finished"]


def test_bare_decorator(cap: CapturedNotices) -> None:
    @remind
    def load(n: int) -> list[int]:
        return list(range(n))

    assert load(3) == [0, 1, 2]
    assert cap.titles() == ["✓ test_bare_decorator.<locals>.load finished"]


class Pipeline:
    @remind
    def run(self) -> str:
        return "ran"


def test_decorated_method_is_named_after_its_class(cap: CapturedNotices) -> None:
    assert Pipeline().run() == "ran"
    assert cap.titles() == ["✓ Pipeline.run finished"]


def test_decorated_function_failure(cap: CapturedNotices) -> None:
    error = ValueError("bad row 7")

    @remind("load")
    def load() -> None:
        raise error

    with pytest.raises(ValueError) as info:
        load()
    assert info.value is error
    assert cap.titles() == ["✗ load failed"]


def test_decorated_async_function(cap: CapturedNotices) -> None:
    tasks: list[Task | None] = []

    @remind
    async def fetch(url: str) -> str:
        tasks.append(cap.session.current())
        await asyncio.sleep(0)
        return url.upper()

    assert inspect.iscoroutinefunction(fetch)

    async def main() -> list[str]:
        return [await fetch("a"), await fetch("b")]

    assert asyncio.run(main()) == ["A", "B"]
    first, second = tasks
    assert first is not None and second is not None and first is not second
    assert cap.titles() == [
        "✓ test_decorated_async_function.<locals>.fetch finished",
        "✓ test_decorated_async_function.<locals>.fetch finished",
    ]


def test_decorated_async_function_failure(cap: CapturedNotices) -> None:
    @remind("fetch")
    async def fetch() -> None:
        await asyncio.sleep(0)
        raise TimeoutError("server slow")

    with pytest.raises(TimeoutError, match="server slow"):
        asyncio.run(fetch())
    assert cap.titles() == ["✗ fetch failed"]


def test_decorator_options_apply_to_each_call(cap: CapturedNotices) -> None:
    @remind("quiet", on=[])
    def job() -> int:
        return 1

    assert job() + job() == 2
    assert cap.notices == []
    assert [t.state for t in cap.session.tasks()] == [TaskState.SUCCEEDED] * 2


# -- nesting ---------------------------------------------------------------------------------


def test_nested_tasks_know_their_parent(cap: CapturedNotices) -> None:
    with remind("outer") as outer:
        with remind("inner") as inner:
            assert cap.session.current() is inner
            with remind("innermost") as innermost:
                pass
        with remind("sibling") as sibling:
            pass
        assert cap.session.current() is outer
    with remind("next") as later:
        pass
    assert outer.parent is None
    assert inner.parent is outer
    assert innermost.parent is inner
    assert sibling.parent is outer
    assert later.parent is None
    assert inner.snapshot().parent_id == outer.id


def test_parent_is_restored_after_a_failing_child(cap: CapturedNotices) -> None:
    with remind("outer") as outer:
        with pytest.raises(RuntimeError), remind("child"):
            raise RuntimeError("x")
        assert cap.session.current() is outer
        with remind("after") as after:
            pass
    assert after.parent is outer


def test_decorated_function_inside_a_block(cap: CapturedNotices) -> None:
    @remind
    def step() -> Task | None:
        return cap.session.current()

    with remind("outer") as outer:
        inner = step()
    assert inner is not None and inner.parent is outer


def test_nested_async_tasks_know_their_parent(cap: CapturedNotices) -> None:
    async def child(name: str) -> Task:
        async with remind(name) as task:
            await asyncio.sleep(0)
            return task

    async def main() -> tuple[Task, Task, list[Task]]:
        async with remind("outer") as outer:
            async with remind("inner") as inner:
                await asyncio.sleep(0)
            children = await asyncio.gather(child("a"), child("b"), child("c"))
        return outer, inner, list(children)

    outer, inner, children = asyncio.run(main())
    assert inner.parent is outer
    assert [c.parent for c in children] == [outer, outer, outer]
    assert all(c.state is TaskState.SUCCEEDED for c in children)


def test_concurrent_async_siblings_are_not_each_others_parent(cap: CapturedNotices) -> None:
    async def main() -> list[Task]:
        started = asyncio.Event()
        tasks: list[Task] = []

        async def worker(name: str) -> None:
            async with remind(name) as task:
                tasks.append(task)
                if len(tasks) == 2:
                    started.set()
                await started.wait()

        await asyncio.gather(worker("a"), worker("b"))
        return tasks

    tasks = asyncio.run(main())
    assert [t.parent for t in tasks] == [None, None]


# -- the capture_notices helper ----------------------------------------------------------------


def test_capture_notices_installs_and_restores_the_session() -> None:
    from nbremind.runtime.session import set_session

    outer = Session(Config(channels=("null",)), tick_interval=None)
    previous = set_session(outer)
    try:
        clock = FakeClock()
        with capture_notices(clock) as cap:
            assert get_session() is cap.session is not outer
            assert cap.clock is clock and cap.session.clock is clock
            assert cap.session.config.channels == ("memory",)
            assert cap.session.ticker.interval is None
            with remind("etl"):
                clock.advance(2)
            assert cap.titles() == ["✓ etl finished"]
            assert cap.events() == ["success"]
            assert cap.notices[0].task.elapsed == 2
        assert get_session() is outer
        assert not cap.session.ticker.running  # the temporary session was closed
    finally:
        set_session(previous)
        outer.close()


def test_capture_notices_restores_the_session_when_the_block_raises() -> None:
    from nbremind.runtime.session import set_session

    outer = Session(Config(channels=("null",)), tick_interval=None)
    previous = set_session(outer)
    try:
        with pytest.raises(RuntimeError), capture_notices() as cap:
            raise RuntimeError("x")
        assert get_session() is outer is not cap.session
    finally:
        set_session(previous)


def test_capture_notices_with_the_periodic_tick() -> None:
    with capture_notices(tick=True) as cap:
        assert cap.session.ticker.interval == Config().tick_interval
    with capture_notices() as cap:
        assert cap.session.ticker.interval is None


def test_the_testing_module_example_runs() -> None:
    import doctest

    import nbremind.testing

    result = doctest.testmod(nbremind.testing)
    assert result.attempted >= 3
    assert result.failed == 0


def test_one_reminder_entered_by_concurrent_coroutines_ends_the_right_tasks() -> None:
    import asyncio

    from nbremind.testing import capture_notices

    with capture_notices() as cap:
        shared = remind("shared", session=cap.session)

        async def worker(delay: float, fail: bool) -> None:
            async with shared:
                await asyncio.sleep(delay)
                if fail:
                    raise ValueError("second")

        async def main() -> None:
            results = await asyncio.gather(
                worker(0.05, False), worker(0.01, True), return_exceptions=True
            )
            assert isinstance(results[1], ValueError)

        asyncio.run(main())
        states = sorted(t.state.value for t in cap.session.tasks())
        assert states == ["failed", "succeeded"]


def test_decorated_generators_cover_the_whole_iteration() -> None:
    import asyncio

    from nbremind.testing import capture_notices

    with capture_notices() as cap:

        @remind("gen", session=cap.session)
        def numbers(n: int):  # type: ignore[no-untyped-def]
            for i in range(n):
                assert cap.session.current() is not None
                yield i
            return "end"

        @remind("agen", session=cap.session)
        async def anumbers(n: int):  # type: ignore[no-untyped-def]
            for i in range(n):
                yield i

        assert list(numbers(3)) == [0, 1, 2]

        async def collect() -> list[int]:
            return [i async for i in anumbers(2)]

        assert asyncio.run(collect()) == [0, 1]
        assert cap.titles() == ["✓ gen finished", "✓ agen finished"]
