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

Short nested runs are folded into their parent (setting ``history_min``, default 1 s): a
task with a parent that succeeded in less than ``history_min`` gets no row of its own; the
recorder counts it, with its time, for its parent (in memory, while the parent runs) and
writes the count with the parent's end. Its start, when still queued, is dropped from the
queue; when already written, its row is deleted in the next batch. A run folded this way
passes on what was folded into it (a block of 500 short loops, itself short in a cell,
gives the cell 501 folded runs). Top-level tasks, tasks that did not succeed, and tasks
whose parent already ended keep their row.

Each row carries what identifies the task's work (``Task.usual_key``, else its kind and
name). When a task's start is written, one indexed query reads its usual duration (the
median of its last succeeded runs, see :meth:`~nbremind.store.runs.History.usual_duration`)
into ``Task.usual``, on the loop thread: with the start's write, some 50 ms after the start
(normally before the task's next tick). A nested task whose start is not written (most are
folded into their parent) costs no query.
"""

from __future__ import annotations

import collections
import os
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

from ..core.log import logger
from ..core.task import TaskState
from ..store.runs import run_key

if TYPE_CHECKING:
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
MAX_QUEUED = 2000
#: Tasks waiting past which the loop thread writes at once, without :data:`_WRITE_DELAY`.
_WRITE_NOW = 200
#: Tasks whose notices are counted while their row waits (oldest forgotten first).
_REMEMBER_SENT = 10_000
#: Running tasks whose folded runs are counted (oldest forgotten first).
_REMEMBER_FOLDS = 10_000

#: What a queued entry writes: the task's start, its end, or the removal of its row.
_START, _END, _DELETE = 0, 1, 2


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
        # tasks waiting to be written, by id, in the order they started: what to write
        # (_START, _END, _DELETE), the task (snapshotted when written) and, for an end, the
        # runs folded into it (count, seconds); one transaction a wake
        self._queue: dict[str, tuple[int, Task, tuple[int, float] | None, TaskSnapshot | None]] = {}
        # running tasks with short nested runs folded into them: [count, seconds]
        self._folds: dict[str, list[float]] = {}
        # tasks folded into their parent lately (their notices are not counted)
        self._folded: collections.OrderedDict[str, None] = collections.OrderedDict()
        # notices delivered after their task's row was written: counts to add to the rows
        self._late: dict[str, int] = {}
        # nested tasks recorded as running by the tick (the others' starts are not written)
        self._late_started: dict[str, None] = {}
        self._scheduled = False  # a wake of the loop thread is on its way
        self._hurried = False  # ... and one that writes without waiting

    # -- called by the session, on any thread ---------------------------------------------------
    def started(self, task: Task) -> None:
        """``task`` started: record it as running. A task nested in a running one is
        recorded running only once it has run ``history_min`` (see :meth:`running_long`):
        most nested tasks are folded into their parent at their end, and a loop per file
        then costs no start entry."""
        parent = task.parent
        if parent is not None and not parent.done and self._config().history_min > 0:
            return
        self._hand(False, task)

    def running_long(self, tasks: Iterable[Task]) -> None:
        """The tick: record as running the nested ``tasks`` that have run ``history_min``
        and were not recorded yet (they will not be folded into their parent)."""
        shortest = self._config().history_min
        if shortest <= 0:
            return
        late = self._late_started
        for task in tasks:
            if (
                task.parent is not None
                and task.id not in late
                and not task.done
                and task.elapsed >= shortest
            ):
                with self._lock:
                    late[task.id] = None
                self._hand(False, task)

    def ended(self, task: Task, snapshot: TaskSnapshot | None = None) -> None:
        """``task`` ended: record its final state (``snapshot``: taken after its end
        already, for its end notice; the row is written from it)."""
        self._hand(True, task, snapshot)

    @property
    def backlog(self) -> int:
        """Tasks waiting to be written (at most :data:`MAX_QUEUED`)."""
        return len(self._queue)

    def delivered(self, notice: Notice, deliveries: list[Delivery]) -> None:
        """``notice``'s delivery finished with ``deliveries`` (what ``dispatch()``
        returned): count it for its task if a channel took it."""
        for delivery in deliveries:  # (a loop, not any() over a generator: once per notice)
            if delivery.ok:
                self._notice_done(notice)
                return

    def _hand(self, ended: bool, task: Task, snapshot: TaskSnapshot | None = None) -> None:
        config = self._config()
        if self._closed() or not config.outbox or not config.history_keep:
            return
        with self._lock:
            queue = self._queue
            if not ended:
                queue[task.id] = (_START, task, None, None)
            else:
                fold = self._folds.pop(task.id, None)
                folded = None if fold is None else (int(fold[0]), fold[1])
                started = (
                    task.parent is None
                    or self._late_started.pop(task.id, 0) is None
                    or task.id in queue
                )
                if self._folds_into_parent(task, config.history_min, folded):
                    if not started or queue.pop(task.id, None) is not None:
                        return  # its start was never written: nothing of it is written
                    queue[task.id] = (_DELETE, task, None, None)  # its start row was written
                else:
                    # an end replaces the task's start if that is still waiting (its place kept)
                    queue[task.id] = (_END, task, folded, snapshot)
            wake = self._wake_for(len(queue))
        self._wake(wake)

    def _wake_for(self, size: int) -> Callable[[], None] | Literal[False] | None:
        """How the writer is to be woken with ``size`` entries waiting (the lock held):
        ``None``: write here, now (the loop thread is behind); ``False``: a wake is on its
        way already; else the callback the loop thread is to run."""
        if size >= MAX_QUEUED:
            return None
        if not self._scheduled:
            self._scheduled = True
            return self._drain_later
        if size >= _WRITE_NOW and not self._hurried:
            self._hurried = True  # a burst: the delayed write would let it pile up
            return self._drain_soon
        return False

    def _wake(self, wake: Callable[[], None] | Literal[False] | None) -> None:
        if wake is False:
            return  # a wake is on its way: it writes this one too
        if wake is None:
            self._drain()  # the loop thread is behind: write the backlog here, in one go
            return
        try:
            if self._ticker.in_loop_thread():
                wake()
            else:
                self._ticker.call_soon(wake)
        except Exception as exc:  # the loop thread could not be reached
            with self._lock:
                self._scheduled = self._hurried = False
            self._report(exc)

    def _folds_into_parent(
        self, task: Task, shortest: float, folded: tuple[int, float] | None
    ) -> bool:
        """Whether ``task``, ended, is folded into its parent (then counted there, with what
        was folded into it); the lock held."""
        parent = task.parent
        if parent is None or task.state != TaskState.SUCCEEDED or parent.done:
            return False
        elapsed = task.elapsed
        if not elapsed < shortest or parent.id in self._ended:
            return False
        into = self._folds.get(parent.id)
        if into is None:
            into = self._folds[parent.id] = [0, 0.0]
            if len(self._folds) > _REMEMBER_FOLDS:  # parents that never ended: forgotten
                del self._folds[next(iter(self._folds))]
        into[0] += 1 + (folded[0] if folded else 0)
        into[1] += elapsed
        if task.options.on == ():
            return True  # (a loop in a task, say: it sends no notice to be counted)
        self._sent.pop(task.id, None)
        gone = self._folded  # a notice delivered later has no row to be counted on
        gone[task.id] = None
        if len(gone) > _REMEMBER_ENDED:
            gone.popitem(last=False)
        return True

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
            late, self._late = self._late, {}
            self._scheduled = self._hurried = False
            queued: list[tuple[Task, int, TaskSnapshot | None]] = []
            folds: dict[str, tuple[int, float]] = {}
            deleted: list[str] = []
            starts: set[str] = set()
            for what, task, fold, snap in items.values():
                if what == _DELETE:
                    deleted.append(task.id)
                    continue
                sent = 0
                if what == _START:
                    starts.add(task.id)
                elif what == _END:
                    sent = self._sent.pop(task.id, 0)
                    self._ended[task.id] = None
                    if fold is not None:
                        folds[task.id] = fold
                queued.append((task, sent, snap))
            while len(self._ended) > _REMEMBER_ENDED:
                self._ended.popitem(last=False)
        if not queued and not deleted and not late:
            return
        try:
            rows: list[tuple[TaskSnapshot, int]] = [
                (task.snapshot() if snap is None else snap, sent) for task, sent, snap in queued
            ]
            keys, started = _keys(queued, rows, starts)
            history = self.history
            if history is not None:
                history.record_many(
                    rows, folded=folds, delete=deleted, late_notices=late, keys=keys
                )
                if started:
                    self._look_up_usual(history, started)
        except Exception as exc:
            self._report(exc)

    def _look_up_usual(self, history: History, started: list[tuple[Task, str]]) -> None:
        """Set the usual duration of the tasks ``started`` (with their keys): one query
        each, on the loop thread (handed to it when the backlog is written elsewhere)."""
        started = [(task, key) for task, key in started if not task.done]  # (ended: no use)
        if not started:
            return
        if not self._ticker.in_loop_thread():
            if self._closed():
                return
            try:
                self._ticker.call_soon(self._look_up_usual, history, started)
            except Exception as exc:  # the loop thread could not be reached
                self._report(exc)
            return
        for task, key in started:
            if task.usual is None and not task.done:
                task.usual = history.usual_duration(key)

    def _notice_done(self, notice: Notice) -> None:
        try:
            task_id = notice.task.id
            with self._lock:
                if task_id in self._folded:
                    return
                if task_id not in self._ended:
                    sent = self._sent
                    sent[task_id] = sent.get(task_id, 0) + 1
                    if len(sent) > _REMEMBER_SENT:  # rows long written: their count is lost
                        del sent[next(iter(sent))]
                    return
                # its row is written: counted there with the next batch (one transaction)
                late = self._late
                late[task_id] = late.get(task_id, 0) + 1
                wake = self._wake_for(len(self._queue) + len(late))
            self._wake(wake)
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


def _keys(
    queued: list[tuple[Task, int, TaskSnapshot | None]],
    rows: list[tuple[TaskSnapshot, int]],
    starts: set[str],
) -> tuple[dict[str, str], list[tuple[Task, str]]]:
    """The keys of the tasks to write that are not derived from their row (their
    ``usual_key``, and those of starts, made once here for the row and the look-up), and
    the started tasks with their keys."""
    keys: dict[str, str] = {}
    started: list[tuple[Task, str]] = []
    for (task, _sent, _snap), (snapshot, _count) in zip(queued, rows, strict=True):
        key = task.usual_key
        if task.id in starts:
            if key is None:
                key = run_key(snapshot.name, snapshot.kind)
            started.append((task, key))
        if key is not None:
            keys[task.id] = key
    return keys, started
