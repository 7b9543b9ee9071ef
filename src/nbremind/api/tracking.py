"""``track()``: a loop as a task, for a fraction of tqdm's cost per iteration.

``for row in track(rows, name="rows", progress=[0.5]): ...`` follows the loop as a task of
kind ``"loop"``: started when the loop takes its first item, a child of the running task
(an enclosing ``track()`` loop, ``remind()`` block or ``%%remind`` cell), and ended when the
loop ends:

* the iterable is exhausted: **succeeded**;
* ``break``, ``return`` or ``del`` of the iterator: **succeeded** with the partial count;
* an exception in the loop's body: **failed** with that exception's type and message;
* an exception raised by the iterable itself: failed (cancelled for ``KeyboardInterrupt``).

A loop inside another task (a nested loop, a loop in a ``remind()`` block or a
``%%remind`` cell) notifies only the thresholds set on it (``progress=``, ``after=``, ...)
unless ``on=`` says otherwise: its end is the enclosing task's to report, and a loop run
once per file must not raise a toast per file. A loop at the top level notifies as
``remind()`` does.

A loop running directly in a ``%%remind`` cell, a ``remind()`` block or a decorated
function that counts nothing itself (no ``total``, no ``advance()``) feeds that task's
progress: the tick copies the loop's ``n`` and ``total`` into it, so the task's
``progress=`` marks, ETA and panel row follow the loop. Of loops nested or side by side the
outermost (the first started) feeds it, and the next loop takes over once it ended. Nothing
is added to the loop's iterations: the tick reads the loop as it reads a tqdm bar (see
:class:`nbremind.core.thresholds.Watch`).

How the end is told apart
-------------------------
A loop's generator never sees the exception raised in the loop's body: when the body
raises, the frame running the loop drops the generator, which only gets ``GeneratorExit``.
What it can see is the instruction that frame was at (``co_code[f_lasti]`` of the frame
that closed it). ``POP_TOP`` / ``POP_ITER`` / ``END_FOR`` (the iterator popped by
``break``), ``RETURN_VALUE`` / ``RETURN_CONST``, and the ``STORE_*`` / ``DELETE_*`` of a name
that held the iterator are a normal exit, and the loop succeeds at once. At any other
instruction (a call, ``raise``, an operator...) an exception is probably on its way up, so
the loop's end is *pending* (see :meth:`~nbremind.Session.settle_pending`): it is settled by
whoever learns the exception first -- the enclosing task ending with it,
``Session.settle_pending()`` (IPython's ``post_run_cell``), ``sys.excepthook`` /
``threading.excepthook`` (installed only while a loop is pending), ``sys.last_exc`` (the
last error that reached the top, which IPython records too) -- and failed only if that
exception's traceback passes through the loop's frame at that very instruction (at any
instruction when the loop stopped at a bare ``raise``). While the thread is still handling
that exception (a slow ``finally``, ``__exit__`` or ``except``) the loop keeps waiting.
With no evidence within :data:`~nbremind.runtime.loop_ends.SETTLE_AFTER` (1 s: an explicit
``.close()``, an exception the code caught, a ``zip()`` whose other iterable ran out first),
it succeeds with its partial count. The loop's ``end`` time is when it stopped, whenever it
is settled.

A loop whose generator outlives the exception (held by a variable, or on Python < 3.12 by a
comprehension's frame, which the traceback keeps) is still running when that exception
reaches the enclosing task, ``settle_pending()`` or the excepthook; it is failed then if
the exception came out of the frame that iterates it.

Counting without paying for it
------------------------------
The loop's count is not kept in Python. For an iterator whose type has a C
``__length_hint__`` (list, tuple, range, dict, set, str, bytes, deque iterators...) the
generator is a bare ``yield from`` and ``n`` is read from the iterator when asked (the
tick, a snapshot): the items it had at the start minus ``operator.length_hint`` now. For
other iterables (generators, ``map``, files, ...) the generator is ``yield from
itertools.compress(it, repeat(True, sys.maxsize))``: ``compress`` takes one item of the
``repeat`` per item of the loop, in C, without allocating, and ``n`` is what the ``repeat``
lost. Either way ``n`` counts the items the loop received (the one in progress included),
and is exact whenever read and when the task ends. ``benchmarks/track_overhead.py``
measures both against tqdm and the Python-level alternatives.

pandas chunk readers
--------------------
A pandas reader (``pd.read_csv(path, chunksize=N)``, ``read_json(..., lines=True,
chunksize=N)``, ...; told by its type's module, pandas is never imported here) is counted
per chunk: ``rows`` (``len(chunk)`` summed) is a metric. When the reader reads a regular
file, progress is in bytes: ``n`` is the file position after each chunk, ``total`` the file
size and ``task.unit == "B"`` -- the only total known before the end. With ``nrows=`` given
to pandas, or ``total=`` given to ``track()``, progress is in rows against that total, and
``bytes`` becomes the metric.

The default name
----------------
What is iterated, then where ``track()`` was called: ``"list at etl.py:12"``,
``"read_rows() at etl.py:12"`` (a generator: its function), ``"data.csv at line 3"`` (a
chunk reader: its file; ``line N`` for code without a file, such as a notebook cell).
"""

