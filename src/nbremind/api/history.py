"""``nbremind.history()``: the run history as a pandas DataFrame (pandas imported here only)."""

from __future__ import annotations

from typing import Any

from ..store.runs import FIELDS, History, parse_since

__all__ = ["KINDS", "history_frame", "history_rows"]

#: Columns holding epoch seconds, shown as local date-times in the DataFrame.
_TIMES = ("start", "end", "pid_start")
#: The kinds of task the history records: ``%%remind`` cells (``auto``: picked up by
#: ``%remind auto``; ``batch``: a whole "Run All"), ``remind()`` blocks and functions,
#: ``track()`` loops, pandas calls, ``nbremind run`` commands and scheduled jobs' runs.
KINDS = ("cell", "auto", "batch", "block", "function", "loop", "pandas", "command", "job")
#: Rows read at first for a ``kind`` filter, per row asked for (then four times as many,
#: until enough match or the history has no more).
_KIND_PAGE = 4


def history_rows(
    name: str | None = None,
    state: str | None = None,
    since: object = None,
    limit: int | None = 100,
    *,
    nested: bool = False,
    kind: str | None = None,
    config: Any = None,
    history: History | None = None,
) -> list[dict[str, Any]]:
    """The runs matching the filters (``kind``: one of :data:`KINDS`, e.g. ``"job"``),
    newest first, as dicts (times in epoch seconds):
    top-level runs, each with ``nested``, the number of runs inside it that have a row, and
    ``folded`` / ``folded_duration``, the short nested runs counted in it instead (setting
    ``history_min``) and the seconds they took; every run with a row with ``nested=True``.

    Reads the history of the process's settings (``config``: the session's), or
    ``history`` when given (left open); an empty list when history is off or its file cannot
    be used. A bad ``since`` or ``kind`` raises ``ValueError``.
    """
    if kind is not None and kind not in KINDS:
        raise ValueError(f"history(kind=...): {kind!r} is not one of {', '.join(KINDS)}")
    if history is not None:
        import time

        after = parse_since(since, time.time(), "history(since=...)")
        return _query(history, name, state, after, limit, nested, kind)
    if config is None:
        from ..runtime.session import get_session

        session = get_session()
        session.history_recorder.sync()  # this process's last runs are written first
        config = session.config
    import time

    after = parse_since(since, time.time(), "history(since=...)")
    history = History.open(config)
    if history is None:
        return []
    try:
        return _query(history, name, state, after, limit, nested, kind)
    finally:
        history.close()


def _query(
    history: History,
    name: str | None,
    state: str | None,
    since: float | None,
    limit: int | None,
    nested: bool,
    kind: str | None,
) -> list[dict[str, Any]]:
    """``history.query()`` with the runs of one ``kind`` only: the newest rows are read in
    growing pages until ``limit`` of them match or none is left."""
    if kind is None:
        return history.query(name=name, state=state, since=since, limit=limit, nested=nested)
    page = None if limit is None else max(limit * _KIND_PAGE, 100)
    while True:
        rows = history.query(name=name, state=state, since=since, limit=page, nested=nested)
        matched = [row for row in rows if row.get("kind") == kind]
        if page is None or len(rows) < page or (limit is not None and len(matched) >= limit):
            return matched if limit is None else matched[:limit]
        page *= _KIND_PAGE


def history_frame(
    name: str | None = None,
    state: str | None = None,
    since: object = None,
    limit: int | None = 100,
    nested: bool = False,
    kind: str | None = None,
) -> Any:
    """The recent runs as a ``pandas.DataFrame``, newest first, one column per field
    (``start``/``end`` as time-zone-aware local date-times, ``duration`` in seconds):
    top-level runs with the count of runs inside each (``nested``) and of the short ones
    folded into it (``folded``, taking ``folded_duration`` seconds); every run with a row
    with ``nested=True``; ``kind``: the runs of one kind only (``"job"``)."""
    import datetime as dt

    import pandas as pd

    rows = history_rows(name, state, since, limit, nested=nested, kind=kind)
    frame = pd.DataFrame(rows, columns=list(FIELDS))
    local = dt.datetime.now().astimezone().tzinfo
    for column in _TIMES:
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True).dt.tz_convert(local)
    return frame
