"""Task events become notices, handed to the dispatcher on the loop thread.

Handing a notice over returns at once; a thread that makes notices faster than the loop
thread takes them up waits (see :data:`MAX_QUEUED`), so memory stays bounded.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from ..core.log import log_exception, logger
from ..core.notice import Notice, make_notice
from ..core.options import TaskOptions
from ..core.task import Task, TaskState

if TYPE_CHECKING:
    import concurrent.futures

    from ..core.clock import Clock
    from ..core.config import Config
    from ..core.ticker import Ticker
    from ..delivery.dispatcher import Delivery, Dispatcher

__all__ = ["CATCH_UP_WAIT", "MAX_QUEUED", "RESUME_QUEUED", "Notifier"]

#: Notices queued for the loop thread at most; past this, the thread that makes one waits
#: (at most CATCH_UP_WAIT seconds) until the loop thread has taken up all but RESUME_QUEUED.
MAX_QUEUED = 1000
RESUME_QUEUED = 500
CATCH_UP_WAIT = 5.0


class Notifier:
    """Makes the notices of task events and hands them to ``dispatcher`` on ``ticker``'s loop.

    ``config`` gives the settings in force, ``closed`` whether the session closed; each
    notice handed over and its delivery's future go to ``on_sent``.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        ticker: Ticker,
        clock: Clock,
        *,
        config: Callable[[], Config],
        closed: Callable[[], bool],
        on_sent: Callable[[Notice, concurrent.futures.Future[list[Delivery]]], None],
    ) -> None:
        self.dispatcher = dispatcher
        self.ticker = ticker
        self.clock = clock
        self._config = config
        self._closed = closed
        self._on_sent = on_sent
        self._lock = threading.Lock()
        self._last_notice: dict[str, str] = {}
        self._pending: set[concurrent.futures.Future[Any]] = set()
        #: Notices handed to the loop thread that it has not taken up yet.
        self._queued = 0
        self._backlog = threading.Condition(threading.Lock())

    @property
    def queued(self) -> int:
        """Notices handed to the loop thread that it has not taken up yet."""
        return self._queued

    @property
    def in_flight(self) -> int:
        """Deliveries handed to the loop thread and not finished yet."""
        return len(self._pending)

    def last_notice(self, task_id: str) -> str | None:
        """The title of the last notice sent about the task ``task_id``."""
        return self._last_notice.get(task_id)

    def forget(self, task_id: str) -> None:
        """The task ``task_id`` is forgotten: so is its last notice."""
        self._last_notice.pop(task_id, None)

    def notify(self, task: Task, event: str, key: object = 0, detail: object = None) -> None:
        """Send the notice of ``event`` about ``task``, if its options may want it."""
        options = task.options
        config = self._config()
        if event not in options.events() and not (
            options.on is None and config.on is not None and event in config.on
        ):
            return  # cheap early exit; the dispatcher's rules decide the rest
        try:
            notice = make_notice(
                event, task.snapshot(), created=self.clock.time(), key=key, detail=detail
            )
        except Exception:  # a notice that cannot be made is logged, never raised
            log_exception(f"making the {event} notice of a task failed")
            return
        self.send(notice, options)

    def send(self, notice: Notice, options: TaskOptions | None = None) -> None:
        """Hand ``notice`` to the loop thread for delivery (returns at once)."""
        if self._closed():
            return
        self._last_notice[notice.task.id] = notice.title
        coro = self._dispatch(notice, options or TaskOptions(), self._config())
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
        self.hold(future)
        self._on_sent(notice, future)
        if over and not self.ticker.in_loop_thread():
            self._catch_up()

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
        if not pending:
            return True
        if self.ticker.in_loop_thread():
            return False
        import concurrent.futures

        _done, not_done = concurrent.futures.wait(pending, timeout)
        return not not_done

    def say_left_pending(self, limit: float, outbox: bool) -> None:
        """Warn that notices were not delivered within ``limit`` seconds of the exit."""
        with self._lock:
            count = len(self._pending)
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
        import concurrent.futures

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
        import concurrent.futures

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

    async def _dispatch(
        self, notice: Notice, options: TaskOptions, config: Config
    ) -> list[Delivery]:
        self._taken()
        return await self.dispatcher.dispatch(notice, options, config)

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

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)
