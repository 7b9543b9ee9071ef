"""nbremind's SQLite file: opened the same way by every store, a corrupt file moved aside.

The outbox and the run history share one file (``outbox.sqlite3`` in the data folder).
:class:`Database` is what both are: a connection guarded by a lock, in WAL mode with a busy
timeout, whose tables are brought to the version this nbremind writes (a file written by a
newer one is left alone), and whose methods log a database error once and carry on.

:func:`open_database` opens the file the way they want (autocommit, usable from the loop
thread, a busy timeout) and first checks that it is a readable database. A file that is
not one (garbage, truncated, "database disk image is malformed") is renamed to
``<name>.corrupt-<UTC timestamp>`` together with its ``-wal`` and ``-shm`` companions, a
warning naming both paths is logged once, and a fresh file is started in its place.

The folder is owner-only (0700) and the file, its companions and the moved-aside copies are
0600, whatever the umask (see :mod:`nbremind.store.private_files`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import ClassVar, TypeVar

from ..core.clock import Clock, SystemClock
from ..core.secrets import redact
from .private_files import private_file, private_folder, tighten

__all__ = ["CorruptDatabase", "Database", "moved_aside", "open_database", "write_transaction"]

T = TypeVar("T")

log = logging.getLogger("nbremind")

#: Paths moved aside by this process (each reported once).
_moved: dict[str, Path] = {}
_moved_lock = threading.Lock()


class CorruptDatabase(Exception):
    """The file is not a readable SQLite database."""


def moved_aside() -> dict[str, Path]:
    """``{path: where it was moved}`` for the corrupt files this process moved aside."""
    with _moved_lock:
        return dict(_moved)


def open_database(path: str | os.PathLike[str], timeout: float) -> sqlite3.Connection:
    """A connection to the SQLite file ``path`` (made if missing), checked to be readable.

    Autocommit (writers use ``BEGIN IMMEDIATE``), shareable across threads (callers guard
    it with a lock), waiting up to ``timeout`` seconds for another process's write. A
    corrupt file is moved aside and a fresh one opened (see the module's docstring); other
    errors (a read-only folder, a locked file) are raised as ``sqlite3.Error`` / ``OSError``.
    """
    target = Path(path)
    private_folder(target.parent)
    for _attempt in range(3):
        _make_private(target)
        seen = _identity(target)
        db = _connect(target, timeout)
        try:
            _check(db, target)
            return db
        except CorruptDatabase as exc:
            db.close()
            _move_aside(target, seen, str(exc))
    _make_private(target)
    return _connect(target, timeout)  # moved aside three times: let the caller see errors


def _make_private(path: Path) -> None:
    """The database file made 0600 before SQLite opens it (its ``-wal`` and ``-shm`` files
    are then created with the same mode); existing companions are tightened too."""
    private_file(path)
    for suffix in ("-wal", "-shm", "-journal"):
        tighten(f"{path}{suffix}")


def _busy(message: str) -> bool:
    """Whether an ``OperationalError``'s text says another connection holds the file."""
    text = message.lower()
    return "locked" in text or "busy" in text


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    return sqlite3.connect(
        str(path),
        timeout=timeout,
        isolation_level=None,  # autocommit; writes use explicit BEGIN IMMEDIATE
        check_same_thread=False,  # callers guard the connection with a lock
    )


def _check(db: sqlite3.Connection, path: Path) -> None:
    """Raise :class:`CorruptDatabase` when the file is not a readable database.

    The schema is always read (garbage fails there). SQLite's ``quick_check`` reads the
    whole file (about a millisecond per megabyte), so it runs only on a file of at most
    :data:`QUICK_CHECK_MAX` bytes, or on a larger one whose size falls short of what its
    header says (a truncated file); a larger healthy file is opened at the same cost as a
    small one.
    """
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        worth = _worth_checking(db, path)
        row = db.execute("PRAGMA quick_check(1)").fetchone() if worth else ("ok",)
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and not _corrupt_text(str(exc)):
            raise  # locked, read-only, I/O: not the file's fault
        raise CorruptDatabase(f"{type(exc).__name__}: {exc}") from exc
    if row is None or row[0] != "ok":
        raise CorruptDatabase(f"integrity check: {row[0] if row else 'no answer'}")


#: Files up to this size get SQLite's full ``quick_check`` on every open.
QUICK_CHECK_MAX = 4 * 1024 * 1024


def _worth_checking(db: sqlite3.Connection, path: Path) -> bool:
    """Whether :func:`_check` runs ``quick_check`` on ``path`` (see there). The file is only
    looked at with ``stat`` and through ``db``: opening and closing it here would drop the
    POSIX locks every connection of this process holds on it."""
    try:
        size = path.stat().st_size
    except OSError:
        return True  # let SQLite say what is wrong
    if size <= QUICK_CHECK_MAX:
        return True
    try:
        if os.stat(f"{path}-wal").st_size:
            # pages still only in the WAL (a process is writing): the database may rightly
            # count more pages than the file holds
            return False
    except OSError:
        pass  # no WAL file: every page is in the file
    # more pages than the file holds: truncated
    pages = int(db.execute("PRAGMA page_count").fetchone()[0])
    page_size = int(db.execute("PRAGMA page_size").fetchone()[0])
    return size < pages * page_size


def _corrupt_text(message: str) -> bool:
    message = message.lower()
    return "not a database" in message or "malformed" in message or "corrupt" in message


def _identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def _move_aside(path: Path, seen: tuple[int, int, int] | None, why: str) -> None:
    """Rename ``path`` (and its -wal/-shm files) to ``<path>.corrupt-<timestamp>``, unless
    another process already replaced it since it was looked at."""
    if seen is None or _identity(path) != seen:
        return  # gone or replaced meanwhile (another process moved it): reopen
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    aside = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while aside.exists():
        n += 1
        aside = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    try:
        os.replace(path, aside)
    except FileNotFoundError:
        return
    tighten(aside)
    for suffix in ("-wal", "-shm"):
        with contextlib.suppress(OSError):
            os.replace(f"{path}{suffix}", f"{aside}{suffix}")
            tighten(f"{aside}{suffix}")
    with _moved_lock:
        _moved[str(path)] = aside
    log.warning(
        "nbremind: %s is not a usable database (%s); it was moved to %s and a fresh file "
        "started (nothing was deleted)",
        path,
        why,
        aside,
    )


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``, rolled back when the block raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


class Database(ABC):
    """One process's connection to a store in nbremind's SQLite file.

    Thread-safe: each call is one short transaction under a lock. A database error in
    :meth:`_run` is logged once per kind and gives the call's default; :meth:`close` makes
    later calls return their defaults. ``clock`` gives the wall time of what is stored.

    A subclass names itself (:attr:`kind`), says how its schema version is kept
    (:attr:`version_table`, :meth:`_stored_version`, :meth:`_store_version`) and how its
    tables get to each version (:attr:`migrations`, up to :attr:`schema`).
    """

    #: How log lines name the store (``outbox``, ``history``).
    kind: ClassVar[str]
    #: What a newer file holds, in the error that refuses it (``""``: the file itself).
    contents: ClassVar[str] = ""
    #: Added to the log line of a failed call: what happens instead.
    fallback: ClassVar[str] = ""
    #: Seconds a write waits for another process's write to finish.
    busy_timeout: ClassVar[float]
    #: Pragmas set on the connection besides WAL, ``synchronous`` and the busy timeout.
    pragmas: ClassVar[tuple[str, ...]] = ()
    #: The version of the tables this nbremind writes.
    schema: ClassVar[int]
    #: Statements that bring the tables from version ``key - 1`` to ``key``.
    migrations: ClassVar[Mapping[int, tuple[str, ...]]]
    #: Makes the table the schema version is kept in, when missing.
    version_table: ClassVar[str]

    def __init__(self, path: str | os.PathLike[str], *, clock: Clock | None = None) -> None:
        self.path = Path(path)
        self.clock: Clock = clock or SystemClock()
        self._lock = threading.Lock()
        self._reported: set[str] = set()
        self._closed = False
        # autocommit, shared across threads (guarded by self._lock); the folder is made
        # owner-only, a corrupt file is moved aside and a fresh one started
        # processes opening a fresh file at once race to make it (WAL mode, the tables):
        # SQLite may answer "locked" at once there, so the opening is tried again until the
        # busy timeout
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                self._db = open_database(self.path, self.busy_timeout)
            except sqlite3.OperationalError as exc:
                if not _busy(str(exc)) or time.monotonic() > deadline:
                    raise
            else:
                try:
                    self._setup()
                    return
                except sqlite3.OperationalError as exc:
                    self._db.close()
                    if not _busy(str(exc)) or time.monotonic() > deadline:
                        raise
                except BaseException:
                    self._db.close()
                    raise
            time.sleep(0.02)  # (another process holds the lock: nothing to wait on but time)

    def _setup(self) -> None:
        """Set the pragmas and bring the tables to :attr:`schema`; subclasses may add."""
        db = self._db
        db.execute(f"PRAGMA busy_timeout = {round(self.busy_timeout * 1000)}")
        self.journal_mode = str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        db.execute("PRAGMA synchronous = NORMAL")  # WAL: safe against a killed process
        for pragma in self.pragmas:
            db.execute(f"PRAGMA {pragma}")
        if self._current():
            return  # the common case: one read, no write lock taken
        with self._write():
            db.execute(self.version_table)
            found = self._stored_version()
            version = 0 if found is None else found
            if version > self.schema:
                where = f"{self.path}: {self.contents}" if self.contents else str(self.path)
                raise RuntimeError(
                    f"{where} was written by a newer nbremind (schema {version}; this one "
                    f"knows {self.schema})"
                )
            for step in range(version + 1, self.schema + 1):
                for statement in self.migrations[step]:
                    db.execute(statement)
            if version != self.schema:
                self._store_version(self.schema)

    def _current(self) -> bool:
        """Whether the file already records :attr:`schema` (read without a write lock; a
        missing version table, or any error, says no: the write path then decides)."""
        try:
            return self._stored_version() == self.schema
        except sqlite3.Error:
            return False

    @abstractmethod
    def _stored_version(self) -> int | None:
        """The schema version the file records (``None``: none yet)."""

    @abstractmethod
    def _store_version(self, version: int) -> None:
        """Record ``version`` as the file's schema version."""

    @property
    def schema_version(self) -> int | None:
        """The schema version the file records."""
        return self._run("schema_version", None, lambda db: self._stored_version())

    def _write(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db)

    def _run(self, what: str, default: T, action: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``action`` under the lock; a database error is logged once and gives
        ``default``."""
        with self._lock:
            if self._closed:
                return default
            try:
                return action(self._db)
            except sqlite3.Error as exc:
                self._report(what, exc)
                return default

    def _report(self, what: str, exc: BaseException) -> None:
        key = f"{what}:{type(exc).__name__}:{exc}"
        if key not in self._reported:
            self._reported.add(key)
            log.warning(
                "nbremind %s (%s): %s failed%s: %s",
                self.kind,
                self.path,
                what,
                self.fallback,
                redact(f"{type(exc).__name__}: {exc}"),
            )

    def close(self) -> None:
        """Close the file (later calls do nothing and return their defaults)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                with contextlib.suppress(sqlite3.Error):
                    self._db.close()
