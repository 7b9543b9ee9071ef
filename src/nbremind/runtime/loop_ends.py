"""How the end of a ``track()`` loop is told when it stopped with an exception maybe in flight.

A generator only sees ``GeneratorExit`` when its consumer stops iterating, whether by
``break`` or because the loop body raised. The loop is then *pending*: the session settles
it with the exception that came out of the consumer's frame at the instruction where the
loop stopped (from the parent task, the cell, ``sys.excepthook`` / ``threading.excepthook``
or ``sys.last_exc``), or as succeeded when no such evidence arrives. :class:`LoopEnds` keeps
the pending loops of one session.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

from ..core.log import log_exception

if TYPE_CHECKING:
    from ..core.clock import Clock
    from ..core.task import Task

__all__ = [
    "SETTLE_AFTER",
    "ExceptHooks",
    "LoopEnds",
    "PendingEnd",
    "handled_exceptions",
    "hooks",
    "last_exception",
    "match",
    "match_consumer",
]

#: Seconds a loop whose end is pending waits for evidence of an exception before it is
#: settled as succeeded (see :meth:`LoopEnds.settle_overdue`).
SETTLE_AFTER = 1.0
#: Ends a task: ``(task, exception or None, (monotonic, wall) of its end or None)``.
EndTask = Callable[["Task", "BaseException | None", "tuple[float, float] | None"], object]


class PendingEnd:
    """A ``track()`` loop that stopped while an exception may have been on its way up.

    ``frame`` and ``lasti`` are where the loop's consumer was when the loop was closed; the
    exception that ended the loop, if any, passed through that frame at that instruction.
    """

    __slots__ = ("end", "frame", "lasti", "since", "task", "thread")

    def __init__(
        self,
        task: Task,
        frame: FrameType | None,
        thread: int,
        since: float,
        end: tuple[float, float],
    ) -> None:
        self.task = task
        self.frame = frame
        self.lasti = frame.f_lasti if frame is not None else -1
        self.thread = thread
        self.since = since
        self.end = end


def chain(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or while handling (bounded)."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo and len(seen) < 32:
        e = todo.pop(0)
        if any(e is s for s in seen):
            continue
        seen.append(e)
        todo.extend(x for x in (e.__cause__, e.__context__) if x is not None)
    return seen


def tracebacks(exc: BaseException) -> Iterator[TracebackType]:
    tb = exc.__traceback__
    while tb is not None:
        yield tb
        tb = tb.tb_next


def match(exc: BaseException | None, frame: FrameType, lasti: int) -> BaseException | None:
    """The exception of ``exc``'s chain that passed through ``frame`` at ``lasti``, if any.

    When the loop stopped at a bare ``raise`` (a re-raise in an ``except`` of its body),
    the traceback keeps the instruction that first raised: then any exception of the chain
    that passed through ``frame`` does.
    """
    if exc is None:
        return None
    linked = chain(exc)
    for e in linked:
        if any(tb.tb_frame is frame and tb.tb_lasti == lasti for tb in tracebacks(e)):
            return e
    if is_reraise(frame, lasti):
        for e in linked:
            if any(tb.tb_frame is frame for tb in tracebacks(e)):
                return e
    return None


def is_reraise(frame: FrameType, lasti: int) -> bool:
    import opcode

    code = frame.f_code.co_code
    if not 0 <= lasti < len(code) - 1:
        return False
    op, arg = code[lasti], code[lasti + 1]
    return (op == opcode.opmap.get("RAISE_VARARGS") and arg == 0) or op == opcode.opmap.get(
        "RERAISE"
    )


def match_consumer(exc: BaseException, consumer: tuple[int, Any] | None) -> BaseException | None:
    """The exception of ``exc``'s chain that came out of the frame ``consumer`` names."""
    if consumer is None:
        return None
    ident, code = consumer
    for e in chain(exc):
        for tb in tracebacks(e):
            if id(tb.tb_frame) == ident and tb.tb_frame.f_code is code:
                return e
    return None


def last_exception() -> BaseException | None:
    """The last exception that reached the top (``sys.last_exc``, set by Python and IPython)."""
    last = getattr(sys, "last_exc", None) or getattr(sys, "last_value", None)
    return last if isinstance(last, BaseException) else None


def handled_exceptions() -> dict[int, BaseException]:
    """The exception each thread is handling now (in an ``except``, ``finally``, ``__exit__``)."""
    out: dict[int, BaseException] = {}
    try:
        current = sys._current_exceptions()
    except Exception:
        return out
    for ident, value in current.items():
        exc: object = value[1] if isinstance(value, tuple) else value  # < 3.12: exc_info
        if isinstance(exc, BaseException):
            out[ident] = exc
    return out


