"""The panel's rows: which tasks it lists, in which order, and the text of each cell.

Pure data (lists of strings and numbers), built on the loop thread from the session's tasks.
A row is rebuilt only when what it shows changed (its task's count, rate, state, name, notice
or depth), so a pass over 10,000 tasks of which 10 advance builds 10 rows; the running time
of a task is drawn by the page from ``started`` (see :func:`RowBuilder.refresh_elapsed`), and
the process's memory and CPU once for all running rows (the panel's ``usage``). A running
task with a usual duration shows it (``usually 25 min``), and its ETA counts down from it
until its progress gives one: its row is rebuilt when that text changes.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Sequence
from typing import Any

from ..core.notice import format_duration, format_size
from ..core.task import Task, TaskState
from ..runtime.sampling import Usage
from .texts import STATE_TEXT, count_text, cpu_text, rate_text, size_text

__all__ = [
    "ROW_FIELDS",
    "UPDATE_BYTES",
    "RowBuilder",
    "RowSync",
    "done_text",
    "follow",
    "gpu_text",
    "listed_tasks",
    "speed_text",
    "usage_texts",
    "usual_text",
]

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
    "started",
    "gpu",
    "usual",
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


_ELAPSED = ROW_FIELDS.index("elapsed")
_ETA = ROW_FIELDS.index("eta")


class RowBuilder:
    """Makes rows, each reused (the same list object) until what it shows changes.

    A running task's ``elapsed`` text is the one of when its row was last built (the page
    counts on from ``started``); :meth:`refresh_elapsed` brings those texts up to date for
    a full state or a snapshot. Running rows leave ``rss`` and ``cpu`` empty: those are the
    process's, the same for every running task (:func:`usage_texts`).
    """

    def __init__(self, last_notice: Callable[[Task], str | None]) -> None:
        self._last_notice = last_notice
        self._cache: dict[str, tuple[tuple[Any, ...], Row, Task]] = {}
        self._cursor = 0

    def rows(
        self,
        listed: Sequence[tuple[Task, int]],
        resources: Usage | None = None,
        limit: int | None = None,
    ) -> list[Row]:
        """One row per listed task (``resources``: unused, kept for callers that pass it).

        ``limit``: rebuild at most this many rows that changed (new tasks' rows are always
        made); the others keep their last row until a later pass, round-robin. One update
        sends about that many changes at most, so building more would be wasted.
        """
        out: list[Row] = []
        cache = self._cache
        fresh: dict[str, tuple[tuple[Any, ...], Row, Task]] = {}
        last_notice = self._last_notice
        changed: list[tuple[int, tuple[Any, ...]]] = []
        for task, depth in listed:
            notice = last_notice(task) or ""
            # what the row shows, but the running time (rate: the smoothed one, or n/elapsed
            # before the ticker sampled it, which then changes the key every pass as it should)
            n = task.n
            rate = task.rate if n else None
            key: tuple[Any, ...] = (depth, task.state, n, task.total, rate, task.name, notice)
            key += (task.unit, task.gpu_mem, task.gpu_util)  # GPU: read once a second
            if task.usual is not None:  # the usual duration, and the ETA counted down from it
                key += (task.usual, _eta_text(task))
            cached = cache.get(task.id)
            if cached is None:
                cached = (key, _row(task, depth, notice), task)
            elif cached[0] != key:
                changed.append((len(out), key))
            fresh[task.id] = cached
            out.append(cached[1])
        if limit is not None and len(changed) > limit:
            start = bisect.bisect_left(changed, (self._cursor,))
            changed = (changed[start:] + changed[:start])[:limit]
            self._cursor = changed[-1][0] + 1
        for position, key in changed:
            task, depth = listed[position]
            row = _row(task, depth, key[6])
            fresh[task.id] = (key, row, task)
            out[position] = row
        self._cache = fresh
        return out

    def refresh_elapsed(self) -> None:
        """Write the current running time into the rows of running tasks (in place)."""
        for _key, row, task in self._cache.values():
            if task.state is TaskState.RUNNING:
                row[_ELAPSED] = format_duration(task.elapsed)
                if task.usual is not None:
                    row[_ETA] = _eta_text(task)


def usage_texts(resources: Usage) -> list[str]:
    """``[rss, cpu]``: the process's memory and CPU, shown in every running task's row."""
    return [size_text(resources.rss), cpu_text(resources.cpu)]


def done_text(task: Task) -> str:
    """The "done" cell: ``40/100``, or ``1.2 MB / 1.2 MB`` when the task counts bytes."""
    return count_text(task.n, task.total, task.unit)


def speed_text(task: Task) -> str:
    """The "rate" cell: ``20.0/s``, or ``3.4 MB/s`` when the task counts bytes."""
    rate = task.rate
    if task.unit == "B" and rate and rate > 0:
        return f"{format_size(rate)}/s"
    return rate_text(rate)


def gpu_text(task: Task) -> str:
    """The "GPU" cell, ``7.5 GB · 87 %``: the memory and utilisation of the GPUs this process
    uses, while ``task`` runs (``""`` when none is read: no GPU, no library, no device used)."""
    if task.state is not TaskState.RUNNING:
        return ""
    parts = []
    if task.gpu_mem is not None:
        parts.append(format_size(task.gpu_mem))
    if task.gpu_util is not None:
        parts.append(f"{task.gpu_util:.0f} %")
    return " · ".join(parts)


def usual_text(task: Task) -> str:
    """``usually 25 min``: the usual duration of a running task that has one, else ``""``."""
    usual = task.usual
    if usual is None or task.state is not TaskState.RUNNING:
        return ""
    return f"usually {format_duration(usual)}"


def _eta_text(task: Task) -> str:
    """The ETA cell of a running task (``""`` when it cannot be told)."""
    eta = task.eta if task.state is TaskState.RUNNING else None
    return "" if eta is None else format_duration(eta)


def _row(task: Task, depth: int, notice: str) -> Row:
    state = task.state
    n, total = task.n, task.total
    running = state is TaskState.RUNNING
    eta = task.eta if running else None
    rss = "" if running else size_text(task.peak_rss, "peak ")
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
        "",
        notice,
        task.start_wall if running else None,
        gpu_text(task),
        usual_text(task),
    ]


#: Row data (estimated JSON bytes) one update carries at most; changes beyond it wait for the
#: next passes, those waiting longest first. 4 updates a second of this stay a quarter of
#: jupyter_server's default IOPub data rate limit (1 MB/s), above which it drops messages.
UPDATE_BYTES = 56_000


def _size(value: Any) -> int:
    """About how many bytes ``value`` takes in a JSON message (and its separator)."""
    return len(value) + 4 if type(value) is str else 20


def _row_size(row: Row) -> int:
    return sum(len(v) + 4 if type(v) is str else 20 for v in row) + 8


class RowSync:
    """The rows as the front end has them, and the delta that brings it up to date.

    A delta (``PanelWidget.delta``) is plain data applied in this order: ``remove`` (task
    ids), then ``add`` (``[after, row]`` pairs, in order: each row goes right after the row
    of task id ``after``, ``None``: first), then ``change`` (``[id, field, value, field,
    value, ...]``, only the fields that changed); or ``reset`` (every row), when that is
    smaller. Applying one twice changes nothing more. ``seq`` numbers the deltas, ``base``
    is the ``seq`` it applies to; a full state (``rows``, ``rows_seq``) starts a new base.

    At most about :data:`UPDATE_BYTES` go in one delta: a burst of new tasks, ended ones or
    every one of 10,000 advancing at once reaches the page over a few passes (rows that
    must change places first, then removals, additions in display order, and changes
    round-robin).
    """

    def __init__(self, budget: int = UPDATE_BYTES) -> None:
        self.budget = budget
        self.seq = 0
        self.ids: list[str] = []
        self.rows: dict[str, Row] = {}
        self._cursor = 0

    def listed(self) -> list[Row]:
        """The rows as the front end has them, in order."""
        rows = self.rows
        return [rows[i] for i in self.ids]

    def reset(self, latest: list[Row]) -> int:
        """The front end gets ``latest`` whole (a full state); returns its ``seq``."""
        self.ids = [row[0] for row in latest]
        self.rows = dict(zip(self.ids, latest, strict=True))
        self.seq += 1
        return self.seq

    def delta(self, latest: list[Row]) -> dict[str, Any] | None:
        """What changed from the front end's rows to ``latest`` (``None``: nothing), and
        take the front end's rows to be updated by it."""
        old = self.rows
        new_ids = [row[0] for row in latest]
        same = new_ids == self.ids  # the same tasks in the same order (the usual pass)
        gone: list[str] = []
        moved: set[str] = set()
        if same:
            new = {i: row for i, row in zip(new_ids, latest, strict=True) if row is not old[i]}
            changed = list(new)
        else:
            new = dict(zip(new_ids, latest, strict=True))
            gone = [i for i in self.ids if i not in new]
            kept_new = [i for i in new_ids if i in old]
            kept_old = [i for i in self.ids if i in new]
            if kept_old != kept_new:
                moved = _out_of_order(kept_old, kept_new)
            if len(gone) > len(new_ids) and sum(map(_row_size, latest)) <= self.budget:
                self.reset(latest)
                return {"reset": latest, "seq": self.seq, "base": self.seq - 1}
            changed = [i for i in kept_new if i not in moved and new[i] is not old[i]]
        left = self.budget
        remove = list(moved)  # a row that changes places is removed and added again, at once
        for i in moved:
            left -= len(i) + 4 + _row_size(new[i])
        for i in gone:
            if left <= 0 and remove:
                break
            remove.append(i)
            left -= len(i) + 4
        included = set(moved)
        if not same:
            for i in new_ids:
                if left <= 0 and (remove or included):
                    break
                if i not in old:
                    included.add(i)
                    left -= _row_size(new[i])
        change = self._changes(changed, new, left, bool(remove or included))
        if not (remove or included or change):
            return None
        out: dict[str, Any] = {"seq": self.seq + 1, "base": self.seq}
        self.seq += 1
        if remove:
            out["remove"] = remove
        if not same:
            add: list[list[Any]] = []
            after = None
            for i in new_ids:
                if i in included:
                    add.append([after, new[i]])
                    after = i
                elif i in old and i not in moved:
                    after = i
            if add:
                out["add"] = add
            self.ids = follow(self.ids, set(remove), add)
            for i in remove:
                old.pop(i, None)
            for _after, row in add:
                old[row[0]] = row
        if change:
            out["change"] = change
        return out

    def _changes(
        self, changed: list[str], new: dict[str, Row], left: int, others: bool
    ) -> list[list[Any]]:
        """``[id, field, value, ...]`` for changed rows, round-robin, while ``left`` lasts
        (at least one when nothing else goes); the front end has those rows from now on."""
        change: list[list[Any]] = []
        if not changed or (left <= 0 and others):
            return change
        old = self.rows
        start = self._cursor % len(changed)
        count = 0
        for i in itertools.chain(changed[start:], changed[:start]):
            if left <= 0 and (change or others):
                break
            row, before = new[i], old[i]
            entry: list[Any] = [i]
            for k, value in enumerate(row):
                if value != before[k]:
                    entry += (k, value)
                    left -= _size(value) + 4
            left -= len(i) + 8
            if len(entry) > 1:
                change.append(entry)
            old[i] = row  # equal rows: nothing to send, but the same object from now on
            count += 1
        self._cursor = start + count
        return change


