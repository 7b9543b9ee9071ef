"""The scheduler's state: its lease lock, the runs it has going, the last fire of each job.

Kept in the outbox's SQLite file (``outbox.sqlite3`` in the data folder) in tables of its
own, all named ``schedule_*``, with their own schema version (``schedule_meta``); a file
written by a newer nbremind is left alone (:meth:`ScheduleStore.open` gives ``None`` and logs
why), as the history does.

* **The lock** (``schedule_locks``): one row per settings scope (the project folder, say),
  naming the process that holds it -- pid, process start time, host -- and until when
  (``expires``, renewed by its holder). It is taken when free, expired, or held by a process
  of this host that is provably gone (no such pid, or a pid now used by a process with
  another start time, or a zombie): a crashed scheduler's lock is taken over at once on its
  own host, and after its lease elsewhere; never waited on forever. Each take is one
  ``BEGIN IMMEDIATE`` transaction, so of two processes racing for a lock exactly one wins.
* **Running-run markers** (``schedule_running``): one row per job of a scope while a run of
  it goes on, naming the run's process (pid and start time, so a later process reusing the
  pid is not taken for it). A second run of the job is refused while that process lives --
  also by a scheduler started after the first one crashed -- and accepted once it is gone
  (the stale marker is cleared on the way). A starter records the marker in its own name
  first (:meth:`ScheduleStore.begin_run` with its own pid), starts the run only when that is
  accepted, then hands the marker over to the run's process (:meth:`ScheduleStore.hand_over`).
* **Last fires** (``schedule_fires``) and **expectation state** (``schedule_expectations``,
  a small JSON object per expected run: what the dead-man's switch remembers), per scope
  and name.

Markers, fires and expectation state are kept per scope (the lock's): two projects sharing
a data folder, each with a job ``etl``, neither block each other nor mix their state. Rows
written before scopes were kept (schema 1) have the scope ``""``: such a last fire or
expectation state is taken over by the first scope that asks for its name and has none of
its own (a data folder was in practice one project's, so that is the project that wrote
it: its catch-up and what it told carry on; another one starts the name afresh); such a
marker blocks the job's name in every scope while its process lives (a run going on across
the upgrade is never doubled), and is cleared once that process is gone.

Times are wall-clock seconds from the store's clock. Every method is one short transaction
and never raises a database error: the first failure of each kind is logged and the call
gives a safe answer (the lock is not taken, a run is not started, nothing is known).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.clock import Clock
from ..core.secrets import redact
from .outbox import FILE_NAME, data_dir
from .process import Owner, owner_alive, process_start
from .sqlite import Database

if TYPE_CHECKING:
    from ..core.config import Config

__all__ = [
    "DEFAULT_LEASE",
    "LEGACY_SCOPE",
    "SCHEMA_VERSION",
    "LockHolder",
    "RunMarker",
    "ScheduleStore",
    "schedule_path",
]

log = logging.getLogger("nbremind")

#: The version of the ``schedule_*`` tables this nbremind writes.
SCHEMA_VERSION = 2
#: Seconds a lock is held for by default before its holder must renew it.
DEFAULT_LEASE = 30.0
#: How long a write waits for another process's write, in seconds.
BUSY_TIMEOUT = 10.0
#: What a lock or marker of an unusable store says instead of naming a holder.
_UNUSABLE = "the scheduler's state could not be read or written (see the log)"

#: Statements that bring the tables from version ``key - 1`` to ``key``.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS schedule_locks (
            scope TEXT PRIMARY KEY,
            pid INTEGER NOT NULL,
            pid_start REAL NOT NULL,
            host TEXT NOT NULL,
            since REAL NOT NULL,
            expires REAL NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS schedule_running (
            job TEXT PRIMARY KEY,
            pid INTEGER NOT NULL,
            pid_start REAL NOT NULL,
            host TEXT NOT NULL,
            started REAL NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 1
        )""",
        """CREATE TABLE IF NOT EXISTS schedule_fires (
            name TEXT PRIMARY KEY,
            fired REAL NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS schedule_expectations (
            name TEXT PRIMARY KEY,
            state TEXT NOT NULL
        )""",
    ),
    # keyed by (scope, name); the rows kept get the scope "" (see the module's docstring)
    2: (
        """CREATE TABLE schedule_running_2 (
            scope TEXT NOT NULL DEFAULT '',
            job TEXT NOT NULL,
            pid INTEGER NOT NULL,
            pid_start REAL NOT NULL,
            host TEXT NOT NULL,
            started REAL NOT NULL,
            attempt INTEGER NOT NULL DEFAULT 1,
            PRIMARY KEY (scope, job)
        )""",
        "INSERT INTO schedule_running_2 (scope, job, pid, pid_start, host, started, attempt)"
        " SELECT '', job, pid, pid_start, host, started, attempt FROM schedule_running",
        "DROP TABLE schedule_running",
        "ALTER TABLE schedule_running_2 RENAME TO schedule_running",
        """CREATE TABLE schedule_fires_2 (
            scope TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL,
            fired REAL NOT NULL,
            PRIMARY KEY (scope, name)
        )""",
        "INSERT INTO schedule_fires_2 (scope, name, fired) SELECT '', name, fired"
        " FROM schedule_fires",
        "DROP TABLE schedule_fires",
        "ALTER TABLE schedule_fires_2 RENAME TO schedule_fires",
        """CREATE TABLE schedule_expectations_2 (
            scope TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL,
            state TEXT NOT NULL,
            PRIMARY KEY (scope, name)
        )""",
        "INSERT INTO schedule_expectations_2 (scope, name, state) SELECT '', name, state"
        " FROM schedule_expectations",
        "DROP TABLE schedule_expectations",
        "ALTER TABLE schedule_expectations_2 RENAME TO schedule_expectations",
    ),
}
#: The scope of the rows written before scopes were kept.
LEGACY_SCOPE = ""

