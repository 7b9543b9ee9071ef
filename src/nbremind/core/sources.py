"""Work that runs elsewhere -- futures of a Dask cluster, Ray object refs, submitit jobs --
which ``track()`` follows through its engine's own API instead of iterating it here.

The package registers, by the top-level module of the handles' type (``"distributed"``,
``"submitit"``), how to load the follower of each engine (``nbremind.integrations``); the
engine's module is only imported by the user's code, and the follower only when a
``track()`` call is handed such handles. A follower is called as ``track()`` is, with the
options parsed, and returns what ``track()`` returns for them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

__all__ = [
    "Attacher",
    "Follower",
    "Opener",
    "attacher_for",
    "follower_for",
    "openers",
    "register_attacher",
    "register_follower",
    "register_opener",
]

#: ``follow(handles, name, total, options, session)`` -> what ``track(handles)`` returns.
Follower = Callable[[Any, "str | None", "int | None", Any, Any], Any]
_LOADERS: dict[str, Callable[[], Follower]] = {}
#: ``attach(handles, task, session)`` -> ``end(exc)``: ``remind(..., jobs=handles)`` has its
#: block's task follow ``handles``; ``end`` is called at the block's end, on its thread, with
#: what left the block, and says whether it ended the task (else the handles will).
Attacher = Callable[[Any, Any, Any], Callable[["BaseException | None"], bool]]
_ATTACHERS: dict[str, Callable[[], Attacher]] = {}
#: ``open(task, session)`` at the start of a cell, block or function, on its thread ->
#: ``close()``, called at its end on the same thread, or ``None``: nothing opened.
Opener = Callable[[Any, Any], "Callable[[], None] | None"]
_OPENERS: dict[str, Callable[[], Opener]] = {}


def register_follower(module: str, load: Callable[[], Follower]) -> None:
    """Follow handles whose type comes from top-level module ``module`` with ``load()``."""
    _LOADERS[module] = load


def register_attacher(module: str, load: Callable[[], Attacher]) -> None:
    """Attach handles whose type comes from top-level module ``module`` with ``load()``."""
    _ATTACHERS[module] = load


def register_opener(module: str, load: Callable[[], Opener]) -> None:
    """Open ``load()`` at each cell's, block's or function's start once ``module`` (a
    top-level module) was imported by someone else: a Dask span while a client is active."""
    _OPENERS[module] = load


def openers() -> list[Opener]:
    """The openers of the engines imported so far (none until the user's code imports one)."""
    modules = sys.modules
    return [load() for module, load in _OPENERS.items() if module in modules]


def attacher_for(handles: object) -> Attacher | None:
    """The attacher of ``handles`` (a list or tuple of them), or ``None``: none knows them."""
    attacher: Attacher | None = _of(handles, _ATTACHERS)
    return attacher


def follower_for(handles: object) -> Follower | None:
    """The follower of ``handles`` (a list or tuple of them, or one iterable object such as
    Dask's ``as_completed``), or ``None``: an ordinary iterable, iterated as it is."""
    follower: Follower | None = _of(handles, _LOADERS)
    return follower


def _of(handles: object, loaders: dict[str, Callable[[], Any]]) -> Any:
    cls = type(handles)
    if cls is list or cls is tuple:
        if not handles:
            return None
        cls = type(handles[0])  # type: ignore[index]
    module = getattr(cls, "__module__", None)
    if type(module) is not str:
        return None
    load = loaders.get(module.partition(".")[0])
    return None if load is None else load()
