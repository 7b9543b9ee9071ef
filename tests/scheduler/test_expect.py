"""Expected runs: work reported through nbremind that did not come is told, once, and its
return too; judged against a real run history that real ``nbremind run`` processes wrote."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from _servers import ScriptedHTTPServer
from nbremind.core.jobs import Expectation, Schedule
from nbremind.scheduler.expect import ExpectedRuns
from nbremind.store.runs import History
from nbremind.store.schedule import ScheduleStore

HOUR = 3600.0


def report(data: Path, name: str, code: int = 0) -> None:
    """A run of ``name`` reported the way a cron line would: ``nbremind run --name``."""
    env = {**os.environ, "NBREMIND_DATA_DIR": str(data), "NBREMIND_CHANNELS": "null"}
    done = subprocess.run(
        [sys.executable, "-m", "nbremind", "run", "--name", name, "--", "sh", "-c", f"exit {code}"],
        env=env,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == code, done.stderr


class Told:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, str, float]] = []

    def __call__(self, name: str, how: str, at: str, seconds: float) -> None:
        self.sent.append((name, how, at, seconds))


def judge(data: Path) -> tuple[ExpectedRuns, Told, History, ScheduleStore]:
    history = History(data / "outbox.sqlite3")
    store = ScheduleStore(data / "outbox.sqlite3")
    told = Told()
    return (
        ExpectedRuns(store, lambda n, s: history.query(name=n, since=s), told),
        told,
        history,
        store,
    )


def test_a_run_that_came_is_ok_one_that_did_not_is_told_once_and_its_return(
    tmp_path: Path,
) -> None:
    report(tmp_path, "nightly")
    reported = time.time()
    expected = reported // HOUR * HOUR  # the hour the run counts for (within its grace)
    hourly = Schedule(None, HOUR, "UTC")
    expectations = {
        "nightly": Expectation("nightly", hourly, grace=HOUR),
        "ghost": Expectation("ghost", hourly, grace=HOUR),
    }
    runs, told, history, store = judge(tmp_path)
    runs.check(expectations, expected - 10)  # first look: what is expected from now on
    later = expected + HOUR + 1  # the grace of the expected start has passed
    verdicts = {v.name: v.state for v in runs.check(expectations, later)}
    assert verdicts == {"nightly": "ok", "ghost": "missed"}
    at = time.strftime("%H:%M", time.gmtime(expected))
    assert told.sent == [("ghost", "missed", at, HOUR)]

    runs.check(expectations, later + 60)  # told once
    assert len(told.sent) == 1
    history.close()
    store.close()

    report(tmp_path, "ghost", code=3)  # a failed run is not a good one
    runs, told, history, store = judge(tmp_path)  # a fresh process: it remembers
    runs.check(expectations, later + 120)
    assert told.sent == []
    report(tmp_path, "ghost")
    runs.check(expectations, later + 180)
    assert told.sent == [("ghost", "back", "", 0.0)]
    history.close()
    store.close()


def test_a_run_that_did_not_succeed_within_max_duration_is_late(tmp_path: Path) -> None:
    report(tmp_path, "etl", code=1)
    expected = time.time() // HOUR * HOUR
    expectation = Expectation("etl", Schedule(None, HOUR, "UTC"), grace=HOUR, max_duration=60)
    runs, told, history, store = judge(tmp_path)
    runs.check({"etl": expectation}, expected - 10)
    [verdict] = runs.check({"etl": expectation}, expected + HOUR + 1)
    assert verdict.state == "late"
    assert told.sent[0][:2] == ("etl", "late") and told.sent[0][3] == 60
    history.close()
    store.close()


@pytest.mark.timeout(120)
def test_the_scheduler_tells_a_missed_run_to_a_webhook(
    tmp_path: Path, http_server: ScriptedHTTPServer
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "nbremind.toml").write_text(
        textwrap.dedent(
            f"""
            channels = ["{http_server.url()}"]

            [expect.ghost]
            every = "1s"
            grace = "1s"
            """
        )
    )
    env = {
        **os.environ,
        "NBREMIND_DATA_DIR": str(tmp_path / "data"),
        "NBREMIND_CONFIG_DIR": str(tmp_path / "config"),
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "nbremind", "schedule"],
        cwd=project,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        [request] = http_server.wait_for(1, timeout=60)
    finally:
        process.terminate()
        process.wait(30)
    payload = request.json()
    assert payload["event"] == "missed"
    assert payload["title"].startswith("✗ ghost did not run (expected ")
    assert payload["title"].endswith(", grace 1.0 s)")
