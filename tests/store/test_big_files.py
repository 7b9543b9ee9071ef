"""A big data file opens without reading all of it, and a truncated one is still caught.

SQLite's ``quick_check`` reads the whole file; on a file of many megabytes that is the
cost of every process's first ``remind()``. Past 4 MiB it runs only when the file holds
fewer pages than the database counts (cut short), and not while another process has pages
in the WAL file.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

from nbremind.store.outbox import FILE_NAME
from nbremind.store.sqlite import QUICK_CHECK_MAX

PY = sys.executable


def _big_file(path: Path) -> None:
    """A real nbremind data file, grown past the size that gets the full check."""
    subprocess.run(
        [PY, "-c", "import nbremind\nwith nbremind.remind('seed', channels=['null']): pass"],
        check=True,
        timeout=60,
        env={**os.environ, "NBREMIND_DATA_DIR": str(path.parent)},
    )
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE ballast (blob BLOB)")
    db.executemany("INSERT INTO ballast VALUES (?)", [(os.urandom(4096),)] * 1500)
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    assert path.stat().st_size > QUICK_CHECK_MAX


def _first_remind(data: Path) -> subprocess.CompletedProcess[str]:
    script = textwrap.dedent(
        """
        import json, nbremind
        from nbremind.store.sqlite import moved_aside
        with nbremind.remind("next", channels=["null"]):
            pass
        nbremind.get_session().history_recorder.sync()
        print(json.dumps({k: str(v) for k, v in moved_aside().items()}))
        """
    )
    return subprocess.run(
        [PY, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NBREMIND_DATA_DIR": str(data), "NBREMIND_CHANNELS": "null"},
    )


def test_a_big_healthy_file_is_kept_and_used(nbremind_data_dir: Path) -> None:
    path = nbremind_data_dir / FILE_NAME
    _big_file(path)
    done = _first_remind(nbremind_data_dir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{}"  # nothing moved aside
    names = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM runs")}
    assert {"seed", "next"} <= names


def test_a_big_file_cut_short_is_moved_aside_and_a_fresh_one_started(
    nbremind_data_dir: Path,
) -> None:
    path = nbremind_data_dir / FILE_NAME
    _big_file(path)
    with open(path, "r+b") as handle:  # a disk that filled up, a copy cut short
        handle.truncate(path.stat().st_size // 2)
    done = _first_remind(nbremind_data_dir)
    assert done.returncode == 0, done.stderr
    assert "moved to" in done.stderr and "nothing was deleted" in done.stderr, done.stderr
    asides = list(nbremind_data_dir.glob(f"{FILE_NAME}.corrupt-*"))
    assert len(asides) == 1 and asides[0].stat().st_size > QUICK_CHECK_MAX // 2
    names = {r[0] for r in sqlite3.connect(path).execute("SELECT name FROM runs")}
    assert names == {"next"}
