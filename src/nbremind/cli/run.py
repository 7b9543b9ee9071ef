"""``nbremind run -- CMD``: a command as a task, its output, signals and exit code untouched.

The command runs in a process group of its own, with nbremind's standard streams, so its
output passes through byte for byte. Signals nbremind receives (Ctrl-C, ``kill``) are
forwarded to that group; after one asking it to stop (SIGINT, SIGTERM, SIGHUP), the group
gets SIGKILL if it has not ended within a grace period. The task's memory is the RSS of
the whole process tree, sampled on the session's ticker (once a second; on every tick with
``mem_limit``). At the timeout
the group gets SIGTERM, then SIGKILL after a grace period, and the task ends ``timed_out``.
Past ``mem_limit`` the group gets SIGKILL at once, as from the OOM killer, and the task ends
``failed`` with :class:`~nbremind.core.task.TaskMemoryLimit`.

``nbremind run --job NAME`` is how ``nbremind schedule`` starts each run of a job: the task
is named NAME and of kind ``job`` from its start (its start notice and history row say so),
``--attempt N/M`` adds the note "attempt N of M" to its notices, its notices come from "job
NAME", and a watcher process records the run failed if nbremind itself is killed while the
command runs. A job run whose command cannot start (or whose ``stall`` cannot be watched)
is recorded failed and told as any failure, so a run that never started is heard of.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

from ..api.reminder import Reminder, remind
from ..core.notice import format_duration, format_size
from ..core.task import Ended, Task, TaskMemoryLimit, TaskState, TaskTimeout
from ..runtime.session import Session

if TYPE_CHECKING:
    from ..delivery.dispatcher import Delivery

__all__ = [
    "EXIT_MEMORY_LIMIT",
    "EXIT_TIMED_OUT",
    "CommandCancelled",
    "CommandFailed",
    "CommandTimedOut",
    "RunResult",
    "attempt_note",
    "command_name",
    "run_command",
]

#: Exit status of ``nbremind run`` when the command passed its timeout (as GNU ``timeout``).
EXIT_TIMED_OUT = 124
#: Exit status of ``nbremind run`` when the command was stopped at its ``mem_limit``: that of
#: a command the OOM killer ended (128 + SIGKILL).
EXIT_MEMORY_LIMIT = 128 + 9
#: Seconds between SIGTERM and SIGKILL when a command is stopped at its timeout, and between
#: a stop signal passed on to the command (SIGINT, SIGTERM, SIGHUP) and SIGKILL: below the
#: scheduler's own grace, so the command's group never outlives its ``nbremind run``.
KILL_GRACE = 5.0
#: Seconds ``--stall`` waits for the GPUs to answer before the command starts.
GPU_ANSWER_TIMEOUT = 10.0
#: Seconds between checks for a stop request while the command runs.
_POLL = 0.2
#: Characters of the command line kept in a task's default name.
NAME_CHARS = 40
_FORWARDED = tuple(
    getattr(signal, name)
    for name in ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2")
    if hasattr(signal, name)
)
#: Forwarded signals that ask the command to stop: a command that then ends unsuccessfully
#: was cancelled (Ctrl-C, ``kill``, the scheduler stopping), not failed.
_STOPS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


class CommandFailed(Ended):
    """A command that did not succeed; its words say how ("exit status 3")."""


class CommandTimedOut(Ended, TaskTimeout):
    """A command stopped at its timeout; its words say so."""


class CommandCancelled(Ended, KeyboardInterrupt):
    """A command that ended unsuccessfully after nbremind passed it a signal asking it to
    stop (SIGINT, SIGTERM, SIGHUP): the task ends ``cancelled``; its words name the signal."""


@dataclass(frozen=True)
class RunResult:
    """What ``run_command`` reports: the exit status to use, the task's end state, why
    none of its notices could be delivered (``""``: delivered, or none was sent), and why
    nbremind stopped the command (``""``: it did not)."""

    exit_code: int
    state: TaskState
    peak_rss: int | None
    undelivered: str = ""
    stopped: str = ""


def command_name(argv: Sequence[str]) -> str:
    """A task name for ``argv``: the command line, shortened (``sh -c 'sleep 1; exit 3'``);
    for ``python script.py`` the script's file name, for ``python -m mod`` the module."""
    program = os.path.basename(argv[0]) or argv[0]
    rest = list(argv[1:])
    if program.lower().startswith(("python", "pypy")) and rest:
        if rest[0] == "-m" and len(rest) > 1:
            return rest[1]
        if not rest[0].startswith("-"):
            return os.path.basename(rest[0]) or rest[0]
    text = shlex.join([program, *rest])
    return text if len(text) <= NAME_CHARS else text[: NAME_CHARS - 1] + "…"


