"""Which notebook front ends are connected: the nbremind widgets pages said hello for.

Each page that loads an nbremind widget (the panel, a ``%%remind`` status line) sends
``hello`` for it with the page's notification permission, and ``bye`` when the widget or the
page goes; a "view" here is one widget in one page, drawn or not (a status line left as
plain text at its cell's end still listens). The ``browser`` channel is available while at
least one is open in a page that allows notifications, and sends its notices to the widgets
that have one; the page answers each notice (:meth:`BrowserConnection.shown`): shown as a
notification, shown in the page only (its tab was in view and ``when_watching`` is
``"quiet"``), or not shown and why.

Jupyter only hands widget messages to the kernel between cells, so the hello of a status
line shown by a running cell arrives when that cell ends. :meth:`BrowserConnection.expects_hello`
tells whether such a hello may be on its way, so the first notice can wait a moment for it.

Stdlib only: this module never imports a widget library.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

__all__ = [
    "PERMISSION_PROBLEMS",
    "SHOWN",
    "SHOWN_WATCHING",
    "BrowserConnection",
    "Receiver",
    "get_connection",
]

#: Why no page can show a notification, by the permission its views report.
PERMISSION_PROBLEMS = {
    "denied": "notifications are blocked in the browser's site settings",
    "default": "notifications are not allowed in the browser yet (use the panel's button)",
    "unsupported": "this browser cannot show notifications",
}
#: What :meth:`BrowserConnection.last_answer` says of a notice the page raised.
SHOWN = "shown in the page"
#: ... and of one it did not raise because its tab was in view (``when_watching="quiet"``).
SHOWN_WATCHING = "shown in the page (its tab was in view: no notification raised)"
#: Answers of the pages kept (the most recent notices).
_KEEP_ANSWERS = 100


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
        self._last_sent: str | None = None
        #: notice id -> (why it was not shown, or None; whether the user was watching)
        self._shown: collections.OrderedDict[str, tuple[str | None, bool]] = (
            collections.OrderedDict()
        )
        self._when_watching: Callable[[], str] = _quiet
        self._waiting: collections.OrderedDict[str, Callable[[str | None], None]] = (
            collections.OrderedDict()
        )

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

    def permission_of(self, widget: Receiver, value: object) -> None:
        """Every page showing ``widget`` now has notification permission ``value`` (one
        origin: the permission is the site's, whichever view reported it)."""
        if isinstance(value, str):
            with self._lock:
                for view in self._views.get(id(widget), ()):
                    self._permissions[view] = value

    def shown(
        self, notice_id: object, ok: object, why: object = None, watching: object = False
    ) -> None:
        """A page answered notice ``notice_id``: shown (``ok``; ``watching``: in the page only,
        as its tab was in view), or not and ``why``."""
        if not isinstance(notice_id, str):
            return
        reason = None if ok is True else str(PERMISSION_PROBLEMS.get(str(why), why or "refused"))
        with self._lock:
            self._shown[notice_id] = (reason, reason is None and watching is True)
            while len(self._shown) > _KEEP_ANSWERS:
                self._shown.popitem(last=False)
            waiting = self._waiting.pop(notice_id, None)
        if waiting is not None:
            waiting(reason)

    def when_answered(self, notice_id: str, callback: Callable[[str | None], None]) -> None:
        """Call ``callback(None)`` once a page says it showed notice ``notice_id``, or
        ``callback(why)`` when it says why not (at once if it answered already). Only the
        most recent notices are waited for."""
        with self._lock:
            if notice_id in self._shown:
                reason = self._shown[notice_id][0]
            else:
                self._waiting[notice_id] = callback
                while len(self._waiting) > _KEEP_ANSWERS:
                    self._waiting.popitem(last=False)
                return
        callback(reason)

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

    def sent(self, notice_id: str) -> None:
        """Notice ``notice_id`` was just sent to the open views (loop thread)."""
        with self._lock:
            self._last_sent = notice_id

    def last_answer(self) -> str | None:
        """What the page said about the last notice sent: :data:`SHOWN`,
        :data:`SHOWN_WATCHING`, ``"not shown: why"``, or ``"sent, not confirmed yet"``;
        ``None`` before any."""
        with self._lock:
            last = self._last_sent
            if last is None:
                return None
            if last not in self._shown:
                return "sent, not confirmed yet"
            why, watching = self._shown[last]
        if why is not None:
            return f"not shown: {why}"
        return SHOWN_WATCHING if watching else SHOWN

    # -- the setting the pages follow ----------------------------------------------------------
    def follow_when_watching(self, setting: Callable[[], str]) -> None:
        """Read the ``when_watching`` setting through ``setting()`` at each notice (the
        front end that shows the widgets hands in its session's)."""
        self._when_watching = setting

    def when_watching(self) -> str:
        """What a page does with a notice while its tab is in view: ``"quiet"`` (the default
        until a front end hands in its setting) or ``"notify"``."""
        try:
            return str(self._when_watching())
        except Exception:  # the session behind it is gone: the default
            return "quiet"

    def permission_problem(self) -> str | None:
        """Why none of the open views can show a notification (no view reports ``granted``
        and each reports its permission), else ``None``."""
        with self._lock:
            views = [view for views in self._views.values() for view in views]
            known = [self._permissions.get(view) for view in views]
        if not views or any(value is None or value == "granted" for value in known):
            return None
        for value in ("default", "denied", "unsupported"):  # the most hopeful reason first
            if value in known:
                return PERMISSION_PROBLEMS[value]
        return f"the browser reports notification permission {sorted(set(map(str, known)))}"

    def expects_hello(self) -> bool:
        """Whether a widget was displayed since the last hello and we have not given up."""
        with self._lock:
            return self._displayed_at > self._hello_at and not self._gave_up

    def give_up(self) -> None:
        """Stop expecting hellos (this front end does not render widgets) until one comes."""
        with self._lock:
            self._gave_up = True


def _quiet() -> str:
    return "quiet"


_connection = BrowserConnection()


def get_connection() -> BrowserConnection:
    """The process's connection registry (one kernel, one set of front ends)."""
    return _connection
