"""Who owns a delivery in the outbox: a process, told apart from a later one that reuses its
pid by its start time, and whether it still runs."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

__all__ = ["Owner", "owner_alive"]

#: Seconds two readings of one process's start time may differ by.
_START_TOLERANCE = 0.5


@dataclass(frozen=True)
class Owner:
    """A process, told apart from a later one with the same pid by its start time."""

    pid: int
    start: float
    host: str

    @classmethod
    def current(cls) -> Owner:
        """This process."""
        pid = os.getpid()
        return cls(pid, _process_start(pid) or 0.0, socket.gethostname())


def _process_start(pid: int) -> float | None:
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def owner_alive(owner: Owner) -> bool:
    """Whether ``owner`` still runs: same pid, same start time, not a zombie.

    A process on another host cannot be checked: it counts as alive (its notices are left
    to it, and dropped once older than ``outbox_max_age``).
    """
    if owner.host != socket.gethostname():
        return True
    import psutil

    try:
        process = psutil.Process(owner.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return abs(float(process.create_time()) - owner.start) < _START_TOLERANCE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return False  # another user's process: ours (same data folder) would be readable
    except psutil.Error:
        return True
