"""Bad input gets a clear error, never a traceback or a hang.

Each case takes the user's path: ``remind()`` / ``configure()`` calls, ``%remind`` and
``%%remind`` in an IPython shell (and in a real kernel), and the ``nbremind`` command run as
a subprocess.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _deadline import within
from _kernel import Kernel
from nbremind import configure, remind, track
from nbremind.core.options import MIN_TASK_DURATION, OPTIONS, TaskOptions
from nbremind.core.parse import MIN_DURATION, parse_duration, printable
from nbremind.core.task import Task
from nbremind.core.thresholds import Watch, next_mark
from nbremind.runtime.session import Session
from nbremind.settings.files import load_settings
from nbremind.settings.live import follow
from nbremind.testing import FakeClock, capture_notices

PY = sys.executable
#: A raw control character (but the newline ending each printed line).
RAW_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f]")
DURATION_OPTIONS = [spec for spec in OPTIONS if spec.metavar == "DUR"]
HOSTILE = "evil\x1b[31m\nforged row\x00\x07"


def nbremind_cmd(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "nbremind", *args], capture_output=True, text=True, timeout=90, cwd=cwd
    )


# -- durations too small to mean anything -------------------------------------------------------


@pytest.mark.parametrize("spec", DURATION_OPTIONS, ids=lambda s: s.name)
@pytest.mark.parametrize("value", ["0.000000000000000000001s", 1e-21, "50ms", 0.01])
def test_tiny_durations_are_rejected_naming_the_minimum(spec: Any, value: object) -> None:
    kwargs: dict[str, Any] = {spec.name: value}
    for call in (lambda: remind("etl", **kwargs), lambda: track(range(3), **kwargs)):
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert spec.name in message and repr(value) in message
        assert f"{MIN_TASK_DURATION:g} s" in message


def test_the_minimum_itself_and_250ms_are_accepted() -> None:
    options = TaskOptions.parse(every=MIN_TASK_DURATION, after="250ms")
    assert (options.every, options.after) == (MIN_TASK_DURATION, 0.25)


def test_settings_durations_have_an_absolute_minimum() -> None:
    tiny = "0.000000000000000000001s"
    with capture_notices() as cap:
        with pytest.raises(ValueError) as info:
            configure(tick_interval=tiny)
        assert cap.session.config.tick_interval == 0.25
    message = str(info.value)
    assert "tick_interval" in message and repr(tiny) in message
    assert f"{MIN_DURATION:g} s" in message
    assert parse_duration("1ms") == MIN_DURATION


def test_a_repeating_threshold_never_loops_whatever_the_step_or_the_clock() -> None:
    clock = FakeClock()
    task = Task("spin", clock=clock, options=TaskOptions(every=1e-21))  # past every check
    task.mark_started()
    watch = Watch(task)
    clock.advance(10**6)
    fired = within(5, watch.check)
    assert [d.event for d in fired] == ["after"]
    assert within(5, watch.check) == [], "two notices in one tick"
    clock.advance(1)
    assert [d.event for d in within(5, watch.check)] == ["after"]
    clock.advance(float("inf"))  # a clock gone wrong: one notice, then no more
    assert [d.event for d in within(5, watch.check)] == ["after"]
    assert within(5, watch.check) == []


@pytest.mark.parametrize(
    ("mark", "every", "elapsed", "expected"),
    [
        (60, 60, 3600, 3660),
        (600, 300, 900, 1200),
        (600, 300, 1199.5, 1200),
        (5, 0, 9, None),
        (5, -1, 9, None),
        (5, 1, float("nan"), None),
        (5, 1, float("inf"), None),
    ],
)
def test_next_mark_is_the_first_mark_past_now(
    mark: float, every: float, elapsed: float, expected: float | None
) -> None:
    assert within(5, lambda: next_mark(mark, every, elapsed)) == expected


@pytest.mark.parametrize(("every", "elapsed"), [(1e-21, 1e6), (1e-300, 1e300), (0.1, 1e17)])
def test_a_step_below_the_clocks_resolution_gives_the_next_tick(
    every: float, elapsed: float
) -> None:
    following = within(5, lambda: next_mark(every, every, elapsed))
    assert following is not None and elapsed < following <= elapsed * (1 + 1e-12)


# -- channel URLs: checked at the call, named, secrets masked ------------------------------------

BAD_URLS = [
    ("http://user:hunter2@[::1/hook", "user:***@[::1", "not a valid URL"),
    ("http://", "http://", "names nothing"),
    ("https:///hook", "https:///hook", "names no host"),
    ("http://example.org:99999/hook", "example.org:99999", "port 99999"),
    ("smtp://me:hunter2@mail.example.org:0?to=a@example.org", "me:***@mail", "port 0"),
    ("https://example.org/a b", "https://example.org/a b", "space"),
    ("https://example.org/\x1b[31m", "https://example.org/\\x1b[31m", "control character"),
]


@pytest.mark.parametrize(("url", "shown", "problem"), BAD_URLS, ids=[u for u, _, _ in BAD_URLS])
def test_bad_channel_urls_are_named_at_the_call(url: str, shown: str, problem: str) -> None:
    calls: list[tuple[str, Callable[[], object]]] = [
        ("remind(): channels", lambda: remind("etl", channels=["memory", url])),
        ("track(): channels", lambda: track([1], channels=url)),
        ("configure(): channels", lambda: configure(channels=[url])),
        ("configure(): channel_defs: team", lambda: configure(channel_defs={"team": {"url": url}})),
    ]
    for where, call in calls:
        with pytest.raises(ValueError) as info:
            call()
        message = str(info.value)
        assert message.startswith(where), message
        assert shown in message and problem in message, message
        assert "hunter2" not in message
        assert not RAW_CONTROL.search(message)


# -- the magics ---------------------------------------------------------------------------------


@pytest.fixture
def shell() -> Iterator[Any]:
    """An in-process IPython shell with nbremind loaded, notices going to memory."""
    from IPython.core.interactiveshell import InteractiveShell

    from nbremind.ipython import extension

    ip = InteractiveShell.instance()
    with capture_notices():
        extension.load(ip)
        try:
            yield ip
        finally:
            extension.unload(ip)


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('test "unclosed', "'test \"unclosed'"),
        ("history 10**23", "'10**23'"),
        ("history 100000000000000000000000", "'100000000000000000000000'"),
        ("history ²", "'²'"),
        ("auto 0.001s", "'0.001s'"),
    ],
)
def test_line_magic_bad_values_are_usage_errors(shell: Any, line: str, named: str) -> None:
    from IPython.core.error import UsageError

    with pytest.raises(UsageError) as info:
        shell.run_line_magic("remind", line)
    message = str(info.value)
    assert message.startswith("%remind") and named in message, message


@pytest.mark.parametrize(
    ("header", "named"),
    [
        ("--after -5s", "--after: '-5s'"),
        ("--mem -1GB", "--mem: '-1GB'"),
        ("--every 0.000000000000000000001s", "--every: '0.000000000000000000001s'"),
        ("--min -1", "--min: '-1'"),
        ("--channels http://[::1", "--channels: http://[::1"),
        ("--channels http://example.org:99999", "--channels: http://example.org:99999"),
    ],
)
def test_cell_magic_bad_values_are_usage_errors_and_the_body_does_not_run(
    shell: Any, header: str, named: str
) -> None:
    from IPython.core.error import UsageError

    shell.user_ns.pop("body_ran", None)
    result = shell.run_cell(f"%%remind {header}\nbody_ran = True")
    error = result.error_in_exec or result.error_before_exec
    assert isinstance(error, UsageError)
    assert str(error).startswith(f"%%remind {named}"), str(error)
    assert "body_ran" not in shell.user_ns


def test_status_escapes_task_names(shell: Any, capsys: pytest.CaptureFixture[str]) -> None:
    with remind(HOSTILE):
        shell.run_line_magic("remind", "status")
    out = capsys.readouterr().out
    assert printable(HOSTILE) in out
    assert not RAW_CONTROL.search(out), repr(out)
    assert not any(line.startswith("forged row") for line in out.splitlines())


@pytest.mark.kernel
def test_bad_values_in_a_real_kernel_are_usage_errors_without_traceback(
    remind_kernel: Kernel,
) -> None:
    k = remind_kernel
    before = len(k.tasks())
    cell = k.run("%%remind --mem -1GB\nbody_ran = True")
    line = k.run('%remind test "unclosed')
    history = k.run("%remind history 10**23")

    assert (cell.status, cell.ename) == ("error", "UsageError")
    assert "--mem" in cell.evalue and "'-1GB'" in cell.evalue
    assert (line.ename, history.ename) == ("UsageError", "UsageError")
    assert "No closing quotation" in line.evalue and "'10**23'" in history.evalue
    for result in (cell, line, history):
        assert "Traceback" not in result.output, result.describe()
    assert k.ok("'body_ran' in dir()").result == "False"
    assert k.tasks()[before:] == []


# -- the nbremind command -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["history", "--limit", "100000000000000000000000"], "--limit: '100000000000000000000000'"),
        (["history", "--limit", "-5"], "--limit: '-5'"),
        (["run", "--after", "-5s", "--", "true"], "--after: '-5s'"),
        (["run", "--mem", "-1GB", "--", "true"], "--mem: '-1GB'"),
        (
            ["run", "--every", "0.000000000000000000001s", "--", "true"],
            "--every: '0.000000000000000000001s'",
        ),
        (["run", "--channels", "http://[::1", "--", "true"], "--channels: http://[::1"),
        (["run", "--channels", "http://", "--", "true"], "--channels: http://"),
        (
            ["run", "--channels", "memory,http://example.org:99999/hook", "--", "true"],
            "--channels: http://example.org:99999/hook",
        ),
    ],
)
def test_command_bad_values_exit_2_naming_option_and_value(args: list[str], named: str) -> None:
    result = nbremind_cmd(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"nbremind {args[0]}: error: {named}"), line
    assert result.stdout == ""


def test_history_escapes_a_hostile_name(nbremind_data_dir: Path) -> None:
    script = (
        f"from nbremind import remind\nwith remind({HOSTILE!r}, channels=['null']):\n    pass\n"
    )
    subprocess.run([PY, "-c", script], check=True, timeout=90)

    table = nbremind_cmd("history")
    assert table.returncode == 0, table.stderr
    assert not RAW_CONTROL.search(table.stdout), repr(table.stdout)
    lines = table.stdout.splitlines()
    assert len(lines) == 2, lines  # the header and one row: no forged row
    assert printable(HOSTILE) in lines[1]

    [row] = json.loads(nbremind_cmd("history", "--json").stdout)
    assert row["name"] == HOSTILE


def test_outbox_escapes_a_hostile_channel_name(nbremind_data_dir: Path) -> None:
    from nbremind.core.notice import make_notice
    from nbremind.core.task import TaskState
    from nbremind.store.outbox import FILE_NAME, Outbox
    from nbremind.store.process import Owner

    clock = FakeClock(wall=1.7e9)
    task = Task(HOSTILE, clock=clock, kind="block")
    task.mark_started()
    task.mark_ended(TaskState.SUCCEEDED)
    channel = "https://example.org/hook\x1b[2J"
    notice = make_notice(
        "success", task.snapshot(), created=clock.time(), key="end", channels=(channel,)
    )
    ended = Owner(os.getpid(), 1.0, socket.gethostname())  # this pid, another start: ended
    outbox = Outbox(nbremind_data_dir / FILE_NAME, owner=ended)
    assert outbox.record(notice, (channel,))
    outbox.close()

    out = nbremind_cmd("outbox")
    assert out.returncode == 0, out.stderr
    assert "pending: 1" in out.stdout
    assert not RAW_CONTROL.search(out.stdout), repr(out.stdout)


def test_doctor_names_a_junk_settings_file_and_escapes_its_path(tmp_path: Path) -> None:
    project = tmp_path / "evil\x1b[31m"
    project.mkdir()
    junk = project / "nbremind.toml"
    junk.write_bytes(b"\xff\xfe\x00\x9b2J\x80 = junk")

    report = nbremind_cmd("doctor", cwd=project)
    assert "Traceback" not in report.stderr
    assert not RAW_CONTROL.search(report.stdout), repr(report.stdout)
    assert printable(str(junk)) in report.stdout
    assert "not UTF-8" in report.stdout


# -- settings files: named, last good kept -----------------------------------------------------


def test_binary_junk_and_a_symlink_loop_are_reported_naming_the_file(
    tmp_path: Path, isolated_settings: Path
) -> None:
    (isolated_settings / "config.toml").write_text("panel_keep = 9\n")
    junk = tmp_path / "nbremind.toml"
    junk.write_bytes(os.urandom(64) + b"\xff")
    loaded = load_settings(tmp_path)
    [error] = loaded.errors
    assert error.startswith(f"{junk}: not valid TOML: not UTF-8 text"), error
    assert loaded.config.panel_keep == 9  # the user file still applies

    junk.unlink()
    junk.symlink_to(junk.name)  # nbremind.toml -> nbremind.toml
    loaded = load_settings(tmp_path)
    [error] = loaded.errors
    assert error.startswith(f"{junk}: cannot be read: "), error
    assert "symbolic link" in error
    assert loaded.config.panel_keep == 9


def test_a_settings_file_turned_to_junk_keeps_the_last_good_settings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    local = tmp_path / "nbremind.toml"
    local.write_text("panel_keep = 7\n")
    session = Session(tick_interval=None)
    try:
        live = follow(session, tmp_path, watch=False)
        assert live is not None and session.config.panel_keep == 7
        local.write_bytes(b"panel_keep = \xff\xfe 3\n")
        with caplog.at_level(logging.WARNING, logger="nbremind"):
            assert live.load() is False
        assert session.config.panel_keep == 7
        assert any(
            str(local) in r.getMessage() and "not UTF-8" in r.getMessage() for r in caplog.records
        ), caplog.text
    finally:
        session.close()
