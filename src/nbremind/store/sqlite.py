"""Opening nbremind's SQLite file: a corrupt file is moved aside, never deleted.

The outbox and the run history share one file (``outbox.sqlite3`` in the data folder).
:func:`open_database` opens it the way both want (autocommit, usable from the loop thread,
a busy timeout) and first checks that it is a readable database. A file that is not one
(garbage, truncated, "database disk image is malformed") is renamed to
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
from collections.abc import Iterator
from pathlib import Path

from .private_files import private_file, private_folder, tighten

__all__ = ["CorruptDatabase", "moved_aside", "open_database"]

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
            _check(db)
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


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    return sqlite3.connect(
        str(path),
        timeout=timeout,
        isolation_level=None,  # autocommit; writes use explicit BEGIN IMMEDIATE
        check_same_thread=False,  # callers guard the connection with a lock
    )


def _check(db: sqlite3.Connection) -> None:
    """Raise :class:`CorruptDatabase` when the file is not a readable database."""
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        row = db.execute("PRAGMA quick_check(1)").fetchone()
    except sqlite3.DatabaseError as exc:
        if isinstance(exc, sqlite3.OperationalError) and not _corrupt_text(str(exc)):
            raise  # locked, read-only, I/O: not the file's fault
        raise CorruptDatabase(f"{type(exc).__name__}: {exc}") from exc
    if row is None or row[0] != "ok":
        raise CorruptDatabase(f"integrity check: {row[0] if row else 'no answer'}")


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
        "started (nothing was deleted)", path, why, aside,
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
