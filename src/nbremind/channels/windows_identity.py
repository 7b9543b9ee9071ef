"""nbremind's identity on Windows: the app id (AUMID) toasts are shown under.

Windows shows a toast of an unpackaged program only for an app id it knows. Two things make
``nbremind`` known, both per user (``HKEY_CURRENT_USER`` and the user's own Start menu, no
administrator rights):

* the registry key :data:`AUMID_KEY` with ``DisplayName`` and ``IconUri``: the name and
  icon toasts show. desktop-notifier writes the same key and value names when it starts (the
  icon it is given, as a ``file:`` URI); :func:`register` writes them with nbremind's
  shipped icon, as a path, the form Microsoft documents;
* a Start-menu shortcut (:func:`shortcut_path`) carrying ``System.AppUserModel.ID =
  nbremind``: some Windows 11 builds show no toast for an app id without one.

A user who turned nbremind's toasts off in Settings → System → Notifications has
``Enabled = 0`` (REG_DWORD) under :data:`SETTINGS_KEY`; ``setup(enable=True)`` sets it
back to 1. A group policy that turns notifications off is stored elsewhere and still wins.

:func:`identity_state` reads all of this (and never raises); :func:`setup` is ``nbremind
setup windows``. The registry is reached through the standard library's ``winreg``,
imported inside the functions (it exists only on Windows); ``platform.system()`` says
whether this is Windows.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .shell_link import ShellLink, read_link, write_link

__all__ = [
    "APP_ID",
    "AUMID_KEY",
    "DISPLAY_NAME",
    "SETTINGS_KEY",
    "TURNED_OFF",
    "IdentityState",
    "SetupError",
    "WindowsOnlyError",
    "icon_path",
    "identity_state",
    "register",
    "setup",
    "shortcut_path",
    "shortcut_target",
]

#: The app id toasts are shown under (desktop-notifier uses the app name, also ``nbremind``).
APP_ID = "nbremind"
#: The name toasts and Settings show.
DISPLAY_NAME = "nbremind"
#: The app id's registration, under HKEY_CURRENT_USER.
AUMID_KEY = r"Software\Classes\AppUserModelId\nbremind"
#: Where Windows keeps the user's notification settings of the app id, under HKEY_CURRENT_USER.
SETTINGS_KEY = r"Software\Microsoft\Windows\CurrentVersion\Notifications\Settings\nbremind"
#: How :func:`identity_state` begins the problem of toasts turned off in Settings.
TURNED_OFF = "toasts from nbremind are turned off in Settings → System → Notifications"
_HKCU = "HKEY_CURRENT_USER"
_SETUP = "run `nbremind setup windows`"


class SetupError(Exception):
    """What kept the identity from being read or written, in words (with the path or key)."""


class WindowsOnlyError(SetupError):
    """The Windows identity was asked for on another system."""


@dataclass(frozen=True)
class IdentityState:
    """What :func:`identity_state` found."""

    #: Whether :data:`AUMID_KEY` exists (``None``: not Windows, or the registry cannot be read).
    registered: bool | None
    #: Its ``DisplayName`` and ``IconUri`` values, when there.
    display_name: str | None
    icon: str | None
    #: The Start-menu shortcut, when it exists.
    shortcut: Path | None
    #: The app id the shortcut carries (``None``: no shortcut, none in it, or unreadable).
    shortcut_app_id: str | None
    #: The DWORD ``Enabled`` under :data:`SETTINGS_KEY` (0: turned off in Settings), if set.
    enabled_value: int | None
    #: What is wrong, each with its fix; empty when all is well (and off Windows).
    problems: tuple[str, ...]


def icon_path() -> Path:
    """The icon shipped in the package (absolute)."""
    return Path(__file__).resolve().parent.parent / "static" / "nbremind.ico"


def shortcut_path() -> Path:
    """``%APPDATA%\\Microsoft\\Windows\\Start Menu\\Programs\\nbremind.lnk``: the user's own
    Start-menu Programs folder. Raises SetupError when ``APPDATA`` is not set."""
    appdata = os.environ.get("APPDATA")
    if not appdata:
        raise SetupError("APPDATA is not set: the user's Start-menu folder cannot be found")
    return Path(appdata) / "Microsoft" / "Windows" / "Start Menu" / "Programs" / "nbremind.lnk"


def shortcut_target() -> Path:
    """What the shortcut starts: this Python (``pythonw.exe`` beside it, when there, so that
    starting it opens no console window)."""
    if not sys.executable:
        raise SetupError("this Python does not know its own interpreter (sys.executable)")
    python = Path(sys.executable).absolute()
    windowed = python.with_name("pythonw.exe")
    return windowed if windowed.is_file() else python


def _this_system() -> str:
    system = platform.system()
    return {"Darwin": "macOS"}.get(system, system) or "an unknown system"


def _winreg() -> ModuleType:
    """The standard library's ``winreg``; WindowsOnlyError off Windows."""
    if platform.system() != "Windows":
        raise WindowsOnlyError(f"only on Windows (this is {_this_system()})")
    import winreg

    return winreg


