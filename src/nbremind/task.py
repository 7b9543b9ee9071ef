"""A task: one piece of work followed from start to end, and its frozen snapshot."""

from __future__ import annotations

import enum
import itertools
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .options import TaskOptions

if TYPE_CHECKING:
    import asyncio

    from ._clock import Clock

__all__ = ["TERMINAL_STATES", "Task", "TaskError", "TaskSnapshot", "TaskState", "TaskTimeout"]

_ids = itertools.count(1)
_ERROR_CHARS = 200
_RATE_SMOOTHING = 0.3


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
        self.id = f"{os.getpid()}-{next(_ids)}"
        self.name = name
        self.kind = kind
        self.parent = parent
        self.source = source
        self.host = host
        self.options = options or TaskOptions()
        self._clock = clock
        self._lock = threading.Lock()
        self._n = 0
        self._total = _check_total(total)
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
        self._rate: float | None = None
        self._rate_sample: tuple[float, int] | None = None
        self.timeout_hit = False
        self.interrupted_by_timeout = False

    # -- reporting, called from user code (any thread) -------------------------------------
    def advance(self, n: int = 1) -> None:
        """Add ``n`` units of work done (thread-safe)."""
        with self._lock:
            self._n += n

    def set(self, n: int) -> None:
        """Set the units of work done to ``n``."""
        with self._lock:
            self._n = n

    @property
    def n(self) -> int:
        """Units of work done so far."""
        return self._n

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
        return self._n / total

    @property
    def rate(self) -> float | None:
        """Units per second, smoothed over the ticker's samples."""
        if self._rate is not None:
            return self._rate
        elapsed = self.elapsed
        if elapsed <= 0 or self._n == 0:
            return None
        return self._n / elapsed

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, or ``None`` when it cannot be told."""
        total, rate = self._total, self.rate
        if total is None or not rate or self.state in TERMINAL_STATES:
            return None
        return max(0.0, (total - self._n) / rate)

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

    def _finish(self, state: TaskState, error: TaskError | None = None) -> None:
        self.end_mono = self._clock.monotonic()
        self.end_wall = self._clock.time()
        self.error = error
        self.state = state

    def _sample_rate(self, now: float) -> None:
        """Update the smoothed rate; called by the ticker on each tick."""
        n = self._n
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
            n=self._n,
            total=self._total,
            progress=self.progress,
            rate=self.rate,
            eta=self.eta,
            rss=self.rss,
            peak_rss=self.peak_rss,
            metrics=metrics,
            notes=notes,
            error=self.error,
        )

    def __repr__(self) -> str:
        total = "?" if self._total is None else self._total
        return f"<Task {self.name!r} {self.state.value} {self._n}/{total} {self.elapsed:.1f}s>"


def _check_total(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"total: {value!r} is not a non-negative number of units")
    return int(value)


class TaskTimeout(TimeoutError):
    """Raised into a task's thread when it passes its ``timeout`` with ``interrupt=True``."""