from __future__ import annotations

import itertools
import operator
import os
import stat
import sys
import types
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any, Generic, TypeVar

from ..core.log import log_exception
from ..core.options import NO_OPTIONS, TaskOptions, call_options, check_total
from ..core.sources import follower_for
from ..core.task import Task, TaskTimeout
from ..runtime.session import Session, get_session

__all__ = ["Tracked", "track"]

T = TypeVar("T")

_UNITS = sys.maxsize
_length_hint = operator.length_hint
_C_METHODS = (types.MethodDescriptorType, types.WrapperDescriptorType)
#: Instructions at which a frame drops an iterator without an exception on its way up.
NORMAL_EXITS = frozenset(
    {
        "POP_TOP",  # break / return out of a for loop (the iterator is popped)
        "POP_ITER",  # the same, Python 3.14
        "END_FOR",  # the end of a for loop, Python 3.12+
        "RETURN_VALUE",
        "RETURN_CONST",  # Python 3.12+
        "DELETE_FAST",
        "DELETE_NAME",
        "DELETE_GLOBAL",
        "DELETE_DEREF",
        "STORE_FAST",  # a name that held the iterator is rebound
        "STORE_NAME",
        "STORE_GLOBAL",
        "STORE_DEREF",
        "STORE_FAST_STORE_FAST",  # Python 3.13+
        "STORE_FAST_LOAD_FAST",  # Python 3.13+
    }
)
_normal_opcodes: frozenset[int] | None = None


def track(
    iterable: Iterable[T],
    name: str | None = None,
    total: int | None = None,
    *,
    session: Session | None = None,
    after: object = None,
    every: object = None,
    progress: object = None,
    mem: object = None,
    mem_limit: object = None,
    gpu_mem: object = None,
    stall: object = None,
    slower: object = None,
    timeout: object = None,
    interrupt: bool = False,
    on: object = None,
    channels: object = None,
    min_duration: object = None,
    when: Callable[[Task], object] | None = None,
) -> Tracked[T]:
    """Follow a loop over ``iterable`` as a task: ``for row in track(rows): ...``.

    ``total`` defaults to ``len(iterable)`` when it has one (the number of items an
    iterator with a C ``__length_hint__`` still has, otherwise). Keyword options are
    ``remind()``'s (``after``, ``every``, ``progress``, ``mem``, ``mem_limit``, ``gpu_mem``,
    ``stall``, ``slower``, ``timeout``, ``interrupt``, ``on``, ``channels``,
    ``min_duration``, ``when``) and are checked now: a bad value
    raises ``ValueError`` naming the option before the loop starts.

    ``name`` defaults to what is iterated and where: ``"list at etl.py:12"``,
    ``"read_rows() at etl.py:12"``. Each iteration of the result is one task of kind
    ``"loop"``, started when the loop takes its first item; ``Tracked.task`` is the latest.
    Its ``n`` counts the items the loop received. It ends succeeded when the iterable is
    exhausted or the loop is left (``break``, ``return``), failed when the loop's body or
    the iterable raises. Inside another task the loop notifies only the thresholds set on
    it unless ``on=`` is given (the enclosing task reports the end); running directly in a
    cell, block or function that counts nothing itself, it feeds that task's progress (its
    ``progress=`` marks fire from the loop).

    A pandas chunk reader (``pd.read_csv(path, chunksize=N)``) reading a file counts bytes
    against the file size (``task.unit == "B"``) with ``rows`` as a metric; with
    ``nrows=`` (pandas) or ``total=`` it counts rows. The ``nbremind.api.tracking`` module's
    documentation tells how a loop's end is told apart and how it is counted for free.
    """
    if name is not None and not isinstance(name, str):
        raise ValueError(f"track(): name {name!r} is not a string")
    if total is not None:
        check_total(total, "track()")
    if (  # the common call (a loop per file): no option, nothing to look at
        after is None
        and every is None
        and progress is None
        and mem is None
        and mem_limit is None
        and gpu_mem is None
        and stall is None
        and slower is None
        and timeout is None
        and on is None
        and channels is None
        and min_duration is None
        and when is None
        and interrupt is False
    ):
        options = NO_OPTIONS
    else:
        given = (
            after,
            every,
            progress,
            mem,
            mem_limit,
            gpu_mem,
            stall,
            slower,
            timeout,
            interrupt,
            on,
            channels,
            min_duration,
            when,
        )
        options = call_options("track()", session, *given)
    if session is not None and not isinstance(session, Session):
        raise ValueError(f"track(): session {session!r} is not a Session")
    follow = follower_for(iterable)
    if follow is not None:  # futures of a cluster, jobs of a queue: followed where they run
        return follow(iterable, name, total, options, session)  # type: ignore[no-any-return]
    cls = type(iterable)
    if (
        cls is not list
        and cls is not tuple
        and getattr(cls, "__iter__", None) is None
        and not hasattr(cls, "__getitem__")
    ):
        raise TypeError(f"track(): {cls.__name__!r} object is not iterable")
    if name is None:
        name = _default_name(iterable, sys._getframe(1))
    return Tracked(iterable, name, total, options, session)


