"""What Windows says about nbremind's toasts, and the desktop channel acting on it.

These machines have no Windows: the WinRT module desktop-notifier uses
(``winrt.windows.ui.notifications``) and the standard library's ``winreg`` are replaced by
recording fakes in ``sys.modules``, and ``platform.system()`` says "Windows". The fakes
keep the real names and numbers (``NotificationSetting``, ``ToastNotificationMode``,
``REG_DWORD``) and record every call, which the tests assert.
"""

from __future__ import annotations

import asyncio
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _desktop_fakes import RecordingBackend
from _windows_toasts import (
    HKCU,
    NotificationSetting,
    RegistryKey,
    ToastNotificationMode,
    winrt_backend,
)
from nbremind.channels import Availability, ChannelError
from nbremind.channels.browser import BrowserChannel
from nbremind.channels.desktop import DesktopChannel
from nbremind.channels.windows_toasts import (
    DND_VALUE,
    NOTIFICATION_SETTINGS_KEY,
    PUSH_NOTIFICATIONS_KEY,
    SETTING_FIXES,
    SETTINGS,
    TOAST_ENABLED_VALUE,
    TOASTS_ENABLED_VALUE,
    focus_assist,
    read_focus_assist,
    read_toast_setting,
    setting_problem,
    toast_setting,
)
from nbremind.core.browser_views import BrowserConnection
from nbremind.core.clock import SystemClock
from nbremind.core.config import Config
from nbremind.core.notice import Notice, make_notice
from nbremind.core.options import TaskOptions
from nbremind.core.task import Task, TaskState
from nbremind.delivery.dispatcher import Dispatcher
from nbremind.store.outbox import Outbox

OFF = [value for value in SETTINGS if value != "enabled"]


# -- the fakes -----------------------------------------------------------------------------------
class FakeWinRT:
    """``ToastNotificationManager`` as the winrt projection has it: the static
    ``create_toast_notifier_with_id`` (its ``ToastNotifier.setting``) and ``get_default()``
    (its ``notification_mode``). ``setting`` may be an exception, raised when read."""

    def __init__(self) -> None:
        self.setting: Any = NotificationSetting.ENABLED
        self.mode: Any = AttributeError("notification_mode")  # not on this Windows build
        self.calls: list[tuple[str, ...]] = []
        fake = self

        class ToastNotifier:
            @property
            def setting(self) -> NotificationSetting:
                fake.calls.append(("setting",))
                if isinstance(fake.setting, Exception):
                    raise fake.setting
                return fake.setting  # type: ignore[no-any-return]

        class ForUser:
            @property
            def notification_mode(self) -> ToastNotificationMode:
                fake.calls.append(("notification_mode",))
                if isinstance(fake.mode, Exception):
                    raise fake.mode
                return fake.mode  # type: ignore[no-any-return]

        class ToastNotificationManager:
            @staticmethod
            def create_toast_notifier_with_id(app_id: str) -> ToastNotifier:
                fake.calls.append(("create_toast_notifier_with_id", app_id))
                return ToastNotifier()

            @staticmethod
            def get_default() -> ForUser:
                fake.calls.append(("get_default",))
                return ForUser()

        self.module = types.ModuleType("winrt.windows.ui.notifications")
        self.module.NotificationSetting = NotificationSetting  # type: ignore[attr-defined]
        self.module.ToastNotificationMode = ToastNotificationMode  # type: ignore[attr-defined]
        self.module.ToastNotificationManager = ToastNotificationManager  # type: ignore[attr-defined]

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        for name in ("winrt", "winrt.windows", "winrt.windows.ui"):
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        monkeypatch.setitem(sys.modules, "winrt.windows.ui.notifications", self.module)

    @property
    def app_ids(self) -> list[str]:
        return [c[1] for c in self.calls if c[0] == "create_toast_notifier_with_id"]


