"""The run history: rows for every front end, many writers at once, migration, retention,
corrupt files moved aside, the DataFrame and ``%remind history``."""

from __future__ import annotations

import datetime as dt
import logging
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

import nbremind
from _old_history import old_history_file
from nbremind import Session
from nbremind.channels.memory import MemoryChannel
from nbremind.core.config import Config
from nbremind.core.task import Task, TaskError, TaskState
from nbremind.runtime.session import set_session
from nbremind.store.outbox import FILE_NAME, Outbox
from nbremind.store.process import Owner
from nbremind.store.runs import DEFAULT_KEEP, PRUNE_EVERY, SCHEMA_VERSION, History, parse_since
from nbremind.store.sqlite import moved_aside
from nbremind.testing import FakeClock

PY = sys.executable
DAY = 86400.0


def _ended(
    clock: Any,
    name: str,
    state: TaskState = TaskState.SUCCEEDED,
    error: TaskError | None = None,
    seconds: float = 5.0,
) -> Task:
    task = Task(name, clock=clock, total=10, kind="block", source="etl.py", host="box")
    task.mark_started()
    task.advance(4)
    clock.advance(seconds)
    task.mark_ended(state, error)
    return task


def _wait_until(condition: Any, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)


# -- the History object ------------------------------------------------------------------------
def test_start_then_end_gives_one_row_with_every_field(tmp_path: Path) -> None:
    clock = FakeClock()
    history = History(tmp_path / FILE_NAME, clock=clock)
    task = Task("etl", clock=clock, total=10, kind="block", source="etl.py", host="box")
    task.mark_started()
    assert history.record_start(task.snapshot())
    [running] = history.running(pid=os.getpid())
    assert running["state"] == "running" and running["end"] is None
    assert running["pid_start"] == pytest.approx(Owner.current().start)
    task.advance(4)
    task.peak_rss = 123_456
    clock.advance(90)
    task.mark_ended(TaskState.FAILED, TaskError("ValueError", "bad row 2"))
    assert history.record_end(task.snapshot(), notices_sent=2)
    assert history.add_notices(task.id)
    [row] = history.query()
    assert row["id"] == task.id and row["name"] == "etl" and row["kind"] == "block"
    assert row["source"] == "etl.py" and row["host"] == "box" and row["pid"] == os.getpid()
    assert row["state"] == "failed" and row["duration"] == pytest.approx(90)
    assert row["end"] - row["start"] == pytest.approx(90)
    assert (row["n"], row["total"], row["peak_rss"]) == (4, 10, 123_456)
    assert (row["error_type"], row["error_message"]) == ("ValueError", "bad row 2")
    assert row["notices"] == 3
    assert history.running() == []
    history.close()


def test_query_filters_by_name_state_and_since_newest_first(tmp_path: Path) -> None:
    clock = FakeClock()
    history = History(tmp_path / FILE_NAME, clock=clock)
    first = _ended(clock, "etl")
    history.record_end(first.snapshot())
    clock.advance(3600)
    second = _ended(clock, "etl", TaskState.CANCELLED)
    history.record_end(second.snapshot())
    other = _ended(clock, "train")
    history.record_end(other.snapshot())
    assert [r["id"] for r in history.query()] == [other.id, second.id, first.id]
    assert [r["id"] for r in history.query(name="etl")] == [second.id, first.id]
    assert [r["id"] for r in history.query(state="cancelled")] == [second.id]
    assert [r["id"] for r in history.query(since=clock.time() - 1800)] == [other.id, second.id]
    assert len(history.query(limit=1)) == 1


def test_mark_process_died_fails_only_that_process_running_rows(tmp_path: Path) -> None:
    clock = FakeClock()
    history = History(tmp_path / FILE_NAME, clock=clock)
    running = Task("train", clock=clock, kind="cell")
    running.mark_started()
    history.record_start(running.snapshot())
    done = _ended(clock, "etl")
    history.record_end(done.snapshot())
    me = Owner.current()
    assert history.mark_process_died(me.pid, me.start + 100, "process died") == []  # other start
    clock.advance(60)
    names = history.mark_process_died(me.pid, me.start, "process died (SIGKILL)", 4096)
    assert names == ["train"]
    rows = {r["name"]: r for r in history.query()}
    assert rows["train"]["state"] == "failed"
    assert rows["train"]["reason"] == "process died (SIGKILL)"
    assert rows["train"]["end"] == pytest.approx(clock.time())
    assert rows["train"]["peak_rss"] == 4096
    assert rows["etl"]["state"] == "succeeded"


