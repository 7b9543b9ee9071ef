"""The desktop part of ``nbremind doctor``: which backend desktop-notifier would use, why,
and the platform facts behind it.

* Linux: the D-Bus session bus (``DBUS_SESSION_BUS_ADDRESS``), whether it answers, and who
  provides ``org.freedesktop.Notifications`` (``GetServerInformation``: name, vendor,
  version), each bounded by a timeout.
* Windows: whether the app id ``nbremind`` is registered for toasts (its registry key), the
  Start-menu shortcut that claims it, the toast notifier's setting for it and the fix for
  each "off", and (best effort) Focus Assist / Do Not Disturb.
* macOS: whether Python runs from an app bundle (toasts need one), whether notifications
  are authorised for it, and how to allow them.

The same facts as JSON-ready values are :attr:`DesktopFacts.details` (the desktop check's
``windows`` or ``macos`` key in ``nbremind doctor --json``).

desktop-notifier itself is only reached through :mod:`nbremind.channels.desktop`, the bus
through :mod:`nbremind.channels.dbus`.
"""

from __future__ import annotations

import asyncio
import os
import platform
import sys
from dataclasses import dataclass, field
from typing import Any

from ..channels import windows_identity
from ..channels.dbus import ADDRESS_VAR, NOTIFICATIONS, SessionBus, session_bus_address
from ..channels.desktop import (
    APP_NAME,
    DesktopChannel,
    backend_class,
    macos_app_bundle,
    macos_how_to_allow,
)
from ..channels.windows_toasts import (
    SETTING_FIXES,
    SETTING_REASONS,
    read_focus_assist,
    read_toast_setting,
)
from ..delivery.channel import Availability

__all__ = [
    "AUMID_KEY",
    "SERVER_TIMEOUT",
    "SETUP_WINDOWS",
    "DesktopFacts",
    "aumid_registered",
    "desktop_facts",
    "macos_details",
    "status_lines",
    "windows_details",
]

#: Seconds the notification service may take to say who it is.
SERVER_TIMEOUT = 2.0
#: Where desktop-notifier registers nbremind's app id (AUMID) on Windows, under HKCU.
AUMID_KEY = rf"Software\Classes\AppUserModelId\{APP_NAME}"
#: What makes nbremind's identity complete on Windows (app id and Start-menu shortcut).
SETUP_WINDOWS = "nbremind setup windows"


@dataclass(frozen=True)
class DesktopFacts:
    """What the desktop check found."""

    available: Availability
    backend: str
    #: One line per fact, for the report.
    lines: tuple[str, ...]
    #: The notification service, e.g. ``dunst 1.9.0 (knopwob)`` (Linux), when it answered.
    server: str = ""
    #: Further platform facts, one line each (Windows: toast setting, shortcut, Focus
    #: Assist; macOS: authorisation).
    notes: tuple[str, ...] = ()
    #: The platform facts as JSON-ready values under their platform's key (``windows``,
    #: ``macos``); empty elsewhere.
    details: dict[str, Any] = field(default_factory=dict)


async def desktop_facts(channel: DesktopChannel | None = None) -> DesktopFacts:
    """Ask the desktop channel whether toasts can be shown, and gather why. Never raises
    for a platform problem: what cannot be found out is said in the lines."""
    channel = channel or DesktopChannel(ask=False)
    system = platform.system()
    cls, dummy = backend_class()
    lines = [f"backend: {cls.__name__} — {_why_backend(system, dummy)}"]
    available = await channel.availability()
    server = ""
    notes: list[str] = []
    details: dict[str, Any] = {}
    if system == "Linux":
        bus_lines, server = await _linux_bus()
        lines.extend(bus_lines)
    elif system == "Windows":
        lines.append(_windows_aumid())
        found = windows_details()
        notes.extend(_windows_lines(found))
        details["windows"] = found
    elif system == "Darwin":
        lines.append(_macos_bundle())
        found = macos_details(None if dummy else channel.authorised)
        notes.append(_macos_line(found))
        details["macos"] = found
    return DesktopFacts(available, cls.__name__, tuple(lines), server, tuple(notes), details)


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
    return _identity()[0].registered


def _identity() -> tuple[windows_identity.IdentityState, str]:
    """The app id's registration and Start-menu shortcut as Windows has them, and why they
    could not be read (``""``: they were)."""
    try:
        return windows_identity.identity_state(), ""
    except Exception as exc:  # (it is not meant to raise: said all the same)
        unread = windows_identity.IdentityState(None, None, None, None, None, None, ())
        return unread, f"{type(exc).__name__}: {exc}"


