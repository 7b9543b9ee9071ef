"""What a tick measures beyond the process's RSS, for the thresholds that ask: the memory a
``mem_limit`` is judged by (:mod:`.memory_limit`) and the GPUs (:mod:`.gpu`).

Each is read at most once per tick, and only when a running task's threshold asks (a tick
with no ``mem_limit``, ``gpu_mem`` or ``stall`` reads nothing more); the GPUs also at most
once a second, for the panel and status line.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from ..core.thresholds import GpuReading, MemoryReading

if TYPE_CHECKING:
    from ..core.task import Task
    from .gpu import GpuSampler
    from .memory_limit import MemoryScope

__all__ = ["TickReadings"]

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
        self._process: object = None

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
            rss = self._own_rss()
        return MemoryReading(rss, scope.limit, "process RSS")

    def gpu(self) -> GpuReading | None:
        """This process's GPUs (at most once a second), or ``None`` where none answers."""
        if self._gpu is _UNREAD:
            sampler = self.gpu_sampler
            if sampler is None:
                from .gpu import GpuSampler

                sampler = self.gpu_sampler = GpuSampler()
            self._gpu = sampler.reading(self._now)
        return self._gpu  # type: ignore[return-value]

    def _own_rss(self) -> int | None:
        if self._own is _UNREAD:
            try:
                process = self._process
                if process is None:
                    import psutil

                    process = self._process = psutil.Process(os.getpid())
                self._own = int(process.memory_info().rss)  # type: ignore[attr-defined]
            except Exception:
                self._own = None
        return self._own  # type: ignore[return-value]
