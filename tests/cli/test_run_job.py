"""``nbremind run --job NAME -- CMD``, as the scheduler starts each run of a job: the real
command in a subprocess, read back through a fresh process's ``nbremind history --json`` and
a local webhook server."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _deadline import eventually
from _projects import history_json, nbremind_in
from _servers import ScriptedHTTPServer
from nbremind.cli.run import attempt_note

PY = sys.executable
pytestmark = pytest.mark.skipif(os.name != "posix", reason="sh, process groups and signals")


def test_a_failing_job_run_is_a_job_task_named_after_the_job(
    http_server: ScriptedHTTPServer,
) -> None:
    run = nbremind_in(
        None, "run", "--job", "nightly", "--channels", http_server.url(), "--", "sh", "-c", "exit 3"
    )
    assert (run.returncode, run.stderr) == (3, "")
    [row] = history_json(
        None,
    )
    assert (row["name"], row["kind"], row["state"]) == ("nightly", "job", "failed")
    assert (row["error_type"], row["notices"]) == ("exit status 3", 1)
    [request] = http_server.wait_for(1)
    payload = request.json()
    assert payload["task"]["kind"] == "job" and payload["task"]["name"] == "nightly"
    assert payload["event"] == "failure" and payload["state"] == "failed"
    assert payload["title"] == "✗ nightly failed"
    assert payload["body"].splitlines()[0] == "exit status 3"
    assert payload["notes"] == []  # no --attempt: no note


def test_the_attempt_of_a_retried_run_is_in_its_notice(http_server: ScriptedHTTPServer) -> None:
    url = http_server.url()
    run = nbremind_in(
        None, "run", "--job", "etl", "--attempt", "2/3", "--channels", url, "--", "true"
    )
    assert (run.returncode, run.stderr) == (0, "")
    [request] = http_server.wait_for(1)
    payload = request.json()
    assert payload["title"] == "✓ etl finished" and payload["task"]["kind"] == "job"
    assert payload["notes"] == ["attempt 2 of 3"]
    assert "attempt 2 of 3" in payload["body"].splitlines(), payload["body"]
    # a plain command may say its attempt too, without the number of attempts
    run = nbremind_in(None, "run", "--attempt", "4", "--channels", url, "--", "sh", "-c", "exit 1")
    assert run.returncode == 1
    second = http_server.wait_for(2)[1].json()
    assert second["task"]["kind"] == "command" and second["notes"] == ["attempt 4"]
    assert [
        (r["name"], r["kind"])
        for r in history_json(
            None,
        )
    ] == [
        ("sh -c 'exit 1'", "command"),
        ("etl", "job"),
    ]


def test_a_job_run_is_of_kind_job_from_its_start(http_server: ScriptedHTTPServer) -> None:
    url = http_server.url()
    run = nbremind_in(
        None, "run", "--job", "nightly", "--on", "start,success", "--channels", url, "--", "true"
    )
    assert run.returncode == 0, run.stderr
    kinds = {r.json()["event"]: r.json()["task"]["kind"] for r in http_server.wait_for(2)}
    assert kinds == {"start": "job", "success": "job"}  # made as the task starts, and at its end


def test_a_job_run_past_its_timeout_is_timed_out_with_status_124() -> None:
    run = nbremind_in(
        None, "run", "--job", "slow", "--timeout", "1s", "--channels", "null", "--", "sleep", "30"
    )
    assert run.returncode == 124, run.stderr
    [row] = history_json(None, "--kind", "job")
    assert (row["name"], row["state"]) == ("slow", "timed_out")
    assert 1.0 <= row["duration"] < 20, row["duration"]


def test_a_killed_job_runner_is_recorded_failed_by_its_watchdog(tmp_path: Path) -> None:
    pidfile = tmp_path / "command.pid"
    script = f"echo $$ > '{pidfile}'; exec sleep 60"
    command = ["sh", "-c", script]
    # the data file exists, as it does once nbremind ran here: the runner does not race the
    # polls below to create it
    assert history_json(None) == []
    runner = subprocess.Popen(
        [PY, "-m", "nbremind", "run", "--job", "nightly", "--channels", "null", "--", *command]
    )
    command_pid = None
    try:
        running = eventually(
            lambda: [
                r
                for r in history_json(
                    None,
                )
                if r["state"] == "running"
            ],
            30,
            "running row",
        )
        assert [(r["name"], r["kind"]) for r in running] == [("nightly", "job")]
        command_pid = int(eventually(lambda: pidfile.exists() and pidfile.read_text(), 30, "pid"))
        runner.send_signal(signal.SIGKILL)
        assert runner.wait(30) == -signal.SIGKILL

        def ended() -> list[dict[str, Any]]:
            return [
                r
                for r in history_json(
                    None,
                )
                if r["state"] != "running"
            ]

        [row] = eventually(ended, 30, "ended row")
        assert (row["name"], row["kind"], row["state"]) == ("nightly", "job", "failed")
        assert row["reason"].startswith("process died"), row
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(30)
        if command_pid is not None:  # the command's group outlives a killed runner
            with contextlib.suppress(ProcessLookupError):
                os.killpg(command_pid, signal.SIGKILL)


def _running_runner(*args: str) -> subprocess.Popen[bytes]:
    """``nbremind run ARGS`` started, once its run is recorded running."""
    history_json(None)  # the data file exists before the runner and the polls open it
    runner = subprocess.Popen([PY, "-m", "nbremind", "run", *args])
    eventually(
        lambda: [
            r
            for r in history_json(
                None,
            )
            if r["state"] == "running"
        ],
        30,
        "running row",
    )
    return runner


def test_a_job_run_stopped_by_sigterm_is_cancelled(
    http_server: ScriptedHTTPServer, tmp_path: Path
) -> None:
    # (as the scheduler stops: SIGTERM to the run, which passes it on to the command)
    runner = _running_runner(
        "--job", "nightly", "--channels", http_server.url(), "--", "sleep", "60"
    )
    try:
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(30) == 128 + signal.SIGTERM  # the command's own status, as before
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(30)
    [row] = history_json(
        None,
    )
    assert (row["name"], row["kind"], row["state"]) == ("nightly", "job", "cancelled")
    assert row["error_type"] == "stopped by SIGTERM"
    [request] = http_server.wait_for(1)
    payload = request.json()
    assert (payload["event"], payload["task"]["kind"]) == ("cancel", "job")
    # a command that ends well after the signal succeeded
    ready = tmp_path / "ready"
    script = f"trap 'exit 0' TERM; : > '{ready}'; sleep 60 & wait"
    runner = _running_runner("--job", "tidy", "--channels", "null", "--", "sh", "-c", script)
    try:
        eventually(ready.exists, 30, "trap set")
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(30) == 0
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(30)
    rows = history_json(None, "--kind", "job")
    assert [(r["name"], r["state"]) for r in rows] == [
        ("tidy", "succeeded"),
        ("nightly", "cancelled"),
    ]


def test_bad_job_options_are_one_line_errors_with_status_2() -> None:
    both = nbremind_in(None, "run", "--job", "nightly", "--name", "x", "--", "true")
    assert both.returncode == 2
    assert "argument --name: not allowed with argument --job" in both.stderr
    empty = nbremind_in(None, "run", "--job", " ", "--", "true")
    assert (empty.returncode, empty.stderr) == (
        2,
        "nbremind run: error: --job: the job's name is empty\n",
    )
    bad = nbremind_in(None, "run", "--attempt", "3/2", "--", "true")
    assert bad.returncode == 2 and bad.stderr.splitlines() == [
        "nbremind run: error: --attempt: '3/2' is not an attempt number: give N or N/M "
        "(attempt N of M), e.g. 2 or 2/3"
    ]
    assert (
        history_json(
            None,
        )
        == []
    )  # nothing ran


@pytest.mark.parametrize(
    ("text", "note"), [("1", "attempt 1"), ("2/3", "attempt 2 of 3"), (" 3/3 ", "attempt 3 of 3")]
)
def test_attempt_notes(text: str, note: str) -> None:
    assert attempt_note(text) == note


@pytest.mark.parametrize("text", ["0", "-1", "two", "2/", "2/1", "/3", "1.5", ""])
def test_bad_attempts_name_the_option_and_value(text: str) -> None:
    with pytest.raises(ValueError, match=f"--attempt: {text!r} is not an attempt number"):
        attempt_note(text)


@pytest.mark.parametrize("program", ["nosuchprog", "not-executable"])
def test_a_job_run_that_cannot_start_is_recorded_failed_and_told(
    http_server: ScriptedHTTPServer, tmp_path: Path, program: str
) -> None:
    if program == "not-executable":
        (tmp_path / program).write_text("#!/bin/sh\n", encoding="utf-8")
        program = str(tmp_path / program)
        reason = f"Permission denied: {program!r}"
    else:
        reason = f"No such file or directory: {program!r}"
    url = http_server.url()
    run = nbremind_in(
        None, "run", "--job", "etl", "--attempt", "1/2", "--channels", url, "--", program
    )
    # the exit status and the error line as before
    assert run.returncode == 127
    assert run.stderr.startswith(f"nbremind run: cannot run {program!r}: "), run.stderr
    [row] = history_json(None)
    assert (row["name"], row["kind"], row["state"]) == ("etl", "job", "failed")
    assert row["error_type"] == f"cannot start: {reason}"
    [request] = http_server.wait_for(1)
    payload = request.json()
    assert (payload["event"], payload["title"]) == ("failure", "✗ etl failed")
    assert payload["body"].splitlines()[0] == f"cannot start: {reason}"
    assert payload["notes"] == ["attempt 1 of 2"]


def test_a_plain_command_that_cannot_start_is_only_an_error() -> None:
    run = nbremind_in(None, "run", "--channels", "null", "--", "nosuchprog")
    assert (run.returncode, run.stderr) == (
        127,
        "nbremind run: cannot run 'nosuchprog': No such file or directory\n",
    )
    assert history_json(None) == []


def test_a_job_run_whose_stall_cannot_be_watched_is_recorded_failed_and_told(
    http_server: ScriptedHTTPServer,
) -> None:
    url = http_server.url()
    run = nbremind_in(
        None, "run", "--job", "train", "--stall", "1m", "--channels", url, "--", "true"
    )
    if run.returncode == 0:
        pytest.skip("a GPU answers here: the stall is watched")
    assert run.returncode == 2
    error = run.stderr.removeprefix("nbremind run: error: ").strip()
    assert error.startswith("--stall needs progress: a command reports none"), run.stderr
    [row] = history_json(None)
    assert (row["name"], row["kind"], row["state"], row["error_type"]) == (
        "train",
        "job",
        "failed",
        error,
    )
    [request] = http_server.wait_for(1)
    assert request.json()["body"].splitlines()[0] == error


def test_a_job_runs_notices_come_from_the_job(http_server: ScriptedHTTPServer) -> None:
    import socket

    run = nbremind_in(None, "run", "--job", "etl", "--channels", http_server.url(), "--", "true")
    assert run.returncode == 0, run.stderr
    [request] = http_server.wait_for(1)
    payload = request.json()
    assert payload["body"].splitlines()[-1] == f"job etl on {socket.gethostname()}"
    assert payload["notebook"] == "job etl"  # (the source a notice carries)
    [row] = history_json(None)
    assert row["source"] == "job etl"


def test_a_plain_runs_notices_come_from_nbremind_not_its_main_module(
    http_server: ScriptedHTTPServer,
) -> None:
    import socket

    script = "import time; time.sleep(1.2)"  # (long enough for its end to be told)
    run = nbremind_in(
        None,
        "run",
        "--name",
        "plain",
        "--channels",
        http_server.url(),
        "--",
        sys.executable,
        "-c",
        script,
    )
    assert run.returncode == 0, run.stderr
    [request] = http_server.wait_for(1)
    assert request.json()["body"].splitlines()[-1] == f"nbremind on {socket.gethostname()}"
    [row] = history_json(None)
    assert row["source"] == "nbremind"
