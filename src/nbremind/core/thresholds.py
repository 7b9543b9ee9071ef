"""Time- and value-based thresholds of a running task, evaluated on each tick.

A task that counts nothing itself (a ``%%remind`` cell, a ``remind()`` block, a decorated
function) may be fed by the ``track()`` loop running directly in it: its :class:`Watch`
holds that loop, and the tick copies the loop's count and total into the task
(:meth:`Watch.read_feed`) before its thresholds are checked.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .notice import format_percent
from .task import Task

__all__ = ["Due", "Watch", "never_applied", "next_mark"]


@dataclass(frozen=True)
class Due:
    """A threshold that was crossed: the event, a key telling repeats apart, and a detail."""

    event: str
    key: object = 0
    detail: object = None


class Watch:
    """What one task's thresholds have fired so far (owned by the ticker thread).

    Made for every task that starts: the counters below are class attributes until a tick
    first changes them (two assignments a task, not thirteen).
    """

    next_after: float | None = None
    after_count = 0
    marks_done = 0
    mem_above = False
    mem_crossings = 0
    condition_done = False
    condition_error: str | None = None
    timeout_done = False
    on_condition_error: Callable[[Task, BaseException], Any] | None = None
    #: The ``track()`` loop running directly in the task that feeds its progress, if any.
    feeder: Task | None = None
    #: The count and total the feeder last gave the task: when the task's differ, the task
    #: counts itself and the feeder is let go.
    fed: tuple[int, int | None] | None = None

    def __init__(
        self,
        task: Task,
        *,
        on_condition_error: Callable[[Task, BaseException], Any] | None = None,
    ) -> None:
        self.task = task
        if on_condition_error is not None:
            self.on_condition_error = on_condition_error
        opts = task.options
        if opts.after is not None:
            self.next_after = opts.after
        elif opts.every is not None:
            self.next_after = opts.every

    def __repr__(self) -> str:
        return f"Watch({self.task!r}, after_count={self.after_count}, marks={self.marks_done})"

    def read_feed(self) -> None:
        """Copy the feeding loop's count, total and unit into the task (the ticker's read).

        The loop counts in C; reading it here is the only cost of feeding, once per tick.
        """
        loop, task = self.feeder, self.task
        if loop is None:
            return
        if self.fed is not None and self.fed != (task.n, task.total):
            self.feeder = self.fed = None  # the task counts itself now: leave it alone
            return
        n, total = loop.n, loop.total
        task.total = total
        task.set(n)
        task.unit = loop.unit
        self.fed = (n, total)

    def check(self, rss: int | None = None) -> list[Due]:
        """Return the thresholds crossed since the last call (each fires as documented)."""
        task, opts, due = self.task, self.task.options, []
        elapsed = task.elapsed
        if self.next_after is not None and elapsed >= self.next_after:
            self.after_count += 1
            due.append(Due("after", self.after_count))
            self.next_after = (
                None if opts.every is None else next_mark(self.next_after, opts.every, elapsed)
            )
        progress = task.progress
        if progress is not None:
            crossed = None
            while (
                self.marks_done < len(opts.progress) and progress >= opts.progress[self.marks_done]
            ):
                crossed = opts.progress[self.marks_done]
                self.marks_done += 1
            if crossed is not None:  # several marks in one tick: one notice, the highest
                due.append(Due("progress", crossed, crossed))
        if opts.mem is not None and rss is not None:
            if rss > opts.mem and not self.mem_above:
                self.mem_above = True
                self.mem_crossings += 1
                due.append(Due("memory", self.mem_crossings, rss))
            elif rss <= opts.mem:
                self.mem_above = False
        if opts.when is not None and not self.condition_done and self.condition_error is None:
            try:
                hit = bool(opts.when(task))
            except Exception as exc:  # a broken predicate is reported, never raised
                self.condition_error = f"{type(exc).__name__}: {exc}"
                task.note(f"when= predicate failed: {self.condition_error}")
                hit = False
            if hit:
                self.condition_done = True
                due.append(Due("condition"))
        if opts.timeout is not None and not self.timeout_done and elapsed >= opts.timeout:
            self.timeout_done = True
            task.timeout_hit = True
            due.append(Due("timeout", "passed"))
        return due


def next_mark(mark: float, every: float, elapsed: float) -> float | None:
    """The first of ``mark + k * every`` (k >= 1) past ``elapsed``: marks missed while the
    process was asleep are skipped, not fired as a burst.

    Computed, not counted up to, so no clock and no step can make it loop: when ``every`` is
    too small to move ``elapsed`` the next mark is just past it (one notice per tick at
    most). ``None`` (no more marks) when ``every`` is not positive or the clock not finite.
    """
    if not (every > 0 and math.isfinite(every) and math.isfinite(elapsed)):
        return None
    passed = (elapsed - mark) / every
    following = mark + (math.floor(passed) + 1) * every if math.isfinite(passed) else elapsed
    if not following > elapsed:  # rounding, or a step below the clock's resolution
        following = max(elapsed + every, math.nextafter(elapsed, math.inf))
    return following


def never_applied(task: Task) -> str | None:
    """What to say about ``task``'s progress marks when it ended with no total, so that none
    could ever apply: ``"--progress 50% never applied: no total"`` (``progress`` for a task
    that is not a cell); ``None`` when there is nothing to say."""
    marks = task.options.progress
    if not marks or task.total is not None or not task.done:
        return None
    option = "--progress" if task.kind == "cell" else "progress"
    shown = ", ".join(format_percent(mark) for mark in marks)
    return f"{option} {shown} never applied: no total"
