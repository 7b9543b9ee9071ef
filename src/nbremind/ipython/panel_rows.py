"""The panel's rows: which tasks it lists, in which order, and the text of each cell.

Pure data (lists of strings and numbers), built on the loop thread from the session's tasks;
the front end matches rows by task id and changes only the texts that changed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..core.notice import format_duration, format_size
from ..core.task import Task, TaskState
from ..runtime.sampling import Usage
from .texts import STATE_TEXT, count_text, cpu_text, rate_text, size_text

__all__ = ["ROW_FIELDS", "RowBuilder", "done_text", "listed_tasks", "speed_text"]

#: What each row holds, in order (sent once as the widget's ``fields``).
ROW_FIELDS = (
    "id",
    "depth",
    "state",
    "state_text",
    "name",
    "value",
    "max",
    "count",
    "rate",
    "elapsed",
    "eta",
    "rss",
    "cpu",
    "notice",
)
Row = list[Any]


def listed_tasks(tasks: Sequence[Task], keep: int) -> list[tuple[Task, int]]:
    """Every running task and the ``keep`` most recently finished ones, each with its depth,
    in tree order: a task, then its children (in the order they started), and so on."""
    finished = sorted((t for t in tasks if t.done), key=lambda t: t.end_mono or 0.0)
    kept = finished[len(finished) - keep :] if keep > 0 else []
    shown = {t.id for t in kept}
    shown.update(t.id for t in tasks if not t.done)
    children: dict[str | None, list[Task]] = {}
    for task in tasks:
        if task.id not in shown:
            continue
        parent = task.parent
        while parent is not None and parent.id not in shown:  # attach to a listed ancestor
            parent = parent.parent
        children.setdefault(parent.id if parent is not None else None, []).append(task)
    out: list[tuple[Task, int]] = []
    stack: list[tuple[Task, int]] = [(t, 0) for t in reversed(children.get(None, []))]
    while stack:
        task, depth = stack.pop()
        out.append((task, depth))
        stack.extend((c, depth + 1) for c in reversed(children.get(task.id, [])))
    return out


class RowBuilder:
    """Makes rows; a finished task's row is made once and reused until its notice changes."""

    def __init__(self, last_notice: Callable[[Task], str | None]) -> None:
        self._last_notice = last_notice
        self._finished: dict[str, tuple[int, str, Row]] = {}

    def rows(self, listed: Iterable[tuple[Task, int]], resources: Usage) -> list[Row]:
        """One row per listed task."""
        out: list[Row] = []
        alive: set[str] = set()
        process = (size_text(resources.rss), cpu_text(resources.cpu))  # the same for all
        for task, depth in listed:
            notice = self._last_notice(task) or ""
            if task.done:
                alive.add(task.id)
                cached = self._finished.get(task.id)
                if cached is None or cached[0] != depth or cached[1] != notice:
                    cached = (depth, notice, _row(task, depth, notice, process))
                    self._finished[task.id] = cached
                out.append(cached[2])
            else:
                out.append(_row(task, depth, notice, process))
        for key in [k for k in self._finished if k not in alive]:
            del self._finished[key]
        return out


def done_text(task: Task) -> str:
    """The "done" cell: ``40/100``, or ``1.2 MB / 1.2 MB`` when the task counts bytes."""
    return count_text(task.n, task.total, task.unit)


def speed_text(task: Task) -> str:
    """The "rate" cell: ``20.0/s``, or ``3.4 MB/s`` when the task counts bytes."""
    rate = task.rate
    if task.unit == "B" and rate and rate > 0:
        return f"{format_size(rate)}/s"
    return rate_text(rate)


def _row(task: Task, depth: int, notice: str, process: tuple[str, str]) -> Row:
    """``process``: the process's RSS and CPU texts, shown for running tasks."""
    state = task.state
    n, total = task.n, task.total
    running = state is TaskState.RUNNING
    eta = task.eta if running else None
    rss, cpu = process if running else (size_text(task.peak_rss, "peak "), "")
    return [
        task.id,
        depth,
        state.value,
        STATE_TEXT[state],
        task.name,
        min(n, total) if total else None,
        total if total else None,
        done_text(task),
        speed_text(task) if n else "",
        format_duration(task.elapsed),
        "" if eta is None else format_duration(eta),
        rss,
        cpu,
        notice,
    ]
