"""How a session writes its tasks to the run history, on its loop thread only.

The session tells the recorder when a task starts, ends, and when a notice's delivery is
finished; the recorder takes a snapshot on the caller's thread (cheap) and hands the write
to the loop thread, so user code never waits on the disk and nothing raises into it. The
notices sent for a task are counted from the dispatcher's delivery records: those finished
before the task's end are written with it, later ones are added to its row.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import concurrent.futures

    from .notice import Notice
    from .run_history import History
    from .session import Session
    from .task import Task, TaskSnapshot

__all__ = ["HistoryRecorder"]

log = logging.getLogger("nbremind")

#: Ended tasks remembered, to add notices delivered after their end to their rows.
_REMEMBER_ENDED = 1000
#: Seconds a start or end waits before it is written (batched with what follows).
_WRITE_DELAY = 0.05
#: Delivery records scanned (newest first) when a notice's delivery finishes.
_SCAN_DELIVERIES = 64


class HistoryRecorder:
    """Writes one session's task starts and ends to :class:`~nbremind.run_history.History`."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._held: tuple[tuple[object, ...], History | None] | None = None
        self._lock = threading.Lock()
        self._sent: dict[str, int] = {}
        self._ended: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._failed = False
        # starts and ends waiting for the loop thread, written in one transaction per wake
        self._queue: list[tuple[bool, TaskSnapshot]] = []
        self._scheduled = False

    # -- called by the session, on any thread ---------------------------------------------------
    def started(self, task: Task) -> None:
        """``task`` started: record it as running."""
        self._hand(False, task.snapshot())

    def ended(self, task: Task) -> None:
        """``task`` ended: record its final state."""
        self._hand(True, task.snapshot())

    def watch(self, notice: Notice, future: concurrent.futures.Future[None]) -> None:
        """Count ``notice`` for its task once its delivery is finished, if it was delivered."""
        future.add_done_callback(lambda _f: self._notice_done(notice))

    def _hand(self, ended: bool, snapshot: TaskSnapshot) -> None:
        session = self._session
        if session._closed or not session.config.outbox or not session.config.history_keep:
            return
        with self._lock:
            self._queue.append((ended, snapshot))
            if self._scheduled:
                return  # a wake is on its way: it writes this one too
            self._scheduled = True
        try:
            session.ticker.call_soon(self._drain_later)
        except Exception as exc:  # the loop thread could not be reached
            with self._lock:
                self._scheduled = False
            self._report(exc)

    # -- on the loop thread ------------------------------------------------------------------------
    def _drain_later(self) -> None:
        """Write a moment later: a cell's end is written after the kernel sent its reply,
        instead of competing with it for the GIL."""
        import asyncio

        asyncio.get_running_loop().call_later(_WRITE_DELAY, self._drain)

    def _drain(self) -> None:
        """Write every queued start and end in one transaction (a burst of 1,000 task starts
        costs the loop thread one commit, not 1,000)."""
        with self._lock:
            items, self._queue = self._queue, []
            self._scheduled = False
            rows: list[tuple[TaskSnapshot, int]] = []
            for ended, snapshot in items:
                sent = 0
                if ended:
                    sent = self._sent.pop(snapshot.id, 0)
                    self._ended[snapshot.id] = None
                rows.append((snapshot, sent))
            while len(self._ended) > _REMEMBER_ENDED:
                self._ended.popitem(last=False)
        try:
            history = self.history
            if history is not None:
                history.record_many(rows)
        except Exception as exc:
            self._report(exc)

    def _notice_done(self, notice: Notice) -> None:
        try:
            deliveries = self._session.dispatcher.deliveries
            recent = list(deliveries)[-_SCAN_DELIVERIES:]
            if not any(d.notice_id == notice.id and d.ok for d in recent):
                return
            task_id = notice.task.id
            with self._lock:
                if task_id not in self._ended:
                    self._sent[task_id] = self._sent.get(task_id, 0) + 1
                    return
            history = self.history
            if history is not None:
                history.add_notices(task_id)
        except Exception as exc:
            self._report(exc)

    @property
    def history(self) -> History | None:
        """The history file, opened on first use (again when its settings change)."""
        config = self._session.config
        key = (config.data_dir, os.environ.get("NBREMIND_DATA_DIR"), config.history_keep,
               os.getpid())
        held = self._held
        if held is not None and held[0] == key:
            return held[1]
        from .run_history import History

        self._held = (key, History.open(config, self._session.clock))
        if held is not None and held[1] is not None and held[0][3] == key[3]:
            held[1].close()
        return self._held[1]

    def sync(self, timeout: float = 5.0) -> bool:
        """Wait until the writes handed to the loop thread so far are done (for readers in
        this process); ``False`` when they are not done within ``timeout``."""
        ticker = self._session.ticker
        if self._session._closed or not ticker.running or ticker.in_loop_thread():
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
            log.warning("nbremind history: a run could not be recorded: %s: %s",
                        type(exc).__name__, exc)
