"""``nbremind schedule --metrics-port``: a real scheduler process scraped over HTTP, the
notice counts read from a real outbox file, and the end state of each exit status."""

from __future__ import annotations

import datetime as dt
import json
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from _deadline import eventually
from _projects import nbremind_in as nbremind
from _projects import scheduling
from nbremind import __version__
from nbremind.core.clock import SystemClock
from nbremind.core.notice import Notice, make_notice
from nbremind.core.task import Task, TaskState
from nbremind.scheduler.expect import Verdict
from nbremind.scheduler.metrics import (
    ALL_CHANNELS,
    NoticeCounts,
    SchedulerMetrics,
    run_state,
)
from nbremind.store.outbox import Outbox

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Each sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, metric: str, **labels: str) -> float | None:
    return samples.get((metric, frozenset(labels.items())))


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
        return parse(answer.read().decode("utf-8"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


# -- the exit statuses ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("code", "stopping", "state"),
    [
        (0, False, "succeeded"),
        (124, False, "timed_out"),  # past its timeout (nbremind run, as GNU timeout)
        (137, False, "failed"),  # its memory limit (SIGKILL, as the OOM killer)
        (130, False, "cancelled"),  # the command stopped by the SIGINT passed on
        (143, False, "cancelled"),  # ... by SIGTERM (the scheduler stopping)
        (129, False, "cancelled"),  # ... by SIGHUP
        (-signal.SIGTERM, False, "cancelled"),  # nbremind run itself killed by SIGTERM
        (-signal.SIGKILL, False, "failed"),
        (-signal.SIGKILL, True, "cancelled"),  # past the grace when the scheduler stops
        (137, True, "cancelled"),
        (1, False, "failed"),
        (3, True, "failed"),  # a run that failed on its own while the scheduler stopped
    ],
)
def test_the_state_of_each_exit_status(code: int, stopping: bool, state: str) -> None:
    assert run_state(code, stopping) == state


# -- the metrics object, fed as the scheduler feeds it --------------------------------------
def test_runs_skips_and_last_success_as_the_scheduler_tells_them() -> None:
    asked: list[str] = []

    def last_success(job: str) -> float | None:
        asked.append(job)
        return 1000.0 if job == "nightly" else None

    metrics = SchedulerMetrics("9.9", last_success=last_success, clock=lambda: 5000.0)
    metrics.known(["nightly", "hourly"])
    metrics.observe("started", "hourly", {"attempt": 1, "pid": 1})
    running = parse(metrics.text())
    metrics.observe("ended", "hourly", {"code": 3, "state": "failed", "duration": 42.0})
    metrics.observe("retry", "hourly", {"code": 3, "attempt": 1, "wait": 5.0})
    metrics.observe("started", "hourly", {"attempt": 2, "pid": 2})
    metrics.observe("skipped", "hourly", {"at": 4000.0})
    metrics.observe("ended", "hourly", {"code": 0, "state": "succeeded", "duration": 7200.5})
    samples = parse(metrics.text())

    assert asked == ["nightly", "hourly"]  # once per job, not at each event
    assert value(running, "nbremind_jobs_running") == 1
    assert value(samples, "nbremind_jobs_running") == 0
    assert value(samples, "nbremind_job_runs_total", job="hourly", state="failed") == 1
    assert value(samples, "nbremind_job_runs_total", job="hourly", state="succeeded") == 1
    assert value(samples, "nbremind_job_run_duration_seconds_count", job="hourly") == 2
    assert value(samples, "nbremind_job_run_duration_seconds_sum", job="hourly") == 7242.5
    hist = "nbremind_job_run_duration_seconds_bucket"
    assert value(samples, hist, job="hourly", le="60.0") == 1
    assert value(samples, hist, job="hourly", le="7200.0") == 1
    assert value(samples, hist, job="hourly", le="14400.0") == 2
    assert value(samples, "nbremind_job_retries_total", job="hourly") == 1
    assert value(samples, "nbremind_job_skipped_total", job="hourly") == 1
    gauge = "nbremind_job_last_success_timestamp_seconds"
    assert value(samples, gauge, job="nightly") == 1000.0  # from the history
    assert value(samples, gauge, job="hourly") == 5000.0  # its run just now
    assert value(samples, "nbremind_scheduler_info", version="9.9") == 1


def test_a_missed_expectation_counts_once_however_often_it_is_judged() -> None:
    metrics = SchedulerMetrics("9.9")
    metrics.judged([Verdict("etl", "ok", 100.0), Verdict("etl", "missed", 200.0)])
    metrics.judged([Verdict("etl", "missed", 200.0), Verdict("report", "late", 200.0)])
    metrics.judged([Verdict("etl", "back", 200.0), Verdict("etl", "missed", 300.0)])
    samples = parse(metrics.text())
    assert value(samples, "nbremind_expectations_missed_total", name="etl") == 2
    assert value(samples, "nbremind_expectations_missed_total", name="report") == 1


# -- the notices, from the outbox file -----------------------------------------------------
def _notice(name: str) -> Notice:
    task = Task(name, clock=SystemClock(), total=1)
    task.mark_started()
    task.mark_ended(TaskState.FAILED)
    return make_notice("failure", task.snapshot(), created=time.time(), key="end")


def test_notices_are_counted_by_channel_and_outcome_from_the_outbox_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite3"
    writer = Outbox(path)  # (the runs' processes write the file, the scheduler reads it)
    before = _notice("before")
    writer.record(before, ["slack"])
    writer.mark(before.id, "slack", ok=True)
    reader = Outbox(path)
    counts = NoticeCounts(reader, every=3600.0)
    try:
        counts.refresh(force=True)
        assert counts.totals == {}  # what was there before is not counted

        stored = _notice("stored")  # stored with its channels: each outcome by channel
        writer.record(stored, ["slack", "mail", "desktop"])
        writer.mark(stored.id, "slack", ok=True)
        writer.mark(stored.id, "mail", ok=False, error="refused")
        counted = _notice("counted")  # delivered everywhere at once: only counted
        writer.queue_record(counted, ["slack", "mail"])
        writer.queue_mark(counted.id, "slack", True, attempts=1)
        writer.queue_mark(counted.id, "mail", True, attempts=1)
        writer.flush()
        assert writer.records(notice_id=counted.id) == []  # (it has no rows indeed)

        counts.refresh()  # (read less than `every` ago: nothing read)
        assert counts.totals == {}
        counts.refresh(force=True)
        expected = {
            ("slack", "delivered"): 1,
            ("mail", "failed"): 1,
            (ALL_CHANNELS, "delivered"): 2,
        }
        assert counts.totals == expected
        counts.refresh(force=True)
        assert counts.totals == expected  # each once

        writer.drop(stored.id, "desktop", "too old")
        counts.refresh(force=True)
        assert counts.totals == {**expected, ("desktop", "dropped"): 1}

        # a scrape reads the file (a fresh reader counts from its start: nothing yet)
        metrics = SchedulerMetrics("9.9", outbox=reader)
        assert "# TYPE nbremind_notices_total counter" in metrics.text()
        assert not [name for name, _ in parse(metrics.text()) if name.startswith("nbremind_not")]
        again = _notice("again")
        writer.record(again, ["mail"])
        writer.mark(again.id, "mail", ok=False, error="refused")
        assert metrics.notices is not None
        metrics.notices.refresh(force=True)
        samples = parse(metrics.text())
        assert value(samples, "nbremind_notices_total", channel="mail", outcome="failed") == 1
    finally:
        reader.close()
        writer.close()


# -- the real command ----------------------------------------------------------------------
@pytest.fixture
def folder(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "nbremind.toml").write_text(
        textwrap.dedent(
            """
            channels = ["null"]

            [jobs.ok]
            command = ["true"]
            every = "1s"

            [jobs.bad]
            command = ["sh", "-c", "exit 3"]
            every = "1s"

            [jobs.daily]
            command = ["true"]
            every = "1d"
            """
        ),
        encoding="utf-8",
    )
    return project


@pytest.fixture
def port() -> int:
    return free_port()


@pytest.fixture
def scheduler(folder: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    # a run of the daily job before the scheduler starts: its last success is in the history
    ran = nbremind(folder, "jobs", "run", "daily")
    assert ran.returncode == 0, ran.stderr
    with scheduling(folder, "--metrics-port", str(port)) as process:
        yield process


def test_a_scheduler_serves_its_runs_over_http(
    folder: Path, port: int, scheduler: subprocess.Popen[str]
) -> None:
    def ran() -> Samples | None:
        try:
            samples = scrape(port)
        except OSError:  # (not listening yet)
            return None
        runs = "nbremind_job_runs_total"
        enough = (value(samples, runs, job="ok", state="succeeded") or 0) >= 2 and (
            value(samples, runs, job="bad", state="failed") or 0
        ) >= 2
        delivered = sum(
            v
            for (name, labels), v in samples.items()
            if name == "nbremind_notices_total" and ("outcome", "delivered") in labels
        )
        return samples if enough and delivered > 0 else None

    samples = eventually(ran, 60, "two runs of each job and their notices in a scrape")
    now = time.time()
    runs = {
        (dict(labels)["job"], dict(labels)["state"]): v
        for (name, labels), v in samples.items()
        if name == "nbremind_job_runs_total"
    }
    assert {key for key in runs} == {("ok", "succeeded"), ("bad", "failed")}
    for job in ("ok", "bad"):
        [(_, state)] = [key for key in runs if key[0] == job]
        count = value(samples, "nbremind_job_run_duration_seconds_count", job=job)
        assert count is not None
        # (the histogram is told first: a scrape between the two sees it one ahead)
        assert runs[job, state] <= count <= runs[job, state] + 1
        total = value(samples, "nbremind_job_run_duration_seconds_sum", job=job)
        assert total is not None and 0 < total < 30 * count
    gauge = "nbremind_job_last_success_timestamp_seconds"
    last_ok = value(samples, gauge, job="ok")
    assert last_ok is not None and now - 30 < last_ok <= now + 1
    assert value(samples, gauge, job="bad") is None  # never succeeded
    [daily] = json.loads(nbremind(folder, "history", "--json", "--name", "daily").stdout)
    ended = dt.datetime.fromisoformat(daily["end"]).timestamp()
    assert value(samples, gauge, job="daily") == pytest.approx(ended, abs=1)  # from before
    running = value(samples, "nbremind_jobs_running")
    assert running is not None and running in (0, 1, 2)  # two jobs run every second
    assert value(samples, "nbremind_scheduler_info", version=__version__) == 1
    assert value(samples, "nbremind_job_runs_total", job="daily", state="succeeded") is None

    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(30) == 0
    assert scheduler.stderr is not None
    said = scheduler.stderr.read()
    assert f"nbremind schedule: metrics at http://127.0.0.1:{port}/metrics" in said
    with pytest.raises(OSError):
        scrape(port)  # the server stopped with the scheduler


def test_a_taken_port_or_port_0_is_refused_before_the_scheduler_starts(folder: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = nbremind(folder, "schedule", "--metrics-port", str(port))
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"nbremind schedule: error: --metrics-port {port}: cannot serve on 127.0.0.1:{port}: "
    ), done.stderr
    assert done.stderr.count("\n") == 1
    zero = nbremind(folder, "schedule", "--metrics-port", "0")
    assert zero.returncode == 2
    assert zero.stderr == (
        "nbremind schedule: error: --metrics-port 0: give a port from 1 to 65535\n"
    )
    # nothing was scheduled and no lock is left: the jobs never ran
    listed = json.loads(nbremind(folder, "jobs", "--json").stdout)
    assert {row["name"]: row["last"] for row in listed} == {"ok": None, "bad": None, "daily": None}


def test_the_client_library_loads_only_with_the_option() -> None:
    code = (
        "import sys, nbremind, nbremind.cli, nbremind.cli.schedule, nbremind.scheduler.service;"
        "print('prometheus_client' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
