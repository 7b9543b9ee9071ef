"""What a tick measures beyond the process's RSS, for the thresholds that ask: the memory a
``mem_limit`` is judged by (:mod:`.memory_limit`) and the GPUs (:mod:`.gpu`).

Each is read at most once per tick, and only when a running task's threshold asks (a tick
with no ``mem_limit``, ``gpu_mem`` or ``stall`` reads nothing more); the GPUs also at most
once a second, for the panel and status line.
"""

from __future__ import annotations

import contextlib
import os
from typing import TYPE_CHECKING

from ..core.thresholds import GpuReading, MemoryReading

if TYPE_CHECKING:
    from ..core.task import Task
    from .gpu import GpuSampler
    from .memory_limit import MemoryScope

__all__ = ["OwnRss", "TickReadings"]

_UNREAD = object()


class TickReadings:
    """The :class:`~nbremind.core.thresholds.Readings` of a session's ticks (loop thread)."""

    def __init__(self, scope: MemoryScope | None = None, gpu: GpuSampler | None = None) -> None:
        #: The memory limit that applies here (found at the first ``mem_limit``).
        self.scope = scope
        #: The GPU sampler (made at the first tick that asks).
        self.gpu_sampler = gpu
        self._now = 0.0
        self._gpu: object = _UNREAD
        self._own: object = _UNREAD
        self._working_set: object = _UNREAD
        self._rss = OwnRss()

    def new_tick(self, now: float) -> None:
        """A tick at ``now`` (monotonic seconds) begins: what was read is read again."""
        self._now = now
        self._gpu = self._own = self._working_set = _UNREAD

    def memory_scope(self) -> MemoryScope:
        """The memory limit that applies to this process (found once)."""
        scope = self.scope
        if scope is None:
            from .memory_limit import find_scope

            scope = self.scope = find_scope()
        return scope

    def memory(self, task: Task, rss: int | None) -> MemoryReading | None:
        """A memory-limited cgroup's working set; else the task's RSS, read now (a
        command's: the ``rss`` of its process tree, as sampled)."""
        scope = self.memory_scope()
        if scope.cgroup:
            if self._working_set is _UNREAD:
                self._working_set = scope.working_set()
            used = self._working_set
            return MemoryReading(used if isinstance(used, int) else None, scope.limit, scope.kind)
        if task.rss_source is None:  # this process: read fresh, not once a second
            return MemoryReading(self._own_rss(), scope.limit, "process RSS")
        return MemoryReading(rss, scope.limit, "process tree RSS")

    def gpu(self) -> GpuReading | None:
        """This process's GPUs (at most once a second), or ``None`` where none answers."""
        if self._gpu is _UNREAD:
            sampler = self.gpu_sampler
            if sampler is None:
                from .gpu import GpuSampler

                sampler = self.gpu_sampler = GpuSampler()
            self._gpu = sampler.reading(self._now)
        return self._gpu  # type: ignore[return-value]

    def close(self) -> None:
        """Close what the readings keep open (the session closes)."""
        self._rss.close()

    def _own_rss(self) -> int | None:
        if self._own is _UNREAD:
            self._own = self._rss.read()
        return self._own  # type: ignore[return-value]


class OwnRss:
    """This process's RSS, read afresh at each :meth:`read`: on Linux one read of
    ``/proc/self/statm`` kept open (a few µs, the file reopened in a forked child), else
    psutil. One per thread that reads it."""

    def __init__(self) -> None:
        self._process: object = None
        self._statm: int | None = None
        self._statm_pid = 0

    def read(self) -> int | None:
        """The RSS in bytes now, or ``None`` when it cannot be read. Never raises."""
        if self._statm_pid != os.getpid():  # first read, or a forked child
            self._statm_pid = os.getpid()
            self._statm = _open_statm()
        statm = self._statm
        if statm is not None:
            try:
                return int(os.pread(statm, 128, 0).split()[1]) * _PAGE
            except (OSError, ValueError, IndexError):
                self.close()
        try:
            process = self._process
            if process is None:
                import psutil

                process = self._process = psutil.Process(os.getpid())
            return int(process.memory_info().rss)  # type: ignore[attr-defined]
        except Exception:
            return None

    def close(self) -> None:
        """Close the file kept open (in the process that opened it)."""
        statm, self._statm = self._statm, None
        if statm is not None and self._statm_pid == os.getpid():
            with contextlib.suppress(OSError):
                os.close(statm)


#: Bytes per page, for the page counts of ``/proc/self/statm``.
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _open_statm() -> int | None:
    """A descriptor of this process's ``/proc/self/statm`` (its RSS in pages), or ``None``
    where there is none (not Linux): then psutil reads it."""
    try:
        return os.open("/proc/self/statm", os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except (OSError, AttributeError):
        return None
