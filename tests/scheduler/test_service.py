"""The scheduler's loop on a fake clock, with real run processes and a real SQLite store."""

from __future__ import annotations

import datetime as dt
import io
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _deadline import eventually
from nbremind.core.jobs import Schedule
from nbremind.scheduler import service
from nbremind.scheduler.expect import ExpectedRuns
from nbremind.scheduler.service import Scheduler, job_argv
from nbremind.settings.jobs import load_jobs
from nbremind.store.runs import History
from nbremind.store.schedule import ScheduleStore
from nbremind.testing import FakeClock

#: What each test job's run does instead of ``nbremind run`` (a real, quick process).
WORK = {
    "quick": "pass",
    "etl": "pass",
    "fails": "import sys; sys.exit(3)",
    "slow": "import time; time.sleep(60)",
    "late": "import sys; sys.exit(124)",
    # fails at its first attempt, succeeds at the next (it counts its attempts in a file)
    "flaky": (
        "import pathlib, sys; p = pathlib.Path('attempts.txt'); "
        "n = len(p.read_text()) if p.exists() else 0; p.write_text('x' * (n + 1)); "
        "sys.exit(3 if n == 0 else 0)"
    ),
}
#: 2023-11-14 22:13:20 UTC: the fake clock's wall time at start.
START = 1_700_000_000.0


