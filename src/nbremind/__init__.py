"""nbremind: tells you when your long notebook work needs you.

``%load_ext nbremind`` then ``%%remind`` on a cell, ``with remind("etl"):`` in a script,
``for row in track(rows):`` around a loop.
Importing this package pulls in no Jupyter, pandas or desktop-notifier module.
"""

from __future__ import annotations

from typing import Any

from .config import Config
from .context import current_task, remind
from .session import Session, configure, get_session
from .task import Task, TaskState, TaskTimeout
from .tracking import track

__all__ = [
    "Config",
    "Session",
    "Task",
    "TaskState",
    "TaskTimeout",
    "__version__",
    "configure",
    "current_task",
    "get_session",
    "history",
    "load_ipython_extension",
    "panel",
    "remind",
    "track",
    "unload_ipython_extension",
]

__version__ = "0.1.0"


def panel() -> Any:
    """The live panel of this kernel's tasks: display it, or make it a cell's last line.

    Imports IPython and the widget modules only when called.
    """
    from .ipython.panel import panel as _panel

    return _panel()


def history(
    name: str | None = None,
    state: str | None = None,
    since: Any = None,
    limit: int | None = 100,
    nested: bool = False,
) -> Any:
    """The recent runs (newest first) as a pandas DataFrame: top-level tasks of every
    process, each with the number of tasks nested in it; ``nested=True``: every task.

    ``name`` and ``state`` filter; ``since`` is a duration back from now (``"2h"``,
    ``"7d"``), a ``datetime`` or an ISO date; ``limit`` caps the rows (``None``: all).
    Imports pandas only when called.
    """
    from .history_frame import history_frame

    return history_frame(name, state, since, limit, nested)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbremind``: registers ``%%remind`` and ``%remind``."""
    from .ipython.extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbremind``: removes the magics and hooks."""
    from .ipython.extension import unload

    unload(ipython)
