"""``nbremind history`` and ``nbremind outbox``, run as the real command in a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from nbremind.core.notice import make_notice
from nbremind.core.task import Task, TaskError, TaskState
from nbremind.store.outbox import FILE_NAME, Outbox
from nbremind.store.process import Owner
from nbremind.store.runs import History
from nbremind.testing import FakeClock

PY = sys.executable


def _nbremind(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "nbremind", *args],
        capture_output=True,
        text=True,
        timeout=90,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture
def runs(nbremind_data_dir: Path) -> Path:
    """A history with three runs: etl (succeeded, 2 h ago), train (failed), etl (running)."""
    clock = FakeClock(wall=dt.datetime.now().timestamp() - 7200)
    history = History(nbremind_data_dir / FILE_NAME, clock=clock)
    etl = Task("etl", clock=clock, total=10, kind="block", source="etl.py", host="box")
    etl.mark_started()
    etl.advance(10)
    clock.advance(65)
    etl.mark_ended(TaskState.SUCCEEDED)
    history.record_end(etl.snapshot(), 1)
    clock.advance(3600)
    train = Task("train", clock=clock, kind="cell", source="analysis.ipynb", host="box")
    train.mark_started()
    clock.advance(30)
    train.mark_ended(TaskState.FAILED, TaskError("MemoryError", "out of memory"))
    history.record_end(train.snapshot(), 2)
    clock.advance(3000)
    again = Task("etl", clock=clock, kind="block", host="box")
    again.mark_started()
    history.record_start(again.snapshot())
    history.close()
    return nbremind_data_dir


def test_history_prints_a_table_newest_first(runs: Path) -> None:
    out = _nbremind("history")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:6] == ["start", "name", "nested", "folded", "kind", "state"]
    assert [line.split()[2:5] for line in lines[1:]] == [
        ["etl", "block", "running"],
        ["train", "cell", "failed"],
        ["etl", "block", "succeeded"],
    ]
    assert "MemoryError: out of memory" in lines[2]
    assert "1 min 5 s" in lines[3] and "10/10" in lines[3]


def test_history_json_gives_objects_with_iso_times_and_filters(runs: Path) -> None:
    out = _nbremind("history", "--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [(r["name"], r["state"]) for r in rows] == [
        ("etl", "running"),
        ("train", "failed"),
        ("etl", "succeeded"),
    ]
    for row in rows:
        start = dt.datetime.fromisoformat(row["start"])
        assert start.tzinfo is not None
    assert rows[0]["end"] is None
    assert dt.datetime.fromisoformat(rows[2]["end"]) - dt.datetime.fromisoformat(
        rows[2]["start"]
    ) == dt.timedelta(seconds=65)
    assert rows[1]["error_type"] == "MemoryError" and rows[1]["notices"] == 2

    failed = json.loads(_nbremind("history", "--json", "--state", "failed").stdout)
    assert [r["name"] for r in failed] == ["train"]
    named = json.loads(_nbremind("history", "--json", "--name", "etl").stdout)
    assert [r["state"] for r in named] == ["running", "succeeded"]
    recent = json.loads(_nbremind("history", "--json", "--since", "1h").stdout)
    assert [r["name"] for r in recent] == ["etl", "train"]
    assert len(json.loads(_nbremind("history", "--json", "--limit", "1").stdout)) == 1


def test_history_lists_top_level_runs_with_their_nested_count_and_all_lists_every_run(
    runs: Path,
) -> None:
    clock = FakeClock(wall=dt.datetime.now().timestamp() - 60)
    history = History(runs / FILE_NAME, clock=clock)
    etl = Task("chunks", clock=clock, kind="loop", host="box")
    etl.mark_started()
    inner = []
    for _ in range(4):
        clock.advance(1)
        call = Task("coupons", clock=clock, kind="pandas", parent=etl, host="box")
        call.mark_started()
        call.mark_ended(TaskState.SUCCEEDED)
        inner.append(call)
    etl.mark_ended(TaskState.SUCCEEDED)
    for task in (*inner, etl):
        history.record_end(task.snapshot())
    history.close()

    top = json.loads(_nbremind("history", "--json").stdout)
    assert [(r["name"], r["nested"]) for r in top] == [
        ("chunks", 4),
        ("etl", 0),
        ("train", 0),
        ("etl", 0),
    ]
    table = _nbremind("history").stdout.splitlines()
    assert table[1].split()[2:5] == ["chunks", "4", "loop"], table
    every = json.loads(_nbremind("history", "--json", "--all").stdout)
    assert [r["name"] for r in every].count("coupons") == 4 and len(every) == 8
    assert len(_nbremind("history", "--all").stdout.splitlines()) == 1 + 8


def test_history_errors_are_one_line_and_non_zero(runs: Path) -> None:
    bad = _nbremind("history", "--since", "soonish")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.strip().splitlines() == [
        "nbremind history: error: --since: 'soonish' is neither a duration (2h, 7d) nor a "
        "date/time (2026-11-01 or 2026-11-01T08:00)"
    ]
    off = _nbremind("history", env={"NBREMIND_HISTORY_KEEP": "off"})
    assert off.returncode == 1 and "history is off" in off.stderr
    assert len(off.stderr.strip().splitlines()) == 1


def test_history_with_no_runs_says_so(nbremind_data_dir: Path) -> None:
    out = _nbremind("history")
    assert out.returncode == 0 and out.stdout.strip() == "no runs recorded"
    assert json.loads(_nbremind("history", "--json").stdout) == []


def test_help_of_history_and_outbox() -> None:
    history = _nbremind("history", "--help")
    assert history.returncode == 0
    for option in ("--name", "--state", "--since", "--json", "--limit"):
        assert option in history.stdout
    outbox = _nbremind("outbox", "--help")
    assert outbox.returncode == 0 and "--flush" in outbox.stdout


def _leave_notice(data: Path, name: str, channels: tuple[str, ...]) -> str:
    """A notice a dead process left pending in the outbox; returns its id."""
    clock = FakeClock(wall=dt.datetime.now().timestamp())
    task = Task(name, clock=clock, kind="block")
    task.mark_started()
    task.mark_ended(TaskState.SUCCEEDED)
    notice = make_notice(
        "success", task.snapshot(), created=clock.time(), key="end", channels=channels
    )
    dead = Owner(os.getpid(), 1.0, socket.gethostname())  # this pid, another start: ended
    outbox = Outbox(data / FILE_NAME, owner=dead)
    assert outbox.record(notice, channels)
    outbox.close()
    return notice.id


def test_outbox_shows_counts_and_pending_notices(nbremind_data_dir: Path) -> None:
    _leave_notice(nbremind_data_dir, "etl", ("memory",))
    out = _nbremind("outbox")
    assert out.returncode == 0, out.stderr
    assert str(nbremind_data_dir / FILE_NAME) in out.stdout
    assert "pending: 1, delivered: 0, failed: 0, dropped: 0, notices: 1" in out.stdout
    assert "pending  memory  '✓ etl finished'  (task 'etl'" in out.stdout


def test_outbox_flush_delivers_leftovers_and_prints_each_outcome(nbremind_data_dir: Path) -> None:
    ok_id = _leave_notice(nbremind_data_dir, "etl", ("memory",))
    bad_id = _leave_notice(nbremind_data_dir, "train", ("http://127.0.0.1:9/hook",))
    out = _nbremind("outbox", "--flush", env={"NBREMIND_RETRY_ATTEMPTS": "1"})
    assert out.returncode == 1, out.stdout + out.stderr  # one delivery failed
    assert "'✓ etl finished' -> memory: delivered" in out.stdout
    assert "'✓ train finished' -> http://127.0.0.1:9/hook: failed: " in out.stdout
    outbox = Outbox(nbremind_data_dir / FILE_NAME)
    assert [r.state for r in outbox.records(ok_id)] == ["delivered"]
    assert [r.state for r in outbox.records(bad_id)] == ["failed"]
    assert outbox.pending() == []
    outbox.close()
    again = _nbremind("outbox", "--flush")
    assert again.returncode == 0
    assert "nothing to deliver" in again.stdout
