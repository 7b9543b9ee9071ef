"""A task: one piece of work followed from start to end, and its frozen snapshot."""

from __future__ import annotations

import enum
import itertools
import math
import operator
import os
import sys
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar

from .frozen import Frozen, set_field
from .options import NO_OPTIONS, TaskOptions
from .parse import MAX_COUNT  # the largest count and total a task takes

if TYPE_CHECKING:
    import asyncio

    from .clock import Clock

__all__ = [
    "MAX_COUNT",
    "TERMINAL_STATES",
    "Ended",
    "Task",
    "TaskError",
    "TaskMemoryLimit",
    "TaskSnapshot",
    "TaskState",
    "TaskTimeout",
    "process_tag",
    "type_name",
    "value_repr",
]

_ids = itertools.count(1)
_tag = ""


def process_tag() -> str:
    """``<pid>.<start>`` (start: milliseconds since the epoch, base 36, at this process's
    first task): task and notice ids stay unique across processes that reuse a pid, as the
    outbox remembers them across restarts."""
    global _tag
    if _tag:  # (a forked child starts without one: see _forget_tag)
        return _tag
    import time

    pid = os.getpid()
    stamp, digits = time.time_ns() // 1_000_000, ""
    while stamp:
        stamp, digit = divmod(stamp, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[digit] + digits
    _tag = f"{pid}.{digits}"
    return _tag


def _forget_tag() -> None:
    """In a forked child: its tasks get a tag of their own (made at its first task)."""
    global _tag
    _tag = ""


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forget_tag)


_ERROR_CHARS = 200
_MIN_COUNT = -MAX_COUNT
#: ``advance()``'s default: CPython keeps one object for each small int, so ``n is _ONE``
#: tells ``advance(1)`` apart at the cost of a comparison of addresses.
_ONE = 1
#: Characters of a value's ``repr`` shown in texts and error messages.
_REPR_CHARS = 200
#: An int with more bits than this is shown in scientific notation (about 199 digits).
_INT_BITS_SHOWN = 660
_type_name_of = type.__dict__["__name__"].__get__  # bypasses a metaclass's ``__name__``
_new_snapshot = object.__new__
_RATE_SMOOTHING = 0.3
#: ``advance()`` by one takes an item from a ``repeat`` this long; what it lost is the count.
_UNITS = sys.maxsize
_length_hint = operator.length_hint
#: ``advance(n)`` with ``|n|`` up to this takes the lock-free path (below 2**30: ints that
#: CPython keeps in one digit, which it compares without a call).
_FAST_STEPS = (1 << 30) - 1
_FAST_FLOOR = -_FAST_STEPS
#: Amounts ``advance()`` appends before they are summed into the count.
_FOLD_AT = 256
_new_lock = threading.Lock
_get_ident = threading.get_ident
_repeat = itertools.repeat


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
_RUNNING = TaskState.RUNNING


class TaskError(Frozen):
    """The exception a task ended with: its type name and the start of its message."""

    type: str
    message: str

    def __init__(self, type: str, message: str) -> None:
        set_field(self, "type", type)
        set_field(self, "message", message)

    @classmethod
    def from_exception(cls, exc: BaseException) -> TaskError:
        """``exc``'s type name and message, known secrets masked, then cut to 200 characters.

        Never raises: an exception whose ``str()`` fails gets ``<unprintable TYPE>``.
        """
        if isinstance(exc, Ended) and exc.args:
            return cls(str(exc.args[0])[:_ERROR_CHARS], "")  # the words are the whole error
        name = type_name(exc)
        try:
            message = str.__str__(str(exc))  # a plain str, whatever __str__ returned
        except Exception:
            return cls(name, f"<unprintable {name}>")
        try:
            from .secrets import redact  # not at import: it brings logging

            message = redact(message)  # before the cut: no secret's start may be kept
        except Exception:
            return cls(name, f"<unprintable {name}>")
        if len(message) > _ERROR_CHARS:
            message = message[:_ERROR_CHARS] + "…"
        return cls(name, message)


#: The metrics of a snapshot made without any (read-only: one for all).
_NO_METRICS: Mapping[str, Any] = MappingProxyType({})


