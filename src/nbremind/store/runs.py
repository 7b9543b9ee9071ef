"""The run history: one row per task, from every front end and every process.

Rows live in the table ``runs`` of the outbox's SQLite file (``outbox.sqlite3`` in the data
folder), opened in WAL mode with a busy timeout so several kernels and scripts write at
once. The table has its own schema version (table ``history_meta``) and migrates forward;
a file written by a newer nbremind is left alone (history is then off, and that is logged).
Finished runs older than ``history_keep`` (default 90 days) are deleted when the file is
opened, at most once a day, through an index on their end time. A corrupt file is moved
aside by :mod:`nbremind.store.sqlite`.

Short nested runs are folded into their parent's row (columns ``folded``, the number of runs
folded into it, and ``folded_duration``, the seconds they took): the session's recorder
decides which (see :mod:`nbremind.runtime.run_recorder`); :meth:`History.record_many` writes
the parent with its counts and removes the rows of folded runs already written.

Every query the history commands make is answered from an index: the newest runs
(``runs_by_start``), those of one name (``runs_by_name``), of one state (``runs_by_state``),
the runs nested in a run (``runs_by_parent``), the running runs of a process
(``runs_running``, partial), the finished runs by age (``runs_by_age``, partial); opening
the file costs the same whatever the number of runs (``benchmarks/history_scale.py``).

The usual duration of a task (:meth:`History.usual_duration`: the median of the last
:data:`USUAL_RUNS` succeeded runs of the same work, once there are :data:`USUAL_MIN`) is one
look-up of the index ``runs_usual`` on the column ``usual_key``, written for every
row: what identifies the same work in later runs (:func:`run_key`: the kind and the name,
``"block:etl"``; or what the front end gave, ``"code:<sha256>"`` for an unnamed cell).

Every method is short and never raises a database error: the first failure of each kind is
logged and the caller goes on. The session calls :meth:`History.record_start` and
:meth:`History.record_end` on its loop thread; :func:`nbremind.history` reads the rows into
a pandas DataFrame.
"""

from __future__ import annotations

import logging
import math
import sqlite3
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.clock import Clock
from ..core.secrets import redact
from .sqlite import Database

if TYPE_CHECKING:
    from ..core.config import Config
    from ..core.task import TaskSnapshot

__all__ = [
    "COLUMNS",
    "DEFAULT_KEEP",
    "FIELDS",
    "SCHEMA_VERSION",
    "USUAL_MIN",
    "USUAL_RUNS",
    "History",
    "history_path",
    "parse_since",
    "run_key",
]

log = logging.getLogger("nbremind")

#: The version of the ``runs`` table this nbremind writes.
SCHEMA_VERSION = 5
#: The usual duration of a task is the median of its last this many succeeded runs ...
USUAL_RUNS = 10
#: ... once it has at least this many.
USUAL_MIN = 3
#: Finished runs are kept this many seconds by default (90 days).
DEFAULT_KEEP = 90 * 86400.0
#: Retention is applied at most this often (seconds), when a process opens the file.
PRUNE_EVERY = 86400.0
#: How long a write waits for another process's write, in seconds.
BUSY_TIMEOUT = 10.0

COLUMNS = (
    "id",
    "parent_id",
    "name",
    "kind",
    "source",
    "host",
    "pid",
    "pid_start",
    "start",
    "end",
    "state",
    "duration",
    "n",
    "total",
    "unit",
    "peak_rss",
    "error_type",
    "error_message",
    "reason",
    "notices",
    "folded",
    "folded_duration",
)
#: The columns a start or end written alone sets (the folded counts are left as they are),
#: then the key of the work, which :meth:`History.query` does not return.
_RUN_COLUMNS = (*COLUMNS[:-2], "usual_key")
#: The columns :meth:`History.record_many` writes.
_ALL_COLUMNS = (*_RUN_COLUMNS, *COLUMNS[-2:])
#: The fields of a run :meth:`History.query` returns: the columns, then ``nested``, the
#: number of runs inside it (its child tasks and theirs, at any depth, that have a row;
#: ``folded`` counts those that have none).
FIELDS = (*COLUMNS, "nested")

