"""The desktop part of ``nbremind doctor``: which backend desktop-notifier would use, why,
and the platform facts behind it.

* Linux: the D-Bus session bus (``DBUS_SESSION_BUS_ADDRESS``), whether it answers, and who
  provides ``org.freedesktop.Notifications`` (``GetServerInformation``: name, vendor,
  version), each bounded by a timeout.
* Windows: whether the app id ``nbremind`` is registered for toasts (its registry key).
* macOS: whether Python runs from an app bundle (toasts need one).

desktop-notifier itself is only reached through :mod:`nbremind.channels.desktop`, the bus
through :mod:`nbremind.channels.dbus`.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
from dataclasses import dataclass

from ..channels.dbus import ADDRESS_VAR, NOTIFICATIONS, SessionBus, session_bus_address
from ..channels.desktop import APP_NAME, DesktopChannel, backend_class
from ..delivery.channel import Availability

__all__ = ["AUMID_KEY", "SERVER_TIMEOUT", "DesktopFacts", "aumid_registered", "desktop_facts"]

#: Seconds the notification service may take to say who it is.
SERVER_TIMEOUT = 2.0
#: Where desktop-notifier registers nbremind's app id (AUMID) on Windows, under HKCU.
AUMID_KEY = rf"Software\Classes\AppUserModelId\{APP_NAME}"


@dataclass(frozen=True)
class DesktopFacts:
    """What the desktop check found."""

    available: Availability
    backend: str
    #: One line per fact, for the report.
    lines: tuple[str, ...]
    #: The notification service, e.g. ``dunst 1.9.0 (knopwob)`` (Linux), when it answered.
    server: str = ""


async def desktop_facts(channel: DesktopChannel | None = None) -> DesktopFacts:
    """Ask the desktop channel whether toasts can be shown, and gather why. Never raises
    for a platform problem: what cannot be found out is said in the lines."""
    channel = channel or DesktopChannel()
    system = platform.system()
    cls, dummy = backend_class()
    lines = [f"backend: {cls.__name__} — {_why_backend(system, dummy)}"]
    available = await channel.availability()
    server = ""
    if system == "Linux":
        bus_lines, server = await _linux_bus()
        lines.extend(bus_lines)
    elif system == "Windows":
        lines.append(_windows_aumid())
    elif system == "Darwin":
        lines.append(_macos_bundle())
    return DesktopFacts(available, cls.__name__, tuple(lines), server)


def _why_backend(system: str, dummy: bool) -> str:
    if system == "Linux":
        return "on Linux desktop-notifier talks to the notification service over D-Bus"
    if system == "Windows":
        if dummy:
            return f"Windows {platform.version()} is older than Windows 10 (10.0.10240)"
        return "Windows 10 or later: WinRT toasts, shown under the app id " + repr(APP_NAME)
    if system == "Darwin":
        if dummy:
            return "macOS shows notifications only to apps run from a signed app bundle"
        return "Python runs from an app bundle: the macOS Notification Center"
    return f"desktop-notifier has no backend for {system or 'this operating system'}"


# -- Linux -------------------------------------------------------------------------------------
async def _linux_bus() -> tuple[list[str], str]:
    """Facts about the session bus and the notification service, and the service's name."""
    address = session_bus_address()
    if not address:
        return [
            f"{ADDRESS_VAR}: not set — no D-Bus session bus in this environment (a "
            "headless server, a container, an SSH login without a desktop)"
        ], ""
    lines = [f"{ADDRESS_VAR}: {address}"]
    try:
        bus = SessionBus(address)
    except ImportError:
        return [*lines, "dbus-fast is not installed: the bus cannot be asked"], ""
    server = ""

    async def ask() -> None:
        nonlocal server
        try:
            await bus.connect()
        except Exception as exc:
            lines.append(f"bus reachable: no ({type(exc).__name__}: {exc})")
            return
        lines.append("bus reachable: yes")
        owner = await bus.ask_bus("GetNameOwner", NOTIFICATIONS)
        if not owner.ok:
            lines.append(
                f"{NOTIFICATIONS}: nobody provides it (no notification daemon such "
                "as dunst, mako or a desktop environment's runs on this bus)"
            )
            return
        info = await bus.ask_notifications("GetServerInformation")
        if not info.ok:
            lines.append(
                f"{NOTIFICATIONS}: provided by {owner.body[0]}, which did not say "
                f"who it is ({info.error})"
            )
            return
        name, vendor, version, spec = (str(v) for v in info.body[:4])
        server = f"{name} {version} ({vendor})"
        lines.append(
            f"notification service: {name} {version} by {vendor}, notification "
            f"spec {spec} (bus name {owner.body[0]})"
        )

    try:
        await asyncio.wait_for(ask(), SERVER_TIMEOUT)
    except asyncio.TimeoutError:
        lines.append(f"the bus did not answer within {SERVER_TIMEOUT:g} s")
    except Exception as exc:
        lines.append(f"asking the bus failed: {type(exc).__name__}: {exc}")
    finally:
        bus.disconnect()
    return lines, server


# -- Windows -----------------------------------------------------------------------------------
def aumid_registered() -> bool | None:
    """Whether nbremind's app id key exists under HKEY_CURRENT_USER (``None``: no Windows
    registry here)."""
    if sys.platform != "win32":
        return None
    import winreg

    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, AUMID_KEY):
            return True
    except OSError:
        return False


def _windows_aumid() -> str:
    where = rf"HKEY_CURRENT_USER\{AUMID_KEY}"
    found = aumid_registered()
    if found is None:
        return f"app id {APP_NAME!r}: the registry cannot be read here ({where})"
    if found:
        return f"app id {APP_NAME!r}: registered ({where})"
    return (
        f"app id {APP_NAME!r}: not registered yet ({where} is missing); it is registered "
        "with the first toast, e.g. by `nbremind test desktop`"
    )


# -- macOS -------------------------------------------------------------------------------------
def _macos_bundle() -> str:
    executable = os.path.realpath(sys.executable)
    if ".app/Contents/" in executable:
        bundle = executable.split(".app/Contents/")[0] + ".app"
        return f"app bundle: yes, Python runs from {bundle}"
    return (
        f"app bundle: no, Python runs from {executable}; run Jupyter from an app bundle "
        "(e.g. the JupyterLab desktop app) for toasts, or use the browser or a remote "
        "channel"
    )
