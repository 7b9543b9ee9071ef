"""``with remind("sweep", jobs=jobs):`` of submitit jobs: real jobs of submitit's
LocalExecutor (processes of their own, no Slurm), followed by the block's task."""

from __future__ import annotations

import contextlib
import operator
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from _deadline import eventually
from _require import missing
from _servers import ScriptedHTTPServer
from _submitit_jobs import local_executor, timing_out
from nbremind import current_task, remind
from nbremind.testing import CapturedNotices, capture_notices

try:
    import submitit
except ImportError:  # pragma: no cover - the extra is not installed
    submitit = None

#: A job that fails after a while: a command of the job's own that exits 3 (a function of
#: the standard library, so the job's process unpickles it without this module).
FAILS_LATER = ["sh", "-c", "sleep 2; echo second failure >&2; exit 3"]


@pytest.fixture
def executor(tmp_path: Path) -> Any:
    return local_executor(tmp_path)


def _of(cap: CapturedNotices, event: str) -> list[Any]:
    return [n for n in cap.notices if n.event == event]


def test_jobs_that_succeed_end_the_block_succeeded(executor: Any) -> None:
    with capture_notices(tick=True) as cap:
        jobs = executor.map_array(operator.mul, [1, 2, 3], [10, 10, 10])
        with remind("sweep", jobs=jobs) as task:
            assert task.total == 3
            assert sorted(job.result() for job in jobs) == [10, 20, 30]
        # every job had ended: the block's end is the task's
        assert task.done and task.state == "succeeded"
        assert task.n == task.total == 3
        assert cap.titles() == ["✓ sweep finished"]
        assert "Progress: 100% (3/3)" in cap.notices[-1].body
        assert cap.session.tick_hooks == [cap.session.input_watch.tick]  # the jobs' poll left


def test_a_failed_job_is_told_at_once_and_the_end_is_the_first_failure(executor: Any) -> None:
    with capture_notices(tick=True) as cap:
        ok = executor.submit(operator.mul, 2, 3)
        first = executor.submit(int, "not a number")
        second = executor.submit(subprocess.check_call, FAILS_LATER)
        with remind("sweep", jobs=[ok, first, second]) as task:
            (told,) = eventually(lambda: _of(cap, "failure"), 60, "the first failure's notice")
            assert not task.done and current_task() is task  # the body still runs
        assert told.title == f"✗ sweep: job {first.job_id} failed"
        assert "ValueError: invalid literal for int() with base 10: 'not a number'" in told.body
        assert told.urgency == "critical"
        eventually(lambda: task.done, 60, "the task's end")
        assert task.state == "failed" and task.n == 3
        titles = cap.titles()
        assert titles == [
            f"✗ sweep: job {first.job_id} failed",
            f"✗ sweep: job {second.job_id} failed",
            "✗ sweep failed",
        ]
        end = cap.notices[-1]
        assert "second failure" in cap.notices[1].body  # each failure with its own stderr
        assert "ValueError: invalid literal for int() with base 10: 'not a number'" in end.body
        assert "second failure" not in end.body
        assert end.body.splitlines()[-2] == f"job {first.job_id} failed (2 of 3 failed)"


def test_a_job_past_its_time_limit(executor: Any) -> None:
    with capture_notices(tick=True) as cap:
        job = timing_out(executor).submit(time.sleep, 60)
        with remind("long", jobs=[job]) as task:
            (told,) = eventually(lambda: _of(cap, "timeout"), 60, "the time-out's notice")
            assert not task.done
        assert told.title == f"⏱ long: job {job.job_id} timed out"
        assert task.done and task.state == "timed_out"
        end = cap.notices[-1]
        assert end.title.startswith("⏱ long timed out (")
        assert f"TaskTimeout: job {job.job_id} passed its time limit" in end.body
        assert len(cap.notices) == 2


def test_a_body_that_ends_first_leaves_at_once_and_the_jobs_end_the_task(executor: Any) -> None:
    with capture_notices(tick=True) as cap:
        jobs = [executor.submit(time.sleep, 2), executor.submit(operator.add, 1, 2)]
        with remind("outer") as outer:
            start = time.perf_counter()
            with remind("sweep", jobs=jobs, progress=[0.5]) as task:
                pass
            took = time.perf_counter() - start
            print(f"\nthe block with 2 running jobs entered and left in {took * 1e3:.2f} ms")
            assert took < 0.05
            assert task.parent is outer and current_task() is outer  # no longer current
            assert not task.done and not jobs[0].done()
        eventually(lambda: task.done, 60, "the task's end with its jobs")
        assert task.state == "succeeded" and task.n == 2
        # the quick job's end moved it past 50 % while the slow one ran
        assert cap.titles() == ["✓ outer finished", "sweep reached 50%", "✓ sweep finished"]