#: The age of a run for retention (its end; its start when it has none) and which runs
#: retention may delete: the expression and condition of the partial index ``runs_by_age``,
#: written the same in the DELETE so that SQLite uses it.
_AGE = 'COALESCE("end", start, 0)'
_FINISHED = "state != 'running'"

#: Statements that bring the table from version ``key - 1`` to ``key``.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS runs (
            id TEXT PRIMARY KEY,
            parent_id TEXT,
            name TEXT NOT NULL,
            kind TEXT NOT NULL,
            source TEXT NOT NULL DEFAULT '',
            host TEXT NOT NULL DEFAULT '',
            pid INTEGER,
            pid_start REAL,
            start REAL,
            "end" REAL,
            state TEXT NOT NULL,
            duration REAL,
            n INTEGER,
            total INTEGER,
            unit TEXT,
            peak_rss INTEGER,
            error_type TEXT,
            error_message TEXT,
            reason TEXT,
            notices INTEGER NOT NULL DEFAULT 0
        )""",
    ),
    # 2: look-ups by process (the watchdog), by state and by start time
    2: (
        "CREATE INDEX IF NOT EXISTS runs_by_process ON runs (pid, pid_start, state)",
        "CREATE INDEX IF NOT EXISTS runs_by_start ON runs (start)",
        "CREATE INDEX IF NOT EXISTS runs_by_name ON runs (name, start)",
    ),
    # 3: top-level runs and the count of runs nested in each
    3: ("CREATE INDEX IF NOT EXISTS runs_by_parent ON runs (parent_id)",),
    # 4: short nested runs folded into their parent's row; retention and --state by index;
    # the running runs of a process (the watchdog) by a partial index: the file grows less
    4: (
        "ALTER TABLE runs ADD COLUMN folded INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE runs ADD COLUMN folded_duration REAL NOT NULL DEFAULT 0",
        f"CREATE INDEX IF NOT EXISTS runs_by_age ON runs ({_AGE}) WHERE {_FINISHED}",
        "CREATE INDEX IF NOT EXISTS runs_by_state ON runs (state, start)",
        "DROP INDEX IF EXISTS runs_by_process",
        "CREATE INDEX IF NOT EXISTS runs_running ON runs (pid, pid_start) WHERE state = 'running'",
    ),
    # 5: the usual duration of a task: its last succeeded runs of the same work, newest
    # first, from the index alone (older rows have no key and are never matched)
    5: (
        "ALTER TABLE runs ADD COLUMN usual_key TEXT",
        "CREATE INDEX IF NOT EXISTS runs_usual ON runs (usual_key, state, start, duration)",
    ),
}

#: The usual-duration look-up: one search of ``runs_usual``, which holds every column it reads.
_USUAL_SQL = (
    "SELECT duration FROM runs WHERE usual_key = ? AND state = 'succeeded'"
    " AND duration IS NOT NULL ORDER BY start DESC LIMIT ?"
)


def run_key(name: str, kind: str) -> str:
    """What identifies the same work in the history when the task gives no key of its own:
    its kind and its (masked) name, ``"block:etl"`` -- a cell and a block both named
    ``train`` are different work."""
    return f"{kind}:{redact(name)}"


def history_path(config: Config | None = None) -> Path:
    """The file the history is kept in: the outbox's (``outbox.sqlite3`` in the data folder)."""
    from .outbox import FILE_NAME, data_dir

    return data_dir(config.data_dir if config is not None else None) / FILE_NAME


#: Rows written by one INSERT statement (SQLite allows 32,766 parameters per statement).
_ROWS_PER_STATEMENT = 400
#: The sizes of INSERT statement used; a shorter chunk repeats its last row up to the next.
#: Few distinct statements: the connection keeps each one compiled (up to 128), and one per
#: chunk length would keep hundreds of large ones, megabytes growing with each new length.
#: Repeating rows, not splitting the chunk: each statement gives the GIL away, and a busy
#: main thread makes every return to it cost a switch interval.
_STATEMENT_SIZES = (1, 8, 64, _ROWS_PER_STATEMENT)


