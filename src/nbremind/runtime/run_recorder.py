"""How a session writes its tasks to the run history: on its loop thread, in batches.

The session tells the recorder when a task starts, ends, and when a notice's delivery is
finished; the recorder queues the task (a dictionary entry: no snapshot on the caller's
thread) and hands the write to the loop thread, so user code does not wait on the disk and
nothing raises into it. The notices sent for a task are counted from the dispatcher's
delivery records: those finished before the task's end are written with it, later ones are
added to its row.

The backlog is bounded. The queue holds one entry per task: a task that ends before its
start was written is written once, ended (a burst of short blocks costs one row each, not
two). When the loop thread cannot keep up (it gets the GIL back only every switch interval
while user code runs flat out, and may be busy delivering a notice per block),
:data:`MAX_QUEUED` tasks waiting make the thread that hands the next one write them all
itself, in one transaction: memory stays flat whatever the rate of blocks, at the cost of
one batched write per :data:`MAX_QUEUED` tasks on that thread.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..core.log import logger

if TYPE_CHECKING:
    import concurrent.futures

    from ..core.clock import Clock
    from ..core.config import Config
    from ..core.notice import Notice
    from ..core.task import Task, TaskSnapshot
    from ..core.ticker import Ticker
    from ..delivery.dispatcher import Delivery
    from ..store.runs import History

__all__ = ["MAX_QUEUED", "HistoryRecorder"]

log = logger()

#: Ended tasks remembered, to add notices delivered after their end to their rows.
_REMEMBER_ENDED = 1000
#: Seconds a start or end waits before it is written (batched with what follows).
_WRITE_DELAY = 0.05
#: Tasks waiting to be written past which the thread handing one writes them all itself.
MAX_QUEUED = 1000
#: Tasks waiting past which the loop thread writes at once, without :data:`_WRITE_DELAY`.
_WRITE_NOW = 200
#: Tasks whose notices are counted while their row waits (oldest forgotten first).
_REMEMBER_SENT = 10_000


class HistoryRecorder:
    """Writes one session's task starts and ends to :class:`~nbremind.store.runs.History`.

    ``config`` gives the settings in force and ``closed`` whether the session closed.
    """

    def __init__(
        self,
        ticker: Ticker,
        clock: Clock,
        *,
        config: Callable[[], Config],
        closed: Callable[[], bool],
    ) -> None:
        self._ticker = ticker
        self._clock = clock
        self._config = config
        self._closed = closed
        self._held: tuple[tuple[object, ...], History | None] | None = None
        self._lock = threading.Lock()
        #: Held while writing (and while opening the file): one writer at a time, in order.
        self._write_lock = threading.RLock()
        self._sent: dict[str, int] = {}
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._failed = False
        # tasks waiting to be written, by id, in the order they started: whether the entry
        # is the task's end, and the task (snapshotted when written); one transaction a wake
        self._queue: dict[str, tuple[bool, Task]] = {}
        self._scheduled = False  # a wake of the loop thread is on its way
        self._hurried = False  # ... and one that writes without waiting

    # -- called by the session, on any thread ---------------------------------------------------
    def started(self, task: Task) -> None:
        """``task`` started: record it as running."""
        self._hand(False, task)

    def ended(self, task: Task) -> None:
        """``task`` ended: record its final state."""
        self._hand(True, task)

    @property
    def backlog(self) -> int:
        """Tasks waiting to be written (at most :data:`MAX_QUEUED`)."""
        return len(self._queue)

    def watch(self, notice: Notice, future: concurrent.futures.Future[list[Delivery]]) -> None:
        """Count ``notice`` for its task once its delivery is finished, if it was delivered
        (``future``'s result: the deliveries ``dispatch()`` returned)."""
        future.add_done_callback(lambda done: self._notice_done(notice, done))

    def _hand(self, ended: bool, task: Task) -> None:
        config = self._config()
        if self._closed() or not config.outbox or not config.history_keep:
            return
        with self._lock:
            queue = self._queue
            # an end replaces the task's start if that is still waiting (keeping its place)
            queue[task.id] = (ended, task)
            size = len(queue)
            if size >= MAX_QUEUED:
                wake = None
            elif not self._scheduled:
                self._scheduled = True
                wake = self._drain_later
            elif size >= _WRITE_NOW and not self._hurried:
                self._hurried = True  # a burst: the delayed write would let it pile up
                wake = self._drain_soon
            else:
                return  # a wake is on its way: it writes this one too
        if wake is None:
            self._drain()  # the loop thread is behind: write the backlog here, in one go
            return
        try:
            self._ticker.call_soon(wake)
        except Exception as exc:  # the loop thread could not be reached
            with self._lock:
                self._scheduled = self._hurried = False
            self._report(exc)

    # -- on the loop thread ------------------------------------------------------------------------
    def _drain_later(self) -> None:
        """Write a moment later: a cell's end is written after the kernel sent its reply,
        instead of competing with it for the GIL."""
        import asyncio

        asyncio.get_running_loop().call_later(_WRITE_DELAY, self._drain_soon)

    def _drain_soon(self) -> None:
        """Write now, unless another thread is writing the backlog: then a moment later (the
        loop thread must not wait for it: every other callback of the loop would wait too)."""
        if not self._drain(wait=False):
            import asyncio

            asyncio.get_running_loop().call_later(_WRITE_DELAY, self._drain_soon)

    def _drain(self, wait: bool = True) -> bool:
        """Write every queued start and end in one transaction (a burst of 1,000 task starts
        costs the loop thread one commit, not 1,000). Without ``wait``, return ``False`` at
        once when another thread is writing."""
        if not self._write_lock.acquire(wait):
            return False
        try:
            self._write_queued()
        finally:
            self._write_lock.release()
        return True

    def _write_queued(self) -> None:
        """Swap the queue for an empty one and write what it held (the write lock held)."""
        with self._lock:
            items, self._queue = self._queue, {}
            self._scheduled = self._hurried = False
            queued: list[tuple[Task, int]] = []
            for ended, task in items.values():
                sent = 0
                if ended:
                    sent = self._sent.pop(task.id, 0)
                    self._ended[task.id] = None
                queued.append((task, sent))
            while len(self._ended) > _REMEMBER_ENDED:
                self._ended.popitem(last=False)
        if not queued:
            return
        try:
            rows: list[tuple[TaskSnapshot, int]] = [
                (task.snapshot(), sent) for task, sent in queued
            ]
            history = self.history
            if history is not None:
                history.record_many(rows)
        except Exception as exc:
            self._report(exc)

    def _notice_done(self, notice: Notice, done: concurrent.futures.Future[list[Delivery]]) -> None:
        try:
            if done.cancelled() or done.exception() is not None:
                return
            if not any(d.ok for d in done.result()):
                return
            task_id = notice.task.id
            with self._lock:
                if task_id not in self._ended:
                    sent = self._sent
                    sent[task_id] = sent.get(task_id, 0) + 1
                    if len(sent) > _REMEMBER_SENT:  # rows long written: their count is lost
                        del sent[next(iter(sent))]
                    return
            history = self.history
            if history is not None:
                history.add_notices(task_id)
        except Exception as exc:
            self._report(exc)

    @property
    def history(self) -> History | None:
        """The history file, opened on first use (again when its settings change)."""
        config = self._config()
        key = (
            config.data_dir,
            os.environ.get("NBREMIND_DATA_DIR"),
            config.history_keep,
            os.getpid(),
        )
        held = self._held
        if held is not None and held[0] == key:
            return held[1]
        with self._write_lock:  # the loop thread and a thread writing a full backlog
            held = self._held
            if held is not None and held[0] == key:
                return held[1]
            from ..store.runs import History

            self._held = (key, History.open(config, self._clock))
            if held is not None and held[1] is not None and held[0][3] == key[3]:
                held[1].close()
            return self._held[1]

    def sync(self, timeout: float = 5.0) -> bool:
        """Wait until the writes handed to the loop thread so far are done (for readers in
        this process); ``False`` when they are not done within ``timeout``."""
        ticker = self._ticker
        if self._closed() or not ticker.running or ticker.in_loop_thread():
            return True
        import concurrent.futures

        async def barrier() -> None:
            self._drain()  # what is still waiting for its delayed write, now

        try:
            ticker.submit(barrier()).result(timeout)
        except (concurrent.futures.TimeoutError, RuntimeError):
            return False
        return True

    def close(self) -> None:
        """Close the history file (after the loop thread stopped)."""
        held, self._held = self._held, None
        if held is not None and held[1] is not None and held[0][3] == os.getpid():
            held[1].close()

    def _report(self, exc: BaseException) -> None:
        if not self._failed:
            self._failed = True
            log.warning(
                "nbremind history: a run could not be recorded: %s: %s", type(exc).__name__, exc
            )
