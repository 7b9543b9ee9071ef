"""What every test must leave as it found it: no loop thread of a session it made still
running, no excepthook or import hook installed, the process's session not replaced.

Checked after all of a test's fixtures were torn down: a test that leaves one of these
behind fails at teardown, naming what it left, and the guard puts things back so the next
test starts clean.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import nbremind.runtime.session as session_module

#: Seconds a loop thread a test stopped may take to end.
STOP_WAIT = 3.0


def _loop_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "nbremind-ticker" and t.is_alive()}


@dataclass(frozen=True)
class State:
    """What a test must not change."""

    hooks: tuple[Any, Any]
    meta_path: list[Any]
    #: Whether ``nbremind.pandas`` was imported (importing it sets its hook for good).
    pandas_module: bool
    session: Any
    threads: frozenset[threading.Thread]


#: Modules of libraries that put a hook on ``sys.meta_path`` for good when first imported.
LIBRARY_HOOKS = frozenset({"six"})


def snapshot() -> State:
    """The state now."""
    return State(
        (sys.excepthook, threading.excepthook),
        list(sys.meta_path),
        "nbremind.pandas" in sys.modules,
        session_module._session,
        frozenset(_loop_threads()),
    )


def leftovers(before: State, wait: float = STOP_WAIT) -> list[str]:
    """What changed since ``before`` (each put back as it was), in words."""
    problems = []
    if (sys.excepthook, threading.excepthook) != before.hooks:
        problems.append(
            f"an excepthook is still installed: {sys.excepthook!r}, {threading.excepthook!r}"
        )
        sys.excepthook, threading.excepthook = before.hooks
    if sys.meta_path != before.meta_path:
        added = [hook for hook in sys.meta_path if hook not in before.meta_path]
        kept = LIBRARY_HOOKS if before.pandas_module else LIBRARY_HOOKS | {"nbremind.pandas"}
        left = [hook for hook in added if type(hook).__module__ not in kept]
        if left or len(sys.meta_path) < len(before.meta_path):
            problems.append(f"an import hook is still on sys.meta_path: {left or added!r}")
            sys.meta_path[:] = [*before.meta_path, *(h for h in added if h not in left)]
        # a library's own hook, added when it is first imported (six's, by what JupyterLab
        # imports; nbremind.pandas's, which waits for pandas), stays: it is not the test's,
        # and the library needs it from then on
    now = session_module._session
    if before.session is not None and now is not before.session:
        problems.append("the process's session was replaced and not put back")
        session_module.set_session(before.session)
        now = before.session
    default = getattr(getattr(now, "ticker", None), "_thread", None)
    deadline = time.monotonic() + wait
    while (left := _loop_threads() - before.threads - {default}) and time.monotonic() < deadline:
        time.sleep(0.02)
    if left:
        problems.append(f"{len(left)} loop thread(s) of sessions it made are still running")
    return problems


_BEFORE = pytest.StashKey[State]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    """Note the state before any fixture of the test is set up."""
    item.stash[_BEFORE] = snapshot()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item) -> Iterator[None]:
    """After every fixture was torn down: fail if the test left something behind."""
    result = yield
    before = item.stash.get(_BEFORE, None)
    problems = leftovers(before) if before is not None else []
    if problems:
        pytest.fail("the test left behind: " + "; ".join(problems), pytrace=False)
    return result
