"""Who owns a delivery in the outbox: a process, told apart from a later one that reuses its
pid by its start time, and whether it still runs."""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass

__all__ = ["Owner", "owner_alive", "process_start"]

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
        return cls(pid, process_start(pid) or 0.0, socket.gethostname())


def process_start(pid: int) -> float | None:
    """The start time of process ``pid`` in seconds since the epoch, as psutil's
    ``create_time()`` gives it; ``None`` when the process cannot be read."""
    if sys.platform == "linux":
        found = _linux_start(pid)
        if found is not None:
            return found
    import psutil

    try:
        return float(psutil.Process(pid).create_time())
    except psutil.Error:
        return None


def _linux_alive(owner: Owner) -> bool | None:
    """:func:`owner_alive` as psutil answers it on Linux, read from ``/proc`` (``None``: ask
    psutil): no such process, or one that cannot be read, is not alive; a zombie is not."""
    try:
        with open(f"/proc/{owner.pid}/stat", "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    except OSError:
        return None
    fields = data[data.rfind(b")") + 2 :].split()
    if fields[:1] == [b"Z"]:
        return False
    start = _linux_start(owner.pid)
    return None if start is None else abs(start - owner.start) < _START_TOLERANCE


def _linux_start(pid: int) -> float | None:
    """What psutil computes on Linux, without importing it (most processes only need their
    own start time, and psutil's import costs more than everything else here): the
    ``starttime`` field of ``/proc/PID/stat`` (clock ticks since boot) over the clock tick
    rate, plus the boot time (``btime`` in ``/proc/stat``)."""
    global _boot_time
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            data = handle.read()
        ticks = float(data[data.rfind(b")") + 2 :].split()[19])
        if _boot_time is None:
            with open("/proc/stat", "rb") as handle:
                for line in handle:
                    if line.startswith(b"btime"):
                        _boot_time = float(line.split()[1])
                        break
        if _boot_time is None:
            return None
        return ticks / os.sysconf("SC_CLK_TCK") + _boot_time
    except (OSError, ValueError, IndexError):
        return None


#: The boot time read from ``/proc/stat``, once.
_boot_time: float | None = None


def owner_alive(owner: Owner) -> bool:
    """Whether ``owner`` still runs: same pid, same start time, not a zombie.

    A process on another host cannot be checked: it counts as alive (its notices are left
    to it, and dropped once older than ``outbox_max_age``).
    """
    if owner.host != socket.gethostname():
        return True
    if sys.platform == "linux":
        found = _linux_alive(owner)
        if found is not None:
            return found
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
