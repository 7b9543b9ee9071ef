"""Waiting for input: the ``input`` notice when a task has waited in ``input()`` or
``getpass.getpass()`` for longer than the ``input_wait`` setting.

While a notebook cell runs (ipykernel puts its own ``input`` and ``getpass`` in place for
each request) or a top-level ``remind()`` block runs, both functions are wrapped: from the
call until it returns or raises, the current task is marked as waiting, and the loop
thread's tick sends the notice once per wait. What the functions return or raise is never
changed; answering cancels nothing.
"""

from __future__ import annotations

import builtins
import functools
import itertools
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..core.log import logger

if TYPE_CHECKING:
    from ..core.clock import Clock
    from ..core.task import Task

__all__ = ["InputWatch", "Wrapped", "hold_input", "release_input", "unwrap_input", "wrap_input"]


#: The attribute that marks a wrapper made here (its value: the watch it reports to).
_MARK = "__nbremind_input_watch__"


class InputWatch:
    """The waits for input of one session's tasks, and the notice of each that lasts.

    ``current()`` gives the task the calling code runs in (the notice is about it, or the
    nearest task around it whose events include ``input``); ``wait()`` the ``input_wait``
    setting (``0``: off); ``notify(task, event, key)`` sends a notice.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        current: Callable[[], Task | None],
        wait: Callable[[], float],
        notify: Callable[[Task, str, object], object],
    ) -> None:
        self.clock = clock
        self._current = current
        self._wait = wait
        self._notify = notify
        self._lock = threading.Lock()
        self._keys = itertools.count(1)
        #: ``key: (task, when it began (monotonic), seconds before the notice)``.
        self._waits: dict[int, tuple[Task, float, float]] = {}

    def begin(self) -> int | None:
        """The calling code starts waiting for input; returns the wait's key for :meth:`end`
        (``None``: no task to tell about, or the setting is off). Never raises."""
        try:
            limit = self._wait()
            task = self._current() if limit else None
            while task is not None and "input" not in task.options.events():
                task = task.parent  # a loop (or a task not asking for it): the one around
            if task is None or task.done:
                return None
            with self._lock:
                key = next(self._keys)
                self._waits[key] = (task, self.clock.monotonic(), limit)
            return key
        except Exception:
            return None

    def end(self, key: int | None) -> None:
        """The wait ``key`` (from :meth:`begin`) is over (answered, or it raised)."""
        if key is not None:
            with self._lock:
                self._waits.pop(key, None)

    def waiting(self) -> list[Task]:
        """The tasks waiting for input now."""
        with self._lock:
            return [task for task, _, _ in self._waits.values()]

    def tick(self) -> None:
        """On the loop thread: notify each wait that lasted its limit, once."""
        if not self._waits:
            return
        now = self.clock.monotonic()
        due: list[tuple[int, Task]] = []
        with self._lock:
            for key, (task, began, limit) in list(self._waits.items()):
                if task.done:
                    del self._waits[key]
                elif now - began >= limit:
                    del self._waits[key]  # once per wait
                    due.append((key, task))
        for key, task in due:
            self._notify(task, "input", key)


class Wrapped:
    """The functions :func:`wrap_input` replaced, and the wrappers put in their place."""

    def __init__(
        self, input_fn: Any, getpass_fn: Any, wrappers: tuple[Any, Any], watch: InputWatch
    ) -> None:
        self.input = input_fn
        self.getpass = getpass_fn
        self.wrappers = wrappers
        self.watch = watch


def _wrapper(original: Callable[..., Any], watch: InputWatch) -> Callable[..., Any]:
    @functools.wraps(original)
    def waiting_for_input(*args: Any, **kwargs: Any) -> Any:
        key = watch.begin()
        try:
            return original(*args, **kwargs)
        finally:
            watch.end(key)

    setattr(waiting_for_input, _MARK, watch)
    return waiting_for_input


def _followed(fn: object) -> bool:
    return getattr(fn, _MARK, None) is not None


def wrap_input(watch: InputWatch) -> Wrapped | None:
    """Put wrappers reporting to ``watch`` in place of ``builtins.input`` and
    ``getpass.getpass``; ``None`` when they already are (a cell, a block around it)."""
    import getpass  # (not at import: it brings termios, and ``import nbremind`` stays light)

    input_fn, getpass_fn = builtins.input, getpass.getpass
    if _followed(input_fn) or _followed(getpass_fn):
        return None
    wrappers = (_wrapper(input_fn, watch), _wrapper(getpass_fn, watch))
    builtins.input, getpass.getpass = wrappers
    return Wrapped(input_fn, getpass_fn, wrappers, watch)


def unwrap_input(wrapped: Wrapped | None) -> None:
    """Put back what :func:`wrap_input` replaced, where its wrapper is still in place (code
    that replaced it since keeps its own)."""
    if wrapped is None:
        return
    import getpass

    if builtins.input is wrapped.wrappers[0]:
        builtins.input = wrapped.input
    if getpass.getpass is wrapped.wrappers[1]:
        getpass.getpass = wrapped.getpass


_held_lock = threading.Lock()
_held = 0
_held_wrapped: Wrapped | None = None
#: The wrappers of the last top-level block, put back in place by the next one when the
#: functions are the same (a flood of short blocks makes none of its own).
_held_last: Wrapped | None = None


def hold_input(watch: InputWatch) -> None:
    """A top-level block starts (any thread): the functions are wrapped until the last
    such block ends (:func:`release_input`). Never raises."""
    try:
        _hold(watch)
    except Exception:
        logger().debug("could not follow input() in the block", exc_info=True)


def _hold(watch: InputWatch) -> None:
    global _held, _held_wrapped, _held_last
    import getpass

    with _held_lock:
        _held += 1
        if _held != 1:
            return
        last = _held_last
        if (
            last is not None
            and last.watch is watch
            and builtins.input is last.input
            and getpass.getpass is last.getpass
        ):
            builtins.input, getpass.getpass = last.wrappers
            _held_wrapped = last
        else:
            _held_wrapped = wrap_input(watch)
            if _held_wrapped is not None:
                _held_last = _held_wrapped


def release_input() -> None:
    """A block that :func:`hold_input` counted ended. Never raises."""
    global _held, _held_wrapped
    with _held_lock:
        _held = max(_held - 1, 0)
        if _held == 0:
            wrapped, _held_wrapped = _held_wrapped, None
            try:
                unwrap_input(wrapped)
            except Exception:
                logger().debug("could not put input() back", exc_info=True)
