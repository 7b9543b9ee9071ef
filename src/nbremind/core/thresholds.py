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
from typing import Any, NamedTuple, Protocol

from .notice import format_duration, format_percent
from .task import Task

__all__ = [
    "GPU_IDLE",
    "LIMIT_SIGNAL_AFTER",
    "Due",
    "GpuReading",
    "MemoryReading",
    "Readings",
    "Watch",
    "never_applied",
    "next_mark",
    "resolve_limit",
    "unapplied",
]

#: Utilisation (percent) below which a GPU counts as idle for ``stall``.
GPU_IDLE = 5.0


class MemoryReading(NamedTuple):
    """The memory a ``mem_limit`` is judged by, as the OOM killer sees it: ``used`` bytes
    (a memory-limited cgroup's working set, else the process's RSS -- a command's: its
    process tree's), ``total`` bytes a percent is of (the cgroup's limit, else the RAM;
    ``None``: unknown) and ``source``, what was measured (``"cgroup v2"``, ``"process
    RSS"``)."""

    used: int | None
    total: int | None
    source: str


class GpuReading(NamedTuple):
    """The GPUs this process uses: memory ``used`` by it and ``total`` on those devices
    (bytes), their utilisation in percent (``None``: not told), and how many devices."""

    used: int | None
    total: int | None
    util: float | None
    devices: int = 0


class Readings(Protocol):
    """What a tick measured beyond the process's RSS, read only when a threshold asks."""

    def memory(self, task: Task, rss: int | None) -> MemoryReading | None:
        """The reading ``task``'s ``mem_limit`` is judged by (``rss``: the task's own)."""

    def gpu(self) -> GpuReading | None:
        """The GPUs of this process, or ``None`` where no GPU or library answers."""


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
    # ``stall``: the count last seen, when (elapsed seconds) it last moved, whether the task
    # is stalled now and how often it was; ``stall_watched``: it had progress (or a GPU) to
    # watch at some tick; ``gpu_busy_at``: the last tick its GPU was not idle
    last_n = 0
    moved_at = 0.0
    stalled = False
    stalls = 0
    stall_watched = False
    stall_by_gpu = False
    gpu_busy_at: float | None = None
    gpu_above = False
    gpu_crossings = 0
    slower_done = False
    #: Elapsed seconds when ``mem_limit`` stopped the task (``None``: it has not).
    limit_hit_at: float | None = None
    limit_signalled = False
    limit_unknown = False

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

    def check(self, rss: int | None = None, readings: Readings | None = None) -> list[Due]:
        """Return the thresholds crossed since the last call (each fires as documented);
        ``rss`` is the task's memory, ``readings`` what else the tick can measure."""
        task, opts = self.task, self.task.options
        due: list[Due] = []
        elapsed = task.elapsed
        if opts.mem_limit is not None and readings is not None:
            self._check_limit(task, rss, readings, elapsed, due)
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
        if opts.stall is not None:
            self._check_stall(task, opts.stall, readings, elapsed, due)
        if (
            opts.slower is not None
            and not self.slower_done
            and task.usual is not None
            and elapsed >= opts.slower * task.usual
        ):
            self.slower_done = True
            due.append(Due("slower", 1, task.usual))
        if opts.gpu_mem is not None and readings is not None:
            self._check_gpu_mem(opts.gpu_mem, readings.gpu(), due)
        return due

    def _check_limit(
        self, task: Task, rss: int | None, readings: Readings, elapsed: float, due: list[Due]
    ) -> None:
        """``mem_limit``: once the memory passes it, stop the task (``mem_limit`` due with
        ``(used, limit, source)``); a second ``"signal"`` due a second later if it still runs
        (its thread is stuck where an exception cannot reach it)."""
        if self.limit_hit_at is None and task.stopped_by is not None:
            self.limit_hit_at = elapsed  # stopped by the guard: its follow-up from here
        if self.limit_hit_at is not None:
            if not self.limit_signalled and elapsed - self.limit_hit_at >= LIMIT_SIGNAL_AFTER:
                self.limit_signalled = True
                due.append(Due("mem_limit", "signal"))
            return
        reading = readings.memory(task, rss)
        if reading is None or reading.used is None:
            return
        limit = resolve_limit(task.options.mem_limit, reading.total)
        if limit is None:
            if not self.limit_unknown:
                self.limit_unknown = True
                option = "--mem-limit" if task.kind in ("cell", "command") else "mem_limit"
                task.note(f"{option} {task.options.mem_limit!r} not applied: no limit known")
            return
        if reading.used >= limit:
            self.limit_hit_at = elapsed
            due.append(Due("mem_limit", "stop", (reading.used, limit, reading.source)))

    def _check_stall(
        self,
        task: Task,
        stall: float,
        readings: Readings | None,
        elapsed: float,
        due: list[Due],
    ) -> None:
        """``stall``: the progress (else a GPU's work) has not moved for ``stall`` seconds:
        one ``stall`` due, then one when it moves again."""
        n = task.n
        has_progress = (
            n != 0
            or task.total is not None
            or self.feeder is not None
            or task.tqdm_feed is not None
            or task.kind == "loop"
        )
        if has_progress:
            if task.unwatched is not None:
                task.unwatched = None
            self.stall_by_gpu = False
            moved = n != self.last_n
            self.last_n = n
        else:
            gpu = readings.gpu() if readings is not None else None
            if gpu is None or gpu.util is None:
                self.moved_at = elapsed  # nothing to watch yet: no stall can start
                if elapsed >= stall and task.unwatched is None and "stall" not in task.defaulted:
                    option = "--stall" if task.kind in ("cell", "command") else "stall"
                    task.unwatched = (
                        f"{option} {format_duration(stall)} cannot apply: no progress to watch "
                        "(advance(), track(), a tqdm bar) and no GPU"
                    )
                return
            self.stall_by_gpu = True
            moved = gpu.util >= GPU_IDLE
        self.stall_watched = True
        if moved:
            if self.stalled:
                self.stalled = False
                due.append(
                    Due("stall", f"{self.stalls}-moving", ("moving", elapsed - self.moved_at))
                )
            self.moved_at = elapsed
        elif not self.stalled and elapsed - self.moved_at >= stall:
            self.stalled = True
            self.stalls += 1
            how = "gpu-idle" if self.stall_by_gpu else "stalled"
            due.append(Due("stall", self.stalls, (how, elapsed - self.moved_at)))

    def _check_gpu_mem(self, spec: int | float, gpu: GpuReading | None, due: list[Due]) -> None:
        """``gpu_mem``: a ``memory`` due each time the GPU memory rises above the limit."""
        if gpu is None or gpu.used is None:
            return
        limit = resolve_limit(spec, gpu.total)
        if limit is None:
            return
        if gpu.used > limit and not self.gpu_above:
            self.gpu_above = True
            self.gpu_crossings += 1
            due.append(Due("memory", f"gpu-{self.gpu_crossings}", ("gpu", gpu.used)))
        elif gpu.used <= limit:
            self.gpu_above = False


