"""Which notebook front ends are connected: the nbremind widget views that said hello.

Every view of an nbremind widget (the panel, a ``%%remind`` status line) sends ``hello`` when
the browser renders it and ``bye`` when it goes away; the ``browser`` channel is available
while at least one view is open, and sends its notices to the widgets that have one.

Jupyter only hands widget messages to the kernel between cells, so the hello of a status
line shown by a running cell arrives when that cell ends. :meth:`BrowserConnection.expects_hello`
tells whether such a hello may be on its way, so the first notice can wait a moment for it.

Stdlib only: this module never imports a widget library.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = ["BrowserConnection", "Receiver", "get_connection"]


class Receiver(Protocol):
    """What a notice is sent through: a widget's one-shot custom message."""

    def send(self, content: dict[str, Any]) -> None: ...


class BrowserConnection:
    """The views each nbremind widget has open in a browser, and their notification
    permission. Thread-safe: hellos arrive on the kernel's thread, questions on the loop's."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._receivers: dict[int, Receiver] = {}
        self._views: dict[int, set[str]] = {}
        self._permissions: dict[str, str] = {}
        self._displayed_at = float("-inf")
        self._hello_at = float("-inf")
        self._gave_up = False

    # -- what the widgets report (kernel thread) ---------------------------------------------
    def displayed(self) -> None:
        """A widget was just displayed; its views will say hello once the browser renders it."""
        with self._lock:
            self._displayed_at = self._clock()

    def hello(self, widget: Receiver, view: str, permission: object = None) -> None:
        """A view of ``widget`` is open in a browser."""
        with self._lock:
            key = id(widget)
            self._receivers[key] = widget
            self._views.setdefault(key, set()).add(view)
            if isinstance(permission, str):
                self._permissions[view] = permission
            self._hello_at = self._clock()
            self._gave_up = False

    def bye(self, widget: Receiver, view: str) -> None:
        """A view of ``widget`` was closed (cell output cleared, notebook or page closed)."""
        with self._lock:
            key = id(widget)
            views = self._views.get(key)
            if views is not None:
                views.discard(view)
                if not views:
                    del self._views[key]
                    self._receivers.pop(key, None)
            self._permissions.pop(view, None)

    def permission(self, view: str, value: object) -> None:
        """The page of ``view`` now has notification permission ``value``."""
        if isinstance(value, str):
            with self._lock:
                if any(view in views for views in self._views.values()):
                    self._permissions[view] = value

    def forget(self, widget: Receiver) -> None:
        """``widget`` was closed: none of its views can receive anything any more."""
        with self._lock:
            key = id(widget)
            for view in self._views.pop(key, ()):
                self._permissions.pop(view, None)
            self._receivers.pop(key, None)

    # -- what the channel asks (loop thread) -------------------------------------------------
    def views(self) -> int:
        """How many widget views are open in browsers."""
        with self._lock:
            return sum(len(views) for views in self._views.values())

    def receivers(self) -> list[Receiver]:
        """The widgets with at least one open view, oldest first."""
        with self._lock:
            return list(self._receivers.values())

    def permissions(self) -> list[str]:
        """The notification permission each open view reported (``granted``, ``default``,
        ``denied`` or ``unsupported``), without repeats."""
        with self._lock:
            return sorted(set(self._permissions.values()))

    def expects_hello(self) -> bool:
        """Whether a widget was displayed since the last hello and we have not given up."""
        with self._lock:
            return self._displayed_at > self._hello_at and not self._gave_up

    def give_up(self) -> None:
        """Stop expecting hellos (this front end does not render widgets) until one comes."""
        with self._lock:
            self._gave_up = True


_connection = BrowserConnection()


def get_connection() -> BrowserConnection:
    """The process's connection registry (one kernel, one set of front ends)."""
    return _connection
