"""What the Windows toast tests share: the WinRT enums with their real names and numbers, a
registry key handle for the ``winreg`` fakes, and desktop-notifier's WinRT backend replaced
by the recorder on a faked Windows 11."""

from __future__ import annotations

import enum
import sys
import types

import pytest

from _desktop_fakes import RecordingBackend

__all__ = ["HKCU", "NotificationSetting", "RegistryKey", "ToastNotificationMode", "winrt_backend"]

HKCU = "HKEY_CURRENT_USER"


class NotificationSetting(enum.IntEnum):
    """As ``winrt.windows.ui.notifications.NotificationSetting``."""

    ENABLED = 0
    DISABLED_FOR_APPLICATION = 1
    DISABLED_FOR_USER = 2
    DISABLED_BY_GROUP_POLICY = 3
    DISABLED_BY_MANIFEST = 4


class ToastNotificationMode(enum.IntEnum):
    """As ``winrt.windows.ui.notifications.ToastNotificationMode``."""

    UNRESTRICTED = 0
    PRIORITY_ONLY = 1
    ALARMS_ONLY = 2


class RegistryKey:
    """An open key of a ``winreg`` fake: its path, usable in ``with``."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> RegistryKey:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def winrt_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows 11 as desktop-notifier sees it, its WinRT backend replaced by the recorder
    (which starts empty, succeeding, authorised)."""
    monkeypatch.setattr("platform.system", lambda: "Windows")
    monkeypatch.setattr("platform.version", lambda: "10.0.22631")
    backend = types.ModuleType("desktop_notifier.backends.winrt")
    backend.WinRTDesktopNotifier = RecordingBackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "desktop_notifier.backends.winrt", backend)
    monkeypatch.setattr(RecordingBackend, "instances", [])
    monkeypatch.setattr(RecordingBackend, "fail", None)
    monkeypatch.setattr(RecordingBackend, "authorised", True)
