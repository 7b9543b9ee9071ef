"""``nbremind schedule`` and ``nbremind jobs`` as a user runs them: real processes, a real
project folder, a real data folder, a fresh process reading what the last one left."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _deadline import eventually
from _processes import gone
from _projects import env_for, lines, scheduling
from _projects import nbremind_in as nbremind


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    (project / "nbremind.toml").write_text(
        textwrap.dedent(
            """
            channels = ["null"]

            [jobs.tick]
            command = ["sh", "-c", "echo ran >> ran.txt"]
            every = "1s"
            """
        ),
        encoding="utf-8",
    )
    return project


@pytest.fixture
def scheduler(folder: Path) -> Iterator[subprocess.Popen[str]]:
    with scheduling(folder) as process:
        yield process


def test_the_scheduler_runs_its_jobs_refuses_a_second_and_stops_on_sigterm(
    folder: Path, scheduler: subprocess.Popen[str]
) -> None:
    ran = folder / "ran.txt"
    eventually(lambda: len(lines(ran)) >= 2, 30, "two runs of the job")

    second = nbremind(folder, "schedule")
    assert second.returncode == 1
    assert second.stderr.startswith(
        f"nbremind schedule: a scheduler already runs for {folder} (pid {scheduler.pid} on "
    ), second.stderr

    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(30) == 0
    stopped = len(lines(ran))
    time.sleep(1.5)  # (the job's period: had anything kept scheduling, it would have run)
    assert len(lines(ran)) == stopped

    history = nbremind(folder, "history", "--json", "--name", "tick")
    runs = json.loads(history.stdout)
    assert runs and {r["kind"] for r in runs} == {"job"}
    assert {r["state"] for r in runs} == {"succeeded"}


def test_jobs_lists_each_job_with_its_next_and_last_run(folder: Path) -> None:
    ran = nbremind(folder, "jobs", "run", "tick")
    assert ran.returncode == 0, ran.stderr
    assert lines(folder / "ran.txt") == ["ran"]
    listed = nbremind(folder, "jobs", "--json")
    [row] = json.loads(listed.stdout)
    assert (row["name"], row["schedule"]) == ("tick", "every 1 s")
    assert row["next"] is not None
    assert row["last"]["state"] == "succeeded"
    table = nbremind(folder, "jobs").stdout.splitlines()
    assert table[0].split() == ["job", "schedule", "next", "run", "last", "run"]
    assert table[1].startswith("tick")
    assert "succeeded" in table[1]


def test_jobs_lists_the_good_jobs_and_fails_when_a_definition_is_bad(folder: Path) -> None:
    settings = folder / "nbremind.toml"
    settings.write_text(
        settings.read_text() + '\n[jobs.broken]\ncommand = "x"\nevery = "1h"\nretries = 0\n'
    )
    for args in (("jobs",), ("jobs", "--json")):
        listed = nbremind(folder, *args)
        assert listed.returncode == 2, listed.stderr
        assert listed.stderr == (
            f"nbremind jobs: {settings}: jobs.broken.retries: 0 is not a number of attempts "
            "from 1 to 20\n"
        )
        assert "tick" in listed.stdout and "broken" not in listed.stdout


def test_jobs_run_of_an_unknown_job_names_the_jobs(folder: Path) -> None:
    done = nbremind(folder, "jobs", "run", "nope")
    assert done.returncode == 2
    assert done.stderr == "nbremind jobs: error: no job named 'nope'; jobs: tick\n"


def notebook(path: Path, *cells: str) -> None:
    import nbformat

    book = nbformat.v4.new_notebook()
    book.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    book.cells[0].metadata["tags"] = ["parameters"]
    book.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(book, path)


def test_a_notebook_job_runs_with_its_parameters_and_a_failing_cell_is_named(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    notebook(project / "report.ipynb", "region = 'none'", "open('region.txt', 'w').write(region)")
    notebook(project / "broken.ipynb", "x = 1", "y = 2", "raise KeyError('missing')")
    (project / "nbremind.toml").write_text(
        textwrap.dedent(
            """
            channels = ["null"]

            [jobs.report]
            notebook = "report.ipynb"
            parameters = { region = "emea" }
            output = "runs/{name}.ipynb"
            every = "1d"

            [jobs.broken]
            notebook = "broken.ipynb"
            output = "runs/{name}.ipynb"
            every = "1d"
            """
        )
    )
    good = nbremind(project, "jobs", "run", "report")
    assert good.returncode == 0, good.stderr
    assert (project / "region.txt").read_text() == "emea"
    assert (project / "runs" / "report.ipynb").exists()
    bad = nbremind(project, "jobs", "run", "broken")
    assert bad.returncode == 1
    assert "runs/broken.ipynb: cell 3 raised KeyError: 'missing'" in bad.stderr
    runs = json.loads(nbremind(project, "history", "--json", "--name", "broken").stdout)
    assert [(r["kind"], r["state"]) for r in runs] == [("job", "failed")]
    # the failure notice (its error, as the history keeps it) names the cell
    assert runs[0]["error_type"] == (
        "runs/broken.ipynb: cell 3 raised KeyError: 'missing' (exit status 1)"
    )


def test_a_killed_schedulers_lock_is_taken_over_and_a_run_past_its_timeout_times_out(
    folder: Path,
) -> None:
    (folder / "nbremind.toml").write_text(
        textwrap.dedent(
            """
            channels = ["null"]

            [jobs.tick]
            command = ["sh", "-c", "echo ran >> ran.txt"]
            every = "1s"

            [jobs.hang]
            command = ["sleep", "60"]
            every = "1d"
            timeout = "1s"
            catch_up = "latest"
            """
        )
    )
    with scheduling(folder):  # killed at the end of the block: no clean stop, a lock left
        eventually(lambda: len(lines(folder / "ran.txt")) >= 1, 30, "a run of the first scheduler")
    ran = len(lines(folder / "ran.txt"))
    with scheduling(folder) as second:
        eventually(lambda: len(lines(folder / "ran.txt")) > ran, 30, "a run of the second one")
        hung = nbremind(folder, "jobs", "run", "hang")
        assert hung.returncode == 124
        runs = json.loads(nbremind(folder, "history", "--json", "--name", "hang").stdout)
        assert runs[0]["state"] == "timed_out"
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0


def test_a_run_going_when_the_scheduler_stops_is_cancelled(folder: Path) -> None:
    (folder / "nbremind.toml").write_text(
        textwrap.dedent(
            """
            channels = ["null"]

            [jobs.long]
            command = ["sh", "-c", "echo started > started.txt; exec sleep 60"]
            every = "1s"
            """
        )
    )
    with scheduling(folder) as scheduler:
        eventually(lambda: (folder / "started.txt").exists(), 30, "the job's run")
        scheduler.send_signal(signal.SIGTERM)
        assert scheduler.wait(30) == 0
    runs = json.loads(nbremind(folder, "history", "--json", "--name", "long").stdout)
    assert [r["state"] for r in runs] == ["cancelled"]


def test_an_edit_of_the_running_schedulers_jobs_takes_effect_and_a_bad_one_is_told_once(
    folder: Path, scheduler: subprocess.Popen[str]
) -> None:
    eventually(lambda: len(lines(folder / "ran.txt")) >= 1, 30, "a run of the first job")
    settings = folder / "nbremind.toml"
    settings.write_text(
        settings.read_text()
        + '\n[jobs.tock]\ncommand = ["sh", "-c", "echo ran >> tock.txt"]\nevery = "1s"\n'
    )
    eventually(lambda: len(lines(folder / "tock.txt")) >= 1, 30, "a run of the added job")
    settings.write_text(settings.read_text().replace('every = "1s"\n', 'every = "soon"\n', 1))
    ran = len(lines(folder / "tock.txt"))
    eventually(lambda: len(lines(folder / "tock.txt")) >= ran + 3, 30, "runs after the bad edit")
    scheduler.send_signal(signal.SIGTERM)
    assert scheduler.wait(30) == 0
    assert scheduler.stderr is not None
    told = [line for line in scheduler.stderr.read().splitlines() if "error:" in line]
    assert len(told) == 1, told
    assert "jobs.tick.every: 'soon' is not a duration" in told[0]
    assert told[0].endswith("(the jobs as they were are kept)")


def _in_background(folder: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    """``nbremind ARGS`` started in ``folder``, its stderr written to ``log``."""
    with log.open("wb") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "nbremind", *args],
            cwd=folder,
            env=env_for(folder),
            stdout=subprocess.DEVNULL,
            stderr=err,
        )


def _project(tmp_path: Path, settings: str) -> Path:
    """A project folder in ``tmp_path`` with ``settings`` as its ``nbremind.toml``."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "nbremind.toml").write_text(settings)
    return folder


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
    process.wait()


