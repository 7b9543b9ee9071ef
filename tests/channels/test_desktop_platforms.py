"""The desktop channel's Windows and macOS paths, run here through desktop-notifier's own
backend selection (``get_backend_class``) with the platform reported by ``platform`` swapped
and the platform's backend module replaced by a recording backend."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
import types
from typing import Any

import pytest
from desktop_notifier import Urgency
from desktop_notifier.backends.dummy import DummyNotificationCenter

from _desktop_fakes import RecordingBackend, fake_macos
from nbremind.channels import Availability, ChannelError
from nbremind.channels.desktop import DesktopChannel
from nbremind.core.clock import SystemClock
from nbremind.core.notice import Notice, make_notice
from nbremind.core.task import Task, TaskError, TaskState

BUNDLE_REASON = "macOS: notifications need an app bundle (python is not running from one)"


@pytest.fixture(autouse=True)
def fresh_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RecordingBackend, "instances", [])
    monkeypatch.setattr(RecordingBackend, "fail", None)
    monkeypatch.setattr(RecordingBackend, "authorised", True)


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows 11 as desktop-notifier sees it, with WinRT replaced by the recorder."""
    monkeypatch.setattr("platform.system", lambda: "Windows")
    monkeypatch.setattr("platform.version", lambda: "10.0.22631")
    winrt = types.ModuleType("desktop_notifier.backends.winrt")
    winrt.WinRTDesktopNotifier = RecordingBackend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "desktop_notifier.backends.winrt", winrt)


def task_notice(event: str, error: TaskError | None = None) -> Notice:
    task = Task("train", clock=SystemClock())
    task.state = TaskState.FAILED if error else TaskState.SUCCEEDED
    task.error = error
    return make_notice(event, task.snapshot(), created=time.time())


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_windows_sends_what_nbremind_builds(windows: None) -> None:
    ok = task_notice("success")
    failed = task_notice("failure", TaskError("RuntimeError", "CUDA out of memory"))
    assert (ok.urgency, failed.urgency) == ("normal", "critical")

    async def scenario() -> Availability:
        channel = DesktopChannel()
        availability = await channel.availability()
        await channel.send(ok)
        await channel.send(failed)
        await channel.close()
        return availability

    assert run(scenario()).ok
    [backend] = RecordingBackend.instances  # one notifier for the channel's life
    assert backend.app_name == "nbremind"  # the AUMID desktop-notifier registers on Windows
    first, second = backend.sent
    assert (first.title, first.message, first.urgency) == (ok.title, ok.body, Urgency.Normal)
    assert second.title == "✗ train failed"
    assert second.message.startswith("RuntimeError: CUDA out of memory")
    assert second.urgency == Urgency.Critical
    assert all(n.on_dispatched is not None for n in backend.sent)
    assert backend.dispatched == [first.identifier, second.identifier]


def test_backend_error_becomes_channel_error_without_a_warning(
    windows: None, caplog: pytest.LogCaptureFixture
) -> None:
    RecordingBackend.fail = OSError("toast notifier unavailable")
    caplog.set_level(logging.DEBUG, logger="desktop_notifier")

    async def scenario() -> None:
        await DesktopChannel().send(task_notice("success"))

    with pytest.raises(ChannelError, match="OSError: toast notifier unavailable"):
        run(scenario())
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_undispatched_notification_is_a_failure(
    windows: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """desktop-notifier reports success only through on_dispatched; no call, no success."""
    monkeypatch.setattr(RecordingBackend, "handle_dispatched", lambda self, *a: None)

    async def scenario() -> None:
        await DesktopChannel().send(task_notice("success"))

    with pytest.raises(ChannelError, match="not dispatched"):
        run(scenario())
    assert len(RecordingBackend.instances[0].sent) == 1


def test_windows_with_notifications_turned_off(windows: None) -> None:
    RecordingBackend.authorised = False
    availability = run(DesktopChannel().availability())
    assert not availability.ok
    assert availability.reason == "Windows: notifications are turned off for nbremind"


def test_macos_without_bundle_is_unavailable_and_quiet(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    fake_macos(monkeypatch, bundle=False)
    caplog.set_level(logging.DEBUG, logger="desktop_notifier")
    channel = DesktopChannel()
    assert channel.describe() == "desktop (DummyNotificationCenter)"
    availability = run(channel.availability())
    assert availability == Availability(False, BUNDLE_REASON)
    assert RecordingBackend.instances == []
    # desktop-notifier's "only from an app bundle" warning became the reason, not log noise
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_dummy_backend_class_means_no_bundle_on_macos(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.system", lambda: "Darwin")
    monkeypatch.setattr("desktop_notifier.main.get_backend_class", lambda: DummyNotificationCenter)
    availability = run(DesktopChannel().availability())
    assert not availability.ok
    assert availability.reason == BUNDLE_REASON


def test_macos_app_bundle_sends(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_macos(monkeypatch, bundle=True)

    async def scenario() -> Availability:
        channel = DesktopChannel()
        availability = await channel.availability()
        await channel.send(task_notice("failure", TaskError("KeyError", "'label'")))
        return availability

    assert run(scenario()).ok
    [backend] = RecordingBackend.instances
    [sent] = backend.sent
    assert sent.title == "✗ train failed"
    assert sent.urgency == Urgency.Critical
    assert backend.dispatched == [sent.identifier]


def test_unsupported_os_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("platform.system", lambda: "FreeBSD")
    availability = run(DesktopChannel().availability())
    assert availability == Availability(False, "no desktop notification backend for FreeBSD")


def test_importing_the_channel_does_not_import_desktop_notifier() -> None:
    code = (
        "import sys, nbremind, nbremind.channels.desktop\n"
        "print(sorted(m for m in sys.modules if m.startswith('desktop_notifier')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
