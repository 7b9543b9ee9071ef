"""Worker threads for blocking sends, usable until the interpreter's last atexit hook.

asyncio's default executor (``asyncio.to_thread``, ``loop.run_in_executor(None, ...)``) is a
``ThreadPoolExecutor``. Python shuts those down in ``threading._shutdown``, *before* atexit
hooks run, so a webhook or e-mail sent by the hook that delivers a script's last notice
would fail with "cannot schedule new futures after interpreter shutdown" (or "can't register
atexit after shutdown" for a first send). The threads here are plain daemon threads started
on demand: nothing joins them at exit (a hung send cannot keep the process alive) and
nothing refuses work once shutdown has begun.

Python 3.12 and later refuse to *start* a thread once interpreter shutdown has begun, so
the loop thread starts a few workers when it starts (:meth:`Workers.prestart`); at exit the
work queues for the threads that exist. When none does, the send fails with
:class:`NoWorker`, which is retryable: the dispatcher leaves the delivery pending in the
outbox for the next process instead of calling it failed.

:func:`run_blocking` is what channels await instead of ``asyncio.to_thread``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["MAX_WORKERS", "PRESTART", "NoWorker", "Workers", "run_blocking", "workers"]

T = TypeVar("T")

#: Threads at most in the process-wide pool: sends beyond this many at once wait their turn
#: (each is bounded by the dispatcher's ``send_timeout``, so a hung server cannot hold a
#: thread's turn for ever from the caller's point of view).
MAX_WORKERS = 8

#: Workers started with the loop thread, so that sends at interpreter exit have threads.
PRESTART = 2

_Item = tuple["concurrent.futures.Future[Any]", Callable[..., Any], tuple[Any, ...]]


class NoWorker(RuntimeError):
    """No thread can run a blocking send (the interpreter is shutting down)."""

    retryable = True


class Workers:
    """A bounded set of daemon threads that run blocking calls, started as work comes."""

    def __init__(self, limit: int = MAX_WORKERS, name: str = "nbremind-send") -> None:
        self.limit = limit
        self.name = name
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._queued = 0

    @property
    def threads(self) -> int:
        """How many worker threads were started (they live as long as the process)."""
        return self._threads

    def submit(self, fn: Callable[..., T], *args: Any) -> concurrent.futures.Future[T]:
        """Run ``fn(*args)`` on a worker thread; a cancelled future that has not started is
        skipped. Fails the future with :class:`NoWorker` when there is no thread and none
        can be started (interpreter shutdown)."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            self._queue.put((future, fn, args))
            self._queued += 1
            start = self._queued > self._idle and self._threads < self.limit
        alone = start and not self._start_one() and self._threads == 0
        if alone and future.set_running_or_notify_cancel():
            future.set_exception(
                NoWorker("no worker thread to send with: the interpreter is exiting")
            )
        return future

    def prestart(self, count: int = PRESTART) -> int:
        """Make sure ``count`` threads (at most the limit) exist; returns how many do."""
        while self._threads < min(count, self.limit) and self._start_one():
            pass
        return self._threads

    def _start_one(self) -> bool:
        with self._lock:
            if self._threads >= self.limit:
                return False
            self._threads += 1
            number = self._threads
        thread = threading.Thread(target=self._work, name=f"{self.name}-{number}", daemon=True)
        try:
            thread.start()
        except RuntimeError:  # "can't create new thread at interpreter shutdown" (3.12+)
            with self._lock:
                self._threads -= 1
            return False
        return True

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            future, fn, args = self._queue.get()
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            if future.done() or not future.set_running_or_notify_cancel():
                continue  # failed for want of a thread, or cancelled before it began
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to whoever awaits the future
                future.set_exception(exc)
            else:
                future.set_result(result)
            del future, fn, args


_pool: Workers | None = None
_pool_lock = threading.Lock()


def workers() -> Workers:
    """The process-wide pool (made on first use; a forked child makes its own)."""
    global _pool
    pool = _pool
    if pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = Workers()
            pool = _pool
    return pool


def _forget_pool() -> None:  # the parent's threads do not exist in a forked child
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


async def run_blocking(fn: Callable[..., T], *args: Any) -> T:
    """Await ``fn(*args)`` run on a worker thread (see the module docstring for why not
    ``asyncio.to_thread``). Cancelling the await abandons the call, which runs on."""
    return await asyncio.wrap_future(workers().submit(fn, *args))
