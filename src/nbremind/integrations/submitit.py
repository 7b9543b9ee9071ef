"""``track(jobs)`` for submitit jobs (Slurm, or its local executor): followed through
submitit's own reading of them, never through calls of our own to ``sacct`` or ``squeue``.

``track(executor.map_array(fn, items))`` returns a :class:`FollowedJobs` at once: a task of
kind ``"slurm"`` (``"slurm: N jobs"`` unless named, total: the number of jobs) started in the
current task without becoming current, advanced as each job ends, and an iterable of the jobs
in the order they end.

How the jobs are read
---------------------
A hook of the session's loop thread polls them at most once a second (a thread iterating
the jobs polls too when no poll came for a second: after the task's end the loop thread may
sleep): ``job.state`` and
``job.done()`` of each job still running (submitit's watcher decides when these ask Slurm,
one ``sacct`` for all the jobs it knows, every few seconds at first, then rarely; a local
job reads its process). A job seen ended is read further on a worker thread, because those
reads may wait: ``job.exception()`` unpickles the job's outcome (and waits up to 15 s for a
result file a slow shared file system has not shown yet), ``job.stderr()`` reads the job's
error log. A job whose state cannot be read is logged once and read again at the next poll.

What ends the task
------------------
* Every job completed: **succeeded**, when the last one ends.
* The first job that failed (an exception in the function, ``FAILED``, ``OUT_OF_MEMORY``,
  ``NODE_FAIL``...): **failed**; the error is the tail of the job's stderr (its last lines,
  the traceback's end) and a note names the job.
* The first job that ran out of its time (Slurm's ``TIMEOUT``, or submitit's own "timed-out
  and not checkpointable" at the time-limit signal): **timed_out**.
* The first job cancelled (``CANCELLED``, a local job stopped by a signal): **cancelled**.

The jobs after the end are still followed for iteration, without notices. A job preempted
or requeued while the task runs is told once per kind (``PREEMPTED``, ``REQUEUED``).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from ..core.log import log_exception, logger
from ..core.notice import make_notice
from ..core.options import TaskOptions
from ..core.task import Ended, Task, TaskTimeout
from ..core.workers import Workers
from ..runtime.session import Session, get_session

__all__ = ["POLL_INTERVAL", "REQUEUE_EVENT", "FollowedJobs", "follow", "stderr_tail"]

#: Seconds between two polls of the jobs' states.
POLL_INTERVAL = 1.0
#: The event of the notice of a preempted or requeued job.
REQUEUE_EVENT = "requeue"
#: Lines of a failed job's stderr kept in the task's error.
TAIL_LINES = 5
#: Characters of that tail at most (the end is kept: that is where the error is).
_TAIL_CHARS = 199
#: Slurm states of a job that is not over (submitit's own list, ``InfoWatcher.is_done``).
_REQUEUE_STATES = ("PREEMPTED", "REQUEUED")
#: submitit's error when the time-limit signal came to a job it could not checkpoint.
_SUBMITIT_TIMED_OUT = "Job not requeued because: timed-out"

_workers: Workers | None = None
_workers_lock = threading.Lock()


def _pool() -> Workers:
    global _workers
    with _workers_lock:
        if _workers is None:
            _workers = Workers(limit=2, name="nbremind-submitit")
        return _workers


def follow(
    handles: Any,
    name: str | None,
    total: int | None,
    options: TaskOptions,
    session: Session | None,
) -> FollowedJobs:
    """``track(jobs)``: follow submitit ``Job`` objects (a list or tuple) as one task."""
    jobs = list(handles)
    session = session or get_session()
    if session.current() is not None and options.on is None:
        nested = options.thresholds_only()  # its end is the enclosing task's to report
        options = nested.replace(on=(*(nested.on or ()), REQUEUE_EVENT))  # requeues: its own
    count = len(jobs)
    task = session.new_task(
        name or f"slurm: {count} job{'s' if count != 1 else ''}",
        options=options,
        total=total if total is not None else count,
        kind="slurm",
    )
    followed = FollowedJobs(jobs, task, session)
    session.start_aside(task)
    session.tick_hooks.append(followed.poll)
    return followed


class FollowedJobs:
    """What ``track(jobs)`` returns: ``len()`` is the number of jobs, :attr:`task` the task
    following them; iterating yields the jobs as they end (waiting for the next one)."""

    def __init__(self, jobs: Sequence[Any], task: Task, session: Session) -> None:
        self.jobs = list(jobs)
        #: The task of kind ``"slurm"`` following the jobs.
        self.task = task
        self._session = session
        self._cond = threading.Condition()
        self._ended: list[Any] = []  # the jobs that ended, in that order
        self._running = list(range(len(self.jobs)))  # (poll only)
        self._polling = threading.Lock()
        self._last_poll = float("-inf")
        self._unreadable: set[int] = set()
        self._told: set[str] = set()
        self._completed = 0

    def __len__(self) -> int:
        return len(self.jobs)

    def __repr__(self) -> str:
        return f"<FollowedJobs {self.task.name!r}: {len(self._ended)}/{len(self.jobs)} ended>"

    def __iter__(self) -> Iterator[Any]:
        index, count = 0, len(self.jobs)
        while index < count:
            with self._cond:
                while len(self._ended) <= index:
                    if not self._cond.wait(POLL_INTERVAL):
                        # no job ended for a second: the loop thread may be idle (the task
                        # ended at a failure, no other task runs), so the waiting thread
                        # polls too (still at most once a second, whoever polls)
                        self._cond.release()
                        try:
                            self.poll()
                        finally:
                            self._cond.acquire()
                job = self._ended[index]
            index += 1
            yield job

    # -- the poll (the loop thread's hook, and an iterating thread's) ------------------------
    def poll(self, force: bool = False) -> None:
        """Read the states of the jobs still running, at most once a second (``force``: now,
        unless another thread is polling); never raises."""
        try:
            now = time.monotonic()
            if (not force and now - self._last_poll < POLL_INTERVAL) or not self._polling.acquire(
                False
            ):
                return
            try:
                self._last_poll = now
                self._poll_jobs()
            finally:
                self._polling.release()
        except Exception:
            log_exception("following submitit jobs failed")

    def _poll_jobs(self) -> None:
        still: list[int] = []
        for index in self._running:
            job = self.jobs[index]
            try:
                state = str(job.state)
                done = bool(job.done())
            except Exception as exc:
                still.append(index)
                if index not in self._unreadable:
                    self._unreadable.add(index)
                    logger().warning("submitit job %s: its state cannot be read: %r", _id(job), exc)
                continue
            if done:
                _pool().submit(self._read_end, job, state)
                continue
            still.append(index)
            upper = state.upper()
            for kind in _REQUEUE_STATES:
                if upper.startswith(kind) and kind not in self._told:
                    self._told.add(kind)
                    self._tell_requeue(job, kind)
        self._running = still
        if not still:
            with contextlib.suppress(ValueError):  # (removed already)
                self._session.tick_hooks.remove(self.poll)

    def _tell_requeue(self, job: Any, kind: str) -> None:
        task = self.task
        if task.done:
            return
        options = task.options
        if options.on is not None and REQUEUE_EVENT not in options.on:
            return
        words = f"job {_id(job)} {kind.lower()}"
        task.note(words)
        notice = make_notice(
            REQUEUE_EVENT,
            task.snapshot(),
            created=time.time(),
            key=f"{kind}:{_id(job)}",
            detail=words,
        )
        self._session.send(notice, options)

    # -- a job that ended (a worker thread) ---------------------------------------------------
    def _read_end(self, job: Any, state: str) -> None:
        try:
            outcome, words = _outcome(job, state)
        except Exception as exc:  # submitit could not tell: say so rather than guess
            outcome, words = "failed", f"its outcome cannot be read: {exc!r}"
        try:
            self._end_job(job, outcome, words)
        except Exception:
            log_exception("following submitit jobs failed")
        finally:
            with self._cond:
                self._ended.append(job)
                self._cond.notify_all()

    def _end_job(self, job: Any, outcome: str, words: str) -> None:
        task, session = self.task, self._session
        with self._cond:
            task.advance()
            if task.done:
                return
            if outcome == "completed":
                self._completed += 1
                if self._completed == len(self.jobs):
                    session.finish(task)
                return
            job_id = _id(job)
            if outcome == "timeout":
                task.note(f"job {job_id} ran out of its time")
                task.interrupted_by_timeout = True  # (the state a TaskTimeout ends it in)
                session.finish(task, TaskTimeout(f"job {job_id} passed its time limit"))
            elif outcome == "cancelled":
                task.note(f"job {job_id} was cancelled")
                session.finish(task, KeyboardInterrupt(f"job {job_id} cancelled"))
            else:
                task.note(f"job {job_id} failed")
                session.finish(task, Ended(words))


def _outcome(job: Any, state: str) -> tuple[str, str]:
    """``("completed" | "failed" | "timeout" | "cancelled", words)`` of an ended job."""
    upper = state.upper()
    if upper.startswith("TIMEOUT"):
        return "timeout", ""
    if upper.startswith("CANCELLED"):
        return "cancelled", ""
    has_result = _has_result(job)
    if not has_result and upper.startswith(("FAILED", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL")):
        # stopped by Slurm: no outcome will be written, and exception() would wait for one
        return "failed", stderr_tail(_stderr(job)) or f"Slurm state {state}"
    if not has_result and upper == "INTERRUPTED":  # a local job's process was signalled
        return "cancelled", ""
    error = job.exception()
    if error is None:
        return "completed", ""
    text = str(error)
    if _SUBMITIT_TIMED_OUT in text:
        return "timeout", ""
    return "failed", stderr_tail(_stderr(job)) or stderr_tail(text)


def _has_result(job: Any) -> bool:
    try:
        return bool(job.paths.result_pickle.exists())
    except Exception:
        return False


def _stderr(job: Any) -> str:
    try:
        return str(job.stderr() or "")
    except Exception:
        return ""


def stderr_tail(text: str, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of ``text`` that say something (a traceback's ``^^^^``
    markers and blank lines left out), cut from the front to 200 characters."""
    kept = [line.rstrip() for line in text.splitlines() if line.strip() and line.strip(" ^~") != ""]
    tail = "\n".join(kept[-lines:])
    return tail if len(tail) <= _TAIL_CHARS + 1 else "…" + tail[-_TAIL_CHARS:]


def _id(job: Any) -> str:
    try:
        return str(job.job_id)
    except Exception:
        return "?"