def test_jobs_run_in_one_project_is_not_refused_by_a_run_of_another_sharing_the_data(
    tmp_path: Path,
) -> None:
    projects = []
    for name, command in (("a", "echo a >> ran.txt"), ("b", "echo b >> ran.txt; sleep 60")):
        folder = tmp_path / name  # (both keep their state in tmp_path / "data")
        folder.mkdir()
        (folder / "nbremind.toml").write_text(
            f'channels = ["null"]\n[jobs.etl]\ncommand = ["sh", "-c", "{command}"]\nevery = "1d"\n'
        )
        projects.append(folder)
    a, b = projects
    going = _in_background(b, "jobs", "run", "etl", log=tmp_path / "b.log")
    try:
        eventually(lambda: lines(b / "ran.txt") == ["b"], 30, "B's run of etl")
        ran = nbremind(a, "jobs", "run", "etl")
        assert ran.returncode == 0, ran.stderr
        assert lines(a / "ran.txt") == ["a"]
        again = nbremind(b, "jobs", "run", "etl")  # B's own job: still never twice at once
        assert again.returncode != 0
        assert "etl is running (pid " in again.stderr
        assert lines(b / "ran.txt") == ["b"]
    finally:
        _stop(going)


def test_a_fire_while_jobs_run_runs_the_job_is_skipped_by_the_scheduler(
    tmp_path: Path,
) -> None:
    folder = _project(
        tmp_path,
        'channels = ["null"]\n[jobs.slow]\ncommand = ["sh", "-c", "echo ran >> ran.txt; '
        'sleep 60"]\nevery = "1s"\n',
    )
    going = _in_background(folder, "jobs", "run", "slow", log=tmp_path / "run.log")
    log = tmp_path / "schedule.log"
    try:
        eventually(lambda: lines(folder / "ran.txt") == ["ran"], 30, "the run of jobs run")
        scheduler = _in_background(folder, "schedule", log=log)
        try:
            eventually(
                lambda: "slow: still running: the run due at" in log.read_text(), 60, "a skip"
            )
            assert lines(folder / "ran.txt") == ["ran"]  # not started beside it
        finally:
            _stop(scheduler)
    finally:
        _stop(going)
    assert "slow: started" not in log.read_text()


def test_jobs_run_stopped_by_sigterm_stops_its_run_and_records_it_cancelled(
    tmp_path: Path,
) -> None:
    folder = _project(
        tmp_path,
        'channels = ["null"]\n[jobs.long]\ncommand = ["sh", "-c", "echo $$ > pid; exec sleep 60"]\n'
        'every = "1d"\n',
    )
    going = _in_background(folder, "jobs", "run", "long", log=tmp_path / "run.log")
    try:
        pid = int(eventually(lambda: lines(folder / "pid"), 30, "the command's start")[0])
        going.send_signal(signal.SIGTERM)
        assert going.wait(30) != 0
    finally:
        _stop(going)
    eventually(lambda: gone(pid), 10, "the command's end")
    shown = nbremind(folder, "history", "--json", "--kind", "job")
    [row] = json.loads(shown.stdout)
    assert (row["name"], row["state"]) == ("long", "cancelled"), row
