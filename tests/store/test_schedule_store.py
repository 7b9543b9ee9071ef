"""The scheduler's state: a real SQLite file, real processes racing, killed and reused."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import psutil
import pytest

from _deadline import within
from nbremind.core.config import Config
from nbremind.core.task import Task, TaskState
from nbremind.store.outbox import FILE_NAME, Outbox
from nbremind.store.outbox import SCHEMA_VERSION as OUTBOX_SCHEMA
from nbremind.store.process import Owner
from nbremind.store.runs import SCHEMA_VERSION as HISTORY_SCHEMA
from nbremind.store.runs import History
from nbremind.store.schedule import SCHEMA_VERSION, LockHolder, RunMarker, ScheduleStore
from nbremind.testing import FakeClock

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="SIGKILL is POSIX only")

HOST = socket.gethostname()
SCOPE = "/home/someone/project"


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / FILE_NAME


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall=time.time())


@pytest.fixture
def store(path: Path, clock: FakeClock) -> Iterator[ScheduleStore]:
    opened = ScheduleStore(path, clock=clock)
    yield opened
    opened.close()


def _python(script: str, *args: object, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *map(str, args)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
    )


def _line(proc: subprocess.Popen[str]) -> str:
    """The next line ``proc`` prints (a test failure after 60 s, or if it ends first)."""
    out: IO[str] | None = proc.stdout
    assert out is not None
    line = str(within(60, out.readline))
    if not line:
        _, err = proc.communicate(timeout=60)
        pytest.fail(f"the child ended (status {proc.returncode}) before answering: {err}")
    return line.strip()


def _tell(proc: subprocess.Popen[str], text: str = "") -> None:
    assert proc.stdin is not None
    proc.stdin.write(text + "\n")
    proc.stdin.flush()


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=60)


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process standing for a job's run: lives until its stdin is closed or it is killed."""
    proc = _python("import sys; sys.stdin.read()", cwd=tmp_path)
    yield proc
    _kill(proc)


