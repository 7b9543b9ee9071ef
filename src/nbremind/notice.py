"""Notices: the frozen message a channel delivers, and the text nbremind writes for each."""

from __future__ import annotations

from dataclasses import dataclass

from .task import TaskSnapshot

__all__ = ["Notice", "format_duration", "format_size", "make_notice"]


@dataclass(frozen=True)
class Notice:
    """One message about one task event, the same for every channel it goes to."""

    id: str
    event: str
    title: str
    body: str
    urgency: str  # "normal" or "critical"
    created: float  # wall-clock seconds
    task: TaskSnapshot
    channels: tuple[str, ...] | None = None  # None: the session's default channels


def format_duration(seconds: float) -> str:
    """``3.2 s``, ``41 s``, ``12 min``, ``1 h 5 min``, ``2 d 3 h``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        sec = int(seconds % 60)
        return f"{minutes} min" if minutes >= 10 or not sec else f"{minutes} min {sec} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def format_size(size: float) -> str:
    """Bytes in decimal units: ``512 MB``, ``8.2 GB``."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{size:.0f} B"


def _percent(fraction: float) -> str:
    pct = fraction * 100
    return f"{pct:.0f}%" if abs(pct - round(pct)) < 0.05 else f"{pct:.1f}%"


def _title(event: str, t: TaskSnapshot, detail: object) -> str:
    name = t.name
    if event == "success":
        return f"✓ {name} finished"
    if event == "failure":
        return f"✗ {name} failed"
    if event == "cancel":
        return f"■ {name} cancelled"
    if event == "timeout":
        if t.state.value == "running":
            return f"⏱ {name} passed its timeout ({format_duration(t.elapsed)})"
        return f"⏱ {name} timed out ({format_duration(t.elapsed)})"
    if event == "after":
        return f"⏱ {name} still running ({format_duration(t.elapsed)})"
    if event == "progress":
        mark = detail if isinstance(detail, float) else (t.progress or 0.0)
        return f"{name} reached {_percent(mark)}"
    if event == "memory":
        rss = detail if isinstance(detail, int) else (t.rss or 0)
        return f"⚠ {name} memory {format_size(rss)}"
    if event == "condition":
        return f"{name}: condition met"
    if event == "start":
        return f"▶ {name} started"
    return f"{name}: {event}"


def _body(event: str, t: TaskSnapshot) -> str:
    lines: list[str] = []
    if t.error is not None and event in ("failure", "cancel", "timeout"):
        lines.append(f"{t.error.type}: {t.error.message}" if t.error.message else t.error.type)
    state = t.state.value
    duration = format_duration(t.elapsed)
    if state == "succeeded":
        lines.append(f"Took {duration}")
    elif state in ("failed", "cancelled", "timed_out"):
        lines.append(f"After {duration}")
    elif event != "start":
        lines.append(f"Running for {duration}")
    if t.total:
        lines.append(f"Progress: {_percent(t.n / t.total)} ({t.n:,}/{t.total:,})")
    elif t.n:
        lines.append(f"Done: {t.n:,}")
    if t.eta is not None and state == "running" and event != "start":
        lines.append(f"ETA: {format_duration(t.eta)}")
    if t.metrics:
        shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                          for k, v in list(t.metrics.items())[:5])
        lines.append(shown)
    if t.notes:
        lines.append(t.notes[-1])
    where = []
    if t.source:
        where.append(t.source)
    if t.host:
        where.append(f"on {t.host}")
    if where:
        lines.append(" ".join(where))
    return "\n".join(lines)


def make_notice(
    event: str,
    task: TaskSnapshot,
    *,
    created: float,
    key: object = 0,
    detail: object = None,
    channels: tuple[str, ...] | None = None,
) -> Notice:
    """Build the notice for ``event`` on ``task``; ``key`` tells repeated events apart."""
    return Notice(
        id=f"{task.id}:{event}:{key}",
        event=event,
        title=_title(event, task, detail),
        body=_body(event, task),
        urgency="critical" if event == "failure" else "normal",
        created=created,
        task=task,
        channels=channels,
    )
