"""The task registry of a session: which tasks run and which ended, which is current in
each context, and how a task's end is told (its state, its last counts)."""

from __future__ import annotations

import _thread
import collections
import contextlib
import contextvars
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core.log import log_exception
from ..core.task import Task, TaskError, TaskMemoryLimit, TaskState, TaskTimeout
from ..core.thresholds import Watch, never_applied, unapplied

if TYPE_CHECKING:
    import asyncio
    from types import FrameType

    from ..core.clock import Clock
    from ..core.options import TaskOptions
    from ..core.thresholds import Due, Readings

__all__ = [
    "END_EVENT",
    "FED_KINDS",
    "KEEP_FINISHED",
    "Token",
    "Tracker",
    "hold_stops",
    "interrupt",
    "script_name",
    "signal_stuck",
    "state_for",
    "stop_for_memory",
]

Token = contextvars.Token["Task | None"]
#: The event each final state notifies.
END_EVENT = {
    TaskState.SUCCEEDED: "success",
    TaskState.FAILED: "failure",
    TaskState.CANCELLED: "cancel",
    TaskState.TIMED_OUT: "timeout",
}
#: Finished tasks kept (the oldest are forgotten first, a few dozen at a time).
KEEP_FINISHED = 200
_TRIM_BATCH = 50
_TRIM_AT = KEEP_FINISHED + _TRIM_BATCH
#: Kinds of task a tqdm bar, or a ``track()`` loop running directly in it, may feed (they
#: have no loop of their own to count).
FED_KINDS = frozenset({"cell", "auto", "block", "function"})
_SUCCEEDED, _TIMED_OUT = TaskState.SUCCEEDED, TaskState.TIMED_OUT
#: Makes an object without calling its class: ``_bare(Task)`` then ``Task.__init__(task,
#: ...)`` is ``Task(...)`` without the dict CPython 3.11 builds for the keywords of a class
#: call (a third of the cost of making a task, and a loop per file makes one per loop).
_bare = object.__new__


