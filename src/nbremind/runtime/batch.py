"""Batch mode: one notice when the notebook cells queued together (Run All) have run.

A batch is a task of kind ``"batch"`` that starts with its first cell and is never current
nor the parent of anything (the cells' own tasks are not nested in it). It ends succeeded
once no new cell started within :data:`BATCH_DEBOUNCE` after the last one ended (the loop
thread's tick sees that), or failed at the first cell that fails. Its end notices are the
usual ``success`` / ``failure`` ones, with ``min_duration`` set to the batch setting, so
``on``, templates, channels, history and the outbox apply unchanged.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..core.log import log_exception
from ..core.options import TaskOptions

if TYPE_CHECKING:
    from ..core.task import Task
    from .session import Session

__all__ = ["BATCH_DEBOUNCE", "BatchWatch", "cells_name"]

#: Seconds after a cell ended with no new cell started that end a batch. Between the cells
#: of JupyterLab's Run All (every request queued at once) the kernel takes 3-7 ms; nbclient
#: (one request at a time, after the previous reply and idle status) 4-8 ms; papermill adds
#: writing the notebook between cells. One second is far above all of them, and short
#: enough that the notice follows the last cell closely.
BATCH_DEBOUNCE = 1.0


def cells_name(count: int) -> str:
    """``1 cell``, ``14 cells``: the name of a batch of ``count`` cells."""
    return f"{count} cell" if count == 1 else f"{count} cells"


class BatchWatch:
    """Follows the cells of one shell as batches (see the module's docstring).

    :meth:`cell_started` and :meth:`cell_ended` are called by the front end around each
    cell; :meth:`tick` by the session's tick, on the loop thread.
    """

    def __init__(self, session: Session, debounce: float = BATCH_DEBOUNCE) -> None:
        self.session = session
        self.debounce = debounce
        self._lock = threading.Lock()
        self._task: Task | None = None
        self._cells = 0
        self._depth = 0  # cells running now (a cell may run another through run_cell)
        self._last_end: tuple[float, float] | None = None  # (monotonic, wall)

    @property
    def task(self) -> Task | None:
        """The batch running now, if any."""
        return self._task

    def cell_started(self, minimum: float) -> None:
        """A cell starts: open a batch (notifying when it takes longer than ``minimum``
        seconds) unless one is open, and count the cell."""
        session = self.session
        with self._lock:
            self._depth += 1
            if self._depth > 1:
                return
            task = self._task
            if task is None or task.done:
                options = TaskOptions(min_duration=minimum)
                task = session.new_task(cells_name(1), options=options, kind="batch")
                self._task, self._cells = task, 0
                session.start_detached(task)
            self._cells += 1
            task.name = cells_name(self._cells)

    def cell_ended(self, exc: BaseException | None, execution_count: object) -> None:
        """A cell ended (``exc``: what it raised): a failure ends the batch now, as failed
        and named for the cell (``cell [7]``)."""
        clock = self.session.clock
        with self._lock:
            self._depth = max(self._depth - 1, 0)
            self._last_end = (clock.monotonic(), clock.time())
            task = self._task
            if exc is None or task is None:
                return
            self._task = None
            shown = execution_count if isinstance(execution_count, int) else "?"
            task.name = f"cell [{shown}]"
        self.session.finish(task, exc)

    def tick(self) -> None:
        """On the loop thread: end the open batch when no cell started within the debounce
        after the last one ended."""
        with self._lock:
            task, end = self._task, self._last_end
            if task is None or self._depth or end is None:
                return
            if self.session.clock.monotonic() - end[0] < self.debounce:
                return
            self._task = None
        self.session.finish(task, None, end=end)

    def stop(self) -> None:
        """End the open batch without a notice (batch mode turned off, the extension
        unloaded)."""
        with self._lock:
            task, self._task = self._task, None
        if task is None:
            return
        try:
            task.options = task.options.replace(on=())
        except Exception:
            log_exception("silencing the batch failed")
        self.session.finish(task, None)
