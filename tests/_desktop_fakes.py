"""Fakes of the platform notification services desktop-notifier drives (a recording
backend in place of WinRT or Cocoa), shared by the desktop channel and doctor tests."""

from __future__ import annotations

import sys
import types
from typing import Any, ClassVar

import pytest
from desktop_notifier import Notification
from desktop_notifier.backends.base import DesktopNotifierBackend
from packaging.version import Version

__all__ = ["RecordingBackend", "fake_macos"]


class RecordingBackend(DesktopNotifierBackend):
    """Keeps every notification it is asked to show; can be told to fail or to be denied."""

    instances: ClassVar[list[RecordingBackend]] = []
    fail: ClassVar[Exception | None] = None
    authorised: ClassVar[bool] = True

    def __init__(self, app_name: str, app_icon: Any = None) -> None:
        super().__init__(app_name, app_icon)
        self.sent: list[Notification] = []
        self.dispatched: list[str] = []
        RecordingBackend.instances.append(self)

    async def request_authorisation(self) -> bool:
        return self.authorised

    async def has_authorisation(self) -> bool:
        return self.authorised

    async def _send(self, notification: Notification) -> None:
        if self.fail is not None:
            raise self.fail
        self.sent.append(notification)

    def handle_dispatched(self, identifier: str, notification: Notification | None = None) -> None:
        self.dispatched.append(identifier)
        super().handle_dispatched(identifier, notification)

    async def _clear(self, identifier: str) -> None:
        pass

    async def _clear_all(self) -> None:
        pass

    async def _get_capabilities(self) -> frozenset[Any]:
        return frozenset()


def fake_macos(monkeypatch: pytest.MonkeyPatch, *, bundle: bool) -> None:
    """macOS 14 as desktop-notifier sees it; Cocoa replaced by the recorder."""
    monkeypatch.setattr("platform.system", lambda: "Darwin")
    support = types.ModuleType("desktop_notifier.backends.macos_support")
    support.macos_version = Version("14.4")  # type: ignore[attr-defined]
    support.is_bundle = lambda: bundle  # type: ignore[attr-defined]
    support.is_signed_bundle = lambda: True  # type: ignore[attr-defined]
    cocoa = types.ModuleType("desktop_notifier.backends.macos")
    cocoa.CocoaNotificationCenter = RecordingBackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "desktop_notifier.backends.macos_support", support)
    monkeypatch.setitem(sys.modules, "desktop_notifier.backends.macos", cocoa)