def attempt_note(text: str, option: str = "--attempt") -> str:
    """The note a retried run carries, from ``"N"`` or ``"N/M"`` (attempt N of M):
    ``"attempt 2 of 3"``; a value that is not a positive attempt number (or N above M)
    raises ``ValueError`` naming ``option`` and the value."""
    match = re.fullmatch(r"\s*([0-9]+)(?:/([0-9]+))?\s*", str(text))
    attempt = int(match[1]) if match else 0
    attempts = int(match[2]) if match and match[2] else None
    if attempt < 1 or (attempts is not None and attempts < attempt):
        raise ValueError(
            f"{option}: {text!r} is not an attempt number: give N or N/M (attempt N of M), "
            "e.g. 2 or 2/3"
        )
    return f"attempt {attempt}" if attempts is None else f"attempt {attempt} of {attempts}"


def run_command(
    argv: Sequence[str],
    name: str | None = None,
    *,
    kind: str = "command",
    notes: Sequence[str] = (),
    watchdog: bool = False,
    session: Session | None = None,
    kill_grace: float = KILL_GRACE,
    **options: Any,
) -> RunResult:
    """Run ``argv`` as a task of ``kind`` (``"command"``; ``"job"`` for a scheduled job's
    run) with ``notes`` attached (shown in its notices; ``remind()``'s options apply);
    return its exit status. ``watchdog=True``: when nbremind itself is killed while the
    command runs, a watcher process records the task failed and notifies.

    A command that cannot start raises ``FileNotFoundError`` / ``PermissionError`` (for
    ``kind="job"`` once the run is recorded failed, "cannot start: ...", and told). Exit
    status 0 -> succeeded; other -> failed ("exit status N"); killed by a signal -> failed
    ("killed by SIGNAME", exit status 128 + N); past ``timeout`` ->
    timed_out (exit status 124); past ``mem_limit`` -> failed with ``TaskMemoryLimit``
    (exit status 137). ``stall`` needs a GPU that answers (a command reports no progress):
    without one it raises ``ValueError`` before the command starts (for ``kind="job"``
    once the run is recorded failed and told). After a stop signal passed on (SIGINT,
    SIGTERM, SIGHUP), the group gets SIGKILL if it has not ended within ``kill_grace``
    seconds; an unsuccessful end then is ``cancelled`` ("stopped by SIGTERM").
    """
    if not argv:
        raise ValueError("nbremind run: no command given (put it after --)")
    timeout = options.pop("timeout", None)
    checked = remind(
        name or command_name(argv),
        session=session,
        timeout=timeout,
        interrupt=timeout is not None,
        **options,
    )
    # the same reminder, of this kind from its start (its start notice and history row)
    reminder = Reminder(checked.name, checked.options, checked.total, session, kind)
    reminder.watchdog = watchdog
    #: where the task's notices say it comes from (the session's script otherwise)
    source = f"job {checked.name}" if kind == "job" else None
    if options.get("stall") is not None:  # (a stall the settings give watches what it can)
        try:
            _check_stall(reminder.session)
        except ValueError as exc:
            if kind == "job":
                _record_not_started(reminder, notes, source, str(exc))
            raise
    # the options the task starts with: the settings default those the call leaves unset
    effective = reminder.session.with_option_defaults(checked.options)
    guarded = effective.mem_limit is not None
    clock = reminder.session.clock
    started = (clock.monotonic(), clock.time())  # the duration counts the command's start-up
    # a job's command may say why it failed (a notebook's failing cell), in a file of its own
    reason_file = _reason_file() if kind == "job" else None
    env = None if reason_file is None else {**os.environ, REASON_VARIABLE: reason_file}
    stopping = threading.Event()
    asked: list[int] = []  # the signals asking the command to stop that were passed on
    task: Task | None = None
    started_child: list[subprocess.Popen[bytes]] = []  # (the command, once it runs)
    early: list[int] = []  # signals that came before the command ran: passed on after

    def forward(signum: int, frame: FrameType | None) -> None:
        if not started_child:
            early.append(signum)
        elif task is not None and task.interrupted_by_timeout:
            stopping.set()  # nbremind's own interrupt at the timeout: stop the command
            _signal_group(started_child[0], signal.SIGTERM)
        else:
            if signum in _STOPS:
                asked.append(signum)
            _signal_group(started_child[0], signum)

    # the handlers before the command starts: a signal that comes as it starts is its
    in_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, forward) for s in _FORWARDED} if in_main else {}
    try:
        child = subprocess.Popen(list(argv), start_new_session=os.name == "posix", env=env)
    except BaseException as exc:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if reason_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(reason_file)
        if kind == "job" and isinstance(exc, OSError):
            _record_not_started(reminder, notes, source, f"cannot start: {_os_reason(exc)}")
        raise
    started_child.append(child)
    for signum in early:
        forward(signum, None)
    outcomes: list[Delivery] = []  # the command's notices' deliveries, as they happen
    stop_listening = reminder.session.dispatcher.listen(outcomes.append)
    # the guard acts within a tick of the tree passing the limit: it reads the tree each tick
    tree = _TreeMemory(child.pid, every=0.0 if guarded else 1.0)
    if effective.stall is not None or effective.gpu_mem is not None:
        _watch_gpus_of(reminder.session, tree)
    try:
        with _sourced(reminder.session, source), reminder as task:
            task.start_mono, task.start_wall = started
            for note in notes:
                task.note(note)
            if guarded:  # (before the tree is judged: the stop is the group's, not a raise)
                task.stopper = lambda reason: _kill_group(child)
            task.rss_source = tree.sample
            code = _wait(child, lambda: stopping.is_set() or bool(asked), kill_grace)
            # the tree's peak before the task ends, so its end (and the history) carries it
            task.peak_rss = max(tree.peak() or 0, task.peak_rss or 0) or None
            if stopping.is_set():
                limit = format_duration(task.options.timeout or 0.0)
                raise CommandTimedOut(f"stopped at its timeout of {limit}")
            if code != 0 and asked and task.stopped_by is None:
                raise CommandCancelled(f"stopped by {signal.Signals(asked[0]).name}")
            if code != 0:
                told = _told_reason(reason_file) if reason_file is not None else ""
                described = _describe(code)
                raise CommandFailed(f"{told} ({described})" if told else described)
    except TaskTimeout:
        pass  # recorded as timed_out by the task; the exit status says so below
    except (CommandFailed, CommandCancelled):
        pass  # recorded as failed or cancelled; the command's exit status is passed on below
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if child.poll() is None:  # nbremind itself failed: never leave the command behind
            _signal_group(child, signal.SIGKILL)
            child.wait()
        if reason_file is not None:
            with contextlib.suppress(OSError):
                os.unlink(reason_file)
    assert task is not None
    peak = tree.peak()
    task.peak_rss = max(peak or 0, task.peak_rss or 0) or None
    try:
        undelivered = _undelivered(reminder.session, task, outcomes)
    finally:
        stop_listening()
    if task.state is TaskState.TIMED_OUT:
        return RunResult(EXIT_TIMED_OUT, task.state, task.peak_rss, undelivered)
    reason = task.stopped_by
    if isinstance(reason, TaskMemoryLimit):
        stopped = f"memory limit ({format_size(reason.used)} of {format_size(reason.limit)})"
        return RunResult(EXIT_MEMORY_LIMIT, task.state, task.peak_rss, undelivered, stopped)
    code = child.returncode
    return RunResult(code if code >= 0 else 128 - code, task.state, task.peak_rss, undelivered)


