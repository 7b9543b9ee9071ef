"""The usual duration of a task in the run history: the median of the last 10 succeeded runs
of the same work (at least 3), its key written on every row, its one indexed look-up, and
older files migrating to the column and index that answer it."""

from __future__ import annotations

import sqlite3
import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from _old_history import old_history_file
from nbremind.core.task import Task, TaskError, TaskState
from nbremind.store.outbox import FILE_NAME
from nbremind.store.runs import SCHEMA_VERSION, USUAL_MIN, USUAL_RUNS, History, run_key
from nbremind.testing import FakeClock


def _run(
    history: History,
    clock: FakeClock,
    name: str,
    seconds: float,
    *,
    kind: str = "block",
    state: TaskState = TaskState.SUCCEEDED,
    key: str | None = None,
) -> Task:
    """One run of ``seconds`` recorded as the session records it: its start, then its end."""
    task = Task(name, clock=clock, kind=kind)
    task.mark_started()
    assert history.record_start(task.snapshot(), key=key)
    clock.advance(seconds)
    error = TaskError("ValueError", "bad row") if state is TaskState.FAILED else None
    task.mark_ended(state, error)
    assert history.record_end(task.snapshot(), key=key)
    clock.advance(1)
    return task


@pytest.fixture
def history(tmp_path: Path, clock: FakeClock) -> Any:
    h = History(tmp_path / FILE_NAME, clock=clock)
    yield h
    h.close()


def test_fewer_than_three_succeeded_runs_give_no_usual_duration(
    history: History, clock: FakeClock
) -> None:
    key = run_key("etl", "block")
    assert history.usual_duration(key) is None
    _run(history, clock, "etl", 60)
    _run(history, clock, "etl", 90)
    for state in (TaskState.FAILED, TaskState.CANCELLED, TaskState.TIMED_OUT):
        _run(history, clock, "etl", 5000, state=state)  # none of these counts
    running = Task("etl", clock=clock, kind="block")
    running.mark_started()
    history.record_start(running.snapshot())
    assert USUAL_MIN == 3
    assert history.usual_duration(key) is None
    _run(history, clock, "etl", 120)
    assert history.usual_duration(key) == pytest.approx(90)


def test_the_usual_duration_is_the_median_of_the_last_ten_succeeded_runs(
    history: History, clock: FakeClock
) -> None:
    durations = [float(10 * k) for k in range(1, 13)]  # 12 runs: the first two are too old
    for seconds in durations:
        _run(history, clock, "etl", seconds)
        _run(history, clock, "etl", 9999, state=TaskState.FAILED)
    assert USUAL_RUNS == 10
    usual = history.usual_duration(run_key("etl", "block"))
    assert usual == pytest.approx(statistics.median(durations[-10:])) == pytest.approx(75)
    _run(history, clock, "etl", 1000)  # 11 runs now: the last 10 have an odd median
    assert history.usual_duration(run_key("etl", "block")) == pytest.approx(
        statistics.median([*durations[-9:], 1000.0])
    )


def test_the_key_is_the_kind_and_name_or_what_the_task_gives(
    history: History, clock: FakeClock, tmp_path: Path
) -> None:
    for seconds in (10, 20, 30):
        _run(history, clock, "train", seconds, kind="block")
        _run(history, clock, "train", seconds * 100, kind="cell")
        _run(history, clock, "cell [3]", seconds * 7, kind="cell", key="code:abc")
    assert run_key("train", "block") == "block:train"
    assert history.usual_duration("block:train") == pytest.approx(20)
    assert history.usual_duration("cell:train") == pytest.approx(2000)  # different work
    assert history.usual_duration("code:abc") == pytest.approx(140)
    assert history.usual_duration("cell:cell [3]") is None  # an unnamed cell's name is no key
    # every row carries its key, the start's and the end's alike
    db = sqlite3.connect(tmp_path / FILE_NAME)
    keys = {tuple(r) for r in db.execute("SELECT kind, name, usual_key FROM runs")}
    db.close()
    assert keys == {
        ("block", "train", "block:train"),
        ("cell", "train", "cell:train"),
        ("cell", "cell [3]", "code:abc"),
    }


