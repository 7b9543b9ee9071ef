"""How the end of a ``track()`` loop is told when it stopped with an exception maybe in flight.

A generator only sees ``GeneratorExit`` when its consumer stops iterating, whether by
``break`` or because the loop body raised. The loop is then *pending*: the session settles
it with the exception that came out of the consumer's frame at the instruction where the
loop stopped (from the parent task, the cell, ``sys.excepthook`` / ``threading.excepthook``
or ``sys.last_exc``), or as succeeded when no such evidence arrives.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..core.task import Task
    from .session import Session

__all__ = [
    "ExceptHooks",
    "PendingEnd",
    "handled_exceptions",
    "hooks",
    "last_exception",
    "log_exception",
    "match",
    "match_consumer",
]


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


def match_consumer(
    exc: BaseException, consumer: tuple[int, Any] | None
) -> BaseException | None:
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


def log_exception(message: str) -> None:
    import logging

    logging.getLogger("nbremind").exception(message)


class ExceptHooks:
    """``sys.excepthook`` and ``threading.excepthook``, chained, while any loop is pending.

    An uncaught exception in a script or a thread settles the pending loops of the thread it
    ended (with that exception), then goes on to the hook that was there before. Each
    installation makes new hook functions, so a hook someone chained on top of ours keeps
    working after ours is removed.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: list[Session] = []
        self._sys_hook: Any = None
        self._thread_hook: Any = None
        self._previous: tuple[Any, Any] = (None, None)

    def need(self, session: Session) -> None:
        with self._lock:
            if not any(s is session for s in self._sessions):
                self._sessions.append(session)
            if self._sys_hook is None:
                self._install()

    def release(self, session: Session) -> None:
        with self._lock:
            if session._ends and not session._closed:
                return  # a loop went pending again meanwhile
            self._sessions = [s for s in self._sessions if s is not session]
            if not self._sessions and self._sys_hook is not None:
                self._uninstall()

    def _settle(self, exc: BaseException | None) -> None:
        with self._lock:
            sessions = list(self._sessions)
        for session in sessions:
            session.settle_pending(exc)

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
        return self._sys_hook is not None


hooks = ExceptHooks()
