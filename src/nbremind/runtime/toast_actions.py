"""What a desktop toast's click and buttons do, handed to the desktop channel by the runtime.

* A click opens the task's notebook in the browser (the running Jupyter server's
  ``lab/tree/<path>``, found in its ``jpserver-*.json`` runtime info, through
  :mod:`webbrowser` so ``$BROWSER`` is honoured), and asks the notebook pages connected to
  this kernel to scroll the task's cell into view. A task outside a notebook opens nothing.
* **Interrupt** stops the running task as the kernel's stop button would: it ends
  ``cancelled``, with the note :data:`INTERRUPTED`.
* **Snooze 1 h** holds the task's repeating notices (the dispatcher's ``snooze`` rule).

Every action runs on the loop thread and returns at once (the browser starts on a thread of
its own); a failure is logged at debug level, never raised.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..core.browser_views import get_connection
from .tracker import raise_in

if TYPE_CHECKING:
    from ..core.config import Config
    from ..core.notice import Notice
    from ..core.task import Task
    from ..delivery.rules import RuleState

__all__ = [
    "INTERRUPTED",
    "SessionToastActions",
    "focus_message",
    "notebook_url",
    "runtime_dir",
    "servers",
]

#: The note a task interrupted from its toast ends with.
INTERRUPTED = "interrupted from the notification"
_log = logging.getLogger(__name__)


class SessionToastActions:
    """The desktop channel's :class:`~nbremind.channels.desktop.ToastActions` for one
    session: its tasks (``tasks()``), the dispatcher's rule state, its wall clock and its
    settings (``config()``)."""

    def __init__(
        self,
        tasks: Callable[[], Iterable[Task]],
        rule_state: RuleState,
        now: Callable[[], float],
        config: Callable[[], Config],
    ) -> None:
        self._tasks = tasks
        self._rule_state = rule_state
        self._now = now
        self._config = config

    def _task(self, task_id: str) -> Task | None:
        return next((t for t in self._tasks() if t.id == task_id and not t.done), None)

    def interrupt(self, task_id: str) -> None:
        """Stop the running task ``task_id`` (nothing when it ended already)."""
        task = self._task(task_id)
        if task is None:
            _log.debug("interrupt from a toast: task %s is not running", task_id)
            return
        task.note(INTERRUPTED)
        raise_in(task, KeyboardInterrupt)

    def snooze(self, task_id: str, seconds: float) -> None:
        """Hold task ``task_id``'s repeating notices for ``seconds`` from now."""
        self._rule_state.snooze(task_id, self._now() + seconds)

    def open(self, notice: Notice) -> None:
        """Open ``notice``'s notebook in the browser and scroll its pages to the task."""
        notebook = notice.task.notebook
        if not notebook:
            return  # a script: there is nothing to open
        message = focus_message(notice)
        for receiver in get_connection().receivers():
            try:
                receiver.send(message)
            except Exception:
                _log.debug("asking a page to show the task failed", exc_info=True)
        threading.Thread(
            target=_open_notebook, args=(notebook,), name="nbremind-open", daemon=True
        ).start()

    def sound(self, notice: Notice) -> bool:
        """Whether the ``sound`` setting wants a sound for ``notice``."""
        wanted = self._config().sound
        if wanted == "failure":
            return notice.urgency == "critical" or notice.event == "failure"
        return wanted is True


def focus_message(notice: Notice) -> dict[str, str | None]:
    """The message that makes a notebook page scroll to ``notice``'s task (as a click on
    its browser notification does); ``id`` is the notice's, so a page acts once per click."""
    return {
        "type": "focus",
        "id": notice.id,
        "task_id": notice.task.id,
        "parent_id": notice.task.parent_id,
    }


def runtime_dir() -> Path:
    """Where running Jupyter servers write their ``jpserver-*.json`` (jupyter_core's answer,
    else ``$JUPYTER_RUNTIME_DIR``, else the default of Linux)."""
    try:
        from jupyter_core.paths import jupyter_runtime_dir
    except ImportError:
        default = Path.home() / ".local" / "share" / "jupyter" / "runtime"
        return Path(os.environ.get("JUPYTER_RUNTIME_DIR") or default)
    return Path(jupyter_runtime_dir())


def servers(folder: Path) -> list[dict[str, Any]]:
    """The runtime info of each Jupyter server in ``folder`` whose process is alive, newest
    file first (unreadable files are skipped)."""
    found = []
    files = sorted(folder.glob("jpserver-*.json"), key=_mtime, reverse=True)
    for path in files:
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and isinstance(info.get("url"), str) and _alive(info.get("pid")):
            found.append(info)
    return found


def notebook_url(notebook: str, infos: list[dict[str, Any]]) -> str | None:
    """``<server url>lab/tree/<notebook, relative to its root_dir>[?token=...]`` for the first
    server in ``infos`` whose ``root_dir`` holds ``notebook``; ``None`` when none does. A
    relative ``notebook`` is taken as relative to a server's root (the first where it
    exists, else the only server)."""
    for info in infos:
        rel = _relative(notebook, info)
        if rel is not None:
            return _tree_url(info, rel)
    if len(infos) == 1 and not os.path.isabs(notebook):
        return _tree_url(infos[0], Path(notebook).as_posix())
    return None


def _tree_url(info: dict[str, Any], rel: str) -> str:
    url = str(info["url"])
    url += ("" if url.endswith("/") else "/") + "lab/tree/" + quote(rel)
    token = info.get("token")
    return f"{url}?token={quote(token)}" if isinstance(token, str) and token else url


def _relative(notebook: str, info: dict[str, Any]) -> str | None:
    root = info.get("root_dir") or info.get("notebook_dir")
    if not isinstance(root, str) or not root:
        return None
    root_path = Path(root).expanduser()
    path = Path(notebook).expanduser()
    if not path.is_absolute():
        return path.as_posix() if (root_path / path).exists() else None
    with contextlib.suppress(ValueError, OSError):
        return path.resolve().relative_to(root_path.resolve()).as_posix()
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return True  # nothing to check: trust the file
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process, or no signals on this platform
        return True
    return True


def _open_notebook(notebook: str) -> None:
    """Find the server of ``notebook`` and open it in the browser (its own thread)."""
    try:
        url = notebook_url(notebook, servers(runtime_dir()))
        if url is None:
            _log.debug("no running Jupyter server holds %s", notebook)
            return
        import webbrowser  # (14 ms of imports: only once a toast is clicked)

        webbrowser.open(url)
    except Exception:
        _log.debug("opening %s in the browser failed", notebook, exc_info=True)
