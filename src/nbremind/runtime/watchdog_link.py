"""The watched half of the kernel-death watchdog: start the watcher program
(``python -m nbremind.watchdog``, see :mod:`nbremind.watchdog`) for this process when a
session wants it, and say ``bye`` to it at a clean exit."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.log import log_exception
from ..store.private_files import open_private, private_folder
from ..store.process import Owner

if TYPE_CHECKING:
    from ..core.config import Config
    from ..core.ticker import Ticker

__all__ = ["BYE", "LOG_FILE", "WatchdogHandle", "WatchdogLink", "in_kernel", "start_watchdog"]

#: What the watched process writes at a clean exit.
BYE = b"bye"
#: Name of the watcher's log file (errors only) in the data folder.
LOG_FILE = "watchdog.log"


class WatchdogHandle:
    """The watched process's link to its watchdog: the pid, and the pipe to say ``bye``."""

    def __init__(self, process: subprocess.Popen[bytes], write_fd: int) -> None:
        self.process = process
        self.pid = process.pid
        self._fd: int | None = write_fd
        self._owner = os.getpid()

    def stop(self) -> None:
        """A clean exit: tell the watchdog ``bye`` so it leaves silently. Never raises.

        A forked child that inherited the handle only closes its copy of the pipe.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        if os.getpid() == self._owner:
            with contextlib.suppress(OSError):
                os.write(fd, BYE + b"\n")
        with contextlib.suppress(OSError):
            os.close(fd)


class WatchdogLink:
    """Whether a session wants its process's watchdog, and the watchdog once started.

    ``config`` gives the settings in force, ``settings`` the values given to
    ``configure()`` (handed to the watchdog), ``closed`` whether the session closed.
    """

    def __init__(
        self,
        ticker: Ticker,
        *,
        config: Callable[[], Config],
        settings: Callable[[], Mapping[str, Any]],
        closed: Callable[[], bool],
    ) -> None:
        self.ticker = ticker
        self._config = config
        self._settings = settings
        self._closed = closed
        self._wanted = False
        #: The watchdog of this process, once started.
        self.handle: WatchdogHandle | None = None

    @property
    def pid(self) -> int | None:
        """The pid of the watchdog, once it was started."""
        handle = self.handle
        return None if handle is None else int(handle.pid)

    def task_started(self) -> None:
        """A task started: in a Jupyter kernel (with the ``watchdog`` setting on), want the
        watchdog."""
        wanted = self._wanted or "ipykernel" not in sys.modules or not self._config().watchdog
        if not wanted and in_kernel():
            self.want()

    def want(self) -> None:
        """Start the watchdog (once, on the loop thread). Never raises."""
        if self._wanted or self._closed():
            return
        self._wanted = True
        try:
            self.ticker.call_soon(self._start)
        except Exception:
            log_exception("starting the watchdog failed")

    def stop(self) -> None:
        """A clean exit: the watchdog, if any, leaves silently."""
        if self.handle is not None:
            self.handle.stop()

    def _start(self) -> None:
        if self._closed() or self.handle is not None:
            return
        try:
            from ..settings.files import user_config_dir
            from ..store.outbox import data_dir

            self.handle = start_watchdog(
                data_dir(self._config().data_dir), user_config_dir(), self._settings()
            )
        except Exception:
            log_exception("starting the watchdog failed")


def in_kernel() -> bool:
    """Whether this process is a running IPython kernel."""
    if "ipykernel" not in sys.modules:
        return False
    app = sys.modules.get("ipykernel.kernelapp")
    cls = getattr(app, "IPKernelApp", None)
    try:
        return bool(cls is not None and cls.initialized())
    except Exception:
        return False


def start_watchdog(
    data_dir: Path | None, config_dir: Path | None, settings: Mapping[str, Any]
) -> WatchdogHandle:
    """Start the watchdog of this process (raises ``OSError`` when it cannot be started).

    ``settings`` are the values given to ``configure()`` in this process; they are handed
    over the pipe (not the command line, where other users could read secrets).
    """

    me = Owner.current()
    read_fd, write_fd = os.pipe()
    args = [
        sys.executable,
        "-m",
        "nbremind.watchdog",
        "--pid",
        str(me.pid),
        "--pid-start",
        repr(me.start),
        "--fd",
        str(read_fd),
        "--cwd",
        os.getcwd(),
    ]
    if data_dir is not None:
        args += ["--data-dir", str(data_dir)]
    if config_dir is not None:
        args += ["--config-dir", str(config_dir)]
    stderr: Any = subprocess.DEVNULL
    with contextlib.suppress(OSError):
        if data_dir is not None:
            stderr = open_private(private_folder(data_dir) / LOG_FILE)  # 0600 in a 0700 folder
    try:
        process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            pass_fds=(read_fd,),
            start_new_session=True,
            close_fds=True,
        )
    except BaseException:
        os.close(write_fd)
        raise
    finally:
        os.close(read_fd)
        if stderr is not subprocess.DEVNULL:
            stderr.close()
    handle = WatchdogHandle(process, write_fd)
    line = json.dumps({"settings": _portable(settings)}, default=str).encode() + b"\n"
    if len(line) < 60_000:  # fits a pipe's buffer: never blocks
        with contextlib.suppress(OSError):
            os.write(write_fd, line)
    return handle


def _portable(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that survive a trip through JSON (others are left out)."""
    out = {}
    for key, value in settings.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            try:
                json.dumps(dict(value))
                value = dict(value)
            except (TypeError, ValueError):
                continue
        out[key] = value
    return out
