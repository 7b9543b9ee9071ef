"""Work that runs elsewhere -- futures of a Dask cluster, Ray object refs, submitit jobs --
which ``track()`` follows through its engine's own API instead of iterating it here.

The package registers, by the top-level module of the handles' type (``"distributed"``,
``"submitit"``), how to load the follower of each engine (``nbremind.integrations``); the
engine's module is only imported by the user's code, and the follower only when a
``track()`` call is handed such handles. A follower is called as ``track()`` is, with the
options parsed, and returns what ``track()`` returns for them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["Follower", "follower_for", "register_follower"]

#: ``follow(handles, name, total, options, session)`` -> what ``track(handles)`` returns.
Follower = Callable[[Any, "str | None", "int | None", Any, Any], Any]
_LOADERS: dict[str, Callable[[], Follower]] = {}


def register_follower(module: str, load: Callable[[], Follower]) -> None:
    """Follow handles whose type comes from top-level module ``module`` with ``load()``."""
    _LOADERS[module] = load


def follower_for(handles: object) -> Follower | None:
    """The follower of ``handles`` (a list or tuple of them, or one iterable object such as
    Dask's ``as_completed``), or ``None``: an ordinary iterable, iterated as it is."""
    cls = type(handles)
    if cls is list or cls is tuple:
        if not handles:
            return None
        cls = type(handles[0])  # type: ignore[index]
    module = getattr(cls, "__module__", None)
    if type(module) is not str:
        return None
    load = _LOADERS.get(module.partition(".")[0])
    return None if load is None else load()
