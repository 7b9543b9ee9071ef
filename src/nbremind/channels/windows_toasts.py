"""What Windows says about nbremind's toasts: the toast notifier's setting for the app id,
the fix for each "off", and (best effort) whether Focus Assist / Do Not Disturb holds toasts
back.

The setting is WinRT's ``ToastNotifier.Setting`` for the app id (AUMID), read through the
``winrt`` packages desktop-notifier uses (``winrt.windows.ui.notifications``); the rest is
read with the standard library's ``winreg``. Both are imported when asked, never at import
time, and nothing here raises: what cannot be read is said, with why.
"""

from __future__ import annotations

import importlib
import platform
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DND_VALUE",
    "NOTIFICATIONS_MODULE",
    "NOTIFICATION_SETTINGS_KEY",
    "PUSH_NOTIFICATIONS_KEY",
    "SETTINGS",
    "SETTING_FIXES",
    "SETTING_REASONS",
    "TOASTS_ENABLED_VALUE",
    "TOAST_ENABLED_VALUE",
    "FocusAssist",
    "ToastSetting",
    "focus_assist",
    "read_focus_assist",
    "read_toast_setting",
    "setting_problem",
    "toast_setting",
]

#: The winrt module with ``ToastNotificationManager`` and ``NotificationSetting``.
NOTIFICATIONS_MODULE = "winrt.windows.ui.notifications"
#: ``NotificationSetting`` values (their numbers in WinRT), as nbremind names them.
SETTINGS = (
    "enabled",
    "disabled_for_application",
    "disabled_for_user",
    "disabled_by_group_policy",
    "disabled_by_manifest",
)
#: What each "off" setting means.
SETTING_REASONS: dict[str, str] = {
    "disabled_for_application": "notifications are turned off for nbremind",
    "disabled_for_user": "all notifications are turned off for this user",
    "disabled_by_group_policy": "notifications are turned off by group policy",
    "disabled_by_manifest": "Windows does not accept the app id's registration",
}
#: How to turn each "off" setting back on.
SETTING_FIXES: dict[str, str] = {
    "disabled_for_application": (
        "turned off for nbremind in Settings → System → Notifications: run "
        "`nbremind setup windows --enable`"
    ),
    "disabled_for_user": (
        "turn notifications on in Settings → System → Notifications (the switch at the top)"
    ),
    "disabled_by_group_policy": "ask your administrator: a policy turns notifications off",
    "disabled_by_manifest": "the app id's registration is broken: run `nbremind setup windows`",
}
#: Per-user notification settings (under HKEY_CURRENT_USER).
NOTIFICATION_SETTINGS_KEY = r"Software\Microsoft\Windows\CurrentVersion\Notifications\Settings"
#: The value there that is 0 when every toast is turned off.
TOASTS_ENABLED_VALUE = "NOC_GLOBAL_SETTING_TOASTS_ENABLED"
#: The value there that is 1 while Do Not Disturb is on (Windows 11).
DND_VALUE = "NOC_GLOBAL_SETTING_DND"
#: The push-notification settings (under HKEY_CURRENT_USER).
PUSH_NOTIFICATIONS_KEY = r"Software\Microsoft\Windows\CurrentVersion\PushNotifications"
#: The value there that is 0 when the user turned notifications off.
TOAST_ENABLED_VALUE = "ToastEnabled"
#: ``ToastNotificationMode`` (``ToastNotificationManagerForUser.NotificationMode``).
_MODES = {0: "off", 1: "on", 2: "on"}
_MODE_NAMES = {0: "unrestricted", 1: "priority only", 2: "alarms only"}


@dataclass(frozen=True)
class ToastSetting:
    """The toast notifier's setting for an app id: one of :data:`SETTINGS`, or ``None``
    with ``why`` it could not be read."""

    value: str | None
    why: str = ""


@dataclass(frozen=True)
class FocusAssist:
    """Whether Focus Assist / Do Not Disturb holds toasts back: ``"on"``, ``"off"`` or
    ``"unknown: …"`` (``None``: not Windows), and what told it."""

    state: str | None
    source: str = ""


def _windows() -> bool:
    return platform.system() == "Windows"


