"""Task events become notices, handed to the dispatcher on the loop thread.

Handing an event over returns at once: the calling thread takes a snapshot of the task and
appends it to a queue; the loop thread, woken once per batch (not once per notice), makes
the notices and dispatches them, a batch in one asyncio task (a delivery that waits keeps
that task, and the rest go on in a new one). The queue is bounded (see :data:`MAX_QUEUED`):
past the bound, a repeating event (``after``, ``memory``, ``progress``) replaces the one of
the same task and event still waiting, and any other makes the thread that hands it wait
until the loop thread has caught up (at most :data:`CATCH_UP_WAIT` seconds), then it is
dropped. Each merge and drop is counted and said in one log line per burst.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import itertools
import threading
from collections.abc import Callable, Coroutine, Generator, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple

from ..core.log import log_exception, logger
from ..core.notice import Notice, make_notice
from ..core.options import NO_OPTIONS, TaskOptions
from ..core.task import Task, TaskSnapshot, TaskState

if TYPE_CHECKING:
    from ..core.clock import Clock
    from ..core.config import Config
    from ..core.ticker import Ticker
    from ..delivery.dispatcher import Delivery, Dispatcher

__all__ = [
    "CATCH_UP_WAIT",
    "COALESCED_EVENTS",
    "MAX_QUEUED",
    "RESUME_QUEUED",
    "TAKE_DELAY",
    "Notifier",
]

#: Notices queued for the loop thread at most (see the module's docstring).
MAX_QUEUED = 1000
#: A thread waiting for room goes on once no more than this many wait.
RESUME_QUEUED = 500
#: Seconds a thread waits for room at most before the notice it hands is dropped.
CATCH_UP_WAIT = 5.0
#: Seconds the loop thread lets pass between two takes of the queue: a burst of short tasks
#: is taken up in batches, not one wake-up (and GIL hand-over) each.
TAKE_DELAY = 0.001
#: Events of which only the latest of a task is kept once the queue is full.
COALESCED_EVENTS = frozenset({"after", "memory", "progress"})
#: Titles of last notices kept at most (the tracker forgets them with their tasks; one made
#: on this thread after its task was forgotten would stay: past this, the oldest go).
_LAST_NOTICES = 2000


class _Queued(NamedTuple):
    """One notice waiting for the loop thread: made there from the event, or made already."""

    event: str
    snapshot: TaskSnapshot | None
    created: float
    key: object
    detail: object
    notice: Notice | None
    options: TaskOptions
    config: Config

    @property
    def task_id(self) -> str:
        """The id of the task the notice is about."""
        if self.notice is not None:
            return self.notice.task.id
        assert self.snapshot is not None
        return self.snapshot.id


class _Resumed:
    """Awaiting this goes on with ``coro``, a coroutine stepped by hand (in ``context``)
    that waits on ``waiting``, as if the awaiting task had run it from the start: what it
    waits on is handed to the task, and what the task throws in (a cancellation) is passed
    on."""

    __slots__ = ("context", "coro", "waiting")

    def __init__(
        self, coro: Coroutine[Any, Any, None], waiting: object, context: contextvars.Context
    ) -> None:
        self.coro = coro
        self.waiting = waiting
        self.context = context

    def __await__(self) -> Generator[Any, Any, None]:
        coro, waiting, run = self.coro, self.waiting, self.context.run
        while True:
            try:
                answer = yield waiting
            except BaseException as exc:
                try:
                    waiting = run(coro.throw, exc)
                except StopIteration:
                    return
            else:
                try:
                    waiting = run(coro.send, answer)
                except StopIteration:
                    return


class Notifier:
    """Makes the notices of task events and hands them to ``dispatcher`` on ``ticker``'s loop.

    ``config`` gives the settings in force, ``closed`` whether the session closed; each
    notice delivered goes to ``on_delivered`` with its outcomes (on the loop thread).
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        ticker: Ticker,
        clock: Clock,
        *,
        config: Callable[[], Config],
        closed: Callable[[], bool],
        on_delivered: Callable[[Notice, list[Delivery]], None],
    ) -> None:
        self.dispatcher = dispatcher
        self.ticker = ticker
        self.clock = clock
        self._config = config
        self._closed = closed
        self._on_delivered = on_delivered
        self._lock = threading.Lock()
        self._last_notice: dict[str, str] = {}
        self._pending: set[concurrent.futures.Future[Any]] = set()
        #: Notices handed over and waiting for the loop thread, oldest first.
        self._queue: list[_Queued] = []
        #: Where in the queue the latest repeating event of each task and event waits.
        self._repeating: dict[tuple[str, str], int] = {}
        self._scheduled = False  # the loop thread was asked to take the queue up
        self._last_take = float("-inf")  # loop time of the last take
        #: Notices handed over whose delivery is not finished (queued or dispatching).
        self._outstanding = 0
        self._backlog = threading.Condition(threading.Lock())
        #: Notices merged into a later one, and dropped, since the queue was last full.
        self.merged = 0
        self.dropped = 0
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def queued(self) -> int:
        """Notices handed to the loop thread that it has not taken up yet."""
        return len(self._queue)

    @property
    def in_flight(self) -> int:
        """Notices handed over whose delivery is not finished yet."""
        return self._outstanding + len(self._pending)

    def last_notice(self, task_id: str) -> str | None:
        """The title of the last notice sent about the task ``task_id``."""
        return self._last_notice.get(task_id)

    def forget(self, task_id: str) -> None:
        """The task ``task_id`` is forgotten: so is its last notice."""
        self._last_notice.pop(task_id, None)

    def notify(
        self, task: Task, event: str, key: object = 0, detail: object = None
    ) -> TaskSnapshot | None:
        """Send the notice of ``event`` about ``task``, if its options may want it; return
        the snapshot of the task it was made from (``None``: no notice)."""
        options = task.options
        config = self._config()
        if event not in options.events() and not (
            options.on is None and config.on is not None and event in config.on
        ):
            return None  # cheap early exit; the dispatcher's rules decide the rest
        if self._closed():
            return None
        try:
            snap = task.snapshot()
        except Exception:  # a notice that cannot be made is logged, never raised
            log_exception(f"making the {event} notice of a task failed")
            return None
        created = self.clock.time()
        self._hand(_Queued(event, snap, created, key, detail, None, options, config))
        return snap

    def send(self, notice: Notice, options: TaskOptions | None = None) -> None:
        """Hand ``notice`` to the loop thread for delivery (returns at once)."""
        if self._closed():
            return
        options = options or NO_OPTIONS
        item = _Queued(notice.event, None, notice.created, 0, None, notice, options, self._config())
        self._hand(item)

    # -- the queue ---------------------------------------------------------------------------------
    def _hand(self, item: _Queued) -> None:
        backlog = self._backlog
        with backlog:
            queue = self._queue
            if self._outstanding >= MAX_QUEUED and not self._make_room(item):
                return
            if item.event in COALESCED_EVENTS:
                self._repeating[(item.task_id, item.event)] = len(queue)
            queue.append(item)
            self._outstanding += 1
            wake = not self._scheduled
            self._scheduled = True
        if wake:
            try:
                self.ticker.call_soon(self._take_soon)
            except Exception:  # no loop thread (threads exhausted): never the user's problem
                with backlog:
                    self._scheduled = False
                    dropped = len(self._queue)
                    self._queue.clear()
                    self._repeating.clear()
                    self._outstanding -= dropped
                    backlog.notify_all()
                log_exception("handing a notice to the loop thread failed")

    def _make_room(self, item: _Queued) -> bool:
        """The queue is full (``_backlog`` held): merge ``item`` into the waiting notice of
        the same task and event, or wait for the loop thread; ``False``: ``item`` is merged
        or dropped (not to be queued)."""
        if item.event in COALESCED_EVENTS:
            at = self._repeating.get((item.task_id, item.event))
            if at is not None:
                self._queue[at] = item  # the latest of a repeating event says all the earlier did
                self.merged += 1
                return False
        if self.ticker.in_loop_thread():
            return True  # the loop thread itself: it cannot wait for itself; keep it
        self._backlog.wait_for(lambda: self._outstanding <= RESUME_QUEUED, CATCH_UP_WAIT)
        if self._outstanding < MAX_QUEUED:
            return True
        self.dropped += 1
        return False

    def _take_soon(self) -> None:
        """On the loop thread: take the queue up now if the last take was a while ago (a
        notice on its own goes out at once), else :data:`TAKE_DELAY` seconds from now (in
        a burst, what is handed over meanwhile comes with it, without waking this thread
        again)."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._last_take >= TAKE_DELAY:
            self._take()
        else:
            loop.call_later(TAKE_DELAY, self._take)

    def _take(self) -> None:
        """On the loop thread: take up every queued notice and start its delivery."""
        self._last_take = asyncio.get_running_loop().time()
        with self._backlog:
            items = list(self._queue)
            self._queue.clear()
            self._repeating.clear()
            self._scheduled = False
            merged, dropped = self.merged, self.dropped
            self.merged = self.dropped = 0
        if merged or dropped:
            self._say_lost(merged, dropped)
        deliveries: list[Coroutine[Any, Any, None]] = []
        for item in items:
            try:
                notice = item.notice
                if notice is None:
                    assert item.snapshot is not None
                    notice = make_notice(
                        item.event,
                        item.snapshot,
                        created=item.created,
                        key=item.key,
                        detail=item.detail,
                    )
                last = self._last_notice
                last[notice.task.id] = notice.title
                if len(last) > _LAST_NOTICES:  # made after its task was forgotten: trimmed
                    for old in list(itertools.islice(last, len(last) - _LAST_NOTICES // 2)):
                        del last[old]
            except Exception:
                self._finished()
                log_exception(f"making the {item.event} notice of a task failed")
                continue
            deliveries.append(self._deliver(notice, item.options, item.config))
        if deliveries:
            self._start(deliveries)

    def _start(self, deliveries: list[Coroutine[Any, Any, None]], first: int = 0) -> None:
        """Deliver ``deliveries`` from ``first`` on in a new task (see :meth:`_deliver_all`)."""
        task = asyncio.get_running_loop().create_task(self._deliver_all(deliveries, first))
        self._tasks.add(task)  # a task the loop holds only weakly could vanish
        task.add_done_callback(self._tasks.discard)

    async def _deliver_all(self, deliveries: list[Coroutine[Any, Any, None]], first: int) -> None:
        """Run ``deliveries`` from ``first`` on in this task, one after the other, each in a
        context of its own. Most finish without waiting (the channel takes the notice at
        once); the first that waits is finished by this task, the ones after it go on in a
        new task (one task per batch of notices, not one per notice)."""
        for at in range(first, len(deliveries)):
            delivery = deliveries[at]
            context = contextvars.copy_context()
            try:
                waiting = context.run(delivery.send, None)
            except StopIteration:
                continue  # delivered without waiting
            except BaseException:  # (_deliver catches every Exception: a cancellation, say)
                log_exception("delivering a notice failed")
                continue
            if at + 1 < len(deliveries):
                self._start(deliveries, at + 1)
            await _Resumed(delivery, waiting, context)
            return

    async def _deliver(self, notice: Notice, options: TaskOptions, config: Config) -> None:
        try:
            deliveries = await self.dispatcher.dispatch(notice, options, config)
        except Exception:
            log_exception("delivering a notice failed")
        else:
            try:
                self._on_delivered(notice, deliveries)
            except Exception:
                log_exception("recording a notice's delivery failed")
        finally:
            self._finished()

    def _finished(self) -> None:
        with self._backlog:
            self._outstanding -= 1
            left = self._outstanding
            if left == RESUME_QUEUED or left <= 0:  # what the waiters wait for: no more
                self._backlog.notify_all()

    def _say_lost(self, merged: int, dropped: int) -> None:
        parts = []
        if merged:
            parts.append(
                f"{merged} repeating notice{'' if merged == 1 else 's'} merged into a later one"
            )
        if dropped:
            parts.append(f"{dropped} notice{'' if dropped == 1 else 's'} dropped")
        logger().warning(
            "nbremind: the loop thread fell behind (%d notices waiting at most): %s",
            MAX_QUEUED,
            "; ".join(parts),
        )

    def hold(self, future: concurrent.futures.Future[Any]) -> None:
        """Count ``future`` (a delivery on the loop thread) as pending until it is done."""
        with self._lock:
            self._pending.add(future)
        future.add_done_callback(self._done)

    def release_held(self) -> None:
        """Quiet hours are over: hand the digest of the notices held during them to the loop."""
        due = self.dispatcher.release_at
        if due is None or self._closed() or self.clock.time() < due:
            return
        self.hold(self.ticker.submit(self.dispatcher.release_due(self._config())))

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until every notice handed over so far was delivered or failed."""
        with self._lock:
            pending = list(self._pending)
        if not pending and not self._outstanding and not self.dispatcher.outbox_queued:
            return True
        if self.ticker.in_loop_thread():
            return False
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        with self._backlog:
            if not self._backlog.wait_for(lambda: self._outstanding <= 0, timeout):
                return False
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        _done, not_done = concurrent.futures.wait(pending, left)
        if not_done:
            return False
        if self.dispatcher.outbox_queued:  # delivered: now on disk too, for other readers
            left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                self.ticker.submit(self._write_outbox()).result(left)
            except Exception:
                return False
        return True

    async def _write_outbox(self) -> None:
        self.dispatcher.flush_outbox()

    def say_left_pending(self, limit: float, outbox: bool) -> None:
        """Warn that notices were not delivered within ``limit`` seconds of the exit."""
        with self._lock:
            count = len(self._pending) + self._outstanding
        where = (
            "left pending in the outbox for the next nbremind process"
            if outbox
            else "lost: the outbox is off"
        )
        logger().warning(
            "nbremind: %d notice%s not delivered within exit_timeout (%g s); %s",
            count,
            "" if count == 1 else "s",
            limit,
            where,
        )

    def channel_status(
        self, names: Iterable[str] | None = None, refresh: bool = False
    ) -> dict[str, str]:
        """``{name: "available" | "unavailable: why"}`` for the configured (or named) channels."""
        config = self._config()
        names = tuple(names) if names is not None else config.channels

        future = self.ticker.submit(
            self.dispatcher.availability(names, refresh=refresh, config=config)
        )
        try:
            return future.result(timeout=config.send_timeout + 5)
        except concurrent.futures.TimeoutError:
            from ..channels import display_name

            return {display_name(name): "unavailable: no answer in time" for name in names}

    def test(
        self,
        channels: Iterable[str] | None,
        timeout: float,
        notice_id: str | None,
        source: str,
        host: str,
    ) -> dict[str, str]:
        """Send a test notice to each channel; ``{name: "delivered" | why not}``."""
        config = self._config()
        names = tuple(channels) if channels is not None else config.channels
        task = Task("nbremind test", clock=self.clock, kind="test", source=source, host=host)
        task.mark_started()
        task.mark_ended(TaskState.SUCCEEDED)
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
        answered: dict[str, str] = {}

        def take(delivery: Delivery) -> None:
            if delivery.notice_id == notice.id:
                answered[delivery.channel] = "delivered" if delivery.ok else delivery.error

        # heard as each channel answers: one that answered in time is told even when
        # another did not (dispatch() returns only once every channel answered)
        stop = self.dispatcher.listen(take)
        opts = TaskOptions(on=("test",))
        future = self.ticker.submit(
            self.dispatcher.dispatch(notice, opts, config.updated(muted=False))
        )

        try:
            with contextlib.suppress(concurrent.futures.TimeoutError):
                future.result(timeout)
        finally:
            stop()
        from ..core.urls import display_name  # a URL's secrets are masked in the results

        results = {display_name(name): "no answer in time" for name in names}
        results.update(answered)
        return results

    def close(self, timeout: float) -> None:
        """Close the dispatcher (its channels) on the loop thread, within ``timeout``."""
        with contextlib.suppress(Exception):
            self.ticker.submit(self.dispatcher.close()).result(timeout)

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
