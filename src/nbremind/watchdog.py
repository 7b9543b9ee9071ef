"""The kernel-death watchdog: a small process that reports the tasks of a process that died.

A kernel killed for memory, by a segfault or by ``SIGKILL`` runs no ``finally`` and no
``atexit``: its running tasks would stay ``running`` in the history forever and nobody would
be told. So when the first task starts in an IPython kernel (or in a script that asked with
``remind(..., watchdog=True)``), the session starts this module as a separate process::

    python -m nbremind.watchdog --pid P --pid-start T --fd F [--data-dir D] [--config-dir C]

It is a child of the watched process in a session of its own (a kill of the kernel's process
group does not reach it), with no stdin or stdout. It holds the read end ``F`` of a pipe whose
write end only the watched process holds. The watched process writes one JSON line with the
settings it was given by ``configure()`` when it starts the watchdog, and ``bye`` at a clean
exit (``atexit``); the watchdog then exits at once, silently.

The watchdog waits, without polling, on the pipe and on a ``pidfd`` of the watched process
(where the platform has one; else it checks every half second). Once a second it samples the
watched process's memory (RSS), so the last value before a death is known. When the process
is gone without having said ``bye``, the watchdog:

1. marks every ``running`` task of that process (pid and start time) in the run history
   ``failed``, reason ``process died`` -- with the signal when it can be read (Linux: the exit
   status of the not-yet-reaped process in ``/proc``; the watchdog is not the kernel's parent,
   so this is best effort) and the last sampled RSS;
2. sends one failure notice per such task, "✗ NAME failed" / "process died ...", through the
   configured channels (desktop and remote), by the normal dispatcher and outbox; it waits
   for their delivery (``exit_timeout``), then exits.

A death with no running task is silent. The watchdog never outlives its process by more than
that delivery, and never starts anything that outlives it.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .core.log import logger
from .runtime.watchdog_link import BYE

if TYPE_CHECKING:
    from .core.config import Config
    from .core.notice import Notice

__all__ = ["main", "report_death", "watch"]

log = logger()

#: Seconds between checks of the watched process where no pidfd can be waited on.
CHECK_EVERY = 0.5
#: Seconds between two samples of the watched process's memory.
RSS_EVERY = 1.0


# -- the watchdog process -------------------------------------------------------------------
class _Watched:
    """The watched process: liveness, memory, and how it ended."""

    def __init__(self, pid: int, start: float) -> None:
        from .runtime.sampling import ProcessSampler

        self.pid = pid
        self.start = start
        self.rss: int | None = None
        self._sampler = ProcessSampler(pid, every=RSS_EVERY)
        self._found = self._sampler.attach()
        #: The signal that ended it, when it could be read (see :meth:`signal_name`).
        self.exit_signal: str | None = None
        self.sample()  # at once: the process may die before the first second is over
        self.pidfd: int | None = None
        if hasattr(os, "pidfd_open"):
            with contextlib.suppress(OSError):
                self.pidfd = os.pidfd_open(pid)

    def alive(self) -> bool:
        import socket

        from .store.process import Owner, owner_alive

        return self._found and owner_alive(Owner(self.pid, self.start, socket.gethostname()))

    def sample(self) -> None:
        """Read the process's memory (at most once per :data:`RSS_EVERY` s); the last good
        value stays when a read fails."""
        if self._found:
            rss = self._sampler.rss()
            if rss is not None:
                self.rss = rss

    def signal_name(self) -> str | None:
        """The signal that ended the process, read from its exit status while it waits to be
        reaped (Linux ``/proc/PID/stat``, field 52); ``None`` when it cannot be known."""
        try:
            text = Path(f"/proc/{self.pid}/stat").read_text()
            fields = text[text.rindex(")") + 2 :].split()
            status = int(fields[49])  # field 52; the list starts at field 3
        except (OSError, ValueError, IndexError):
            return None
        if not os.WIFSIGNALED(status):
            return None
        number = os.WTERMSIG(status)
        try:
            return signal.Signals(number).name
        except ValueError:
            return f"signal {number}"

    def close(self) -> None:
        if self.pidfd is not None:
            with contextlib.suppress(OSError):
                os.close(self.pidfd)


def _reason(signal_name: str | None, rss: int | None) -> str:
    from .core.notice import format_size

    reason = "process died"
    if signal_name:
        reason += f" ({signal_name})"
    if rss is not None:
        reason += f", last sampled RSS {format_size(rss)}"
    return reason


def watch(watched: _Watched, fd: int) -> tuple[bool, dict[str, Any]]:
    """Wait until the watched process says ``bye`` (``(False, settings)``) or is gone
    (``(True, settings)``); ``settings`` are the last ones it sent."""
    settings: dict[str, Any] = {}
    buffer = b""
    pipe_open = True
    while True:
        waits = ([fd] if pipe_open else []) + ([watched.pidfd] if watched.pidfd is not None else [])
        timeout = RSS_EVERY if watched.pidfd is not None else CHECK_EVERY
        ready = select.select(waits, [], [], timeout)[0] if waits else []
        if not waits:
            time.sleep(timeout)
        if pipe_open and fd in ready:
            data = os.read(fd, 65536)
            if not data:
                pipe_open = False  # it died, or it closed the pipe: the checks below tell
            buffer += data
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip() == BYE:
                    return False, settings
                with contextlib.suppress(ValueError, TypeError, KeyError, AttributeError):
                    settings = dict(json.loads(line)["settings"])
        gone = watched.pidfd is not None and watched.pidfd in ready
        check = gone or not pipe_open or watched.pidfd is None
        if check and not watched.alive():
            watched.exit_signal = watched.signal_name()  # before it is reaped
            return True, settings
        watched.sample()


def _history(config: Config) -> Any:
    """The run history (``None`` when it is turned off, unusable or not there)."""
    try:
        module = importlib.import_module("nbremind.store.runs")
        history = module.History.open(config)
    except Exception as exc:
        log.warning("nbremind watchdog: the run history cannot be opened: %s", exc)
        return None
    if history is None:
        log.warning(
            "nbremind watchdog: the run history is off or unusable: "
            "the tasks of the dead process are not known"
        )
    return history


def report_death(watched: _Watched, config: Config) -> list[str]:
    """Mark the running tasks of the dead process failed and notify; their names."""
    reason = _reason(watched.exit_signal, watched.rss)
    history = _history(config)
    if history is None:
        return []
    try:
        rows = history.running(watched.pid) or []
        names = history.mark_process_died(watched.pid, watched.start, reason, watched.rss)
        if names:
            now = time.time()
            notices = [
                _notice(row, reason, watched, now)
                for row in rows
                if row.get("name") in names and _same_process(row, watched)
            ]
            _send(notices, config, history)
        return list(names)
    finally:
        with contextlib.suppress(Exception):
            history.close()


def _send(notices: list[Notice], config: Config, history: Any) -> None:
    """Deliver ``notices`` through the normal dispatcher and outbox (waiting up to
    ``exit_timeout``), then count the delivered ones in their history rows."""
    from .runtime.session import Session

    session = Session(config)
    delivered: list[str] = []
    session.dispatcher.listen(lambda d: delivered.append(d.notice_id) if d.ok else None)
    try:
        for notice in notices:
            session.send(notice)
        session.flush(config.exit_timeout)
    finally:
        session.close(config.exit_timeout)
    for notice in notices:
        count = delivered.count(notice.id)
        if count:
            with contextlib.suppress(Exception):
                history.add_notices(notice.task.id, count)


def _same_process(row: Mapping[str, Any], watched: _Watched) -> bool:
    start = row.get("pid_start")
    return start is None or abs(float(start) - watched.start) < 0.5


def _notice(row: Mapping[str, Any], reason: str, watched: _Watched, now: float) -> Notice:
    from .core.notice import make_notice
    from .core.task import TaskError, TaskSnapshot, TaskState

    start = row.get("start")
    total = row.get("total")
    n = int(row.get("n") or 0)
    snapshot = TaskSnapshot(
        id=str(row.get("id")),
        name=str(row.get("name")),
        kind=str(row.get("kind") or "block"),
        state=TaskState.FAILED,
        parent_id=row.get("parent_id"),
        source=str(row.get("source") or ""),
        host=str(row.get("host") or ""),
        pid=watched.pid,
        start=start,
        end=now,
        elapsed=max(0.0, now - float(start)) if start is not None else 0.0,
        n=n,
        total=total,
        progress=n / total if total else None,
        rate=None,
        eta=None,
        rss=watched.rss,
        peak_rss=row.get("peak_rss"),
        error=TaskError(reason, ""),
        unit=row.get("unit"),
    )
    return make_notice("failure", snapshot, created=now, key="process-died")


def _config(cwd: str | None, settings: Mapping[str, Any]) -> Config:
    """The settings files and environment as the watched process read them, then what it
    was given by ``configure()``; a setting that cannot be used is left out."""
    from .core.config import Config
    from .settings.files import load_settings

    try:
        config = load_settings(cwd).config
    except Exception:
        config = Config()
    from .settings.live import overlay  # every value at once: channels may name channel_defs

    try:
        config, _applied = overlay(config, settings, {})
    except Exception as exc:
        log.warning("nbremind watchdog: the watched process's settings not used: %s", exc)
    return config


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m nbremind.watchdog",
        description="Watch a process; if it dies while tasks run, mark them failed and notify.",
    )
    parser.add_argument("--pid", type=int, required=True, help="the process to watch")
    parser.add_argument(
        "--pid-start",
        type=float,
        required=True,
        help="its start time (psutil create_time), to tell it from a later "
        "process with the same pid",
    )
    parser.add_argument(
        "--fd",
        type=int,
        default=None,
        help="read end of the pipe the process writes 'bye' to at a clean exit",
    )
    parser.add_argument("--data-dir", default=None, help="folder of the history/outbox file")
    parser.add_argument("--config-dir", default=None, help="folder of the user settings file")
    parser.add_argument("--cwd", default=None, help="the process's working directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m nbremind.watchdog``; returns the exit code."""
    args = _parse(argv)
    logging.basicConfig(format="%(asctime)s nbremind watchdog: %(message)s")
    from .settings.files import CONFIG_DIR_VAR
    from .store.outbox import ENV_DATA_DIR

    if args.data_dir:
        os.environ[ENV_DATA_DIR] = args.data_dir
    if args.config_dir:
        os.environ[CONFIG_DIR_VAR] = args.config_dir
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the notebook
    watched = _Watched(args.pid, args.pid_start)
    try:
        # even if it is gone already (killed while this process was starting), the pipe
        # tells a clean exit ("bye" waits in it) from a death
        fd = args.fd if args.fd is not None else os.open(os.devnull, os.O_RDONLY)
        died, settings = watch(watched, fd)
        if died:
            report_death(watched, _config(args.cwd, settings))
        return 0
    except Exception:
        log.exception("failed")
        return 1
    finally:
        watched.close()


if __name__ == "__main__":
    sys.exit(main())
