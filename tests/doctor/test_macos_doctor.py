"""``nbremind doctor``, ``%remind status`` and the desktop channel on macOS, run here against
fakes: desktop-notifier's bundle check (``macos_support.is_bundle``) and its Cocoa backend
replaced (``_desktop_fakes.fake_macos``), the backend's authorisation answers recorded, and
``sys.executable`` set to where Python would run from."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import pytest

from _desktop_fakes import RecordingBackend, fake_macos
from nbremind.channels import Availability
from nbremind.channels.browser import BrowserChannel
from nbremind.channels.desktop import DesktopChannel, macos_not_authorised
from nbremind.cli import main
from nbremind.core.browser_views import BrowserConnection
from nbremind.core.clock import SystemClock
from nbremind.core.config import Config
from nbremind.core.notice import make_notice
from nbremind.core.options import TaskOptions
from nbremind.core.task import Task, TaskState
from nbremind.delivery.dispatcher import Dispatcher
from nbremind.doctor.desktop import desktop_facts, status_lines

APP = "/Applications/JupyterLab.app"
ALLOW = "System Settings → Notifications → JupyterLab → Allow Notifications"
NO_BUNDLE = "macOS: notifications need an app bundle (python is not running from one)"


@pytest.fixture
def asked(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The authorisation questions the backend was asked, in order."""
    calls: list[str] = []
    monkeypatch.setattr(RecordingBackend, "instances", [])
    monkeypatch.setattr(RecordingBackend, "authorised", True)

    async def has(self: RecordingBackend) -> bool:
        calls.append("has_authorisation")
        return RecordingBackend.authorised

    async def request(self: RecordingBackend) -> bool:
        calls.append("request_authorisation")
        return RecordingBackend.authorised

    monkeypatch.setattr(RecordingBackend, "has_authorisation", has)
    monkeypatch.setattr(RecordingBackend, "request_authorisation", request)
    return calls


def bundled(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_macos(monkeypatch, bundle=True)
    monkeypatch.setattr(sys, "executable", f"{APP}/Contents/Resources/env/bin/python")


def doctor_desktop(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    main(["doctor", "--json"])
    data = json.loads(capsys.readouterr().out)
    [desktop] = [check for check in data["checks"] if check["name"] == "desktop"]
    return desktop  # type: ignore[no-any-return]


def test_authorised_bundle(
    monkeypatch: pytest.MonkeyPatch, asked: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    bundled(monkeypatch)
    desktop = doctor_desktop(capsys)
    assert desktop["ok"] is True
    assert desktop["macos"] == {"app_bundle": APP, "authorised": True, "how_to_allow": ALLOW}
    assert f"notifications authorised for {APP}: yes" in desktop["detail"]
    assert asked == ["has_authorisation"]


def test_not_authorised_says_how_to_allow_and_the_doctor_asks_nobody(
    monkeypatch: pytest.MonkeyPatch, asked: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    bundled(monkeypatch)
    RecordingBackend.authorised = False
    reason = macos_not_authorised()
    assert reason == f"macOS: notifications are not allowed for {APP}; allow them in {ALLOW}"
    desktop = doctor_desktop(capsys)
    assert desktop["ok"] is False
    assert desktop["summary"] == f"toasts cannot be shown: {reason}"
    assert desktop["macos"]["authorised"] is False
    assert any(
        line.startswith(f"notifications authorised for {APP}: no") and line.endswith(ALLOW)
        for line in desktop["detail"]
    ), desktop["detail"]
    assert asked == ["has_authorisation"]  # no prompt from the doctor
    main(["doctor"])
    assert f"✗ desktop: toasts cannot be shown: {reason}" in capsys.readouterr().out


def test_the_channel_asks_for_permission_once_where_allowed(
    monkeypatch: pytest.MonkeyPatch, asked: list[str]
) -> None:
    bundled(monkeypatch)
    RecordingBackend.authorised = False
    assert asyncio.run(DesktopChannel().availability()) == Availability(
        False, macos_not_authorised()
    )
    assert asked == ["has_authorisation", "request_authorisation"]
    asked.clear()
    RecordingBackend.authorised = True  # the user allows them when asked
    channel = DesktopChannel()
    assert asyncio.run(channel.availability()).ok and channel.authorised is True
    assert asked == ["has_authorisation"]


def test_without_a_bundle_the_reason_and_the_fallback(
    monkeypatch: pytest.MonkeyPatch, asked: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_macos(monkeypatch, bundle=False)
    monkeypatch.setattr(sys, "executable", "/opt/homebrew/bin/python3.12")
    facts = asyncio.run(desktop_facts())
    assert facts.available == Availability(False, NO_BUNDLE)
    assert facts.details == {
        "macos": {
            "app_bundle": None,
            "authorised": None,
            "how_to_allow": (
                "System Settings → Notifications → the app running Python → Allow Notifications"
            ),
        }
    }
    assert facts.notes == (
        "notifications authorised: not asked (no app bundle); automatic channels send notices "
        "to a connected browser instead",
    )
    assert asked == []  # desktop-notifier has no Cocoa backend to ask without a bundle
    assert status_lines() == [
        "macOS: Python is not in an app bundle, so no toasts: automatic channels send "
        "notices to a connected browser instead"
    ]

    class View:
        def send(self, content: dict[str, Any]) -> None:
            pass

    connection = BrowserConnection()
    connection.hello(View(), "v1")
    dispatcher = Dispatcher(
        channels={"desktop": DesktopChannel(), "browser": BrowserChannel(connection)}
    )
    task = Task("etl", clock=SystemClock())
    task.state = TaskState.SUCCEEDED
    notice = make_notice("success", task.snapshot(), created=time.time())

    async def scenario() -> tuple[Any, list[Any]]:
        chosen = await dispatcher.default_channels()
        sent = await dispatcher.dispatch(notice, TaskOptions(), Config())
        await dispatcher.close()
        return chosen, sent

    chosen, [delivery] = asyncio.run(scenario())
    assert str(chosen) == (
        f"browser — desktop unavailable: {NO_BUNDLE}; a browser front end is connected"
    )
    assert (delivery.channel, delivery.ok) == ("browser", True)


def test_remind_status_names_the_bundle(monkeypatch: pytest.MonkeyPatch) -> None:
    bundled(monkeypatch)
    assert status_lines() == [
        f"macOS: Python runs from {APP}; its notifications are allowed or not in {ALLOW}"
    ]
