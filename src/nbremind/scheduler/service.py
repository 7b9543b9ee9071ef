"""``nbremind schedule``: one foreground process that runs the jobs of the settings files.

Each run of a job is a real ``nbremind run --job NAME`` process, so it is a task like any
other (kind ``job``): its notices, thresholds, history row, outbox and watchdog are those of
``nbremind run``, and its exit status tells how it ended (124: past its timeout, 137: its
memory limit). The scheduler itself only decides *when*:

* one scheduler per settings scope (the project folder): a lease lock in the SQLite store,
  renewed while it runs; a second scheduler refuses to start with one line saying who holds
  it; a crashed scheduler's lock is taken over once its process is gone or its lease ran out;
* no job runs twice at once, also across a restart: each run is recorded (per scope) before
  it starts, then with its process (a run a previous scheduler started and that still runs
  is waited for, never doubled; a run refused its record is not started);
  ``overlap = "skip"`` drops a fire that comes while the job runs, ``"queue"`` runs it once
  the run ends (one queued fire at most);
* a fire missed while nothing was scheduling runs once at start with ``catch_up =
  "latest"`` (systemd's ``Persistent=true``), or is skipped with ``"none"``; a new job does
  not catch up;
* a failed run is retried up to ``retries`` attempts in all, after a backoff with full
  jitter (as the remote channels retry), a run past its ``timeout`` is not retried;
* the job definitions are read again when a settings file changes (the command follows
  them with the settings' file watcher, watchfiles; and their sizes and times every 2 s)
  and once a minute regardless; an edit
  with an error keeps the last good set and is reported once, naming file, job, key and
  value; a removed job fires no more, and is forgotten once a run of it still going ends;
* SIGTERM (or Ctrl-C) stops it: running jobs get SIGTERM (their ``nbremind run`` passes
  it on, SIGKILLs what is left of the command after its own shorter grace, and records the
  run ``cancelled``), then SIGKILL after :data:`KILL_GRACE` (an ``nbremind run`` killed so
  has its run recorded ``failed`` by its watchdog), and the lock is released.

:class:`Scheduler` is driven by :meth:`Scheduler.step`, which does what is due at the
clock's time and says how long nothing is: tests drive it with a fake clock, the command
with :meth:`Scheduler.run`.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ..core.clock import Clock, SystemClock
from ..core.config import format_duration_setting
from ..core.log import logger
from ..core.parse import printable
from ..delivery.retry import Backoff
from ..settings.jobs import job_delivery
from .metrics import run_state
from .timing import last_fire, next_fire
from .work import job_work

if TYPE_CHECKING:
    from ..core.jobs import Expectation, Job
    from ..settings.jobs import LoadedJobs
    from ..store.schedule import ScheduleStore

__all__ = [
    "JOB_GRACE",
    "KILL_GRACE",
    "LEASE",
    "Scheduler",
    "job_argv",
]

log = logger()

#: Seconds the scheduler's lock is held without a renewal (renewed every third of it).
LEASE = 30.0
#: Seconds between SIGTERM and SIGKILL for the runs still going when the scheduler stops.
KILL_GRACE = 10.0
#: Seconds between looks at the settings files for changed job definitions, when nothing
#: tells of their changes (``changed``); with it, they are read again when it changes, and
#: every :data:`RELOAD_ANYWAY` seconds all the same.
RELOAD_EVERY = 2.0
RELOAD_ANYWAY = 60.0
#: The first retry's largest wait, and the largest of any retry (full jitter between).
RETRY_BASE = 10.0
RETRY_CAP = 600.0
#: Exit status of a run past its timeout (``nbremind run``'s, as GNU ``timeout``).
EXIT_TIMED_OUT = 124
#: The grace of the expected run every job has for free (seconds).
JOB_GRACE = 3600.0
#: The longest :meth:`Scheduler.step` asks to wait (so reloads and lease renewals happen).
MAX_WAIT = 1.0


def job_argv(job: Job, python: str, attempt: int = 1) -> list[str]:
    """The ``nbremind run`` command line that makes one run of ``job``."""
    argv = [python, "-m", "nbremind", "run", "--job", job.name]
    if job.retries > 1:
        argv += ["--attempt", f"{attempt}/{job.retries}"]
    argv += list(job.flags)
    if job.timeout is not None:
        argv += ["--timeout", format_duration_setting(job.timeout)]
    return [*argv, "--", *job_work(job, python)]


class _Slot:
    """One job as the scheduler follows it."""

    def __init__(self, job: Job) -> None:
        self.job = job
        #: The next fire (UTC), or ``None`` when the schedule never fires again.
        self.next: dt.datetime | None = None
        #: The run going now (started by this scheduler), and its attempt and fire.
        self.process: subprocess.Popen[bytes] | None = None
        self.attempt = 0
        self.started = 0.0
        #: When the next attempt of a failed run may start (wall seconds), if one is due.
        self.retry_at: float | None = None
        #: A fire came while the job ran and ``overlap = "queue"``.
        self.queued = False
        #: The job is gone from the settings while its run goes on: it fires no more, and
        #: the slot is dropped when the run ends.
        self.removed = False


class Scheduler:
    """Runs the jobs ``load()`` gives, at their times, each as an ``nbremind run`` process.

    ``store`` holds the lock and the runs; ``scope`` names what the lock is for (the
    project folder). ``spawn`` starts a run (``subprocess.Popen``'s signature); ``say``
    prints one line for the person who started the scheduler. ``observe(event, job,
    info)``, when given, is told of each run: ``"started"`` (``attempt``, ``pid``),
    ``"ended"`` (``code``, ``state``, ``duration`` in seconds, ``attempt``), ``"skipped"``
    (``at``: the fire skipped) and ``"retry"`` (``code``, ``attempt``: the one that failed,
    ``wait``); an error it raises is logged, never stops the scheduler. ``changed()``,
    when given, changes when the settings files do (the jobs are then read again).
    """

    def __init__(
        self,
        load: Callable[[], LoadedJobs],
        store: ScheduleStore,
        scope: str,
        *,
        clock: Clock | None = None,
        python: str = sys.executable,
        spawn: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
        out: IO[str] | None = None,
        workdir: str | None = None,
        lease: float = LEASE,
        kill_grace: float = KILL_GRACE,
        random: Callable[[], float] | None = None,
        observe: Callable[[str, str, dict[str, object]], None] | None = None,
        changed: Callable[[], object] | None = None,
    ) -> None:
        self._load = load
        #: What changes when the settings files change (the settings watcher's count of
        #: loads); ``None``: they are read every :data:`RELOAD_EVERY` seconds.
        self._changed = changed
        self._seen: object = None if changed is None else changed()
        #: The settings files (and folders) the jobs come from, and their sizes and times as
        #: last read: looked at every RELOAD_EVERY seconds besides ``changed``.
        self._watched: tuple[Path, ...] = ()
        self._stamp: tuple[object, ...] = ()
        self._stamped_at = float("-inf")
        self.store = store
        self.scope = scope
        self.clock = clock or SystemClock()
        self.python = python
        self._spawn = spawn
        self._out = out if out is not None else sys.stderr
        self.workdir = workdir
        self.lease = lease
        self.kill_grace = kill_grace
        if random is None:
            import random as _random_module

            random = _random_module.random
        self._random = random
        self._observer = observe
        self.slots: dict[str, _Slot] = {}
        #: The expected runs of the settings (``[expect.NAME]``), as last read.
        self.expectations: dict[str, Expectation] = {}
        self._reported: tuple[str, ...] = ()
        self._renewed_at = float("-inf")
        self._reloaded_at = float("-inf")
        self._started = False

    # -- life -----------------------------------------------------------------------------
    def start(self) -> str | None:
        """Take the lock and read the jobs; ``None`` when it may run, else why not (one
        line: who holds the lock)."""
        holder = self.store.acquire(self.scope, self.lease)
        if holder is not None:
            if holder.error:
                return f"cannot take the lock for {self.scope}: {holder.error}"
            since = dt.datetime.fromtimestamp(holder.since).strftime("%Y-%m-%d %H:%M:%S")
            return (
                f"a scheduler already runs for {self.scope} (pid {holder.pid} on "
                f"{holder.host}, since {since}); stop it first"
            )
        self._renewed_at = self.clock.time()
        self._started = True
        self.reload(first=True)
        return None

    def run(self, stop: threading.Event) -> int:
        """Step until ``stop`` is set (or the lock is lost), then :meth:`stop`; the exit
        status: 0, or 1 when the lock was taken over."""
        code = 0
        while not stop.is_set():
            wait = self.step()
            if wait is None:
                code = 1
                break
            stop.wait(wait)
        self.stop()
        return code

    def stop(self) -> None:
        """SIGTERM the runs going, SIGKILL those left after the grace period, release the
        lock."""
        going = [s for s in self.slots.values() if s.process is not None]
        for slot in going:
            _signal_group(slot.process, signal.SIGTERM)
        deadline = self.clock.monotonic() + self.kill_grace
        for slot in going:
            process = slot.process
            assert process is not None
            try:
                process.wait(max(0.0, deadline - self.clock.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
            self._finished(slot, final=True)
        if self._started:
            self.store.release(self.scope)
            self._started = False

    # -- one step -------------------------------------------------------------------------
    def step(self) -> float | None:
        """Do what is due now; return the seconds until something may be (at most
        :data:`MAX_WAIT`), or ``None`` when the lock was lost (stop now)."""
        now = self.clock.time()
        if now - self._renewed_at >= self.lease / 3:
            # (a renewal that fails may be a busy file: the lock is still ours if nobody took it)
            if not self.store.renew(self.scope, self.lease) and self.store.acquire(
                self.scope, self.lease
            ):
                self._say(f"the lock for {self.scope} was taken over: stopping")
                return None
            self._renewed_at = now
        if self._reload_due(now):
            self.reload()
        wait = MAX_WAIT
        for slot in list(self.slots.values()):
            self._poll(slot, now)
            wait = min(wait, self._due(slot, now))
        return max(wait, 0.0)

    def _reload_due(self, now: float) -> bool:
        changed = self._changed
        if changed is None:
            return now - self._reloaded_at >= RELOAD_EVERY
        seen = changed()
        if seen != self._seen:
            self._seen = seen
            return True
        if now - self._stamped_at >= RELOAD_EVERY:  # (a watcher that missed an edit, or none)
            self._stamped_at = now
            if _stamps(self._watched) != self._stamp:
                return True
        return now - self._reloaded_at >= RELOAD_ANYWAY

    def reload(self, first: bool = False) -> None:
        """Read the job definitions again; keep the last good set when they have errors
        (reported once)."""
        self._reloaded_at = self._stamped_at = self.clock.time()
        loaded = self._load()
        self._watched = tuple(loaded.watch)
        self._stamp = _stamps(self._watched)
        errors = tuple(loaded.errors)
        if errors:
            if errors != self._reported:
                for error in errors:
                    self._say(f"error: {error} (the jobs as they were are kept)")
                self._reported = errors
            if not first:
                return
        else:
            self._reported = ()
        now = self.clock.time()
        self.expectations = dict(loaded.expectations)
        jobs: Mapping[str, Job] = loaded.jobs
        for name, kept in list(self.slots.items()):
            if name in jobs:
                continue
            if kept.process is None:
                del self.slots[name]
            elif not kept.removed:  # its run goes on: dropped when it ends, no more fires
                kept.removed, kept.next, kept.queued, kept.retry_at = True, None, False, None
                self._say(f"{name}: removed from the settings; its run goes on until it ends")
        for name, job in jobs.items():
            slot = self.slots.get(name)
            if slot is not None and slot.job == job and not slot.removed:
                continue
            if slot is None:
                slot = self.slots[name] = _Slot(job)
                self._catch_up(slot, now)
            else:  # changed, or back while the run of its removal goes on
                slot.job, slot.removed = job, False
            slot.next = _next(job, now)

    # -- expected runs -------------------------------------------------------------------
    def expected(self) -> dict[str, Expectation]:
        """The expected runs to judge: those of the settings, and one per job (a job is
        expected at its times, give or take :data:`JOB_GRACE`) unless ``[expect.NAME]`` of
        its name says otherwise; a removed job (its last run still going) has none."""
        from ..core.jobs import Expectation

        found: dict[str, Expectation] = {}
        for name, slot in self.slots.items():
            if not slot.removed:
                job = slot.job
                found[name] = Expectation(name, job.schedule, JOB_GRACE, None, job.source)
        found.update(self.expectations)
        return found

    def delivery(self, name: str) -> tuple[tuple[str, ...], tuple[str, ...] | None]:
        """The ``on`` and ``channels`` the notices of the expected run ``name`` go with:
        for a job's own expected run, the job's (an ``on`` without ``missed`` keeps them
        from being sent; no ``channels``: those of the settings); else ``("missed",)`` and
        the settings' channels."""
        slot = self.slots.get(name)
        if slot is None or slot.removed or name in self.expectations:
            return ("missed",), None
        on, channels = job_delivery(slot.job)
        return (("missed",) if on is None else on), channels

    # -- the parts of a step -------------------------------------------------------------
    def _catch_up(self, slot: _Slot, now: float) -> None:
        """A job seen for the first time by this scheduler: was a fire missed while none
        ran? With ``catch_up = "latest"`` it runs once now."""
        job = slot.job
        previous = self.store.last_fire(job.name, scope=self.scope)
        latest = last_fire(job.schedule, _utc(now))
        if latest is None:
            return
        if previous is None:  # a new job: it starts with its next fire
            self.store.set_last_fire(job.name, latest.timestamp(), scope=self.scope)
            return
        if latest.timestamp() > previous and job.catch_up == "latest":
            missed = _local(latest, _fine(job))
            self._say(f"{job.name}: a run was missed at {missed}: running it now")
            self._fire(slot, now, latest.timestamp())
        elif latest.timestamp() > previous:
            self.store.set_last_fire(job.name, latest.timestamp(), scope=self.scope)

    def _due(self, slot: _Slot, now: float) -> float:
        """Start what is due for ``slot``; the seconds until its next event."""
        wait = MAX_WAIT
        if slot.retry_at is not None and slot.process is None:
            if now >= slot.retry_at:
                slot.retry_at = None
                self._start(slot, now, slot.attempt + 1)
            else:
                wait = min(wait, slot.retry_at - now)
        fire = slot.next
        if fire is not None:
            at = fire.timestamp()
            if now >= at:
                slot.next = _next(slot.job, now)
                self._fire(slot, now, at)
            else:
                wait = min(wait, at - now)
        return wait

    def _fire(self, slot: _Slot, now: float, at: float) -> None:
        """A fire of ``slot``'s job at ``at``: start it, or skip or queue it when it runs."""
        self.store.set_last_fire(slot.job.name, at, scope=self.scope)
        if slot.process is not None or slot.retry_at is not None or self._elsewhere(slot):
            if slot.job.overlap == "queue":
                slot.queued = True
            else:
                due = _local(at, _fine(slot.job))
                self._say(f"{slot.job.name}: still running: the run due at {due} is skipped")
                self._observe("skipped", slot.job.name, {"at": at})
            return
        self._start(slot, now, 1)

    def _elsewhere(self, slot: _Slot) -> bool:
        """Whether a run of the job started by another (earlier) scheduler still goes."""
        marker = self.store.marker(slot.job.name, scope=self.scope)
        return marker is not None and (slot.process is None or marker.pid != slot.process.pid)

    def _start(self, slot: _Slot, now: float, attempt: int) -> None:
        """Start a run of ``slot``'s job: its marker is recorded first, in this process's
        name, and the run is started only when that is accepted (a run already going
        elsewhere is never doubled, and no run is started to be killed); the marker then
        names the run's process."""
        job = slot.job
        me = self.store.owner.pid
        refused = self.store.begin_run(job.name, me, now, attempt, scope=self.scope)
        if refused is not None:  # (raced by another scheduler's run: not ours to double)
            why = refused.error or f"a run of it goes on (pid {refused.pid})"
            self._say(f"{job.name}: not started: {why}")
            return
        argv = job_argv(job, self.python, attempt)
        env = {**os.environ, **dict(job.env)}
        cwd = job.cwd if job.cwd is None or os.path.isabs(job.cwd) else None
        if job.cwd is not None and cwd is None:
            cwd = os.path.join(self.workdir or os.getcwd(), job.cwd)
        try:
            process = self._spawn(
                argv, cwd=cwd or self.workdir, env=env, start_new_session=os.name == "posix"
            )
        except OSError as exc:
            self.store.end_run(job.name, me, scope=self.scope)
            self._say(f"{job.name}: cannot start: {exc.strerror or exc}")
            return
        self.store.hand_over(job.name, process.pid, scope=self.scope)
        slot.process, slot.attempt, slot.started = process, attempt, now
        self._observe("started", job.name, {"attempt": attempt, "pid": process.pid})
        tries = f" (attempt {attempt} of {job.retries})" if job.retries > 1 else ""
        self._say(f"{job.name}: started{tries}, pid {process.pid}")

    def _poll(self, slot: _Slot, now: float) -> None:
        process = slot.process
        if process is None or process.poll() is None:
            return
        self._finished(slot)
        code = process.returncode
        job = slot.job
        if slot.removed:
            del self.slots[job.name]
            return
        if code != 0 and code != EXIT_TIMED_OUT and slot.attempt < job.retries:
            # the remote channels' rule: full jitter, doubling from RETRY_BASE to RETRY_CAP
            backoff = Backoff(base=RETRY_BASE, cap=RETRY_CAP, random=self._random)
            slot.retry_at = now + backoff.delay(slot.attempt)
            self._say(f"{job.name}: exit status {code}; trying again")
            info: dict[str, object] = {"code": code, "attempt": slot.attempt}
            info["wait"] = slot.retry_at - now
            self._observe("retry", job.name, info)
        elif slot.queued:
            slot.queued = False
            self._start(slot, now, 1)

    def _finished(self, slot: _Slot, final: bool = False) -> None:
        process = slot.process
        if process is None:
            return
        self.store.end_run(slot.job.name, process.pid, scope=self.scope)
        # (and the marker in this process's name, if it could not be handed over)
        self.store.end_run(slot.job.name, self.store.owner.pid, scope=self.scope)
        slot.process = None
        code = process.returncode
        self._say(f"{slot.job.name}: ended, exit status {code}")
        if self._observer is not None:
            info: dict[str, object] = {
                "code": code,
                "state": run_state(code, stopping=final),
                "duration": max(0.0, self.clock.time() - slot.started),
                "attempt": slot.attempt,
            }
            self._observe("ended", slot.job.name, info)
        if final:
            slot.retry_at = None
            slot.queued = False

    def _observe(self, event: str, job: str, info: dict[str, object]) -> None:
        if self._observer is None:
            return
        try:
            self._observer(event, job, info)
        except Exception:
            log.exception("nbremind schedule: the %s hook of %s failed", event, job)

    def _say(self, line: str) -> None:
        print(printable(f"nbremind schedule: {line}"), file=self._out, flush=True)


def _stamps(paths: tuple[Path, ...]) -> tuple[object, ...]:
    """What tells a change of ``paths``: each one's size and modification time (or that it
    is not there)."""
    found: list[object] = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            found.append((str(path), None))
        else:
            found.append((str(path), info.st_mtime_ns, info.st_size))
    return tuple(found)


def _next(job: Job, now: float) -> dt.datetime | None:
    try:
        return next_fire(job.schedule, _utc(now))
    except ValueError:
        return None


def _utc(seconds: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def _fine(job: Job) -> bool:
    """Whether the times of ``job`` are written to the second (it runs more than once a
    minute)."""
    every = job.schedule.every
    return every is not None and every < 60


def _local(when: float | dt.datetime, seconds: bool = False) -> str:
    moment = when if isinstance(when, dt.datetime) else _utc(when)
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def _signal_group(process: subprocess.Popen[bytes] | None, signum: int) -> None:
    """Send ``signum`` to the process group of a run (its own session), else the process."""
    if process is None or process.poll() is not None:
        return
    try:
        if os.name == "posix":
            os.killpg(process.pid, signum)
        else:
            process.send_signal(signum)
    except (ProcessLookupError, PermissionError):
        pass