def test_record_many_writes_the_keys_given_and_derives_the_others(
    history: History, clock: FakeClock, tmp_path: Path
) -> None:
    runs = []
    for name in ("a", "b"):
        task = Task(name, clock=clock, kind="loop")
        task.mark_started()
        task.mark_ended(TaskState.SUCCEEDED)
        runs.append((task, (task.snapshot(), 0)))
    assert history.record_many([run for _task, run in runs], keys={runs[0][0].id: "code:f00"})
    db = sqlite3.connect(tmp_path / FILE_NAME)
    keys = dict(db.execute("SELECT name, usual_key FROM runs").fetchall())
    db.close()
    assert keys == {"a": "code:f00", "b": "loop:b"}


def _statements(history: History) -> list[str]:
    """The statements ``history``'s connection runs from now on, as run (values bound)."""
    seen: list[str] = []
    history._db.set_trace_callback(seen.append)
    return seen


def test_the_look_up_is_one_query_answered_from_the_index_alone(tmp_path: Path) -> None:
    clock = FakeClock()
    history = History(tmp_path / FILE_NAME, clock=clock)
    # a file of 30,000 runs of 30 names and every state: the plan must not depend on luck
    db = sqlite3.connect(tmp_path / FILE_NAME)
    states = ("succeeded", "succeeded", "failed", "cancelled", "running")
    db.executemany(
        "INSERT INTO runs (id, name, kind, state, start, duration, usual_key)"
        " VALUES (?, ?, 'block', ?, ?, ?, ?)",
        (
            (
                f"r{i}",
                f"name {i % 30}",
                states[(i // 30) % 5],
                1e9 + i,
                float(i % 97),
                f"block:name {i % 30}",
            )
            for i in range(30_000)
        ),
    )
    db.commit()
    db.execute("ANALYZE")
    db.close()
    seen = _statements(history)
    usual = history.usual_duration("block:name 7")
    history._db.set_trace_callback(None)
    assert usual is not None
    [sql] = [s for s in seen if "usual_key" in s]  # one query, nothing else on the table
    assert [s for s in seen if "runs" in s] == [sql]
    plan = " | ".join(
        str(row[-1])
        for row in sqlite3.connect(tmp_path / FILE_NAME).execute(f"EXPLAIN QUERY PLAN {sql}")
    )
    assert "USING COVERING INDEX runs_usual" in plan, plan
    assert "SCAN" not in plan and "TEMP B-TREE" not in plan, plan  # no scan, no sort
    history.close()


def test_a_version_4_file_gains_the_key_column_and_its_index(tmp_path: Path) -> None:
    from nbremind.store.runs import _MIGRATIONS

    path = tmp_path / FILE_NAME
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE history_meta (key TEXT PRIMARY KEY, value REAL NOT NULL)")
    for version in (1, 2, 3, 4):
        for statement in _MIGRATIONS[version]:
            db.execute(statement)
    db.execute("INSERT INTO history_meta VALUES ('version', 4)")
    now = time.time()
    db.executemany(
        "INSERT INTO runs (id, name, kind, state, start, duration) VALUES (?, 'etl', 'block',"
        " 'succeeded', ?, 60)",
        [(f"old{i}", now - 1000 + i) for i in range(5)],
    )
    db.commit()
    db.close()
    clock = FakeClock(wall=now)
    history = History(path, clock=clock)
    assert history.schema_version == SCHEMA_VERSION == 5
    assert history.count() == 5  # the old rows are kept ...
    assert history.usual_duration(run_key("etl", "block")) is None  # ... but have no key
    for seconds in (10, 20, 30):
        _run(history, clock, "etl", seconds)
    assert history.usual_duration(run_key("etl", "block")) == pytest.approx(20)
    history.close()
    db = sqlite3.connect(path)
    columns = {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    indexes = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    db.close()
    assert "usual_key" in columns and "runs_usual" in indexes


def test_a_version_1_file_migrates_to_the_key_column(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    db = old_history_file(path, 1)
    db.commit()
    db.close()
    clock = FakeClock()
    history = History(path, clock=clock)
    assert history.schema_version == SCHEMA_VERSION
    for seconds in (4, 5, 6):
        _run(history, clock, "load", seconds, kind="cell")
    assert history.usual_duration("cell:load") == pytest.approx(5)
    history.close()
