"""``clock`` (a :class:`~nbremind.testing.FakeClock`) and ``cap``: notices captured from a
session on that clock, with memory sampling off (a module may give its own ``clock``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from nbremind.testing import CapturedNotices, FakeClock, capture_notices

__all__ = ["cap", "clock", "run_for"]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cap(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> Iterator[CapturedNotices]:
    with capture_notices(clock) as captured:
        monkeypatch.setattr(captured.session.sampler, "rss", lambda now: None)
        yield captured


def run_for(cap: CapturedNotices, clock: FakeClock, seconds: float, step: float = 10) -> None:
    """Move the clock ``seconds`` forward, ticking every ``step`` seconds as the ticker would."""
    moved = 0.0
    while moved < seconds:
        clock.advance(step)
        moved += step
        cap.session.tick()