class TaskSnapshot(Frozen):
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
    metrics: Mapping[str, Any]
    notes: tuple[str, ...]
    error: TaskError | None
    #: What ``n`` and ``total`` count when it is not items: ``"B"`` for bytes, ``"rows"``.
    unit: str | None
    #: The notebook the task runs in, as the server names it (``JPY_SESSION_NAME``), if any.
    notebook: str | None
    #: The id of the notebook cell that started the task (or the task it is nested in).
    cell_id: str | None
    #: Seconds this task usually takes: the median of its last succeeded runs (see
    #: ``slower``), or ``None`` when it has fewer than 3.
    usual: float | None
    #: Bytes of GPU memory this process uses on its devices, and their utilisation (percent),
    #: where NVIDIA's management library answers; else ``None``.
    gpu_mem: int | None
    gpu_util: float | None

    def __init__(
        self,
        id: str,
        name: str,
        kind: str,
        state: TaskState,
        parent_id: str | None,
        source: str,
        host: str,
        pid: int,
        start: float | None,
        end: float | None,
        elapsed: float,
        n: int,
        total: int | None,
        progress: float | None,
        rate: float | None,
        eta: float | None,
        rss: int | None,
        peak_rss: int | None,
        metrics: Mapping[str, Any] = _NO_METRICS,
        notes: tuple[str, ...] = (),
        error: TaskError | None = None,
        unit: str | None = None,
        notebook: str | None = None,
        cell_id: str | None = None,
        usual: float | None = None,
        gpu_mem: int | None = None,
        gpu_util: float | None = None,
    ) -> None:
        set_field(self, "id", id)
        set_field(self, "name", name)
        set_field(self, "kind", kind)
        set_field(self, "state", state)
        set_field(self, "parent_id", parent_id)
        set_field(self, "source", source)
        set_field(self, "host", host)
        set_field(self, "pid", pid)
        set_field(self, "start", start)
        set_field(self, "end", end)
        set_field(self, "elapsed", elapsed)
        set_field(self, "n", n)
        set_field(self, "total", total)
        set_field(self, "progress", progress)
        set_field(self, "rate", rate)
        set_field(self, "eta", eta)
        set_field(self, "rss", rss)
        set_field(self, "peak_rss", peak_rss)
        set_field(self, "metrics", metrics)
        set_field(self, "notes", notes)
        set_field(self, "error", error)
        set_field(self, "unit", unit)
        set_field(self, "notebook", notebook)
        set_field(self, "cell_id", cell_id)
        set_field(self, "usual", usual)
        set_field(self, "gpu_mem", gpu_mem)
        set_field(self, "gpu_util", gpu_util)


