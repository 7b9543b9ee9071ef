"""A run-history file as an older nbremind left it, to test the migrations forward."""

from __future__ import annotations

import sqlite3
from pathlib import Path

__all__ = ["old_history_file"]


def old_history_file(path: Path, version: int = 1) -> sqlite3.Connection:
    """Make ``path`` a history file of schema ``version`` (its tables, no rows); return an
    open connection to it for the test to add rows, commit and close."""
    from nbremind.store.runs import _MIGRATIONS

    db = sqlite3.connect(path)
    db.execute("CREATE TABLE history_meta (key TEXT PRIMARY KEY, value REAL NOT NULL)")
    for step in range(1, version + 1):
        for statement in _MIGRATIONS[step]:
            db.execute(statement)
    db.execute("INSERT INTO history_meta VALUES ('version', ?)", (version,))
    return db