class FakeWinreg(types.ModuleType):
    """``winreg``'s reading half over a dict ``{(key path, value name): (data, type)}``."""

    HKEY_CURRENT_USER = HKCU
    REG_SZ = 1
    REG_DWORD = 4

    def __init__(self) -> None:
        super().__init__("winreg")
        self.values: dict[tuple[str, str], tuple[Any, int]] = {}
        self.calls: list[tuple[str, ...]] = []

    def OpenKey(self, root: str, path: str) -> Any:
        self.calls.append(("OpenKey", root, path))
        if not any(key == path for key, _ in self.values):
            raise FileNotFoundError(2, "The system cannot find the file specified")
        return RegistryKey(path)

    def QueryValueEx(self, key: RegistryKey, name: str) -> tuple[Any, int]:
        self.calls.append(("QueryValueEx", key.path, name))
        try:
            return self.values[(key.path, name)]
        except KeyError:
            raise FileNotFoundError(2, "The system cannot find the file specified") from None

    def dword(self, path: str, name: str, value: int) -> None:
        self.values[(path, name)] = (value, self.REG_DWORD)


@pytest.fixture
def winrt(monkeypatch: pytest.MonkeyPatch) -> FakeWinRT:
    monkeypatch.setattr("platform.system", lambda: "Windows")
    fake = FakeWinRT()
    fake.install(monkeypatch)
    return fake


@pytest.fixture
def winreg(monkeypatch: pytest.MonkeyPatch) -> FakeWinreg:
    fake = FakeWinreg()
    monkeypatch.setitem(sys.modules, "winreg", fake)
    return fake


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch, winrt: FakeWinRT) -> Iterator[FakeWinRT]:
    """Windows 11 as desktop-notifier sees it (its WinRT backend replaced by the recorder),
    with the toast setting read from the fake WinRT module."""
    winrt_backend(monkeypatch)
    yield winrt


def notice(title: str = "etl") -> Notice:
    task = Task(title, clock=SystemClock())
    task.state = TaskState.SUCCEEDED
    return make_notice("success", task.snapshot(), created=time.time())


# -- the toast setting ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", SETTINGS)
def test_each_setting_is_read_for_the_app_id_and_named(winrt: FakeWinRT, value: str) -> None:
    winrt.setting = NotificationSetting[value.upper()]
    assert toast_setting() == value
    assert winrt.calls == [("create_toast_notifier_with_id", "nbremind"), ("setting",)]
    assert toast_setting("other.app") == value
    assert winrt.app_ids == ["nbremind", "other.app"]


def test_each_off_setting_has_its_reason_and_fix() -> None:
    assert setting_problem("enabled") == "" and setting_problem(None) == ""
    assert set(SETTING_FIXES) == set(OFF)
    assert setting_problem("disabled_for_application") == (
        "Windows: notifications are turned off for nbremind (disabled_for_application); "
        "turned off for nbremind in Settings → System → Notifications: run "
        "`nbremind setup windows --enable`"
    )
    assert "all notifications are turned off for this user" in setting_problem("disabled_for_user")
    assert "Settings → System → Notifications" in setting_problem("disabled_for_user")
    assert "ask your administrator" in setting_problem("disabled_by_group_policy")
    assert setting_problem("disabled_by_manifest").endswith(
        "the app id's registration is broken: run `nbremind setup windows`"
    )


def test_an_unreadable_setting_is_none_with_why(winrt: FakeWinRT) -> None:
    winrt.setting = OSError("[WinError -2147023728] Element not found")
    found = read_toast_setting()
    assert found.value is None
    assert found.why.startswith("Windows did not tell (OSError: [WinError -2147023728] Element")
    assert "`nbremind setup windows` registers it" in found.why
    winrt.setting = 7
    assert read_toast_setting().why == "Windows answered an unknown setting 7"


def test_without_winrt_the_setting_is_none_with_why(
    winrt: FakeWinRT, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "winrt.windows.ui.notifications", None)
    found = read_toast_setting()
    assert found.value is None and found.why.startswith("the winrt package cannot be imported")
    assert winrt.calls == []


def test_off_windows_nothing_is_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeWinRT()
    fake.install(monkeypatch)
    monkeypatch.setattr("platform.system", lambda: "Linux")
    assert toast_setting() is None and focus_assist() is None
    assert fake.calls == []