def _reason(exc: OSError) -> str:
    if isinstance(exc, PermissionError):
        return f"access denied ({exc})"
    return str(exc)


# -- reading -----------------------------------------------------------------------------------
def identity_state() -> IdentityState:
    """What Windows knows of nbremind's app id. Reads only; never raises (what could not be
    read is among the problems)."""
    if platform.system() != "Windows":
        return IdentityState(None, None, None, None, None, None, ())
    try:
        return _read_state()
    except Exception as exc:  # a registry or file system in a state nobody foresaw
        return IdentityState(
            None, None, None, None, None, None, (f"the app id could not be checked: {exc}",)
        )


def _read_state() -> IdentityState:
    problems: list[str] = []
    registered: bool | None = None
    display_name = icon = None
    enabled: int | None = None
    try:
        winreg = _winreg()
    except ImportError as exc:
        problems.append(f"the registry cannot be read here ({exc})")
    else:
        registered, display_name, icon = _registration(winreg, problems)
        enabled = _enabled(winreg, problems)
    shortcut, app_id = _shortcut(problems)
    if enabled == 0:
        fix = "turn them on there, or run `nbremind setup windows --enable`"
        problems.append(f"{TURNED_OFF}: {fix}")
    return IdentityState(registered, display_name, icon, shortcut, app_id, enabled, tuple(problems))


def _registration(
    winreg: ModuleType, problems: list[str]
) -> tuple[bool | None, str | None, str | None]:
    where = rf"{_HKCU}\{AUMID_KEY}"
    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, AUMID_KEY) as key:
            display_name = _string_value(winreg, key, "DisplayName")
            icon = _string_value(winreg, key, "IconUri")
    except FileNotFoundError:
        problems.append(f"the app id {APP_ID!r} is not registered ({where} is missing): {_SETUP}")
        return False, None, None
    except OSError as exc:
        problems.append(f"{where} cannot be read: {_reason(exc)}")
        return None, None, None
    if not display_name:
        problems.append(f"{where} has no DisplayName: {_SETUP}")
    return True, display_name, icon


def _string_value(winreg: ModuleType, key: object, name: str) -> str | None:
    try:
        value, kind = winreg.QueryValueEx(key, name)
    except FileNotFoundError:
        return None
    return str(value) if kind in (winreg.REG_SZ, winreg.REG_EXPAND_SZ) else None


def _enabled(winreg: ModuleType, problems: list[str]) -> int | None:
    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, SETTINGS_KEY) as key:
            value, kind = winreg.QueryValueEx(key, "Enabled")
    except FileNotFoundError:
        return None
    except OSError as exc:
        problems.append(rf"{_HKCU}\{SETTINGS_KEY} cannot be read: {_reason(exc)}")
        return None
    return int(value) if kind == winreg.REG_DWORD else None


def _shortcut(problems: list[str]) -> tuple[Path | None, str | None]:
    try:
        path = shortcut_path()
    except SetupError as exc:
        problems.append(str(exc))
        return None, None
    if not path.exists():
        problems.append(f"the Start-menu shortcut is missing ({path}): {_SETUP}")
        return None, None
    try:
        app_id = read_link(path).app_id
    except (OSError, ValueError) as exc:
        problems.append(f"the Start-menu shortcut {path} cannot be read ({exc}): {_SETUP}")
        return path, None
    if app_id is None:
        problems.append(f"the Start-menu shortcut {path} carries no app id: {_SETUP}")
    elif app_id != APP_ID:
        problems.append(
            f"the Start-menu shortcut {path} carries the app id {app_id!r}, not {APP_ID!r}: "
            f"{_SETUP}"
        )
    return path, app_id