class ExceptHooks:
    """``sys.excepthook`` and ``threading.excepthook``, chained, while any loop is pending.

    An uncaught exception in a script or a thread settles the pending loops of the thread it
    ended (with that exception), then goes on to the hook that was there before. Each
    installation makes new hook functions, so a hook someone chained on top of ours keeps
    working after ours is removed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: list[LoopEnds] = []
        self._sys_hook: Any = None
        self._thread_hook: Any = None
        self._previous: tuple[Any, Any] = (None, None)

    def need(self, owner: LoopEnds) -> None:
        """``owner`` has a pending loop: install the hooks, if not yet."""
        with self._lock:
            if not any(o is owner for o in self._owners):
                self._owners.append(owner)
            if self._sys_hook is None:
                self._install()

    def release(self, owner: LoopEnds) -> None:
        """``owner`` has no pending loop left: remove the hooks if nobody else needs them."""
        with self._lock:
            if owner.needs_hooks():
                return  # a loop went pending again meanwhile
            self._owners = [o for o in self._owners if o is not owner]
            if not self._owners and self._sys_hook is not None:
                self._uninstall()

    def _settle(self, exc: BaseException | None) -> None:
        with self._lock:
            owners = list(self._owners)
        for owner in owners:
            owner.settle_pending(exc)

    def _install(self) -> None:
        previous_sys = sys.excepthook
        previous_thread = threading.excepthook

        def sys_hook(
            exc_type: type[BaseException],
            exc: BaseException,
            tb: TracebackType | None,
        ) -> Any:
            with contextlib.suppress(Exception):
                self._settle(exc)
            return previous_sys(exc_type, exc, tb)

        def thread_hook(args: Any) -> Any:
            with contextlib.suppress(Exception):
                self._settle(args.exc_value)
            return previous_thread(args)

        self._previous = (previous_sys, previous_thread)
        self._sys_hook, self._thread_hook = sys_hook, thread_hook
        sys.excepthook = sys_hook
        threading.excepthook = thread_hook

    def _uninstall(self) -> None:
        # put back what was there, unless someone replaced ours since (then ours stays in
        # their chain and only passes the exception on)
        previous_sys, previous_thread = self._previous
        if sys.excepthook is self._sys_hook:
            sys.excepthook = previous_sys
        if threading.excepthook is self._thread_hook:
            threading.excepthook = previous_thread
        self._sys_hook = self._thread_hook = None
        self._previous = (None, None)

    @property
    def installed(self) -> bool:
        """Whether the hooks are installed now."""
        return self._sys_hook is not None


hooks = ExceptHooks()


class LoopEnds:
    """The ``track()`` loops of one session whose end waits for evidence, by task id.

    Whoever learns the exception first settles a loop: its parent task ending
    (:meth:`settle_inside`), :meth:`settle_pending` (IPython's ``post_run_cell``, the
    excepthooks installed while a loop is pending), or the tick after :data:`SETTLE_AFTER`
    seconds without evidence (:meth:`settle_overdue`: succeeded).

    ``end_task`` ends a task, ``tasks`` lists the session's tasks, ``closed`` tells whether
    the session closed and ``wake`` wakes its loop thread.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        end_task: EndTask,
        tasks: Callable[[], list[Task]],
        closed: Callable[[], bool],
        wake: Callable[[], None],
        last: Callable[[], BaseException | None] = last_exception,
        handled: Callable[[], dict[int, BaseException]] = handled_exceptions,
    ) -> None:
        self._clock = clock
        self._end_task = end_task
        self._tasks = tasks
        self._closed = closed
        self._wake = wake
        self._last = last
        self._handled = handled
        self._lock = threading.Lock()
        self._ends: dict[str, PendingEnd] = {}

    def defer(self, task: Task, frame: FrameType | None) -> None:
        """``task`` (a loop) stopped where an exception may be on its way up: settle it
        later (at once when the session closed or the task already ended)."""
        if self._closed() or task.done:
            self._end_task(task, None, None)
            return
        end = (self._clock.monotonic(), self._clock.time())
        record = PendingEnd(task, frame, threading.get_ident(), end[0], end)
        with self._lock:
            self._ends[task.id] = record
        hooks.need(self)
        self._wake()

    def holds(self, task_id: str) -> bool:
        """Whether the loop ``task_id`` is pending."""
        return task_id in self._ends

    def needs_hooks(self) -> bool:
        """Whether a loop is pending in a session still open (the excepthooks ask)."""
        return bool(self._ends) and not self._closed()

    def tasks(self) -> list[Task]:
        """The pending loops."""
        with self._lock:
            return [record.task for record in self._ends.values()]

    def settle_pending(self, exc: BaseException | None = None, all_threads: bool = False) -> int:
        """End the pending loops of the calling thread (every thread's with ``all_threads``)
        now, knowing what escaped: ``exc``.

        A loop stopped by an exception in its body cannot see that exception (its generator
        only gets ``GeneratorExit``), so it waits. Call this where an exception is known to
        have escaped, or known not to have (``exc=None``): a loop is failed with ``exc``, or
        the exception in ``exc``'s ``__cause__``/``__context__`` chain, whose traceback
        passes through the loop at the instruction where it stopped; every other pending loop
        succeeded (its exception, if any, was caught). ``track()`` loops still running in a
        frame that ``exc`` came out of are failed too. Returns how many loops were ended;
        never raises.
        """
        try:
            ident = threading.get_ident()
            with self._lock:
                records = [r for r in self._ends.values() if all_threads or r.thread == ident]
            count = 0
            for record in sorted(records, key=lambda r: _depth(r.task), reverse=True):
                count += self._settle(record, exc)
            if exc is not None:
                for loop in self._running_loops(ident):
                    matched = match_consumer(exc, loop.consumer)
                    if matched is not None:
                        self._end_task(loop, matched, None)
                        count += 1
            return count
        except Exception:
            log_exception("settle_pending failed")
            return 0

    def settle_inside(self, task: Task, exc: BaseException | None) -> None:
        """``task`` ends with ``exc``: settle the pending loops under it, and end the loops
        ``exc`` came out of. Never raises."""
        if not self._ends and exc is None:
            return
        try:
            with self._lock:
                records = [r for r in self._ends.values() if _descends(r.task, task)]
            for record in sorted(records, key=lambda r: _depth(r.task), reverse=True):
                self._settle(record, exc)
            if exc is not None:
                for loop in self._running_loops(threading.get_ident()):
                    if _descends(loop, task):
                        matched = match_consumer(exc, loop.consumer)
                        if matched is not None:
                            self._end_task(loop, matched, None)
        except Exception:  # never let the bookkeeping of loops break the task's end
            log_exception("settling the loops of a task failed")

    def settle_overdue(self, now: float) -> None:
        """Tick: settle loops pending for :data:`SETTLE_AFTER` s with what is known by now.
        Never raises."""
        if not self._ends:
            return
        try:
            with self._lock:
                records = list(self._ends.values())
            self._settle_overdue(records, now)
        except Exception:
            log_exception("settling pending loops failed")

    def settle_all(self) -> None:
        """No more evidence will come (the session closes): settle every pending loop with
        the last uncaught exception, or none; then let the excepthooks go."""
        if self._ends:
            last = self._last()
            with self._lock:
                records = list(self._ends.values())
            for record in sorted(records, key=lambda r: _depth(r.task), reverse=True):
                self._settle(record, last)
        hooks.release(self)

    def _settle_overdue(self, records: list[PendingEnd], now: float) -> None:
        last = self._last()
        handled: dict[int, BaseException] | None = None
        for record in records:
            if now - record.since < SETTLE_AFTER:
                continue
            frame = record.frame
            if frame is None:
                self._settle(record, None)
                continue
            if last is not None and match(last, frame, record.lasti) is not None:
                self._settle(record, last)  # it reached the top: an uncaught exception
                continue
            if handled is None:
                handled = self._handled()
            exc = handled.get(record.thread)
            if exc is not None and match(exc, frame, record.lasti) is not None:
                record.since = now  # still on its way up (an __exit__, a finally, an except)
                continue
            self._settle(record, None)

    def _settle(self, record: PendingEnd, exc: BaseException | None) -> bool:
        with self._lock:
            if self._ends.pop(record.task.id, None) is None:
                return False  # someone else settled it
            empty = not self._ends
        if empty:
            hooks.release(self)
        frame, record.frame = record.frame, None
        matched = exc if frame is None else match(exc, frame, record.lasti)
        self._end_task(record.task, matched, record.end)
        return True

    def _running_loops(self, thread: int) -> list[Task]:
        """Running ``track()`` loops of ``thread`` not pending, innermost first."""
        loops = [
            t
            for t in self._tasks()
            if t.consumer is not None
            and not t.done
            and t.thread_id == thread
            and t.id not in self._ends
        ]
        return sorted(loops, key=_depth, reverse=True)


def _depth(task: Task) -> int:
    depth, parent = 0, task.parent
    while parent is not None:
        depth, parent = depth + 1, parent.parent
    return depth


def _descends(task: Task, ancestor: Task) -> bool:
    parent = task.parent
    while parent is not None:
        if parent is ancestor:
            return True
        parent = parent.parent
    return False
