"""Calls that must return in time: a hang fails the test instead of stalling the run."""

from __future__ import annotations

import threading
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
