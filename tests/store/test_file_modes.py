"""Other users of the machine cannot read the data folder: it is 0700 and every file in it
(the SQLite file, its -wal and -shm, watchdog.log, moved-aside copies) 0600, under umask 022,
with real scripts run in their own interpreter. Older, looser folders and files are tightened
when nbremind opens them."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nbremind.store.private_files import private_file, private_folder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="Windows has no POSIX modes")

#: Runs one block (a watchdog too when asked) under umask 022 and prints the modes of the
#: data folder and its files while the block runs (once the run history holds the block, so
#: nbremind has the file open, its -wal and -shm are there, and the watchdog when asked) and
#: after the interpreter is done with them.
_SCRIPT = """
import json, os, sqlite3, sys, time
os.umask(0o022)
import nbremind
from nbremind.store.sqlite import moved_aside

folder = os.environ["NBREMIND_DATA_DIR"]
path = os.path.join(folder, "outbox.sqlite3")
watchdog = sys.argv[1] == "watchdog"
wanted = ["outbox.sqlite3-wal", "outbox.sqlite3-shm"] + (["watchdog.log"] if watchdog else [])


def modes():
    files = {n: os.stat(os.path.join(folder, n)).st_mode & 0o7777 for n in os.listdir(folder)}
    return {"folder": os.stat(folder).st_mode & 0o7777, "files": files}


def recorded():
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT 1 FROM runs WHERE name = 'x'").fetchall() != []
    except sqlite3.Error:
        return False


with nbremind.remind("x", channels=["null"], watchdog=watchdog):
    session = nbremind.get_session()
    deadline, ready = time.monotonic() + 30, False
    while not ready and time.monotonic() < deadline:
        there = os.path.isdir(folder) and all(n in os.listdir(folder) for n in wanted)
        ready = there and recorded() and bool(session.watchdog_pid or not watchdog)
        if not ready:
            time.sleep(0.02)
    running = modes()
session.close()
moved = {k: str(v) for k, v in moved_aside().items()}
print(json.dumps({"ready": ready, "running": running, "after": modes(), "moved": moved}))
"""


def _run(data: Path, mode: str = "block") -> dict[str, object]:
    env = {**os.environ, "NBREMIND_DATA_DIR": str(data)}
    run = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_SCRIPT), mode],
        env=env,
        cwd=data.parent,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert run.returncode == 0, run.stderr
    result: dict[str, object] = json.loads(run.stdout.splitlines()[-1])
    assert result["ready"], f"the block was not recorded (or its watchdog started): {result}"
    return result


def _assert_private(snapshot: object, *must_have: str) -> None:
    assert isinstance(snapshot, dict)
    assert snapshot["folder"] == 0o700, oct(snapshot["folder"])
    files = snapshot["files"]
    for name in must_have:
        assert name in files, (name, sorted(files))
    loose = {name: oct(mode) for name, mode in files.items() if mode != 0o600}
    assert loose == {}, loose


def test_a_new_data_folder_and_every_file_in_it_are_owner_only(
    nbremind_data_dir: Path,
) -> None:
    data = nbremind_data_dir / "data"
    result = _run(data)
    names = ("outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm")
    _assert_private(result["running"], *names)
    _assert_private(result["after"], "outbox.sqlite3")
    # the file is the store the block was recorded in, not a placeholder
    with sqlite3.connect(data / "outbox.sqlite3") as db:
        assert db.execute("SELECT name, state FROM runs").fetchall() == [("x", "succeeded")]


def test_an_older_folder_and_files_made_readable_by_all_are_tightened(
    nbremind_data_dir: Path,
) -> None:
    data = nbremind_data_dir / "data"
    data.mkdir()
    data.chmod(0o755)
    path = data / "outbox.sqlite3"
    keep = sqlite3.connect(path)  # held open: its -wal and -shm stay on disk
    try:
        keep.execute("PRAGMA journal_mode = WAL")
        keep.execute("CREATE TABLE older (value TEXT)")
        keep.execute("INSERT INTO older VALUES ('kept')")
        keep.commit()
        names = ("outbox.sqlite3", "outbox.sqlite3-wal", "outbox.sqlite3-shm")
        for name in names:
            (data / name).chmod(0o644)
        before = {name: stat.S_IMODE((data / name).stat().st_mode) for name in names}
        assert before == dict.fromkeys(names, 0o644)
        result = _run(data)
    finally:
        keep.close()
    _assert_private(result["running"], *names)
    _assert_private(result["after"], "outbox.sqlite3")
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM older").fetchall() == [("kept",)]


def test_a_corrupt_file_moved_aside_is_owner_only(nbremind_data_dir: Path) -> None:
    data = nbremind_data_dir / "data"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    garbage = b"this is not a database, " * 200
    (data / "outbox.sqlite3").write_bytes(garbage)
    (data / "outbox.sqlite3").chmod(0o644)
    result = _run(data)
    moved = result["moved"]
    assert isinstance(moved, dict) and list(moved) == [str(data / "outbox.sqlite3")], moved
    aside = Path(moved[str(data / "outbox.sqlite3")])
    assert aside.parent == data and aside.name.startswith("outbox.sqlite3.corrupt-")
    assert aside.read_bytes() == garbage
    _assert_private(result["after"], "outbox.sqlite3", aside.name)


def test_the_watchdog_log_is_owner_only_and_an_older_one_is_tightened(
    nbremind_data_dir: Path,
) -> None:
    data = nbremind_data_dir / "data"
    data.mkdir()
    log = data / "watchdog.log"
    log.write_text("an older run\n")
    log.chmod(0o644)
    result = _run(data, "watchdog")
    _assert_private(result["running"], "watchdog.log", "outbox.sqlite3")
    _assert_private(result["after"], "watchdog.log")
    assert log.read_text().startswith("an older run\n")  # appended to, not replaced


def test_a_shared_sticky_folder_and_others_files_are_left_alone(tmp_path: Path) -> None:
    """A ``data_dir`` set to a folder such as /tmp (sticky, for everyone) is used, not closed
    to the other users; a new file in it is still 0600."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    assert private_folder(shared) == shared
    assert stat.S_IMODE(shared.stat().st_mode) == 0o1777
    old_umask = os.umask(0o022)
    try:
        made = private_file(shared / "new.sqlite3")
    finally:
        os.umask(old_umask)
    assert made.read_bytes() == b"" and stat.S_IMODE(made.stat().st_mode) == 0o600
