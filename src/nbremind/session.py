"""The session: one process's tasks, settings, ticker thread and dispatcher, wired together.

Data flows one way: task events -> session -> loop thread -> dispatcher -> channels.
"""

from __future__ import annotations

import _thread
import atexit
import contextlib
import contextvars
import os
import signal
import sys
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ._clock import Clock, SystemClock
from .config import Config
from .notice import Notice, make_notice
from .options import TaskOptions
from .task import Task, TaskError, TaskState, TaskTimeout
from .thresholds import Watch

if TYPE_CHECKING:
    import concurrent.futures

    from .channels import Channel

__all__ = ["Session", "configure", "get_session", "set_session"]

_END_EVENT = {
    TaskState.SUCCEEDED: "success",
    TaskState.FAILED: "failure",
    TaskState.CANCELLED: "cancel",
    TaskState.TIMED_OUT: "timeout",
}
_KEEP_FINISHED = 200
_RSS_EVERY = 1.0
_DEFAULT_INTERVAL = object()


class Session:
    """Follows the tasks of one process and delivers their notices.

    ``clock`` and ``tick_interval=None`` (no periodic tick: call :meth:`tick` yourself) make
    a session tests can drive by hand; ``channels`` pre-fills channel instances by name.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        clock: Clock | None = None,
        channels: Mapping[str, Channel] | None = None,
        tick_interval: Any = _DEFAULT_INTERVAL,
    ) -> None:
        self.config = config or Config()
        self.clock: Clock = clock or SystemClock()
        interval = (
            self.config.tick_interval if tick_interval is _DEFAULT_INTERVAL else tick_interval
        )
        # asyncio and the channel registry load here, not at ``import nbremind``
        from .dispatcher import Dispatcher
        from .ticker import Ticker

        self.dispatcher = Dispatcher(channels=dict(channels or {}))

        self.ticker = Ticker(self.tick, interval)
        import socket

        self.host = socket.gethostname()
        self.source = _script_name()
        self._lock = threading.RLock()
        self._tasks: dict[str, Task] = {}
        self._watches: dict[str, Watch] = {}
        self._last_notice: dict[str, str] = {}
        self._pending: set[concurrent.futures.Future[None]] = set()
        self._current: contextvars.ContextVar[Task | None] = contextvars.ContextVar(
            "nbremind_current_task", default=None
        )
        self.fallback_parent: Task | None = None
        self._process: Any = None
        self._rss_at = float("-inf")
        self._rss: int | None = None
        self._closed = False
        #: Where each non-default setting came from (``configure()``, ``%remind mute``, ...).
        self.config_sources: dict[str, str] = {}

    # -- settings ---------------------------------------------------------------------------
    def configure(self, source: str = "configure()", **values: Any) -> Config:
        """Replace settings for this process; a bad key or value raises ``ValueError``."""
        self.config = self.config.updated(source, **values)
        self.config_sources.update(dict.fromkeys(values, source))
        if "tick_interval" in values:
            self.ticker.interval = self.config.tick_interval
        return self.config

    # -- tasks ------------------------------------------------------------------------------
    def new_task(
        self,
        name: str,
        *,
        options: TaskOptions | None = None,
        total: int | None = None,
        kind: str = "block",
        parent: Task | None = None,
    ) -> Task:
        """Make (but do not start) a task whose parent is the current task, if any."""
        if parent is None:
            parent = self.current()
        return Task(
            name,
            clock=self.clock,
            options=options,
            total=total,
            kind=kind,
            parent=parent,
            source=self.source,
            host=self.host,
        )

    def current(self) -> Task | None:
        """The innermost running task of this context (or the running cell's task)."""
        task = self._current.get()
        if task is not None and not task.done:
            return task
        fallback = self.fallback_parent
        if fallback is not None and not fallback.done:
            return fallback
        return None

    def start(self, task: Task) -> contextvars.Token[Task | None]:
        """Mark ``task`` running, make it current and begin watching its thresholds."""
        task._start()
        aio = sys.modules.get("asyncio")  # no loop can run if asyncio was never imported
        task.loop = aio.events._get_running_loop() if aio is not None else None
        with self._lock:
            self._tasks[task.id] = task
            self._watches[task.id] = Watch(task)
            self._trim()
        token = self._current.set(task)
        self._notify(task, "start")
        if self.ticker.interval:
            self.ticker.wake()
        return token

    def finish(
        self,
        task: Task,
        exc: BaseException | None = None,
        token: contextvars.Token[Task | None] | None = None,
    ) -> TaskState:
        """End ``task`` with the state ``exc`` implies, and notify. Never raises."""
        if token is not None:
            try:
                self._current.reset(token)
            except ValueError:  # reset from another context (async generators, hooks)
                self._current.set(task.parent)
        if task.done:
            return task.state
        state = _state_for(task, exc)
        error = None
        if exc is not None and state is not TaskState.SUCCEEDED:
            error = TaskError.from_exception(exc)
        task._finish(state, error)
        with self._lock:
            self._watches.pop(task.id, None)
        self._notify(task, _END_EVENT[state], "end")
        return state

    def tasks(self) -> list[Task]:
        """Every task this session knows, oldest first (finished ones are trimmed)."""
        with self._lock:
            return list(self._tasks.values())

    def running(self) -> list[Task]:
        """Tasks still running."""
        return [t for t in self.tasks() if not t.done]

    def last_notice(self, task: Task) -> str | None:
        """The title of the last notice sent about ``task``."""
        return self._last_notice.get(task.id)

    def _trim(self) -> None:
        finished = [k for k, t in self._tasks.items() if t.done]
        for key in finished[: max(0, len(finished) - _KEEP_FINISHED)]:
            del self._tasks[key]
            self._last_notice.pop(key, None)

    # -- the tick (loop thread, or a test) ----------------------------------------------------
    def tick(self) -> bool:
        """Evaluate thresholds of running tasks; return whether any task is still running."""
        with self._lock:
            watches = list(self._watches.values())
        if not watches:
            return False
        now = self.clock.monotonic()
        rss = self._sample_rss(now)
        for watch in watches:
            task = watch.task
            if task.done:
                continue
            task._sample_rate(now)
            if rss is not None:
                task.rss = rss
                task.peak_rss = max(rss, task.peak_rss or 0)
            for due in watch.check(rss):
                if due.event == "timeout" and task.options.interrupt:
                    self.interrupt(task)
                    continue
                self._notify(task, due.event, due.key, due.detail)
        return True

    def _sample_rss(self, now: float) -> int | None:
        if now - self._rss_at < _RSS_EVERY and self._rss is not None:
            return self._rss
        self._rss_at = now
        try:
            if self._process is None:
                import psutil

                self._process = psutil.Process(os.getpid())
            self._rss = int(self._process.memory_info().rss)
        except Exception:
            self._rss = None
        return self._rss

    def interrupt(self, task: Task) -> None:
        """Stop ``task`` where it runs: KeyboardInterrupt on the main thread, else TaskTimeout."""
        task.interrupted_by_timeout = True
        ident = task.thread_id
        if ident is None or task.done:
            return
        if ident == threading.main_thread().ident:
            if hasattr(signal, "pthread_kill"):
                # a real SIGINT wakes blocking calls (sleep, I/O); interrupt_main does not
                signal.pthread_kill(ident, signal.SIGINT)
            else:
                _thread.interrupt_main()
            loop = task.loop
            if loop is not None and not loop.is_closed():
                # an awaiting cell: ipykernel's SIGINT handler only queues a callback on the
                # kernel's loop, which sleeps until its next timer unless woken
                with contextlib.suppress(RuntimeError):
                    loop.call_soon_threadsafe(lambda: None)
        else:
            import ctypes

            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(TaskTimeout)
            )

    # -- notices ----------------------------------------------------------------------------
    def _notify(self, task: Task, event: str, key: object = 0, detail: object = None) -> None:
        options = task.options
        if event not in options.events() and not (
            options.on is None and self.config.on is not None and event in self.config.on
        ):
            return  # cheap early exit; the dispatcher's rules decide the rest
        notice = make_notice(event, task.snapshot(), created=self.clock.time(), key=key,
                             detail=detail)
        self.send(notice, options)

    def send(self, notice: Notice, options: TaskOptions | None = None) -> None:
        """Hand ``notice`` to the loop thread for delivery (returns at once)."""
        if self._closed:
            return
        self._last_notice[notice.task.id] = notice.title
        future = self.ticker.submit(
            self.dispatcher.dispatch(notice, options or TaskOptions(), self.config)
        )
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def _done(self, future: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._pending.discard(future)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every notice handed over so far was delivered or failed."""
        with self._lock:
            pending = list(self._pending)
        if not pending:
            return True
        if self.ticker.in_loop_thread():
            return False
        import concurrent.futures

        _done, not_done = concurrent.futures.wait(pending, timeout)
        return not not_done

    # -- channels ---------------------------------------------------------------------------
    def channel_status(
        self, names: Iterable[str] | None = None, refresh: bool = False
    ) -> dict[str, str]:
        """``{name: "available" | "unavailable: why"}`` for the configured (or named) channels."""
        names = tuple(names) if names is not None else self.config.channels
        import concurrent.futures

        future = self.ticker.submit(self.dispatcher.availability(names, refresh=refresh))
        try:
            return future.result(timeout=self.config.send_timeout + 5)
        except concurrent.futures.TimeoutError:
            return {name: "unavailable: no answer in time" for name in names}

    def test(self, channels: Iterable[str] | None = None, timeout: float = 15.0) -> dict[str, str]:
        """Send a test notice to each channel; ``{name: "delivered" | why not}``."""
        names = tuple(channels) if channels is not None else self.config.channels
        task = Task("nbremind test", clock=self.clock, kind="test", source=self.source,
                    host=self.host)
        task._start()
        task._finish(TaskState.SUCCEEDED)
        snap = task.snapshot()
        notice = Notice(
            id=f"{task.id}:test:{self.clock.time()}",
            event="test",
            title="nbremind test notice",
            body=f"If you can read this, the channel works.\n{snap.source} on {snap.host}".strip(),
            urgency="normal",
            created=self.clock.time(),
            task=snap,
            channels=names,
        )
        before = len(self.dispatcher.deliveries)
        config = self.config.updated(muted=False)
        opts = TaskOptions(on=("test",))
        future = self.ticker.submit(self.dispatcher.dispatch(notice, opts, config))
        import concurrent.futures

        with contextlib.suppress(concurrent.futures.TimeoutError):
            future.result(timeout)
        results = {name: "no answer in time" for name in names}
        for delivery in list(self.dispatcher.deliveries)[before:]:
            if delivery.notice_id == notice.id:
                results[delivery.channel] = "delivered" if delivery.ok else delivery.error
        return results

    # -- shutdown ---------------------------------------------------------------------------
    def close(self, timeout: float | None = None) -> None:
        """Deliver what is pending (up to ``timeout``), then stop the loop thread."""
        if self._closed:
            return
        if self.ticker.running:
            self.flush(self.config.exit_timeout if timeout is None else timeout)
            with contextlib.suppress(Exception):
                self.ticker.submit(self.dispatcher.close()).result(1.0)
            self.ticker.stop()
        self._closed = True


def _state_for(task: Task, exc: BaseException | None) -> TaskState:
    if exc is None:
        return TaskState.TIMED_OUT if task.timeout_hit else TaskState.SUCCEEDED
    aio = sys.modules.get("asyncio")
    cancelled: tuple[type[BaseException], ...] = (aio.CancelledError,) if aio else ()
    interrupts: tuple[type[BaseException], ...] = (KeyboardInterrupt, TaskTimeout, *cancelled)
    if task.interrupted_by_timeout and isinstance(exc, interrupts):
        return TaskState.TIMED_OUT
    if isinstance(exc, (KeyboardInterrupt, GeneratorExit, *cancelled)):
        return TaskState.CANCELLED
    if isinstance(exc, SystemExit) and exc.code in (None, 0):
        return TaskState.TIMED_OUT if task.timeout_hit else TaskState.SUCCEEDED
    return TaskState.FAILED


def _script_name() -> str:
    main = sys.modules.get("__main__")
    path: str | None = getattr(main, "__file__", None)
    if not path or "ipykernel" in path or path.endswith("-c"):
        return ""
    return os.path.basename(path)


_session: Session | None = None
_session_lock = threading.Lock()


def get_session() -> Session:
    """The process's session, made on first use (closed at interpreter exit)."""
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                _session = Session()
                atexit.unregister(_close_default)
                atexit.register(_close_default)
    return _session


def set_session(session: Session | None) -> Session | None:
    """Replace the process's session (tests, embedding); returns the previous one."""
    global _session
    with _session_lock:
        previous, _session = _session, session
    if session is not None:
        atexit.unregister(_close_default)
        atexit.register(_close_default)
    return previous


def _close_default() -> None:
    session = _session
    if session is not None:
        session.close()


def configure(**values: Any) -> Config:
    """Override settings for this process, e.g. ``configure(channels=["desktop"])``."""
    return get_session().configure(**values)