def read_toast_setting(app_id: str = "nbremind") -> ToastSetting:
    """``ToastNotificationManager.create_toast_notifier_with_id(app_id).setting``, named."""
    if not _windows():
        return ToastSetting(None, "not Windows")
    try:
        winrt = importlib.import_module(NOTIFICATIONS_MODULE)
    except Exception as exc:
        return ToastSetting(None, f"the winrt package cannot be imported ({exc})")
    try:
        setting = winrt.ToastNotificationManager.create_toast_notifier_with_id(app_id).setting
    except Exception as exc:  # WinRT raises OSError ("Element not found") for an unknown id
        return ToastSetting(
            None,
            f"Windows did not tell ({type(exc).__name__}: {exc}); this happens when it does "
            "not know the app id: `nbremind setup windows` registers it",
        )
    try:
        return ToastSetting(SETTINGS[int(setting)])
    except (TypeError, ValueError, IndexError):
        return ToastSetting(None, f"Windows answered an unknown setting {setting!r}")


def toast_setting(app_id: str = "nbremind") -> str | None:
    """What Windows says about toasts for ``app_id``: one of :data:`SETTINGS` (``None``:
    not Windows, or it cannot be read; :func:`read_toast_setting` says why)."""
    return read_toast_setting(app_id).value


def setting_problem(value: str | None) -> str:
    """Why toasts do not appear with the setting ``value``, and the fix (``""``: they may)."""
    if value is None or value not in SETTING_REASONS:
        return ""
    return f"Windows: {SETTING_REASONS[value]} ({value}); {SETTING_FIXES[value]}"


def _dword(winreg: Any, path: str, name: str) -> int | None:
    """The DWORD ``name`` under ``HKEY_CURRENT_USER\\path`` (``None``: not there)."""
    try:
        with winreg.OpenKey(winreg.HKEY_CURRENT_USER, path) as key:
            value, kind = winreg.QueryValueEx(key, name)
    except OSError:
        return None
    return int(value) if kind == winreg.REG_DWORD else None


def _notification_mode() -> int | None:
    """``ToastNotificationManager.get_default().notification_mode`` (recent Windows 11 only;
    ``None`` where it cannot be read)."""
    try:
        winrt = importlib.import_module(NOTIFICATIONS_MODULE)
        return int(winrt.ToastNotificationManager.get_default().notification_mode)
    except Exception:
        return None


def read_focus_assist() -> FocusAssist:
    """Best effort: every toast turned off, WinRT's notification mode where Windows has it,
    else the Do Not Disturb value Windows 11 keeps in the registry."""
    if not _windows():
        return FocusAssist(None, "not Windows")
    try:
        winreg = importlib.import_module("winreg")
    except Exception as exc:
        return FocusAssist(f"unknown: the registry cannot be read ({exc})")
    settings = rf"HKEY_CURRENT_USER\{NOTIFICATION_SETTINGS_KEY}"
    if _dword(winreg, NOTIFICATION_SETTINGS_KEY, TOASTS_ENABLED_VALUE) == 0:
        return FocusAssist("on", f"{TOASTS_ENABLED_VALUE} = 0 under {settings}: every toast off")
    if _dword(winreg, PUSH_NOTIFICATIONS_KEY, TOAST_ENABLED_VALUE) == 0:
        where = rf"HKEY_CURRENT_USER\{PUSH_NOTIFICATIONS_KEY}"
        return FocusAssist("on", f"{TOAST_ENABLED_VALUE} = 0 under {where}: notifications off")
    mode = _notification_mode()
    if mode in _MODES:
        return FocusAssist(_MODES[mode], f"WinRT notification mode: {_MODE_NAMES[mode]}")
    dnd = _dword(winreg, NOTIFICATION_SETTINGS_KEY, DND_VALUE)
    if dnd is not None:
        return FocusAssist("on" if dnd else "off", f"{DND_VALUE} = {dnd} under {settings}")
    return FocusAssist(
        "unknown: Windows does not say here (no notification mode, no "
        f"{DND_VALUE} value; Windows 10 keeps Focus Assist in an undocumented record)"
    )


def focus_assist() -> str | None:
    """Best effort: whether Focus Assist / Do Not Disturb holds toasts back: ``"on"``,
    ``"off"`` or ``"unknown: …"`` (``None``: not Windows)."""
    return read_focus_assist().state
