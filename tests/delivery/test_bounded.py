"""``bounded()``: a send that waits is cut at its limit; one that does not wait costs no timer."""

from __future__ import annotations

import asyncio

import pytest

from nbremind.delivery.bounded import bounded


def test_a_coroutine_that_never_waits_is_run_without_a_timer() -> None:
    ran: list[str] = []

    async def at_once() -> None:
        ran.append("done")

    async def main() -> int:
        loop = asyncio.get_running_loop()
        before = len(loop._scheduled)  # type: ignore[attr-defined]
        await bounded(at_once(), 5.0)
        return len(loop._scheduled) - before  # type: ignore[attr-defined]

    assert asyncio.run(main()) == 0
    assert ran == ["done"]


def test_a_coroutine_still_waiting_at_its_limit_is_stopped_and_cleans_up() -> None:
    cleaned: list[str] = []

    async def hangs() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append("finally ran")

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(TimeoutError):
            await bounded(hangs(), 0.2)
        return loop.time() - start

    assert asyncio.run(main()) < 5
    assert cleaned == ["finally ran"]


def test_results_and_errors_of_what_it_waits_on_reach_the_coroutine() -> None:
    seen: list[object] = []

    async def waits() -> None:
        loop = asyncio.get_running_loop()
        for _ in range(3):
            await asyncio.sleep(0)  # a bare yield, three times
        ok = loop.create_future()
        loop.call_soon(ok.set_result, 42)
        seen.append(await ok)
        bad = loop.create_future()
        loop.call_soon(bad.set_exception, ValueError("far end said no"))
        await bad

    async def main() -> None:
        await bounded(waits(), 5.0)

    with pytest.raises(ValueError, match="far end said no"):
        asyncio.run(main())
    assert seen == [42]


def test_an_error_in_the_first_step_is_raised_as_it_is() -> None:
    async def fails() -> None:
        raise ConnectionRefusedError("nobody there")

    with pytest.raises(ConnectionRefusedError, match="nobody there"):
        asyncio.run(bounded(fails(), 5.0))


def test_cancelling_the_task_cancels_the_coroutine() -> None:
    cancelled: list[bool] = []

    async def hangs() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    async def main() -> None:
        task = asyncio.ensure_future(bounded(hangs(), 60.0))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    assert cancelled == [True]
