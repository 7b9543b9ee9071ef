"""``nbremind.history()``: the run history as a pandas DataFrame (pandas imported here only)."""

from __future__ import annotations

from typing import Any

from ..store.runs import FIELDS, History, parse_since

__all__ = ["history_frame", "history_rows"]

#: Columns holding epoch seconds, shown as local date-times in the DataFrame.
_TIMES = ("start", "end", "pid_start")


def history_rows(
    name: str | None = None,
    state: str | None = None,
    since: object = None,
    limit: int | None = 100,
    *,
    nested: bool = False,
    config: Any = None,
    history: History | None = None,
) -> list[dict[str, Any]]:
    """The runs matching the filters, newest first, as dicts (times in epoch seconds):
    top-level runs, each with ``nested``, the number of runs inside it that have a row, and
    ``folded`` / ``folded_duration``, the short nested runs counted in it instead (setting
    ``history_min``) and the seconds they took; every run with a row with ``nested=True``.

    Reads the history of the process's settings (``config``: the session's), or
    ``history`` when given (left open); an empty list when history is off or its file cannot
    be used. A bad ``since`` raises ``ValueError``.
    """
    if history is not None:
        import time

        after = parse_since(since, time.time(), "history(since=...)")
        return history.query(name=name, state=state, since=after, limit=limit, nested=nested)
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
        return history.query(name=name, state=state, since=after, limit=limit, nested=nested)
    finally:
        history.close()


def history_frame(
    name: str | None = None,
    state: str | None = None,
    since: object = None,
    limit: int | None = 100,
    nested: bool = False,
) -> Any:
    """The recent runs as a ``pandas.DataFrame``, newest first, one column per field
    (``start``/``end`` as time-zone-aware local date-times, ``duration`` in seconds):
    top-level runs with the count of runs inside each (``nested``) and of the short ones
    folded into it (``folded``, taking ``folded_duration`` seconds); every run with a row
    with ``nested=True``."""
    import datetime as dt

    import pandas as pd

    rows = history_rows(name, state, since, limit, nested=nested)
    frame = pd.DataFrame(rows, columns=list(FIELDS))
    local = dt.datetime.now().astimezone().tzinfo
    for column in _TIMES:
        frame[column] = pd.to_datetime(frame[column], unit="s", utc=True).dt.tz_convert(local)
    return frame
