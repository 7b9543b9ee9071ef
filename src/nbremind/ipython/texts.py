"""The short texts the panel and the ``%%remind`` status line show (plain strings, no markup).

Everything here is plain data: the front end puts it on the page with ``textContent``.
"""

from __future__ import annotations

from ..core.notice import format_duration, format_size
from ..core.task import Task, TaskState
from ..core.thresholds import never_applied

__all__ = [
    "STATE_TEXT",
    "count_text",
    "cpu_text",
    "percent_text",
    "rate_text",
    "status_text",
]

#: Icon and word for each task state, as the panel shows them.
STATE_TEXT = {
    TaskState.PENDING: "… pending",
    TaskState.RUNNING: "▶ running",
    TaskState.SUCCEEDED: "✓ succeeded",
    TaskState.FAILED: "✗ failed",
    TaskState.CANCELLED: "■ cancelled",
    TaskState.TIMED_OUT: "⏱ timed out",
}
_ERROR_CHARS = 120


def count_text(n: int, total: int | None, unit: str | None = None) -> str:
    """``"40/100"`` when the total is known, else ``"40"``; ``"647 kB / 1.3 MB"`` when the
    ``unit`` is bytes (``"B"``)."""
    if unit == "B":
        return f"{format_size(n)} / {format_size(total)}" if total else format_size(n)
    return f"{n}/{total}" if total is not None else str(n)


def percent_text(n: int, total: int | None) -> str:
    """``"40%"``, or ``""`` without a (non-zero) total."""
    if not total:
        return ""
    return f"{min(n / total, 9.99) * 100:.0f}%"


def rate_text(rate: float | None) -> str:
    """``"1,234/s"``, ``"12.3/s"``, ``"4.5/min"``, or ``""`` when unknown."""
    if not rate or rate <= 0:
        return ""
    if rate >= 100:
        return f"{rate:,.0f}/s"
    if rate >= 1:
        return f"{rate:.1f}/s"
    return f"{rate * 60:.1f}/min"


def cpu_text(percent: float | None) -> str:
    """``"97%"`` of one core (a busy multi-threaded process may show more than 100%)."""
    return "" if percent is None else f"{percent:.0f}%"


def size_text(size: int | None, prefix: str = "") -> str:
    """``"812 MB"`` (with ``prefix``), or ``""`` when unknown."""
    return "" if size is None else f"{prefix}{format_size(size)}"


def status_text(task: Task, inner: Task | None = None) -> str:
    """The one line under a ``%%remind`` cell.

    ``▶ train 40% (40/100) · 2.1 s · ETA 3.2 s`` while it runs (with ``inner``, a running
    task inside it whose progress stands in for its own: ``▶ train · load 40% (40/100) ·
    …``), then ``✓ train finished in 4.0 s``, ``✗ train failed after 4.0 s: ValueError: bad
    row``, ``■ train cancelled after …`` or ``⏱ train timed out after …``; a ``--progress``
    mark that could never apply is said at the end (``✓ train finished in 4.0 s · --progress
    50% never applied: no total``).
    """
    line = _line(task, inner)
    unapplied = never_applied(task)  # None until the task ended
    return line if unapplied is None else f"{line} · {unapplied}"


def _line(task: Task, inner: Task | None) -> str:
    name, state, elapsed = task.name, task.state, format_duration(task.elapsed)
    if state is TaskState.SUCCEEDED:
        return f"✓ {name} finished in {elapsed}"
    if state is TaskState.FAILED:
        error = task.error
        why = ""
        if error is not None:
            why = f"{error.type}: {error.message}" if error.message else error.type
            if len(why) > _ERROR_CHARS:
                why = why[: _ERROR_CHARS - 1] + "…"
            why = f": {why}"
        return f"✗ {name} failed after {elapsed}{why}"
    if state is TaskState.CANCELLED:
        return f"■ {name} cancelled after {elapsed}"
    if state is TaskState.TIMED_OUT:
        return f"⏱ {name} timed out after {elapsed}"
    parts = [f"▶ {name}"]
    source = task if task.total or inner is None else inner
    n, total = source.n, source.total
    progress = ""
    if total:
        progress = f"{percent_text(n, total)} ({count_text(n, total, source.unit)})"
    elif n:
        progress = str(n)
    if source is not task:
        parts.append(f"{source.name} {progress}".rstrip())
    elif progress:
        parts[0] += f" {progress}"
    parts.append(elapsed)
    eta = source.eta
    if eta is not None:
        parts.append(f"ETA {format_duration(eta)}")
    if task.unwatched is not None:
        parts.append(task.unwatched)
    return " · ".join(parts)
