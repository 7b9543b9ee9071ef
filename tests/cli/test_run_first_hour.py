"""``nbremind run`` as a user runs it: the real command in a subprocess, read back through
``nbremind history --json``: the duration, the name, how the command ended, and a line on
stderr when the notice reached no channel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _servers import Reply, ScriptedHTTPServer

PY = sys.executable
pytestmark = pytest.mark.skipif(os.name != "posix", reason="sh, process groups and signals")


def _nbremind(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PY, "-m", "nbremind", *args], capture_output=True, text=True, timeout=90, cwd=cwd
    )


def _last_run() -> dict[str, Any]:
    out = _nbremind("history", "--json", "--limit", "1")
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)
    return dict(row)


def test_a_failing_command_is_named_after_its_line_timed_from_its_start_and_said_plainly(
    http_server: ScriptedHTTPServer,
) -> None:
    run = _nbremind("run", "--channels", http_server.url(), "--", "sh", "-c", "sleep 1; exit 3")
    assert run.returncode == 3, run.stderr
    assert run.stderr == ""  # delivered: nothing to say
    row = _last_run()
    assert row["name"] == "sh -c 'sleep 1; exit 3'"
    assert row["kind"] == "command" and row["state"] == "failed"
    assert row["duration"] >= 1.0, row["duration"]  # from before the command started
    assert (row["error_type"], row["error_message"]) == ("exit status 3", "")
    [request] = http_server.wait_for(1)
    payload = request.json()
    assert payload["title"] == "✗ sh -c 'sleep 1; exit 3' failed"
    assert payload["body"].splitlines()[0] == "exit status 3"
    assert "CommandFailed" not in request.body.decode()
    table = _nbremind("history", "--limit", "1").stdout.splitlines()
    assert table[1].endswith("exit status 3"), table


def test_a_killed_command_says_which_signal(http_server: ScriptedHTTPServer) -> None:
    run = _nbremind("run", "--channels", http_server.url(), "--", "sh", "-c", "kill -KILL $$")
    assert run.returncode == 128 + 9
    row = _last_run()
    assert (row["name"], row["error_type"]) == ("sh -c 'kill -KILL $$'", "killed by SIGKILL")
    [request] = http_server.wait_for(1)
    assert request.json()["body"].splitlines()[0] == "killed by SIGKILL"


def test_a_script_is_named_by_its_file_and_a_long_line_is_shortened(tmp_path: Path) -> None:
    (tmp_path / "train_model.py").write_text("print('trained')\n")
    run = _nbremind("run", "--channels", "null", "--", PY, "train_model.py", cwd=tmp_path)
    assert (run.returncode, run.stdout) == (0, "trained\n")
    assert _last_run()["name"] == "train_model.py"
    _nbremind("run", "--channels", "null", "--", PY, "-m", "json.tool", "--help")
    assert _last_run()["name"] == "json.tool"
    words = ["echo", *(f"word{i}" for i in range(20))]
    assert _nbremind("run", "--channels", "null", "--", *words).returncode == 0
    name = _last_run()["name"]
    assert name.startswith("echo word0 word1") and name.endswith("…") and len(name) == 40


def test_a_notice_no_channel_took_is_one_line_on_stderr_saying_why(
    http_server: ScriptedHTTPServer,
) -> None:
    http_server.default = Reply(status=404)  # not retried: the outcome is known at once
    run = _nbremind("run", "--channels", http_server.url(), "--", "sh", "-c", "exit 3")
    assert run.returncode == 3
    lines = run.stderr.splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("nbremind run: \"✗ sh -c 'exit 3' failed\""), lines[0]
    assert "not delivered" in lines[0] and "404" in lines[0], lines[0]
    assert http_server.wait_for(1)


def test_no_line_when_no_notice_was_meant_to_be_sent(http_server: ScriptedHTTPServer) -> None:
    http_server.default = Reply(status=404)
    run = _nbremind("run", "--on", "none", "--channels", http_server.url(), "--", "true")
    assert (run.returncode, run.stderr) == (0, "")
    assert http_server.requests == []