class Task:
    """One tracked piece of work.

    Made by ``remind()``, ``track()`` or ``%%remind``; user code reports through
    :meth:`advance`, :meth:`set`, :attr:`total`, :meth:`metric` and :meth:`note`.
    """

    # What most tasks never change, as class attributes: an instance sets its own on the
    # first write (a task is made per block and per loop: each assignment saved counts).
    #: When set (by ``track()``), ``n`` is read from it: the loop counts in C, not here.
    _source: Callable[[], int] | None = None
    #: The tqdm bar feeding this task's progress, if any (set by the runtime).
    tqdm_feed: Any = None
    #: ``(id, code)`` of the frame iterating a ``track()`` loop (set by ``track()``, read
    #: by the runtime to tell how the loop ended).
    consumer: tuple[int, Any] | None = None
    #: What ``n`` and ``total`` count when it is not items (``"B"``: bytes).
    unit: str | None = None
    #: Where a notebook task came from: the notebook (as the server names it) and the id of
    #: the cell that started it (set by the runtime on tasks started in no other task).
    notebook: str | None = None
    cell_id: str | None = None
    #: Seconds a run of this task usually takes (set by the runtime from the run history).
    usual: float | None = None
    #: What identifies earlier runs of this task in the history: its name, or for an unnamed
    #: cell its code (set by the front end; ``None``: the name).
    usual_key: str | None = None
    #: GPU memory (bytes) and utilisation (percent) of this process's devices, as last read.
    gpu_mem: int | None = None
    gpu_util: float | None = None
    #: The options this task took from the settings (``stall``, ...), not set by itself.
    defaulted: frozenset[str] = frozenset()
    #: Why the runtime stopped the task (a :class:`TaskMemoryLimit` raised into it), if it did.
    stopped_by: BaseException | None = None
    #: How the runtime stops this task instead of raising into its thread (``nbremind run``
    #: ends its command's process group), called with the reason; ``None``: raise.
    stopper: Callable[[BaseException], None] | None = None
    #: What a threshold of this task cannot watch so far, said on its status line while it
    #: runs (``"--stall 10 min cannot apply: no progress to watch ..."``; set by the tick).
    unwatched: str | None = None
    #: Whether the task is ending: the runtime stops it no more (set by the runtime).
    stops_held = False
    _metrics: dict[str, Any] | None = None
    _notes: list[str] | None = None
    state = TaskState.PENDING
    error: TaskError | None = None
    start_mono: float | None = None
    end_mono: float | None = None
    start_wall: float | None = None
    end_wall: float | None = None
    thread_id: int | None = None
    #: The asyncio loop running in the task's thread when it started, if any.
    loop: asyncio.AbstractEventLoop | None = None
    rss: int | None = None
    peak_rss: int | None = None
    #: Where the ticker reads this task's memory from, instead of the process's RSS.
    rss_source: Callable[[], int | None] | None = None
    _rate: float | None = None
    _rate_sample: tuple[float, int] | None = None
    timeout_hit = False
    interrupted_by_timeout = False
    #: Whether the task has ended (set with its final :attr:`state`; an attribute, not a
    #: property: the runtime asks it several times per task, a property costs a call each).
    done = False

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
        self.id = f"{_tag or process_tag()}-{next(_ids)}"
        self.name = name
        self.kind = kind
        self.parent = parent
        self.source = source
        self.host = host
        self.options = options or NO_OPTIONS
        self._clock = clock
        self._lock = _new_lock()
        # n = _n + the amounts in _adds + the items taken from _units: advance(1) is one C
        # call (``next()``, which CPython calls without building arguments) and advance(k)
        # one append, atomic under the GIL and lock-free; set(), large amounts and the
        # folding of _adds change _n under the lock
        self._n = 0
        self._adds: list[int] = []
        self._units = _repeat(None, _UNITS)
        if total is None or (type(total) is int and 0 <= total <= MAX_COUNT):
            self._total = total
        else:
            self._total = _check_total(total)

    # -- reporting, called from user code (any thread) -------------------------------------
    def advance(self, n: int = 1) -> None:
        """Add ``n`` units of work done (thread-safe).

        ``n`` is a whole number (an int, a numpy integer or an integral float such as
        ``5.0``); anything else (``nan``, ``inf``, ``0.5``, text) raises ``ValueError``
        naming it, here, as does a count that would pass :data:`MAX_COUNT`.
        """
        if n is _ONE:  # the hot path: no lock, no Python-level arithmetic (any int 1 is it)
            return next(self._units)
        if type(n) is int and n <= _FAST_STEPS and n >= _FAST_FLOOR:
            # next hottest: appended (atomic under the GIL), summed into the count under the
            # lock every _FOLD_AT calls and whenever the count is read
            adds = self._adds
            adds.append(n)
            if len(adds) >= _FOLD_AT:
                self._fold(n)
            return None
        steps = n if type(n) is int else _whole(n, "advance", "steps")
        with self._lock:
            self._n += self._take_adds()
            count = self._n + steps
            if not _MIN_COUNT <= count <= MAX_COUNT:
                raise ValueError(
                    f"advance: {value_repr(n)} steps would take the count past {MAX_COUNT}"
                )
            self._n = count
        return None

    def _take_adds(self) -> int:
        """The sum of the amounts appended by :meth:`advance`, removed from its list (called
        holding the lock; amounts appended meanwhile stay for the next time)."""
        adds = self._adds
        k = len(adds)
        if not k:
            return 0
        taken = sum(adds[:k])
        del adds[:k]
        return taken

    def _fold(self, n: int) -> None:
        with self._lock:
            adds = self._adds
            k = len(adds)
            count = self._n + sum(adds[:k])
            if not _MIN_COUNT <= count <= MAX_COUNT:
                del adds[:k]
                self._n = max(_MIN_COUNT, min(count, MAX_COUNT))
                raise ValueError(
                    f"advance: {value_repr(n)} steps would take the count past {MAX_COUNT}"
                )
            self._n = count  # before the amounts leave the list: a reader holds the lock
            del adds[:k]

    def set(self, n: int) -> None:
        """Set the units of work done to ``n`` (a whole number, as for :meth:`advance`)."""
        count = n if type(n) is int else _whole(n, "set", "units")
        if not _MIN_COUNT <= count <= MAX_COUNT:
            raise ValueError(f"set: {value_repr(n)} is not a count within ±{MAX_COUNT}")
        with self._lock:
            self._take_adds()
            self._n = count - (_UNITS - _length_hint(self._units))

    @property
    def n(self) -> int:
        """Units of work done so far."""
        source = self._source
        if source is not None:
            try:
                return source()
            except Exception:  # a broken source must not break a snapshot: fall back
                self._source = None
        return self._own_count()

    def _own_count(self) -> int:
        """``n`` as counted here: what the lock-free calls of :meth:`advance` added too."""
        if self._adds:
            with self._lock:  # not in the middle of a fold
                return self._n + sum(self._adds) + (_UNITS - _length_hint(self._units))
        return self._n + (_UNITS - _length_hint(self._units))

    def count_from(self, source: Callable[[], int] | None) -> None:
        """For the runtime: read ``n`` from ``source`` from now on (``None``: count here)."""
        self._source = source

    def settle_n(self) -> int:
        """For the runtime: read the source a last time and keep its value; return ``n``."""
        n = self.n
        with self._lock:
            self._source = None
            if self._adds:
                self._take_adds()
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
            if self._metrics is None:
                self._metrics = {}
            self._metrics.update(values)

    @property
    def metrics(self) -> Mapping[str, Any]:
        """The latest value of each metric (read-only view)."""
        with self._lock:
            if self._metrics is None:
                self._metrics = {}
            return MappingProxyType(self._metrics)

    def note(self, text: str) -> None:
        """Attach a line of text to the task (shown in notices)."""
        line = str(text)
        with self._lock:
            if self._notes is None:
                self._notes = []
            self._notes.append(line)

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
        """Seconds left at the current rate; else, while it runs shorter than it usually
        takes, what is left of its :attr:`usual` duration; ``None`` when it cannot be told."""
        eta = _eta(self._total, self.n, self.rate, self.state)
        if eta is None and self.usual is not None and self.state is _RUNNING:
            return _usual_eta(self.usual, self.elapsed)
        return eta

    # -- lifecycle, called by the runtime --------------------------------------------------
    def mark_started(self) -> None:
        """For the runtime: the task runs from now on, in the calling thread."""
        self.start_mono = self._clock.monotonic()
        self.start_wall = self._clock.time()
        self.thread_id = _get_ident()
        self.state = _RUNNING

    def mark_ended(
        self,
        state: TaskState,
        error: TaskError | None = None,
        end: tuple[float, float] | None = None,
    ) -> None:
        """For the runtime: end with ``state``; ``end`` is ``(monotonic, wall)`` when it
        ended before now."""
        if self._source is not None:
            self.settle_n()
        if end is None:
            end = (self._clock.monotonic(), self._clock.time())
        self.end_mono, self.end_wall = end
        self.error = error
        self.state = state
        self.done = True

    def sample_rate(self, now: float) -> None:
        """For the runtime: update the smoothed rate (the tick calls it)."""
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
            metrics = {} if self._metrics is None else dict(self._metrics)
            notes = () if self._notes is None else tuple(self._notes)
        # each value read once (``rate`` and ``eta`` derive from the same ``n``, ``elapsed``)
        state = self.state
        n = self.n
        total = self._total
        elapsed = self.elapsed
        rate = self._rate
        if rate is None and elapsed > 0 and n != 0:
            rate = n / elapsed
        eta = _eta(total, n, rate, state)
        usual = self.usual
        if eta is None and usual is not None and state is _RUNNING:
            eta = _usual_eta(usual, elapsed)
        origin = self  # a nested task comes from where its outermost task came from
        while origin.parent is not None and origin.cell_id is None:
            origin = origin.parent
        # every field, set at once: __init__ sets them one by one through
        # object.__setattr__, 15 times slower (a snapshot is taken per notice)
        snap = _new_snapshot(TaskSnapshot)
        snap.__dict__.update(
            id=self.id,
            name=self.name,
            kind=self.kind,
            state=state,
            parent_id=self.parent.id if self.parent else None,
            source=self.source,
            host=self.host,
            pid=os.getpid(),
            start=self.start_wall,
            end=self.end_wall,
            elapsed=elapsed,
            n=n,
            total=total,
            progress=n / total if total else None,
            rate=rate,
            eta=eta,
            rss=self.rss,
            peak_rss=self.peak_rss,
            metrics=metrics,
            notes=notes,
            error=self.error,
            unit=self.unit,
            notebook=origin.notebook,
            cell_id=origin.cell_id,
            usual=usual,
            gpu_mem=self.gpu_mem,
            gpu_util=self.gpu_util,
        )
        return snap

    def __repr__(self) -> str:
        total = "?" if self._total is None else self._total
        return f"<Task {self.name!r} {self.state.value} {self.n}/{total} {self.elapsed:.1f}s>"


