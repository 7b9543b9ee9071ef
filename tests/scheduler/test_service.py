"""The scheduler's loop on a fake clock, with real run processes and a real SQLite store."""

from __future__ import annotations

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
from nbremind.scheduler.service import Scheduler, job_argv
from nbremind.settings.jobs import load_jobs
from nbremind.store.schedule import ScheduleStore
from nbremind.testing import FakeClock

#: What each test job's run does instead of ``nbremind run`` (a real, quick process).
WORK = {
    "quick": "pass",
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
    folder: Path, runs: Runs, clock: FakeClock, **kwargs: Any
) -> tuple[Scheduler, io.StringIO]:
    out = io.StringIO()
    store = ScheduleStore(folder / "state.sqlite3", clock=clock)
    made = Scheduler(
        lambda: load_jobs(folder, environ={}),
        store,
        str(folder),
        clock=clock,
        spawn=runs,
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