def _wait_until(condition: Any, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def _raw(path: Path, sql: str, *args: object) -> list[tuple[Any, ...]]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute(sql, args).fetchall()
        db.commit()
        return rows
    finally:
        db.close()


#: A marker written straight into the file (of the scope ``""``, the default).
_INSERT_RUN = (
    "INSERT INTO schedule_running (job, pid, pid_start, host, started, attempt)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


def _start(pid: int) -> float:
    return float(psutil.Process(pid).create_time())


# -- the file ------------------------------------------------------------------------------------
def test_its_tables_and_version_are_its_own(store: ScheduleStore, path: Path) -> None:
    assert store.schema_version == SCHEMA_VERSION == 2
    assert store.journal_mode == "wal"
    tables = {name for (name,) in _raw(path, "SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {
        "schedule_meta",
        "schedule_locks",
        "schedule_running",
        "schedule_fires",
        "schedule_expectations",
    }
    assert _raw(path, "SELECT key, value FROM schedule_meta") == [("version", 2.0)]


def test_a_file_with_only_the_outbox_and_history_gets_its_tables(
    path: Path, clock: FakeClock
) -> None:
    outbox = Outbox(path, clock=clock)
    history = History(path, clock=clock)
    task = Task("etl", clock=clock)
    task.mark_started()
    task.mark_ended(TaskState.SUCCEEDED)
    assert history.record_end(task.snapshot())
    outbox.close()
    history.close()
    before = {name for (name,) in _raw(path, "SELECT name FROM sqlite_master")}
    assert not any(name.startswith("schedule") for name in before)

    store = ScheduleStore(path, clock=clock)
    assert store.schema_version == SCHEMA_VERSION
    assert store.acquire(SCOPE) is None
    store.set_last_fire("nightly", 123.0)
    store.close()

    after = {name for (name,) in _raw(path, "SELECT name FROM sqlite_master")}
    assert before < after  # nothing of the others was dropped or renamed
    # the others' versions and rows are as they were, and they open as before
    assert _raw(path, "SELECT version FROM schema_version") == [(OUTBOX_SCHEMA,)]
    assert _raw(path, "SELECT value FROM history_meta WHERE key = 'version'") == [
        (float(HISTORY_SCHEMA),)
    ]
    history = History(path, clock=clock)
    assert [run["name"] for run in history.query()] == ["etl"]
    history.close()
    outbox = Outbox(path, clock=clock)
    assert outbox.schema_version == OUTBOX_SCHEMA
    outbox.close()
    again = ScheduleStore(path, clock=clock)
    assert again.last_fire("nightly") == 123.0
    again.close()


def test_a_file_from_a_newer_nbremind_is_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / FILE_NAME
    ScheduleStore(path).close()
    _raw(path, "UPDATE schedule_meta SET value = 99 WHERE key = 'version'")
    with caplog.at_level(logging.WARNING, "nbremind"):
        assert ScheduleStore.open(Config(data_dir=str(tmp_path))) is None
    assert "scheduler state unavailable" in caplog.text
    assert "the scheduler's state was written by a newer nbremind (schema 99" in caplog.text
    assert _raw(path, "SELECT value FROM schedule_meta") == [(99.0,)]
    outbox = Outbox(path)  # the rest of the file is still usable
    assert outbox.schema_version == OUTBOX_SCHEMA
    outbox.close()


def test_open_follows_the_outbox_setting(tmp_path: Path) -> None:
    assert ScheduleStore.open(Config(data_dir=str(tmp_path), outbox=False)) is None
    assert not (tmp_path / FILE_NAME).exists()
    store = ScheduleStore.open(Config(data_dir=str(tmp_path)), clock=FakeClock(wall=50.0))
    assert store is not None
    assert store.path == tmp_path / FILE_NAME
    store.set_last_fire("nightly", store.clock.time())
    assert store.last_fire("nightly") == 50.0
    store.close()


def test_open_without_settings_uses_the_data_folder(nbremind_data_dir: Path) -> None:
    store = ScheduleStore.open()
    assert store is not None and store.path == nbremind_data_dir / FILE_NAME
    store.close()


# -- the lock ------------------------------------------------------------------------------------
_RACER = """
    import json, sys, time
    from pathlib import Path
    from nbremind.store.schedule import ScheduleStore
    store = ScheduleStore(sys.argv[1])
    go, scopes = Path(sys.argv[2]), int(sys.argv[3])
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not go.exists():  # spin: both start at the same instant
        if time.monotonic() > deadline:
            sys.exit("no start signal")
    won = [i for i in range(scopes) if store.acquire(f"scope-{i}") is None]
    print(json.dumps(won), flush=True)
    sys.stdin.readline()  # holds its locks until the test has read both answers
"""


def test_of_two_processes_racing_for_a_lock_exactly_one_wins(tmp_path: Path, path: Path) -> None:
    ScheduleStore(path).close()  # the tables exist: the race is for the locks only
    go = tmp_path / "go"
    scopes = 25
    racers = [_python(_RACER, path, go, scopes, cwd=tmp_path) for _ in range(2)]
    try:
        for racer in racers:
            assert _line(racer) == "ready"
        go.touch()
        won = [set(json.loads(_line(racer))) for racer in racers]
        assert not won[0] & won[1]  # never both
        assert won[0] | won[1] == set(range(scopes))  # always one
        store = ScheduleStore(path)
        for racer, theirs in zip(racers, won, strict=True):
            for i in theirs:
                holder = store.holder(f"scope-{i}")
                assert holder is not None and (holder.pid, holder.host) == (racer.pid, HOST)
            # the winner's lock is refused to a third process while the winner lives
            for i in sorted(theirs)[:3]:
                refused = store.acquire(f"scope-{i}")
                assert refused is not None and refused.pid == racer.pid
        store.close()
        for racer in racers:
            _tell(racer)
            racer.communicate(timeout=60)
            assert racer.returncode == 0
    finally:
        for racer in racers:
            _kill(racer)


_HOLDER = """
    import sys
    from nbremind.store.schedule import ScheduleStore
    store = ScheduleStore(sys.argv[1])
    print("took" if store.acquire(sys.argv[2]) is None else "refused", flush=True)
    sys.stdin.readline()
"""


def test_the_lock_of_a_killed_process_is_taken_over_at_once(
    tmp_path: Path, path: Path, store: ScheduleStore
) -> None:
    holder = _python(_HOLDER, path, SCOPE, cwd=tmp_path)
    try:
        assert _line(holder) == "took"
        refused = store.acquire(SCOPE)
        assert isinstance(refused, LockHolder)
        assert (refused.pid, refused.host, refused.error) == (holder.pid, HOST, "")
        assert refused.expires > store.clock.time()
        assert f"held by pid {holder.pid} on {HOST} since" in refused.describe()
        assert not store.renew(SCOPE)  # not ours
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=60)
        assert holder.returncode == -signal.SIGKILL
        # the clock has not moved: its lease still runs, but its process is gone
        assert store.acquire(SCOPE) is None
        taken = store.holder(SCOPE)
        assert taken is not None and taken.owner == Owner.current()
        assert store.renew(SCOPE)
    finally:
        _kill(holder)


def test_a_lock_of_a_killed_process_not_yet_reaped_is_taken_over(
    tmp_path: Path, path: Path, store: ScheduleStore
) -> None:
    holder = _python(_HOLDER, path, SCOPE, cwd=tmp_path)
    try:
        assert _line(holder) == "took"
        holder.send_signal(signal.SIGKILL)
        _wait_until(
            lambda: psutil.Process(holder.pid).status() == psutil.STATUS_ZOMBIE,
            "the holder to become a zombie",
        )
        assert store.acquire(SCOPE) is None
    finally:
        _kill(holder)


def test_a_lock_held_on_another_host_is_taken_over_only_after_its_lease(
    path: Path, clock: FakeClock, store: ScheduleStore
) -> None:
    now = clock.time()
    # a process of another host: it cannot be checked, so it counts as alive
    _raw(
        path,
        "INSERT INTO schedule_locks VALUES (?, ?, ?, ?, ?, ?)",
        SCOPE,
        4242,
        now - 3600,
        "elsewhere",
        now - 600,
        now + 30,
    )
    refused = store.acquire(SCOPE)
    assert refused == LockHolder(SCOPE, 4242, now - 3600, "elsewhere", now - 600, now + 30)
    assert "held by pid 4242 on elsewhere" in refused.describe()
    clock.advance(30)  # expires == now: still its own
    assert store.acquire(SCOPE) == refused
    clock.advance(0.5)
    assert store.acquire(SCOPE, lease=60) is None
    mine = store.holder(SCOPE)
    assert mine is not None and mine.owner == store.owner
    assert (mine.since, mine.expires) == (clock.time(), clock.time() + 60)


def test_renew_after_a_takeover_says_the_lock_is_lost(
    path: Path, clock: FakeClock, store: ScheduleStore
) -> None:
    other = ScheduleStore(path, clock=clock, owner=Owner(4242, 1.0, "elsewhere"))
    assert other.acquire(SCOPE, lease=30) is None
    assert store.acquire(SCOPE) is not None
    clock.advance(20)
    assert other.renew(SCOPE, lease=30)  # renewed in time: still its own at +40
    clock.advance(30)
    assert store.acquire(SCOPE) is not None
    clock.advance(11)  # lease ran out without a renewal: taken over
    assert store.acquire(SCOPE) is None
    assert not other.renew(SCOPE)
    other.release(SCOPE)  # not its own any more: left alone
    holder = store.holder(SCOPE)
    assert holder is not None and holder.owner == store.owner
    # its own again once the new holder releases it
    store.release(SCOPE)
    assert store.holder(SCOPE) is None
    assert other.acquire(SCOPE) is None
    other.close()


def test_an_expired_lock_nobody_took_is_renewed(clock: FakeClock, store: ScheduleStore) -> None:
    assert store.acquire(SCOPE, lease=30) is None
    since = clock.time()
    clock.advance(45)
    assert store.renew(SCOPE, lease=30)
    assert store.acquire(SCOPE) is None  # its own: taken again, still since the start
    holder = store.holder(SCOPE)
    assert holder is not None and holder.since == since
    assert holder.expires == clock.time() + 30


def test_a_lock_of_a_reused_pid_is_taken_over_at_once(
    path: Path, clock: FakeClock, store: ScheduleStore, worker: subprocess.Popen[str]
) -> None:
    now = clock.time()
    # the worker's pid on this host, but a process that started an hour earlier held it
    _raw(
        path,
        "INSERT INTO schedule_locks VALUES (?, ?, ?, ?, ?, ?)",
        SCOPE,
        worker.pid,
        _start(worker.pid) - 3600,
        HOST,
        now - 600,
        now + 30,
    )
    assert store.acquire(SCOPE) is None
    # with its real start time it is a live holder
    _raw(
        path,
        "UPDATE schedule_locks SET pid = ?, pid_start = ?",
        worker.pid,
        _start(worker.pid),
    )
    refused = store.acquire(SCOPE)
    assert refused is not None and refused.pid == worker.pid


def test_locks_of_other_scopes_are_independent(store: ScheduleStore, path: Path) -> None:
    other = ScheduleStore(path, owner=Owner(4242, 1.0, "elsewhere"))
    assert other.acquire("/a") is None
    assert store.acquire("/b") is None
    refused = store.acquire("/a")
    assert refused is not None and refused.scope == "/a"
    other.close()


# -- running runs --------------------------------------------------------------------------------
def test_a_second_run_of_a_job_is_refused_while_the_first_lives(
    tmp_path: Path, store: ScheduleStore, clock: FakeClock
) -> None:
    first = _python("import sys; sys.stdin.read()", cwd=tmp_path)
    second = _python("import sys; sys.stdin.read()", cwd=tmp_path)
    try:
        started = clock.time()
        assert store.begin_run("nightly", first.pid, started) is None
        refused = store.begin_run("nightly", second.pid, started + 5, attempt=2)
        assert refused == RunMarker("nightly", first.pid, _start(first.pid), HOST, started, 1)
        assert store.marker("nightly") == refused
        assert store.running() == [refused]
        assert store.begin_run("hourly", second.pid, started) is None  # another job: fine
        assert [m.job for m in store.running()] == ["hourly", "nightly"]

        first.send_signal(signal.SIGKILL)
        first.communicate(timeout=60)
        # the first's process is gone: the second run is accepted
        assert store.begin_run("nightly", second.pid, started + 5, attempt=2) is None
        marker = store.marker("nightly")
        assert marker is not None and (marker.pid, marker.attempt) == (second.pid, 2)
        store.end_run("nightly", first.pid)  # a late end of the first leaves the second's
        assert store.marker("nightly") == marker
        store.end_run("nightly", second.pid)
        assert store.marker("nightly") is None
        assert [m.job for m in store.running()] == ["hourly"]
    finally:
        _kill(first)
        _kill(second)


def test_markers_of_gone_processes_are_cleared(
    path: Path, tmp_path: Path, store: ScheduleStore, clock: FakeClock
) -> None:
    runs = [_python("import sys; sys.stdin.read()", cwd=tmp_path) for _ in range(3)]
    try:
        for i, run in enumerate(runs):
            assert store.begin_run(f"job{i}", run.pid, clock.time()) is None
        runs[0].send_signal(signal.SIGKILL)
        runs[0].communicate(timeout=60)
        runs[2].send_signal(signal.SIGKILL)  # a zombie: killed, not yet reaped
        _wait_until(
            lambda: psutil.Process(runs[2].pid).status() == psutil.STATUS_ZOMBIE,
            "the run to become a zombie",
        )
        assert [m.job for m in store.running()] == ["job1"]
        assert _raw(path, "SELECT job FROM schedule_running") == [("job1",)]
        runs[1].send_signal(signal.SIGKILL)
        runs[1].communicate(timeout=60)
        assert store.marker("job1") is None
        assert _raw(path, "SELECT job FROM schedule_running") == []
    finally:
        for run in runs:
            _kill(run)


def test_a_reused_pid_with_another_start_counts_as_gone(
    path: Path, store: ScheduleStore, clock: FakeClock, worker: subprocess.Popen[str]
) -> None:
    now = clock.time()
    wrong = _start(worker.pid) - 3600  # the pid is alive, but it is another process now
    marker = ("nightly", worker.pid, wrong, HOST, now - 60, 1)
    _raw(path, _INSERT_RUN, *marker)
    assert store.running() == []
    assert _raw(path, "SELECT COUNT(*) FROM schedule_running") == [(0,)]
    _raw(path, _INSERT_RUN, *marker)
    assert store.marker("nightly") is None
    _raw(path, _INSERT_RUN, *marker)
    assert store.begin_run("nightly", worker.pid, now) is None
    recorded = store.marker("nightly")
    assert recorded is not None and abs(recorded.start - _start(worker.pid)) < 0.01
    assert recorded.started == now


def test_a_run_on_another_host_is_never_taken_for_gone(
    path: Path, store: ScheduleStore, clock: FakeClock, worker: subprocess.Popen[str]
) -> None:
    _raw(
        path,
        _INSERT_RUN,
        "nightly",
        999_999_999,
        1.0,
        "elsewhere",
        clock.time(),
        1,
    )
    refused = store.begin_run("nightly", worker.pid, clock.time())
    assert refused is not None and refused.host == "elsewhere"
    assert [m.host for m in store.running()] == ["elsewhere"]


def test_begin_run_is_idempotent_for_the_same_process(
    store: ScheduleStore, clock: FakeClock, worker: subprocess.Popen[str]
) -> None:
    assert store.begin_run("nightly", worker.pid, clock.time()) is None
    assert store.begin_run("nightly", worker.pid, clock.time(), attempt=2) is None
    marker = store.marker("nightly")
    assert marker is not None and marker.attempt == 2


def test_a_run_whose_process_already_ended_is_not_kept(
    tmp_path: Path, store: ScheduleStore, clock: FakeClock
) -> None:
    quick = _python("pass", cwd=tmp_path)
    quick.communicate(timeout=60)
    assert store.begin_run("nightly", quick.pid, clock.time()) is None
    assert store.marker("nightly") is None
    assert store.running() == []


# -- across processes ----------------------------------------------------------------------------
_SCHEDULER = """
    import json, sys
    from nbremind.store.schedule import ScheduleStore
    store = ScheduleStore(sys.argv[1])
    scope, job, run_pid = sys.argv[2], sys.argv[3], int(sys.argv[4])
    result = {
        "lock": store.acquire(scope) is None,
        "begin": store.begin_run(job, run_pid, 1000.0, attempt=3) is None,
    }
    store.set_last_fire(job, 1000.0)
    store.set_expectation_state(job, {"missed_since": 900.5, "notified": True})
    print(json.dumps(result), flush=True)
    sys.stdin.readline()
"""

_RESTARTED = """
    import json, sys
    from nbremind.store.schedule import ScheduleStore
    store = ScheduleStore(sys.argv[1])
    scope, job = sys.argv[2], sys.argv[3]
    marker = store.marker(job)
    again = store.begin_run(job, 1, 2000.0)  # pid 1 is alive: would be a second run
    print(json.dumps({
        "lock": store.acquire(scope) is None,
        "marker": None if marker is None else [marker.pid, marker.started, marker.attempt],
        "refused_by": None if again is None else again.pid,
        "fire": store.last_fire(job),
        "state": store.expectation_state(job),
        "unknown": [store.last_fire("other"), store.expectation_state("other")],
    }), flush=True)
"""


def test_a_restarted_scheduler_finds_what_the_crashed_one_left(
    tmp_path: Path, path: Path, worker: subprocess.Popen[str]
) -> None:
    first = _python(_SCHEDULER, path, SCOPE, "nightly", worker.pid, cwd=tmp_path)
    try:
        assert json.loads(_line(first)) == {"lock": True, "begin": True}
        first.send_signal(signal.SIGKILL)  # the scheduler crashes; its job's run goes on
        first.communicate(timeout=60)
    finally:
        _kill(first)
    second = _python(_RESTARTED, path, SCOPE, "nightly", cwd=tmp_path)
    found = json.loads(_line(second))
    second.communicate(timeout=60)
    assert second.returncode == 0
    assert found == {
        "lock": True,  # the crashed scheduler's lock, at once
        "marker": [worker.pid, 1000.0, 3],  # the run it started still goes on ...
        "refused_by": worker.pid,  # ... so the job is not started a second time
        "fire": 1000.0,
        "state": {"missed_since": 900.5, "notified": True},
        "unknown": [None, None],
    }
    # once the run ends, the job may run again
    _kill(worker)
    store = ScheduleStore(path)
    assert store.begin_run("nightly", os.getpid(), 3000.0) is None
    store.close()


# -- last fires and expectations -----------------------------------------------------------------
def test_last_fire_and_expectation_state_are_replaced(store: ScheduleStore) -> None:
    assert store.last_fire("nightly") is None
    store.set_last_fire("nightly", 100.0)
    store.set_last_fire("nightly", 200.25)
    store.set_last_fire("hourly", 150.0)
    assert (store.last_fire("nightly"), store.last_fire("hourly")) == (200.25, 150.0)
    assert store.expectation_state("etl") is None
    store.set_expectation_state("etl", {"missed_since": 1.5})
    store.set_expectation_state("etl", {"back": True, "names": ["a", "é"]})
    assert store.expectation_state("etl") == {"back": True, "names": ["a", "é"]}
    with pytest.raises(TypeError):
        store.set_expectation_state("etl", {"when": object()})
    assert store.expectation_state("etl") == {"back": True, "names": ["a", "é"]}


def test_an_unreadable_expectation_state_is_none_and_logged(
    path: Path, store: ScheduleStore, caplog: pytest.LogCaptureFixture
) -> None:
    _raw(path, "INSERT INTO schedule_expectations (name, state) VALUES ('etl', '{not json')")
    _raw(path, "INSERT INTO schedule_expectations (name, state) VALUES ('list', '[1, 2]')")
    with caplog.at_level(logging.WARNING, "nbremind"):
        assert store.expectation_state("etl") is None
        assert store.expectation_state("list") is None
    assert "expectation_state failed" in caplog.text


# -- a busy or closed file -----------------------------------------------------------------------
class _Impatient(ScheduleStore):
    busy_timeout = 0.1


def test_a_locked_file_refuses_safely_and_is_logged_once(
    path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture, worker: subprocess.Popen[str]
) -> None:
    store = _Impatient(path, clock=clock)
    assert store.acquire(SCOPE) is None
    store.set_last_fire("nightly", 5.0)
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process writing for longer than the timeout
    try:
        with caplog.at_level(logging.WARNING, "nbremind"):
            for _ in range(2):
                refused = store.acquire("/other")
                assert refused is not None and refused.error
                assert refused.describe() == refused.error
                assert not store.renew(SCOPE)
                marker = store.begin_run("nightly", worker.pid, clock.time())
                assert marker is not None and marker.error
                store.set_last_fire("nightly", 6.0)
                store.release(SCOPE)
                store.end_run("nightly", worker.pid)
            assert store.last_fire("nightly") == 5.0  # reads go on (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 6  # once per kind of call
    assert all("database is locked" in r.getMessage() for r in warnings)
    # the writer is done: everything works again
    assert store.acquire("/other") is None
    assert store.renew(SCOPE)
    assert store.begin_run("nightly", worker.pid, clock.time()) is None
    store.close()


def test_a_closed_store_gives_safe_answers(
    store: ScheduleStore, clock: FakeClock, worker: subprocess.Popen[str]
) -> None:
    store.close()
    refused = store.acquire(SCOPE)
    assert refused is not None and refused.error
    assert not store.renew(SCOPE)
    marker = store.begin_run("nightly", worker.pid, clock.time())
    assert marker is not None and marker.error
    assert store.running() == [] and store.marker("nightly") is None
    assert store.last_fire("nightly") is None and store.expectation_state("x") is None
    assert store.holder(SCOPE) is None and store.schema_version is None


# -- scopes ----------------------------------------------------------------------------------------
def test_markers_fires_and_expectations_are_kept_per_scope(
    store: ScheduleStore, clock: FakeClock, worker: subprocess.Popen[str], tmp_path: Path
) -> None:
    other = _python("import sys; sys.stdin.read()", cwd=tmp_path)
    try:
        assert store.begin_run("etl", worker.pid, clock.time(), scope="/a") is None
        assert store.begin_run("etl", other.pid, clock.time(), scope="/b") is None  # not refused
        refused = store.begin_run("etl", other.pid, clock.time(), scope="/a")
        assert refused is not None and refused.pid == worker.pid and refused.scope == "/a"
        found = (store.marker("etl", scope="/a"), store.marker("etl", scope="/b"))
        assert [m.pid if m else None for m in found] == [worker.pid, other.pid]
        assert [m.scope for m in store.running("/b")] == ["/b"]
        assert sorted(m.scope for m in store.running()) == ["/a", "/b"]
        store.end_run("etl", worker.pid, scope="/b")  # another scope's: left
        assert store.marker("etl", scope="/a") is not None
        store.end_run("etl", worker.pid, scope="/a")
        assert store.marker("etl", scope="/a") is None
        assert store.marker("etl", scope="/b") is not None
    finally:
        _kill(other)
    store.set_last_fire("etl", 10.0, scope="/a")
    store.set_last_fire("etl", 20.0, scope="/b")
    store.set_expectation_state("etl", {"told": 1}, scope="/a")
    assert (store.last_fire("etl", scope="/a"), store.last_fire("etl", scope="/b")) == (10.0, 20.0)
    assert store.expectation_state("etl", scope="/a") == {"told": 1}
    assert store.expectation_state("etl", scope="/b") is None


def test_a_marker_recorded_by_its_starter_is_handed_over_to_the_run(
    store: ScheduleStore, clock: FakeClock, worker: subprocess.Popen[str]
) -> None:
    me = os.getpid()
    assert store.begin_run("etl", me, clock.time(), scope="/a") is None
    assert store.begin_run("etl", worker.pid, clock.time(), scope="/a") is not None  # (ours)
    assert store.hand_over("etl", worker.pid, scope="/a")
    marker = store.marker("etl", scope="/a")
    assert marker is not None and marker.pid == worker.pid
    assert abs(marker.start - _start(worker.pid)) < 0.01
    assert not store.hand_over("etl", worker.pid, scope="/a")  # no marker of ours any more
    refused = store.begin_run("etl", me, clock.time(), scope="/a")
    assert refused is not None and refused.pid == worker.pid


_VERSION_1 = (
    "CREATE TABLE schedule_meta (key TEXT PRIMARY KEY, value REAL NOT NULL)",
    "INSERT INTO schedule_meta VALUES ('version', 1)",
    "CREATE TABLE schedule_locks (scope TEXT PRIMARY KEY, pid INTEGER NOT NULL,"
    " pid_start REAL NOT NULL, host TEXT NOT NULL, since REAL NOT NULL, expires REAL NOT NULL)",
    "CREATE TABLE schedule_running (job TEXT PRIMARY KEY, pid INTEGER NOT NULL,"
    " pid_start REAL NOT NULL, host TEXT NOT NULL, started REAL NOT NULL,"
    " attempt INTEGER NOT NULL DEFAULT 1)",
    "CREATE TABLE schedule_fires (name TEXT PRIMARY KEY, fired REAL NOT NULL)",
    "CREATE TABLE schedule_expectations (name TEXT PRIMARY KEY, state TEXT NOT NULL)",
)


def test_a_version_1_file_keeps_its_rows_and_the_first_scope_asking_takes_them_over(
    path: Path, clock: FakeClock, worker: subprocess.Popen[str]
) -> None:
    for statement in _VERSION_1:
        _raw(path, statement)
    _raw(path, _INSERT_RUN, "etl", worker.pid, _start(worker.pid), HOST, 5.0, 2)
    _raw(path, "INSERT INTO schedule_fires VALUES ('etl', 100.0)")
    _raw(path, "INSERT INTO schedule_expectations VALUES ('etl', '{\"since\": 1.0}')")
    store = ScheduleStore(path, clock=clock)
    try:
        assert store.schema_version == 2
        assert _raw(path, "SELECT scope, name, fired FROM schedule_fires") == [("", "etl", 100.0)]
        # the run going across the upgrade is never doubled, in any scope
        for scope in ("/a", "/b"):
            refused = store.begin_run("etl", os.getpid(), clock.time(), scope=scope)
            assert refused is not None and (refused.pid, refused.attempt) == (worker.pid, 2)
            assert store.marker("etl", scope=scope) == refused
        # the first scope to ask for the name carries its last fire and what it told on
        assert store.last_fire("etl", scope="/a") == 100.0
        assert store.last_fire("etl", scope="/b") is None
        assert store.expectation_state("etl", scope="/a") == {"since": 1.0}
        assert store.expectation_state("etl", scope="/b") is None
        assert _raw(path, "SELECT scope FROM schedule_fires") == [("/a",)]
        _kill(worker)  # once its process is gone, the old marker is too
        assert store.begin_run("etl", os.getpid(), clock.time(), scope="/b") is None
        assert _raw(path, "SELECT scope, job FROM schedule_running") == [("/b", "etl")]
    finally:
        store.close()