@contextlib.contextmanager
def _sourced(session: Session, source: str | None) -> Iterator[None]:
    """Within: the tasks that start come from ``source`` (``None``: the session's script)."""
    if source is None:
        yield
        return
    before = session.source
    session.source = source
    try:
        yield
    finally:
        session.source = before


def _os_reason(exc: OSError) -> str:
    """Why a command could not start: "No such file or directory: 'nosuchprog'"."""
    reason = exc.strerror or str(exc)
    return reason if exc.filename is None else f"{reason}: {exc.filename!r}"


def _record_not_started(
    reminder: Reminder, notes: Sequence[str], source: str | None, why: str
) -> None:
    """Record a run that could not start as a failed task saying ``why``, and tell it
    through its channels (waiting for them as a finished command's run does)."""
    reminder.watchdog = False  # (nothing runs that nbremind's death could leave unrecorded)
    session = reminder.session
    outcomes: list[Delivery] = []
    stop_listening = session.dispatcher.listen(outcomes.append)
    try:
        try:
            with _sourced(session, source), reminder as task:
                for note in notes:
                    task.note(note)
                raise CommandFailed(why)
        except CommandFailed:
            pass
        _undelivered(session, task, outcomes)
    finally:
        stop_listening()


def _check_stall(session: Session) -> None:
    """``stall`` on a command watches its GPU (it reports no progress): raise ``ValueError``
    when none answers here. The session's sampler is asked on the loop thread, the one
    that reads it (and then reads it for the ticks)."""
    import concurrent.futures  # (only here: a command without --stall has no use for it)

    async def ask() -> str | None:
        readings = session.readings
        sampler = readings.gpu_sampler
        if sampler is None:
            from ..runtime.gpu import GpuSampler

            sampler = readings.gpu_sampler = GpuSampler()
        if sampler.reading(session.clock.monotonic()) is not None:
            return None
        return sampler.why_not() or "no reading"

    try:
        why = session.ticker.submit(ask()).result(GPU_ANSWER_TIMEOUT)
    except concurrent.futures.TimeoutError:
        why = f"no answer in {GPU_ANSWER_TIMEOUT:g} s"
    if why is not None:
        raise ValueError(
            f"--stall needs progress: a command reports none, and no GPU answers here ({why})"
        )


