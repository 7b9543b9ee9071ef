"""A channel that keeps what it is sent, for tests and demos."""

from __future__ import annotations

import threading

from ..core.notice import Notice
from ..delivery.channel import Channel

__all__ = ["MemoryChannel"]


class MemoryChannel(Channel):
    """Keeps every notice it receives in :attr:`notices` (with the time it arrived)."""

    name = "memory"

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Condition()
        self.notices: list[Notice] = []
        self.received_at: list[float] = []

    async def _send(self, notice: Notice) -> None:
        import time

        with self._lock:
            self.notices.append(notice)
            self.received_at.append(time.monotonic())
            self._lock.notify_all()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Notice]:
        """Block until at least ``count`` notices arrived (or ``timeout``); return them all."""
        with self._lock:
            self._lock.wait_for(lambda: len(self.notices) >= count, timeout)
            return list(self.notices)

    def titles(self) -> list[str]:
        """The titles received so far, in order."""
        with self._lock:
            return [n.title for n in self.notices]

    def clear(self) -> None:
        """Forget what was received."""
        with self._lock:
            self.notices.clear()
            self.received_at.clear()