_LOCK_COLUMNS = "scope, pid, pid_start, host, since, expires"
_RUN_COLUMNS = "job, pid, pid_start, host, started, attempt, scope"


def schedule_path(config: Config | None = None) -> Path:
    """The file the scheduler's state is kept in: the outbox's (``outbox.sqlite3`` in the
    data folder)."""
    return data_dir(config.data_dir if config is not None else None) / FILE_NAME


@dataclass(frozen=True)
class LockHolder:
    """The process holding a scheduler lock (what a refused :meth:`ScheduleStore.acquire`
    gives back, to say why)."""

    scope: str
    pid: int
    #: The holder's process start time (seconds since the epoch).
    start: float
    host: str
    #: When it took the lock.
    since: float
    #: When the lock is free unless renewed.
    expires: float
    #: Non-empty: the store could not be used (no holder is known; the lock is not taken).
    error: str = ""

    @property
    def owner(self) -> Owner:
        """The holder as a process identity."""
        return Owner(self.pid, self.start, self.host)

    def describe(self) -> str:
        """One line saying who holds the lock, for a refusal."""
        if self.error:
            return self.error
        return (
            f"held by pid {self.pid} on {self.host} since {_local(self.since)}"
            f" (lease until {_local(self.expires)})"
        )


@dataclass(frozen=True)
class RunMarker:
    """A run of a job going on: the process running it and when it started."""

    job: str
    pid: int
    #: The run's process start time (seconds since the epoch): a later process reusing the
    #: pid has another one.
    start: float
    host: str
    #: When the run started (as the caller gave it).
    started: float
    attempt: int = 1
    #: Non-empty: the store could not be used (no run is known; none was recorded).
    error: str = ""
    #: The settings scope the run is of (``""``: recorded before scopes were kept).
    scope: str = ""

    @property
    def owner(self) -> Owner:
        """The run's process as a process identity."""
        return Owner(self.pid, self.start, self.host)


def _local(when: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when))


def _holder(row: tuple[Any, ...]) -> LockHolder:
    scope, pid, start, host, since, expires = row
    return LockHolder(str(scope), int(pid), float(start), str(host), float(since), float(expires))


def _marker(row: tuple[Any, ...]) -> RunMarker:
    job, pid, start, host, started, attempt, scope = row
    return RunMarker(
        str(job), int(pid), float(start), str(host), float(started), int(attempt), scope=str(scope)
    )


