"""nbremind: tells you when your long notebook work needs you.

``%load_ext nbremind`` then ``%%remind`` on a cell, ``with remind("etl"):`` in a script,
``for row in track(rows):`` around a loop.
Importing this package pulls in no Jupyter, pandas or desktop-notifier module.

General layout. A layer is a folder, and a folder imports only the folders below it
(import-linter checks this, and that no import circle exists, not even inside a function):

* front ends: ``ipython/`` (magics, status line, panel), ``cli/`` (the ``nbremind``
  command), ``pandas``, ``testing``, ``watchdog`` (the watcher program), ``secrets``;
* ``api/`` (``remind()``, ``track()``, ``history()``), ``doctor/`` (what works here) and
  ``scheduler/`` (``nbremind schedule``: jobs at their times, expected runs, metrics);
* ``runtime/``: the session, the one loop thread's work, the run recorder, the watchdog link;
* ``channels/``: desktop, browser, webhook, e-mail, apprise, memory, null, by name;
* ``delivery/``: the channel port, the dispatcher and its rules, retry, outbox replay;
* ``settings/`` (files, environment, live reload) and ``store/`` (SQLite outbox and runs);
* ``core/``: standard library only; tasks, options, thresholds, notices, parsing, masking.

A lower layer that needs an answer from a higher one gets it handed in (the dispatcher's
``make_channel``, :mod:`nbremind.core.channel_names`), never by importing upward. Front
ends reach channels and the dispatcher only through the runtime.
"""

from __future__ import annotations

from typing import Any

from .api.reminder import current_task, remind
from .api.tracking import track
from .core.config import Config
from .core.sources import register_attacher, register_follower, register_opener
from .core.task import Task, TaskMemoryLimit, TaskState, TaskTimeout
from .runtime.session import Session, configure, get_session


def _dask_follower() -> Any:
    from .integrations.dask import follow

    return follow


def _ray_follower() -> Any:
    from .integrations.ray import follow

    return follow


def _dask_opener() -> Any:
    from .integrations.dask_span import open_span

    return open_span


def _submitit_attacher() -> Any:
    from .integrations.submitit import attach

    return attach


def _submitit_follower() -> Any:
    from .integrations.submitit import follow

    return follow


# futures of a Dask cluster, Ray object refs and submitit jobs, followed where they run
# (each engine's follower imported on use)
register_follower("distributed", _dask_follower)
register_follower("ray", _ray_follower)
register_follower("submitit", _submitit_follower)
# remind(..., jobs=[...]): the block's task follows submitit jobs
register_attacher("submitit", _submitit_attacher)
# a cell's or block's Dask span, reported by the cluster's scheduler (once distributed is imported)
register_opener("distributed", _dask_opener)

__all__ = [
    "Config",
    "Session",
    "Task",
    "TaskMemoryLimit",
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
    kind: str | None = None,
) -> Any:
    """The recent runs (newest first) as a pandas DataFrame: top-level tasks of every
    process, each with the number of tasks nested in it; ``nested=True``: every task.

    ``name``, ``state`` and ``kind`` (``"cell"``, ``"command"``, ``"job"``, ...) filter;
    ``since`` is a duration back from now (``"2h"``, ``"7d"``), a ``datetime`` or an ISO
    date; ``limit`` caps the rows (``None``: all). Imports pandas only when called.
    """
    from .api.history import history_frame

    return history_frame(name, state, since, limit, nested, kind)


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext nbremind``: registers ``%%remind`` and ``%remind``."""
    from .ipython.extension import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext nbremind``: removes the magics and hooks."""
    from .ipython.extension import unload

    unload(ipython)
