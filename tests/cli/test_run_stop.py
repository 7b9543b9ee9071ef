"""``nbremind run`` stopping a command that does not stop when asked: after the SIGTERM it
passes on, the command's whole process group gets SIGKILL once ``KILL_GRACE`` has passed
(below the scheduler's own grace), so nothing of it outlives the run. Real processes, read
back through a fresh process's ``nbremind history --json``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from _deadline import eventually
from _projects import history_json
from nbremind.cli.run import KILL_GRACE
from nbremind.scheduler import service

PY = sys.executable
pytestmark = pytest.mark.skipif(os.name != "posix", reason="sh, process groups and signals")


def _gone(pid: int) -> bool:
    """Whether no process of the group ``pid`` is left (zombies reaped by init included)."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _stop_and_time(script: str, tmp_path: Path) -> tuple[int, float, int]:
    """``nbremind run -- sh -c SCRIPT`` sent SIGTERM once the command and its grandchild
    run: its exit status, the seconds it took to end, and the command's pid (its group's).
    SCRIPT writes the command's and the grandchild's pids to ``PIDS``."""
    pids = tmp_path / "pids"
    assert history_json(None) == []  # (the data file exists before the runner uses it)
    command = ["sh", "-c", script.replace("PIDS", str(pids))]
    runner = subprocess.Popen(
        [PY, "-m", "nbremind", "run", "--name", "x", "--channels", "null", "--", *command]
    )
    group = None
    try:
        found = eventually(lambda: _pids(pids), 30, "the command's and its grandchild's pids")
        group, grandchild = found
        assert os.getpgid(grandchild) == group  # (the grandchild is of the command's group)
        sent = time.monotonic()
        runner.send_signal(signal.SIGTERM)
        code = runner.wait(30)
        took = time.monotonic() - sent
        return code, took, group
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait(30)
        if group is not None and not _gone(group):
            os.killpg(group, signal.SIGKILL)


def _pids(path: Path) -> list[int] | None:
    words = path.read_text().split() if path.exists() else []
    return [int(w) for w in words] if len(words) == 2 else None


def test_the_grace_is_below_the_schedulers() -> None:
    assert KILL_GRACE < service.KILL_GRACE  # (so the scheduler's SIGKILL never orphans one)


def test_a_command_ignoring_sigterm_is_killed_with_its_group_after_the_grace(
    tmp_path: Path,
) -> None:
    # the shell and its grandchild both ignore SIGTERM (an ignored signal stays so across exec)
    script = "trap '' TERM; sleep 60 & echo $$ $! > 'PIDS'; wait"
    code, took, group = _stop_and_time(script, tmp_path)
    assert code == 128 + signal.SIGKILL
    assert KILL_GRACE - 0.5 <= took < KILL_GRACE + 2.5, took
    eventually(lambda: _gone(group), 10, "the command's group gone")
    [row] = history_json(None)
    assert (row["name"], row["state"]) == ("x", "cancelled")
    assert row["error_type"] == "stopped by SIGTERM"


def test_what_is_left_of_the_group_when_the_command_stops_is_killed_after_the_grace(
    tmp_path: Path,
) -> None:
    # the shell stops at once; the grandchild it leaves ignores SIGTERM
    script = "(trap '' TERM; exec sleep 60) & echo $$ $! > 'PIDS'; trap 'exit 0' TERM; wait"
    code, took, group = _stop_and_time(script, tmp_path)
    assert code == 0  # the command's own status: it ended well when asked
    assert KILL_GRACE - 0.5 <= took < KILL_GRACE + 2.5, took
    eventually(lambda: _gone(group), 10, "the command's group gone")
    [row] = history_json(None)
    assert (row["name"], row["state"]) == ("x", "succeeded")