def _eta(total: int | None, n: int, rate: float | None, state: TaskState) -> float | None:
    """Seconds left at ``rate``, or ``None`` when it cannot be told."""
    if total is None or not rate or state in TERMINAL_STATES:
        return None
    eta = max(0.0, (total - n) / rate)
    return eta if eta < math.inf else None  # a rate decayed to almost nothing


def _usual_eta(usual: float, elapsed: float) -> float | None:
    """What is left of a usual duration, or ``None`` once the run has taken longer."""
    left = usual - elapsed
    return left if left > 0 else None


def _check_total(value: object) -> int | None:
    if value is None:
        return None
    total = value if type(value) is int else _whole(value, "total", "units", "non-negative ")
    if not 0 <= total <= MAX_COUNT:
        raise ValueError(
            f"total: {value_repr(value)} is not a non-negative whole number of units "
            f"up to {MAX_COUNT}"
        )
    return total


def _whole(value: object, what: str, units: str, kind: str = "") -> int:
    """``value`` as an exact int: an int (or int subclass, numpy integer: ``__index__``) or an
    integral finite float; else ``ValueError`` naming ``value``."""
    try:
        if isinstance(value, float):
            number = float.__float__(value)  # the plain float, whatever a subclass overrides
            if math.isfinite(number) and number.is_integer():
                return int(number)
        elif not isinstance(value, bool):
            try:
                return int.__index__(operator.index(value))  # type: ignore[arg-type]
            except Exception:
                pass
            import numbers

            if isinstance(value, numbers.Real):  # numpy.float32, Fraction
                number = float(value)
                if math.isfinite(number) and number.is_integer():
                    return int(number)
    except Exception:  # even isinstance() runs user code (a __class__ property)
        pass
    raise ValueError(f"{what}: {value_repr(value)} is not a finite {kind}whole number of {units}")