def _undelivered(session: Session, task: Task, outcomes: list[Delivery]) -> str:
    """Which of ``task``'s notices no channel took, and why, once they were all tried
    (within the ``exit_timeout`` setting); ``""`` when each reached a channel, none was sent,
    or some are still being tried (the session's exit speaks for those). ``outcomes``: the
    deliveries recorded while the command ran."""
    if not session.flush(session.config.exit_timeout):
        return ""
    prefix = f"{task.id}:"
    tried: dict[str, list[Delivery]] = {}
    for delivery in list(outcomes):
        if delivery.notice_id.startswith(prefix):
            tried.setdefault(delivery.notice_id, []).append(delivery)
    lost = [ds for ds in tried.values() if not any(d.ok for d in ds)]
    if not lost:
        return ""
    titles = dict.fromkeys(repr(ds[0].title) for ds in lost)
    reasons = dict.fromkeys(f"{d.channel}: {d.error or 'not delivered'}" for ds in lost for d in ds)
    return f"{', '.join(titles)} was not delivered: {'; '.join(reasons)}"


def _wait(child: subprocess.Popen[bytes], stopping: Callable[[], bool], grace: float) -> int:
    """Wait for the command; once ``stopping()`` (it was asked to stop), SIGKILL its group
    when the group has not ended ``grace`` seconds later (what is left of the group once
    the command itself ended included)."""
    stop_at: float | None = None
    code: int | None = None
    while True:
        if code is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                code = child.wait(_POLL)
        if stop_at is None and stopping():
            stop_at = time.monotonic()
        if code is not None and (stop_at is None or not _group_alive(child)):
            return code
        if stop_at is not None and time.monotonic() - stop_at >= grace:
            _signal_group(child, signal.SIGKILL)
            return child.wait() if code is None else code
        if code is not None:  # (the rest of the group, asked to stop, has the same grace)
            time.sleep(_POLL)


