"""Native desktop toasts through desktop-notifier's async API.

desktop-notifier is imported inside methods only, so ``import nbremind`` stays light. Its
``send`` never raises: a failed delivery is logged as a warning and ``on_dispatched`` is not
called. This channel confirms delivery through ``on_dispatched``, turns the swallowed error
into a :class:`ChannelError`, and keeps that warning off the user's stderr.

A toast leads back to the work: its click (the default action) and its buttons call the
:class:`ToastActions` the runtime hands in (this layer never reaches up for them). They run
on the loop that sent the toast, while its notifier lives. **Interrupt** is on the notices of
a running task (:data:`INTERRUPT_EVENTS`), **Snooze 1 h** on its repeating ones
(:data:`SNOOZE_EVENTS`); a notification server without the ``actions`` capability gets
no buttons (:meth:`DesktopChannel.notes` says so).

Delivery is confirmed, or explained. On Windows a toast counts as delivered when Windows
accepted it for the app id ``nbremind`` while the toast notifier's setting for it says
"enabled" (:mod:`.windows_toasts`); while the setting says off, the channel is unavailable
with the reason and the fix, read again before every send, so the automatic channel choice
falls back to a connected browser. On macOS the channel is available when notifications are
authorised for the app bundle Python runs from (asked, where allowed, the first time);
Python not run from a bundle gets the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import platform
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ..core.notice import Notice
from ..delivery.channel import Availability, Channel, ChannelError
from .dbus import describe_error, is_retryable, notification_service_problem
from .windows_toasts import ToastSetting, read_toast_setting, setting_problem

if TYPE_CHECKING:
    from desktop_notifier import Button, DesktopNotifier

__all__ = [
    "APP_NAME",
    "INTERRUPT_EVENTS",
    "NO_BUTTONS",
    "SNOOZE_EVENTS",
    "SNOOZE_SECONDS",
    "DesktopChannel",
    "ToastActions",
    "backend_class",
    "macos_app_bundle",
    "macos_how_to_allow",
    "macos_not_authorised",
]

#: The app name desktop-notifier shows, and registers as the AUMID on Windows.
APP_NAME = "nbremind"
#: How long the up-front D-Bus probe may take, in seconds.
PROBE_TIMEOUT = 2.0
#: desktop-notifier logs a failed send here ("Notification failed", with exc_info).
_SEND_LOGGER = "desktop_notifier.backends.base"
#: get_backend_class() logs here (e.g. macOS "only from an app bundle").
_MAIN_LOGGER = "desktop_notifier.main"
#: Events of a running task whose toasts carry an **Interrupt** button.
INTERRUPT_EVENTS = frozenset({"after", "memory", "progress", "condition"})
#: Repeating events whose toasts carry a **Snooze 1 h** button.
SNOOZE_EVENTS = frozenset({"after", "memory"})
#: How long **Snooze 1 h** holds a task's repeating notices, in seconds.
SNOOZE_SECONDS = 3600.0
#: What :meth:`DesktopChannel.notes` says of a server that cannot show buttons.
NO_BUTTONS = "this notification server shows no buttons"
_log = logging.getLogger(__name__)
_MACOS_NO_BUNDLE = "macOS: notifications need an app bundle (python is not running from one)"
#: Where macOS users allow an app's notifications.
MACOS_ALLOW = "System Settings → Notifications → {app} → Allow Notifications"

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


class ToastActions(Protocol):
    """What a toast's click and buttons do, handed in by the runtime. Called on the loop
    thread; each must return at once."""

    def interrupt(self, task_id: str) -> None:
        """Stop the running task ``task_id`` as the kernel's stop button would."""

    def snooze(self, task_id: str, seconds: float) -> None:
        """Hold the repeating notices of task ``task_id`` for ``seconds``."""

    def open(self, notice: Notice) -> None:
        """Lead the user to the work of ``notice`` (its notebook in the browser)."""

    def sound(self, notice: Notice) -> bool:
        """Whether the toast of ``notice`` plays the platform's notification sound."""