#: Default names already made, by the type iterated and the call of ``track()`` (a loop per
#: file calls it from the same place thousands of times): the code called from, and the name.
_names: dict[tuple[type, int, int], tuple[types.CodeType, str]] = {}


def _default_name(iterable: object, frame: types.FrameType) -> str:
    code = frame.f_code
    # the call's place by its code's id and instruction: hashing a code object or telling
    # a frame's line costs more than making the rest of the name
    key = (type(iterable), id(code), frame.f_lasti)
    known = _names.get(key)  # (never a generator's nor a reader's: those are named anew)
    if known is not None:  # (it holds the code: that id is not another's while it is kept)
        return known[1]
    name = f"{_describe(iterable)} at {_where(frame)}"
    if key[0] is not types.GeneratorType and not _is_pandas_reader(iterable):
        if len(_names) >= 1024:
            _names.clear()
        _names[key] = (code, name)
    return name


class Tracked(Generic[T]):
    """What :func:`track` returns: iterate it (once per task); ``len()`` is its total."""

    __slots__ = ("_session", "iterable", "name", "options", "task", "total")

    def __init__(
        self,
        iterable: Iterable[T],
        name: str,
        total: int | None,
        options: TaskOptions,
        session: Session | None,
    ) -> None:
        self.iterable = iterable
        self.name = name
        self.total = total
        self.options = options
        self._session = session
        #: The task of the latest iteration (``None`` until the loop took its first item).
        self.task: Task | None = None

    def __len__(self) -> int:
        total = self.total if self.total is not None else _len(self.iterable)
        if total is None:
            raise TypeError(f"the total of {self.name!r} is unknown")
        return total

    def __repr__(self) -> str:
        return f"<Tracked {self.name!r}>"

    def __iter__(self) -> Iterator[T]:
        iterable = self.iterable
        it = iter(iterable)
        kind = _iterator_kinds.get(type(it))
        if kind is None:
            kind = _iterator_kind(it)
        if kind is _READER:
            return _chunks(self, it)
        total = self.total
        if total is None:
            cls = type(iterable)
            total = len(iterable) if cls is list or cls is tuple else _len(iterable)  # type: ignore[arg-type]
        if kind is _HINTED:
            start = _length_hint(it, -1)
            if start >= 0:
                return _hinted(self, it, start, start if total is None else total)
        return _counted(self, it, total)


# -- the loops ------------------------------------------------------------------------------


