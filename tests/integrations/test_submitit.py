"""``track(jobs)`` of submitit jobs: real jobs of submitit's LocalExecutor (its Job API,
processes of their own, no Slurm), followed through the notices they give."""

from __future__ import annotations

import operator
import os
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from _deadline import eventually, within
from _require import missing
from _submitit_jobs import local_executor, timing_out
from nbremind import remind, track
from nbremind.testing import capture_notices

try:
    import submitit
except ImportError:  # pragma: no cover - the extra is not installed
    submitit = None


@pytest.fixture
def executor(tmp_path: Path) -> Any:
    return local_executor(tmp_path)


def _timing_out(ex: Any) -> Any:
    return timing_out(ex).submit(time.sleep, 60)


def test_jobs_that_succeed_end_the_task_succeeded(executor: Any) -> None:
    with capture_notices(tick=True) as cap:
        jobs = executor.map_array(operator.mul, [1, 2, 3], [10, 10, 10])
        followed = track(jobs)
        assert len(followed) == 3
        assert followed.task.kind == "slurm" and followed.task.total == 3
        ended = within(60, lambda: list(followed))
        assert sorted(job.result() for job in ended) == [10, 20, 30]
        eventually(lambda: followed.task.done, 10, "the task's end")
        assert followed.task.state == "succeeded" and followed.task.n == 3
        assert cap.titles() == ["✓ slurm: 3 jobs finished"]
        assert "Progress: 100% (3/3)" in cap.notices[0].body


def test_a_failed_job_ends_the_task_failed_with_its_stderr_tail(executor: Any) -> None:
    with capture_notices(tick=True) as cap:
        ok = executor.submit(operator.mul, 2, 3)
        bad = executor.submit(int, "not a number")
        followed = track([ok, bad], name="prep")
        within(60, lambda: list(followed))
        eventually(lambda: followed.task.done, 10, "the task's end")
        assert followed.task.state == "failed"
        (notice,) = cap.notices
        assert notice.title == "✗ prep failed" and notice.urgency == "critical"
        # the traceback's end, as the job's own stderr has it, then the job named
        assert "ValueError: invalid literal for int() with base 10: 'not a number'" in notice.body
        assert "^^^" not in notice.body
        assert notice.body.splitlines()[-2] == f"job {bad.job_id} failed"
        assert bad.stderr().rstrip().endswith(notice.task.error.type.splitlines()[-1])


def test_a_job_past_its_time_limit_ends_the_task_timed_out(executor: Any) -> None:
    with capture_notices(tick=True) as cap:
        job = _timing_out(executor)
        followed = track([job], name="long")
        (ended,) = within(60, lambda: list(followed))
        assert ended is job
        eventually(lambda: followed.task.done, 10, "the task's end")
        assert followed.task.state == "timed_out"
        (notice,) = cap.notices
        assert notice.title.startswith("⏱ long timed out (")
        assert f"TaskTimeout: job {job.job_id} passed its time limit" in notice.body
        assert "timed-out and not checkpointable" in str(job.exception())


def test_iteration_yields_jobs_as_they_end_and_blocks_until_then(executor: Any) -> None:
    with capture_notices(tick=True):
        slow = executor.submit(time.sleep, 4)
        fast = executor.submit(time.sleep, 0)
        followed = track([slow, fast])
        seen: list[Any] = []

        def iterate() -> None:
            seen.extend(followed)

        thread = threading.Thread(target=iterate, daemon=True)
        thread.start()
        eventually(lambda: seen, 30, "the fast job")
        assert seen == [fast]
        assert not slow.done()  # the iterating thread waits for it
        assert thread.is_alive()
        thread.join(60)
        assert seen == [fast, slow]
        eventually(lambda: followed.task.done, 10, "the task's end")
        assert followed.task.state == "succeeded"


def test_nested_in_a_block_the_block_reports_the_end(executor: Any) -> None:
    with capture_notices(tick=True) as cap:
        with remind("x") as outer:
            jobs = [executor.submit(operator.add, 1, 1), executor.submit(int, "x")]
            followed = track(jobs)
            assert followed.task.parent is outer
            within(60, lambda: list(followed))
            eventually(lambda: followed.task.done, 10, "the task's end")
            assert followed.task.state == "failed"
        assert cap.titles() == ["✓ x finished"]  # the jobs' task told nothing itself


def test_the_hook_leaves_when_every_job_ended(executor: Any) -> None:
    with capture_notices(tick=True) as cap:
        followed = track([executor.submit(operator.add, 1, 2)])
        assert followed.poll in cap.session.tick_hooks
        within(60, lambda: list(followed))
        eventually(lambda: followed.poll not in cap.session.tick_hooks, 10, "the hook's leave")