def _guarded(what: str, call: Callable[[], object]) -> Callable[[], None]:
    """``call`` that logs (at debug level) instead of raising into desktop-notifier."""

    def run() -> None:
        try:
            call()
        except Exception:
            _log.debug("desktop toast %s failed", what, exc_info=True)

    return run


class DesktopChannel(Channel):
    """Toasts on Windows, macOS (from an app bundle) and Linux (D-Bus notification daemon).

    ``actions`` (settable later as :attr:`actions`) answers clicks and buttons; without it
    toasts have neither.
    """

    name = "desktop"

    def __init__(self, actions: ToastActions | None = None, *, ask: bool = True) -> None:
        super().__init__()
        #: What a click and the buttons do (``None``: toasts without either).
        self.actions = actions
        #: Whether the availability check may ask the user for permission (macOS prompts
        #: the first time); ``nbremind doctor`` only looks.
        self.ask = ask
        #: macOS: whether notifications are authorised (``None``: not asked).
        self.authorised: bool | None = None
        #: Windows: the toast setting last read (``None``: not read).
        self.setting: ToastSetting | None = None
        self._notifier: DesktopNotifier | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Whether the notification server shows buttons (``None``: not asked yet).
        self.buttons: bool | None = None

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

            if platform.system() == "Windows":
                # (desktop-notifier writes the app id's registry key as it starts: with our
                # icon, the key `nbremind setup windows` writes stays as it wrote it)
                from desktop_notifier import Icon

                from .windows_identity import icon_path

                icon = Icon(path=icon_path())
                self._notifier = DesktopNotifier(app_name=APP_NAME, app_icon=icon)
            else:
                self._notifier = DesktopNotifier(app_name=APP_NAME)
            self._loop = loop
        return self._notifier

    async def availability(self, *, refresh: bool = False) -> Availability:
        """As :meth:`Channel.availability`; on Windows the toast setting is read again each
        time (the user may turn nbremind's toasts off or on at any moment)."""
        known = self._availability
        was_off = self._off_by_setting
        current = await super().availability(refresh=refresh)
        if known is None or refresh or platform.system() != "Windows":
            return current  # just checked: the setting was read
        if not (current.ok or was_off):
            return current  # unavailable for another reason
        problem = self._setting_problem()
        if problem:
            self._availability = Availability(False, problem)
            return self._availability
        if was_off:  # turned back on: everything is checked again
            return await super().availability(refresh=True)
        return current

    def known_availability(self) -> Availability | None:
        """The first answer, except on Windows, where :meth:`availability` reads the toast
        setting again."""
        return None if platform.system() == "Windows" else self._availability

    @property
    def _off_by_setting(self) -> bool:
        setting = self.setting
        return setting is not None and bool(setting_problem(setting.value))

    def _setting_problem(self) -> str:
        """Windows: read the toast setting for nbremind; why toasts do not appear (``""``:
        they may, or Windows does not say)."""
        self.setting = read_toast_setting(APP_NAME)
        return setting_problem(self.setting.value)

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
        notifier = self._get_notifier()  # (on Windows: registers the app id first)
        if system == "Windows":
            problem = self._setting_problem()
            if problem:
                return Availability(False, problem)
            # the setting unread: desktop-notifier's answer (which reads the same setting)
            unread = self.setting is not None and self.setting.value is None
            if unread and not await notifier.has_authorisation():
                return Availability(False, "Windows: notifications are turned off for nbremind")
        if system == "Darwin":
            self.authorised = await notifier.has_authorisation()
            if not self.authorised and self.ask:
                self.authorised = await notifier.request_authorisation()
            if not self.authorised:
                return Availability(False, macos_not_authorised())
        await self._shows_buttons(notifier)
        return Availability(True)

    async def _shows_buttons(self, notifier: DesktopNotifier) -> bool:
        """Whether the server shows buttons (asked once per notifier; ``False`` when the
        question fails, which :attr:`buttons` leaves unanswered)."""
        from desktop_notifier import Capability

        try:
            capabilities = await notifier.get_capabilities()
        except Exception:
            _log.debug("asking the notification server's capabilities failed", exc_info=True)
            return False
        self.buttons = Capability.BUTTONS in capabilities
        return self.buttons

    def notes(self) -> list[str]:
        """What ``%remind status`` should know beyond availability (the buttons; on Windows
        a toast setting that could not be read)."""
        notes = [NO_BUTTONS] if self.buttons is False else []
        setting = self.setting
        if setting is not None and setting.value is None:
            notes.append(f"Windows toast setting for nbremind unknown: {setting.why}")
        return notes

    def _buttons(self, notice: Notice) -> tuple[Button, ...]:
        """**Interrupt** and **Snooze 1 h**, as far as the notice of a running task wants."""
        from desktop_notifier import Button

        actions, task = self.actions, notice.task
        if actions is None or task.state != "running" or notice.event not in INTERRUPT_EVENTS:
            return ()
        buttons = [
            Button(
                "Interrupt",
                _guarded("interrupt", lambda: actions.interrupt(task.id)),
                identifier="interrupt",
            )
        ]
        if notice.event in SNOOZE_EVENTS:
            buttons.append(
                Button(
                    "Snooze 1 h",
                    _guarded("snooze", lambda: actions.snooze(task.id, SNOOZE_SECONDS)),
                    identifier="snooze",
                )
            )
        return tuple(buttons)

    async def _send(self, notice: Notice) -> None:
        from desktop_notifier import DEFAULT_SOUND, Notification, Urgency

        if platform.system() == "Windows":  # shown only while Windows says "enabled"
            problem = self._setting_problem()
            if problem:
                self._availability = Availability(False, problem)
                raise ChannelError(f"desktop notification not shown: {problem}")
        dispatched: list[bool] = []
        notifier = self._get_notifier()
        actions = self.actions
        buttons = self._buttons(notice)
        if buttons and not await self._shows_buttons(notifier):
            buttons = ()
        sound = False
        if actions is not None:
            try:
                sound = actions.sound(notice)
            except Exception:
                _log.debug("the sound setting could not be read", exc_info=True)
        notification = Notification(
            notice.title,
            notice.body,
            urgency=Urgency.Critical if notice.urgency == "critical" else Urgency.Normal,
            buttons=buttons,
            on_clicked=None if actions is None else _guarded("click", lambda: actions.open(notice)),
            on_dispatched=lambda: dispatched.append(True),
            sound=DEFAULT_SOUND if sound else None,
        )
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


def macos_app_bundle() -> str | None:
    """The app bundle (``…/Name.app``) the Python of this process runs from, if any."""
    executable = os.path.realpath(sys.executable)
    if ".app/Contents/" not in executable:
        return None
    return executable.split(".app/Contents/")[0] + ".app"


def macos_how_to_allow() -> str:
    """Where the user allows notifications for the app Python runs from."""
    bundle = macos_app_bundle()
    app = os.path.basename(bundle)[: -len(".app")] if bundle else "the app running Python"
    return MACOS_ALLOW.format(app=app)


def macos_not_authorised() -> str:
    """Why macOS shows no toast when nbremind's are not authorised, and how to allow them."""
    bundle = macos_app_bundle()
    where = f" for {bundle}" if bundle else ""
    return f"macOS: notifications are not allowed{where}; allow them in {macos_how_to_allow()}"


def backend_class() -> tuple[type[Any], bool]:
    """desktop-notifier's backend class on this machine, and whether it is the do-nothing one
    (``nbremind doctor`` explains the choice)."""
    return DesktopChannel._backend_class()