def _begin(
    tracked: Tracked[Any],
    total: int | None,
    consumer: types.FrameType,
    count: Callable[[], int] | None = None,
) -> tuple[Session, Task, Any]:
    session = tracked._session or get_session()
    task, token = session.start_loop(tracked.name, tracked.options, total, consumer, count)
    tracked.task = task
    return session, task, token


def _hinted(
    tracked: Tracked[T], it: Iterator[T], start: int, total: int
) -> Generator[T, None, None]:
    """The loop over an iterator that tells what is left: ``n = start - length_hint(it)``."""
    try:

        def source() -> int:
            return start - _length_hint(it)

        session, task, token = _begin(tracked, total, sys._getframe(1), source)
    except Exception:  # nbremind's trouble must not stop the user's loop
        log_exception("track() could not start its task")
        yield from it
        return
    try:
        yield from it
    except GeneratorExit:
        _closed(session, task, token, _caller())
        raise
    except BaseException as exc:
        replacement = _raised(session, task, token, exc)
        if replacement is not None:
            raise replacement from exc
        raise
    else:
        _exhausted(session, task, token)


def _counted(tracked: Tracked[T], it: Iterator[T], total: int | None) -> Generator[T, None, None]:
    """The loop over any other iterator: C counts the items in a ``repeat`` it consumes."""
    units = itertools.repeat(True, _UNITS)
    try:

        def source() -> int:
            return _UNITS - _length_hint(units)

        session, task, token = _begin(tracked, total, sys._getframe(1), source)
    except Exception:
        log_exception("track() could not start its task")
        yield from it
        return
    try:
        yield from itertools.compress(it, units)
    except GeneratorExit:
        _closed(session, task, token, _caller())
        raise
    except BaseException as exc:
        replacement = _raised(session, task, token, exc)
        if replacement is not None:
            raise replacement from exc
        raise
    else:
        _exhausted(session, task, token)


def _chunks(tracked: Tracked[Any], reader: Iterator[Any]) -> Generator[Any, None, None]:
    """The loop over a pandas chunk reader: rows, and bytes of the file it reads."""
    try:
        probe = _FileProbe(reader)
        nrows = getattr(reader, "nrows", None)
        rows_total = tracked.total
        if rows_total is None and isinstance(nrows, int) and not isinstance(nrows, bool):
            rows_total = nrows
        by_bytes = rows_total is None and probe.size is not None
        session, task, token = _begin(
            tracked, probe.size if by_bytes else rows_total, sys._getframe(1)
        )
        if by_bytes:
            task.unit = "B"
            task.set(probe.position() or 0)
    except Exception:
        log_exception("track() could not start its task")
        yield from reader
        return
    rows = 0
    try:
        for chunk in reader:
            try:
                rows += len(chunk)
            except TypeError:
                rows += 1
            position = probe.position()
            if by_bytes:
                if position is not None:
                    task.set(position)
                task.metric(rows=rows)
            else:
                task.set(rows)
                if position is not None:
                    task.metric(bytes=position)
            yield chunk
    except GeneratorExit:
        _closed(session, task, token, _caller())
        raise
    except BaseException as exc:
        replacement = _raised(session, task, token, exc)
        if replacement is not None:
            raise replacement from exc
        raise
    else:
        if by_bytes and probe.size is not None:
            task.set(probe.size)  # the reader closed its file at the end: all of it was read
        _exhausted(session, task, token)


def _caller() -> types.FrameType | None:
    """The frame that closed the loop's generator (the generator's caller)."""
    try:
        return sys._getframe(2)
    except ValueError:
        return None


def _exhausted(session: Session, task: Task, token: Any) -> None:
    session.end_loop(task, token)


def _raised(session: Session, task: Task, token: Any, exc: BaseException) -> BaseException | None:
    """The iterable itself raised: end the loop with ``exc``; return what to raise instead."""
    try:
        task.settle_n()
        session.leave(task, token)
        session.finish(task, exc)
    except Exception:
        log_exception("track() could not end its task")
    if task.interrupted_by_timeout and isinstance(exc, KeyboardInterrupt):
        # our own interrupt: the user sees a timeout, not a Ctrl-C they never pressed
        return TaskTimeout(f"{task.name} passed its timeout of {task.options.timeout:g} s")
    return None