#: Seconds after ``mem_limit`` stopped a task at which a task still running is signalled.
LIMIT_SIGNAL_AFTER = 1.0


def resolve_limit(spec: int | float | None, total: int | None) -> int | None:
    """The bytes a limit of ``spec`` stands for: itself when a size (an ``int``), its share
    of ``total`` when a percent (a float; ``None`` when ``total`` is unknown)."""
    if spec is None:
        return None
    if isinstance(spec, int):
        return spec
    if total is None:
        return None
    return int(spec * total)


def unapplied(task: Task, watch: Watch | None) -> list[str]:
    """What to say at ``task``'s end about the new thresholds that could not apply: a
    ``stall`` with no progress (nor GPU) to watch, a ``slower`` with no usual duration."""
    opts, lines = task.options, []
    flags = task.kind in ("cell", "command")  # (options typed as flags)
    watched = watch is not None and watch.stall_watched
    own = task.defaulted.isdisjoint  # (a default of the settings is not said to fail)
    if opts.stall is not None and not watched and task.elapsed >= opts.stall and own(["stall"]):
        option = "--stall" if flags else "stall"
        lines.append(
            f"{option} never applied: no progress to watch "
            "(advance(), track(), a tqdm bar) and no GPU"
        )
    # (a task shorter than a second may end before its usual duration was read)
    if opts.slower is not None and task.usual is None and own(["slower"]) and task.elapsed >= 1:
        option = "--slower" if flags else "slower"
        lines.append(f"{option} never applied: fewer than 3 succeeded runs to compare with")
    return lines


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
