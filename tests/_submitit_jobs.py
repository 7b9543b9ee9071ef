"""What the submitit tests share: submitit's real local executor (its Job API without
Slurm), and how to give a job the shortest time limit it has."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from _require import missing

__all__ = ["SIGNAL_DELAY_S", "TIMEOUT_MIN", "local_executor", "timing_out"]

#: The local executor's shortest real time limit: ``int(60 * timeout_min)`` seconds (3), the
#: time-limit signal ``signal_delay_s`` (1) before it, which submitit's handler turns into
#: "timed-out and not checkpointable" (the job must have started: 2 s leaves it time).
TIMEOUT_MIN = 0.05
SIGNAL_DELAY_S = 1


def local_executor(tmp_path: Path) -> Any:
    """A local executor writing its jobs under ``tmp_path``, a minute's limit per job."""
    try:
        import submitit
    except ImportError:
        missing("submitit is not installed (pip install 'nbremind[submitit]')")
    ex = submitit.LocalExecutor(folder=tmp_path / "jobs")
    ex.update_parameters(timeout_min=1)
    return ex


def timing_out(ex: Any) -> Any:
    """``ex`` with the shortest time limit: its next job is stopped at it."""
    ex.update_parameters(timeout_min=TIMEOUT_MIN, signal_delay_s=SIGNAL_DELAY_S)
    return ex