class ScheduleStore(Database):
    """One process's connection to the scheduler's state. Thread-safe; each call is one
    short transaction.

    ``clock`` gives the wall time of leases and fires; ``owner`` (this process) and
    ``alive`` (does a process still run) can be replaced in tests.
    """

    kind = "schedule"
    contents = "the scheduler's state"
    fallback = ", the scheduler acts as if it could not tell"
    busy_timeout = BUSY_TIMEOUT
    schema = SCHEMA_VERSION
    migrations = _MIGRATIONS
    version_table = (
        "CREATE TABLE IF NOT EXISTS schedule_meta (key TEXT PRIMARY KEY, value REAL NOT NULL)"
    )

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        owner: Owner | None = None,
        alive: Callable[[Owner], bool] = owner_alive,
    ) -> None:
        self.owner = owner or Owner.current()
        self._alive = alive
        super().__init__(path, clock=clock)

    @classmethod
    def open(cls, config: Config | None = None, clock: Clock | None = None) -> ScheduleStore | None:
        """The store ``config`` asks for; ``None`` when the outbox file is off
        (``outbox=False``) or cannot be used (why is logged)."""
        if config is not None and not config.outbox:
            return None
        path = schedule_path(config)
        try:
            return cls(path, clock=clock)
        except Exception as exc:
            log.warning(
                "nbremind scheduler state unavailable (%s): %s",
                path,
                redact(f"{type(exc).__name__}: {exc}"),
            )
            return None

    # -- set-up ------------------------------------------------------------------------------
    def _stored_version(self) -> int | None:
        row = self._db.execute("SELECT value FROM schedule_meta WHERE key = 'version'").fetchone()
        return None if row is None else int(row[0])

    def _store_version(self, version: int) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO schedule_meta (key, value) VALUES ('version', ?)", (version,)
        )

    # -- the lock ----------------------------------------------------------------------------
    def acquire(self, scope: str, lease: float = DEFAULT_LEASE) -> LockHolder | None:
        """Take the lock of ``scope`` for this process for ``lease`` seconds.

        ``None``: it is this process's now (free, expired, held by a process of this host
        that is gone, or this process's already: then its lease is extended). Else the
        holder, who still has it (or, with :attr:`LockHolder.error` set, an unusable store:
        not taken either). One ``BEGIN IMMEDIATE`` transaction: of processes racing for it,
        exactly one gets ``None``.
        """
        now = self.clock.time()
        me = self.owner
        refused: LockHolder | None = LockHolder(scope, 0, 0.0, "", now, now, error=_UNUSABLE)

        def action(db: sqlite3.Connection) -> LockHolder | None:
            with self._write():
                row = db.execute(
                    f"SELECT {_LOCK_COLUMNS} FROM schedule_locks WHERE scope = ?", (scope,)
                ).fetchone()
                since = now
                if row is not None:
                    holder = _holder(row)
                    if holder.owner == me:
                        since = holder.since
                    elif not self._gone(holder.owner, holder.expires, now):
                        return holder
                db.execute(
                    f"INSERT OR REPLACE INTO schedule_locks ({_LOCK_COLUMNS})"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (scope, me.pid, me.start, me.host, since, now + lease),
                )
            return None

        return self._run("acquire", refused, action)

    def renew(self, scope: str, lease: float = DEFAULT_LEASE) -> bool:
        """Extend this process's lock of ``scope`` to ``lease`` seconds from now.

        ``False``: it is not this process's any more (another took it over after it
        expired, or it was released), or the store could not be written; the caller stops
        starting runs, and may :meth:`acquire` it again.
        """
        now = self.clock.time()
        me = self.owner

        def action(db: sqlite3.Connection) -> bool:
            with self._write():
                cursor = db.execute(
                    "UPDATE schedule_locks SET expires = ?"
                    " WHERE scope = ? AND pid = ? AND pid_start = ? AND host = ?",
                    (now + lease, scope, me.pid, me.start, me.host),
                )
            return cursor.rowcount > 0

        return self._run("renew", False, action)

    def release(self, scope: str) -> None:
        """Give up this process's lock of ``scope`` (another's is left as it is)."""
        me = self.owner

        def action(db: sqlite3.Connection) -> None:
            with self._write():
                db.execute(
                    "DELETE FROM schedule_locks"
                    " WHERE scope = ? AND pid = ? AND pid_start = ? AND host = ?",
                    (scope, me.pid, me.start, me.host),
                )

        self._run("release", None, action)

    def holder(self, scope: str) -> LockHolder | None:
        """Who holds the lock of ``scope`` as the file says (expired or not); ``None``: no
        one, or the store could not be read."""

        def action(db: sqlite3.Connection) -> LockHolder | None:
            row = db.execute(
                f"SELECT {_LOCK_COLUMNS} FROM schedule_locks WHERE scope = ?", (scope,)
            ).fetchone()
            return None if row is None else _holder(row)

        return self._run("holder", None, action)

    def _gone(self, owner: Owner, expires: float, now: float) -> bool:
        """Whether a lock of ``owner`` valid until ``expires`` may be taken over at ``now``:
        it expired, or its process is provably gone (this host's only)."""
        if expires < now:
            return True
        return owner.host == self.owner.host and not self._alive(owner)

    # -- running runs --------------------------------------------------------------------------
    def begin_run(
        self, job: str, pid: int, started: float, attempt: int = 1, *, scope: str = LEGACY_SCOPE
    ) -> RunMarker | None:
        """Record that a run of ``job`` of ``scope`` goes on in process ``pid`` (of this
        host) since ``started``.

        ``None``: recorded. Else the marker of a run of ``job`` whose process still lives
        (of ``scope``, or one recorded before scopes were kept), and nothing is recorded
        (with :attr:`RunMarker.error` set: the store could not be used, and nothing is
        recorded either). A marker whose process is gone is replaced. A starter passes its
        own pid before it starts the run (and starts none when refused), then
        :meth:`hand_over` to the run's process.
        """
        start = self._start_of(pid)
        host = self.owner.host
        refused: RunMarker | None = RunMarker(
            job, 0, 0.0, "", started, attempt, error=_UNUSABLE, scope=scope
        )

        def action(db: sqlite3.Connection) -> RunMarker | None:
            with self._write():
                for found in self._markers(db, job, scope):
                    if (found.pid, found.start, found.host) != (pid, start, host) and (
                        self._alive(found.owner)
                    ):
                        return found
                db.execute(
                    "DELETE FROM schedule_running WHERE job = ? AND scope IN (?, ?)",
                    (job, scope, LEGACY_SCOPE),
                )
                db.execute(
                    f"INSERT INTO schedule_running ({_RUN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (job, pid, start, host, started, attempt, scope),
                )
            return None

        return self._run("begin_run", refused, action)

    def hand_over(self, job: str, pid: int, *, scope: str = LEGACY_SCOPE) -> bool:
        """Make the marker this process recorded for ``job`` of ``scope`` (with
        :meth:`begin_run` and its own pid) name process ``pid``, the run it started.

        ``False``: there was no such marker (or the store could not be written).
        """
        me = self.owner
        start = self._start_of(pid)

        def action(db: sqlite3.Connection) -> bool:
            with self._write():
                cursor = db.execute(
                    "UPDATE schedule_running SET pid = ?, pid_start = ?"
                    " WHERE scope = ? AND job = ? AND pid = ? AND pid_start = ? AND host = ?",
                    (pid, start, scope, job, me.pid, me.start, me.host),
                )
            return cursor.rowcount > 0

        return self._run("hand_over", False, action)

    def end_run(self, job: str, pid: int, *, scope: str = LEGACY_SCOPE) -> None:
        """Forget the marker of the run of ``job`` of ``scope`` in process ``pid`` (another
        run's is left)."""

        def action(db: sqlite3.Connection) -> None:
            with self._write():
                db.execute(
                    "DELETE FROM schedule_running WHERE scope = ? AND job = ? AND pid = ?",
                    (scope, job, pid),
                )

        self._run("end_run", None, action)

    def running(self, scope: str | None = None) -> list[RunMarker]:
        """The runs going on whose process lives, by job name (of ``scope`` and those
        recorded before scopes were kept; ``None``: of every scope); the markers of gone
        ones are cleared."""

        def action(db: sqlite3.Connection) -> list[RunMarker]:
            if scope is None:
                rows = db.execute(
                    f"SELECT {_RUN_COLUMNS} FROM schedule_running ORDER BY job, scope"
                ).fetchall()
            else:
                rows = db.execute(
                    f"SELECT {_RUN_COLUMNS} FROM schedule_running WHERE scope IN (?, ?)"
                    " ORDER BY job, scope",
                    (scope, LEGACY_SCOPE),
                ).fetchall()
            return self._live(db, [_marker(row) for row in rows])

        return self._run("running", [], action)

    def marker(self, job: str, *, scope: str = LEGACY_SCOPE) -> RunMarker | None:
        """The run of ``job`` of ``scope`` going on (or one recorded before scopes were
        kept), if its process lives (a gone one's marker is cleared)."""

        def action(db: sqlite3.Connection) -> RunMarker | None:
            live = self._live(db, self._markers(db, job, scope))
            return live[0] if live else None

        return self._run("marker", None, action)

    def _markers(self, db: sqlite3.Connection, job: str, scope: str) -> list[RunMarker]:
        """The markers of ``job`` that count for ``scope``: its own first, then one recorded
        before scopes were kept."""
        rows = db.execute(
            f"SELECT {_RUN_COLUMNS} FROM schedule_running WHERE job = ? AND scope IN (?, ?)"
            " ORDER BY scope = ?",
            (job, scope, LEGACY_SCOPE, LEGACY_SCOPE),
        ).fetchall()
        return [_marker(row) for row in rows]

    def _live(self, db: sqlite3.Connection, markers: list[RunMarker]) -> list[RunMarker]:
        """``markers`` whose process lives; the others are deleted (only the row read: a
        run recorded meanwhile is kept). Read without a write lock when none is gone."""
        live = [m for m in markers if self._alive(m.owner)]
        gone = [m for m in markers if m not in live]
        if gone:
            with self._write():
                db.executemany(
                    "DELETE FROM schedule_running WHERE scope = ? AND job = ? AND pid = ?"
                    " AND pid_start = ? AND host = ?",
                    [(m.scope, m.job, m.pid, m.start, m.host) for m in gone],
                )
        return live

    def _start_of(self, pid: int) -> float:
        """The start time of process ``pid`` as :class:`Owner` keeps it (``0.0`` when it
        cannot be read: it has ended, and its marker counts as gone)."""
        if pid == self.owner.pid:
            return self.owner.start
        return process_start(pid) or 0.0

    # -- last fires and expectations -------------------------------------------------------------
    def _adopted(
        self, db: sqlite3.Connection, table: str, column: str, name: str, scope: str
    ) -> Any:
        """The ``column`` of ``name`` of ``scope`` in ``table``; when ``scope`` has none, the
        row from before scopes were kept, which ``scope`` takes over (``None``: neither)."""
        query = f"SELECT {column} FROM {table} WHERE scope = ? AND name = ?"
        row = db.execute(query, (scope, name)).fetchone()
        if row is not None or scope == LEGACY_SCOPE:
            return None if row is None else row[0]
        if db.execute(query, (LEGACY_SCOPE, name)).fetchone() is None:
            return None
        with self._write():
            db.execute(
                f"UPDATE {table} SET scope = ? WHERE scope = ? AND name = ?"
                f" AND NOT EXISTS (SELECT 1 FROM {table} WHERE scope = ? AND name = ?)",
                (scope, LEGACY_SCOPE, name, scope, name),
            )
            row = db.execute(query, (scope, name)).fetchone()
        return None if row is None else row[0]

    def last_fire(self, name: str, *, scope: str = LEGACY_SCOPE) -> float | None:
        """When ``name`` of ``scope`` last fired (what catch-up compares with); ``None``:
        never, or the store could not be read."""

        def action(db: sqlite3.Connection) -> float | None:
            fired = self._adopted(db, "schedule_fires", "fired", name, scope)
            return None if fired is None else float(fired)

        return self._run("last_fire", None, action)

    def set_last_fire(self, name: str, when: float, *, scope: str = LEGACY_SCOPE) -> None:
        """Record that ``name`` of ``scope`` fired at ``when``."""

        def action(db: sqlite3.Connection) -> None:
            with self._write():
                db.execute(
                    "INSERT OR REPLACE INTO schedule_fires (scope, name, fired) VALUES (?, ?, ?)",
                    (scope, name, when),
                )

        self._run("set_last_fire", None, action)

    def expectation_state(self, name: str, *, scope: str = LEGACY_SCOPE) -> dict[str, Any] | None:
        """What was kept for the expected run ``name`` of ``scope`` (a JSON object);
        ``None``: nothing, or the store could not be read."""

        def action(db: sqlite3.Connection) -> dict[str, Any] | None:
            text = self._adopted(db, "schedule_expectations", "state", name, scope)
            if text is None:
                return None
            try:
                found = json.loads(text)
            except ValueError as exc:  # json.JSONDecodeError is a ValueError
                self._report("expectation_state", exc)
                return None
            return found if isinstance(found, dict) else None

        return self._run("expectation_state", None, action)

    def set_expectation_state(
        self, name: str, state: dict[str, Any], *, scope: str = LEGACY_SCOPE
    ) -> None:
        """Keep ``state`` (JSON-serialisable; a ``TypeError`` if not) for the expected run
        ``name`` of ``scope``, in place of what was kept."""
        text = json.dumps(state, sort_keys=True)

        def action(db: sqlite3.Connection) -> None:
            with self._write():
                db.execute(
                    "INSERT OR REPLACE INTO schedule_expectations (scope, name, state)"
                    " VALUES (?, ?, ?)",
                    (scope, name, text),
                )

        self._run("set_expectation_state", None, action)
