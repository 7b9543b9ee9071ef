"""The D-Bus session bus: where it is, and what it says about the notification service.

The desktop channel asks it whether toasts can be shown (Linux), ``nbremind doctor`` asks it
who shows them. dbus-fast (which desktop-notifier uses on Linux) is imported inside the
functions only, so importing this module stays light.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dbus_fast.aio import MessageBus

__all__ = [
    "ADDRESS_VAR",
    "NOTIFICATIONS",
    "Reply",
    "SessionBus",
    "describe_error",
    "is_retryable",
    "notification_service_problem",
    "session_bus_address",
]

#: The environment variable that holds the session bus's address.
ADDRESS_VAR = "DBUS_SESSION_BUS_ADDRESS"
#: The bus name (and interface) of the desktop notification service.
NOTIFICATIONS = "org.freedesktop.Notifications"
_DBUS = "org.freedesktop.DBus"
#: D-Bus error names (last part) after which trying again may work.
_RETRYABLE = ("NoReply", "Timeout", "TimedOut", "ServiceUnknown", "Disconnected")


def session_bus_address() -> str:
    """The session bus's address (``$DBUS_SESSION_BUS_ADDRESS``), ``""`` when unset."""
    return os.environ.get(ADDRESS_VAR, "")


def describe_error(exc: BaseException) -> str:
    """``<D-Bus error name or exception type>: <text>`` for an error met on the bus."""
    kind = getattr(exc, "type", None)  # dbus_fast.errors.DBusError names its D-Bus error
    name = kind if isinstance(kind, str) and kind else type(exc).__name__
    text = str(exc)
    return f"{name}: {text}" if text and text != name else name


def is_retryable(exc: BaseException | None) -> bool:
    """Whether trying again may help after ``exc``: a timeout, a lost connection, or a D-Bus
    error saying the service is not there (yet)."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, ConnectionError, EOFError)):
        return True
    kind = getattr(exc, "type", None)
    return isinstance(kind, str) and kind.rsplit(".", 1)[-1] in _RETRYABLE


@dataclass(frozen=True)
class Reply:
    """What a call on the bus got back."""

    body: tuple[Any, ...] = ()
    #: The D-Bus error name when the call failed (``"no reply"`` when nothing came), else ``""``.
    error: str = ""

    @property
    def ok(self) -> bool:
        """Whether the call succeeded."""
        return not self.error


class SessionBus:
    """A short-lived connection to the session bus at ``address``: :meth:`connect`, ask,
    :meth:`disconnect` (which never raises)."""

    def __init__(self, address: str) -> None:
        from dbus_fast.aio import MessageBus

        self.address = address
        self._bus: MessageBus = MessageBus(bus_address=address)

    async def connect(self) -> None:
        """Connect and say hello to the bus; raises what dbus-fast raises."""
        await self._bus.connect()

    def disconnect(self) -> None:
        """Close the connection, if any."""
        with contextlib.suppress(Exception):
            self._bus.disconnect()

    async def call(
        self, destination: str, path: str, interface: str, member: str, *args: str
    ) -> Reply:
        """Call ``member`` (with string arguments ``args``) and return the reply."""
        from dbus_fast import Message, MessageType

        reply = await self._bus.call(
            Message(
                destination=destination,
                path=path,
                interface=interface,
                member=member,
                signature="s" * len(args),
                body=list(args),
            )
        )
        if reply is None:
            return Reply(error="no reply")
        if reply.message_type == MessageType.ERROR:
            return Reply(tuple(reply.body), reply.error_name or "error")
        return Reply(tuple(reply.body))

    async def ask_bus(self, member: str, *args: str) -> Reply:
        """Call ``member`` of the bus itself (``org.freedesktop.DBus``)."""
        return await self.call(_DBUS, "/org/freedesktop/DBus", _DBUS, member, *args)

    async def ask_notifications(self, member: str, *args: str) -> Reply:
        """Call ``member`` of the notification service."""
        return await self.call(
            NOTIFICATIONS, "/org/freedesktop/Notifications", NOTIFICATIONS, member, *args
        )


async def notification_service_problem(timeout: float) -> str:
    """Why the session bus cannot show notifications, or ``""`` when it can: it is set,
    answers within ``timeout`` seconds, and has a notification service running or
    startable on demand (D-Bus activation)."""
    address = session_bus_address()
    if not address:
        return f"no D-Bus session bus ({ADDRESS_VAR} is not set)"
    bus = SessionBus(address)

    async def value(member: str, *args: str) -> Any:
        reply = await bus.ask_bus(member, *args)
        if not reply.ok:
            raise RuntimeError(f"{reply.error}: {reply.body[0] if reply.body else ''}")
        return reply.body[0]

    async def probe() -> str:
        try:
            await bus.connect()
        except Exception as exc:
            return f"D-Bus session bus unreachable at {address}: {describe_error(exc)}"
        if await value("NameHasOwner", NOTIFICATIONS) or NOTIFICATIONS in await value(
            "ListActivatableNames"
        ):
            return ""
        return f"no notification service on the session bus (nobody owns {NOTIFICATIONS})"

    try:
        return await asyncio.wait_for(probe(), timeout)
    except asyncio.TimeoutError:
        return f"D-Bus session bus at {address} did not answer within {timeout:g} s"
    finally:
        bus.disconnect()
