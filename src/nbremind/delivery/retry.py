"""Retrying one channel's delivery: exponential backoff with full jitter, bounded twice.

A failed send is tried again only when trying again may help (:func:`is_retryable`): time
outs, connection errors, and channel errors marked ``retryable`` (HTTP 5xx and 429, SMTP
4xx). The wait before try ``n`` (``n`` = 1 for the first retry) is drawn uniformly from
``[0, min(cap, base * 2 ** (n - 1))]`` ("full jitter"), or is the server's ``Retry-After``
when it asked for one. Retrying stops after ``attempts`` tries, or earlier when the next
wait would end past ``max_time`` seconds after the first try began.

The loop itself is tenacity's ``AsyncRetrying``; the clock, the sleep and the random draw
are injectable (:class:`Backoff`) so tests check the timing without waiting.
"""

from __future__ import annotations

import asyncio
import random as _random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

__all__ = ["Backoff", "RetryOutcome", "is_retryable", "retry_after_of", "with_retries"]


def is_retryable(exc: BaseException) -> bool:
    """Whether another try may succeed where ``exc`` failed."""
    flag = getattr(exc, "retryable", None)
    if isinstance(flag, bool):
        return flag
    return isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError))


def retry_after_of(exc: BaseException) -> float | None:
    """The seconds the far end asked us to wait (HTTP ``Retry-After``), if it said."""
    value = getattr(exc, "retry_after", None)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


@dataclass
class Backoff:
    """How long to wait between tries, and what to measure and wait with.

    ``base`` is the first retry's largest wait, ``cap`` the largest wait of any retry.
    ``clock``, ``sleep`` and ``random`` (a draw in ``[0, 1)``) are the real ones unless a
    test passes its own.
    """

    base: float = 0.5
    cap: float = 30.0
    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    random: Callable[[], float] = field(default=_random.random)

    def delay(self, retry: int, retry_after: float | None = None) -> float:
        """The wait before retry number ``retry`` (1-based), honouring ``retry_after``."""
        if retry_after is not None:
            return retry_after
        window = min(self.cap, self.base * 2 ** (retry - 1))
        return float(window * self.random())


@dataclass
class RetryOutcome:
    """What happened over all the tries of one delivery."""

    attempts: int = 0
    #: The waits slept between tries, in order.
    waits: list[float] = field(default_factory=list)
    #: Why retrying stopped early, when it did (``""`` otherwise).
    gave_up: str = ""


async def with_retries(
    attempt: Callable[[], Awaitable[None]],
    *,
    attempts: int,
    max_time: float,
    backoff: Backoff | None = None,
    outcome: RetryOutcome | None = None,
    stop_early: Callable[[float], str] | None = None,
    first_error: Exception | None = None,
) -> RetryOutcome:
    """Await ``attempt()`` until it succeeds or retrying should stop; re-raise the last error.

    ``outcome`` (filled in as tries happen, also when the last error is raised) tells how
    many tries were made and how long each wait was. ``first_error``: the first try was
    made by the caller and raised it. ``stop_early(wait)``, asked before
    each wait, gives a reason to stop retrying now (``""``: go on), e.g. the process exits.
    """
    backoff = backoff or Backoff()
    outcome = outcome if outcome is not None else RetryOutcome()
    start = backoff.clock()
    # the first try runs bare (nearly every delivery succeeds at once, and building the retry
    # machinery costs more than a local send); tenacity takes over from its failure
    outcome.attempts += 1
    try:
        if first_error is not None:  # the caller made the first try: it failed so
            raise first_error
        await attempt()
        return outcome
    except Exception as exc:
        if attempts <= 1 or not is_retryable(exc):
            if attempts <= 1:
                outcome.gave_up = "gave up after 1 tries"
            raise
        first: Exception | None = exc

    from tenacity import AsyncRetrying, RetryCallState, retry_if_exception

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = retry_after_of(exc) if exc is not None else None
        return backoff.delay(state.attempt_number, after)

    def stop(state: RetryCallState) -> bool:
        if state.attempt_number >= attempts:
            outcome.gave_up = f"gave up after {state.attempt_number} tries"
            return True
        early = stop_early(state.upcoming_sleep) if stop_early is not None else ""
        if early:
            outcome.gave_up = f"stopped after {state.attempt_number} tries: {early}"
            return True
        spent = backoff.clock() - start
        if spent + state.upcoming_sleep > max_time:
            outcome.gave_up = (
                f"gave up after {state.attempt_number} tries: waiting "
                f"{state.upcoming_sleep:.3g} s more would pass the {max_time:g} s limit"
            )
            return True
        return False

    async def sleep(seconds: float) -> None:
        outcome.waits.append(seconds)
        await backoff.sleep(seconds)

    async def counted() -> None:
        nonlocal first
        if first is not None:  # the first try's failure, shown to tenacity as its first try
            failed, first = first, None
            raise failed
        outcome.attempts += 1
        await attempt()

    retrying = AsyncRetrying(
        sleep=sleep,
        stop=stop,
        wait=wait,
        retry=retry_if_exception(is_retryable),
        reraise=True,
    )
    await retrying(counted)
    return outcome