def follow(ids: list[str], remove: set[str], add: list[list[Any]]) -> list[str]:
    """The ids of rows ``ids`` once ``remove`` and ``add`` (a delta's) are applied."""
    after: dict[str | None, list[str]] = {}
    for anchor, row in add:
        after.setdefault(anchor, []).append(row[0])
    added = {row[0] for _anchor, row in add}
    out: list[str] = []
    stack = list(reversed(after.get(None, [])))
    rest = iter([i for i in ids if i not in remove and i not in added])
    while True:
        if not stack:
            i = next(rest, None)
            if i is None:
                break
        else:
            i = stack.pop()
        out.append(i)
        stack.extend(reversed(after.get(i, [])))
    return out


def _out_of_order(before: list[str], after: list[str]) -> set[str]:
    """The fewest ids to take out of ``after`` for the rest to be in ``before``'s order (the
    complement of a longest increasing subsequence of their old positions)."""
    position = {i: k for k, i in enumerate(before)}
    seq = [position[i] for i in after]
    tails: list[int] = []  # tails[k]: index in seq of the smallest tail of a run of length k+1
    values: list[int] = []  # seq[tails[k]]
    parent = [-1] * len(seq)
    for k, value in enumerate(seq):
        at = bisect.bisect_left(values, value)
        if at:
            parent[k] = tails[at - 1]
        if at == len(tails):
            tails.append(k)
            values.append(value)
        else:
            tails[at] = k
            values[at] = value
    keep: set[int] = set()
    k = tails[-1] if tails else -1
    while k >= 0:
        keep.add(k)
        k = parent[k]
    return {i for k, i in enumerate(after) if k not in keep}
