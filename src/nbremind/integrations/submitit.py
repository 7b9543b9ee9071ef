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

``remind(..., jobs=jobs)``
--------------------------
:func:`attach` has a block's task follow the jobs (:class:`BlockJobs`), read as above: each
job that ends advances it (its total: the number of jobs, unless given); a job that failed
or timed out is told at once (events ``failure``, ``timeout``: ``✗ sweep: job 4242_2
failed`` with its stderr's tail) without ending the task. An exception leaving the block
ends the task with it. A body that ends normally ends it when every job has ended by then
(read on the block's thread); else the block leaves at once and the last job's end ends
it: failed if a job failed (the first one's stderr tail), timed out if one timed out,
cancelled if one was cancelled, else succeeded. A script whose process exits while such a
task runs waits for its jobs at exit (saying so on stderr; Ctrl-C ends the task cancelled,
with a note that the process exited first), so its end is still told.
"""

from __future__ import annotations

import atexit
import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from ..core.log import log_exception, logger
from ..core.notice import make_notice
from ..core.options import TaskOptions
from ..core.task import Ended, Task, TaskTimeout
from ..core.workers import Workers
from ..runtime.session import Session, get_session
from .followed import in_completion_order, start_followed

__all__ = [
    "POLL_INTERVAL",
    "REQUEUE_EVENT",
    "BlockJobs",
    "FollowedJobs",
    "attach",
    "follow",
    "stderr_tail",
]

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

#: Where ended jobs are read (their threads start on first use).
_workers = Workers(limit=2, name="nbremind-submitit")


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
    count = len(jobs)
    name = name or f"slurm: {count} job{'s' if count != 1 else ''}"
    # (nested, a requeued job is still told: its follower's own)
    task = start_followed(session, name, count, total, options, "slurm", (REQUEUE_EVENT,))
    followed = FollowedJobs(jobs, task, session)
    session.tick_hooks.append(followed.poll)
    return followed


class _Jobs:
    """The poll of submitit jobs and the reading of those that ended, for one task: what
    :class:`FollowedJobs` and a ``remind(..., jobs=...)`` block share. ``_end_job`` says
    what a job's end does to the task."""

    def __init__(self, jobs: Sequence[Any], task: Task, session: Session) -> None:
        self.jobs = list(jobs)
        #: The task following the jobs.
        self.task = task
        self._session = session
        self._cond = threading.Condition()
        self._ended: list[Any] = []  # the jobs that ended, in that order
        self._running = list(range(len(self.jobs)))  # (poll only)
        self._polling = threading.Lock()
        self._last_poll = float("-inf")
        self._unreadable: set[int] = set()
        self._told: set[str] = set()
        #: Read the end of a job on the polling thread, not a worker (interpreter exit).
        self._inline = False
        self._reading = 0  # the ends being read, or waiting for a worker to read them

    def __len__(self) -> int:
        return len(self.jobs)

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
                with self._cond:
                    self._reading += 1
                if self._inline:
                    self._read_end(job, state)
                else:
                    _workers.submit(self._read_end, job, state)
                continue
            still.append(index)
            upper = state.upper()
            for kind in _REQUEUE_STATES:
                if upper.startswith(kind) and kind not in self._told:
                    self._told.add(kind)
                    self._tell_requeue(job, kind)
        self._running = still
        if not still:
            self._unhook()

    def _unhook(self) -> None:
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
                self._reading -= 1
                self._cond.notify_all()

    def _end_job(self, job: Any, outcome: str, words: str) -> None:
        raise NotImplementedError


class FollowedJobs(_Jobs):
    """What ``track(jobs)`` returns: ``len()`` is the number of jobs, :attr:`task` the task
    following them; iterating yields the jobs as they end (waiting for the next one)."""

    def __init__(self, jobs: Sequence[Any], task: Task, session: Session) -> None:
        super().__init__(jobs, task, session)
        self._completed = 0

    def __repr__(self) -> str:
        return f"<FollowedJobs {self.task.name!r}: {len(self._ended)}/{len(self.jobs)} ended>"

    def __iter__(self) -> Iterator[Any]:
        # (a waiting thread polls after a second without a job ending: still at most once a
        # second, whoever polls)
        jobs = self._ended
        return in_completion_order(jobs, len(self.jobs), self._cond, self.poll, POLL_INTERVAL)

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


def attach(handles: Any, task: Task, session: Session) -> Callable[[BaseException | None], bool]:
    """``remind(..., jobs=jobs)``: the block's ``task`` follows submitit ``Job`` objects (a
    list or tuple); returns the block's ``end(exc)`` (see :class:`BlockJobs`)."""
    jobs = BlockJobs(list(handles), task, session)
    if task.total is None:
        task.total = len(jobs)
    session.tick_hooks.append(jobs.poll)
    return jobs.end


class BlockJobs(_Jobs):
    """The jobs of a ``remind(..., jobs=jobs)`` block, which its task follows: each job
    that ends advances it; a failure, a time-out, a requeue is told at once (events
    ``failure``, ``timeout``, ``requeue``) without ending it. Its end is the block's
    (:meth:`end`) if an exception left the block or every job had ended by then, else the
    last job's."""

    def __init__(self, jobs: Sequence[Any], task: Task, session: Session) -> None:
        super().__init__(jobs, task, session)
        self._over = 0  # the jobs whose end was read
        self._left = False  # the block's body ended: the last job ends the task
        self._stopped = False  # no longer followed: the task ended, or is ending
        self._failed: list[tuple[str, str]] = []  # (job id, stderr tail), in that order
        self._timed_out: str | None = None  # the first job past its time limit
        self._cancelled: str | None = None  # the first job cancelled

    def __repr__(self) -> str:
        return f"<BlockJobs {self.task.name!r}: {self._over}/{len(self.jobs)} ended>"

    def poll(self, force: bool = False) -> None:
        """As :meth:`FollowedJobs.poll`; a task ended otherwise (by hand, at its session's
        close) has its jobs no longer read."""
        if self.task.done:
            self._unhook()
            _forget(self)
            return
        super().poll(force)

    # -- the block's end (its thread) -------------------------------------------------------
    def end(self, exc: BaseException | None) -> bool:
        """The block's body ended with ``exc``: whether its task ends now (``False``: the
        last job ends it, later; the block leaves at once). Never raises."""
        try:
            if exc is not None:
                self._stop(exc)
                return True
            self._read_if_all_done()
            with self._cond:
                self._left = True
                finish = self._over == len(self.jobs) and not self._stopped
                self._stopped = self._stopped or finish
            if finish:
                self._finish()
                return True
            if not self.task.done:
                self.task.thread_id = None  # its thread goes on: nothing to interrupt there
                _at_exit(self)
            return self.task.done
        except Exception:
            log_exception("following submitit jobs failed")
            return True

    def _stop(self, exc: BaseException) -> None:
        """An exception left the block: the task ends with it; the jobs are no longer read."""
        with self._cond:
            self._stopped = True
            running = len(self.jobs) - self._over
        self._unhook()
        if running:
            count = len(self.jobs)
            self.task.note(
                f"{running} of {count} job{'s' if count != 1 else ''} still running,"
                " no longer followed"
            )

    def _read_if_all_done(self) -> None:
        """If every job not read yet says it is done, read their ends on this thread and
        wait for those a worker is reading: the block's end is then the task's. Asks until
        the first job that is not done: a block leaving while jobs run pays for one."""
        with self._polling:  # (no poll meanwhile)
            for index in self._running:
                try:
                    if not self.jobs[index].done():
                        return
                except Exception:
                    return
            self._last_poll = time.monotonic()
            ended, self._running = self._running, []
            with self._cond:
                self._reading += len(ended)
        for index in ended:
            job = self.jobs[index]
            try:
                state = str(job.state)
            except Exception:
                state = ""
            self._read_end(job, state)
        self._unhook()
        with self._cond:
            self._cond.wait_for(lambda: self._reading == 0, _READ_WAIT)

    def _end_job(self, job: Any, outcome: str, words: str) -> None:
        task, job_id = self.task, _id(job)
        with self._cond:
            if self._stopped or task.done:
                return
            task.advance()
            self._over += 1
            first = False
            if outcome == "failed":
                first = not self._failed
                self._failed.append((job_id, words))
            elif outcome == "timeout" and self._timed_out is None:
                first = not self._failed
                self._timed_out = job_id
            elif outcome == "cancelled" and self._cancelled is None:
                self._cancelled = job_id
            finish = self._left and self._over == len(self.jobs)
            self._stopped = finish
        if outcome == "failed":
            task.note(f"job {job_id} failed")
            if not (finish and first):  # (else the end notice tells it, with the same words)
                self._tell("failure", job_id, f"job {job_id} failed", words)
        elif outcome == "timeout":
            task.note(f"job {job_id} ran out of its time")
            if not (finish and first):
                self._tell("timeout", job_id, f"job {job_id} timed out", "")
        elif outcome == "cancelled":
            task.note(f"job {job_id} was cancelled")
        if finish:
            self._finish()

    def _tell(self, event: str, job_id: str, words: str, more: str) -> None:
        task = self.task
        if task.done or event not in task.options.events():
            return
        detail: object = (words, more) if more else words
        notice = make_notice(
            event, task.snapshot(), created=time.time(), key=f"job:{job_id}", detail=detail
        )
        self._session.send(notice, task.options)

    def _finish(self) -> None:
        """End the task as its jobs ended: failed, timed out, cancelled or succeeded."""
        _forget(self)
        self._unhook()
        task, count = self.task, len(self.jobs)
        exc: BaseException | None = None
        if self._failed:
            job_id, words = self._failed[0]
            more = len(self._failed)
            task.note(f"job {job_id} failed" + (f" ({more} of {count} failed)" if more > 1 else ""))
            exc = Ended(words)
        elif self._timed_out is not None:
            task.note(f"job {self._timed_out} ran out of its time")
            task.interrupted_by_timeout = True  # (the state a TaskTimeout ends it in)
            exc = TaskTimeout(f"job {self._timed_out} passed its time limit")
        elif self._cancelled is not None:
            task.note(f"job {self._cancelled} was cancelled")
            exc = KeyboardInterrupt(f"job {self._cancelled} cancelled")
        self._session.finish(task, exc)

    # -- interpreter exit ---------------------------------------------------------------------
    def wait_or_end(self, wait: bool) -> bool:
        """At interpreter exit: wait for the jobs (``wait``), reading them on this thread;
        else, or at Ctrl-C, end the task cancelled, saying that the process ended first.
        Returns whether Ctrl-C stopped the wait."""
        self._unhook()  # the loop thread no longer polls: this thread does, at its pace
        self._inline = True
        stopped = False
        try:
            while wait and not self.task.done:
                self.poll(force=True)
                with self._cond:
                    self._cond.wait_for(lambda: self.task.done, POLL_INTERVAL)
        except KeyboardInterrupt:
            stopped = True
        with self._cond:
            if self._stopped or self.task.done:
                return stopped
            self._stopped = True
            running, count = len(self.jobs) - self._over, len(self.jobs)
        _forget(self)
        words = f"the process exited before its jobs ended: {running} of {count} still running"
        self.task.note(words)
        self._session.finish(self.task, KeyboardInterrupt(words))
        return stopped


#: Seconds the block's end waits for the ends a worker is reading, once every job is done.
_READ_WAIT = 20.0
#: The blocks whose task goes on after them (waited for at interpreter exit).
_waiting: set[BlockJobs] = set()
_waiting_lock = threading.Lock()


def _at_exit(jobs: BlockJobs) -> None:
    """Wait for ``jobs`` at interpreter exit if their task still runs then (the hook is
    registered again each time: atexit runs the latest first, so it runs before the
    session's close, which delivers the end)."""
    with _waiting_lock:
        _waiting.add(jobs)
        atexit.unregister(_wait_at_exit)
        atexit.register(_wait_at_exit)


def _forget(jobs: BlockJobs) -> None:
    with _waiting_lock:
        _waiting.discard(jobs)


def _wait_at_exit() -> None:
    """The blocks still waiting for their jobs: a script waits for them (saying so on
    stderr; Ctrl-C stops waiting), a Jupyter kernel does not (its shutdown is the user's)."""
    wait = "ipykernel" not in sys.modules
    with _waiting_lock:
        waiting = sorted(_waiting, key=lambda j: j.task.start_mono or 0.0)
    for jobs in waiting:
        if jobs.task.done or not jobs._session.ticker.running:
            continue  # (ended, or its session closed: nothing could tell its end)
        if wait:
            left = len(jobs.jobs) - jobs._over
            sys.stderr.write(
                f"nbremind: waiting for {left} submitit job{'s' if left != 1 else ''} of"
                f" {jobs.task.name!r} to end before exiting (Ctrl-C: exit now)\n"
            )
            sys.stderr.flush()
        if jobs.wait_or_end(wait):
            wait = False  # Ctrl-C: the others end now too


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
