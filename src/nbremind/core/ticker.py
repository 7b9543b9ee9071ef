"""The one background thread: an asyncio loop that owns channel I/O and the periodic tick."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .log import log_exception
from .workers import workers

__all__ = ["Ticker"]

T = TypeVar("T")


class Ticker:
    """A daemon thread running an asyncio loop, started lazily.

    ``tick`` is called every ``interval`` seconds while :meth:`wake` says there is work
    (running tasks); an idle ticker sleeps until woken.
    """

    def __init__(self, tick: Callable[[], bool], interval: float | None = 0.25) -> None:
        self._tick = tick
        self.interval = interval
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._busy: asyncio.Event | None = None
        self._waking = False  # a wake is queued for the loop thread
        self._stopping = False
        #: Called each time the thread starts, by the thread that started it, once the loop
        #: runs and before that thread goes on (work it submits is queued first).
        self.on_start: Callable[[], None] | None = None

    @property
    def running(self) -> bool:
        """Whether the loop thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop, starting the thread on first use (safe from any number of threads)."""
        loop = self._loop
        if loop is not None and self.running:
            return loop
        return self._start()

    def _start(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            started = not self.running
            if started:
                self._stopping = False
                self._waking = False
                self._loop = None
                self._ready = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._ready,), name="nbremind-ticker", daemon=True
                )
                self._thread.start()
            ready = self._ready
        # every caller waits for the loop, not only the one that started the thread
        ready.wait()
        loop = self._loop
        if loop is None:
            raise RuntimeError("the nbremind loop thread could not start")
        if started and self.on_start is not None:
            self._started(self.on_start)
        return loop

    def _run(self, ready: threading.Event) -> None:
        # A fresh loop of the default policy's type, untouched by any nest_asyncio patching
        # of the user's loop: this thread only ever runs run_forever on it.
        try:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._busy = asyncio.Event()
            ticking = loop.create_task(self._ticking()) if self.interval else None
        except BaseException:
            ready.set()  # waiters go on, and see that there is no loop
            raise
        # threads for blocking sends exist before anyone can exit: Python 3.12+ starts
        # none once interpreter shutdown has begun
        workers().prestart()
        ready.set()
        try:
            loop.run_forever()
        finally:
            if ticking is not None:
                ticking.cancel()
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            if ticking is not None and not ticking.done() and ticking not in pending:
                pending.append(ticking)  # all_tasks may miss it (its registry was replaced)
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    @staticmethod
    def _started(hook: Callable[[], None]) -> None:
        try:
            hook()
        except Exception:  # a failing start hook must not break whoever started the loop
            log_exception("ticker start hook failed")

    async def _ticking(self) -> None:
        assert self._busy is not None and self.interval
        while True:
            await self._busy.wait()
            await asyncio.sleep(self.interval)
            try:
                more = self._tick()
            except Exception:  # a bug in a tick must not stop the thread
                log_exception("tick failed")
                more = True
            if not more:
                self._busy.clear()

    def wake(self) -> None:
        """Resume ticking (there are running tasks)."""
        loop = self.loop
        busy = self._busy
        if busy is None or busy.is_set() or self._waking:
            return  # ticking, or a wake is already on its way: one is enough
        self._waking = True
        loop.call_soon_threadsafe(self._set_busy, busy)

    def _set_busy(self, busy: asyncio.Event) -> None:
        self._waking = False
        busy.set()

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on the loop thread."""
        self.loop.call_soon_threadsafe(fn, *args)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; returns a thread-safe future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def in_loop_thread(self) -> bool:
        """Whether the caller is the loop thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the loop and join the thread, waiting ``timeout`` seconds at most (``0``: do
        not wait; the daemon thread ends with the process)."""
        with self._lock:
            thread, loop = self._thread, self._loop
            if thread is None or loop is None or not thread.is_alive():
                return
            self._stopping = True
        loop.call_soon_threadsafe(loop.stop)
        if threading.current_thread() is not thread and timeout > 0:
            thread.join(timeout)
        self._thread = None
        self._loop = None
