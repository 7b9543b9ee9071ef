"""The history knows the runs of scheduled jobs (kind ``job``): ``nbremind history --kind``,
the table and ``--json`` of a fresh process, ``nbremind.api.history`` with a ``kind``, and
``%remind history`` in a real kernel, after a real ``nbremind run --job``."""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _projects import history_json, nbremind_in
from nbremind.api.history import KINDS, history_frame, history_rows
from nbremind.channels.memory import MemoryChannel
from nbremind.core.config import Config
from nbremind.core.task import Task, TaskState
from nbremind.runtime.session import Session, set_session
from nbremind.store.outbox import FILE_NAME
from nbremind.store.runs import History
from nbremind.testing import FakeClock

PY = sys.executable
pytestmark = pytest.mark.skipif(os.name != "posix", reason="sh")


def _blocks(data: Path, count: int, *, ago: float) -> None:
    """``count`` succeeded block runs, one a second, the first ``ago`` seconds ago."""
    clock = FakeClock(wall=dt.datetime.now().timestamp() - ago)
    history = History(data / FILE_NAME, clock=clock)
    tasks = []
    for number in range(count):
        task = Task(f"block {number}", clock=clock, kind="block", host="box")
        task.mark_started()
        clock.advance(1)
        task.mark_ended(TaskState.SUCCEEDED)
        tasks.append((task.snapshot(), 0))
    assert history.record_many(tasks)
    history.close()


@pytest.fixture
def job_run(nbremind_data_dir: Path) -> Path:
    """A failed run of job ``nightly`` made by the real command, with older block runs and a
    newer ``nbremind run`` command."""
    _blocks(nbremind_data_dir, 3, ago=3600)
    job = nbremind_in(
        None, "run", "--job", "nightly", "--channels", "null", "--", "sh", "-c", "exit 3"
    )
    assert job.returncode == 3, job.stderr
    command = nbremind_in(None, "run", "--channels", "null", "--", "true")
    assert command.returncode == 0, command.stderr
    return nbremind_data_dir


def test_history_kind_job_lists_the_job_runs_only(job_run: Path) -> None:
    rows = history_json(None, "--kind", "job")
    assert [(r["name"], r["kind"], r["state"]) for r in rows] == [("nightly", "job", "failed")]
    assert rows[0]["error_type"] == "exit status 3"
    assert dt.datetime.fromisoformat(rows[0]["start"]).tzinfo is not None
    assert [r["name"] for r in history_json(None, "--kind", "command")] == ["true"]
    assert [
        r["kind"]
        for r in history_json(
            None,
        )
    ] == ["command", "job", "block", "block", "block"]
    assert history_json(None, "--kind", "job", "--state", "succeeded") == []
    assert [r["name"] for r in history_json(None, "--kind", "job", "--name", "nightly")] == [
        "nightly"
    ]


def test_the_table_shows_job_runs_like_the_others(job_run: Path) -> None:
    out = nbremind_in(None, "history")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split()[:6] == ["start", "name", "nested", "folded", "kind", "state"]
    assert [line.split()[2:5] for line in lines[1:3]] == [
        ["true", "command", "succeeded"],
        ["nightly", "job", "failed"],
    ]
    assert lines[2].endswith("exit status 3"), lines[2]
    only = nbremind_in(None, "history", "--kind", "job").stdout.splitlines()
    assert len(only) == 2 and only[1].split() == lines[2].split(), only  # the same cells


def test_a_bad_kind_is_an_error_naming_it(nbremind_data_dir: Path) -> None:
    bad = nbremind_in(None, "history", "--kind", "jobs")
    assert bad.returncode == 2 and bad.stdout == ""
    assert "argument --kind: invalid choice: 'jobs'" in bad.stderr
    with pytest.raises(ValueError, match=r"history\(kind=\.\.\.\): 'jobs' is not one of cell"):
        history_rows(kind="jobs")
    assert "job" in KINDS and "command" in KINDS


def test_a_kind_filter_finds_old_runs_behind_many_newer_ones(nbremind_data_dir: Path) -> None:
    clock = FakeClock(wall=dt.datetime.now().timestamp() - 7200)
    history = History(nbremind_data_dir / FILE_NAME, clock=clock)
    for name in ("weekly", "nightly"):
        job = Task(name, clock=clock, kind="job", host="box")
        job.mark_started()
        clock.advance(5)
        job.mark_ended(TaskState.SUCCEEDED)
        history.record_end(job.snapshot())
    _blocks(nbremind_data_dir, 1500, ago=3600)  # newer than both, more than the first page

    def names(**filters: Any) -> list[str]:
        return [str(r["name"]) for r in history_rows(history=history, **filters)]

    try:
        assert names(kind="job", limit=1) == ["nightly"]
        assert names(kind="job", limit=10) == ["nightly", "weekly"]
        assert names(kind="job", limit=None) == ["nightly", "weekly"]
        assert names(kind="job", name="weekly") == ["weekly"]
        assert len(names(kind="block", limit=1200)) == 1200
        assert names(kind="loop", limit=5) == []
    finally:
        history.close()
    assert [r["name"] for r in history_json(None, "--kind", "job", "--limit", "1")] == ["nightly"]


@pytest.fixture
def session(nbremind_data_dir: Path) -> Iterator[Session]:
    channel = MemoryChannel()
    made = Session(Config(channels=(channel.name,)), channels={channel.name: channel})
    previous = set_session(made)
    yield made
    set_session(previous)
    made.close()


def test_the_data_frame_of_job_runs(job_run: Path, session: Session) -> None:
    pytest.importorskip("pandas")
    from nbremind import remind

    with remind("etl"):  # this process's runs are in it too
        pass
    frame = history_frame(kind="job")
    assert list(frame["name"]) == ["nightly"] and list(frame["kind"]) == ["job"]
    assert str(frame["start"].dt.tz) != "None"
    assert list(history_frame(kind="block", limit=1)["name"]) == ["etl"]


@pytest.mark.kernel
def test_remind_history_in_a_kernel_shows_a_job_run(kernel_factory: Any, job_run: Path) -> None:
    k = kernel_factory(env={"NBREMIND_DATA_DIR": str(job_run)})
    k.use_memory_channel()
    k.ok("%load_ext nbremind")
    k.ok("%%remind train\nx = 1 + 1")
    lines = k.ok("%remind history 5").output.strip().splitlines()
    assert lines[0].split()[:6] == ["start", "name", "nested", "folded", "kind", "state"], lines
    assert [line.split()[2:5] for line in lines[1:4]] == [
        ["train", "cell", "succeeded"],
        ["true", "command", "succeeded"],
        ["nightly", "job", "failed"],
    ], lines
    assert lines[3].endswith("exit status 3"), lines