# -- Focus Assist (best effort) ------------------------------------------------------------------
def test_focus_assist_every_toast_off(winrt: FakeWinRT, winreg: FakeWinreg) -> None:
    winreg.dword(NOTIFICATION_SETTINGS_KEY, TOASTS_ENABLED_VALUE, 0)
    found = read_focus_assist()
    assert found.state == "on"
    assert found.source == (
        rf"{TOASTS_ENABLED_VALUE} = 0 under {HKCU}\{NOTIFICATION_SETTINGS_KEY}: every toast off"
    )
    assert winreg.calls == [
        ("OpenKey", HKCU, r"Software\Microsoft\Windows\CurrentVersion\Notifications\Settings"),
        ("QueryValueEx", NOTIFICATION_SETTINGS_KEY, "NOC_GLOBAL_SETTING_TOASTS_ENABLED"),
    ]


def test_focus_assist_notifications_off_for_the_user(winrt: FakeWinRT, winreg: FakeWinreg) -> None:
    winreg.dword(PUSH_NOTIFICATIONS_KEY, TOAST_ENABLED_VALUE, 0)
    assert focus_assist() == "on"
    assert winreg.calls[-2:] == [
        ("OpenKey", HKCU, r"Software\Microsoft\Windows\CurrentVersion\PushNotifications"),
        ("QueryValueEx", PUSH_NOTIFICATIONS_KEY, "ToastEnabled"),
    ]


@pytest.mark.parametrize(
    ("mode", "state", "name"),
    [
        (ToastNotificationMode.UNRESTRICTED, "off", "unrestricted"),
        (ToastNotificationMode.PRIORITY_ONLY, "on", "priority only"),
        (ToastNotificationMode.ALARMS_ONLY, "on", "alarms only"),
    ],
)
def test_focus_assist_from_the_winrt_notification_mode(
    winrt: FakeWinRT, winreg: FakeWinreg, mode: ToastNotificationMode, state: str, name: str
) -> None:
    winrt.mode = mode
    winreg.dword(NOTIFICATION_SETTINGS_KEY, DND_VALUE, 1)  # the mode, where there, wins
    found = read_focus_assist()
    assert (found.state, found.source) == (state, f"WinRT notification mode: {name}")
    assert winrt.calls == [("get_default",), ("notification_mode",)]


@pytest.mark.parametrize(("dnd", "state"), [(1, "on"), (0, "off")])
def test_focus_assist_from_the_do_not_disturb_value(
    winrt: FakeWinRT, winreg: FakeWinreg, dnd: int, state: str
) -> None:
    winreg.dword(NOTIFICATION_SETTINGS_KEY, DND_VALUE, dnd)
    found = read_focus_assist()
    assert found.state == state
    assert (
        found.source == f"NOC_GLOBAL_SETTING_DND = {dnd} under {HKCU}\\{NOTIFICATION_SETTINGS_KEY}"
    )
    assert [c for c in winreg.calls if c[0] == "QueryValueEx"] == [
        ("QueryValueEx", NOTIFICATION_SETTINGS_KEY, TOASTS_ENABLED_VALUE),
        ("QueryValueEx", NOTIFICATION_SETTINGS_KEY, DND_VALUE),
    ]


def test_focus_assist_unknown_when_nothing_tells(winrt: FakeWinRT, winreg: FakeWinreg) -> None:
    winreg.values[(NOTIFICATION_SETTINGS_KEY, DND_VALUE)] = ("1", winreg.REG_SZ)  # not a DWORD
    state = focus_assist()
    assert state is not None and state.startswith("unknown: Windows does not say here")
    assert "NOC_GLOBAL_SETTING_DND" in state


# -- the desktop channel -------------------------------------------------------------------------
def test_enabled_toasts_are_delivered(windows: FakeWinRT) -> None:
    async def scenario() -> Availability:
        channel = DesktopChannel()
        available = await channel.availability()
        await channel.send(notice())
        return available

    assert asyncio.run(scenario()) == Availability(True)
    [backend] = RecordingBackend.instances
    assert backend.app_name == "nbremind" and len(backend.dispatched) == 1
    assert windows.app_ids == ["nbremind", "nbremind"]  # read when checked, and when sent


