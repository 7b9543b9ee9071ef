"""Dask futures followed where they run: ``track(futures)``, ``track(client.map(f, items))``,
``track(as_completed(futures))``.

``track()`` hands a list or tuple of ``distributed.Future`` (or one ``as_completed``) to
:func:`follow`, which follows them from the call on, whether or not they are iterated:

* a task of kind ``"dask"`` (named ``"dask: 200 futures"`` unless named), whose total is the
  number of futures, is started aside in the running task (:meth:`Session.start_aside
  <nbremind.Session.start_aside>`): it nests in the cell, block or function that called
  ``track()``, and the code after the call goes on at once;
* each future advances it when it finishes; futures already finished at the call count at
  once;
* it ends **succeeded** when every future finished, **failed** at the first future that
  erred -- the one ``as_completed(..., raise_errors=True)`` would raise for -- with that
  future's exception and a note naming its key and the count done (``key 'load-3' erred:
  12 of 200 done``), **cancelled** at the first future cancelled (``client.cancel()``, or
  the client closed while futures ran).

Nested in a task with ``on=`` not given, the task notifies only the thresholds set on it
(``progress=``, ``after=``, ...), as a nested ``track()`` loop does: the enclosing cell or
block reports the end. At the top level it notifies its end as any task.

What :func:`follow` returns, :class:`FollowedFutures`, iterates the futures in the order
they complete (as ``distributed.as_completed`` does; an ``as_completed`` handed in is
iterated itself), so ``for f in track(futures): f.result()`` reads each result as soon as
it is there.

Where the callbacks run
-----------------------
``Future.add_done_callback`` asks the client's event loop (its own thread) to wait for
the future; once the future left ``pending``, the loop hands the callback to one thread of
distributed's (``Dask-Callback-Thread``, shared by every future of the process). Asked
from another thread, each ``add_done_callback`` wakes the loop (tens of µs per future, in
a tug of war for the GIL), so ``track()`` reads the statuses on the calling thread and
asks the loop once: it adds the callbacks itself, :data:`REGISTER_BATCH` per turn (asked
from the loop, each is a plain ``call_soon``). A slow callback would delay every other
future's, so the callback only advances the task (one C call) and counts; the task's end,
once per task, is told from there too (:meth:`Session.finish <nbremind.Session.finish>`
hands its notice to nbremind's own thread). The exception of the erred future is read with
``future.exception()``, a round trip to the client's loop (its state is already there).

A future whose data was lost (a worker died) calls back with status ``"lost"`` and is
computed again: it is waited for again, not counted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from distributed import Future, as_completed

from ..api.tracking import Tracked
from ..core.log import log_exception
from ..core.options import TaskOptions
from ..core.task import Ended, Task, TaskError, type_name
from ..runtime.session import Session, get_session
from .followed import start_followed

__all__ = ["ERROR_WAIT", "REGISTER_BATCH", "UNREAD", "FollowedFutures", "error_of", "follow"]

#: Seconds the exception of an erred (or the reason of a cancelled) future is waited for.
ERROR_WAIT = 5.0
#: How an error whose exception could not be read begins.
UNREAD = "a future erred; its exception could not be read"
#: Futures given their callback per turn of the client's event loop.
REGISTER_BATCH = 256
#: Characters of a future's key shown in a note.
_KEY_CHARS = 100


def follow(
    handles: Any,
    name: str | None,
    total: int | None,
    options: TaskOptions,
    session: Session | None,
) -> FollowedFutures | Tracked[Any]:
    """Follow Dask futures (a list or tuple of them, or an ``as_completed``) as one task of
    kind ``"dask"``; see the module's documentation. A list holding anything but futures
    (actors' futures, ...) is an ordinary ``track()`` loop."""
    if isinstance(handles, as_completed):
        completed: as_completed | None = handles
        futures = _held_by(handles)
    else:
        completed = None
        futures = handles
        for item in futures:
            if not isinstance(item, Future):
                if name is None:
                    name = f"{type(handles).__name__} of {len(handles)}"
                return Tracked(handles, name, total, options, session)
    count = len(futures)
    if name is None:
        name = f"dask: {count} future{'' if count == 1 else 's'}"
    session = session or get_session()
    task = start_followed(session, name, count, total, options, "dask")
    following = _Following(session, task, count)
    try:
        following.watch(futures)
    except Exception as exc:  # nbremind's trouble must not stop the user's code
        log_exception("following Dask futures failed")
        following.end(Ended(f"nbremind could not follow the futures ({type_name(exc)})"))
    return FollowedFutures(task, () if completed is not None else futures, completed)


def _held_by(completed: as_completed) -> list[Any]:
    """The futures ``completed`` will yield: those still running (as many times as added)
    and those finished but not yet taken from it."""
    with completed.lock:
        futures = [f for f, times in completed.futures.items() for _ in range(times)]
        for item in completed.queue.queue:  # (future, result) with_results=True
            futures.append(item[0] if isinstance(item, tuple) else item)
    return futures


class FollowedFutures:
    """What ``track(futures)`` returns: the futures are followed from the call on;
    iterating yields them as they complete. ``len()`` is the total, :attr:`task` the task."""

    __slots__ = ("_completed", "_futures", "task")

    def __init__(self, task: Task, futures: Sequence[Any], completed: as_completed | None):
        #: The task following the futures (kind ``"dask"``), started at the call.
        self.task = task
        self._futures = futures
        self._completed = completed

    def __len__(self) -> int:
        return self.task.total or 0  # (the number of futures, unless total= said otherwise)

    def __iter__(self) -> Iterator[Any]:
        """The futures in the order they complete (``(future, result)`` pairs from an
        ``as_completed(..., with_results=True)`` handed in)."""
        if self._completed is not None:
            return iter(self._completed)
        futures = self._futures
        if not futures:
            return iter(())
        in_order: Any = as_completed  # (untyped)
        return iter(in_order(futures, loop=futures[0].client.loop))

    def __repr__(self) -> str:
        return f"<FollowedFutures {self.task.name!r} {self.task.state}>"


class _Following:
    """The bookkeeping of one task's futures; :meth:`done` is each future's callback."""

    __slots__ = ("_end_lock", "_finished", "_waiting", "count", "session", "task")

    def __init__(self, session: Session, task: Task, count: int) -> None:
        self.session = session
        self.task = task
        self.count = count
        self._waiting = 0
        self._finished = itertools.count(1)  # next() is atomic: callbacks may run on any thread
        self._end_lock = threading.Lock()

    def watch(self, futures: Sequence[Any]) -> None:
        """Count the futures done already; have the others call back (or end the task)."""
        task = self.task
        pending = []
        for future in futures:
            status = future.status
            if status == "finished":
                task.advance()
            elif status == "error" or status == "cancelled":
                self._erred(future, status)  # the first one: the task ends now
                return
            else:
                pending.append(future)
        if not pending:
            self.end(None)
            return
        self._waiting = len(pending)  # set before any callback can count
        pending[0].client.loop.add_callback(self._register, pending, 0)

    def _register(self, pending: list[Any], start: int) -> None:
        """On the client's loop: ``add_done_callback`` for a batch of ``pending``, then the
        next batch (asked from the loop itself, each is a plain ``call_soon``)."""
        try:
            if self.task.done:  # ended at an error already: the rest need not call back
                return
            done = self.done
            stop = start + REGISTER_BATCH
            for future in pending[start:stop]:
                future.add_done_callback(done)
            if stop < len(pending):
                pending[0].client.loop.add_callback(self._register, pending, stop)
        except Exception as exc:
            log_exception("following Dask futures failed")
            self.end(Ended(f"nbremind could not follow the futures ({type_name(exc)})"))

    def done(self, future: Any) -> None:
        """A future left ``pending`` (on distributed's callback thread): count it, or end
        the task at an error; never raises."""
        try:
            task = self.task
            if task.done:
                return
            status = future.status
            if status == "finished":
                task.advance()
                if next(self._finished) == self._waiting:
                    self.end(None)
            elif status == "error" or status == "cancelled":
                self._erred(future, status)
            else:  # "lost": its data is computed again; wait for it again
                future.add_done_callback(self.done)
        except Exception:
            log_exception("following a Dask future failed")

    def _erred(self, future: Any, status: str) -> None:
        exc = error_of(future) if status == "error" else _cancellation_of(future)
        what = "erred" if status == "error" else "was cancelled"
        key = repr(future.key)
        if len(key) > _KEY_CHARS:
            key = key[:_KEY_CHARS] + "…"
        self.end(exc, f"key {key} {what}: {self.task.n} of {self.count} done")

    def end(self, exc: BaseException | None, note: str | None = None) -> None:
        """End the task with ``exc`` (and ``note``), unless it ended already."""
        with self._end_lock:  # once, whichever thread comes first
            task = self.task
            if task.done:
                return
            if note is not None:
                task.note(note)
            self.session.finish(task, exc)


def error_of(future: Any) -> BaseException:
    """The exception the erred ``future`` raised, or its type and message in words."""
    try:
        error = _answer(future.exception(timeout=ERROR_WAIT))
    except Exception as why:
        return Ended(f"{UNREAD} ({type_name(why)})")
    if isinstance(error, Exception):
        return error
    if isinstance(error, BaseException):  # (KeyboardInterrupt, SystemExit(0): failed still)
        told = TaskError.from_exception(error)
        return Ended(f"{told.type}: {told.message}" if told.message else told.type)
    return Ended(UNREAD)


def _cancellation_of(future: Any) -> BaseException:
    """A ``CancelledError`` (asyncio's: the task ends cancelled, not failed) telling why
    ``future`` was cancelled: distributed's words, with its reason, when they can be had."""
    try:
        _answer(future.result(timeout=ERROR_WAIT))
    except (concurrent.futures.CancelledError, asyncio.CancelledError) as why:
        # (distributed's FutureCancelledError is concurrent.futures': an Exception)
        return asyncio.CancelledError(str(why))
    except Exception:  # the client closed meanwhile: its reason is gone with it
        pass
    return asyncio.CancelledError(f"{future.key!r} cancelled")


def _answer(outcome: object) -> object:
    """What a future's method returned; ``None`` for a coroutine (an asynchronous client
    asked from its own loop, which is never the callback thread: closed unawaited)."""
    if asyncio.iscoroutine(outcome):
        outcome.close()
        return None
    return outcome