def test_a_body_that_raises_ends_the_task_with_it(executor: Any) -> None:
    with capture_notices(tick=True) as cap:
        job = executor.submit(time.sleep, 30)
        try:
            with pytest.raises(RuntimeError, match="boom"), remind("sweep", jobs=[job]) as task:
                raise RuntimeError("boom")
            assert task.done and task.state == "failed"
            assert task.error is not None and task.error.message == "boom"
            (end,) = cap.notices
            assert end.title == "✗ sweep failed"
            assert "1 of 1 job still running, no longer followed" in end.body
            assert cap.session.tick_hooks == [cap.session.input_watch.tick]  # no longer polled
        finally:
            job.cancel()


def test_jobs_that_are_not_submitit_jobs_are_a_type_error() -> None:
    with pytest.raises(
        TypeError, match=r"^remind\(jobs=\.\.\.\) takes a list of submitit jobs, not int$"
    ):
        remind("x", jobs=5)
    with pytest.raises(TypeError, match=r"submitit jobs, not an empty list$"):
        remind("x", jobs=[])
    with pytest.raises(TypeError, match=r"submitit jobs, not a list of str$"):
        remind("x", jobs=["a"])


def test_jobs_with_the_decorator_are_a_type_error(executor: Any) -> None:
    job = executor.submit(operator.add, 1, 1)
    reminder = remind("x", jobs=[job])
    with pytest.raises(TypeError, match=r"remind\(jobs=\.\.\.\) is for a with block"):

        @reminder
        def run() -> None:
            pass

    job.result()


def test_async_with(executor: Any) -> None:
    import asyncio

    async def main() -> Any:
        jobs = [executor.submit(operator.add, 1, 1)]
        async with remind("sweep", jobs=jobs) as task:
            pass
        return task

    with capture_notices(tick=True) as cap:
        task = asyncio.run(main())
        eventually(lambda: task.done, 60, "the task's end")
        assert task.state == "succeeded"
        assert cap.titles() == ["✓ sweep finished"]


_SCRIPT = """
import operator
import sys
import time

import submitit

import nbremind
from nbremind import remind

nbremind.configure(channels=[sys.argv[1]])
executor = submitit.LocalExecutor(folder=sys.argv[2])
executor.update_parameters(timeout_min=1)
jobs = [executor.submit(time.sleep, float(sys.argv[3])), executor.submit(operator.add, 1, 2)]
with remind("sweep", jobs=jobs):
    pass
"""


def _script(tmp_path: Path, http_server: ScriptedHTTPServer, seconds: float) -> Any:
    if submitit is None:
        missing("submitit is not installed (pip install 'nbremind[submitit]')")
    script = tmp_path / "sweep.py"
    script.write_text(textwrap.dedent(_SCRIPT))
    err = tmp_path / "stderr"
    with err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), http_server.url(), str(tmp_path / "jobs"), str(seconds)],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # its own process group, as a terminal's command has
        )
    return process, err


def _kill_group(process: Any) -> None:
    """Stop what is left of the script's process group (its local jobs)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(10)


def test_a_script_ending_after_the_block_waits_for_its_jobs(
    tmp_path: Path, http_server: ScriptedHTTPServer
) -> None:
    start = time.monotonic()
    process, err = _script(tmp_path, http_server, 2)
    try:
        assert process.wait(90) == 0, err.read_text()
    finally:
        _kill_group(process)
    took = time.monotonic() - start
    print(f"\nthe script ran {took:.1f} s")
    assert took > 2  # it waited for the 2 s job
    assert "nbremind: waiting for 2 submitit jobs of 'sweep' to end before exiting" in (
        err.read_text()
    )
    titles = [r.json()["title"] for r in http_server.wait_for(1)]
    assert titles == ["✓ sweep finished"]
    assert "Progress: 100% (2/2)" in http_server.requests[0].json()["body"]


def test_ctrl_c_while_a_script_waits_ends_the_task_cancelled(
    tmp_path: Path, http_server: ScriptedHTTPServer
) -> None:
    process, err = _script(tmp_path, http_server, 30)
    try:
        eventually(lambda: "waiting for" in err.read_text(), 60, "the wait at exit")
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C: the script and its local jobs
        assert process.wait(30) == 0, err.read_text()
    finally:
        _kill_group(process)
    (request,) = http_server.wait_for(1)
    notice = request.json()
    assert notice["title"] == "■ sweep cancelled"
    # (the quick job's end may not have been read yet when Ctrl-C came)
    assert re.search(
        r"the process exited before its jobs ended: [12] of 2 still running$", notice["body"], re.M
    )