def type_name(value: object) -> str:
    """The name of ``value``'s type, even when a metaclass makes ``__name__`` raise."""
    try:
        name = _type_name_of(type(value))
    except Exception:
        return "object"
    return str.__str__(name) if isinstance(name, str) else "object"


def value_repr(value: object, limit: int = _REPR_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters; never raises.

    An int too long for ``repr`` (or for a line of text) is shown in scientific notation;
    a value whose ``repr`` raises is shown as ``<unprintable TYPE>``.
    """
    try:
        if isinstance(value, int) and not isinstance(value, bool):
            number = int.__index__(value)
            if number.bit_length() > _INT_BITS_SHOWN:
                return _big_int_text(number)
    except Exception:
        pass
    try:
        text = str.__str__(repr(value))
    except Exception:
        return f"<unprintable {type_name(value)}>"
    return text if len(text) <= limit else text[:limit] + "…"


def _big_int_text(number: int) -> str:
    """A huge int in scientific notation (``1.000000e+300``) or by its number of digits."""
    try:
        return f"{float(number):.6e}"
    except OverflowError:
        digits = int(number.bit_length() * 0.30103) + 1
        return f"<int of about {digits} digits>"


class Ended(Exception):
    """An end told in words, not by an exception type: ``Ended("exit status 3")`` ends a
    task failed with the error ``exit status 3`` (no type name, no message)."""


class TaskTimeout(TimeoutError):
    """Raised into a task's thread when it passes its ``timeout`` with ``interrupt=True``."""


class TaskMemoryLimit(MemoryError):
    """Raised into a task's thread when the memory it is judged by passes its ``mem_limit``:
    the task stops before the OOM killer ends the whole process (and a kernel's variables).

    ``used`` and ``limit`` are the bytes in use and the limit, ``source`` what was measured
    (``"cgroup v2"``, ``"process RSS"``)."""

    #: The exception to raise, by thread id, when the runtime raises this type into a
    #: thread (an asynchronous exception is raised by type: it is made in that thread).
    pending: ClassVar[dict[int, TaskMemoryLimit]] = {}
    used: int
    limit: int
    source: str

    def __init__(
        self, message: str | None = None, used: int = 0, limit: int = 0, source: str = ""
    ) -> None:
        if message is None:  # raised into this thread by the runtime: take its reason
            reason = TaskMemoryLimit.pending.pop(_get_ident(), None)
            if reason is not None:
                message, used, limit, source = (
                    str(reason),
                    reason.used,
                    reason.limit,
                    reason.source,
                )
        super().__init__(message if message is not None else "memory limit")
        self.used = used
        self.limit = limit
        self.source = source

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.used, self.limit, self.source))