def test_a_job_whose_state_cannot_be_read_is_logged_once(
    executor: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Unreadable:  # a job whose reading raises (a plugin's bug), next to a real one
        job_id = "u1"

        @property
        def state(self) -> str:
            raise OSError("no such file")

    with capture_notices() as cap:  # polled by hand
        real = executor.submit(operator.add, 1, 2)
        followed = track([real, Unreadable()], name="mixed")
        for _ in range(3):
            followed.poll(force=True)
        warnings = [r for r in caplog.records if "u1" in r.getMessage()]
        assert len(warnings) == 1 and "no such file" in warnings[0].getMessage()
        assert not followed.task.done
        cap.session.finish(followed.task)


@pytest.mark.parametrize("count", [10, 100])
def test_poll_cost(tmp_path: Path, count: int) -> None:
    """The poll of ``count`` running local jobs (printed with ``-s``): real ``LocalJob``
    objects of one running process (100 jobs of their own would be 200 processes here)."""
    if submitit is None:
        missing("submitit is not installed (pip install 'nbremind[submitit]')")
    from submitit.local.local import LocalJob

    process = subprocess.Popen(["sleep", "60"])
    try:
        jobs = [LocalJob(tmp_path, str(1000 + k), process=process) for k in range(count)]
        with capture_notices() as cap:  # polled by hand
            followed = track(jobs)
            rounds = 50
            start = time.perf_counter()
            for _ in range(rounds):
                followed.poll(force=True)
            per_poll = (time.perf_counter() - start) / rounds
            print(f"\npoll of {count} running jobs: {per_poll * 1e6:.0f} µs")
            assert per_poll < 0.001 * count  # a small part of the second between two polls
            assert not followed.task.done
            cap.session.finish(followed.task)
    finally:
        process.kill()
        process.wait()


def test_a_preempted_then_requeued_slurm_job_is_told_once_each(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real ``SlurmJob`` read by submitit's own watcher, which runs ``sacct``: here a
    program of that name on ``PATH`` answers as Slurm would, from a file."""
    if submitit is None:
        missing("submitit is not installed (pip install 'nbremind[submitit]')")
    from submitit.slurm.slurm import SlurmJob

    bin_dir, answer = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    sacct = bin_dir / "sacct"
    calls = tmp_path / "calls"
    sacct.write_text(
        f'#!/bin/sh\necho >> {calls}\nprintf "JobID|State|NodeList\\n%s\\n" "$(cat {answer})"\n'
    )
    sacct.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    job_id = str(900_000 + int(time.time() * 1000) % 100_000)  # not in the watcher's cache yet
    answer.write_text(f"{job_id}|PREEMPTED|node1")
    job = SlurmJob(tmp_path / "jobs", job_id)
    with capture_notices() as cap:  # polled by hand
        followed = track([job], name="train")

        def events(event: str) -> list[str]:
            followed.poll(force=True)
            return [n.title for n in cap.notices if n.event == event]

        assert eventually(lambda: events("requeue"), 20, "the preemption's notice") == [
            f"↻ train: job {job_id} preempted"
        ]
        answer.write_text(f"{job_id}|REQUEUED|node1")
        eventually(lambda: len(events("requeue")) == 2, 20, "the requeue's notice")
        answer.write_text(f"{job_id}|PREEMPTED|node2")  # again: told once per kind
        read = len(calls.read_text())

        def read_again() -> bool:
            followed.poll(force=True)
            return len(calls.read_text()) > read

        eventually(read_again, 20, "another sacct call of submitit's watcher")
        assert len(events("requeue")) == 2
        answer.write_text(f"{job_id}|FAILED|node2")  # stopped by Slurm: no outcome file

        def ended() -> bool:
            followed.poll(force=True)
            return followed.task.done

        eventually(ended, 30, "the task's end")
        assert followed.task.state == "failed"
        assert cap.titles() == [
            f"↻ train: job {job_id} preempted",
            f"↻ train: job {job_id} requeued",
            "✗ train failed",
        ]
        assert cap.notices[-1].body.startswith("Slurm state FAILED\n")


def test_a_cancelled_job_ends_the_task_cancelled(executor: Any) -> None:
    with capture_notices(tick=True) as cap:
        job = executor.submit(time.sleep, 60)
        followed = track([job], name="c")
        eventually(lambda: job.stdout(), 30, "the job's start")  # (its log's first line)
        job.cancel()
        within(60, lambda: list(followed))
        eventually(lambda: followed.task.done, 10, "the task's end")
        assert followed.task.state == "cancelled"
        assert cap.titles() == ["■ c cancelled"]
        assert f"job {job.job_id} was cancelled" in cap.notices[0].body


def test_jobs_after_a_failure_are_still_yielded(executor: Any) -> None:
    with capture_notices(tick=True) as cap:
        slow = executor.submit(time.sleep, 3)
        bad = executor.submit(int, "x")
        followed = track([slow, bad], name="rest")
        ended = within(60, lambda: list(followed))
        assert ended == [bad, slow]  # the loop thread idles after the end: the iteration polls
        assert followed.task.state == "failed" and followed.task.n == 2
        assert cap.titles() == ["✗ rest failed"]
