"""A task: one piece of work followed from start to end, and its frozen snapshot."""

from __future__ import annotations

import enum
import itertools
import operator
import os
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .options import TaskOptions

if TYPE_CHECKING:
    import asyncio

    from ._clock import Clock

__all__ = ["TERMINAL_STATES", "Task", "TaskError", "TaskSnapshot", "TaskState", "TaskTimeout"]

_ids = itertools.count(1)
_tag = (0, "")


def _process_tag() -> str:
    """``<pid>.<start>`` (start: milliseconds since the epoch, base 36, at this process's
    first task): task and notice ids stay unique across processes that reuse a pid, as the
    outbox remembers them across restarts."""
    global _tag
    pid = os.getpid()
    if _tag[0] != pid:  # the first task, or the first after a fork
        import time

        stamp, digits = time.time_ns() // 1_000_000, ""
        while stamp:
            stamp, digit = divmod(stamp, 36)
            digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
        _tag = (pid, f"{pid}.{digits}")
    return _tag[1]
_ERROR_CHARS = 200
_RATE_SMOOTHING = 0.3
#: ``advance()`` by one takes an item from a ``repeat`` this long; what it lost is the count.
_UNITS = sys.maxsize
_length_hint = operator.length_hint


class TaskState(str, enum.Enum):
    """Where a task is in its life."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    def __str__(self) -> str:
        return self.value


TERMINAL_STATES = frozenset(
    {TaskState.SUCCEEDED, TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT}
)


@dataclass(frozen=True)
class TaskError:
    """The exception a task ended with: its type name and the start of its message."""

    type: str
    message: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> TaskError:
        message = str(exc)
        if len(message) > _ERROR_CHARS:
            message = message[:_ERROR_CHARS] + "…"
        return cls(type(exc).__name__, message)


@dataclass(frozen=True)
class TaskSnapshot:
    """A read-only copy of a task's state, safe to hand to another thread."""

    id: str
    name: str
    kind: str
    state: TaskState
    parent_id: str | None
    source: str
    host: str
    pid: int
    start: float | None
    end: float | None
    elapsed: float
    n: int
    total: int | None
    progress: float | None
    rate: float | None
    eta: float | None
    rss: int | None
    peak_rss: int | None
    metrics: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    error: TaskError | None = None
    #: What ``n`` and ``total`` count when it is not items: ``"B"`` for bytes, ``"rows"``.
    unit: str | None = None


