"""The memory guard: a thread of its own that judges the ``mem_limit`` of running tasks,
whatever the loop thread is doing.

The tick judges ``mem_limit`` too, but the loop thread can be held up for a second or more
(opening the history file or importing a channel while the user's code keeps the GIL
busy: each file read gives the GIL away and waits a switch interval to get it back). A
guard that only sleeps and reads one small file needs the GIL twice per look. It looks
again sooner the faster the memory grows towards the limit: an eighth of the time the
growth it saw would take to reach it, between :data:`GUARD_EVERY` and :data:`GUARD_IDLE`
seconds (memory that does not move costs two looks a second), and at once at a task's
start, so a fast allocation is seen within about :data:`GUARD_EVERY` seconds.
It runs only while a task with a ``mem_limit`` does (its process's own memory, or its
cgroup's: a command's process tree is judged by ``nbremind run``'s ticks), and stops the
task as the tick would (:func:`~nbremind.runtime.tracker.stop_for_memory`).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core.log import log_exception
from ..core.notice import format_size
from ..core.task import TaskMemoryLimit
from ..core.thresholds import resolve_limit
from .readings import OwnRss

if TYPE_CHECKING:
    from ..core.task import Task
    from .memory_limit import MemoryScope

__all__ = ["GUARD_EVERY", "MemoryGuard", "memory_limit_reason"]

#: The shortest and the longest seconds between two looks of the guard at the memory.
GUARD_EVERY = 0.05
GUARD_IDLE = 0.5
#: Kinds of task the guard leaves to their own sampling (a command's process tree).
_TREE_KINDS = frozenset(("command", "job"))


def memory_limit_reason(used: int, limit: int, source: str) -> TaskMemoryLimit:
    """The error a task stopped at its ``mem_limit`` ends with ("stopped at 212 MB of 200 MB:
    memory limit")."""
    words = f"stopped at {format_size(used)} of {format_size(limit)}: memory limit"
    return TaskMemoryLimit(words, used, limit, source)


class MemoryGuard:
    """Watches the tasks given to :meth:`watch` until they end, on a thread that runs only
    while one of them does.

    ``scope`` gives the limit that applies here (the session's, found once), ``known`` that
    limit if it was found already (else it is found on a thread of its own: dozens of small
    file reads that, with the GIL busy, take a second; meanwhile a size is judged against
    the process's RSS, a percent waits), ``stop`` stops a task for a
    :class:`~nbremind.core.task.TaskMemoryLimit`; ``every`` and ``idle``: the shortest and
    longest seconds between looks.
    """

    def __init__(
        self,
        scope: Callable[[], MemoryScope],
        stop: Callable[[Task, TaskMemoryLimit], None],
        every: float = GUARD_EVERY,
        known: Callable[[], MemoryScope | None] | None = None,
        idle: float = GUARD_IDLE,
    ) -> None:
        self._scope = scope
        self._known = known
        self._stop = stop
        self.every = every
        self.idle = max(idle, every)
        self._tasks: list[Task] = []
        self._lock = threading.Lock()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        #: Looks taken so far (for tests and benchmarks).
        self.looks = 0

    def watch(self, task: Task) -> None:
        """Judge ``task``'s ``mem_limit`` from now until it ends (a command's is not: its
        process tree is judged by its own ticks)."""
        if task.options.mem_limit is None or task.kind in _TREE_KINDS:
            return
        with self._lock:
            self._tasks.append(task)
            thread = self._thread
            if thread is None or not thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._stopped = False
                thread = self._thread = threading.Thread(
                    target=self._run, name="nbremind-memory-guard", daemon=True
                )
                thread.start()

    def stop(self) -> None:
        """Stop watching (the session closes); the thread ends at its next look."""
        with self._lock:
            self._tasks.clear()
            self._stopped = True

    def watched(self) -> list[Task]:
        """The tasks watched now."""
        with self._lock:
            return list(self._tasks)

    def _run(self) -> None:
        rss = OwnRss()
        if self._known is not None and self._known() is None:
            threading.Thread(target=self._find, name="nbremind-memory-scope", daemon=True).start()
        last: tuple[float, int] | None = None  # (when, used) at the look before
        try:
            while True:
                with self._lock:
                    self._tasks = tasks = [t for t in self._tasks if not t.done]
                    if not tasks or self._stopped:
                        self._thread = None
                        return
                self.looks += 1
                now = time.monotonic()
                seen = self._look(tasks, rss)
                time.sleep(self._wait(last, now, seen))
                if seen is not None:
                    last = (now, seen[0])
        except Exception:  # the guard's trouble must not reach the user's code
            log_exception("the memory guard failed")
        finally:
            rss.close()

    def _wait(
        self, last: tuple[float, int] | None, now: float, seen: tuple[int, int] | None
    ) -> float:
        """Seconds to the next look: an eighth of the time the growth since the last look
        would take to reach the nearest limit (``seen``: the memory and that limit)."""
        if seen is None:  # no limit known yet (being found: soon), or none to judge
            finding = self._known is not None and self._known() is None
            return self.every if finding else self.idle
        if last is None:
            return self.every
        used, limit = seen
        rate = (used - last[1]) / max(now - last[0], 1e-3)  # bytes a second
        if rate <= 0:
            return self.idle
        return min(max((limit - used) / rate / 8, self.every), self.idle)

    def _find(self) -> None:
        try:
            self._scope()
        except Exception:
            log_exception("finding the memory limit that applies failed")

    def _look(self, tasks: list[Task], rss: OwnRss) -> tuple[int, int] | None:
        """Judge ``tasks``; the memory judged and the nearest limit (``None``: none known)."""
        scope = self._scope() if self._known is None else self._known()
        total: int | None = None
        if scope is not None and scope.cgroup:
            used, source = scope.working_set(), scope.kind
        else:  # (before the scope is known: the RSS, at most the working set of a cgroup)
            used, source = rss.read(), "process RSS"
        if scope is not None:
            total = scope.limit
        if used is None:
            return None
        nearest: int | None = None
        for task in tasks:
            if task.stopped_by is not None or task.stopper is not None:
                continue  # stopped already, or stopped another way (a command's group)
            limit = resolve_limit(task.options.mem_limit, total)
            if limit is None:
                continue
            if used >= limit:
                self._stop(task, memory_limit_reason(used, limit, source))
            elif nearest is None or limit < nearest:
                nearest = limit
        return None if nearest is None else (used, nearest)