def windows_details() -> dict[str, Any]:
    """What Windows says about nbremind's toasts, JSON-ready: the app id, its registry key,
    the Start-menu shortcut, the toast setting and its fix, and Focus Assist (best effort).
    """
    state, unread = _identity()
    setting = read_toast_setting(APP_NAME)
    focus = read_focus_assist()
    shortcut = None if state.shortcut is None else str(state.shortcut)
    problems = list(state.problems)
    if setting.value == "disabled_for_application":  # (told once: by the setting's line)
        problems = [p for p in problems if not p.startswith(windows_identity.TURNED_OFF)]
    if unread:
        problems.append(f"the registration could not be read: {unread}")
    known = state.registered is not None
    setup_needed = known and (
        state.registered is False or shortcut is None or state.shortcut_app_id != APP_NAME
    )
    return {
        "app_id": APP_NAME,
        "aumid_registered": state.registered,
        "aumid_key": rf"HKEY_CURRENT_USER\{AUMID_KEY}",
        "display_name": state.display_name,
        "icon": None if state.icon is None else str(state.icon),
        "shortcut": shortcut,
        "shortcut_app_id": state.shortcut_app_id,
        "enabled_value": state.enabled_value,
        "identity_problems": problems,
        "toast_setting": setting.value,
        "toast_setting_error": setting.why,
        "toast_fix": SETTING_FIXES.get(setting.value or ""),
        "setup_needed": setup_needed,
        "focus_assist": focus.state,
        "focus_assist_source": focus.source,
    }


def _setting_line(found: dict[str, Any]) -> str:
    value = found["toast_setting"]
    head = f"toast setting for app id {APP_NAME!r}"
    if value is None:
        return f"{head}: unknown — {found['toast_setting_error']}"
    if value == "enabled":
        return f"{head}: enabled (Windows shows its toasts)"
    return f"{head}: {value} — {SETTING_REASONS[value]}; fix: {found['toast_fix']}"


def _shortcut_line(found: dict[str, Any]) -> str:
    shortcut, claims = found["shortcut"], found["shortcut_app_id"]
    if found["aumid_registered"] is None:
        return "Start-menu shortcut: cannot be looked at here"
    if shortcut is None:
        return f"Start-menu shortcut: none claims app id {APP_NAME!r}"
    if claims != APP_NAME:
        return f"Start-menu shortcut: {shortcut} claims app id {claims!r}, not {APP_NAME!r}"
    return f"Start-menu shortcut: {shortcut} (app id {APP_NAME!r})"


def _focus_line(found: dict[str, Any]) -> str:
    state, source = found["focus_assist"], found["focus_assist_source"]
    line = f"Focus Assist / Do Not Disturb (best effort): {state}"
    if source:
        line += f" ({source})"
    if state == "on":
        line += "; toasts then go to the notification centre without showing"
    return line


def _windows_lines(found: dict[str, Any]) -> list[str]:
    lines = [_setting_line(found), _shortcut_line(found)]
    lines.extend(f"registration problem: {problem}" for problem in found["identity_problems"])
    if found["setup_needed"]:
        lines.append(
            "toasts may not appear without the registration and a Start-menu shortcut that "
            f"claims app id {APP_NAME!r} (some Windows 11 builds need it): run `{SETUP_WINDOWS}`"
        )
    lines.append(_focus_line(found))
    return lines


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
    bundle = macos_app_bundle()
    if bundle is not None:
        return f"app bundle: yes, Python runs from {bundle}"
    return (
        f"app bundle: no, Python runs from {executable}; run Jupyter from an app bundle "
        "(e.g. the JupyterLab desktop app) for toasts, or use the browser or a remote "
        "channel"
    )


def macos_details(authorised: bool | None) -> dict[str, Any]:
    """The app bundle Python runs from, whether notifications are authorised for it
    (``None``: not asked, e.g. no bundle), and how to allow them, JSON-ready."""
    return {
        "app_bundle": macos_app_bundle(),
        "authorised": authorised,
        "how_to_allow": macos_how_to_allow(),
    }


def _macos_line(found: dict[str, Any]) -> str:
    if found["authorised"] is None:
        return (
            "notifications authorised: not asked (no app bundle); automatic channels send "
            "notices to a connected browser instead"
        )
    if found["authorised"]:
        return f"notifications authorised for {found['app_bundle'] or 'this app'}: yes"
    return (
        f"notifications authorised for {found['app_bundle'] or 'this app'}: no (or not asked "
        f"yet: macOS asks with the first toast); allow them in {found['how_to_allow']}"
    )


# -- %remind status ------------------------------------------------------------------------------
def status_lines() -> list[str]:
    """The platform's toast facts in a line or two, for ``%remind status`` (none on Linux:
    the channel's availability says it all there)."""
    system = platform.system()
    if system == "Windows":
        found = windows_details()
        head = _setting_line(found)
        if found["setup_needed"]:
            head += f"; run `{SETUP_WINDOWS}` (app id or Start-menu shortcut missing)"
        return [head, _focus_line(found)]
    if system == "Darwin":
        bundle = macos_app_bundle()
        if bundle is None:
            return [
                "macOS: Python is not in an app bundle, so no toasts: automatic channels "
                "send notices to a connected browser instead"
            ]
        return [
            f"macOS: Python runs from {bundle}; its notifications are allowed or not in "
            + macos_how_to_allow()
        ]
    return []
