"""Short nested runs folded into their parent's history row (setting ``history_min``), as a
user meets it: a script in a fresh process, then ``nbremind history`` (or
``nbremind.history()``) in another one."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from nbremind import Session
from nbremind.channels.memory import MemoryChannel
from nbremind.core.config import Config, format_setting
from nbremind.runtime.session import set_session
from nbremind.store.outbox import FILE_NAME
from nbremind.store.runs import History

PY = sys.executable


def _python(
    code: str, env: dict[str, str] | None = None, *args: str
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [PY, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NBREMIND_CHANNELS": "null", **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return done


def _history(*args: str, env: dict[str, str] | None = None) -> Any:
    """``nbremind history --json ARGS`` in a fresh process, parsed."""
    done = subprocess.run(
        [PY, "-m", "nbremind", "history", "--json", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


_ETL = """
    from nbremind import remind, track

    with remind("etl"):
        for number in range(500):  # one short loop per file
            for _ in track(range(3), name="file"):
                pass
"""


def test_500_short_loops_in_a_block_are_one_row_with_500_folded_runs(
    nbremind_data_dir: Path,
) -> None:
    _python(_ETL)
    [etl] = _history()
    assert (etl["name"], etl["kind"], etl["state"]) == ("etl", "block", "succeeded")
    assert (etl["folded"], etl["nested"]) == (500, 0)
    assert 0 < etl["folded_duration"] <= etl["duration"]
    assert [r["name"] for r in _history("--all")] == ["etl"]  # the loops have no row
    table = subprocess.run(
        [PY, "-m", "nbremind", "history"], capture_output=True, text=True, timeout=90
    ).stdout.splitlines()
    assert table[0].split()[:6] == ["start", "name", "nested", "folded", "kind", "state"]
    assert table[1].split()[2:4] == ["etl", "500"] and " 500 in " in table[1], table
    db = sqlite3.connect(nbremind_data_dir / FILE_NAME)
    assert db.execute("SELECT COUNT(*) FROM runs").fetchone() == (1,)  # nothing left behind
    db.close()


def test_history_min_0_keeps_every_nested_run_as_its_row(nbremind_data_dir: Path) -> None:
    _python(_ETL, {"NBREMIND_HISTORY_MIN": "0"})
    [etl] = _history()
    assert (etl["folded"], etl["nested"]) == (0, 500)
    every = _history("--all", "--limit", "0")
    assert len(every) == 501 and {r["parent_id"] for r in every if r["name"] == "file"} == {
        etl["id"]
    }


def test_the_dataframe_of_a_fresh_process_shows_the_folded_runs(nbremind_data_dir: Path) -> None:
    pytest.importorskip("pandas")
    _python(_ETL)
    out = _python(
        """
        import json, nbremind
        frame = nbremind.history()
        print(json.dumps(frame[["name", "nested", "folded", "folded_duration"]]
                         .to_dict("records")))
        """
    ).stdout
    [row] = json.loads(out)
    assert (row["name"], row["nested"], row["folded"]) == ("etl", 0, 500)
    assert row["folded_duration"] > 0


_MIXED = """
    import json, time
    import nbremind
    from nbremind import remind, track
    from nbremind.store.runs import History

    session = nbremind.get_session()

    def names():
        assert session.history_recorder.sync()
        history = History.open(session.config)
        try:
            return {r["name"]: r["state"] for r in history.query(limit=None)}
        finally:
            history.close()

    seen = {}
    with remind("etl"):
        for _ in track(range(1), name="medium"):
            seen["medium while it runs"] = names().get("medium")  # not run history_min yet
        seen["medium after"] = names().get("medium")
        for _ in track(range(1), name="long"):  # work that takes longer than history_min
            deadline = time.monotonic() + 30
            while names().get("long") != "running" and time.monotonic() < deadline:
                time.sleep(0.05)  # its start is written once it has run history_min
            seen["long while it runs"] = names().get("long")
        try:
            with remind("bad block"):  # fails at once; the etl goes on
                raise KeyError("no such file")
        except KeyError:
            pass
        for _ in track(range(3), name="short"):
            pass
        try:
            for _ in track(range(3), name="bad"):
                raise ValueError("bad file 7")
        finally:
            print(json.dumps(seen))