class Task:
    """One tracked piece of work.

    Made by ``remind()``, ``track()`` or ``%%remind``; user code reports through
    :meth:`advance`, :meth:`set`, :attr:`total`, :meth:`metric` and :meth:`note`.
    """

    def __init__(
        self,
        name: str,
        *,
        clock: Clock,
        options: TaskOptions | None = None,
        total: int | None = None,
        kind: str = "block",
        parent: Task | None = None,
        source: str = "",
        host: str = "",
    ) -> None:
        self.id = f"{_process_tag()}-{next(_ids)}"
        self.name = name
        self.kind = kind
        self.parent = parent
        self.source = source
        self.host = host
        self.options = options or TaskOptions()
        self._clock = clock
        self._lock = threading.Lock()
        # n = _n + the items taken from _units: advance(1) is one C call, atomic under the
        # GIL and lock-free; other amounts and set() change _n under the lock
        self._n = 0
        self._units = itertools.repeat(None, _UNITS)
        self._unit = self._units.__next__
        #: When set (by ``track()``), ``n`` is read from it: the loop counts in C, not here.
        self._source: Callable[[], int] | None = None
        #: The tqdm bar feeding this task's progress (a weak reference), if any.
        self._tqdm: Any = None
        #: ``(id, code)`` of the frame iterating a ``track()`` loop (how the loop ended).
        self._consumer: tuple[int, Any] | None = None
        self._total = _check_total(total)
        #: What ``n`` and ``total`` count when it is not items (``"B"``: bytes).
        self.unit: str | None = None
        self._metrics: dict[str, Any] = {}
        self._notes: list[str] = []
        self.state = TaskState.PENDING
        self.error: TaskError | None = None
        self.start_mono: float | None = None
        self.end_mono: float | None = None
        self.start_wall: float | None = None
        self.end_wall: float | None = None
        self.thread_id: int | None = None
        #: The asyncio loop running in the task's thread when it started, if any.
        self.loop: asyncio.AbstractEventLoop | None = None
        self.rss: int | None = None
        self.peak_rss: int | None = None
        #: Where the ticker reads this task's memory from, instead of the process's RSS.
        self.rss_source: Callable[[], int | None] | None = None
        self._rate: float | None = None
        self._rate_sample: tuple[float, int] | None = None
        self.timeout_hit = False
        self.interrupted_by_timeout = False

    # -- reporting, called from user code (any thread) -------------------------------------
    def advance(self, n: int = 1) -> None:
        """Add ``n`` units of work done (thread-safe)."""
        if n == 1:
            self._unit()  # the hot path: no lock, no Python-level arithmetic
            return
        lock = self._lock
        lock.acquire()
        try:
            self._n += n
        finally:
            lock.release()

    def set(self, n: int) -> None:
        """Set the units of work done to ``n``."""
        with self._lock:
            self._n = n - (_UNITS - _length_hint(self._units))

    @property
    def n(self) -> int:
        """Units of work done so far."""
        source = self._source
        if source is not None:
            try:
                return source()
            except Exception:  # a broken source must not break a snapshot: fall back
                self._source = None
        return self._n + (_UNITS - _length_hint(self._units))

    def _settle_n(self) -> int:
        """Read the source a last time and keep its value (the loop is over); return ``n``."""
        n = self.n
        with self._lock:
            self._source = None
            self._n = n - (_UNITS - _length_hint(self._units))
        return n

    @property
    def total(self) -> int | None:
        """Units of work in all, or ``None`` when unknown."""
        return self._total

    @total.setter
    def total(self, value: int | None) -> None:
        self._total = _check_total(value)

    def metric(self, **values: Any) -> None:
        """Record named values (loss, rows, ...) shown with the task and usable by ``when=``."""
        with self._lock:
            self._metrics.update(values)

    @property
    def metrics(self) -> Mapping[str, Any]:
        """The latest value of each metric (read-only view)."""
        return MappingProxyType(self._metrics)

    def note(self, text: str) -> None:
        """Attach a line of text to the task (shown in notices)."""
        with self._lock:
            self._notes.append(str(text))

    # -- derived values ------------------------------------------------------------------
    @property
    def elapsed(self) -> float:
        """Seconds since the task started (frozen once it ended)."""
        if self.start_mono is None:
            return 0.0
        end = self.end_mono if self.end_mono is not None else self._clock.monotonic()
        return max(0.0, end - self.start_mono)

    @property
    def progress(self) -> float | None:
        """Fraction done (``n / total``), or ``None`` when the total is unknown."""
        total = self._total
        if not total:
            return None
        return self.n / total

    @property
    def rate(self) -> float | None:
        """Units per second, smoothed over the ticker's samples."""
        if self._rate is not None:
            return self._rate
        elapsed = self.elapsed
        n = self.n
        if elapsed <= 0 or n == 0:
            return None
        return n / elapsed

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, or ``None`` when it cannot be told."""
        total, rate = self._total, self.rate
        if total is None or not rate or self.state in TERMINAL_STATES:
            return None
        return max(0.0, (total - self.n) / rate)

    @property
    def done(self) -> bool:
        """Whether the task has ended."""
        return self.state in TERMINAL_STATES

    # -- lifecycle, called by the session --------------------------------------------------
    def _start(self) -> None:
        self.start_mono = self._clock.monotonic()
        self.start_wall = self._clock.time()
        self.thread_id = threading.get_ident()
        self.state = TaskState.RUNNING

    def _finish(
        self,
        state: TaskState,
        error: TaskError | None = None,
        end: tuple[float, float] | None = None,
    ) -> None:
        """End with ``state``; ``end`` is ``(monotonic, wall)`` when it ended before now."""
        if self._source is not None:
            self._settle_n()
        if end is None:
            end = (self._clock.monotonic(), self._clock.time())
        self.end_mono, self.end_wall = end
        self.error = error
        self.state = state

    def _sample_rate(self, now: float) -> None:
        """Update the smoothed rate; called by the ticker on each tick."""
        n = self.n
        previous = self._rate_sample
        self._rate_sample = (now, n)
        if previous is None:
            return
        dt = now - previous[0]
        if dt <= 0:
            return
        instant = (n - previous[1]) / dt
        if self._rate is None:
            self._rate = instant if instant > 0 else None
        else:
            self._rate = _RATE_SMOOTHING * instant + (1 - _RATE_SMOOTHING) * self._rate

    def snapshot(self) -> TaskSnapshot:
        """A frozen copy of the current state."""
        with self._lock:
            metrics = dict(self._metrics)
            notes = tuple(self._notes)
        n = self.n
        total = self._total
        progress = n / total if total else None
        return TaskSnapshot(
            id=self.id,
            name=self.name,
            kind=self.kind,
            state=self.state,
            parent_id=self.parent.id if self.parent else None,
            source=self.source,
            host=self.host,
            pid=os.getpid(),
            start=self.start_wall,
            end=self.end_wall,
            elapsed=self.elapsed,
            n=n,
            total=total,
            progress=progress,
            rate=self.rate,
            eta=self.eta,
            rss=self.rss,
            peak_rss=self.peak_rss,
            metrics=metrics,
            notes=notes,
            error=self.error,
            unit=self.unit,
        )

    def __repr__(self) -> str:
        total = "?" if self._total is None else self._total
        return f"<Task {self.name!r} {self.state.value} {self.n}/{total} {self.elapsed:.1f}s>"


def _check_total(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"total: {value!r} is not a non-negative number of units")
    return int(value)


class TaskTimeout(TimeoutError):
    """Raised into a task's thread when it passes its ``timeout`` with ``interrupt=True``."""