def _group_alive(child: subprocess.Popen[bytes]) -> bool:
    """Whether a process of the command's group is still there."""
    if os.name != "posix":
        return False
    try:
        os.killpg(child.pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    """End the command's whole process group at once (from the loop thread, at its
    ``mem_limit``): SIGKILL, as the OOM killer would; the command's end is told as usual."""
    if child.returncode is None:  # not yet reaped: its group is still its own
        _signal_group(child, signal.SIGKILL)


def _signal_group(child: subprocess.Popen[bytes], signum: int) -> None:
    try:
        if os.name == "posix":
            os.killpg(child.pid, signum)
        else:
            child.send_signal(signum)
    except (ProcessLookupError, PermissionError, OSError):
        pass


#: The variable naming the file where a command may say why it failed, in one line: the
#: failure notice then gives that line ("cell 3 raised KeyError: 'x' (exit status 1)").
REASON_VARIABLE = "NBREMIND_REASON_FILE"
_REASON_CHARS = 300


def _reason_file() -> str:
    """A fresh, empty file (private to this user) for the command's reason."""
    import tempfile

    handle, path = tempfile.mkstemp(prefix="nbremind-reason-", suffix=".txt")
    os.close(handle)
    return path


def _told_reason(path: str) -> str:
    """The first line the command wrote to its reason file (cut to 300 characters), or
    ``""``."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            line = handle.readline(_REASON_CHARS + 1).strip()
    except OSError:
        return ""
    return line if len(line) <= _REASON_CHARS else line[:_REASON_CHARS] + "…"


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit status {code}"


def _watch_gpus_of(session: Session, tree: _TreeMemory) -> None:
    """Let the session's GPU sampler count the command's process tree, not nbremind's own
    process (the command's GPU memory, the GPU idleness its ``stall`` watches)."""
    readings = session.readings
    sampler = readings.gpu_sampler
    if sampler is None:
        from ..runtime.gpu import GpuSampler

        sampler = readings.gpu_sampler = GpuSampler()
    sampler.pids = tree.pids


class _TreeMemory:
    """The RSS of a process and all its descendants, and the peak seen."""

    def __init__(self, pid: int, every: float = 1.0) -> None:
        from ..runtime.sampling import ProcessSampler

        self._sampler = ProcessSampler(pid, tree=True, every=every)

    def sample(self) -> int | None:
        """The tree's RSS now (read at most once per ``every`` seconds), or ``None``."""
        return self._sampler.rss()

    def pids(self) -> list[int]:
        """The process and its descendants now (the process alone when they cannot be
        read)."""
        root = self._sampler.pid
        try:
            import psutil

            return [root, *(p.pid for p in psutil.Process(root).children(recursive=True))]
        except Exception:
            return [root]

    def peak(self) -> int | None:
        """The largest total sampled, or the largest single descendant the OS reports."""
        peak = self._sampler.peak or 0
        try:
            import resource

            largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
            peak = max(peak, largest)
        except (ImportError, OSError):
            pass
        return peak or None
