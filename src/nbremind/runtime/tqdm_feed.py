"""Existing tqdm bars feed the progress of the cell or block they run in.

Nothing here imports tqdm: the session's tick calls :func:`feed` only when ``tqdm.std`` is
already in ``sys.modules`` (no bar can exist otherwise) and reads the bars tqdm keeps in
``tqdm.std.tqdm._instances`` -- every live bar of every tqdm class (``tqdm.tqdm``,
``tqdm.auto``, ``tqdm.notebook``, ``tqdm.asyncio``, ...) is registered there.

A running task of kind ``cell``, ``auto``, ``block`` or ``function`` that counts nothing
itself (no total and ``n == 0``) takes ``n`` and ``total`` from the outermost live bar that
started after it did: the smallest ``pos`` (tqdm's screen line), then the earliest start.
From then on the task is fed by tqdm: the outermost live bar keeps feeding it (a later loop's
bar takes over once the first one closed). tqdm updates a bar's ``n`` when it redraws it
(every 0.1 s by default) and when the loop ends, so the task lags its loop by at most that,
and the bar that fed the task last is read once more when it is gone and when the task
ends. That last read is from the bar's ``__dict__``, which the task keeps instead of the bar:
a loop's bar is freed as soon as its loop ends (before any tick could see it closed), and
holding the bar itself would keep a bar its user dropped on screen.

A task a ``track()`` loop feeds already (see :mod:`nbremind.core.thresholds`) is not offered to
the bars, and a task a bar feeds (:func:`fed_by_bar`) is not offered to the loops.
"""

from __future__ import annotations

import math
import sys
import weakref
from collections.abc import Iterable
from typing import Any

from ..core.task import MAX_COUNT, Task

__all__ = ["fed_by_bar", "feed", "final_read", "live_bars"]

#: Seconds the tick waits for tqdm's lock before copying the bars without it.
LOCK_TIMEOUT = 0.05


def live_bars() -> list[Any]:
    """tqdm's live bars, copied under tqdm's own lock (``[]`` without tqdm or on a race)."""
    std = sys.modules.get("tqdm.std")
    cls = getattr(std, "tqdm", None) if std is not None else None
    instances = getattr(cls, "_instances", None)
    if instances is None:
        return []
    held = _acquire(_locks(std, cls))
    try:
        return list(instances)
    except RuntimeError:  # the set changed size while copied (no lock): next tick
        return []
    finally:
        for lock in reversed(held):
            lock.release()


def _locks(std: Any, cls: Any) -> list[Any]:
    """The locks tqdm takes around ``_instances`` (never created here)."""
    lock = getattr(cls, "_lock", None)
    if lock is None:  # no bar made the class lock yet: tqdm's write lock is class-level
        writer = getattr(std, "TqdmDefaultWriteLock", None)
        found = [vars(writer).get(name) for name in ("mp_lock", "th_lock")] if writer else []
        return [lk for lk in found if lk is not None]
    inner = getattr(lock, "locks", None)  # TqdmDefaultWriteLock ignores acquire()'s result
    return list(inner) if isinstance(inner, list) else [lock]


def _acquire(locks: list[Any]) -> list[Any]:
    """Acquire each lock with a short timeout; all of them, or none."""
    held: list[Any] = []
    for lock in locks:
        try:
            ok = lock.acquire(True, LOCK_TIMEOUT)
        except Exception:
            ok = False
        if not ok:
            for taken in reversed(held):
                taken.release()
            return []
        held.append(lock)
    return held


def _number(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    number = max(0, int(value))
    return number if number <= MAX_COUNT else None  # what a task (and its history) can hold


class _Feed:
    """The bar feeding a task: a weak reference to it, and its attributes."""

    __slots__ = ("attrs", "ref")

    def __init__(self, bar: Any) -> None:
        self.ref = weakref.ref(bar)
        attrs = getattr(bar, "__dict__", None)
        self.attrs: dict[str, Any] | None = attrs if isinstance(attrs, dict) else None


def _read(task: Task, attrs: dict[str, Any]) -> None:
    n = _number(attrs.get("n"))
    if n is None:
        return
    task.total = _number(attrs.get("total"))
    task.set(n)


def feed(tasks: Iterable[Task]) -> None:
    """Let live tqdm bars feed ``tasks`` that count nothing themselves (called on each tick)."""
    wanting = [
        t
        for t in tasks
        if not t.done
        and t.start_wall is not None
        and (t.tqdm_feed is not None or (t.total is None and t.n == 0))
    ]
    if not wanting:
        return
    bars = []
    for bar in live_bars():
        start = getattr(bar, "start_t", None)
        if isinstance(start, (int, float)) and not getattr(bar, "disable", False):
            pos = getattr(bar, "pos", 0)
            bars.append((abs(pos) if isinstance(pos, int) else 0, float(start), bar))
    # the latest-started task first: the bars started after it are a subset of those
    # started after an earlier task, so one sweep finds every task's outermost bar
    bars.sort(key=lambda b: b[1], reverse=True)
    wanting.sort(key=lambda t: t.start_wall or 0.0, reverse=True)
    best: tuple[int, float, Any] | None = None
    i = 0
    for task in wanting:
        started = task.start_wall or 0.0
        while i < len(bars) and bars[i][1] >= started:
            if best is None or bars[i][:2] < best[:2]:
                best = bars[i]
            i += 1
        outermost = best[2] if best is not None else None
        if outermost is None:
            final_read(task)  # its bar closed: keep its final count
            continue
        fed = task.tqdm_feed
        if not isinstance(fed, _Feed) or fed.ref() is not outermost:
            if isinstance(fed, _Feed) and fed.attrs is not None:
                _read(task, fed.attrs)  # the last word of the bar before, then this one
            fed = task.tqdm_feed = _Feed(outermost)
        if fed.attrs is not None:
            _read(task, fed.attrs)


def fed_by_bar(task: Task) -> bool:
    """Whether a tqdm bar feeds (or fed) ``task``'s progress."""
    return task.tqdm_feed is not None


def final_read(task: Task) -> None:
    """Read the bar that last fed ``task`` once more; let go of it once it is gone."""
    fed = task.tqdm_feed
    if not isinstance(fed, _Feed) or fed.attrs is None:
        return
    _read(task, fed.attrs)
    if fed.ref() is None:
        fed.attrs = None  # read for the last time: keep nothing of it
