"""Run-history rows as text: a table for ``nbremind history`` and ``%remind history`` (with
control characters escaped, so a name cannot forge a row or colour the terminal), and JSON
objects with ISO-8601 times for ``nbremind history --json``. The table shows, for each run,
the runs nested in it that have a row (``nested``) and the short ones folded into it
(``folded``: how many, and their time)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from ..core.notice import format_duration, format_size
from ..core.parse import printable

__all__ = ["HEADER", "folded_text", "iso_time", "json_row", "table_lines"]

HEADER = (
    "start",
    "name",
    "nested",
    "folded",
    "kind",
    "state",
    "duration",
    "progress",
    "peak RSS",
    "notices",
    "error / reason",
)


def folded_text(row: Mapping[str, Any]) -> str:
    """The short nested runs folded into a run and their time, ``"1,240 in 3.2 s"`` (``""``
    when none)."""
    count = row.get("folded") or 0
    if not count:
        return ""
    seconds = float(row.get("folded_duration") or 0.0)
    took = f"{seconds * 1000:.0f} ms" if seconds < 1 else format_duration(seconds)
    return f"{int(count):,} in {took}"


def iso_time(seconds: float | None) -> str | None:
    """Epoch seconds as ISO-8601 local time with its offset (``None`` stays ``None``)."""
    if seconds is None:
        return None
    return dt.datetime.fromtimestamp(seconds).astimezone().isoformat(timespec="seconds")


def json_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """A run as a JSON-ready object: every field, ``start``/``end``/``pid_start`` as
    ISO-8601 text."""
    out = dict(row)
    for key in ("start", "end", "pid_start"):
        out[key] = iso_time(row.get(key))
    return out


def _cells(row: Mapping[str, Any]) -> tuple[str, ...]:
    start = row.get("start")
    when = "" if start is None else dt.datetime.fromtimestamp(start).strftime("%Y-%m-%d %H:%M:%S")
    duration = row.get("duration")
    n, total = row.get("n"), row.get("total")
    progress = "" if n is None else (f"{n}/{total}" if total else str(n))
    peak = row.get("peak_rss")
    why = row.get("reason") or ""
    if row.get("error_type"):
        message = row.get("error_message")
        why = f"{row['error_type']}: {message}" if message else str(row["error_type"])
        if row.get("reason"):
            why = f"{row['reason']} ({why})"
    cells = (
        when,
        str(row.get("name", "")),
        str(row.get("nested") or ""),
        folded_text(row),
        str(row.get("kind", "")),
        str(row.get("state", "")),
        "" if duration is None else format_duration(float(duration)),
        progress,
        "" if not peak else format_size(float(peak)),
        str(row.get("notices") or 0),
        why.replace("\n", " ")[:80],
    )
    return tuple(printable(cell) for cell in cells)


def table_lines(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Aligned text lines: a header, then one line per run (``[]`` when there is none)."""
    body = [_cells(row) for row in rows]
    if not body:
        return []
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(HEADER)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        for cells in (HEADER, *body)
    ]
