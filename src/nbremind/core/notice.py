"""Notices: the frozen message a channel delivers, and the text nbremind writes for each."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

from .task import MAX_COUNT, TaskSnapshot, type_name, value_repr

__all__ = [
    "Notice",
    "format_duration",
    "format_percent",
    "format_size",
    "json_value",
    "make_notice",
    "metric_text",
]

#: Metrics shown in a notice's body.
_METRICS_SHOWN = 5
#: How deep :func:`json_value` follows lists and mappings; deeper values become text.
_JSON_DEPTH = 16
#: Characters of the text a value that is not JSON becomes.
_JSON_TEXT_CHARS = 200


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
    """``3.2 s``, ``41 s``, ``12 min``, ``1 h 5 min``, ``2 d 3 h`` (``?`` when not finite)."""
    if not _finite(seconds):
        return "?"
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
    """Bytes in decimal units: ``512 MB``, ``8.2 GB`` (``?`` when not finite)."""
    if not _finite(size):
        return "?"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            value = size / scale
            return f"{value:.1f} {unit}" if value < 100 else f"{value:.0f} {unit}"
    return f"{size:.0f} B"


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except (OverflowError, TypeError):  # an int too large for a float
        return False


def format_percent(fraction: float) -> str:
    """``50%``, ``12.5%`` (``?%`` when not finite)."""
    pct = fraction * 100
    if not _finite(pct):
        return "?%"
    return f"{pct:.0f}%" if abs(pct - round(pct)) < 0.05 else f"{pct:.1f}%"


def _count(value: object) -> str:
    """A count with thousands separators (``12,345``); any other value by its repr."""
    if type(value) is int and -MAX_COUNT <= value <= MAX_COUNT:
        return f"{value:,}"
    return value_repr(value)


def metric_text(value: object) -> str:
    """A metric's value as notices show it: a float with 4 significant digits (``0.1235``,
    ``nan``, ``inf``), anything else by its ``repr``, cut to 200 characters. Never raises:
    a value whose ``repr`` raises is ``<unprintable TYPE>``."""
    try:
        if isinstance(value, float):
            return f"{float.__float__(value):.4g}"
    except Exception:  # isinstance() asks a __class__ property, which may raise
        pass
    return value_repr(value)


def json_value(value: object, depth: int = _JSON_DEPTH) -> object:
    """``value`` as strict JSON can carry it (``json.dumps(..., allow_nan=False)`` accepts
    the result); never raises.

    ``None``, booleans, text and ints of 64 bits stay as they are; a float that is not
    finite becomes ``None``; lists, tuples and mappings are converted item by item (keys
    become text), ``depth`` levels deep; a numpy scalar becomes its Python value. Anything
    else -- a larger int, an object, a set -- becomes text: its ``str()``, cut to 200
    characters, or ``<unprintable TYPE>`` when that raises. Known secrets are masked in
    that text, and in text that is a ``str`` subclass.
    """
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        number = cast(int, value)
        return number if -MAX_COUNT <= number <= MAX_COUNT else value_repr(number)
    if kind is float:
        return value if math.isfinite(cast(float, value)) else None
    try:
        if isinstance(value, float):
            return json_value(float.__float__(value), depth)
        if isinstance(value, int) and not isinstance(value, bool):
            return json_value(int.__index__(value), depth)
        if isinstance(value, str):
            return _json_text(value)
        if depth > 0:
            if isinstance(value, (list, tuple)):
                return [json_value(item, depth - 1) for item in list(value)]
            if isinstance(value, dict):
                return {
                    key if type(key) is str else _json_text(key): json_value(item, depth - 1)
                    for key, item in list(value.items())
                }
        item = getattr(value, "item", None)  # numpy (and torch) scalars
        if callable(item) and kind.__module__.partition(".")[0] in ("numpy", "torch"):
            native = item()
            if native is None or type(native) in (bool, int, float, str):
                return json_value(native, depth)
    except Exception:
        pass
    return _json_text(value)


def _json_text(value: object) -> str:
    """``str(value)`` (known secrets masked), cut to 200 characters; never raises."""
    try:
        from .secrets import redact  # not at import: it brings logging

        text = redact(str.__str__(str(value)))
    except Exception:
        return f"<unprintable {type_name(value)}>"
    return text if len(text) <= _JSON_TEXT_CHARS else text[:_JSON_TEXT_CHARS] + "…"


#: Events told while the task runs about the work it follows, with the detail's words
#: (``"task ('load-3') failed on worker tcp://…: KeyError: 'x'"``), and their mark.
_AT_WORK = {"failure": "✗", "timeout": "⏱", "worker": "⚠"}


def _title(event: str, t: TaskSnapshot, detail: object) -> str:
    name = t.name
    if t.kind == "batch" and event in ("success", "failure"):
        return _batch_title(event, t)
    if event == "input":
        return f"⌨ {name} is waiting for your input"
    if event == "success":
        return f"✓ {name} finished"
    if event in _AT_WORK and t.state == "running" and detail is not None:
        # what went wrong in work the task follows, told while it goes on
        words = detail[0] if isinstance(detail, tuple) else detail
        return f"{_AT_WORK[event]} {name}{'' if event == 'worker' else ':'} {words}"
    if event == "failure":
        if t.error is not None and t.error.type == "TaskMemoryLimit" and t.error.message:
            return f"■ {name} {t.error.message}"  # "stopped at 30.2 GB of 30.0 GB: memory limit"
        return f"✗ {name} failed"
    if event == "cancel":
        return f"■ {name} cancelled"
    if event == "timeout":
        if t.state == "running":
            return f"⏱ {name} passed its timeout ({format_duration(t.elapsed)})"
        return f"⏱ {name} timed out ({format_duration(t.elapsed)})"
    if event == "after":
        return f"⏱ {name} still running ({format_duration(t.elapsed)})"
    if event == "progress":
        mark = detail if isinstance(detail, float) else (t.progress or 0.0)
        return f"{name} reached {format_percent(mark)}"
    if event == "memory":
        if isinstance(detail, tuple) and len(detail) == 2 and detail[0] == "gpu":
            return f"⚠ {name} GPU memory {format_size(detail[1])}"
        rss = detail if isinstance(detail, int) else (t.rss or 0)
        return f"⚠ {name} memory {format_size(rss)}"
    if event == "stall":
        return _stall_title(name, t, detail)
    if event == "missed":
        return _missed_title(name, detail)
    if event == "requeue" and isinstance(detail, str):
        return f"↻ {name}: {detail}"  # "↻ sweep: job 4242_3 preempted"
    if event == "slower":
        usual = detail if isinstance(detail, (int, float)) else (t.usual or 0.0)
        return (
            f"🐢 {name} slower than usual: {format_duration(t.elapsed)} so far, "
            f"usually {format_duration(usual)}"
        )
    if event == "condition":
        return f"{name}: condition met"
    if event == "start":
        return f"▶ {name} started"
    return f"{name}: {event}"


def _missing(event: str, detail: object) -> bool:
    """Whether a ``missed`` notice tells of a run that did not come (not that it is back)."""
    return event == "missed" and not (isinstance(detail, tuple) and detail[:1] == ("back",))


def _missed_title(name: str, detail: object) -> str:
    """``✗ nightly-etl did not run (expected 02:00, grace 1 h)``, ``✗ nightly-etl did not
    finish (started 02:00, max 30 min)``, ``✓ nightly-etl is back``: ``detail`` is ``(how,
    "02:00", seconds)``."""
    how, at, seconds = detail if isinstance(detail, tuple) and len(detail) == 3 else ("", "", 0)
    duration = format_duration(seconds if isinstance(seconds, (int, float)) else 0.0)
    if how == "back":
        return f"✓ {name} is back"
    if how == "late":
        return f"✗ {name} did not finish (started {at}, max {duration})"
    return f"✗ {name} did not run (expected {at}, grace {duration})"


def _stall_title(name: str, t: TaskSnapshot, detail: object) -> str:
    """``⏸ train stalled: no progress for 10 min (at 40%, 40/100)``, ``⏸ train stalled: GPU
    idle (< 5 %) for 10 min``, ``▶ train moving again after 14 min``."""
    how, seconds = detail if isinstance(detail, tuple) and len(detail) == 2 else ("", 0.0)
    duration = format_duration(seconds if isinstance(seconds, (int, float)) else 0.0)
    if how == "moving":
        return f"▶ {name} moving again after {duration}"
    if how == "gpu-idle":
        return f"⏸ {name} stalled: GPU idle (< 5 %) for {duration}"
    if t.total:
        at = f" (at {format_percent(t.n / t.total)}, {_count(t.n)}/{_count(t.total)})"
    elif t.n:
        at = f" (at {_count(t.n)})"
    else:
        at = ""
    return f"⏸ {name} stalled: no progress for {duration}{at}"


def _batch_title(event: str, t: TaskSnapshot) -> str:
    """``✓ 14 cells finished in 12 min`` / ``✗ cell [7] failed after 3 min: ValueError: …``
    (a batch task is named for what it says: ``14 cells``, ``cell [7]``)."""
    duration = format_duration(t.elapsed)
    if event == "success":
        return f"✓ {t.name} finished in {duration}"
    title = f"✗ {t.name} failed after {duration}"
    if t.error is None:
        return title
    error = f"{t.error.type}: {t.error.message}" if t.error.message else t.error.type
    return f"{title}: {error}"


def _mark_count(mark: float, total: int) -> int:
    """The count at which ``mark`` is reached: the least ``n`` with ``n / total >= mark``
    (as the tick compares them, in floats)."""
    n = min(max(math.ceil(mark * total), 0), total)
    for _ in range(4):  # the product's rounding is a unit at most (a few for huge totals)
        if n > 0 and (n - 1) / total >= mark:
            n -= 1
        elif n < total and n / total < mark:
            n += 1
        else:
            break
    return n


def _body(event: str, t: TaskSnapshot, detail: object = None) -> str:
    lines: list[str] = []
    reached = event == "progress" and isinstance(detail, float) and _finite(detail)
    if reached:  # the mark reached, not the count by the time the notice is made
        mark = cast(float, detail)
        if t.total:
            count = _mark_count(mark, t.total)
            count_text = f"{_count(count)}/{_count(t.total)}"
            lines.append(f"Reached {format_percent(mark)} ({count_text})")
        else:
            lines.append(f"Reached {format_percent(mark)}")
    if t.error is not None and event in ("failure", "cancel", "timeout"):
        lines.append(f"{t.error.type}: {t.error.message}" if t.error.message else t.error.type)
    elif isinstance(detail, tuple) and len(detail) == 2 and event in _AT_WORK:
        lines.append(str(detail[1]))  # (the words of the title, then more: a stderr's tail)
    state = t.state  # a str enum: compared with its text, without a property call
    duration = format_duration(t.elapsed)
    if state == "succeeded":
        lines.append(f"Took {duration}")
    elif state in ("failed", "cancelled", "timed_out"):
        lines.append(f"After {duration}")
    elif event != "start":
        lines.append(f"Running for {duration}")
    if t.usual is not None and state == "running" and event != "slower":
        lines.append(f"Usually {format_duration(t.usual)}")
    if reached:  # the count stated is the mark's, above
        pass
    elif t.total:
        shown = f"{format_percent(t.n / t.total)} ({_count(t.n)}/{_count(t.total)})"
        lines.append(f"Progress: {shown}")
    elif t.n:
        lines.append(f"Done: {_count(t.n)}")
    if t.eta is not None and state == "running" and event != "start":
        lines.append(f"ETA: {format_duration(t.eta)}")
    if t.metrics:
        shown = ", ".join(
            f"{k}={metric_text(v)}" for k, v in list(t.metrics.items())[:_METRICS_SHOWN]
        )
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
        body=_body(event, task, detail),
        urgency="critical"
        if event in ("failure", "input") or _missing(event, detail)
        else "normal",
        created=created,
        task=task,
        channels=channels,
    )