def test_history_open_follows_the_settings(tmp_path: Path) -> None:
    on = History.open(Config(data_dir=str(tmp_path)))
    assert on is not None and on.path == tmp_path / FILE_NAME and on.keep == DEFAULT_KEEP
    on.close()
    assert History.open(Config(data_dir=str(tmp_path), outbox=False)) is None
    assert History.open(Config(data_dir=str(tmp_path)).updated(history_keep="off")) is None


def test_history_keep_setting_is_validated() -> None:
    assert Config().updated(history_keep="30d").history_keep == 30 * DAY
    assert Config().updated(history_keep="off").history_keep == 0
    with pytest.raises(ValueError, match=r"configure\(\): history_keep: 'soon'"):
        Config().updated(history_keep="soon")


# -- schema ------------------------------------------------------------------------------------
def test_a_version_1_file_migrates_forward_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    db = old_history_file(path, 1)
    db.execute(
        "INSERT INTO runs (id, name, kind, state, start) VALUES ('old', 'etl', 'block',"
        " 'succeeded', ?)",
        (time.time(),),
    )
    db.commit()
    db.close()
    history = History(path)
    assert history.schema_version == SCHEMA_VERSION == 5
    assert [(r["id"], r["nested"]) for r in history.query(nested=False)] == [("old", 0)]
    history.close()
    indexes = {
        row[0]
        for row in sqlite3.connect(path).execute(
            "SELECT name FROM sqlite_master WHERE type = 'index'"
        )
    }
    assert {"runs_running", "runs_by_start", "runs_by_name", "runs_by_parent"} <= indexes
    assert "runs_by_process" not in indexes  # replaced by the partial runs_running


def test_top_level_runs_carry_the_count_of_runs_nested_at_any_depth(tmp_path: Path) -> None:
    clock = FakeClock()
    history = History(tmp_path / FILE_NAME, clock=clock)
    job = Task("job", clock=clock, kind="block")
    job.mark_started()
    chunks = [Task("chunk", clock=clock, kind="loop", parent=job) for _ in range(3)]
    calls = []
    for chunk in chunks:
        chunk.mark_started()
        call = Task("apply", clock=clock, kind="pandas", parent=chunk)
        call.mark_started()
        calls.append(call)
    lone = Task("lone", clock=clock, kind="block")
    lone.mark_started()
    orphan = Task("orphan", clock=clock, kind="loop", parent=Task("gone", clock=clock))
    orphan.mark_started()  # its parent was never recorded: it is listed as top-level
    for task in (job, *chunks, *calls, lone, orphan):
        clock.advance(1)
        task.mark_ended(TaskState.SUCCEEDED)
        assert history.record_end(task.snapshot())
    top = {r["name"]: r["nested"] for r in history.query(nested=False)}
    assert top == {"job": 6, "lone": 0, "orphan": 0}
    every = history.query(limit=None)
    assert len(every) == 9
    assert {r["name"]: r["nested"] for r in every if r["kind"] == "loop"} == {
        "chunk": 1,
        "orphan": 0,
    }
    assert [r["name"] for r in history.query(name="apply", nested=False)] == []
    assert len(history.query(name="apply")) == 3
    history.close()


def test_a_file_from_a_newer_nbremind_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    History(tmp_path / FILE_NAME).close()
    db = sqlite3.connect(tmp_path / FILE_NAME)
    db.execute("UPDATE history_meta SET value = 99 WHERE key = 'version'")
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING, "nbremind"):
        assert History.open(Config(data_dir=str(tmp_path))) is None
    assert "newer nbremind (schema 99" in caplog.text
    assert (tmp_path / FILE_NAME).exists()


