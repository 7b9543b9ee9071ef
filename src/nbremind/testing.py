"""Helpers for testing code that uses nbremind: capture notices instead of sending them.

>>> from nbremind import remind
>>> from nbremind.testing import capture_notices
>>> with capture_notices() as cap:
...     with remind("etl"):
...         pass
...     cap.titles()
['✓ etl finished']

Importing this module stays as light as ``import nbremind``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from .channels.memory import MemoryChannel
from .core.clock import Clock, FakeClock
from .core.config import Config
from .core.notice import Notice
from .runtime.session import Session, set_session

__all__ = ["CapturedNotices", "FakeClock", "capture_notices"]


@dataclass(frozen=True)
class CapturedNotices:
    """What :func:`capture_notices` yields: the temporary session and what it delivered."""

    #: The session installed as the process's session for the duration of the block.
    session: Session
    #: The clock the session reads (the one passed in, or the system clock).
    clock: Clock
    #: The session's only channel, which keeps every notice it is sent.
    channel: MemoryChannel

    @property
    def notices(self) -> list[Notice]:
        """Every notice delivered so far, after waiting for those still on their way."""
        self.session.flush()
        return list(self.channel.notices)

    def titles(self) -> list[str]:
        """The titles of :attr:`notices`, in the order they arrived."""
        return [notice.title for notice in self.notices]

    def events(self) -> list[str]:
        """The events of :attr:`notices` (``"success"``, ``"after"``, ...), in order."""
        return [notice.event for notice in self.notices]


@contextlib.contextmanager
def capture_notices(clock: Clock | None = None, tick: bool = False) -> Iterator[CapturedNotices]:
    """Send every notice of the block to memory instead of the user's channels.

    Installs a fresh :class:`~nbremind.Session` whose only channel is a
    :class:`~nbremind.channels.memory.MemoryChannel`, so ``remind()`` and
    ``nbremind.configure()`` in the block use it. Pass a
    :class:`~nbremind.testing.FakeClock` to move time by hand; time-based thresholds are then
    evaluated when you call ``cap.session.tick()``, unless ``tick=True`` starts the periodic
    tick of the session's loop thread. On exit the previous session is put back and the
    temporary one is closed.
    """
    channel = MemoryChannel()
    session = Session(
        Config(channels=(channel.name,), outbox=False),  # nothing outlives the block
        clock=clock,
        channels={channel.name: channel},
        tick_interval=Config().tick_interval if tick else None,
    )
    previous = set_session(session)
    try:
        yield CapturedNotices(session, session.clock, channel)
    finally:
        set_session(previous)
        session.close()
