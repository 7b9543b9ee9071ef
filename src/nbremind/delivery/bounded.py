"""Awaiting a coroutine with a time limit, without paying for the limit when it is not needed.

Most local channels (the null and memory channels, a queue put) finish their ``send``
without ever waiting: arming a timer for them (``asyncio.timeout`` or ``wait_for``) costs
more than the send. :func:`bounded` runs the coroutine's first step at once; only if it
waits on something is the rest run under the limit, in the same task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["bounded"]

#: ``asyncio.timeout`` (Python 3.11+), else ``None``.
_timeout = getattr(asyncio, "timeout", None)


async def bounded(coro: Coroutine[Any, Any, None], limit: float) -> None:
    """Await ``coro``; ``TimeoutError`` when it still waits ``limit`` seconds after its first
    step (a step that waits for nothing cannot be interrupted, with or without a limit)."""
    try:
        waiting = coro.send(None)
    except StopIteration:
        return  # done without waiting: no timer was needed
    except BaseException:
        coro.close()
        raise
    if _timeout is None:  # Python 3.10: wait_for runs the rest in a task of its own
        await asyncio.wait_for(_rest(coro, waiting), limit)
        return
    async with _timeout(limit):
        await _rest(coro, waiting)


async def _rest(coro: Coroutine[Any, Any, None], waiting: Any) -> None:
    """Go on with ``coro``, which gave ``waiting`` (what it waits on) at its last step."""
    while True:
        try:
            answer = await _Pass(waiting)
        except BaseException as exc:  # cancelled (the limit) or the awaited thing failed
            try:
                waiting = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                waiting = coro.send(answer)
            except StopIteration:
                return


class _Pass:
    """Hands what a coroutine yielded to the task running us, and its answer back."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __await__(self) -> Generator[Any, Any, Any]:
        return (yield self.value)
