"""The queue of notices waiting for the loop thread is bounded, and says what it did.

The loop thread is held busy (a callback waiting on an event, as a loop thread stuck behind
a slow step would be) while the user's thread keeps making notices. Past the bound, a
repeating event replaces the waiting one of the same task and event; anything else waits
for room a bounded time and is then dropped. Once the loop thread is free again, what was
kept is delivered and one log line says how many were merged and dropped.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nbremind import Config, Session
from nbremind.channels import Channel
from nbremind.channels.memory import MemoryChannel
from nbremind.core.notice import Notice
from nbremind.core.options import TaskOptions
from nbremind.runtime import notifier as notifier_module

BOUND = 20


@pytest.fixture
def held_session(
    nbremind_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Session, MemoryChannel, threading.Event]]:
    monkeypatch.setattr(notifier_module, "MAX_QUEUED", BOUND)
    monkeypatch.setattr(notifier_module, "RESUME_QUEUED", BOUND // 2)
    monkeypatch.setattr(notifier_module, "CATCH_UP_WAIT", 0.3)
    channel = MemoryChannel()
    session = Session(Config(channels=("memory",)), channels={"memory": channel})
    release = threading.Event()
    holding = threading.Event()

    def hold() -> None:
        holding.set()
        release.wait(30)

    session.ticker.call_soon(hold)
    assert holding.wait(10), "the loop thread never ran the holding callback"
    yield session, channel, release
    release.set()
    session.close(5)


def test_a_full_queue_merges_repeating_events_and_drops_the_rest_saying_so(
    held_session: tuple[Session, MemoryChannel, threading.Event],
    caplog: pytest.LogCaptureFixture,
) -> None:
    session, channel, release = held_session
    task = session.new_task("train", options=TaskOptions(progress=(0.5,)), total=100)
    session.start(task)
    for key in range(50):  # 50 progress notices of one task while the loop thread is stuck
        task.set(key)
        session.notifier.notify(task, "progress", key=key)
    assert session.notifier.queued == BOUND  # nothing past the bound is kept
    others = []
    for i in range(3):
        other = session.new_task(f"step {i}")
        session.start(other)
        session.finish(other)
        others.append(other)
    started = time.monotonic()
    assert session.notifier.queued == BOUND
    assert time.monotonic() - started < 5  # each drop waited its bounded time, no more
    with caplog.at_level(logging.WARNING, logger="nbremind"):
        release.set()
        assert session.flush(10)
        session.finish(task)
        assert session.flush(10)
    progress = [n for n in channel.notices if n.event == "progress"]
    keys = [n.id.rsplit(":", 1)[1] for n in progress]
    # the first BOUND - 1 kept as they were; the last kept one says where the task got to
    assert keys == [*map(str, range(BOUND - 1)), "49"]
    assert "Progress: 49% (49/100)" in progress[-1].body
    assert not [n for n in channel.notices if n.task.name.startswith("step")]
    line = next(r.getMessage() for r in caplog.records if "fell behind" in r.getMessage())
    assert "30 repeating notices merged into a later one" in line
    assert "3 notices dropped" in line
    assert f"{BOUND} notices waiting at most" in line


_where: contextvars.ContextVar[str | None] = contextvars.ContextVar("where", default=None)


class _Gated(Channel):
    """Holds notices whose task is named ``slow`` until :attr:`gate` is set; notes, for each
    notice, whether it ran in a task and what the context variable held when it came."""

    name = "gated"

    def __init__(self) -> None:
        super().__init__()
        self.gate: asyncio.Event | None = None
        self.arrived: list[tuple[str, bool, str | None]] = []
        self.done: list[str] = []

    async def _send(self, notice: Notice) -> None:
        name = notice.task.name
        self.arrived.append((name, asyncio.current_task() is not None, _where.get()))
        _where.set(name)  # a send's context variables are its own
        if name == "slow":
            self.gate = asyncio.Event()
            await asyncio.wait_for(self.gate.wait(), 10)  # (3.12+: a limit bound to the task)
        self.done.append(name)


def test_a_delivery_that_waits_holds_up_none_of_the_others(nbremind_data_dir: Path) -> None:
    channel = _Gated()
    session = Session(Config(channels=("gated",)), channels={"gated": channel})
    try:
        for name in ("slow", "quick", "other"):
            task = session.new_task(name)
            session.start(task)
            session.finish(task)
        deadline = time.monotonic() + 10
        while channel.done != ["quick", "other"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert channel.done == ["quick", "other"]  # the slow one still waits
        assert channel.arrived == [
            ("slow", True, None),
            ("quick", True, None),
            ("other", True, None),
        ]
        gate = channel.gate
        assert gate is not None
        session.ticker.call_soon(gate.set)
        assert session.flush(10)
        assert channel.done == ["quick", "other", "slow"]
        assert [d.ok for d in session.dispatcher.deliveries if d.title.endswith("finished")] == [
            True,
            True,
            True,
        ]
    finally:
        session.close(5)