def _closed(session: Session, task: Task, token: Any, frame: types.FrameType | None) -> None:
    """The generator was closed: a normal exit ends the task now, anything else waits (a
    loop nbremind stopped at its ``mem_limit`` ends now too: failed, with that reason)."""
    try:
        if task.stopped_by is not None or (frame is not None and _normal_exit(frame)):
            session.end_loop(task, token)
        else:
            task.settle_n()
            session.end_pending(task, frame, token)
    except Exception:
        log_exception("track() could not end its task")


def _normal_exit(frame: types.FrameType) -> bool:
    """Whether ``frame`` is at an instruction that drops an iterator without an exception."""
    global _normal_opcodes
    if _normal_opcodes is None:
        import opcode

        _normal_opcodes = frozenset(opcode.opmap[op] for op in NORMAL_EXITS if op in opcode.opmap)
    lasti = frame.f_lasti
    code = frame.f_code.co_code  # without specialised or instrumented instructions
    if not 0 <= lasti < len(code):
        return False
    return code[lasti] in _normal_opcodes


# -- what is iterated ---------------------------------------------------------------------

#: How an iterator is followed, by its type (told once per type: a loop per file asks it
#: thousands of times): a pandas chunk reader, one with a C ``__length_hint__``, or another.
_READER, _HINTED, _OTHER = "reader", "hinted", "other"
_iterator_kinds: dict[type, str] = {}


def _iterator_kind(it: object) -> str:
    cls = type(it)
    if _is_pandas_reader(it):
        kind = _READER
    elif isinstance(cls.__dict__.get("__length_hint__"), _C_METHODS):
        kind = _HINTED
    else:
        kind = _OTHER
    if len(_iterator_kinds) < 1024:
        _iterator_kinds[cls] = kind
    return kind


def _len(iterable: object) -> int | None:
    cls = type(iterable)
    if cls is list or cls is tuple or cls is dict:  # (a range's len() may overflow)
        return len(iterable)  # type: ignore[arg-type]
    if cls.__name__ == "DataFrame" and _from_pandas(cls):
        # iterating a DataFrame yields its column labels, not its rows
        columns = getattr(iterable, "columns", None)
        return len(columns) if columns is not None else None
    if not hasattr(cls, "__len__"):
        return None
    try:
        n = len(iterable)  # type: ignore[arg-type]
    except Exception:
        return None
    return n if n >= 0 else None


def _from_pandas(cls: type) -> bool:
    module = cls.__module__  # pandas 3 names its public classes' module "pandas"
    return module == "pandas" or module.startswith("pandas.")


def _is_pandas_reader(it: object) -> bool:
    """A pandas chunk reader (``TextFileReader``, ``JsonReader``...), told without pandas."""
    cls = type(it)
    return (
        _from_pandas(cls)
        and (cls.__module__.startswith("pandas.io.") or cls.__name__.endswith("Reader"))
        and hasattr(cls, "__next__")
    )


class _FileProbe:
    """The position of a pandas reader in the regular file it reads, and the file's size."""

    def __init__(self, reader: Any) -> None:
        self.size: int | None = None
        self._handle: Any = None
        handles = getattr(reader, "handles", None)
        handle = getattr(handles, "handle", None)
        if handle is None:
            return
        try:
            st = os.fstat(handle.fileno())
        except Exception:  # a buffer, a socket, a URL: no file to measure
            return
        if stat.S_ISREG(st.st_mode) and st.st_size > 0:
            self.size = st.st_size
            self._handle = handle

    def position(self) -> int | None:
        handle = self._handle
        if handle is None:
            return None
        try:
            return os.lseek(handle.fileno(), 0, os.SEEK_CUR)
        except Exception:  # closed at the end of the file
            return None


def _describe(iterable: object) -> str:
    if isinstance(iterable, types.GeneratorType):
        fn = iterable.__name__
        return "generator" if fn.startswith("<") else f"{fn}()"
    if _is_pandas_reader(iterable):
        handle = getattr(getattr(iterable, "handles", None), "handle", None)
        path = getattr(handle, "name", None)
        if isinstance(path, str) and path:
            return os.path.basename(path)
        return f"{type(iterable).__name__} chunks"
    return type(iterable).__name__


def _where(frame: types.FrameType) -> str:
    filename = frame.f_code.co_filename
    base = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    if base.startswith("<"):
        return f"line {frame.f_lineno}"
    return f"{base}:{frame.f_lineno}"
