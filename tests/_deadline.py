"""Calls that must return in time: a hang fails the test instead of stalling the run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """``call()`` on a thread; a test failure when it has not returned after ``seconds``
    (its exception, if any, is raised on the test's thread)."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # handed back to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"no answer after {seconds} s: a hang")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("value")


def eventually(condition: Callable[[], Any], seconds: float = 20.0, what: str = "it") -> Any:
    """Call ``condition`` (every 20 ms) until it returns something true, and return that;
    a test failure naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not happen within {seconds:g} s")
        time.sleep(0.02)  # (a poll interval, not a stand-in for the condition)
