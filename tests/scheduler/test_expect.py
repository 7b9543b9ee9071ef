"""Expected runs: work reported through nbremind that did not come is told, once, and its
return too; judged against a real run history that real ``nbremind run`` processes wrote."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from _deadline import eventually
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


def _scheduling(tmp_path: Path, settings: str) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """A real ``nbremind schedule`` in a project of ``settings`` (its ``nbremind.toml``),
    with a data folder of its own; and the environment it runs with."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "nbremind.toml").write_text(textwrap.dedent(settings))
    env = {
        **os.environ,
        "NBREMIND_DATA_DIR": str(tmp_path / "data"),
        "NBREMIND_CONFIG_DIR": str(tmp_path / "config"),
    }
    command = [sys.executable, "-m", "nbremind", "schedule"]
    return subprocess.Popen(command, cwd=project, env=env, text=True), env


@pytest.mark.timeout(180)
def test_a_run_that_did_not_finish_and_a_return_are_told_to_a_webhook_to_the_second(
    tmp_path: Path, http_server: ScriptedHTTPServer
) -> None:
    process, env = _scheduling(
        tmp_path,
        f"""
        channels = ["{http_server.url()}"]

        [expect.ghost]
        every = "1s"
        grace = "1s"

        [expect.slowpoke]
        every = "10s"
        grace = "5s"
        max_duration = "1s"
        """,
    )
    data = tmp_path / "data"

    def titles() -> list[str]:
        return [str(r.json()["title"]) for r in http_server.answered(200)]

    try:
        eventually(lambda: any("ghost did not run" in t for t in titles()), 60, "ghost missed")
        # slowpoke's run starts at one of its expected times, and takes longer than its max
        eventually(lambda: time.time() % 10 < 1, 15, "an expected start of slowpoke")
        report_slow = subprocess.Popen(
            [sys.executable, "-m", "nbremind", "run", "--name", "slowpoke", "--", "sleep", "3"],
            cwd=tmp_path,
            env={**env, "NBREMIND_CHANNELS": "null"},
        )
        report(data, "ghost")
        assert report_slow.wait(60) == 0
        eventually(lambda: "✓ ghost is back" in titles(), 60, "ghost back")
        eventually(lambda: any("slowpoke did not finish" in t for t in titles()), 60, "late")
    finally:
        process.terminate()
        process.wait(30)
    told = titles()
    events = {r.json()["title"]: r.json()["event"] for r in http_server.answered(200)}
    missed = next(t for t in told if "ghost did not run" in t)
    assert (events[missed], events["✓ ghost is back"]) == ("missed", "missed")
    assert re.fullmatch(r"✗ ghost did not run \(expected \d\d:\d\d:\d\d, grace 1\.0 s\)", missed)
    [late] = [t for t in told if "slowpoke did not finish" in t]
    assert re.fullmatch(r"✗ slowpoke did not finish \(started \d\d:\d\d:\d\d, max 1\.0 s\)", late)