# -- retention ---------------------------------------------------------------------------------
def test_retention_deletes_old_finished_runs_at_most_daily(tmp_path: Path) -> None:
    clock = FakeClock()
    path = tmp_path / FILE_NAME
    history = History(path, keep=7 * DAY, clock=clock)
    old = _ended(clock, "old")
    history.record_end(old.snapshot())
    still = Task("still", clock=clock)
    still.mark_started()
    history.record_start(still.snapshot())
    history.close()

    clock.advance(8 * DAY)
    recent = _ended(clock, "recent")
    # opened less than a day after the last pruning: nothing is deleted yet
    clock.advance(-8 * DAY + PRUNE_EVERY / 2)
    history = History(path, keep=7 * DAY, clock=clock)
    assert {r["name"] for r in history.query()} == {"old", "still"}
    history.record_end(recent.snapshot())
    history.close()

    clock.advance(8 * DAY)
    history = History(path, keep=7 * DAY, clock=clock)
    assert {r["name"] for r in history.query()} == {"still", "recent"}  # running rows stay
    history.close()


# -- corrupt files ------------------------------------------------------------------------------
def _check_moved_aside(path: Path, caplog: pytest.LogCaptureFixture, original: bytes) -> None:
    aside = moved_aside()[str(path)]
    assert aside.name.startswith(f"{FILE_NAME}.corrupt-") and aside.parent == path.parent
    assert aside.read_bytes() == original  # nothing deleted
    assert str(path) in caplog.text and str(aside) in caplog.text
    assert "not a usable database" in caplog.text


@pytest.mark.parametrize("opener", ["history", "outbox"])
def test_a_garbage_file_is_moved_aside_and_a_fresh_one_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, opener: str
) -> None:
    path = tmp_path / FILE_NAME
    garbage = b"this is not a database\n" * 500
    path.write_bytes(garbage)
    clock = FakeClock()
    with caplog.at_level(logging.WARNING, "nbremind"):
        store: Any = History(path, clock=clock) if opener == "history" else Outbox(path)
    _check_moved_aside(path, caplog, garbage)
    store.close()
    history = History(path, clock=clock)
    task = _ended(clock, "after")
    assert history.record_end(task.snapshot())
    assert [r["name"] for r in history.query()] == ["after"]
    history.close()


