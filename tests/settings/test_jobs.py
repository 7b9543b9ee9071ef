"""Jobs and expected runs read from real settings files: every key, precedence, errors."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import textwrap
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cronsim
import pytest

from nbremind.core.jobs import (
    DEFAULT_GRACE,
    DEFAULT_OUTPUT,
    Expectation,
    Job,
    Schedule,
)
from nbremind.core.options import COMMAND_OPTIONS, TaskOptions, add_flags, flag_values
from nbremind.core.parse import EVENTS
from nbremind.core.secrets import Secret
from nbremind.settings.files import load_settings, raw_tables
from nbremind.settings.jobs import (
    CRON_ALIASES,
    JOB_KEYS,
    TASK_OPTION_KEYS,
    LoadedJobs,
    check_cron,
    job_delivery,
    load_jobs,
    parse_expectations,
    parse_jobs,
)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with a ``pyproject.toml`` (no nbremind table yet)."""
    root = tmp_path / "project"
    (root / "notebooks").mkdir(parents=True)
    (root / "pyproject.toml").write_text('[project]\nname = "demo"\n')
    return root


def local_file(project: Path, body: str) -> Path:
    path = project / "nbremind.toml"
    path.write_text(textwrap.dedent(body))
    return path


def one_job(project: Path, body: str, name: str = "nightly") -> LoadedJobs:
    """Load the jobs of an ``nbremind.toml`` holding ``[jobs.NAME]`` with ``body``."""
    local_file(project, f"[jobs.{name}]\n" + textwrap.dedent(body))
    return load_jobs(project)


def job_errors(project: Path, body: str) -> list[str]:
    """The errors of one job ``nightly`` with ``body``, with the file's path cut off; the job
    must be left out."""
    loaded = one_job(project, body)
    assert "nightly" not in loaded.jobs, loaded.jobs
    prefix = f"{project / 'nbremind.toml'}: "
    assert loaded.errors and all(e.startswith(prefix) for e in loaded.errors), loaded.errors
    return [error[len(prefix) :] for error in loaded.errors]


