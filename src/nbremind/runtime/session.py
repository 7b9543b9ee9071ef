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
import time
from collections.abc import Iterable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..core.channel_names import register_registry
from ..core.clock import Clock, SystemClock
from ..core.config import Config
from ..core.notice import Notice, make_notice
from ..core.options import TaskOptions
from ..core.task import Task, TaskError, TaskState, TaskTimeout
from ..core.thresholds import Watch, never_applied
from .channel_check import Registry, build_channel
from .loop_ends import (
    PendingEnd,
    handled_exceptions,
    hooks,
    last_exception,
    log_exception,
    match,
    match_consumer,
)

if TYPE_CHECKING:
    import concurrent.futures

    from ..channels import Channel
    from ..settings.live import LiveSettings
    from ..store.outbox import Outbox, Replay

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
#: Seconds a loop whose end is pending waits for evidence of an exception before it is
#: settled as succeeded (see :meth:`Session.settle_pending`).
SETTLE_AFTER = 1.0
#: Notices queued for the loop thread at most; past this, the thread that makes one waits
#: (at most CATCH_UP_WAIT seconds) until the loop thread has taken up all but RESUME_QUEUED.
MAX_QUEUED = 1000
RESUME_QUEUED = 500
CATCH_UP_WAIT = 5.0
#: Kinds of task a tqdm bar, or a ``track()`` loop running directly in it, may feed (they
#: have no loop of their own to count).
_FED_KINDS = frozenset({"cell", "auto", "block", "function"})


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
        from ..core.ticker import Ticker
        from ..delivery.dispatcher import Dispatcher

        self.dispatcher = Dispatcher(channels=dict(channels or {}), clock=self.clock,
                                     make_channel=build_channel)  # fmt: skip

        self.ticker = Ticker(self.tick, interval)
        # the durable outbox: opened on first use; leftovers replayed when the loop starts
        self._outbox: tuple[tuple[object, ...], Outbox | None] | None = None
        self._replayed = False
        self._outbox_lock = threading.Lock()  # not self._lock: opening may wait on disk
        #: What the last look for notices left by ended processes found.
        self.last_replay: Replay | None = None
        self.dispatcher.outbox_source = lambda: self.outbox
        self.dispatcher.already_sent = self._already_sent
        self.ticker.on_start = self._loop_started
        from .run_recorder import HistoryRecorder

        #: Writes every task's start and end to the run history, on the loop thread.
        self.history_recorder = HistoryRecorder(self)
        import socket

        self.host = socket.gethostname()
        self.source = _script_name()
        self._lock = threading.RLock()
        self._tasks: dict[str, Task] = {}
        self._watches: dict[str, Watch] = {}
        self._last_notice: dict[str, str] = {}
        self._pending: set[concurrent.futures.Future[None]] = set()
        #: Notices handed to the loop thread that it has not taken up yet (see :meth:`send`).
        self._queued = 0
        self._backlog = threading.Condition(threading.Lock())
        self._current: contextvars.ContextVar[Task | None] = contextvars.ContextVar(
            "nbremind_current_task", default=None
        )
        self.fallback_parent: Task | None = None
        self._process: Any = None
        self._rss_at = float("-inf")
        self._rss: int | None = None
        self._closed = False
        #: ``track()`` loops whose end waits for evidence, by task id.
        self._ends: dict[str, PendingEnd] = {}
        self._finished = 0  # finished tasks in _tasks
        #: Where each non-default setting came from (``configure()``, ``%remind mute``, ...).
        self.config_sources: dict[str, str] = {}
        #: Values given to :meth:`configure`, kept over settings files when they are reloaded.
        self.explicit_settings: dict[str, Any] = {}
        #: The settings files and environment this session follows (the default session's).
        self.settings: LiveSettings | None = None
        #: The kernel-death watchdog of this process, once started (see :mod:`.watchdog`).
        self._watchdog: Any = None
        self._watchdog_wanted = False

    # -- settings ---------------------------------------------------------------------------
    def configure(self, source: str = "configure()", **values: Any) -> Config:
        """Replace settings for this process and return them; ``values`` are validated together
        with each other and with the settings in force (a bad key or value raises
        ``ValueError``), and kept over the settings files when those are reloaded."""
        config = self.config.updated(source, **values)
        if "channel_defs" in values and "channels" not in values and config.channels:
            config.updated(source, channels=config.channels)  # they still name channels
        self.config = config
        self.config_sources.update(dict.fromkeys(values, source))
        self.explicit_settings.update(values)
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
        while task is not None and task.done:
            # a task ended out of order (a loop ended by its parent, a generator closed
            # late): its nearest running ancestor is what encloses the code now
            task = task.parent
        if task is not None:
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
            if task.kind == "loop":
                self._offer_loop(task)
        token = self._current.set(task)
        self._notify(task, "start")
        self.history_recorder.started(task)
        if not self._watchdog_wanted and "ipykernel" in sys.modules and self.config.watchdog:
            from .watchdog_link import in_kernel

            if in_kernel():
                self.want_watchdog()
        if self.ticker.interval:
            self.ticker.wake()
        return token

    def finish(
        self,
        task: Task,
        exc: BaseException | None = None,
        token: contextvars.Token[Task | None] | None = None,
    ) -> TaskState:
        """End ``task`` with the state ``exc`` implies, and notify. Never raises.

        ``track()`` loops inside ``task`` whose end is pending are settled first: failed with
        ``exc`` (or the exception in its chain) when it came out of the loop, else succeeded.
        """
        try:
            if token is not None:
                try:
                    self._current.reset(token)
                except ValueError:  # reset from another context (async generators, hooks)
                    self._current.set(task.parent)
            return self._end(task, exc)
        except Exception:  # a bug of ours must not change how the user's code ends
            log_exception("ending a task failed")
            return task.state

    def _end(
        self, task: Task, exc: BaseException | None, end: tuple[float, float] | None = None
    ) -> TaskState:
        if task.done:
            return task.state
        if self._ends or exc is not None:
            try:
                self._settle_inside(task, exc)
            except Exception:  # never let the bookkeeping of loops break the task's end
                log_exception("settling the loops of a task failed")
        watch = self._watches.get(task.id)
        if watch is not None and watch.feeder is not None:
            self._read_loop(watch)  # the loop that fed it, for the last time
        if task._tqdm is not None:
            from .tqdm_feed import final_read

            final_read(task)
        state = _state_for(task, exc)
        error = None
        if exc is not None and state is not TaskState.SUCCEEDED:
            error = TaskError.from_exception(exc)
        task._finish(state, error, end)
        unapplied = never_applied(task)
        if unapplied is not None:
            task.note(unapplied)  # said on the end notice, not silently dropped
        with self._lock:
            self._watches.pop(task.id, None)
            if task.id in self._tasks:
                self._finished += 1
        self._notify(task, _END_EVENT[state], "end")
        self.history_recorder.ended(task)
        return state

    # -- ``track()`` loops feeding the task they run in -----------------------------------------
    def _offer_loop(self, loop: Task) -> None:
        """``loop`` just started: let it feed the progress of the task it runs directly in
        (called holding ``self._lock``).

        Only a cell, block or function that counts nothing itself (no total, ``n == 0``, no
        tqdm bar feeding it) takes it, and only while no earlier loop in it still runs: the
        outermost loop wins, and a later loop takes over once the one before ended. The tick
        then reads the loop (:meth:`~nbremind.core.thresholds.Watch.read_feed`); the loop's items
        cost nothing more.
        """
        parent = loop.parent
        if parent is None or parent.kind not in _FED_KINDS:
            return
        watch = self._watches.get(parent.id)
        if watch is None:
            return
        feeder = watch.feeder
        if feeder is None:
            if parent.total is not None or parent.n != 0 or watch.fed is not None:
                return
            if "tqdm.std" in sys.modules:  # no bar can exist without it
                from .tqdm_feed import fed_by_bar

                if fed_by_bar(parent):
                    return
        elif not feeder.done and feeder.id not in self._ends:
            return  # the outermost loop still runs
        watch.feeder = loop

    def _read_loop(self, watch: Watch) -> None:
        """Read the loop feeding ``watch``'s task (the tick, or the task's end: never both
        at once, or one could take the other's copy for the task counting itself)."""
        try:
            with self._lock:
                watch.read_feed()
        except Exception:  # a count a task cannot take: stop feeding, never raise
            watch.feeder = None
            log_exception("reading a loop's progress failed")

    # -- loops whose end is pending (``track()``) ---------------------------------------------
    def _end_pending(
        self,
        task: Task,
        frame: FrameType | None,
        token: contextvars.Token[Task | None] | None = None,
    ) -> None:
        """A loop stopped where an exception may be on its way up: settle it later.

        Whoever learns the exception first settles it: the parent task ending
        (:meth:`finish`), :meth:`settle_pending` (IPython's ``post_run_cell``, the
        ``sys.excepthook`` / ``threading.excepthook`` installed while a loop is pending), or
        the tick after :data:`SETTLE_AFTER` seconds without evidence (succeeded).
        """
        self._leave(task, token)
        if self._closed or task.done:
            self._end(task, None)
            return
        end = (self.clock.monotonic(), self.clock.time())
        record = PendingEnd(task, frame, threading.get_ident(), end[0], end)
        with self._lock:
            self._ends[task.id] = record
        hooks.need(self)
        if self.ticker.interval:
            self.ticker.wake()

    def _leave(self, task: Task, token: contextvars.Token[Task | None] | None) -> None:
        """Make ``task``'s parent current again, if ``task`` is still the current one.

        A loop can end out of order (its parent ended it first; two loops zipped together);
        resetting its token then would bring back a task that is no longer current.
        """
        if token is not None and self._current.get() is task:
            with contextlib.suppress(ValueError):  # closed from another context: leave it
                self._current.reset(token)

    def pending(self) -> list[Task]:
        """Loops that stopped and wait for evidence of how (see :meth:`settle_pending`)."""
        with self._lock:
            return [record.task for record in self._ends.values()]

    def settle_pending(
        self, exc: BaseException | None = None, *, all_threads: bool = False
    ) -> int:
        """End the pending loops of the calling thread now, knowing what escaped: ``exc``.

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
                    matched = match_consumer(exc, loop._consumer)
                    if matched is not None:
                        self._end(loop, matched)
                        count += 1
            return count
        except Exception:
            log_exception("settle_pending failed")
            return 0

    def _settle(self, record: PendingEnd, exc: BaseException | None) -> bool:
        with self._lock:
            if self._ends.pop(record.task.id, None) is None:
                return False  # someone else settled it
            empty = not self._ends
        if empty:
            hooks.release(self)
        frame, record.frame = record.frame, None
        matched = exc if frame is None else match(exc, frame, record.lasti)
        self._end(record.task, matched, record.end)
        return True

    def _settle_inside(self, task: Task, exc: BaseException | None) -> None:
        """Settle the pending loops under ``task``, and end loops ``exc`` came out of."""
        with self._lock:
            records = [r for r in self._ends.values() if _descends(r.task, task)]
        for record in sorted(records, key=lambda r: _depth(r.task), reverse=True):
            self._settle(record, exc)
        if exc is not None:
            for loop in self._running_loops(threading.get_ident()):
                if _descends(loop, task):
                    matched = match_consumer(exc, loop._consumer)
                    if matched is not None:
                        self._end(loop, matched)

    def _running_loops(self, thread: int) -> list[Task]:
        """Running ``track()`` loops of ``thread`` not pending, innermost first."""
        with self._lock:
            loops = [
                t for t in self._tasks.values()
                if t._consumer is not None and not t.done and t.thread_id == thread
                and t.id not in self._ends
            ]
        return sorted(loops, key=_depth, reverse=True)

    def _settle_overdue(self, records: list[PendingEnd], now: float) -> None:
        """Tick: settle loops pending for :data:`SETTLE_AFTER` s with what is known by now."""
        last = last_exception()
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
                handled = handled_exceptions()
            exc = handled.get(record.thread)
            if exc is not None and match(exc, frame, record.lasti) is not None:
                record.since = now  # still on its way up (an __exit__, a finally, an except)
                continue
            self._settle(record, None)

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
        excess = self._finished - _KEEP_FINISHED
        if excess <= 0:
            return
        # the oldest finished tasks come first: stop as soon as enough were found
        victims = []
        for key, task in self._tasks.items():
            if task.done:
                victims.append(key)
                if len(victims) == excess:
                    break
        for key in victims:
            del self._tasks[key]
            self._last_notice.pop(key, None)
        self._finished -= len(victims)

    # -- the tick (loop thread, or a test) ----------------------------------------------------
    def tick(self) -> bool:
        """Evaluate thresholds of running tasks; return whether any task is still running.

        Also settles loops pending for too long, and lets the ``track()`` loops and live
        tqdm bars in running cells and blocks that count nothing themselves feed their
        progress.
        """
        self._release_held()
        with self._lock:
            watches = list(self._watches.values())
            ends = list(self._ends.values()) if self._ends else None
        if not watches:
            return False
        now = self.clock.monotonic()
        if ends:
            try:
                self._settle_overdue(ends, now)
            except Exception:
                log_exception("settling pending loops failed")
        if sys.modules.get("tqdm.std") is not None:  # no bar can exist without it
            fed = [w.task for w in watches if w.task.kind in _FED_KINDS and w.feeder is None]
            if fed:
                from .tqdm_feed import feed

                try:
                    feed(fed)
                except Exception:
                    log_exception("reading tqdm bars failed")
        rss = self._sample_rss(now)
        pending = self._ends
        for watch in watches:
            task = watch.task
            if task.done or task.id in pending:
                continue
            if watch.feeder is not None:
                self._read_loop(watch)
            task._sample_rate(now)
            task_rss = rss if task.rss_source is None else _own_rss(task)
            if task_rss is not None:
                task.rss = task_rss
                task.peak_rss = max(task_rss, task.peak_rss or 0)
            for due in watch.check(task_rss):
                if due.event == "timeout" and task.options.interrupt:
                    self.interrupt(task)
                    continue
                self._notify(task, due.event, due.key, due.detail)
        return True

    def _release_held(self) -> None:
        """Quiet hours are over: hand the digest of the notices held during them to the loop."""
        due = self.dispatcher.release_at
        if due is None or self._closed or self.clock.time() < due:
            return
        future = self.ticker.submit(self.dispatcher.release_due(self.config))
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

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
        try:
            notice = make_notice(event, task.snapshot(), created=self.clock.time(), key=key,
                                 detail=detail)
        except Exception:  # a notice that cannot be made is logged, never raised
            log_exception(f"making the {event} notice of a task failed")
            return
        self.send(notice, options)

    def send(self, notice: Notice, options: TaskOptions | None = None) -> None:
        """Hand ``notice`` to the loop thread for delivery (returns at once)."""
        if self._closed:
            return
        self._last_notice[notice.task.id] = notice.title
        coro = self._dispatch(notice, options or TaskOptions(), self.config)
        with self._backlog:
            self._queued += 1
            over = self._queued > MAX_QUEUED
        try:
            future = self.ticker.submit(coro)
        except Exception:  # no loop thread (threads exhausted): never the user's problem
            coro.close()
            self._taken()
            log_exception("handing a notice to the loop thread failed")
            return
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)
        self.history_recorder.watch(notice, future)
        if over and not self.ticker.in_loop_thread():
            self._catch_up()

    async def _dispatch(self, notice: Notice, options: TaskOptions, config: Config) -> None:
        self._taken()
        await self.dispatcher.dispatch(notice, options, config)

    def _taken(self) -> None:
        """The loop thread took up a notice handed to it (or it was never handed over)."""
        with self._backlog:
            self._queued -= 1
            if self._queued <= RESUME_QUEUED:
                self._backlog.notify_all()

    def _catch_up(self) -> None:
        """Wait for the loop thread to take up the notices queued for it, down to
        :data:`RESUME_QUEUED` (for :data:`CATCH_UP_WAIT` seconds at most): a flood of short
        tasks that each notify runs at the pace of delivery, not growing memory without
        bound. Waiting is for this process's own loop thread, never for a channel."""
        with self._backlog:
            self._backlog.wait_for(lambda: self._queued <= RESUME_QUEUED, CATCH_UP_WAIT)

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

        future = self.ticker.submit(
            self.dispatcher.availability(names, refresh=refresh, config=self.config)
        )
        try:
            return future.result(timeout=self.config.send_timeout + 5)
        except concurrent.futures.TimeoutError:
            from ..channels import display_name

            return {display_name(name): "unavailable: no answer in time" for name in names}

    def test(self, channels: Iterable[str] | None = None, timeout: float = 15.0, *,
             notice_id: str | None = None) -> dict[str, str]:  # fmt: skip
        """Send a test notice (with id ``notice_id``, default a fresh one) to each channel;
        ``{name: "delivered" | why not}``."""
        names = tuple(channels) if channels is not None else self.config.channels
        task = Task("nbremind test", clock=self.clock, kind="test", source=self.source,
                    host=self.host)
        task._start()
        task._finish(TaskState.SUCCEEDED)
        snap = task.snapshot()
        notice = Notice(
            id=notice_id or f"{task.id}:test:{self.clock.time()}",
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
        from ..core.urls import display_name  # a URL's secrets are masked in the results

        results = {display_name(name): "no answer in time" for name in names}
        # a channel that answered in time is told even when another did not: read what was
        # recorded so far, not only what dispatch() returns once every channel answered
        for delivery in list(self.dispatcher.deliveries)[before:]:
            if delivery.notice_id == notice.id:
                results[delivery.channel] = "delivered" if delivery.ok else delivery.error
        return results

    # -- the kernel-death watchdog -------------------------------------------------------------
    def want_watchdog(self) -> None:
        """Start this process's watchdog (once, on the loop thread): if the process dies while
        tasks run, they are recorded failed and notified. Never raises."""
        if self._watchdog_wanted or self._closed:
            return
        self._watchdog_wanted = True
        try:
            self.ticker.call_soon(self._start_watchdog)
        except Exception:
            log_exception("starting the watchdog failed")

    def _start_watchdog(self) -> None:
        if self._closed or self._watchdog is not None:
            return
        try:
            from ..settings.files import user_config_dir
            from ..store.outbox import data_dir
            from .watchdog_link import start_watchdog

            self._watchdog = start_watchdog(
                data_dir(self.config.data_dir), user_config_dir(), self.explicit_settings
            )
        except Exception:
            log_exception("starting the watchdog failed")

    @property
    def watchdog_pid(self) -> int | None:
        """The pid of this process's watchdog, once it was started."""
        handle = self._watchdog
        return None if handle is None else int(handle.pid)

    # -- the durable outbox -----------------------------------------------------------------
    @property
    def outbox(self) -> Outbox | None:
        """Where notices wait until delivered, opened on first use (again when ``outbox`` or
        ``data_dir`` change); ``None`` when turned off or unusable (delivery is in memory)."""
        if not self.config.outbox:
            return None
        # a forked child opens its own (a SQLite connection must not cross a fork)
        key = (self.config.data_dir, os.environ.get("NBREMIND_DATA_DIR"), os.getpid())
        with self._outbox_lock:
            held = self._outbox
            if held is not None and held[0] == key:
                return held[1]
            if self._closed:
                return None
            from ..store.outbox import open_outbox

            self._outbox = (key, open_outbox(self.config, self.clock))
            if held is not None and held[1] is not None and held[0][2] == key[2]:
                held[1].close()
            return self._outbox[1]

    def replay_outbox(self) -> concurrent.futures.Future[None] | None:
        """Deliver what ended processes left undelivered in the outbox (see
        :mod:`nbremind.delivery.replay`). Runs once per session, when its loop thread starts."""
        with self._lock:
            if self._replayed or self._closed or not self.config.outbox:
                return None
            self._replayed = True
            future = self.ticker.submit(self._replay())
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _loop_started(self) -> None:
        self.ticker.call_soon(self._warm_up)
        self.replay_outbox()

    def _warm_up(self) -> None:
        """Open the history file and import what the loop thread needs, first thing.

        Done lazily in the middle of busy user code instead, each file read of an import
        gives the GIL away and waits up to a switch interval to get it back: seconds during
        which the loop thread delivers and refreshes nothing.
        """
        if not self.config.outbox or not self.config.history_keep:
            return
        try:
            import psutil  # noqa: F401  (process identity of history rows, memory sampling)

            _ = self.history_recorder.history
        except Exception:
            log_exception("preparing the loop thread failed")

    async def _replay(self) -> None:
        outbox = self.outbox
        if outbox is not None:
            from ..delivery.replay import deliver_leftovers

            self.last_replay = await deliver_leftovers(outbox, self.dispatcher, self.config)

    def _already_sent(self, notice_id: str) -> bool:
        """Whether the outbox says ``notice_id`` was delivered (by this or an earlier
        process): the de-duplication rule asks."""
        outbox = self.outbox
        return outbox is not None and outbox.delivered(notice_id)

    # -- shutdown ---------------------------------------------------------------------------
    def _say_left_pending(self, limit: float) -> None:
        with self._lock:
            count = len(self._pending)
        where = ("left pending in the outbox for the next nbremind process"
                 if self.config.outbox else "lost: the outbox is off")
        import logging

        logging.getLogger("nbremind").warning(
            "nbremind: %d notice%s not delivered within exit_timeout (%g s); %s",
            count, "" if count == 1 else "s", limit, where)

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is pending, then stop the loop thread; all within ``timeout``
        seconds (default: the ``exit_timeout`` setting), whatever the channels do.

        A delivery still running or waiting to retry when time is up stays ``pending`` in
        the outbox, and the next nbremind process delivers it.
        """
        if self._closed:
            return
        limit = self.config.exit_timeout if timeout is None else timeout
        deadline = time.monotonic() + max(limit, 0.0)

        def left(most: float | None = None) -> float:
            rest = max(deadline - time.monotonic(), 0.0)
            return rest if most is None else min(rest, most)

        self.dispatcher.deadline = deadline
        if self.settings is not None:
            self.settings.stop()
        if self._ends:  # no more evidence will come: the last uncaught exception, or none
            last = last_exception()
            with self._lock:
                records = list(self._ends.values())
            for record in sorted(records, key=lambda r: _depth(r.task), reverse=True):
                self._settle(record, last)
        hooks.release(self)
        if self.ticker.running:
            self.history_recorder.sync(left(1.0))  # the last starts and ends, written now
            if not self.flush(left()):
                self._say_left_pending(limit)
            with contextlib.suppress(Exception):
                self.ticker.submit(self.dispatcher.close()).result(left(1.0))
            self.ticker.stop(left())
        self._closed = True
        if self._watchdog is not None:  # a clean exit: the watchdog leaves silently
            self._watchdog.stop()
        with self._outbox_lock:
            held, self._outbox = self._outbox, None
        if held is not None and held[1] is not None and held[0][2] == os.getpid():
            held[1].close()
        self.history_recorder.close()


def _own_rss(task: Task) -> int | None:
    """The memory a task measures itself (a command's process tree), or ``None``."""
    try:
        return task.rss_source() if task.rss_source is not None else None
    except Exception:
        return None


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
                from ..settings.live import follow  # settings files and NBREMIND_* variables

                follow(_session)
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


def configure(**values: Any) -> None:
    """Override settings for this process, e.g. ``configure(channels=["desktop"])``; a bad key
    or value raises ``ValueError``. ``nbremind.get_session().config`` holds the result."""
    get_session().configure(**values)


register_registry(Registry(lambda: get_session().config.channel_defs))