@pytest.mark.parametrize("value", OFF)
def test_toasts_turned_off_make_the_channel_unavailable_with_the_fix(
    windows: FakeWinRT, value: str
) -> None:
    windows.setting = NotificationSetting[value.upper()]

    async def scenario() -> Availability:
        channel = DesktopChannel()
        available = await channel.availability()
        with pytest.raises(ChannelError, match="desktop notification not shown: Windows: "):
            await channel.send(notice())
        return available

    available = asyncio.run(scenario())
    assert available == Availability(False, setting_problem(value))
    assert SETTING_FIXES[value] in available.reason
    assert RecordingBackend.instances[0].sent == []  # nothing handed to Windows


def test_an_unreadable_setting_falls_back_to_desktop_notifier(windows: FakeWinRT) -> None:
    windows.setting = OSError("Element not found")
    channel = DesktopChannel()
    assert asyncio.run(channel.availability()).ok
    assert channel.notes()[-1:] == [
        "Windows toast setting for nbremind unknown: Windows did not tell (OSError: Element not "
        "found); this happens when it does not know the app id: `nbremind setup windows` "
        "registers it"
    ]
    RecordingBackend.authorised = False
    assert asyncio.run(DesktopChannel().availability()) == Availability(
        False, "Windows: notifications are turned off for nbremind"
    )


def test_a_setting_turned_off_later_is_recorded_undeliverable(
    windows: FakeWinRT, tmp_path: Path
) -> None:
    """Read again before each send: the first notice is delivered, the one sent after the
    user turned nbremind off is recorded (outbox too) unavailable with the reason and fix;
    turned on again, the next is delivered."""
    config = Config(channels=("desktop",))
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    dispatcher = Dispatcher(channels={"desktop": DesktopChannel()})
    dispatcher.outbox_source = lambda: outbox
    notices = [notice("first"), notice("second"), notice("third")]

    async def scenario() -> list[Any]:
        out = await dispatcher.dispatch(notices[0], TaskOptions(), config)
        windows.setting = NotificationSetting.DISABLED_FOR_APPLICATION
        out += await dispatcher.dispatch(notices[1], TaskOptions(), config)
        windows.setting = NotificationSetting.ENABLED
        out += await dispatcher.dispatch(notices[2], TaskOptions(), config)
        await dispatcher.close()
        return out

    first, second, third = asyncio.run(scenario())
    reason = setting_problem("disabled_for_application")
    assert (first.ok, third.ok) == (True, True)
    assert (second.ok, second.error) == (False, f"unavailable: {reason}")
    sent = [n.title for n in RecordingBackend.instances[0].sent]
    assert sent == [notices[0].title, notices[2].title]
    [stored] = outbox.records(state="failed")
    assert (stored.notice_id, stored.channel) == (notices[1].id, "desktop")
    assert stored.last_error == f"unavailable: {reason}"
    outbox.close()


class _View:
    def send(self, content: dict[str, Any]) -> None:
        pass


def test_automatic_channels_fall_back_to_a_connected_browser(windows: FakeWinRT) -> None:
    windows.setting = NotificationSetting.DISABLED_FOR_APPLICATION
    connection = BrowserConnection()
    connection.hello(_View(), "v1")
    browser = BrowserChannel(connection)
    dispatcher = Dispatcher(channels={"desktop": DesktopChannel(), "browser": browser})

    async def scenario() -> tuple[Any, list[Any]]:
        chosen = await dispatcher.default_channels()
        sent = await dispatcher.dispatch(notice(), TaskOptions(), Config())
        await dispatcher.close()
        return chosen, sent

    chosen, [delivery] = asyncio.run(scenario())
    reason = setting_problem("disabled_for_application")
    assert chosen.channels == ("browser",)
    assert chosen.reason == f"desktop unavailable: {reason}; a browser front end is connected"
    assert (delivery.channel, delivery.ok) == ("browser", True)
    assert RecordingBackend.instances[0].sent == []