def test_a_truncated_file_is_moved_aside_and_a_fresh_one_works(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / FILE_NAME
    clock = FakeClock()
    history = History(path, clock=clock)
    for i in range(300):
        history.record_end(_ended(clock, f"run {i} " + "x" * 400).snapshot())
    history.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    whole = path.read_bytes()
    assert len(whole) > 100_000
    half = whole[: len(whole) // 2]
    path.write_bytes(half)
    with caplog.at_level(logging.WARNING, "nbremind"):
        fresh = History(path, clock=clock)
    _check_moved_aside(path, caplog, half)
    assert fresh.count() == 0
    assert fresh.record_end(_ended(clock, "after").snapshot())
    assert fresh.count() == 1
    fresh.close()
    outbox = Outbox(path)  # the outbox shares the fresh file
    assert outbox.stats()["notices"] == 0
    outbox.close()


# -- many writers -------------------------------------------------------------------------------
_WRITER = textwrap.dedent("""
    import logging, sys, time
    from pathlib import Path
    logging.basicConfig(level=logging.WARNING)
    from nbremind.core.clock import SystemClock
    from nbremind.store.runs import History
    from nbremind.core.task import Task, TaskState
    path, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    history = History(path)
    ready.touch()
    while not go.exists():
        time.sleep(0.005)
    ok = 0
    for i in range(500):
        task = Task(f"w{i}", clock=SystemClock(), kind="block")
        task.mark_started()
        ok += history.record_start(task.snapshot())
        task.mark_ended(TaskState.SUCCEEDED)
        ok += history.record_end(task.snapshot(), 1)
    print(ok)
""")


def test_four_processes_writing_500_tasks_each_give_exactly_2000_rows(tmp_path: Path) -> None:
    path = tmp_path / FILE_NAME
    go = tmp_path / "go"
    procs = []
    for n in range(4):
        ready = tmp_path / f"ready{n}"
        procs.append(
            (
                ready,
                subprocess.Popen(
                    [PY, "-c", _WRITER, str(path), str(ready), str(go)],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                ),
            )
        )
    _wait_until(lambda: all(r.exists() for r, _p in procs), what="four writers ready")
    go.touch()  # all four write at once
    for _ready, proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        assert out.strip() == "1000", err
        assert "locked" not in err and "failed" not in err, err
    history = History(path)
    assert history.count() == 2000
    rows = history.query(limit=None)
    assert len({r["id"] for r in rows}) == 2000
    assert {r["state"] for r in rows} == {"succeeded"} and {r["notices"] for r in rows} == {1}
    assert len({r["pid"] for r in rows}) == 4
    history.close()


# -- what the session records -----------------------------------------------------------------
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


def test_remind_track_and_pandas_tasks_are_recorded(session: Session) -> None:
    from nbremind import remind, track

    with remind("block", total=3) as task:
        task.advance(3)
    for _ in track(range(5), name="loop"):
        pass
    with pytest.raises(ValueError), remind("broken"):
        raise ValueError("bad row 7")
    pd = pytest.importorskip("pandas")
    import nbremind.pandas

    nbremind.pandas.install()  # at once: importing it may have left that to a hook

    df = pd.DataFrame({"a": [1, 2, 3]})
    df.remind.apply(lambda row: row["a"] * 2, axis=1, name="scoring")
    assert session.flush()
    _wait_until(
        lambda: _rows(session).get("scoring", {}).get("notices") == 1,
        what="the pandas run's notice counted",
    )
    rows = _rows(session)
    assert rows["block"]["kind"] == "block" and rows["block"]["state"] == "succeeded"
    assert (rows["block"]["n"], rows["block"]["total"]) == (3, 3)
    assert rows["loop"]["kind"] == "loop" and rows["loop"]["n"] == 5
    assert rows["broken"]["state"] == "failed"
    assert (rows["broken"]["error_type"], rows["broken"]["error_message"]) == (
        "ValueError",
        "bad row 7",
    )
    assert rows["scoring"]["kind"] == "pandas" and rows["scoring"]["total"] == 3
    for name in ("block", "loop", "broken", "scoring"):
        assert rows[name]["notices"] == 1, rows[name]
        assert rows[name]["pid"] == os.getpid() and rows[name]["end"] >= rows[name]["start"]


def test_a_running_task_is_recorded_running_then_its_end(session: Session) -> None:
    from nbremind import remind

    with remind("long"):
        assert _rows(session)["long"]["state"] == "running"
    assert _rows(session)["long"]["state"] == "succeeded"


def test_no_history_when_history_keep_is_off(session: Session, nbremind_data_dir: Path) -> None:
    from nbremind import remind

    session.configure(history_keep="off")
    with remind("quiet"):
        pass
    assert session.flush() and session.history_recorder.sync()
    assert session.history_recorder.history is None
    history = History(nbremind_data_dir / FILE_NAME)
    assert history.query() == []
    history.close()


def test_nbremind_run_is_recorded_with_the_peak_rss_of_its_tree(nbremind_data_dir: Path) -> None:
    grow = "b = bytearray(60_000_000); import time; time.sleep(1.5)"
    proc = subprocess.run(
        [
            PY,
            "-m",
            "nbremind",
            "run",
            "--name",
            "grow",
            "--channels",
            "memory",
            "--",
            PY,
            "-c",
            grow,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    history = History(nbremind_data_dir / FILE_NAME)
    [row] = history.query(name="grow")
    history.close()
    assert row["kind"] == "command" and row["state"] == "succeeded"
    assert row["peak_rss"] > 60_000_000
    assert row["pid"] != os.getpid() and row["notices"] == 1


# -- nbremind.history() -------------------------------------------------------------------------
def test_history_returns_a_dataframe_with_filters(session: Session) -> None:
    pytest.importorskip("pandas")
    from nbremind import remind

    with remind("etl"):
        pass
    with pytest.raises(KeyError), remind("train"):
        raise KeyError("x")
    frame = nbremind.history()
    assert list(frame["name"]) == ["train", "etl"]
    assert list(frame["state"]) == ["failed", "succeeded"]
    assert str(frame["start"].dtype).startswith("datetime64[")
    assert list(nbremind.history(name="etl")["name"]) == ["etl"]
    assert list(nbremind.history(state="failed")["name"]) == ["train"]
    assert len(nbremind.history(since="1h")) == 2
    future = dt.datetime.now() + dt.timedelta(hours=1)
    assert len(nbremind.history(since=future)) == 0
    assert len(nbremind.history(limit=1)) == 1
    with remind("job"):
        for _ in nbremind.track(range(2), name="part"):
            pass
    top = nbremind.history()
    assert list(top["name"]) == ["job", "train", "etl"] and list(top["nested"]) == [0, 0, 0]
    assert list(top["folded"]) == [1, 0, 0]  # the short loop is counted in its block
    assert 0 < top["folded_duration"][0] <= top["duration"][0]
    assert list(nbremind.history(nested=True)["name"]) == ["job", "train", "etl"]
    session.configure(history_min=0)  # every nested run its own row
    with remind("kept"):
        for _ in nbremind.track(range(2), name="part"):
            pass
    assert list(nbremind.history(limit=1)[["name", "nested", "folded"]].iloc[0]) == [
        "kept",
        1,
        0,
    ]
    assert list(nbremind.history(nested=True, limit=2)["name"]) == ["part", "kept"]
    with pytest.raises(ValueError, match=r"since=.*'yesterday'"):
        nbremind.history(since="yesterday")


def test_parse_since_reads_durations_datetimes_and_iso_text() -> None:
    now = 1_800_000_000.0
    assert parse_since("2h", now) == now - 7200
    assert parse_since("7d", now) == now - 7 * DAY
    moment = dt.datetime(2026, 11, 1, 8, 0, tzinfo=dt.timezone.utc)
    assert parse_since(moment, now) == moment.timestamp()
    assert parse_since("2026-11-01T08:00+00:00", now) == moment.timestamp()
    assert parse_since(None, now) is None
    with pytest.raises(ValueError, match="--since: 'soon'"):
        parse_since("soon", now, "--since")


# -- %remind history in a real kernel ---------------------------------------------------------
@pytest.mark.kernel
def test_remind_history_in_a_kernel_lists_the_cells(
    kernel_factory: Any, nbremind_data_dir: Path
) -> None:
    k = kernel_factory(env={"NBREMIND_DATA_DIR": str(nbremind_data_dir)})
    k.use_memory_channel()
    k.ok("%load_ext nbremind")
    k.ok("%%remind train\nx = 1 + 1")
    k.run("%%remind crash\nraise RuntimeError('out of memory')")
    k.ok(
        "%%remind load\nfrom nbremind import track\nfor _ in track(range(3), name='rows'):"
        "\n    pass"
    )
    out = k.ok("%remind history 5").output
    lines = out.strip().splitlines()
    assert lines[0].split()[:6] == ["start", "name", "nested", "folded", "kind", "state"], out
    assert lines[1].split()[2:5] == ["load", "1", "in"], out  # the short loop: folded
    lines.pop(1)
    assert "crash" in lines[1] and "cell" in lines[1] and "failed" in lines[1], out
    assert "RuntimeError: out of memory" in lines[1], out
    assert "train" in lines[2] and "succeeded" in lines[2], out
    history = History(nbremind_data_dir / FILE_NAME)
    rows = {r["name"]: r for r in history.query()}
    history.close()
    assert rows["train"]["kind"] == "cell" and rows["train"]["source"] == "analysis.ipynb"
    every = k.ok("%remind history 0 --all").output
    assert "rows" not in every, every  # folded into its cell: no row of its own
    k.ok("import nbremind; nbremind.configure(history_min=0)")
    k.ok(
        "%%remind load\nfrom nbremind import track\nfor _ in track(range(3), name='rows'):"
        "\n    pass"
    )
    every = k.ok("%remind history 0 --all").output
    assert "rows" in every and "rows" not in k.ok("%remind history 0").output, every
    bad = k.run("%remind history lots")
    assert bad.status == "error" and "give the number of runs" in bad.output