class Tracker:
    """The tasks of one session, oldest first, and the current one of each context.

    ``origin()`` gives the ``(source, host)`` of new tasks; ``is_pending(task_id)`` tells a
    ``track()`` loop whose end is pending; ``settle_inside`` settles those under a task that
    ends; ``on_end(task, state)`` is told each end, ``on_forget(task_id)`` each finished task
    trimmed that could notify (``on`` not ``[]``).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        origin: Callable[[], tuple[str, str]],
        is_pending: Callable[[str], bool],
        settle_inside: Callable[[Task, BaseException | None], None],
        on_end: Callable[[Task, TaskState], None],
        on_forget: Callable[[str], None],
    ) -> None:
        self.clock = clock
        self._origin = origin
        self._is_pending = is_pending
        self._settle_inside = settle_inside
        self._on_end = on_end
        self._on_forget = on_forget
        self._lock = threading.RLock()
        self._tasks: dict[str, Task] = {}
        #: The watch of each running task; a loop's is made by the first tick it is running
        #: at (until then the loop itself: most loops in a task end within a tick).
        self._watches: dict[str, Watch | Task] = {}
        #: Ids of the finished tasks in ``_tasks``, in the order they ended.
        self._finished: collections.deque[str] = collections.deque()
        self._current: contextvars.ContextVar[Task | None] = contextvars.ContextVar(
            "nbremind_current_task", default=None
        )
        #: The parent of tasks started where no task is current (the running cell's task).
        self.fallback_parent: Task | None = None

    def new_task(
        self,
        name: str,
        options: TaskOptions | None,
        total: int | None,
        kind: str,
        parent: Task | None,
    ) -> Task:
        """Make (but do not start) a task whose parent is ``parent`` or the current task."""
        source, host = self._origin()
        if parent is None:
            parent = self.current()
        return Task(
            name,
            clock=self.clock,
            options=options,
            total=total,
            kind=kind,
            parent=parent,
            source=source,
            host=host,
        )

    def start_loop(
        self,
        name: str,
        options: TaskOptions,
        total: int | None,
        consumer: FrameType,
        count: Callable[[], int] | None,
    ) -> tuple[Task, Token]:
        """Make a task of kind ``"loop"`` in the current task and :meth:`start` it (see
        :meth:`Session.start_loop <nbremind.Session.start_loop>`)."""
        parent = self.current()
        if parent is not None and options.on is None:
            options = options.thresholds_only()  # its end is the enclosing task's to report
        source, host = self._origin()
        task = _bare(Task)  # Task(...), minus the dict of keywords a class call builds
        Task.__init__(
            task,
            name,
            clock=self.clock,
            options=options,
            total=total,
            kind="loop",
            parent=parent,
            source=source,
            host=host,
        )
        task.consumer = (id(consumer), consumer.f_code)
        if count is not None:
            task.count_from(count)
        return task, self.start(task)

    def end_loop(self, task: Task, token: Token | None) -> None:
        """The loop ``task`` ended without an exception: keep its last count, make its
        parent current again (:meth:`leave`) and :meth:`end` it."""
        task.settle_n()
        if token is not None and self._current.get() is task:  # (what leave() does)
            try:  # noqa: SIM105 -- contextlib.suppress() makes an object per loop's end
                self._current.reset(token)
            except ValueError:  # closed from another context: leave it
                pass
        self.end(task, None)

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

    def start(self, task: Task) -> Token:
        """Mark ``task`` running, register it, watch its thresholds and make it current."""
        task.mark_started()
        running_loop = _get_running_loop or _running_loop()
        if running_loop is not None:
            task.loop = running_loop()
        key = task.id
        with self._lock:
            self._tasks[key] = task
            self._watches[key] = task if task.kind == "loop" else Watch(task)
            if len(self._finished) >= _TRIM_AT:
                self._trim()
            parent = task.parent
            if parent is not None and task.kind == "loop" and parent.kind in FED_KINDS:
                self._offer_loop(task)
        return self._current.set(task)

    def reset(self, task: Task, token: Token | None) -> None:
        """``task`` ends: make what was current before it current again."""
        if token is not None:
            try:
                self._current.reset(token)
            except ValueError:  # reset from another context (async generators, hooks)
                self._current.set(task.parent)

    def leave(self, task: Task, token: Token | None) -> None:
        """Make ``task``'s parent current again, if ``task`` is still the current one.

        A loop can end out of order (its parent ended it first; two loops zipped together);
        resetting its token then would bring back a task that is no longer current.
        """
        if token is not None and self._current.get() is task:
            try:  # noqa: SIM105 -- contextlib.suppress() makes an object per loop's end
                self._current.reset(token)
            except ValueError:  # closed from another context: leave it
                pass

    def end(
        self, task: Task, exc: BaseException | None, end: tuple[float, float] | None = None
    ) -> TaskState:
        """End ``task`` with the state ``exc`` implies (``end``: when it stopped, if before
        now), after the pending loops under it; tell ``on_end``."""
        if task.done:
            return task.state
        if task.options.mem_limit is not None:
            hold_stops(task)  # first: what the guard decided now must not land after the end
        self._settle_inside(task, exc)
        if task.kind in FED_KINDS:  # (only those have a loop feeding them)
            watch = self._watches.get(task.id)
            if isinstance(watch, Watch) and watch.feeder is not None:
                self._read_loop(watch)  # the loop that fed it, for the last time
        if task.tqdm_feed is not None:
            from .tqdm_feed import final_read

            final_read(task)
        error = None
        if task.stopped_by is not None:  # stopped by nbremind (mem_limit): failed, and why
            state = TaskState.FAILED
            error = TaskError.from_exception(task.stopped_by)
        elif exc is None:  # the common end, told without a call
            state = _TIMED_OUT if task.timeout_hit else _SUCCEEDED
        else:
            state = state_for(task, exc)
            if state is not _SUCCEEDED:
                error = TaskError.from_exception(exc)
        task.mark_ended(state, error, end)
        if task.options.progress:
            not_applied = never_applied(task)
            if not_applied is not None:
                task.note(not_applied)  # said on the end notice, not silently dropped
        opts = task.options
        if opts.stall is not None or opts.slower is not None:
            watch = self._watches.get(task.id)
            for line in unapplied(task, watch if isinstance(watch, Watch) else None):
                task.note(line)
        with self._lock:
            self._watches.pop(task.id, None)
            if task.id in self._tasks:
                self._finished.append(task.id)
        self._on_end(task, state)
        return state

    def tasks(self) -> list[Task]:
        """Every task known, oldest first (finished ones are trimmed)."""
        with self._lock:
            return list(self._tasks.values())

    def watches(self) -> list[Watch]:
        """The watches of the running tasks (the tick's view: a loop's is made now, at the
        first tick it runs at)."""
        with self._lock:
            watches = self._watches
            found: list[Watch] = []
            for key, watch in watches.items():
                if not isinstance(watch, Watch):  # a loop running at a tick: watched now
                    watch = watches[key] = Watch(watch)
                found.append(watch)
            return found

    def feed_bars(self, watches: list[Watch]) -> None:
        """Let live tqdm bars feed the running tasks that count nothing themselves."""
        if sys.modules.get("tqdm.std") is None:  # no bar can exist without it
            return
        fed = [w.task for w in watches if w.task.kind in FED_KINDS and w.feeder is None]
        if fed:
            from .tqdm_feed import feed

            try:
                feed(fed)
            except Exception:
                log_exception("reading tqdm bars failed")

    def check(
        self,
        watches: list[Watch],
        now: float,
        rss: int | None,
        on_due: Callable[[Task, Due], None],
        readings: Readings | None = None,
    ) -> None:
        """Tick: read each running task's progress, rate and memory (``rss``: the process's;
        ``readings``: what else the tick measures) and hand every threshold it crossed to
        ``on_due``."""
        for watch in watches:
            task = watch.task
            if task.done or self._is_pending(task.id):
                continue
            if watch.feeder is not None:
                self._read_loop(watch)
            task.sample_rate(now)
            task_rss = rss if task.rss_source is None else _own_rss(task)
            if task_rss is not None:
                task.rss = task_rss
                task.peak_rss = max(task_rss, task.peak_rss or 0)
            if readings is not None:
                gpu = readings.gpu()
                if gpu is not None:
                    task.gpu_mem, task.gpu_util = gpu.used, gpu.util
                elif task.gpu_mem is not None or task.gpu_util is not None:
                    task.gpu_mem = task.gpu_util = None  # a GPU lost: no stale figures
            for due in watch.check(task_rss, readings):
                on_due(task, due)

    # -- ``track()`` loops feeding the task they run in -----------------------------------------
    def _offer_loop(self, loop: Task) -> None:
        """``loop`` just started: let it feed the progress of the task it runs directly in
        (called holding the lock).

        Only a cell, block or function that counts nothing itself (no total, ``n == 0``, no
        tqdm bar feeding it) takes it, and only while no earlier loop in it still runs: the
        outermost loop wins, and a later loop takes over once the one before ended. The tick
        then reads the loop (:meth:`~nbremind.core.thresholds.Watch.read_feed`); the loop's
        items cost nothing more.
        """
        parent = loop.parent
        if parent is None or parent.kind not in FED_KINDS:
            return
        watch = self._watches.get(parent.id)
        if not isinstance(watch, Watch):
            return
        feeder = watch.feeder
        if feeder is None:
            if parent.total is not None or parent.n != 0 or watch.fed is not None:
                return
            if "tqdm.std" in sys.modules:  # no bar can exist without it
                from .tqdm_feed import fed_by_bar

                if fed_by_bar(parent):
                    return
        elif not feeder.done and not self._is_pending(feeder.id):
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

    def _trim(self) -> None:
        """Forget the tasks that ended first, past :data:`KEEP_FINISHED` (called holding
        the lock; a few dozen at a time)."""
        finished = self._finished
        if len(finished) - KEEP_FINISHED < _TRIM_BATCH:
            return
        tasks = self._tasks
        while len(finished) > KEEP_FINISHED:
            key = finished.popleft()
            task = tasks.pop(key, None)
            if task is not None and task.options.on != ():  # (on=[]: it never notified)
                self._on_forget(key)


_get_running_loop: Callable[[], asyncio.AbstractEventLoop | None] | None = None


def _running_loop() -> Callable[[], asyncio.AbstractEventLoop | None] | None:
    """``asyncio``'s ``_get_running_loop``, once asyncio is imported (no loop can run in a
    thread before that: it is not imported here for nothing)."""
    global _get_running_loop
    found = _get_running_loop
    if found is None:
        aio = sys.modules.get("asyncio")
        if aio is None:
            return None
        found = _get_running_loop = aio.events._get_running_loop
    return found


def interrupt(task: Task) -> None:
    """Stop ``task`` where it runs: KeyboardInterrupt on the main thread, else TaskTimeout."""
    task.interrupted_by_timeout = True
    raise_in(task, TaskTimeout)


def stop_for_memory(task: Task, reason: TaskMemoryLimit) -> None:
    """Stop ``task`` for ``reason`` (a :class:`~nbremind.core.task.TaskMemoryLimit`): its
    :attr:`~nbremind.core.task.Task.stopper` if it has one, else ``reason``'s type raised
    asynchronously in its thread, which makes it with ``reason``'s words (the kernel's reply
    then names ``TaskMemoryLimit``). See :func:`signal_stuck` for a thread that cannot be
    reached that way. Once per task: a task stopped already is left to :func:`signal_stuck`."""
    with _stops:
        if task.done or task.stops_held or task.stopped_by is not None:
            return
        task.stopped_by = reason
        stopper = task.stopper
        ident = task.thread_id
        if stopper is None and ident is not None:
            import ctypes

            TaskMemoryLimit.pending[ident] = reason
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(type(reason))
            )
    if stopper is not None:
        stopper(reason)


def hold_stops(task: Task) -> None:
    """``task`` ends: :func:`stop_for_memory` stops it no more, and the exception it raised
    into the task's thread that has not arrived yet (the task ended meanwhile) is withdrawn:
    it would land in whatever code runs next."""
    with _stops:
        task.stops_held = True
        reason, ident = task.stopped_by, task.thread_id
        if reason is None or ident is None or TaskMemoryLimit.pending.get(ident) is not reason:
            return  # (arrived: its words were taken)
        import ctypes

        # the reason stays in ``pending``: an exception that did arrive may take its words
        # only when it is caught (CPython makes the instance lazily)
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)


#: Held while a stop is decided and raised, and while a task's end holds its stops.
_stops = threading.Lock()


def signal_stuck(task: Task) -> None:
    """``task`` still runs a while after :func:`stop_for_memory`: its thread waits where an
    exception cannot reach it (a sleep, a read), or its code caught the exception. On the
    main thread the pending exception is withdrawn and a real SIGINT sent (a
    KeyboardInterrupt, which ``except Exception`` does not catch; the task still ends failed
    with its reason); in another thread the exception is raised once more."""
    reason = task.stopped_by
    if task.done or task.stopper is not None or not isinstance(reason, TaskMemoryLimit):
        return
    ident = task.thread_id
    if ident is None:
        return
    import ctypes

    with _stops:
        if task.stops_held:  # it is ending
            return
        if ident != threading.main_thread().ident:
            TaskMemoryLimit.pending[ident] = reason
            ctypes.pythonapi.PyThreadState_SetAsyncExc(
                ctypes.c_ulong(ident), ctypes.py_object(TaskMemoryLimit)
            )
            return
        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), None)
        TaskMemoryLimit.pending.pop(ident, None)
    raise_in(task, KeyboardInterrupt)


def raise_in(task: Task, error: type[BaseException]) -> None:
    """Interrupt the thread ``task`` runs in: a real SIGINT on the main thread (it wakes
    blocking calls, as a kernel's stop button does; the thread sees KeyboardInterrupt),
    ``error`` raised asynchronously in any other. Nothing when the task has ended."""
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

        ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(ident), ctypes.py_object(error))


def state_for(task: Task, exc: BaseException | None) -> TaskState:
    """The state ``task`` ends in when ``exc`` (or nothing) came out of it."""
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


def script_name() -> str:
    """The file name of the script this process runs, or ``""`` (a kernel, ``python -c``);
    for ``python -m package``, the package's name."""
    main = sys.modules.get("__main__")
    path: str | None = getattr(main, "__file__", None)
    if not path or "ipykernel" in path or path.endswith("-c"):
        return ""
    name = os.path.basename(path)
    if name == "__main__.py":
        return os.path.basename(os.path.dirname(path)) or name
    return name


def _own_rss(task: Task) -> int | None:
    """The memory a task measures itself (a command's process tree), or ``None``."""
    try:
        return task.rss_source() if task.rss_source is not None else None
    except Exception:
        return None
