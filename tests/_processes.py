"""Whether a process the test started (or its command started) has ended."""

from __future__ import annotations

import psutil

__all__ = ["gone"]


def gone(pid: int) -> bool:
    """Whether ``pid`` has ended (a zombie waiting for its reaper counts as ended)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
