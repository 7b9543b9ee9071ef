"""The session: one process's tasks, settings, ticker thread and dispatcher, wired together.

Data flows one way: task events -> session -> loop thread -> dispatcher -> channels. The
session is a façade over parts that each get only what they need: :mod:`.tracker` (tasks),
:mod:`.loop_ends`, :mod:`.notifier`, :mod:`.outbox_link`, :mod:`.watchdog_link`,
:mod:`.run_recorder` and :mod:`.sampling`.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..core.channel_names import register_registry
from ..core.clock import Clock, SystemClock
from ..core.config import Config
from ..core.log import log_exception
from ..core.options import TaskOptions
from ..core.sources import openers
from ..core.task import Task, TaskState
from .channel_check import ChannelBuilder, Registry

if TYPE_CHECKING:
    import concurrent.futures

    from ..channels import Channel
    from ..core.notice import Notice
    from ..core.thresholds import Due
    from ..settings.live import LiveSettings
    from ..store.outbox import Outbox, Replay
    from .memory_guard import MemoryGuard
    from .tracker import Token

__all__ = ["Session", "configure", "get_session", "set_session"]

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
        import socket  # these, asyncio and the channel registry load here, not at import

        from ..core.ticker import Ticker
        from ..delivery.dispatcher import Dispatcher
        from .loop_ends import LoopEnds
        from .notifier import Notifier
        from .outbox_link import OutboxLink
        from .run_recorder import HistoryRecorder
        from .sampling import ProcessSampler
        from .tracker import END_EVENT, Tracker, script_name
        from .watchdog_link import WatchdogLink

        self._end_event = END_EVENT
        self.host = socket.gethostname()
        self.source = script_name()
        #: ``(notebook, cell id)`` of the notebook cell running now (set by the IPython
        #: front end for the length of each cell): where a task started in no other task
        #: comes from, carried by its notices.
        self.origin: tuple[str | None, str | None] | None = None
        self._closed = False
        self._defaults_of: tuple[Config, dict[str, object]] | None = None
        #: What openers opened for running tasks (a Dask span): ``{task id: [close, ...]}``.
        self._opened: dict[str, list[Callable[[], None]]] = {}
        config_now, closed = (lambda: self.config), (lambda: self._closed)
        self.dispatcher = Dispatcher(
            channels=dict(channels or {}),
            clock=self.clock,
            make_channel=ChannelBuilder(lambda: self.toast_actions),
        )
        from .toast_actions import SessionToastActions

        #: What a desktop toast's click and buttons do (see :mod:`.toast_actions`).
        self.toast_actions = SessionToastActions(
            lambda: self.tracker.tasks(), self.dispatcher.rule_state, self.clock.time, config_now
        )
        default = tick_interval is _DEFAULT_INTERVAL
        self.ticker = Ticker(self.tick, self.config.tick_interval if default else tick_interval)
        #: Writes every task's start and end to the run history, on the loop thread.
        self.history_recorder = HistoryRecorder(
            self.ticker,
            self.clock,
            config=config_now,
            closed=closed,
        )
        #: Turns task events into notices and hands them to the loop thread.
        self.notifier = Notifier(
            self.dispatcher,
            self.ticker,
            self.clock,
            config=config_now,
            closed=closed,
            on_delivered=self.history_recorder.delivered,
        )
        #: The ``track()`` loops whose end waits for evidence.
        self.loop_ends = LoopEnds(
            self.clock,
            end_task=lambda task, exc, end: self.tracker.end(task, exc, end),
            tasks=lambda: self.tracker.tasks(),
            closed=closed,
            wake=self._wake,
        )
        #: The tasks: running, finished, and the current one of each context.
        self.tracker = Tracker(
            self.clock,
            origin=lambda: (self.source, self.host),
            is_pending=self.loop_ends.holds,
            settle_inside=self.loop_ends.settle_inside,  # asked at every end: no lambda
            on_end=self._ended,
            on_forget=self.notifier.forget,
        )
        #: The durable outbox and the replay of what ended processes left in it.
        self.outbox_link = OutboxLink(
            self.dispatcher,
            self.ticker,
            self.clock,
            config=config_now,
            closed=closed,
            hold=self.notifier.hold,
            prepare=lambda: self.history_recorder.history,
        )
        #: The kernel-death watchdog of this process, once wanted (see :mod:`.watchdog_link`).
        self.watchdog = WatchdogLink(
            self.ticker, config=config_now, closed=closed, settings=lambda: self.explicit_settings
        )
        #: This process's memory, read by the tick at most once a second.
        self.sampler = ProcessSampler()
        from .readings import TickReadings

        #: What the tick measures for ``mem_limit``, ``gpu_mem`` and ``stall`` (the memory
        #: limit that applies here, the GPUs), read only when a running task asks.
        self.readings = TickReadings()
        self._guard: MemoryGuard | None = None  # (made at the first task with a mem_limit)
        #: Where each non-default setting came from (``configure()``, ``%remind mute``, ...).
        self.config_sources: dict[str, str] = {}
        #: Values given to :meth:`configure`, kept over settings files when they are reloaded.
        self.explicit_settings: dict[str, Any] = {}
        #: The settings files and environment this session follows (the default session's).
        self.settings: LiveSettings | None = None
        #: Called on the loop thread at each tick, before the thresholds are checked (a
        #: front end's batch, see :mod:`.batch`); each must return quickly and not raise.
        self.tick_hooks: list[Callable[[], None]] = []
        from .input_wait import InputWatch

        #: The tasks waiting in ``input()`` / ``getpass()``, and their ``input`` notices.
        self.input_watch = InputWatch(
            self.clock,
            current=self.tracker.current,
            wait=lambda: self.config.input_wait,
            notify=self.notifier.notify,
        )
        self.tick_hooks.append(self.input_watch.tick)

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
        return self.tracker.new_task(name, options, total, kind, parent)

    def current(self) -> Task | None:
        """The innermost running task of this context (or the running cell's task)."""
        return self.tracker.current()

    @property
    def fallback_parent(self) -> Task | None:
        """The parent of tasks started where no task is current (the running cell's task)."""
        return self.tracker.fallback_parent

    @fallback_parent.setter
    def fallback_parent(self, task: Task | None) -> None:
        self.tracker.fallback_parent = task

    def start(self, task: Task) -> Token:
        """Mark ``task`` running, make it current and begin watching its thresholds (a task
        in no other task takes the settings that default its options: ``stall``, ...)."""
        parent = task.parent
        top = parent is None or parent.done
        if top and self._option_defaults():
            self._take_defaults(task)
        token = self.tracker.start(task)
        self._started(task, top)
        if task.kind in _OPENED_KINDS:
            self._open(task)
        return token

    def _open(self, task: Task) -> None:
        """Open, for ``task``, what the engines the user's code imported open for a cell or
        block (a Dask span while a client is active; see :func:`.sources.register_opener`)."""
        closers = []
        for opener in openers():
            try:
                close = opener(task, self)
            except Exception:  # nbremind's trouble must not stop the user's code
                log_exception(f"opening for {task.name!r} failed")
                continue
            if close is not None:
                closers.append(close)
        if closers:
            self._opened[task.id] = closers

    def _close(self, task: Task) -> None:
        """Close what :meth:`_open` opened for ``task`` (innermost first); never raises."""
        closers = self._opened.pop(task.id, None)
        for close in reversed(closers or ()):
            try:
                close()
            except Exception:
                log_exception(f"closing for {task.name!r} failed")

    def _option_defaults(self) -> dict[str, object]:
        """The settings that default task options, ``{keyword: value}`` of those set."""
        config = self.config
        known = self._defaults_of
        if known is None or known[0] is not config:
            from ..core.config import TASK_DEFAULTS

            values = {name: getattr(config, name) for name in TASK_DEFAULTS}
            known = self._defaults_of = (config, {k: v for k, v in values.items() if v is not None})
        return known[1]

    def with_option_defaults(self, options: TaskOptions) -> TaskOptions:
        """``options`` with the settings that default task options (``stall``, ``mem_limit``,
        ...) where it leaves them unset: what a task in no other task starts with."""
        from ..core.options import with_defaults

        defaults = self._option_defaults()
        return with_defaults(options, defaults) if defaults else options

    def _take_defaults(self, task: Task) -> None:
        from ..core.options import with_defaults

        defaults = self._option_defaults()
        options = task.options
        merged = with_defaults(options, defaults)
        if merged is not options:
            task.defaulted = frozenset(k for k in defaults if getattr(options, k) is None)
            task.options = merged

    def start_detached(self, task: Task) -> None:
        """Start ``task`` in no other task without making it current: it is no task's
        parent (a batch of cells, see :mod:`.batch`). End it with :meth:`finish`."""
        task.parent = None
        token = self.tracker.start(task)
        self.tracker.reset(task, token)
        self._started(task, True)

    def start_aside(self, task: Task) -> None:
        """Start ``task`` in its parent (if any) without making it current: work followed
        from other threads (a cluster's futures, see ``nbremind.integrations``), whose code
        goes on meanwhile. End it with :meth:`finish` (from any thread)."""
        parent = task.parent
        top = parent is None or parent.done
        if top and self._option_defaults():
            self._take_defaults(task)
        token = self.tracker.start(task)
        self.tracker.reset(task, token)
        self._started(task, top)

    def start_loop(
        self,
        name: str,
        options: TaskOptions,
        total: int | None,
        consumer: FrameType,
        count: Callable[[], int] | None = None,
    ) -> tuple[Task, Token]:
        """For ``track()``: make a task of kind ``"loop"`` in the current task and start it
        (as :meth:`start`); return it and its token for :meth:`end_loop`.

        Nested in a task, with ``options.on`` not given, it notifies only the thresholds
        its options set (its end is the enclosing task's to report). ``consumer`` is the
        frame iterating the loop; ``count``, if given, what ``n`` is read from.
        """
        if self._option_defaults() and self.tracker.current() is None:
            from ..core.options import with_defaults

            merged = with_defaults(options, self._option_defaults())
            if merged is not options:
                task, token = self.tracker.start_loop(name, merged, total, consumer, count)
                task.defaulted = frozenset(
                    k for k in self._option_defaults() if getattr(options, k) is None
                )
                self._started(task, True)
                return task, token
        task, token = self.tracker.start_loop(name, options, total, consumer, count)
        self._started(task, task.parent is None)  # (a parent is the running task)
        return task, token

    def end_loop(self, task: Task, token: Token | None) -> None:
        """For ``track()``: the loop ``task`` ended without an exception (exhausted, left by
        ``break`` or ``return``): keep its last count, make its parent current again and
        end it succeeded; never raises."""
        try:
            self.tracker.end_loop(task, token)
        except Exception:  # a bug of ours must not change how the user's code ends
            log_exception("ending a task failed")

    def _started(self, task: Task, top: bool) -> None:
        """``task`` started (``top``: in no running task): tell the notifier, the history
        and, at the top, the watchdog and the ticker (and it takes :attr:`origin`)."""
        if top and self.origin is not None and task.cell_id is None:
            task.notebook, task.cell_id = self.origin
        if task.options.on != ():  # on=[] (a loop inside a task): it notifies nothing
            self.notifier.notify(task, "start")
        self.history_recorder.started(task)
        if task.options.mem_limit is not None:
            self.memory_guard.watch(task)
        if top:
            # a task inside a running one: its start already woke the ticker (and wanted
            # the watchdog); a loop per file pays for neither again
            self.watchdog.task_started()
            self._wake()

    @property
    def memory_guard(self) -> MemoryGuard:
        """The thread that judges running tasks' ``mem_limit`` between ticks (see
        :mod:`.memory_guard`), made at first use."""
        guard = self._guard
        if guard is None:
            from .memory_guard import MemoryGuard
            from .tracker import stop_for_memory

            readings = self.readings
            guard = self._guard = MemoryGuard(
                readings.memory_scope, stop_for_memory, known=lambda: readings.scope
            )
        return guard

    def finish(
        self,
        task: Task,
        exc: BaseException | None = None,
        token: Token | None = None,
        *,
        end: tuple[float, float] | None = None,
    ) -> TaskState:
        """End ``task`` with the state ``exc`` implies, and notify; never raises. Pending
        ``track()`` loops inside it are settled first (failed if ``exc`` came out of them).
        ``end``: ``(monotonic, wall)`` when it ended, if before now."""
        try:
            if self._opened:
                self._close(task)
            self.tracker.reset(task, token)
            return self.tracker.end(task, exc, end)
        except Exception:  # a bug of ours must not change how the user's code ends
            log_exception("ending a task failed")
            return task.state

    def leave(self, task: Task, token: Token | None) -> None:
        """Make ``task``'s parent current again, if ``task`` still is (``track()``; a block
        whose task goes on after it): what was opened for it is closed."""
        if self._opened:
            self._close(task)
        self.tracker.leave(task, token)

    def end_pending(self, task: Task, frame: FrameType | None, token: Token | None = None) -> None:
        """For ``track()``: the loop ``task`` stopped (``frame`` closed it) where an exception
        may be on its way up: settle it later (see :meth:`settle_pending`)."""
        self.tracker.leave(task, token)
        self.loop_ends.defer(task, frame)

    def pending(self) -> list[Task]:
        """Loops that stopped and wait for evidence of how (see :meth:`settle_pending`)."""
        return self.loop_ends.tasks()

    def settle_pending(self, exc: BaseException | None = None, *, all_threads: bool = False) -> int:
        """End the pending loops of the calling thread now, knowing what escaped: ``exc``
        (``None``: nothing); returns how many were ended, never raises. See
        :meth:`.loop_ends.LoopEnds.settle_pending`."""
        return self.loop_ends.settle_pending(exc, all_threads)

    def tasks(self) -> list[Task]:
        """Every task this session knows, oldest first (finished ones are trimmed)."""
        return self.tracker.tasks()

    def running(self) -> list[Task]:
        """Tasks still running."""
        return [t for t in self.tasks() if not t.done]

    def last_notice(self, task: Task) -> str | None:
        """The title of the last notice sent about ``task``."""
        return self.notifier.last_notice(task.id)

    def tick(self) -> bool:
        """Evaluate thresholds of running tasks; return whether any task is still running.
        Also settles loops pending for too long, and lets ``track()`` loops and tqdm bars
        feed the progress of the cells and blocks they run in."""
        self.notifier.release_held()
        for hook in tuple(self.tick_hooks):
            try:
                hook()
            except Exception:
                log_exception("a tick hook failed")
        watches = self.tracker.watches()
        if not watches:
            return False
        now = self.clock.monotonic()
        self.loop_ends.settle_overdue(now)
        self.tracker.feed_bars(watches)
        readings = self.readings
        readings.new_tick(now)
        self.tracker.check(watches, now, self.sampler.rss(now), self._due, readings)
        self.history_recorder.running_long(watch.task for watch in watches)
        return True

    def interrupt(self, task: Task) -> None:
        """Stop ``task`` where it runs: KeyboardInterrupt on the main thread, else TaskTimeout."""
        from .tracker import interrupt

        interrupt(task)

    def send(self, notice: Notice, options: TaskOptions | None = None) -> None:
        """Hand ``notice`` to the loop thread for delivery (returns at once)."""
        self.notifier.send(notice, options)

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every notice handed over so far was delivered or failed."""
        return self.notifier.flush(timeout)

    def channel_status(
        self, names: Iterable[str] | None = None, refresh: bool = False
    ) -> dict[str, str]:
        """``{name: "available" | "unavailable: why"}`` for the configured (or named) channels."""
        return self.notifier.channel_status(names, refresh)

    def channel_notes(self) -> list[str]:
        """``"<channel>: <note>"`` for what channels checked so far say beyond their
        availability (``desktop: this notification server shows no buttons``)."""
        from .channel_check import channel_notes

        return channel_notes(self.dispatcher.channels)

    def test(
        self,
        channels: Iterable[str] | None = None,
        timeout: float = 15.0,
        *,
        notice_id: str | None = None,
    ) -> dict[str, str]:
        """Send a test notice (id ``notice_id``) to each channel; ``{name: "delivered" | why}``."""
        return self.notifier.test(channels, timeout, notice_id, self.source, self.host)

    def want_watchdog(self) -> None:
        """Start this process's watchdog (once): if the process dies, its tasks are failed."""
        self.watchdog.want()

    @property
    def watchdog_pid(self) -> int | None:
        """The pid of this process's watchdog, once it was started."""
        return self.watchdog.pid

    @property
    def outbox(self) -> Outbox | None:
        """Where notices wait until delivered (opened on first use); ``None``: in memory only."""
        return self.outbox_link.outbox

    @property
    def last_replay(self) -> Replay | None:
        """What the last look for notices left by ended processes found."""
        return self.outbox_link.last_replay

    def replay_outbox(self) -> concurrent.futures.Future[None] | None:
        """Deliver what ended processes left undelivered in the outbox, once per session
        (when its loop thread starts; see :mod:`nbremind.delivery.replay`)."""
        return self.outbox_link.replay()

    def close(self, timeout: float | None = None) -> None:
        """Deliver what is pending, then stop the loop thread; all within ``timeout``
        seconds (default: the ``exit_timeout`` setting), whatever the channels do. What is
        not delivered by then stays ``pending`` in the outbox for the next nbremind process.
        """
        if self._closed:
            return
        limit = self.config.exit_timeout if timeout is None else timeout
        deadline = self.dispatcher.deadline = time.monotonic() + max(limit, 0.0)

        def left(most: float = float("inf")) -> float:
            return min(max(deadline - time.monotonic(), 0.0), most)

        if self.settings is not None:
            self.settings.stop(0)  # asked now, waited for last: it stops while we deliver
        self.loop_ends.settle_all()  # no more evidence will come
        if self.ticker.running:
            self.history_recorder.sync(left(1.0))  # the last starts and ends, written now
            if not self.flush(left()):
                self.notifier.say_left_pending(limit, self.config.outbox)
            self.notifier.close(left(1.0))
            self.ticker.stop(left())
        self._closed = True
        if self._guard is not None:
            self._guard.stop()
        self.readings.close()
        self.watchdog.stop()  # a clean exit: the watchdog leaves silently
        self.outbox_link.close()
        self.history_recorder.close()
        if self.settings is not None:
            self.settings.stop()

    def _ended(self, task: Task, state: TaskState) -> None:
        snapshot = None
        if task.options.on != ():
            snapshot = self.notifier.notify(task, self._end_event[state], "end")
        self.history_recorder.ended(task, snapshot)  # its row from the same snapshot

    def _due(self, task: Task, due: Due) -> None:
        event = due.event
        if event == "timeout" and task.options.interrupt:
            self.interrupt(task)
        elif event == "mem_limit":
            self._stop_for_memory(task, due)
        else:
            self.notifier.notify(task, due.event, due.key, due.detail)

    def _stop_for_memory(self, task: Task, due: Due) -> None:
        """``mem_limit`` passed: stop the task (its end notice says why); a second due means
        it still runs, stuck where the exception cannot reach it."""
        from .memory_guard import memory_limit_reason
        from .tracker import signal_stuck, stop_for_memory

        if due.key == "signal":
            signal_stuck(task)
            return
        detail: tuple[int, int, str] = due.detail  # type: ignore[assignment]
        stop_for_memory(task, memory_limit_reason(*detail))

    def _wake(self) -> None:
        if self.ticker.interval:
            self.ticker.wake()


#: Kinds of task for which :meth:`Session.start` asks the openers (a Dask span).
_OPENED_KINDS = frozenset(("block", "function", "cell", "auto"))
_session: Session | None = None
_session_lock = threading.Lock()


def get_session() -> Session:
    """The process's session, made on first use (closed at interpreter exit)."""
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                _session = Session()
                from ..settings.live import WATCH_DELAY, follow  # files, NBREMIND_* variables

                follow(_session, delay=WATCH_DELAY)  # a short script never starts watching
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
