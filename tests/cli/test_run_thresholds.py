"""``nbremind run`` with the thresholds that know the work: ``--mem-limit`` ends the
command's process group as the OOM killer would (exit status 137), ``--stall`` needs a GPU
that answers (a command reports no progress), ``--slower`` and ``--gpu-mem`` are taken."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _processes import gone
from _servers import ScriptedHTTPServer
from nbremind.cli import main
from nbremind.core.notice import Notice, format_size
from nbremind.core.task import TaskState
from nbremind.core.thresholds import GpuReading
from nbremind.runtime.gpu import GpuSampler
from nbremind.runtime.memory_limit import MemoryScope, find_scope
from nbremind.testing import CapturedNotices, capture_notices

PY = sys.executable
pytestmark = pytest.mark.skipif(os.name != "posix", reason="process groups and signals")

#: A child that allocates 10 MB chunks, 0.02 s apart, up to 1 GB: a guard that does not act
#: ends in exit status 0 after a few seconds, not in a runaway.
ALLOC = (
    "import time\n"
    "chunks = []\n"
    "for _ in range(100):\n"
    "    chunks.append(b'\\1' * 10_000_000)\n"
    "    time.sleep(0.02)\n"
)
#: Seconds within which a command past its limit must have been stopped.
DEADLINE = 30.0


def _nbremind(*args: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run([PY, "-m", "nbremind", *args], capture_output=True, text=True, timeout=90)
    return done, time.monotonic() - started


def _guarded(
    name: str, limit: int, *command: str, channels: str = "null"
) -> tuple[subprocess.CompletedProcess[str], float]:
    """``nbremind run --mem-limit LIMIT -- COMMAND`` (and the seconds it took)."""
    options = ("--name", name, "--channels", channels, "--mem-limit", str(limit))
    return _nbremind("run", *options, "--", *command)


def _last_run() -> dict[str, Any]:
    out = subprocess.run(
        [PY, "-m", "nbremind", "history", "--json", "--limit", "1"],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert out.returncode == 0, out.stderr
    [row] = json.loads(out.stdout)
    return dict(row)


def _limit(extra: int = 300_000_000) -> int:
    """A limit ``extra`` bytes above what the guard judges before the command starts: in a
    memory-limited cgroup its working set (this test's process and all), else nothing (a
    command's process tree starts near empty)."""
    scope = find_scope()
    return extra + ((scope.working_set() or 0) if scope.cgroup else 0)


def _stopped_title(name: str, size: str) -> re.Pattern[str]:
    """The end notice's title of ``name`` stopped at a limit of ``size``."""
    return re.compile(rf"■ {re.escape(name)} stopped at [\d.]+ [kMGT]?B of {size}: memory limit")


def _wait_gone(pid: int, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _end_notice(cap: CapturedNotices) -> Notice:
    [notice] = [n for n in cap.notices if n.event in ("success", "failure", "timeout")]
    return notice


# -- --mem-limit -----------------------------------------------------------------------------
def test_a_command_past_its_memory_limit_is_killed_and_fails_with_the_reason(
    http_server: ScriptedHTTPServer,
) -> None:
    limit = _limit()
    run, took = _guarded("hog", limit, PY, "-c", ALLOC, channels=http_server.url())
    assert run.returncode == 137, run.stderr
    assert took < DEADLINE, f"stopped after {took:.1f} s"
    size = format_size(limit)
    assert re.fullmatch(
        rf"nbremind run: stopped: memory limit \([\d.]+ [kMGT]?B of {size}\)\n", run.stderr
    ), run.stderr
    row = _last_run()
    assert (row["name"], row["kind"], row["state"]) == ("hog", "command", "failed")
    assert row["error_type"] == "TaskMemoryLimit"
    assert row["error_message"].endswith(f" of {size}: memory limit"), row["error_message"]
    [request] = http_server.wait_for(1)
    title = request.json()["title"]
    assert _stopped_title("hog", size).fullmatch(title), title
    assert title == f"■ hog {row['error_message']}"


def test_the_whole_tree_counts_and_the_grandchild_goes_with_the_group(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    grandchild = f"import os\nopen({str(pids)!r}, 'a').write(f'{{os.getpid()}}\\n')\n{ALLOC}"
    child = (
        "import os, subprocess, sys\n"
        f"open({str(pids)!r}, 'a').write(f'{{os.getpid()}}\\n')\n"
        f"raise SystemExit(subprocess.call([sys.executable, '-c', {grandchild!r}]))\n"
    )  # the child itself stays small: only the tree can pass the limit
    limit = _limit()
    run, took = _guarded("tree", limit, PY, "-c", child)
    assert run.returncode == 137, run.stderr
    assert took < DEADLINE, f"stopped after {took:.1f} s"
    assert run.stderr.startswith("nbremind run: stopped: memory limit ("), run.stderr
    row = _last_run()
    assert (row["state"], row["error_type"]) == ("failed", "TaskMemoryLimit")
    if not find_scope().cgroup:  # (in one, the limit is judged by the cgroup's usage)
        assert row["peak_rss"] >= limit, row["peak_rss"]
    child_pid, grandchild_pid = (int(line) for line in pids.read_text().split())
    assert gone(child_pid)
    assert _wait_gone(grandchild_pid), "the grandchild outlived its group's stop"


def test_a_limit_from_the_settings_stops_the_command_the_same_way(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    limit = _limit()
    monkeypatch.setenv("NBREMIND_MEM_LIMIT", str(limit))
    run, took = _nbremind("run", "--name", "hog", "--channels", "null", "--", PY, "-c", ALLOC)
    assert run.returncode == 137, run.stderr
    assert took < DEADLINE, f"stopped after {took:.1f} s"
    assert run.stderr.startswith("nbremind run: stopped: memory limit ("), run.stderr
    row = _last_run()
    assert (row["state"], row["error_type"]) == ("failed", "TaskMemoryLimit")
    if not find_scope().cgroup:  # the command's tree is judged, read each tick: little overshoot
        assert row["peak_rss"] < limit + 200_000_000, row["peak_rss"]


def test_a_command_under_its_limit_runs_to_its_end() -> None:
    script = "import time\nx = b'\\1' * 100_000_000\ntime.sleep(1)\n"  # sampled a few ticks
    run, _ = _guarded("modest", _limit(), PY, "-c", script)
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""
    row = _last_run()
    assert (row["state"], row["error_type"]) == ("succeeded", None)
    assert row["peak_rss"] >= 100_000_000, row["peak_rss"]  # it was measured, and let be


def test_a_percent_limit_is_of_the_limit_that_applies(capsys: pytest.CaptureFixture[str]) -> None:
    with capture_notices(tick=True) as cap:
        cap.session.readings.scope = MemoryScope("RAM", 600_000_000, "RAM")  # 50%: 300 MB
        code = main(["run", "--name", "half", "--mem-limit", "50%", "--", PY, "-c", ALLOC])
        notice = _end_notice(cap)
    assert code == 137
    err = capsys.readouterr().err
    assert re.fullmatch(r"nbremind run: stopped: memory limit \([\d.]+ MB of 300 MB\)\n", err), err
    assert _stopped_title("half", "300 MB").fullmatch(notice.title), notice.title
    assert notice.task.state is TaskState.FAILED
    assert notice.task.error is not None and notice.task.error.type == "TaskMemoryLimit"


def test_a_percent_limit_is_taken_on_the_command_line() -> None:
    run, _ = _nbremind("run", "--channels", "null", "--mem-limit", "50%", "--", "true")
    assert (run.returncode, run.stderr) == (0, "")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("0", "is not a size such as 30GB or a percent such as 90%"),
        ("150%", "is not a percent above 0% and at most 100%"),
        ("lots", "is not a size such as 30GB or a percent such as 90%"),
    ],
)
def test_a_bad_limit_is_an_error_naming_the_flag_and_the_value(
    value: str, why: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    code = main(["run", "--mem-limit", value, "--", "touch", str(marker)])
    assert code == 2
    assert capsys.readouterr().err == f"nbremind run: error: --mem-limit: {value!r} {why}\n"
    assert not marker.exists()


# -- --stall ---------------------------------------------------------------------------------
def test_stall_without_a_gpu_is_an_error_before_the_command_starts(tmp_path: Path) -> None:
    sampler = GpuSampler()
    if sampler.reading(time.monotonic()) is not None:
        pytest.skip("a GPU answers here: --stall is taken")
    why = sampler.why_not()
    marker = tmp_path / "ran"
    run, _ = _nbremind("run", "--channels", "null", "--stall", "10s", "--", "touch", str(marker))
    assert run.returncode == 2
    assert run.stderr == (
        "nbremind run: error: --stall needs progress: a command reports none, and no GPU "
        f"answers here ({why})\n"
    )
    assert not marker.exists()


def test_a_stall_from_the_settings_runs_a_command_without_a_gpu_and_says_nothing(
    monkeypatch: pytest.MonkeyPatch, http_server: ScriptedHTTPServer
) -> None:
    if GpuSampler().reading(time.monotonic()) is not None:
        pytest.skip("a GPU answers here: the stall watches it")
    monkeypatch.setenv("NBREMIND_STALL", "0.5s")
    command = (PY, "-c", "import time; time.sleep(1.2)")  # (past the stall time)
    run, _ = _nbremind("run", "--name", "quiet", "--channels", http_server.url(), "--", *command)
    assert (run.returncode, run.stderr) == (0, "")
    [request] = http_server.wait_for(1)
    notice = request.json()
    assert notice["title"].startswith("✓ quiet finished"), notice
    assert "stall" not in json.dumps(notice), notice  # nothing to watch: left alone, unsaid


class _IdleGpu:
    """A GPU sampler that always answers: one device of this process, idle."""

    def __init__(self) -> None:
        self.readings = 0
        #: The processes whose GPUs it is to count (set by ``nbremind run``: the command's).
        self.pids: Callable[[], list[int]] | None = None
        self.counted: list[int] = []

    def reading(self, now: float) -> GpuReading | None:
        self.readings += 1
        if self.pids is not None:
            self.counted = self.pids()
        return GpuReading(1_000_000_000, 8_000_000_000, 0.0, 1)

    def why_not(self) -> str | None:
        return None


def test_stall_with_a_gpu_is_taken_and_watches_it() -> None:
    gpu = _IdleGpu()
    with capture_notices(tick=True) as cap:
        cap.session.readings.gpu_sampler = gpu
        script = "import time; time.sleep(2)"  # the work: 2 s on an idle GPU
        code = main(["run", "--name", "gpu-job", "--stall", "0.5s", "--", PY, "-c", script])
        end = _end_notice(cap)
        stalls = [n for n in cap.notices if n.event == "stall"]
    assert code == 0
    assert end.task.state is TaskState.SUCCEEDED
    assert [n.title.split(" for ")[0] for n in stalls] == ["⏸ gpu-job stalled: GPU idle (< 5 %)"]
    assert "never applied" not in end.body
    assert gpu.readings > 1  # asked before the start, then by the ticks
    assert gpu.counted and os.getpid() not in gpu.counted  # the command's GPUs, not ours


# -- --slower and --gpu-mem ------------------------------------------------------------------
def test_slower_with_no_history_runs_and_says_it_never_applied(
    http_server: ScriptedHTTPServer,
) -> None:
    # (a second at least: a task shorter than that may end before its history was read)
    run, _ = _nbremind(
        "run",
        "--name",
        "first",
        "--channels",
        http_server.url(),
        "--slower",
        "--",
        PY,
        "-c",
        "import time; time.sleep(1.2)",
    )
    assert (run.returncode, run.stderr) == (0, "")
    [request] = http_server.wait_for(1)
    payload = request.json()
    assert payload["title"] == "✓ first finished"
    notes = [line for line in payload["body"].splitlines() if "never applied" in line]
    assert notes == ["--slower never applied: fewer than 3 succeeded runs to compare with"]


@pytest.mark.parametrize("value", ["1GB", "50%"])
def test_gpu_mem_is_taken(value: str) -> None:
    run, _ = _nbremind("run", "--channels", "null", "--gpu-mem", value, "--", "true")
    assert (run.returncode, run.stderr) == (0, "")