class Runs:
    """Starts each run as a real process doing ``WORK[job]``; keeps what it was asked."""

    def __init__(self) -> None:
        self.asked: list[list[str]] = []
        self.processes: list[subprocess.Popen[bytes]] = []

    def __call__(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        self.asked.append(argv)
        job = argv[argv.index("--job") + 1]
        process = subprocess.Popen([sys.executable, "-c", WORK[job]], **kwargs)
        self.processes.append(process)
        return process

    def jobs(self) -> list[str]:
        return [argv[argv.index("--job") + 1] for argv in self.asked]

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


@pytest.fixture
def runs() -> Iterator[Runs]:
    made = Runs()
    yield made
    made.close()


def project(tmp_path: Path, jobs: str) -> Path:
    (tmp_path / "nbremind.toml").write_text(textwrap.dedent(jobs), encoding="utf-8")
    return tmp_path


def scheduler(
    folder: Path, runs: Runs, clock: FakeClock, state: Path | None = None, **kwargs: Any
) -> tuple[Scheduler, io.StringIO]:
    out = io.StringIO()
    store = ScheduleStore(state or folder / "state.sqlite3", clock=clock)
    kwargs.setdefault("spawn", runs)
    made = Scheduler(
        lambda: load_jobs(folder, environ={}),
        store,
        str(folder),
        clock=clock,
        out=out,
        workdir=str(folder),
        kill_grace=5.0,
        **kwargs,
    )
    return made, out


def until_ended(made: Scheduler, name: str) -> None:
    """Step (without moving the clock) until the run of ``name`` has ended."""
    eventually(
        lambda: made.step() is not None and made.slots[name].process is None, what=f"{name} ended"
    )


def test_a_job_runs_at_its_times_and_not_at_start(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(tmp_path, '[jobs.quick]\ncommand = "true"\nevery = "1m"\ntimezone = "UTC"\n')
    made, out = scheduler(folder, runs, clock)
    assert made.start() is None
    made.step()
    assert runs.jobs() == []  # a new job starts with its next fire, not now
    clock.advance(60 - (START % 60))  # the next whole minute
    made.step()
    assert runs.jobs() == ["quick"]
    until_ended(made, "quick")
    clock.advance(60)
    made.step()
    assert runs.jobs() == ["quick", "quick"]
    made.stop()
    assert "quick: started, pid" in out.getvalue()


def test_the_run_is_nbremind_run_with_the_jobs_options(tmp_path: Path) -> None:
    folder = project(
        tmp_path,
        """
        [jobs.etl]
        command = ["python", "etl.py"]
        cron = "0 2 * * *"
        timeout = "1h"
        retries = 3
        after = "10m"
        on = ["failure", "timeout"]
        """,
    )
    job = load_jobs(folder, environ={}).jobs["etl"]
    argv = job_argv(job, "/py", attempt=2)
    assert argv[:8] == ["/py", "-m", "nbremind", "run", "--job", "etl", "--attempt", "2/3"]
    assert argv[argv.index("--after") + 1] == "10m"
    assert argv[argv.index("--on") + 1] == "failure,timeout"
    assert argv[argv.index("--timeout") + 1] == "1h"
    assert argv[argv.index("--") :] == ["--", "python", "etl.py"]


def test_a_fire_while_it_runs_is_skipped(tmp_path: Path, runs: Runs, clock: FakeClock) -> None:
    folder = project(tmp_path, '[jobs.slow]\ncommand = "x"\nevery = "1m"\ntimezone = "UTC"\n')
    made, out = scheduler(folder, runs, clock)
    made.start()
    clock.advance(60 - (START % 60))
    made.step()
    clock.advance(60)
    made.step()
    assert runs.jobs() == ["slow"]
    assert "slow: still running: the run due at" in out.getvalue()
    made.stop()
    assert runs.processes[0].returncode == -signal.SIGTERM  # stopped with the scheduler


def test_a_queued_fire_runs_when_the_run_ends(tmp_path: Path, runs: Runs, clock: FakeClock) -> None:
    folder = project(
        tmp_path,
        '[jobs.slow]\ncommand = "x"\nevery = "1m"\ntimezone = "UTC"\noverlap = "queue"\n',
    )
    made, _ = scheduler(folder, runs, clock)
    made.start()
    clock.advance(60 - (START % 60))
    made.step()
    clock.advance(60)
    made.step()
    clock.advance(60)  # two fires while it runs: one queued run
    made.step()
    runs.processes[0].kill()
    eventually(lambda: made.step() is not None and len(runs.jobs()) == 2, what="the queued run")
    made.stop()
    assert runs.jobs() == ["slow", "slow"]


def test_a_failed_run_is_tried_again_after_a_backoff(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(
        tmp_path, '[jobs.fails]\ncommand = "x"\nevery = "1h"\ntimezone = "UTC"\nretries = 3\n'
    )
    made, out = scheduler(folder, runs, clock, random=lambda: 0.5)
    made.start()
    clock.advance(3600 - (START % 3600))
    made.step()
    until_ended(made, "fails")
    assert made.slots["fails"].retry_at == pytest.approx(clock.time() + 5.0)  # 10 s * 0.5
    clock.advance(4.9)
    made.step()
    assert len(runs.asked) == 1
    clock.advance(0.2)
    made.step()
    assert runs.asked[1][runs.asked[1].index("--attempt") + 1] == "2/3"
    until_ended(made, "fails")
    clock.advance(10.0)  # the second retry's window is 20 s: half of it
    made.step()
    until_ended(made, "fails")
    clock.advance(3600)
    made.stop()
    assert [a[a.index("--attempt") + 1] for a in runs.asked] == ["1/3", "2/3", "3/3"]
    assert out.getvalue().count("fails: exit status 3; trying again") == 2


def test_a_run_past_its_timeout_is_not_tried_again(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(
        tmp_path, '[jobs.late]\ncommand = "x"\nevery = "1h"\ntimezone = "UTC"\nretries = 3\n'
    )
    made, _ = scheduler(folder, runs, clock)
    made.start()
    clock.advance(3600 - (START % 3600))
    made.step()
    until_ended(made, "late")
    assert made.slots["late"].retry_at is None
    made.stop()


@pytest.mark.parametrize(("catch_up", "runs_now"), [("latest", True), ("none", False)])
def test_a_fire_missed_while_nothing_scheduled_runs_once_with_catch_up_latest(
    tmp_path: Path, runs: Runs, clock: FakeClock, catch_up: str, runs_now: bool
) -> None:
    folder = project(
        tmp_path,
        f'[jobs.quick]\ncommand = "x"\nevery = "1h"\ntimezone = "UTC"\ncatch_up = "{catch_up}"\n',
    )
    store = ScheduleStore(folder / "state.sqlite3", clock=clock)
    store.set_last_fire("quick", START - 5 * 3600)  # the last scheduler ran 5 h ago
    store.close()
    made, out = scheduler(folder, runs, clock)
    made.start()
    assert runs.jobs() == (["quick"] if runs_now else [])  # once, not five times
    assert ("a run was missed at" in out.getvalue()) is runs_now
    made.stop()


def test_a_scheduler_takes_its_lock_again_after_stopping(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(tmp_path, '[jobs.quick]\ncommand = "x"\nevery = "1h"\n')
    first, _ = scheduler(folder, runs, clock)
    assert first.start() is None
    first.stop()
    second, _ = scheduler(folder, runs, clock)
    assert second.start() is None  # released: the next one may run
    second.stop()


def test_an_edit_reloads_and_a_bad_edit_keeps_the_last_good_jobs(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(tmp_path, '[jobs.quick]\ncommand = "x"\nevery = "1h"\ntimezone = "UTC"\n')
    made, out = scheduler(folder, runs, clock)
    made.start()
    (folder / "nbremind.toml").write_text(
        '[jobs.quick]\ncommand = "x"\ncron = "61 * * * *"\ntimezone = "UTC"\n'
    )
    clock.advance(3)
    made.step()
    clock.advance(3)
    made.step()  # read again: the same error is not said twice
    errors = [line for line in out.getvalue().splitlines() if "error:" in line]
    assert len(errors) == 1 and "jobs.quick.cron: '61 * * * *'" in errors[0]
    assert made.slots["quick"].job.schedule == Schedule(None, 3600.0, "UTC")
    (folder / "nbremind.toml").write_text(
        '[jobs.quick]\ncommand = "x"\ncron = "30 * * * *"\ntimezone = "UTC"\n'
        '[jobs.fails]\ncommand = "x"\nevery = "1h"\n'
    )
    clock.advance(3)
    made.step()
    assert made.slots["quick"].job.schedule == Schedule("30 * * * *", None, "UTC")
    assert sorted(made.slots) == ["fails", "quick"]
    made.stop()


def test_a_run_a_previous_scheduler_started_is_not_doubled(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(tmp_path, '[jobs.quick]\ncommand = "x"\nevery = "1m"\ntimezone = "UTC"\n')
    going = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        store = ScheduleStore(folder / "state.sqlite3", clock=clock)
        assert store.begin_run("quick", going.pid, START) is None  # left by a crashed one
        store.close()
        made, out = scheduler(folder, runs, clock)
        made.start()
        clock.advance(60 - (START % 60))
        made.step()
        assert runs.jobs() == []
        assert "quick: still running" in out.getvalue()
        made.stop()
    finally:
        going.kill()
        going.wait()


def test_a_run_that_fails_then_succeeds_on_its_retry_is_not_tried_again(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(
        tmp_path, '[jobs.flaky]\ncommand = "x"\nevery = "1h"\ntimezone = "UTC"\nretries = 3\n'
    )
    made, out = scheduler(folder, runs, clock, random=lambda: 0.5)
    made.start()
    clock.advance(3600 - (START % 3600))
    made.step()
    until_ended(made, "flaky")
    assert made.slots["flaky"].retry_at == pytest.approx(clock.time() + 5.0)
    clock.advance(5.0)
    made.step()
    until_ended(made, "flaky")
    assert made.slots["flaky"].retry_at is None
    clock.advance(60)
    made.step()
    made.stop()
    assert (folder / "attempts.txt").read_text() == "xx"
    assert [a[a.index("--attempt") + 1] for a in runs.asked] == ["1/3", "2/3"]
    assert "flaky: ended, exit status 0" in out.getvalue()


def test_with_a_watcher_the_jobs_are_read_when_it_says_so_or_their_file_changed(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(tmp_path, '[jobs.quick]\ncommand = "x"\nevery = "1h"\ntimezone = "UTC"\n')
    loads = [0]
    made, _ = scheduler(folder, runs, clock, changed=lambda: loads[0])
    made.start()
    (folder / "nbremind.toml").write_text('[jobs.quick]\ncommand = "x"\nevery = "2h"\n')
    made.step()
    assert made.slots["quick"].job.schedule.every == 3600.0  # nothing told, nothing looked at
    loads[0] += 1  # the settings' watcher reloaded
    made.step()
    assert made.slots["quick"].job.schedule.every == 7200.0
    (folder / "nbremind.toml").write_text('[jobs.quick]\ncommand = "x"\nevery = "10800"\n')
    clock.advance(2)  # a watcher that missed it: the file's size and time tell
    made.step()
    assert made.slots["quick"].job.schedule.every == 10800.0
    made.stop()


def test_two_projects_sharing_the_data_folder_each_run_their_own_job_of_one_name(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    state = tmp_path / "data" / "outbox.sqlite3"
    state.parent.mkdir()
    jobs = '[jobs.etl]\ncommand = "x"\nevery = "1m"\ntimezone = "UTC"\n'
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = project(tmp_path / "a", jobs), project(tmp_path / "b", jobs)
    first, _ = scheduler(a, runs, clock, state=state)
    second, out = scheduler(b, runs, clock, state=state)
    assert first.start() is None and second.start() is None  # a lock each
    clock.advance(60 - (START % 60))
    first.step()
    assert runs.processes[0].wait(60) == 0  # (A's run ended, not yet seen by A)
    second.step()
    assert runs.jobs() == ["etl", "etl"]  # each on time: B's not refused by A's marker
    assert "still running" not in out.getvalue()
    until_ended(first, "etl")
    until_ended(second, "etl")
    fires = [s.store.last_fire("etl", scope=s.scope) for s in (first, second)]
    assert fires == [START - (START % 60) + 60] * 2
    first.stop()
    second.stop()


def test_a_job_removed_while_it_runs_fires_no_more_and_goes_when_its_run_ends(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    slow = '[jobs.slow]\ncommand = "x"\nevery = "20s"\ntimezone = "UTC"\n'
    folder = project(tmp_path, slow)
    loads = [0]
    made, out = scheduler(folder, runs, clock, changed=lambda: loads[0])
    made.start()
    clock.advance(20 - (START % 20))
    made.step()
    assert runs.jobs() == ["slow"]
    (folder / "nbremind.toml").write_text("", encoding="utf-8")
    loads[0] += 1  # the settings' watcher reloaded
    made.step()
    assert made.slots["slow"].removed and made.slots["slow"].next is None
    assert "slow" not in made.expected()
    clock.advance(20)
    made.step()
    assert "still running" not in out.getvalue()  # no fire of a removed job
    runs.processes[0].kill()
    eventually(lambda: made.step() is not None and "slow" not in made.slots, what="slow gone")
    for _ in range(3):
        clock.advance(20)
        made.step()
    assert runs.jobs() == ["slow"]
    (folder / "nbremind.toml").write_text(slow, encoding="utf-8")  # added again: a new slot
    loads[0] += 1
    made.step()
    assert made.slots["slow"].next is not None and not made.slots["slow"].removed
    clock.advance(20)
    made.step()
    assert runs.jobs() == ["slow", "slow"]
    made.stop()


def test_a_job_removed_while_idle_goes_at_once(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(tmp_path, '[jobs.quick]\ncommand = "x"\nevery = "1m"\ntimezone = "UTC"\n')
    made, _ = scheduler(folder, runs, clock)
    made.start()
    (folder / "nbremind.toml").write_text("", encoding="utf-8")
    clock.advance(60 - (START % 60))
    made.step()
    assert made.slots == {} and runs.jobs() == []
    made.stop()


def test_the_marker_is_recorded_before_the_run_starts_and_a_refused_one_starts_none(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(
        tmp_path, '[jobs.fails]\ncommand = "x"\nevery = "1h"\ntimezone = "UTC"\nretries = 2\n'
    )
    seen: list[object] = []
    looks = ScheduleStore(folder / "state.sqlite3", clock=clock)

    def spawn(argv: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        marker = looks.marker("fails", scope=str(folder))  # as the run starts
        seen.append(None if marker is None else marker.pid)
        return runs(argv, **kwargs)

    made, out = scheduler(folder, runs, clock, random=lambda: 0.5, spawn=spawn)
    made.start()
    clock.advance(3600 - (START % 3600))
    made.step()
    assert seen == [made.store.owner.pid]  # recorded, in the scheduler's name, before
    marker = made.store.marker("fails", scope=made.scope)
    assert marker is not None and marker.pid == runs.processes[0].pid  # then the run's
    until_ended(made, "fails")
    assert made.slots["fails"].retry_at is not None
    going = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # another starter's run of the job, recorded while the retry waits
        other = ScheduleStore(made.store.path, clock=clock)
        assert other.begin_run("fails", going.pid, clock.time(), scope=made.scope) is None
        other.close()
        clock.advance(5.0)
        made.step()
        assert len(runs.asked) == 1  # refused: nothing started (nothing to kill)
        assert f"fails: not started: a run of it goes on (pid {going.pid})" in out.getvalue()
    finally:
        going.kill()
        going.wait()
    made.stop()
    looks.close()


def test_a_cron_job_fires_at_its_times_and_not_between(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(
        tmp_path, '[jobs.quick]\ncommand = "x"\ncron = "*/5 * * * *"\ntimezone = "UTC"\n'
    )
    made, _ = scheduler(folder, runs, clock)
    made.start()
    first = START - (START % 300) + 300  # 22:15:00 UTC
    clock.advance(first - START - 1)
    made.step()
    assert runs.jobs() == []  # 22:14:59
    clock.advance(1)
    made.step()
    assert runs.jobs() == ["quick"]
    until_ended(made, "quick")
    for _ in range(4):  # 22:16 ... 22:19
        clock.advance(60)
        made.step()
    clock.advance(59)
    made.step()
    assert runs.jobs() == ["quick"]  # 22:19:59
    clock.advance(1)
    made.step()
    assert runs.jobs() == ["quick", "quick"]  # 22:20:00
    made.stop()


def test_a_sub_minute_jobs_skipped_fire_is_told_to_the_second(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(tmp_path, '[jobs.slow]\ncommand = "x"\nevery = "30s"\ntimezone = "UTC"\n')
    made, out = scheduler(folder, runs, clock)
    made.start()
    clock.advance(30 - (START % 30))
    made.step()
    clock.advance(30)
    made.step()
    due = dt.datetime.fromtimestamp(clock.time()).strftime("%Y-%m-%d %H:%M:%S")
    assert f"slow: still running: the run due at {due} is skipped" in out.getvalue()
    made.stop()


def test_a_jobs_own_expected_run_is_told_missed_with_its_channels_and_events(
    tmp_path: Path, runs: Runs, clock: FakeClock
) -> None:
    folder = project(
        tmp_path,
        """
        [jobs.etl]
        command = "x"
        every = "1h"
        timezone = "UTC"
        channels = ["null"]
        on = ["failure", "missed"]

        [jobs.quick]
        command = "x"
        every = "1h"

        [expect.quick]
        every = "1d"
        grace = "5m"
        """,
    )
    made, _ = scheduler(folder, runs, clock)
    made.start()
    expected = made.expected()
    assert expected["etl"].schedule == Schedule(None, 3600.0, "UTC")
    assert (expected["etl"].grace, expected["quick"].grace) == (service.JOB_GRACE, 300.0)
    assert made.delivery("etl") == (("failure", "missed"), ("null",))
    assert made.delivery("quick") == (("missed",), None)  # its [expect.quick]'s
    history = History(tmp_path / "history.sqlite3", clock=clock)
    told: list[tuple[str, str, str, float]] = []
    judge = ExpectedRuns(
        made.store,
        lambda n, s: history.query(name=n, since=s),
        lambda *sent: told.append(sent),
        scope=made.scope,
    )
    judge.check(expected, clock.time())  # first look: from now on
    due = START - (START % 3600) + 3600  # etl's next fire: it does not run (no step)
    clock.advance(due + service.JOB_GRACE + 1 - START)
    judge.check(made.expected(), clock.time())
    assert told == [
        (
            "etl",
            "missed",
            dt.datetime.fromtimestamp(due, dt.timezone.utc).strftime("%H:%M"),
            service.JOB_GRACE,
        )
    ]
    history.close()
    made.stop()
