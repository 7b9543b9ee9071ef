"""The guard every test runs under notices what a test leaves behind, and puts it back."""

from __future__ import annotations

import sys
import threading

from _guards import leftovers, snapshot
from nbremind import Config, Session


def test_an_excepthook_left_installed_is_named_and_removed() -> None:
    before = snapshot()
    original = sys.excepthook
    sys.excepthook = lambda *args: None
    problems = leftovers(before)
    assert len(problems) == 1 and problems[0].startswith("an excepthook is still installed")
    assert sys.excepthook is original


def test_an_import_hook_left_on_meta_path_is_named_and_removed() -> None:
    class Finder:
        def find_spec(self, *args: object) -> None:
            return None

    before = snapshot()
    sys.meta_path.insert(0, Finder())
    problems = leftovers(before)
    assert len(problems) == 1 and "sys.meta_path" in problems[0]
    assert not any(isinstance(hook, Finder) for hook in sys.meta_path)


def test_a_loop_thread_still_running_is_named_until_its_session_closes() -> None:
    before = snapshot()
    session = Session(Config(channels=("memory",), outbox=False))
    session.ticker.call_soon(lambda: None)  # starts its loop thread
    try:
        assert leftovers(before, wait=0.2) == [
            "1 loop thread(s) of sessions it made are still running"
        ]
    finally:
        session.close()
    assert leftovers(before) == []
    assert threading.excepthook is before.hooks[1]
