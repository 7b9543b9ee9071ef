"""Native desktop toasts through desktop-notifier's async API.

desktop-notifier is imported inside methods only, so ``import nbremind`` stays light. Its
``send`` never raises: a failed delivery is logged as a warning and ``on_dispatched`` is not
called. This channel confirms delivery through ``on_dispatched``, turns the swallowed error
into a :class:`ChannelError`, and keeps that warning off the user's stderr.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import platform
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..core.notice import Notice
from ..delivery.channel import Availability, Channel, ChannelError
from .dbus import describe_error, is_retryable, notification_service_problem

if TYPE_CHECKING:
    from desktop_notifier import DesktopNotifier

__all__ = ["APP_NAME", "DesktopChannel", "backend_class"]

#: The app name desktop-notifier shows, and registers as the AUMID on Windows.
APP_NAME = "nbremind"
#: How long the up-front D-Bus probe may take, in seconds.
PROBE_TIMEOUT = 2.0
#: desktop-notifier logs a failed send here ("Notification failed", with exc_info).
_SEND_LOGGER = "desktop_notifier.backends.base"
#: get_backend_class() logs here (e.g. macOS "only from an app bundle").
_MAIN_LOGGER = "desktop_notifier.main"
_MACOS_NO_BUNDLE = "macOS: notifications need an app bundle (python is not running from one)"

# Records logged by desktop-notifier while this context holds a list go into that list and
# are not printed. A context variable (not a flag) keeps concurrent sends on the loop apart.
_captured: contextvars.ContextVar[list[logging.LogRecord] | None] = contextvars.ContextVar(
    "nbremind_desktop_captured", default=None
)


class _Capture(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        sink = _captured.get()
        if sink is None or record.levelno < logging.WARNING:
            return True
        sink.append(record)
        return False


_FILTER = _Capture()


@contextlib.contextmanager
def _capturing(*loggers: str) -> Iterator[list[logging.LogRecord]]:
    """Collect (and silence) desktop-notifier warnings logged in this context."""
    for name in loggers:
        logging.getLogger(name).addFilter(_FILTER)  # no-op when already there
    records: list[logging.LogRecord] = []
    token = _captured.set(records)
    try:
        yield records
    finally:
        _captured.reset(token)


class DesktopChannel(Channel):
    """Toasts on Windows, macOS (from an app bundle) and Linux (D-Bus notification daemon)."""

    name = "desktop"

    def __init__(self) -> None:
        super().__init__()
        self._notifier: DesktopNotifier | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def describe(self) -> str:
        """``desktop (<backend class>)``: what desktop-notifier would use on this machine."""
        return f"desktop ({self._backend_class()[0].__name__})"

    @staticmethod
    def _backend_class() -> tuple[type[Any], bool]:
        """desktop-notifier's backend class here, and whether it is the do-nothing one."""
        from desktop_notifier.backends.dummy import DummyNotificationCenter
        from desktop_notifier.main import get_backend_class

        with _capturing(_MAIN_LOGGER) as records:
            cls = get_backend_class()
        dummy = issubclass(cls, DummyNotificationCenter)
        if not dummy:  # the dummy's "why" warnings become our reason; pass on the rest
            for record in records:
                logging.getLogger(record.name).handle(record)
        return cls, dummy

    def _get_notifier(self) -> DesktopNotifier:
        """The one notifier, made on (and kept to) the loop that sends."""
        loop = asyncio.get_running_loop()
        if self._notifier is None or self._loop is not loop:
            from desktop_notifier import DesktopNotifier

            self._notifier = DesktopNotifier(app_name=APP_NAME)
            self._loop = loop
        return self._notifier

    async def _check(self) -> Availability:
        system = platform.system()
        _, dummy = self._backend_class()
        if dummy:
            if system == "Darwin":
                return Availability(False, _MACOS_NO_BUNDLE)
            return Availability(False, f"no desktop notification backend for {system or 'this OS'}")
        if system == "Linux":
            problem = await notification_service_problem(PROBE_TIMEOUT)
            if problem:
                return Availability(False, problem)
        notifier = self._get_notifier()
        if system == "Windows" and not await notifier.has_authorisation():
            return Availability(False, "Windows: notifications are turned off for nbremind")
        return Availability(True)

    async def _send(self, notice: Notice) -> None:
        from desktop_notifier import Notification, Urgency

        dispatched: list[bool] = []
        notification = Notification(
            notice.title,
            notice.body,
            urgency=Urgency.Critical if notice.urgency == "critical" else Urgency.Normal,
            on_dispatched=lambda: dispatched.append(True),
        )
        notifier = self._get_notifier()
        with _capturing(_SEND_LOGGER) as records:
            await notifier.send_notification(notification)
        if dispatched:
            return
        errors = [r.exc_info[1] for r in records if r.exc_info and r.exc_info[1] is not None]
        error = errors[-1] if errors else None
        await self.close()  # a fresh connection next time: the old one may be dead
        reason = describe_error(error) if error else "not dispatched (no reason given)"
        raise ChannelError(f"desktop notification failed: {reason}", retryable=is_retryable(error))

    async def close(self) -> None:
        notifier, self._notifier, self._loop = self._notifier, None, None
        bus = getattr(getattr(notifier, "_backend", None), "bus", None)  # the D-Bus backend's
        if bus is not None:
            with contextlib.suppress(Exception):
                bus.disconnect()


def backend_class() -> tuple[type[Any], bool]:
    """desktop-notifier's backend class on this machine, and whether it is the do-nothing one
    (``nbremind doctor`` explains the choice)."""
    return DesktopChannel._backend_class()
