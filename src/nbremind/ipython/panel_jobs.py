"""The panel's "Upcoming jobs": the jobs of the settings files a session follows, each with
its schedule, its next run in local time and its last run from the history.

Read on the session's loop thread, never the kernel's: at most every :data:`JOBS_EVERY`
seconds, and at once when the session reloads its settings files (an edit). A folder whose
files define no job costs one read of those files (no cron library is imported then);
a jobs file that cannot be used shows nothing (``nbremind jobs`` tells what is wrong).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.log import logger
from ..core.notice import format_duration
from ..core.secrets import redact

if TYPE_CHECKING:
    from ..runtime.session import Session
    from ..store.runs import History

__all__ = [
    "JOBS_EVERY",
    "JOBS_SHOWN",
    "UpcomingJobs",
    "clock_text",
    "job_rows",
    "last_text",
    "next_text",
]

log = logger()

#: Seconds between two reads of the jobs and their last runs (an edit is read at once).
JOBS_EVERY = 30.0
#: Jobs listed at most (the soonest); the model says how many more there are.
JOBS_SHOWN = 10
#: Runs of a job's name looked at for its last run of kind ``job``.
_LOOK_BACK = 20


def clock_text(when: dt.datetime, now: dt.datetime) -> str:
    """``02:00`` (today or within a day), ``Thu 02:00`` (within a week), else
    ``2026-12-24 02:00``: ``when`` in the local time zone."""
    local, today = when.astimezone(), now.astimezone()
    ahead = when - now
    if local.date() == today.date() or dt.timedelta(0) <= ahead < dt.timedelta(hours=20):
        return local.strftime("%H:%M")
    if abs(ahead) < dt.timedelta(days=6):
        return local.strftime("%a %H:%M")
    return local.strftime("%Y-%m-%d %H:%M")


def next_text(when: dt.datetime | None, now: dt.datetime) -> str:
    """``in 2 h 10 min (02:00)``; ``due (02:00)`` once it passed; ``never``."""
    if when is None:
        return "never"
    seconds = (when - now).total_seconds()
    at = clock_text(when, now)
    return f"in {format_duration(seconds)} ({at})" if seconds > 0 else f"due ({at})"


def last_text(state: str | None, start: float | None, now: float) -> str:
    """``succeeded 3 h ago``, ``running (started 5 min ago)``; ``never`` without a run."""
    if state is None:
        return "never"
    if start is None:
        return state
    ago = format_duration(max(0.0, now - start))
    return f"running (started {ago} ago)" if state == "running" else f"{state} {ago} ago"


def _defines_jobs(start: Path, environ: Mapping[str, str] | None) -> bool:
    """Whether a settings file found from ``start`` has a non-empty ``jobs`` table (read
    without the cron library)."""
    from ..settings.files import raw_tables

    raw = raw_tables(start, environ)
    return any(tables.get("jobs") for _label, _path, tables in raw.tables)


def _last_run(history: History | None, name: str) -> dict[str, Any] | None:
    if history is None:
        return None
    for run in history.query(name=name, limit=_LOOK_BACK):
        if run.get("kind") == "job":
            return run
    return None


def job_rows(
    start: Path | str,
    environ: Mapping[str, str] | None = None,
    history: History | Callable[[], History | None] | None = None,
    now: dt.datetime | None = None,
    limit: int = JOBS_SHOWN,
) -> dict[str, Any]:
    """The panel's ``jobs`` model for the settings files found from ``start``:
    ``{"rows": [...], "more": N}``, the ``limit`` soonest jobs by next run (a job that never
    fires last), or ``{}`` when they define none or cannot be used.

    Each row: ``name``, ``schedule`` (``describe``), ``next_at`` (epoch seconds or ``None``),
    ``next_clock`` (``02:00``), ``next`` (``in 2 h 10 min (02:00)``), ``last_state``,
    ``last_at`` (the last run's start) and ``last`` (``succeeded 3 h ago``), the last run
    being the most recent of kind ``job`` in ``history`` (or what it gives when called: it
    is asked only when there are jobs to show)."""
    folder = Path(start)
    if not _defines_jobs(folder, environ):
        return {}
    if callable(history):
        history = history()
    from ..scheduler.timing import describe, next_fire
    from ..settings.jobs import load_jobs

    loaded = load_jobs(folder, environ)
    if loaded.errors or not loaded.jobs:
        return {}
    now = dt.datetime.now(dt.timezone.utc) if now is None else now
    upcoming: list[tuple[dt.datetime | None, str, str]] = []
    for name, job in loaded.jobs.items():
        try:
            fire: dt.datetime | None = next_fire(job.schedule, now)
        except ValueError:  # it never fires again
            fire = None
        upcoming.append((fire, name, describe(job.schedule)))
    far = dt.datetime.max.replace(tzinfo=dt.timezone.utc)
    upcoming.sort(key=lambda item: (item[0] or far, item[1]))
    rows = []
    wall = now.timestamp()
    for fire, name, schedule in upcoming[:limit]:
        run = _last_run(history, name)
        state = None if run is None else str(run.get("state"))
        began = None if run is None else run.get("start")
        began = float(began) if isinstance(began, (int, float)) else None
        rows.append(
            {
                "name": redact(name),
                "schedule": redact(schedule),
                "next_at": None if fire is None else fire.timestamp(),
                "next_clock": "" if fire is None else clock_text(fire, now),
                "next": next_text(fire, now),
                "last_state": state,
                "last_at": began,
                "last": last_text(state, began, wall),
            }
        )
    return {"rows": rows, "more": max(0, len(upcoming) - limit)}


class UpcomingJobs:
    """Keeps the ``jobs`` model of one session's panel (loop thread).

    :meth:`due` says when to read again: :data:`JOBS_EVERY` seconds after the last read,
    or when the session's settings were reloaded since. A session that follows no settings
    files (made with settings given in code) lists no jobs and reads nothing.
    """

    def __init__(self, session: Session, every: float = JOBS_EVERY) -> None:
        self.session = session
        self.every = every
        #: The model the widget gets (``{}``: no jobs, the section is hidden).
        self.model: dict[str, Any] = {}
        #: Reads done so far.
        self.reads = 0
        self._at = float("-inf")
        self._loads = -1

    def due(self, now: float) -> bool:
        """Whether the jobs should be read again at ``now`` (``time.monotonic()``)."""
        live = self.session.settings
        if live is None:
            return False
        return live.loads != self._loads or now - self._at >= self.every

    def update(self, now: float | None = None) -> dict[str, Any]:
        """Read the jobs and their last runs now (loop thread); never raises."""
        self._at = time.monotonic() if now is None else now
        live = self.session.settings
        if live is None:
            self.model = {}
            return self.model
        self._loads = live.loads
        self.reads += 1
        try:
            recorder = self.session.history_recorder  # (its file opened only for jobs shown)
            self.model = job_rows(live.start, live.environ, lambda: recorder.history)
        except Exception:  # a file or the history that cannot be read: no section
            log.debug("reading the jobs for the panel failed", exc_info=True)
            self.model = {}
        return self.model
