"""A project folder as a user has one, and the ``nbremind`` command run in it as a user runs
it: its own data and user-settings folders beside it (never the caller's)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = ["env_for", "history_json", "lines", "nbremind_in", "scheduling"]


def env_for(folder: Path) -> dict[str, str]:
    """The environment of a process run in ``folder``: nbremind's data and user settings in
    folders beside it."""
    return {
        **os.environ,
        "NBREMIND_DATA_DIR": str(folder.parent / "data"),
        "NBREMIND_CONFIG_DIR": str(folder.parent / "config"),
    }


def nbremind_in(folder: Path | None, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m nbremind ARGS`` in ``folder`` (``None``: here, with this environment)."""
    return subprocess.run(
        [sys.executable, "-m", "nbremind", *args],
        cwd=folder,
        env=None if folder is None else env_for(folder),
        capture_output=True,
        text=True,
        timeout=90,
    )


def history_json(folder: Path | None, *args: str) -> list[dict[str, Any]]:
    """The rows of ``nbremind history --json ARGS``, read by a fresh process."""
    out = nbremind_in(folder, "history", "--json", *args)
    assert out.returncode == 0, out.stderr
    return list(json.loads(out.stdout))


def lines(path: Path) -> list[str]:
    """The lines of a file a job appends to (none while it does not exist)."""
    return path.read_text().splitlines() if path.exists() else []


@contextmanager
def scheduling(folder: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``nbremind schedule ARGS`` running in ``folder`` (its stderr a pipe); killed at the
    end if the test did not stop it."""
    process = subprocess.Popen(
        [sys.executable, "-m", "nbremind", "schedule", *args],
        cwd=folder,
        env=env_for(folder),
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
