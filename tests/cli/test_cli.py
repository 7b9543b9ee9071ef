"""``nbremind run`` and ``nbremind test``: output, exit status, signals, timeout, memory."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nbremind.cli import main
from nbremind.core.task import TaskState
from nbremind.testing import capture_notices

PY = sys.executable
pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and signals")


def _end_notice(cap):  # type: ignore[no-untyped-def]
    return [n for n in cap.notices if n.event in ("success", "failure", "timeout")]


def test_output_passes_through_byte_for_byte_and_success_notifies(
    capfdbinary: pytest.CaptureFixture[bytes],
) -> None:
    payload = "import sys; sys.stdout.buffer.write(b'a\\x00b\\r\\n\\xff'); sys.stderr.write('e')"
    with capture_notices(tick=True) as cap:
        code = main(["run", "--name", "copy", "--", PY, "-c", payload])
        [notice] = _end_notice(cap)
    out, err = capfdbinary.readouterr()
    assert code == 0
    assert out == b"a\x00b\r\n\xff" and err == b"e"
    assert notice.title == "✓ copy finished" and notice.task.kind == "command"


def test_exit_status_is_kept_and_failure_names_it() -> None:
    with capture_notices(tick=True) as cap:
        code = main(["run", "--", PY, "-c", "raise SystemExit(3)"])
        [notice] = _end_notice(cap)
    assert code == 3
    assert notice.title.startswith("✗ ") and notice.task.state is TaskState.FAILED
    assert notice.body.splitlines()[0] == "exit status 3"
    assert "CommandFailed" not in notice.body and notice.task.error is not None
    assert notice.task.error.message == ""


def test_a_command_killed_by_a_signal_exits_128_plus_n() -> None:
    with capture_notices(tick=True) as cap:
        code = main(["run", "--name", "victim", "--", "sh", "-c", "kill -KILL $$"])
        [notice] = _end_notice(cap)
    assert code == 128 + signal.SIGKILL
    assert notice.body.splitlines()[0] == "killed by SIGKILL"


def test_timeout_stops_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([{PY!r}, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    with capture_notices(tick=True) as cap:
        code = main(["run", "--name", "slow", "--timeout", "1", "--", PY, "-c", script])
        [notice] = _end_notice(cap)
    took = time.monotonic() - started
    assert code == 124
    assert notice.task.state is TaskState.TIMED_OUT and notice.title.startswith("⏱ slow")
    assert notice.body.splitlines()[0] == "stopped at its timeout of 1.0 s", notice.body
    assert took < 10, f"stopped after {took:.1f} s"
    grandchild = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the grandchild went with its group
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        pytest.fail("the command's child outlived the timeout")


def test_peak_memory_counts_the_children() -> None:
    script = (
        "import subprocess, sys\n"
        f"subprocess.run([{PY!r}, '-c', "
        '\'import time; x = bytearray(150_000_000); x[::4096] = b"1" * len(x[::4096]); '
        "time.sleep(1.5)'], check=True)\n"
    )
    with capture_notices(tick=True) as cap:
        code = main(["run", "--name", "hungry", "--", PY, "-c", script])
        [notice] = _end_notice(cap)
    assert code == 0
    task = cap.session.tasks()[-1]
    assert task.peak_rss is not None and task.peak_rss >= 150_000_000, task.peak_rss
    assert notice.task.kind == "command"


def test_signals_are_forwarded_to_the_command(tmp_path: Path) -> None:
    # the handler writes with os.write: a print() there could land inside the print of
    # "ready" still returning (the signal comes as soon as the line is read), and raise
    # "reentrant call inside BufferedWriter"
    script = (
        "import os, signal, sys, time\n"
        "def bye(*_):\n"
        "    os.write(1, b'got TERM\\n'); sys.exit(5)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    env = dict(os.environ, NBREMIND_DATA_DIR=str(tmp_path))
    proc = subprocess.Popen(
        [PY, "-m", "nbremind", "run", "--channels", "null", "--", PY, "-c", script],
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"
    proc.send_signal(signal.SIGTERM)
    rest = proc.stdout.read()
    assert proc.wait(20) == 5
    assert rest == "got TERM\n"


def test_errors_are_one_line_and_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--", "no-such-command-here"]) == 127
    assert capsys.readouterr().err == (
        "nbremind run: cannot run 'no-such-command-here': No such file or directory\n"
    )
    assert main(["run", "--after", "banana", "--", "true"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--after" in err and "'banana'" in err
    assert main(["run"]) == 2
    assert "no command given" in capsys.readouterr().err


def test_test_command_reports_each_channel(capsys: pytest.CaptureFixture[str]) -> None:
    with capture_notices():
        assert main(["test", "memory", "null"]) == 0
        assert capsys.readouterr().out.splitlines() == ["memory  delivered", "null    delivered"]


def test_help_describes_run() -> None:
    out = subprocess.run(
        [PY, "-m", "nbremind", "run", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--timeout DUR" in out and "exit status" in out


def test_a_command_line_builds_only_its_subcommand_and_help_lists_them_all() -> None:
    from nbremind.cli import COMMANDS, _parser

    def names(parser: object) -> list[str]:
        sub = next(a for a in parser._actions if a.dest == "command")  # type: ignore[attr-defined]
        return list(sub.choices)

    assert names(_parser()) == list(COMMANDS)
    assert names(_parser("run")) == ["run"]
    assert names(_parser("outbox")) == ["history", "outbox"]
    out = subprocess.run(
        [PY, "-m", "nbremind", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert all(name in out for name in COMMANDS)
    bad = subprocess.run([PY, "-m", "nbremind", "nope"], capture_output=True, text=True)
    assert bad.returncode == 2 and "invalid choice: 'nope'" in bad.stderr
