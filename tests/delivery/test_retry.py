"""Retries: full-jitter exponential backoff, bounded tries and total time, Retry-After."""

from __future__ import annotations

import asyncio

import pytest

from nbremind.channels import ChannelError
from nbremind.core.config import Config
from nbremind.delivery.retry import Backoff, RetryOutcome, is_retryable, with_retries
from nbremind.testing import FakeClock


class FakeTime:
    """A clock whose sleeps advance it at once, remembering each wait."""

    def __init__(self) -> None:
        self.clock = FakeClock()
        self.slept: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.clock.advance(seconds)

    def backoff(self, draw: float = 1.0, base: float = 0.5, cap: float = 30.0) -> Backoff:
        return Backoff(
            base=base, cap=cap, clock=self.clock.monotonic, sleep=self.sleep, random=lambda: draw
        )


def failing(errors: list[BaseException]) -> tuple[list[int], object]:
    calls: list[int] = []

    async def attempt() -> None:
        calls.append(1)
        if errors:
            raise errors.pop(0)

    return calls, attempt


def test_retryable_classification() -> None:
    assert is_retryable(ChannelError("503", retryable=True))
    assert not is_retryable(ChannelError("400"))
    assert is_retryable(TimeoutError())
    assert is_retryable(asyncio.TimeoutError())
    assert is_retryable(ConnectionRefusedError())
    assert not is_retryable(ValueError("bad address"))
    assert not is_retryable(RuntimeError("bug"))


def test_full_jitter_windows_double_up_to_the_cap() -> None:
    backoff = Backoff(base=0.5, cap=3.0, random=lambda: 1.0)
    assert [backoff.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    half = Backoff(base=0.5, cap=3.0, random=lambda: 0.5)
    assert [half.delay(n) for n in (1, 2, 3)] == [0.25, 0.5, 1.0]
    zero = Backoff(random=lambda: 0.0)
    assert zero.delay(4) == 0.0  # full jitter: anywhere from zero to the window
    assert backoff.delay(1, retry_after=7.0) == 7.0  # the server's word wins


def test_succeeds_after_retryable_failures_with_growing_waits() -> None:
    fake = FakeTime()
    calls, attempt = failing([ChannelError("500", retryable=True)] * 3)
    outcome = asyncio.run(
        with_retries(
            attempt,
            attempts=5,
            max_time=100,  # type: ignore[arg-type]
            backoff=fake.backoff(),
        )
    )
    assert len(calls) == 4 and outcome.attempts == 4
    assert fake.slept == [0.5, 1.0, 2.0] == outcome.waits
    assert outcome.gave_up == ""


def test_not_retryable_fails_at_once() -> None:
    fake = FakeTime()
    calls, attempt = failing([ChannelError("HTTP 400")])
    with pytest.raises(ChannelError, match="400"):
        asyncio.run(
            with_retries(
                attempt,
                attempts=5,
                max_time=100,  # type: ignore[arg-type]
                backoff=fake.backoff(),
            )
        )
    assert len(calls) == 1 and fake.slept == []


def test_attempts_bound_and_last_error_reraised() -> None:
    fake = FakeTime()
    errors = [ChannelError(f"503 #{i}", retryable=True) for i in range(10)]
    calls, attempt = failing(errors)
    outcome = RetryOutcome()
    with pytest.raises(ChannelError, match="503 #2"):
        asyncio.run(
            with_retries(
                attempt,
                attempts=3,
                max_time=100,  # type: ignore[arg-type]
                backoff=fake.backoff(),
                outcome=outcome,
            )
        )
    assert len(calls) == 3 and outcome.attempts == 3
    assert len(fake.slept) == 2
    assert "3 tries" in outcome.gave_up


def test_total_time_bound_stops_before_a_wait_that_would_pass_it() -> None:
    fake = FakeTime()
    calls, attempt = failing([ChannelError("500", retryable=True)] * 10)
    outcome = RetryOutcome()
    with pytest.raises(ChannelError):
        asyncio.run(
            with_retries(
                attempt,
                attempts=50,
                max_time=3.0,  # type: ignore[arg-type]
                backoff=fake.backoff(),
                outcome=outcome,
            )
        )
    # waits 0.5 + 1.0 = 1.5 s; the next (2.0) would end at 3.5 > 3.0
    assert fake.slept == [0.5, 1.0]
    assert len(calls) == 3
    assert "3 s limit" in outcome.gave_up
    assert fake.clock.monotonic() - 1_000.0 <= 3.0


def test_retry_after_is_honoured_and_bounded_by_total_time() -> None:
    fake = FakeTime()
    calls, attempt = failing([ChannelError("429", retryable=True, retry_after=4.0)])
    asyncio.run(
        with_retries(
            attempt,
            attempts=3,
            max_time=10,  # type: ignore[arg-type]
            backoff=fake.backoff(draw=0.1),
        )
    )
    assert fake.slept == [4.0] and len(calls) == 2

    fake = FakeTime()
    calls, attempt = failing([ChannelError("429", retryable=True, retry_after=120.0)])
    with pytest.raises(ChannelError, match="429"):
        asyncio.run(
            with_retries(
                attempt,
                attempts=3,
                max_time=10,  # type: ignore[arg-type]
                backoff=fake.backoff(),
            )
        )
    assert fake.slept == [] and len(calls) == 1  # waiting 120 s would pass the 10 s limit


def test_retry_settings_are_validated() -> None:
    config = Config().updated(retry_attempts="6", retry_max_time="2m")
    assert config.retry_attempts == 6 and config.retry_max_time == 120.0
    for bad in (0, -1, 101, "many", True, 2.5):
        with pytest.raises(ValueError, match="retry_attempts") as info:
            Config().updated(retry_attempts=bad)
        assert repr(bad) in str(info.value)
    with pytest.raises(ValueError, match="retry_max_time: 'soon'"):
        Config().updated(retry_max_time="soon")