# -- writing -----------------------------------------------------------------------------------
def register() -> None:
    """Create or update :data:`AUMID_KEY` with ``DisplayName`` and ``IconUri`` (REG_SZ).
    Raises SetupError (WindowsOnlyError off Windows)."""
    winreg = _winreg()
    try:
        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, AUMID_KEY) as key:
            winreg.SetValueEx(key, "DisplayName", 0, winreg.REG_SZ, DISPLAY_NAME)
            winreg.SetValueEx(key, "IconUri", 0, winreg.REG_SZ, str(icon_path()))
    except OSError as exc:
        raise SetupError(rf"cannot write {_HKCU}\{AUMID_KEY}: {_reason(exc)}") from exc


def setup(*, remove: bool = False, enable: bool = False) -> list[str]:
    """``nbremind setup windows``: register the app id and create the Start-menu shortcut
    (replacing the one there); with ``enable``, also turn nbremind's toasts back on where the
    user turned them off in Settings; with ``remove``, delete the shortcut and the app id's
    key instead (the Settings entry is left alone). Returns what was done, a line each.
    Raises SetupError (WindowsOnlyError off Windows), ValueError for both flags."""
    if remove and enable:
        raise ValueError("remove and enable do not go together")
    winreg = _winreg()
    if remove:
        return _remove(winreg)
    path, target = shortcut_path(), shortcut_target()
    if not path.parent.is_dir():
        raise SetupError(f"the Start-menu folder {path.parent} does not exist")
    register()
    lines = [
        rf"registered the app id {APP_ID!r}: {_HKCU}\{AUMID_KEY} "
        f"(DisplayName {DISPLAY_NAME!r}, IconUri {icon_path()})"
    ]
    existed = path.exists()
    link = ShellLink(
        target=str(target),
        app_id=APP_ID,
        description=DISPLAY_NAME,
        working_dir=str(target.parent),
        icon=str(icon_path()),
    )
    try:
        write_link(path, link)
    except OSError as exc:
        raise SetupError(
            f"cannot write the Start-menu shortcut {path}: {_reason(exc)} (the app id is "
            "registered)"
        ) from exc
    lines.append(
        f"{'replaced' if existed else 'created'} the Start-menu shortcut {path} "
        f"(System.AppUserModel.ID = {APP_ID}, starts {target})"
    )
    if enable:
        lines.append(_enable(winreg))
    return lines


def _enable(winreg: ModuleType) -> str:
    where = rf"{_HKCU}\{SETTINGS_KEY}"
    try:
        with winreg.CreateKeyEx(winreg.HKEY_CURRENT_USER, SETTINGS_KEY) as key:
            winreg.SetValueEx(key, "Enabled", 0, winreg.REG_DWORD, 1)
    except OSError as exc:
        raise SetupError(f"cannot write {where}: {_reason(exc)}") from exc
    return (
        f"turned toasts on for nbremind: {where} Enabled = 1 (a group policy that turns "
        "notifications off still wins)"
    )


def _remove(winreg: ModuleType) -> list[str]:
    path = shortcut_path()
    try:
        path.unlink()
    except FileNotFoundError:
        lines = [f"no Start-menu shortcut to remove ({path})"]
    except OSError as exc:
        raise SetupError(f"cannot remove the Start-menu shortcut {path}: {_reason(exc)}") from exc
    else:
        lines = [f"removed the Start-menu shortcut {path}"]
    where = rf"{_HKCU}\{AUMID_KEY}"
    try:
        winreg.DeleteKey(winreg.HKEY_CURRENT_USER, AUMID_KEY)
    except FileNotFoundError:
        lines.append(f"no app id key to remove ({where})")
    except OSError as exc:
        raise SetupError(f"cannot remove {where}: {_reason(exc)}") from exc
    else:
        lines.append(f"removed {where} (the next desktop toast registers it again)")
    lines.append(rf"left {_HKCU}\{SETTINGS_KEY} as it is (the user's notification settings)")
    return lines