"""


def test_long_and_failed_nested_runs_keep_their_row_short_ones_are_folded(
    nbremind_data_dir: Path,
) -> None:
    done = subprocess.run(
        [PY, "-c", textwrap.dedent(_MIXED)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NBREMIND_CHANNELS": "null", "NBREMIND_HISTORY_MIN": "500ms"},
    )
    assert done.returncode == 1 and "ValueError: bad file 7" in done.stderr, done.stderr
    seen = json.loads(done.stdout)
    # a nested loop is written as running once it has run history_min (the tick sees it);
    # one that ends sooner never had a row
    assert seen == {
        "medium while it runs": None,
        "medium after": None,
        "long while it runs": "running",
    }
    [etl] = _history()
    assert (etl["name"], etl["state"]) == ("etl", "failed")
    assert (etl["nested"], etl["folded"]) == (3, 2)  # long, bad block, bad; medium, short
    every = {r["name"]: r for r in _history("--all")}
    assert set(every) == {"etl", "long", "bad block", "bad"}
    assert every["long"]["parent_id"] == etl["id"] and every["long"]["state"] == "succeeded"
    assert every["long"]["duration"] >= 0.5
    for name, error in (
        ("bad block", ("KeyError", "'no such file'")),
        ("bad", ("ValueError", "bad file 7")),
    ):
        bad = every[name]
        assert (bad["parent_id"], bad["state"]) == (etl["id"], "failed"), bad
        assert (bad["error_type"], bad["error_message"]) == error, bad
    assert [r["name"] for r in _history("--state", "failed")] == ["etl"]  # top-level only
    assert {r["name"] for r in _history("--state", "failed", "--all")} == {
        "etl",
        "bad block",
        "bad",
    }


# -- in this process ------------------------------------------------------------------------------
@pytest.fixture
def session(nbremind_data_dir: Path) -> Any:
    channel = MemoryChannel()
    s = Session(Config(channels=(channel.name,)), channels={channel.name: channel})
    previous = set_session(s)
    yield s
    set_session(previous)
    s.close()


def _rows(session: Session) -> dict[str, dict[str, Any]]:
    assert session.history_recorder.sync()
    history = session.history_recorder.history
    assert history is not None
    return {r["name"]: r for r in history.query(limit=None)}


def test_a_short_block_passes_what_was_folded_into_it_to_its_parent(session: Session) -> None:
    from nbremind import remind, track

    with remind("outer"):
        with remind("inner"):
            for _ in range(10):
                for _ in track(range(2), name="leaf"):
                    pass
        for _ in track(range(2), name="top-level"):
            pass
    for _ in track(range(2), name="alone"):  # top level: always its row
        pass
    rows = _rows(session)
    assert set(rows) == {"outer", "alone"}
    assert rows["outer"]["folded"] == 12  # inner, its 10 leaves, top-level
    assert rows["alone"]["folded"] == 0 and rows["alone"]["parent_id"] is None


def test_interrupted_nested_runs_keep_their_row_a_loop_left_by_break_is_folded(
    session: Session,
) -> None:
    from nbremind import remind, track

    with remind("outer"):
        try:
            with remind("stopped"):
                raise KeyboardInterrupt
        except KeyboardInterrupt:
            pass
        for _ in track(range(5), name="left"):
            break  # a success with a partial count
    rows = _rows(session)
    assert rows["stopped"]["state"] == "cancelled"
    assert rows["stopped"]["parent_id"] == rows["outer"]["id"]
    assert "left" not in rows and rows["outer"]["folded"] == 1


def test_history_min_setting_is_validated_and_written_back() -> None:
    assert Config().history_min == 1.0
    assert Config().updated(history_min="250ms").history_min == 0.25
    for zero in (0, "0", "0s", "off"):
        assert Config().updated(history_min=zero).history_min == 0
    assert format_setting("history_min", 0.0) == "0"
    assert format_setting("history_min", 1.0) == "1s"
    assert Config().updated(history_min=format_setting("history_min", 0.25)).history_min == 0.25
    with pytest.raises(ValueError, match=r"^configure\(\): history_min: 'soon' is not a dura"):
        Config().updated(history_min="soon")
    with pytest.raises(ValueError, match=r"^NBREMIND_HISTORY_MIN: history_min: '-2s'"):
        Config().updated("NBREMIND_HISTORY_MIN", history_min="-2s")


def test_a_bad_history_min_variable_is_reported_naming_it_and_the_rest_applies(
    nbremind_data_dir: Path,
) -> None:
    done = _python(
        """
        import nbremind
        print(nbremind.get_session().config.history_min)
        """,
        {"NBREMIND_HISTORY_MIN": "soon", "NBREMIND_HISTORY_KEEP": "30d"},
    )
    assert done.stdout.strip() == "1.0"
    assert "NBREMIND_HISTORY_MIN: history_min: 'soon' is not a duration" in done.stderr


# -- the file ---------------------------------------------------------------------------------
def test_a_version_3_file_gains_the_folded_columns_and_keeps_its_rows(tmp_path: Path) -> None:
    from nbremind.store.runs import _MIGRATIONS, SCHEMA_VERSION

    path = tmp_path / FILE_NAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE history_meta (key TEXT PRIMARY KEY, value REAL NOT NULL)")
    for version in (1, 2, 3):
        for statement in _MIGRATIONS[version]:
            db.execute(statement)
    db.execute("INSERT INTO history_meta VALUES ('version', 3)")
    db.execute(
        "INSERT INTO runs (id, name, kind, state, start, \"end\") VALUES ('old', 'etl', 'block',"
        " 'succeeded', strftime('%s', 'now') - 60, strftime('%s', 'now') - 30)"
    )
    db.commit()
    db.close()
    history = History(path)
    assert history.schema_version == SCHEMA_VERSION == 5
    [row] = history.query()
    assert (row["id"], row["folded"], row["folded_duration"], row["nested"]) == ("old", 0, 0, 0)
    history.close()
    History(path).close()  # opened again: nothing to migrate
    db = sqlite3.connect(path)
    indexes = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"runs_by_age", "runs_by_state", "runs_by_parent", "runs_by_name"} <= indexes
    version = db.execute("SELECT value FROM history_meta WHERE key = 'version'").fetchone()
    assert version == (SCHEMA_VERSION,)
    db.close()


def _plans(history: History, calls: list[Any]) -> list[str]:
    """The query plan of every statement on ``runs`` the calls ran."""
    statements: list[str] = []
    db = history._db
    db.set_trace_callback(statements.append)
    try:
        for call in calls:
            call()
    finally:
        db.set_trace_callback(None)
    plans = []
    for sql in statements:
        if " runs" not in sql or not sql.lstrip().upper().startswith(("SELECT", "WITH", "DELETE")):
            continue
        plans.extend(
            f"{detail}  <- {sql[:70]}" for *_, detail in db.execute(f"EXPLAIN QUERY PLAN {sql}")
        )
    return plans


def test_history_queries_and_retention_read_through_indexes(tmp_path: Path) -> None:
    """What keeps them flat from 10 k to 1 M runs (benchmarks/history_scale.py measures it):
    no statement on ``runs`` scans the table without an index."""
    from nbremind.core.task import Task, TaskState
    from nbremind.testing import FakeClock

    clock = FakeClock()
    history = History(tmp_path / FILE_NAME, clock=clock)
    job = Task("etl", clock=clock, kind="block")
    job.mark_started()
    part = Task("part", clock=clock, kind="loop", parent=job)
    part.mark_started()
    for task in (part, job):
        clock.advance(5)
        task.mark_ended(TaskState.SUCCEEDED)
        history.record_end(task.snapshot())
    clock.advance(2 * 86400)  # retention is due again
    plans = _plans(
        history,
        [
            lambda: history.query(nested=False),
            lambda: history.query(name="etl", nested=False),
            lambda: history.query(state="failed"),
            lambda: history.query(since=clock.time() - 3600),
            lambda: history.running(pid=os.getpid()),
            history._prune,
        ],
    )
    history.close()
    assert any("runs_by_parent" in plan for plan in plans), plans  # the nested counts
    assert any("runs_by_age" in plan and "DELETE" in plan for plan in plans), plans
    assert all("USING" in plan or not plan.startswith("SCAN runs") for plan in plans), plans


def test_opening_a_file_whose_retention_ran_today_takes_no_write_lock(tmp_path: Path) -> None:
    """A reader (``nbremind history``) opens the file while another process writes to it."""
    from nbremind.testing import FakeClock

    clock = FakeClock()
    path = tmp_path / FILE_NAME
    History(path, clock=clock).close()  # made, migrated, retention run
    clock.advance(3600)

    class Impatient(History):
        busy_timeout = 0.2  # a write lock would fail: another process holds it

    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("INSERT INTO runs (id, name, kind, state) VALUES ('w', 'w', 'block', 'running')")
    try:
        reader = Impatient(path, clock=clock)
        assert reader.query() == []  # the writer's row is not committed yet
        reader.close()
    finally:
        writer.execute("COMMIT")
        writer.close()
    clock.advance(2 * 86400)  # retention due: that open writes (and waits its turn)
    reader = Impatient(path, clock=clock)
    assert [r["id"] for r in reader.query()] == ["w"]
    reader.close()