def toml_value(value: Any) -> str:
    """``value`` written as a TOML value (texts, numbers, booleans, arrays, tables)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


# -- a job with every key ----------------------------------------------------------------------
def test_a_command_job_with_every_key(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ETL_TOKEN", "tok-123456")
    path = local_file(
        project,
        """
        [jobs.nightly]
        command = ["python", "etl.py", "--token", "${ETL_TOKEN}"]
        cron = "0 2 * * *"
        timezone = "Europe/Berlin"
        timeout = "2h"
        retries = 3
        overlap = "queue"
        catch-up = "none"
        cwd = "data"
        env = { TOKEN = "${ETL_TOKEN}", MODE = "full" }
        after = "10m"
        notify_every = "30m"
        mem = "8GB"
        mem-limit = "90%"
        gpu_mem = "10GiB"
        stall = "5m"
        slower = 2
        on = ["failure", "timeout"]
        channels = ["memory", "null"]
        min_duration = "1m"
        """,
    )
    loaded = load_jobs(project / "notebooks")
    assert loaded.errors == ()
    assert project / "nbremind.toml" in loaded.files
    job = loaded.jobs["nightly"]
    assert job.name == "nightly" and job.kind == "command"
    assert job.command == ("python", "etl.py", "--token", "tok-123456")
    assert isinstance(job.command[3], Secret) and "tok-123456" not in repr(job)
    assert (job.notebook, job.python, dict(job.parameters), job.output) == (None, None, {}, None)
    assert job.schedule == Schedule("0 2 * * *", None, "Europe/Berlin")
    assert (job.timeout, job.retries, job.overlap, job.catch_up) == (7200.0, 3, "queue", "none")
    assert job.cwd == str(project / "data")
    assert dict(job.env) == {"TOKEN": "tok-123456", "MODE": "full"}
    assert isinstance(job.env["TOKEN"], Secret) and not isinstance(job.env["MODE"], Secret)
    assert job.source == str(path)
    # the task options as nbremind run flags, in the option table's order
    assert job.flags == (
        "--after",
        "10m",
        "--every",
        "30m",
        "--mem",
        "8000000000",
        "--mem-limit",
        "90%",
        "--gpu-mem",
        "10737418240",
        "--stall",
        "5m",
        "--slower",
        "2.0",
        "--on",
        "failure,timeout",
        "--channels",
        "memory,null",
        "--min",
        "1m",
    )
    assert "--timeout" not in job.flags  # the job's own field


def test_the_flags_are_read_by_nbremind_runs_parser_to_the_same_options(project: Path) -> None:
    loaded = one_job(
        project,
        """
        command = "true"
        every = "1h"
        after = 90
        notify_every = "1h30m"
        mem = 1.5e9
        mem_limit = "30GB"
        gpu_mem = "50%"
        stall = 600
        slower = true
        on = "none"
        channels = "memory"
        min_duration = "250ms"
        """,
    )
    [job] = loaded.jobs.values()
    parser = argparse.ArgumentParser()
    add_flags(parser, COMMAND_OPTIONS)
    got = TaskOptions.parse(**flag_values(parser.parse_args(list(job.flags)), COMMAND_OPTIONS))
    assert got == TaskOptions.parse(
        after=90,
        every="1h30m",
        mem=1.5e9,
        mem_limit="30GB",
        gpu_mem="50%",
        stall=600,
        slower=True,
        on=[],
        channels=["memory"],
        min_duration=0.25,
    )
    assert job.flags[job.flags.index("--on") + 1] == "none"
    assert job.flags[job.flags.index("--slower") + 1] == "1.5"


def test_a_command_as_text_runs_in_the_shell(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OUT_DIR", "/srv/out")
    job = one_job(project, 'command = "make nightly > ${OUT_DIR}/log.txt"\nevery = "1h"\n').jobs[
        "nightly"
    ]
    shell = ("cmd", "/c") if os.name == "nt" else ("sh", "-c")
    assert job.command == (*shell, "make nightly > /srv/out/log.txt")
    literal = one_job(project, 'command = "echo $HOME $${HOME}"\nevery = "1h"\n').jobs["nightly"]
    assert literal.command == (*shell, "echo $HOME ${HOME}")
    assert not isinstance(literal.command[2], Secret)


def test_a_notebook_job_and_a_python_job(project: Path) -> None:
    local_file(
        project,
        """
        [jobs.report]
        notebook = "reports/daily.ipynb"
        parameters = { region = "emea", days = 7, nested = { a = [1, 2] } }
        cron = "@daily"

        [jobs.custom]
        notebook = "reports/weekly.ipynb"
        output = "out/{name}.{start:%Y-%m-%d}.ipynb"
        every = "1d"

        [jobs.refresh]
        python = "myproject.cache:refresh"
        every = "15m"
        """,
    )
    loaded = load_jobs(project)
    assert loaded.errors == ()
    report, custom, refresh = (loaded.jobs[n] for n in ("report", "custom", "refresh"))
    assert report.kind == "notebook" and report.notebook == "reports/daily.ipynb"
    assert dict(report.parameters) == {"region": "emea", "days": 7, "nested": {"a": [1, 2]}}
    assert report.output == DEFAULT_OUTPUT == "runs/{name}-{start:%Y%m%d-%H%M}.ipynb"
    assert report.schedule == Schedule("0 0 * * *", None, None)
    assert custom.output == "out/{name}.{start:%Y-%m-%d}.ipynb"
    assert custom.schedule.every == 86400.0
    assert refresh.kind == "python" and refresh.python == "myproject.cache:refresh"
    assert (refresh.command, refresh.notebook, refresh.output) == (None, None, None)
    assert (refresh.retries, refresh.overlap, refresh.catch_up) == (1, "skip", "latest")
    assert (refresh.timeout, refresh.cwd, dict(refresh.env), refresh.flags) == (None, None, {}, ())


# -- the exact errors --------------------------------------------------------------------------
def test_the_errors_name_the_file_the_job_the_key_and_the_value(project: Path) -> None:
    assert job_errors(project, 'command = "true"\ncron = "61 * * * *"\n') == [
        "jobs.nightly.cron: '61 * * * *' is not a cron schedule (minute 61 is out of range)"
    ]
    assert job_errors(project, 'cron = "0 2 * * *"\n') == [
        "jobs.nightly: give exactly one of command, notebook or python"
    ]
    assert job_errors(
        project, 'command = "true"\npython = "a:b"\nnotebook = "x.ipynb"\nevery = "1h"\n'
    ) == ["jobs.nightly: give exactly one of command, notebook or python"]
    assert job_errors(project, 'command = "true"\nevery = "1h"\nretries = 0\n') == [
        "jobs.nightly.retries: 0 is not a number of attempts from 1 to 20"
    ]
    [unknown] = job_errors(project, 'command = "true"\nevery = "1h"\ncolour = "red"\n')
    assert unknown == "jobs.nightly.colour: not a job key; known keys: " + ", ".join(
        sorted(JOB_KEYS)
    )
    assert job_errors(project, 'command = "true"\nevery = "1h"\ntimezone = "Mars/Olympus"\n') == [
        "jobs.nightly.timezone: 'Mars/Olympus' is not an IANA time zone name such as "
        "Europe/Berlin or America/New_York"
    ]
    assert job_errors(project, 'command = "true"\n') == [
        "jobs.nightly: give exactly one of cron or every"
    ]
    assert job_errors(project, 'command = "true"\ncron = "@daily"\nevery = "1h"\n') == [
        "jobs.nightly: give exactly one of cron or every"
    ]


def test_every_bad_key_of_a_job_is_reported_at_once(project: Path) -> None:
    errors = job_errors(
        project,
        'command = 3\ncron = "0 2 * *"\nretries = 21\noverlap = "wait"\nafter = "soon"\n',
    )
    assert errors == [
        "jobs.nightly.cron: '0 2 * *' is not a cron schedule (it has 4 fields, not 5: "
        "minute hour day-of-month month day-of-week)",
        "jobs.nightly.command: 3 is not a command: a list of texts such as "
        "['python', 'etl.py'], or a text for the shell",
        "jobs.nightly.retries: 21 is not a number of attempts from 1 to 20",
        "jobs.nightly.overlap: 'wait' is not 'skip' or 'queue'",
        "jobs.nightly.after: 'soon' is not a duration such as 90, 90s, 10m, 1h30m or 2d",
    ]


def test_a_bad_job_is_left_out_and_the_others_load(project: Path) -> None:
    local_file(
        project,
        """
        [jobs.good]
        command = "true"
        every = "1m"

        [jobs.bad]
        command = "true"
        every = "0.5s"

        [expect.fine]
        every = "1h"

        [expect.broken]
        every = "1h"
        grace = "soon"
        """,
    )
    loaded = load_jobs(project)
    assert list(loaded.jobs) == ["good"] and list(loaded.expectations) == ["fine"]
    label = project / "nbremind.toml"
    assert loaded.errors == (
        f"{label}: jobs.bad.every: '0.5s' is shorter than 1 s, the shortest it may be",
        f"{label}: expect.broken.grace: 'soon' is not a duration such as 90, 90s, 10m, 1h30m or 2d",
    )


# -- cron lines ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("61 * * * *", "minute 61 is out of range"),
        ("0 24 * * *", "hour 24 is out of range"),
        ("0 0 32 * *", "day-of-month 32 is out of range"),
        ("0 0 0 * *", "day-of-month 0 is out of range"),
        ("0 0 * 13 *", "month 13 is out of range"),
        ("0 0 * * 8", "day-of-week 8 is out of range"),
        ("0-70/5 * * * *", "minute 70 is out of range"),
        ("0 0 30 2 *", "day-of-month 30 is in none of its months"),
        ("0 0 31 4,6,9,11 *", "day-of-month 31 is in none of its months"),
        ("5-3 * * * *", "'5-3' is not a minute field"),
        ("*/0 * * * *", "'*/0' is not a minute field"),
        ("x * * * *", "'x' is not a minute field"),
        ("0 0 * * 1#6", "'1#6' is not a day-of-week field"),
        ("0 0 * * * *", "it has 6 fields, not 5: minute hour day-of-month month day-of-week"),
        ("", "it has 0 fields, not 5: minute hour day-of-month month day-of-week"),
        ("@reboot", "the @ words are " + ", ".join(CRON_ALIASES)),
        ("@every 5m", "the @ words are " + ", ".join(CRON_ALIASES)),
    ],
)
def test_a_bad_cron_line_says_why(line: str, why: str) -> None:
    with pytest.raises(ValueError) as caught:
        check_cron(line, "f: jobs.x.cron")
    assert str(caught.value) == f"f: jobs.x.cron: {line!r} is not a cron schedule ({why})"


def test_cron_lines_cronsim_takes_are_taken_with_single_spaces() -> None:
    for line in (
        "0 2 * * *",
        "*/10 8-18 * * MON-FRI",
        "0 3 L * *",
        "0 0 * * 5L",
        "0 0 29 2 *",
        "15 4 * * sun",
        "0 0 * * 7",
        "0 9 1-7 * 1",
    ):
        assert check_cron(line, "x") == line
        assert check_cron(line, "x", "America/New_York") == line
    assert check_cron("  0   2 *  * * ", "x") == "0 2 * * *"
    for alias, line in CRON_ALIASES.items():
        assert check_cron(alias, "x") == line
        assert check_cron(alias.upper(), "x") == line
    # what is taken is what cronsim runs
    for line in CRON_ALIASES.values():
        now = dt.datetime(2026, 3, 29, 1, 30, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))
        assert next(cronsim.CronSim(line, now)) > now


def test_a_cron_line_that_is_not_text(project: Path) -> None:
    for value in ("3", "true", "[1, 2]", "{ a = 1 }", "2026-01-01T00:00:00"):
        errors = job_errors(project, f'command = "true"\ncron = {value}\n')
        assert errors == [
            f"jobs.nightly.cron: {load_value(value)!r} is not a cron schedule (a cron "
            "schedule is a text such as '0 2 * * *')"
        ]


def load_value(toml: str) -> Any:
    import tomllib

    return tomllib.loads(f"v = {toml}")["v"]


# -- each key's values, good and bad -------------------------------------------------------------
GOOD: dict[str, list[tuple[Any, Any]]] = {
    # key: [(value in the file, what the job holds)]
    "every": [("15m", 900.0), (1, 1.0), ("1h30m", 5400.0), ("2d", 172800.0)],
    "timezone": [("Europe/Berlin", "Europe/Berlin"), ("local", None), (" UTC ", "UTC")],
    "timeout": [("2h", 7200.0), (30, 30.0), ("250ms", 0.25)],
    "retries": [(1, 1), (20, 20), ("5", 5)],
    "overlap": [("skip", "skip"), ("queue", "queue"), (" Queue ", "queue")],
    "catch_up": [("latest", "latest"), ("none", "none")],
    "cwd": [("/srv/etl", "/srv/etl"), ("~/data", os.path.expanduser("~/data"))],
}
BAD: dict[str, list[tuple[Any, str]]] = {
    # key: [(value, the end of its error)]
    "every": [
        ("0.5s", "'0.5s' is shorter than 1 s, the shortest it may be"),
        ("367d", "'367d' is longer than 366d, the longest it may be (use a cron line)"),
        (1e308, "1e+308 is longer than 366d, the longest it may be (use a cron line)"),
        ("soon", "'soon' is not a duration such as 90, 90s, 10m, 1h30m or 2d"),
        (True, "True is not a duration such as 90, 90s, 10m, 1h30m or 2d"),
        (0, "0 is not a positive, finite duration"),
        ([], "[] is not a duration such as 90, 90s, 10m, 1h30m or 2d"),
    ],
    "timezone": [
        (
            "Mars/Olympus",
            "'Mars/Olympus' is not an IANA time zone name such as Europe/Berlin "
            "or America/New_York",
        ),
        ("", "'' is not an IANA time zone name such as Europe/Berlin or America/New_York"),
        (5, "5 is not an IANA time zone name such as Europe/Berlin or America/New_York"),
        (
            "../../etc/passwd",
            "'../../etc/passwd' is not an IANA time zone name such as "
            "Europe/Berlin or America/New_York",
        ),
    ],
    "timeout": [
        ("50ms", "'50ms' is shorter than 0.1 s, the shortest it may be"),
        (-1, "-1 is not a positive, finite duration"),
        ("forever", "'forever' is not a duration such as 90, 90s, 10m, 1h30m or 2d"),
    ],
    "retries": [
        (0, "0 is not a number of attempts from 1 to 20"),
        (21, "21 is not a number of attempts from 1 to 20"),
        (-3, "-3 is not a number of attempts from 1 to 20"),
        (2.5, "2.5 is not a number of attempts from 1 to 20"),
        (True, "True is not a number of attempts from 1 to 20"),
        ("three", "'three' is not a number of attempts from 1 to 20"),
        ("00000000000000000003", "'00000000000000000003' is not a number of attempts from 1 to 20"),
    ],
    "overlap": [
        ("wait", "'wait' is not 'skip' or 'queue'"),
        (False, "False is not 'skip' or 'queue'"),
    ],
    "catch_up": [
        ("all", "'all' is not 'latest' or 'none'"),
        (True, "True is not 'latest' or 'none'"),
    ],
    "cwd": [
        ("", "'' is not a folder path"),
        (3, "3 is not a folder path"),
    ],
    "env": [
        (["A=1"], "['A=1'] is not a table of variable = text"),
        ({"PORT": 8080}, '.PORT: 8080 is not a text (write "8080")'),
        ({"ON": True}, ".ON: True is not a text"),
        ({"A=B": "x"}, '."A=B": not an environment variable name'),
        (
            {"MISSING": "${NBREMIND_TEST_NOT_SET}"},
            ".MISSING: ${NBREMIND_TEST_NOT_SET} refers to NBREMIND_TEST_NOT_SET, which is not set",
        ),
    ],
}


@pytest.mark.parametrize("key", sorted(GOOD))
def test_good_values_of_each_key(project: Path, key: str) -> None:
    for value, held in GOOD[key]:
        work = "" if key == "every" else 'every = "1h"\n'
        loaded = one_job(project, f'command = "true"\n{work}{key} = {toml_value(value)}\n')
        assert loaded.errors == (), (key, value)
        job = loaded.jobs["nightly"]
        got = (
            job.schedule.every
            if key == "every"
            else (job.schedule.timezone if key == "timezone" else getattr(job, key))
        )
        assert got == held, (key, value)


@pytest.mark.parametrize("key", sorted(BAD))
def test_bad_values_of_each_key(project: Path, key: str) -> None:
    for value, why in BAD[key]:
        work = "" if key == "every" else 'every = "1h"\n'
        errors = job_errors(project, f'command = "true"\n{work}{key} = {toml_value(value)}\n')
        sep = "" if why.startswith(".") else ": "
        assert errors == [f"jobs.nightly.{key}{sep}{why}"], (key, value)


def test_bad_values_of_the_work_keys(project: Path) -> None:
    cases = {
        'command = ""': "jobs.nightly.command: an empty command",
        "command = []": "jobs.nightly.command: an empty command",
        'command = ["", "x"]': "jobs.nightly.command: an empty command",
        'command = ["a", 1]': "jobs.nightly.command: ['a', 1] is not a command: a list of "
        "texts such as ['python', 'etl.py'], or a text for the shell",
        'command = "echo ${NBREMIND_TEST_NOT_SET}"': "jobs.nightly.command: "
        "${NBREMIND_TEST_NOT_SET} refers to NBREMIND_TEST_NOT_SET, which is not set",
        'command = ["echo", "${NBREMIND_TEST_NOT_SET}"]': "jobs.nightly.command[1]: "
        "${NBREMIND_TEST_NOT_SET} refers to NBREMIND_TEST_NOT_SET, which is not set",
        'notebook = ""': "jobs.nightly.notebook: '' is not a notebook path",
        "notebook = 1": "jobs.nightly.notebook: 1 is not a notebook path",
        'python = "mod.func"': "jobs.nightly.python: 'mod.func' is not a function such as "
        "'package.module:function'",
        'python = "mod:func()"': "jobs.nightly.python: 'mod:func()' is not a function such "
        "as 'package.module:function'",
        'python = "1mod:f"': "jobs.nightly.python: '1mod:f' is not a function such as "
        "'package.module:function'",
        'python = "a:b.c"': "jobs.nightly.python: 'a:b.c' is not a function such as "
        "'package.module:function'",
        'notebook = "a.ipynb"\nparameters = [1]': "jobs.nightly.parameters: [1] is not a "
        "table of parameters",
        'notebook = "a.ipynb"\noutput = "runs/{nme}.ipynb"': "jobs.nightly.output: "
        "'runs/{nme}.ipynb' is not a file name template of {name} and {start} ({nme} is "
        "neither {name} nor {start})",
        'notebook = "a.ipynb"\noutput = "runs/{}.ipynb"': "jobs.nightly.output: "
        "'runs/{}.ipynb' is not a file name template of {name} and {start} (a {} field "
        "needs a name: {name} or {start})",
        'notebook = "a.ipynb"\noutput = "runs/{name:d}.ipynb"': "jobs.nightly.output: "
        "'runs/{name:d}.ipynb' is not a file name template of {name} and {start} (Unknown "
        "format code 'd' for object of type 'str')",
        'notebook = "a.ipynb"\noutput = "runs/{start.nope}"': "jobs.nightly.output: "
        "'runs/{start.nope}' is not a file name template of {name} and {start} "
        "('datetime.datetime' object has no attribute 'nope')",
        'notebook = "a.ipynb"\noutput = "{"': "jobs.nightly.output: '{' is not a file name "
        "template of {name} and {start} (Single '{' encountered in format string)",
        'notebook = "a.ipynb"\noutput = ""': "jobs.nightly.output: '' is not a file name template",
        'command = "true"\nparameters = { a = 1 }': "jobs.nightly.parameters: only a notebook "
        "job takes parameters",
        'python = "a:b"\noutput = "x.ipynb"': "jobs.nightly.output: only a notebook job "
        "takes output",
        'command = "a\\u0000b"': "jobs.nightly.command: 'a\\x00b' has a NUL character",
        'command = ["a", "\\u0000"]': "jobs.nightly.command[1]: '\\x00' has a NUL character",
        'notebook = "\\u0000"': "jobs.nightly.notebook: '\\x00' has a NUL character",
        'command = "x"\ncwd = "a\\u0000"': "jobs.nightly.cwd: 'a\\x00' has a NUL character",
        'notebook = "a.ipynb"\noutput = "{name:>100000000}"': "jobs.nightly.output: "
        "'{name:>100000000}' is not a file name template of {name} and {start} "
        "({name:>100000000} is too wide)",
    }
    for body, error in cases.items():
        assert job_errors(project, body + '\nevery = "1h"\n') == [error], body


def test_each_task_option_good_and_bad(project: Path) -> None:
    # every task option nbremind run takes but timeout, and none other
    assert [spec.name for spec in TASK_OPTION_KEYS.values()] == [
        spec.name for spec in COMMAND_OPTIONS if spec.name != "timeout"
    ]
    good: dict[str, list[Any]] = {
        "after": ["10m", 90, 0.5, "1h30m", 1e12],
        "notify_every": ["30m", 600],
        "mem": ["8GB", "512MiB", 1000, 1e20],
        "mem_limit": ["90%", "30GB", "0.5%", 4096],
        "gpu_mem": ["10GiB", "75%"],
        "stall": ["5m", 3600.5],
        "slower": [True, 1.5, "2x", "150%", 1e16],
        "on": ["failure", ["failure", "timeout"], [], "none", "success, stall"],
        "channels": ["memory", ["memory", "null"], []],
        "min_duration": ["1m", 0.1, "100ms"],
    }
    bad: dict[str, list[tuple[Any, str]]] = {
        "after": [
            ("soon", "'soon' is not a duration such as 90, 90s, 10m, 1h30m or 2d"),
            (0.01, "0.01 is shorter than 0.1 s, the shortest it may be"),
        ],
        "notify_every": [(False, "False is not a duration such as 90, 90s, 10m, 1h30m or 2d")],
        "mem": [("lots", "'lots' is not a size such as 512MB, 8GB or 8GiB")],
        "mem_limit": [("120%", "'120%' is not a percent above 0% and at most 100%")],
        "gpu_mem": [("x%", "'x%' is not a size such as 30GB or a percent such as 90%")],
        "stall": [([1], "[1] is not a duration such as 90, 90s, 10m, 1h30m or 2d")],
        "slower": [(1, "1 is not a factor above 1 such as 1.5 (or 150%)")],
        "on": [
            (
                "finish",
                f"'finish' is not an event; choose from {', '.join(EVENTS)} or none",
            )
        ],
        "channels": [
            (5, "5 is not a comma-separated string or a list of names"),
            (["a,b"], "['a,b']: a channel name with a comma cannot be passed"),
        ],
        "min_duration": [("-1s", "'-1s' is not a duration such as 90, 90s, 10m, 1h30m or 2d")],
    }
    assert set(good) == set(bad) == set(TASK_OPTION_KEYS)
    parser = argparse.ArgumentParser()
    add_flags(parser, COMMAND_OPTIONS)
    for key, values in good.items():
        spec = TASK_OPTION_KEYS[key]
        for value in values:
            loaded = one_job(
                project, f'command = "true"\nevery = "1h"\n{key} = {toml_value(value)}\n'
            )
            assert loaded.errors == (), (key, value)
            flags = loaded.jobs["nightly"].flags
            assert flags[0] == spec.flag and len(flags) == 2, flags
            # the text given to the flag reads back to the value the file's reads to
            ns = parser.parse_args(list(flags))
            assert spec.read(getattr(ns, spec.name), "x") == spec.read(value, "x"), (key, value)
        for value, why in bad[key]:
            written = key.replace("_", "-") if key == "mem_limit" else key
            errors = job_errors(
                project, f'command = "true"\nevery = "1h"\n{written} = {toml_value(value)}\n'
            )
            assert errors == [f"jobs.nightly.{written}: {why}"], (key, value)
    for key in ("on", "channels"):
        assert job_errors(project, f'command = "true"\nevery = "1h"\n{key} = {{ a = 1 }}\n') == [
            f"jobs.nightly.{key}: {{'a': 1}} is not a comma-separated string or a list of names"
        ]
    # slower = false: no flag at all
    assert (
        one_job(project, 'command = "true"\nevery = "1h"\nslower = false\n').jobs["nightly"].flags
        == ()
    )


def test_keys_written_with_dashes_and_twice(project: Path) -> None:
    job = one_job(
        project, 'command = "true"\nevery = "1h"\ncatch-up = "none"\nmin-duration = "1m"\n'
    ).jobs["nightly"]
    assert job.catch_up == "none" and job.flags == ("--min", "1m")
    assert job_errors(
        project, 'command = "true"\nevery = "1h"\ncatch_up = "none"\ncatch-up = "latest"\n'
    ) == ["jobs.nightly.catch-up: given twice (also as catch_up)"]


def test_names_of_jobs_and_expectations(project: Path) -> None:
    good = ["a", "nightly-etl", "v1.2_backup", "A" * 64, "0"]
    bad = ["", "with space", "a/b", "é", "A" * 65, "a:b", "x\ny"]
    body = "".join(
        f'[jobs.{json.dumps(n)}]\ncommand = "true"\nevery = "1h"\n'
        f'[expect.{json.dumps(n)}]\nevery = "1h"\n'
        for n in good + bad
    )
    local_file(project, body)
    loaded = load_jobs(project)
    assert sorted(loaded.jobs) == sorted(loaded.expectations) == sorted(good)
    label = project / "nbremind.toml"
    expected = [
        f"{label}: {kind}.{json.dumps(n, ensure_ascii=False)}: not {what} name (1 to 64 "
        "letters, digits, '.', '_' or '-')"
        for n in bad
        for kind, what in (("jobs", "a job"), ("expect", "an expectation"))
    ]
    assert sorted(loaded.errors) == sorted(expected)


def test_tables_that_are_not_tables(project: Path) -> None:
    label = project / "nbremind.toml"
    local_file(project, "jobs = 3\nexpect = []\n")
    loaded = load_jobs(project)
    assert (loaded.jobs, loaded.expectations) == ({}, {})
    assert loaded.errors == (
        f"{label}: jobs: 3 is not a table of jobs such as [jobs.nightly]",
        f"{label}: expect: [] is not a table such as [expect.nightly]",
    )
    local_file(project, '[jobs]\nnightly = "true"\n[expect]\netl = 1\n')
    assert load_jobs(project).errors == (
        f"{label}: jobs.nightly: 'true' is not a table of job keys",
        f"{label}: expect.etl: 1 is not a table of expectation keys",
    )
    # and the settings are not troubled by either
    assert load_settings(project).errors == ()


# -- expectations --------------------------------------------------------------------------------
def test_expectations_every_key_and_the_defaults(project: Path) -> None:
    path = local_file(
        project,
        """
        [expect.nightly-backup]
        cron = "0 1 * * *"
        timezone = "America/New_York"
        grace = "30m"
        max-duration = "3h"

        [expect.sync]
        every = "10m"

        [expect.exact]
        cron = "@hourly"
        grace = 0
        """,
    )
    loaded = load_jobs(project)
    assert loaded.errors == () and loaded.jobs == {}
    assert loaded.expectations == {
        "nightly-backup": Expectation(
            "nightly-backup",
            Schedule("0 1 * * *", None, "America/New_York"),
            1800.0,
            10800.0,
            str(path),
        ),
        "sync": Expectation("sync", Schedule(None, 600.0, None), DEFAULT_GRACE, None, str(path)),
        "exact": Expectation("exact", Schedule("0 * * * *", None, None), 0.0, None, str(path)),
    }
    assert DEFAULT_GRACE == 3600.0


def test_bad_expectations(project: Path) -> None:
    label = project / "nbremind.toml"
    cases = {
        'cron = "0 1 * * *"\ncommand = "true"': "expect.x.command: not an expectation key; "
        "known keys: cron, every, grace, max_duration, timezone",
        'every = "1h"\ngrace = "-5m"': "expect.x.grace: '-5m' is not a duration such as 90, "
        "90s, 10m, 1h30m or 2d",
        'every = "1h"\nmax_duration = 0': "expect.x.max_duration: 0 is not a positive, finite "
        "duration",
        'grace = "1h"': "expect.x: give exactly one of cron or every",
        'cron = "0 0 31 2 *"': "expect.x.cron: '0 0 31 2 *' is not a cron schedule "
        "(day-of-month 31 is in none of its months)",
        'every = "1h"\ntimezone = "Nowhere"': "expect.x.timezone: 'Nowhere' is not an IANA "
        "time zone name such as Europe/Berlin or America/New_York",
    }
    for body, error in cases.items():
        local_file(project, f"[expect.x]\n{body}\n")
        loaded = load_jobs(project)
        assert loaded.expectations == {} and loaded.errors == (f"{label}: {error}",), body


def test_parse_functions_raise_every_error_without_an_error_list() -> None:
    table = {
        "a": {"command": "true", "every": "1h"},
        "b": {"command": "true"},
        "c": {"python": "x", "every": "1h"},
    }
    with pytest.raises(ValueError) as caught:
        parse_jobs(table, "here")
    assert str(caught.value).splitlines() == [
        "here: jobs.b: give exactly one of cron or every",
        "here: jobs.c.python: 'x' is not a function such as 'package.module:function'",
    ]
    errors: list[str] = []
    assert list(parse_jobs(table, "here", errors=errors)) == ["a"] and len(errors) == 2
    assert parse_expectations({"e": {"every": 60}}, "here") == {
        "e": Expectation("e", Schedule(None, 60.0, None), DEFAULT_GRACE, None, "here")
    }
    with pytest.raises(ValueError, match=r"^here: expect.e: give exactly one of cron or every$"):
        parse_expectations({"e": {}}, "here")


# -- the files, and their precedence ----------------------------------------------------------
def test_precedence_a_job_is_replaced_whole(project: Path, isolated_settings: Path) -> None:
    user = isolated_settings / "config.toml"
    user.write_text(
        textwrap.dedent(
            """
            panel_keep = 5
            [jobs.nightly]
            command = "user"
            cron = "0 1 * * *"
            retries = 5
            [jobs.mine]
            command = "mine"
            every = "1h"
            [expect.etl]
            every = "1h"
            grace = "5m"
            """
        )
    )
    pyproject = project / "pyproject.toml"
    pyproject.write_text(
        textwrap.dedent(
            """
            [project]
            name = "demo"
            [tool.nbremind]
            panel_keep = 6
            [tool.nbremind.jobs.nightly]
            command = "pyproject"
            cron = "0 2 * * *"
            timeout = "1h"
            [tool.nbremind.jobs.shared]
            command = "pyproject"
            every = "1h"
            [tool.nbremind.expect.etl]
            cron = "0 3 * * *"
            """
        )
    )
    local = local_file(
        project,
        """
        [jobs.shared]
        command = "local"
        every = "2h"
        overlap = "queue"
        """,
    )
    loaded = load_jobs(project / "notebooks")
    assert loaded.errors == ()
    assert loaded.files == (user, pyproject, local)
    assert {name: job.command[-1] for name, job in loaded.jobs.items() if job.command} == {
        "nightly": "pyproject",
        "mine": "mine",
        "shared": "local",
    }
    nightly = loaded.jobs["nightly"]
    # whole: the user file's retries are not merged into the project's job
    assert (nightly.retries, nightly.timeout) == (1, 3600.0)
    assert nightly.source == f"{pyproject} [tool.nbremind]"
    assert loaded.jobs["mine"].source == str(user)
    assert loaded.jobs["shared"].source == str(local) and loaded.jobs["shared"].overlap == "queue"
    assert loaded.jobs["shared"].schedule.every == 7200.0
    etl = loaded.expectations["etl"]
    assert (etl.schedule.cron, etl.grace) == ("0 3 * * *", DEFAULT_GRACE)
    assert etl.source == f"{pyproject} [tool.nbremind]"
    # the settings of the same files still load, without an error for the tables
    settings = load_settings(project / "notebooks")
    assert settings.errors == () and settings.config.panel_keep == 6
    assert settings.unusable == () and pyproject not in settings.empty
    # the raw tables, in the order of precedence
    raw = raw_tables(project / "notebooks")
    assert [(t.label, t.path, sorted(t.tables)) for t in raw.tables] == [
        (str(user), user, ["expect", "jobs"]),
        (f"{pyproject} [tool.nbremind]", pyproject, ["expect", "jobs"]),
        (str(local), local, ["jobs"]),
    ]
    assert raw.files == loaded.files and raw.errors == ()
    assert local in loaded.watch and user in loaded.watch


def test_a_bad_job_in_a_higher_file_hides_the_lower_one(
    project: Path, isolated_settings: Path
) -> None:
    (isolated_settings / "config.toml").write_text(
        '[jobs.nightly]\ncommand = "user"\nevery = "1h"\n'
    )
    local_file(project, '[jobs.nightly]\ncommand = "local"\nevery = "1h"\nretries = 0\n')
    loaded = load_jobs(project)
    assert loaded.jobs == {}
    assert loaded.errors == (
        f"{project / 'nbremind.toml'}: jobs.nightly.retries: 0 is not a number of attempts "
        "from 1 to 20",
    )


def test_a_file_that_cannot_be_read_is_an_error_and_the_others_load(
    project: Path, isolated_settings: Path
) -> None:
    (isolated_settings / "config.toml").write_text('[jobs.mine]\ncommand = "user"\nevery = "1h"\n')
    local = local_file(project, "[jobs.nightly\n")
    loaded = load_jobs(project)
    assert list(loaded.jobs) == ["mine"]
    [error] = loaded.errors
    assert error.startswith(f"{local}: not valid TOML: ")
    assert loaded.files[-1] == local
    assert load_settings(project).errors == (error,)  # the same words as the settings say


def test_jobs_and_expect_are_not_settings(project: Path) -> None:
    local_file(
        project,
        """
        min_duration = "30s"
        [jobs.nightly]
        command = "true"
        cron = "61 * * * *"
        [expect.etl]
        colour = "red"
        """,
    )
    settings = load_settings(project)
    assert settings.errors == () and settings.config.min_duration == 30.0
    assert "jobs" not in settings.sources and "expect" not in settings.sources
    assert set(settings.sources) >= {"min_duration"}
    # the file's mistakes are the jobs' to report
    label = project / "nbremind.toml"
    assert load_jobs(project).errors == (
        f"{label}: jobs.nightly.cron: '61 * * * *' is not a cron schedule (minute 61 is out "
        "of range)",
        f"{label}: expect.etl.colour: not an expectation key; known keys: cron, every, grace, "
        "max_duration, timezone",
        f"{label}: expect.etl: give exactly one of cron or every",
    )


def test_no_files_no_jobs(tmp_path: Path) -> None:
    loaded = load_jobs(tmp_path)
    assert (loaded.jobs, loaded.expectations, loaded.errors, loaded.files) == ({}, {}, (), ())


def test_a_relative_cwd_is_the_files_folder(project: Path, isolated_settings: Path) -> None:
    (isolated_settings / "config.toml").write_text(
        '[jobs.mine]\ncommand = "x"\nevery = "1h"\ncwd = "work"\n'
    )
    job = load_jobs(project).jobs["mine"]
    assert job.cwd == str(isolated_settings / "work")


# -- never raises: garbage in every key ---------------------------------------------------------
ODD_VALUES: list[Any] = [
    "",
    " ",
    "x",
    "${NBREMIND_TEST_NOT_SET}",
    "${",
    0,
    -1,
    10**30,
    1e308,
    -0.0,
    True,
    False,
    [],
    [1, "a"],
    [[]],
    {},
    {"a": {"b": []}},
    "\u0000",
    "é" * 200,
]


def test_odd_values_in_every_key_are_reported_never_raised(project: Path) -> None:
    label = project / "nbremind.toml"
    for key in JOB_KEYS:
        for value in ODD_VALUES:
            base = {"command": "true", "every": "1h"}
            if key in ("parameters", "output"):
                base = {"notebook": "n.ipynb", "every": "1h"}
            if key in ("command", "notebook", "python"):
                base = {"every": "1h"}
            if key in ("cron", "every"):
                base = {"command": "true"}
            body = "".join(f"{k} = {toml_value(v)}\n" for k, v in {**base, key: value}.items())
            loaded = one_job(project, body)
            if "nightly" in loaded.jobs:
                assert loaded.errors == (), (key, value)
                continue
            assert loaded.errors, (key, value)
            for error in loaded.errors:
                assert error.startswith(f"{label}: jobs.nightly"), (key, value, error)
                assert "Traceback" not in error
    for key in ("cron", "every", "timezone", "grace", "max_duration"):
        for value in ODD_VALUES:
            base = {"cron": "0 1 * * *"} if key != "cron" else {}
            if key == "every":
                base = {}
            body = "".join(f"{k} = {toml_value(v)}\n" for k, v in {**base, key: value}.items())
            local_file(project, "[expect.etl]\n" + body)
            loaded = load_jobs(project)
            assert bool(loaded.expectations) != bool(loaded.errors), (key, value)


def test_every_duration_written_back_reads_back_the_same() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser, COMMAND_OPTIONS)
    values = [
        0.1,
        0.25,
        0.999,
        1,
        59.5,
        60,
        61,
        3599,
        3600,
        86399.75,
        86400 * 400,
        1e15,
        1e20,
        123456.789,
        7.3e-1,
    ]
    for key in ("after", "notify_every", "stall", "min_duration"):
        spec = TASK_OPTION_KEYS[key]
        for seconds in values:
            [job] = parse_jobs({"j": {"command": "x", "every": 60, key: seconds}}, "f").values()
            ns = parser.parse_args(list(job.flags))
            assert spec.read(getattr(ns, spec.name), "x") == float(seconds), (key, seconds)
    for factor in (1.01, 1.5, 2, 1e16, 1e300, 1.0000001):
        [job] = parse_jobs({"j": {"command": "x", "every": 60, "slower": factor}}, "f").values()
        assert float(job.flags[1]) == float(factor) and "e" not in job.flags[1]


# -- the value types -------------------------------------------------------------------------
def test_the_value_types_check_themselves() -> None:
    every = Schedule(None, 60.0, None)
    with pytest.raises(ValueError, match="exactly one of cron or every"):
        Schedule("0 1 * * *", 60.0, None)
    with pytest.raises(ValueError, match="exactly one of cron or every"):
        Schedule(None, None, None)
    with pytest.raises(ValueError, match="5 fields"):
        Schedule("0 1 * * * *", None, None)
    with pytest.raises(ValueError, match="from 1 to 31622400"):
        Schedule(None, 0.5, None)
    assert every.describe() == "every 1m"
    assert Schedule("0 2 * * *", None, "UTC").describe() == "cron 0 2 * * * (UTC)"
    job = Job("j", ("true",), None, None, {}, None, every)
    assert (job.retries, job.overlap, job.catch_up, job.flags, job.source) == (
        1,
        "skip",
        "latest",
        (),
        "",
    )
    assert job == Job("j", command=("true",), schedule=every) and job != job.replace(retries=2)
    for bad in (
        {"command": None},
        {"notebook": "n.ipynb"},
        {"retries": 0},
        {"retries": 21},
        {"retries": True},
        {"overlap": "wait"},
        {"catch_up": "all"},
        {"name": "a b"},
        {"output": "x.ipynb"},
        {"python": "nope"},
        {"timeout": 0.0},
        {"command": ()},
    ):
        with pytest.raises(ValueError):
            job.replace(**bad)
    with pytest.raises(ValueError, match="is not a Schedule"):
        Job("j", ("true",))
    notebook = Job("n", notebook="n.ipynb", schedule=every)
    assert notebook.output == DEFAULT_OUTPUT and notebook.kind == "notebook"
    with pytest.raises(AttributeError):
        notebook.retries = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        notebook.env["A"] = "b"  # type: ignore[index]
    expectation = Expectation("e", every)
    assert (expectation.grace, expectation.max_duration) == (DEFAULT_GRACE, None)
    with pytest.raises(ValueError):
        Expectation("e", every, -1.0)
    with pytest.raises(ValueError):
        Expectation("e", every, 1.0, 0.0)


# -- the docs ---------------------------------------------------------------------------------
def _toml_blocks(page: Path) -> list[str]:
    return re.findall(r"^```toml\n(.*?)^```", page.read_text(encoding="utf-8"), re.M | re.S)


def test_the_docs_samples_load_without_an_error(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocks = _toml_blocks(REPO / "docs" / "jobs.md")
    assert len(blocks) >= 2
    for block in blocks:
        for name in re.findall(r"\$\{(\w+)\}", block):
            monkeypatch.setenv(name, f"placeholder-{name.lower()}")
        local_file(project, block)
        loaded = load_jobs(project)
        assert loaded.errors == (), block
        assert loaded.jobs or loaded.expectations
        assert load_settings(project).errors == ()


def test_the_docs_errors_are_the_errors(project: Path) -> None:
    text = (REPO / "docs" / "jobs.md").read_text(encoding="utf-8")
    shown = [
        line.split(": ", 1)[1]
        for line in re.findall(r"^/home/me/project/nbremind\.toml: .*$", text, re.M)
    ]
    bodies = [
        'command = "true"\ncron = "61 * * * *"\n',
        'cron = "0 2 * * *"\n',
        'command = "true"\nevery = "1h"\nretries = 0\n',
        'command = "true"\nevery = "1h"\ncolour = "red"\n',
        'command = "true"\nevery = "1h"\ntimezone = "Mars/Olympus"\n',
    ]
    assert len(shown) == len(bodies)
    for line, body in zip(shown, bodies, strict=True):
        [error] = job_errors(project, body)
        if line.endswith(", ..."):
            assert error.startswith(line[: -len("...")]), (error, line)
        else:
            assert error == line


# -- import weight ----------------------------------------------------------------------------
def test_reading_the_settings_imports_neither_cronsim_nor_the_jobs() -> None:
    code = (
        "import sys, nbremind\n"
        "from nbremind.settings.files import load_settings\n"
        "load_settings()\n"
        "print(sorted(m for m in ('cronsim', 'nbremind.settings.jobs', 'nbremind.core.jobs')"
        " if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_loaded_jobs_is_what_the_files_define(project: Path) -> None:
    local_file(project, '[jobs.a]\ncommand = "x"\nevery = 60\n')
    loaded = load_jobs(project, environ={"NBREMIND_CONFIG_DIR": str(project / "none")})
    assert isinstance(loaded.jobs, Mapping) and list(loaded.jobs) == ["a"]
    assert loaded.files == (project / "pyproject.toml", project / "nbremind.toml")


def test_channels_are_checked_against_the_named_channels_of_the_settings(
    project: Path, isolated_settings: Path
) -> None:
    (isolated_settings / "config.toml").write_text(
        '[channels.team]\nurl = "https://hooks.example.com/team"\n'
    )
    local_file(
        project,
        """
        [jobs.ok]
        command = "x"
        every = "1h"
        channels = ["team", "memory", "https://example.com/hook"]

        [jobs.typo]
        command = "x"
        every = "1h"
        channels = "taem"
        """,
    )
    loaded = load_jobs(project)
    assert list(loaded.jobs) == ["ok"]
    assert loaded.jobs["ok"].flags == (
        "--channels",
        "team,memory,https://example.com/hook",
    )
    [error] = loaded.errors
    assert error.startswith(
        f"{project / 'nbremind.toml'}: jobs.typo.channels: 'taem' is not a channel; choose "
        "from browser, desktop, memory, null, team, a channel defined in channel_defs, or a URL"
    )


def test_cron_lines_are_taken_or_refused_with_a_reason_never_anything_else() -> None:
    import random

    rng = random.Random(14)

    def term(lo: int, hi: int) -> str:
        def number() -> int:  # now and then just out of range
            return rng.randint(lo - 1, hi + 1) if rng.random() < 0.1 else rng.randint(lo, hi)

        a, b, step = number(), number(), rng.randint(0, 9)
        return rng.choice(
            [
                "*",
                "*",
                f"{a}",
                f"{a}-{b}",
                f"*/{step}",
                f"{a}-{b}/{step}",
                f"{a},{b}",
                "L",
                "LW",
                f"{a}L",
                f"{a}#{step}",
                "MON",
                "JAN",
                "?",
            ]
        )

    taken = refused = 0
    zone = zoneinfo.ZoneInfo("Europe/Berlin")
    for _ in range(3000):
        line = " ".join(term(lo, hi) for lo, hi in ((0, 59), (0, 23), (1, 31), (1, 12), (0, 7)))
        try:
            got = check_cron(line, "w", "Europe/Berlin")
        except ValueError as exc:
            refused += 1
            assert str(exc).startswith(f"w: {line!r} is not a cron schedule ("), exc
            assert str(exc).endswith(")")
            continue
        taken += 1
        assert got == " ".join(line.split())
        now = dt.datetime(2026, 10, 25, 1, 0, tzinfo=zone)
        assert next(cronsim.CronSim(got, now)) > now
    assert taken > 50 and refused > 50


def test_a_jobs_on_and_channels_are_read_back_from_its_flags(tmp_path: Path) -> None:
    (tmp_path / "nbremind.toml").write_text(
        '[jobs.a]\ncommand = "x"\nevery = "1h"\non = ["failure", "missed"]\n'
        'channels = ["null", "desktop"]\nafter = "10m"\n'
        '[jobs.b]\ncommand = "x"\nevery = "1h"\non = []\n'
        '[jobs.c]\ncommand = "x"\nevery = "1h"\n',
        encoding="utf-8",
    )
    jobs = load_jobs(tmp_path, environ={}).jobs
    assert job_delivery(jobs["a"]) == (("failure", "missed"), ("null", "desktop"))
    assert job_delivery(jobs["b"]) == ((), None)  # on = []: no event at all
    assert job_delivery(jobs["c"]) == (None, None)