def _chunks(rows: list[tuple[Any, ...]]) -> list[list[tuple[Any, ...]]]:
    """``rows`` cut into chunks of :data:`_STATEMENT_SIZES` rows, in order; the last one
    padded with copies of its last row (written again with the same values: no change)."""
    out = []
    for at in range(0, len(rows), _ROWS_PER_STATEMENT):
        chunk = rows[at : at + _ROWS_PER_STATEMENT]
        size = next(size for size in _STATEMENT_SIZES if size >= len(chunk))
        out.append(chunk + [chunk[-1]] * (size - len(chunk)))
    return out


class History(Database):
    """One process's connection to the run history. Thread-safe; each call is one short
    transaction. ``clock`` gives the wall time of retention and of :meth:`mark_process_died`.
    """

    kind = "history"
    contents = "the run history"
    busy_timeout = BUSY_TIMEOUT
    schema = SCHEMA_VERSION
    migrations = _MIGRATIONS
    version_table = (
        "CREATE TABLE IF NOT EXISTS history_meta (key TEXT PRIMARY KEY, value REAL NOT NULL)"
    )

    def __init__(
        self,
        path: str | Path,
        *,
        keep: float | None = DEFAULT_KEEP,
        clock: Clock | None = None,
    ) -> None:
        self.keep = keep
        self._pid_start: float | None = None
        super().__init__(path, clock=clock)

    @classmethod
    def open(cls, config: Config | None = None, clock: Clock | None = None) -> History | None:
        """The history ``config`` asks for; ``None`` when it is off (``outbox=False`` or
        ``history_keep="off"``) or the file cannot be used (why is logged)."""
        if config is not None and (not config.outbox or config.history_keep == 0):
            return None
        keep = config.history_keep if config is not None else DEFAULT_KEEP
        path = history_path(config)
        try:
            return cls(path, keep=keep, clock=clock)
        except Exception as exc:
            log.warning(
                "nbremind history unavailable (%s): %s",
                path,
                redact(f"{type(exc).__name__}: {exc}"),
            )
            return None

    # -- set-up ------------------------------------------------------------------------------
    def _setup(self) -> None:
        super()._setup()
        self._prune()

    def _stored_version(self) -> int | None:
        found = self._meta("version")
        return None if found is None else int(found)

    def _store_version(self, version: int) -> None:
        self._set_meta("version", version)

    def _meta(self, key: str) -> float | None:
        row = self._db.execute("SELECT value FROM history_meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else float(row[0])

    def _set_meta(self, key: str, value: float) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO history_meta (key, value) VALUES (?, ?)", (key, value)
        )

    def _prune(self) -> None:
        """Delete finished runs older than ``keep``, at most once per :data:`PRUNE_EVERY`."""
        if not self.keep:
            return
        now = self.clock.time()
        last = self._meta("pruned_at")  # read first: most opens need no write at all
        if last is not None and now - last < PRUNE_EVERY:
            return
        with self._write():
            last = self._meta("pruned_at")  # another process may have pruned meanwhile
            if last is not None and now - last < PRUNE_EVERY:
                return
            # through the partial index runs_by_age: the work is the rows deleted
            self._db.execute(
                f"DELETE FROM runs WHERE {_FINISHED} AND {_AGE} < ?", (now - self.keep,)
            )
            self._set_meta("pruned_at", now)

    # -- plumbing ------------------------------------------------------------------------------
    def _process_start(self) -> float:
        if self._pid_start is None:
            from .process import Owner

            self._pid_start = Owner.current().start
        return self._pid_start

    def _row(
        self, snap: TaskSnapshot, notices: int, reason: str | None, key: str | None = None
    ) -> tuple[Any, ...]:
        """``snap`` as the values of :data:`_RUN_COLUMNS` (``key``: its ``usual_key``,
        ``None``: :func:`run_key`)."""
        error = snap.error
        start, end, elapsed, n = snap.start, snap.end, snap.elapsed, snap.n
        name = redact(snap.name)
        return (
            snap.id,
            snap.parent_id,
            name,
            snap.kind,
            snap.source,
            snap.host,
            snap.pid,
            self._pid_start if self._pid_start is not None else self._process_start(),
            # what a row nearly always holds kept as it is, without a call (x - x == 0.0:
            # a finite float); anything else through _real() and _integer()
            start if type(start) is float and start - start == 0.0 else _real(start),
            end if type(end) is float and end - end == 0.0 else _real(end),
            str.__str__(snap.state),  # the state's text (a str enum), without a call
            elapsed if type(elapsed) is float and elapsed - elapsed == 0.0 else _real(elapsed),
            n if type(n) is int and -_INTEGER_MAX <= n <= _INTEGER_MAX else _integer(n),
            None if snap.total is None else _integer(snap.total),
            snap.unit,
            None if snap.peak_rss is None else _integer(snap.peak_rss),
            error.type if error else None,
            redact(error.message) if error else None,
            reason,
            notices,
            f"{snap.kind}:{name}" if key is None else key,  # (run_key(), without a call)
        )

    def _upsert(self, what: str, row: tuple[Any, ...]) -> bool:
        names = ", ".join(f'"{c}"' for c in _RUN_COLUMNS)
        marks = ", ".join("?" for _ in _RUN_COLUMNS)
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in _RUN_COLUMNS[1:])
        sql = f"INSERT INTO runs ({names}) VALUES ({marks}) ON CONFLICT(id) DO UPDATE SET {updates}"

        def action(db: sqlite3.Connection) -> bool:
            with self._write():
                db.execute(sql, row)
            return True

        return self._run(what, False, action)

    # -- writing -------------------------------------------------------------------------------
    def record_start(self, snapshot: TaskSnapshot, key: str | None = None) -> bool:
        """Record a task that started (state ``running``); ``key``: what identifies its
        work (``None``: :func:`run_key`). Returns whether it was stored."""
        return self._upsert("record_start", self._row(snapshot, 0, None, key))

    def record_end(
        self,
        snapshot: TaskSnapshot,
        notices_sent: int = 0,
        reason: str | None = None,
        key: str | None = None,
    ) -> bool:
        """Record how a task ended (its final snapshot) and the notices sent for it so far."""
        return self._upsert("record_end", self._row(snapshot, notices_sent, reason, key))

    def record_many(
        self,
        runs: list[tuple[TaskSnapshot, int]],
        *,
        folded: Mapping[str, tuple[int, float]] | None = None,
        delete: Collection[str] = (),
        late_notices: Mapping[str, int] | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> bool:
        """Record several starts and ends (snapshot, notices sent) in one transaction, in
        order: a task's later snapshot replaces its earlier one. ``keys`` gives, by task id,
        what identifies a task's work when not :func:`run_key`. ``folded`` gives, by task
        id, the runs folded into it and the seconds they took (its row's ``folded`` and
        ``folded_duration``; ``0`` for a run not in it); then the rows of ``delete``, runs
        folded into their parent after their start was written, are removed; last, the
        rows of ``late_notices`` count that many more notices (delivered after their end)."""
        late = list((late_notices or {}).items())
        if not runs and not delete and not late:
            return True
        names = ", ".join(f'"{c}"' for c in _ALL_COLUMNS)
        marks = "(" + ", ".join("?" for _ in _ALL_COLUMNS) + ")"
        updates = ", ".join(f'"{c}" = excluded."{c}"' for c in _ALL_COLUMNS[1:])
        folds = folded or {}
        given = keys or {}
        rows = [
            (
                *self._row(snapshot, sent, None, given.get(snapshot.id)),
                *folds.get(snapshot.id, (0, 0.0)),
            )
            for snapshot, sent in runs
        ]
        gone = list(delete)

        def action(db: sqlite3.Connection) -> bool:
            # one multi-row statement per chunk, not one per row: each statement gives the
            # GIL away, and a busy main thread makes every return to it cost a switch interval
            with self._write():
                for chunk in _chunks(rows):
                    db.execute(
                        f"INSERT INTO runs ({names}) VALUES {', '.join([marks] * len(chunk))} "
                        f"ON CONFLICT(id) DO UPDATE SET {updates}",
                        [value for row in chunk for value in row],
                    )
                for at in range(0, len(gone), _ROWS_PER_STATEMENT):
                    ids = gone[at : at + _ROWS_PER_STATEMENT]
                    db.execute(f"DELETE FROM runs WHERE id IN ({', '.join('?' for _ in ids)})", ids)
                if late:
                    db.executemany(
                        "UPDATE runs SET notices = notices + ? WHERE id = ?",
                        [(count, task_id) for task_id, count in late],
                    )
            return True

        return self._run("record_many", False, action)

    def add_notices(self, task_id: str, count: int = 1) -> bool:
        """Count ``count`` more notices sent for ``task_id`` (delivered after its end)."""

        def action(db: sqlite3.Connection) -> bool:
            with self._write():
                cursor = db.execute(
                    "UPDATE runs SET notices = notices + ? WHERE id = ?", (count, task_id)
                )
            return cursor.rowcount > 0

        return self._run("add_notices", False, action)

    def mark_process_died(
        self, pid: int, pid_start: float, reason: str, last_rss: int | None = None
    ) -> list[str]:
        """Record every ``running`` run of process ``pid`` (started at ``pid_start``) as
        ``failed`` with ``reason``; returns the names of the runs changed."""
        now = self.clock.time()

        def action(db: sqlite3.Connection) -> list[str]:
            with self._write():
                rows = db.execute(
                    "SELECT id, name, start FROM runs WHERE pid = ? AND state = 'running'"
                    " AND ABS(COALESCE(pid_start, 0) - ?) < 0.5",
                    (pid, pid_start),
                ).fetchall()
                for run_id, _name, start in rows:
                    db.execute(
                        "UPDATE runs SET state = 'failed', \"end\" = ?, duration = ?,"
                        " reason = ?, peak_rss = MAX(COALESCE(peak_rss, 0), COALESCE(?, 0))"
                        " WHERE id = ?",
                        (
                            now,
                            None if start is None else max(now - start, 0.0),
                            reason,
                            last_rss,
                            run_id,
                        ),
                    )
            return [str(name) for _id, name, _start in rows]

        return self._run("mark_process_died", [], action)

    # -- reading -------------------------------------------------------------------------------
    def usual_duration(self, key: str) -> float | None:
        """Seconds the work ``key`` (see :func:`run_key`) usually takes: the median duration
        of its last :data:`USUAL_RUNS` succeeded runs; ``None`` with fewer than
        :data:`USUAL_MIN`. One look-up of the index ``runs_usual``."""

        def action(db: sqlite3.Connection) -> float | None:
            found = sorted(float(row[0]) for row in db.execute(_USUAL_SQL, (key, USUAL_RUNS)))
            if len(found) < USUAL_MIN:
                return None
            middle = len(found) // 2
            if len(found) % 2:
                return found[middle]
            return (found[middle - 1] + found[middle]) / 2.0

        return self._run("usual_duration", None, action)

    def query(
        self,
        name: str | None = None,
        state: str | None = None,
        since: float | None = None,
        limit: int | None = 100,
        *,
        nested: bool = True,
    ) -> list[dict[str, Any]]:
        """Runs, the most recent start first: of task ``name``, in ``state``, started at or
        after ``since`` (epoch seconds), at most ``limit`` (``None``: all). With
        ``nested=False`` only top-level runs (a run whose parent is not recorded counts as
        one). Each run carries ``nested``, the number of runs inside it."""
        where: list[str] = []
        args: list[Any] = []
        if not nested:
            where.append(
                "(parent_id IS NULL OR NOT EXISTS "
                "(SELECT 1 FROM runs AS up WHERE up.id = runs.parent_id))"
            )
        if name is not None:
            where.append("name = ?")
            args.append(name)
        if state is not None:
            where.append("state = ?")
            args.append(str(state))
        if since is not None:
            where.append("start >= ?")
            args.append(since)
        rows = self._select("query", where, args, limit)
        counts = self._nested_counts([str(row["id"]) for row in rows])
        for row in rows:
            row["nested"] = counts.get(str(row["id"]), 0)
        return rows

    def _nested_counts(self, ids: list[str]) -> dict[str, int]:
        """``{id: runs nested in it, at any depth}`` for the runs ``ids`` (those with any)."""

        def action(db: sqlite3.Connection) -> dict[str, int]:
            counts: dict[str, int] = {}
            for at in range(0, len(ids), _ROWS_PER_STATEMENT):
                chunk = ids[at : at + _ROWS_PER_STATEMENT]
                marks = ", ".join("?" for _ in chunk)
                sql = (
                    "WITH RECURSIVE inside(top, id) AS ("
                    f"SELECT parent_id, id FROM runs WHERE parent_id IN ({marks}) UNION "
                    "SELECT inside.top, runs.id FROM runs JOIN inside ON runs.parent_id = inside.id"
                    ") SELECT top, COUNT(*) FROM inside GROUP BY top"
                )
                counts.update((str(top), int(n)) for top, n in db.execute(sql, chunk))
            return counts

        return self._run("query", {}, action) if ids else {}

    def running(self, pid: int | None = None) -> list[dict[str, Any]]:
        """Runs still recorded ``running`` (of process ``pid`` when given)."""
        where, args = ["state = 'running'"], []
        if pid is not None:
            where.append("pid = ?")
            args.append(pid)
        return self._select("running", where, args, None)

    def _select(
        self, what: str, where: list[str], args: list[Any], limit: int | None
    ) -> list[dict[str, Any]]:
        names = ", ".join(f'"{c}"' for c in COLUMNS)
        sql = (
            f"SELECT {names} FROM runs"
            + (" WHERE " + " AND ".join(where) if where else "")
            + " ORDER BY start DESC, rowid DESC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args = [*args, int(limit)]

        def action(db: sqlite3.Connection) -> list[dict[str, Any]]:
            return [dict(zip(COLUMNS, row, strict=True)) for row in db.execute(sql, args)]

        return self._run(what, [], action)

    def count(self) -> int:
        """How many runs are stored."""

        def action(db: sqlite3.Connection) -> int:
            return int(db.execute("SELECT COUNT(*) FROM runs").fetchone()[0])

        return self._run("count", 0, action)


_INTEGER_MAX = 2**63 - 1


def _integer(value: object) -> int | None:
    """``value`` as SQLite can store it in an INTEGER column: an int of 64 bits, else
    ``None`` (a count too large, or not a whole number)."""
    if value is None:
        return None
    if type(value) is int:  # the common case first
        return value if -_INTEGER_MAX <= value <= _INTEGER_MAX else None
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if -_INTEGER_MAX <= value <= _INTEGER_MAX else None
    if isinstance(value, float) and math.isfinite(value):
        number = int(value)
        return number if -_INTEGER_MAX <= number <= _INTEGER_MAX else None
    return None


def _real(value: object) -> float | None:
    """``value`` as a finite float for a REAL column, else ``None``."""
    if type(value) is float:  # the common case first
        return value if math.isfinite(value) else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:
            return None
        return number if math.isfinite(number) else None
    return None


def parse_since(value: object, now: float, where: str = "since") -> float | None:
    """Epoch seconds for ``since``: a duration back from ``now`` (``"2h"``, ``"7d"``), a
    ``datetime`` (naive: local time), an ISO-8601 text (``"2026-11-01"``,
    ``"2026-11-01T08:00"``) or ``None``. Anything else raises ``ValueError`` naming it."""
    import datetime as dt

    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.timestamp()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day).timestamp()
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
        except ValueError:
            pass
    from ..core.parse import parse_duration

    try:
        return now - parse_duration(value, where)
    except ValueError:
        raise ValueError(
            f"{where}: {value!r} is neither a duration (2h, 7d) nor a date/time "
            "(2026-11-01 or 2026-11-01T08:00)"
        ) from None
