"""``nbremind doctor`` and ``%remind status`` on Windows, run here against fakes: the WinRT
module desktop-notifier uses (``winrt.windows.ui.notifications``) and ``winreg`` as
recording fakes in ``sys.modules``, desktop-notifier's WinRT backend replaced by the
recorder, ``platform.system()`` saying "Windows", and the app id's registration
(``identity_state()``) replaced by a stand-in. The exact calls made are asserted."""

from __future__ import annotations

import asyncio
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from _windows_toasts import HKCU, NotificationSetting, RegistryKey, winrt_backend
from nbremind.channels import windows_identity
from nbremind.channels.windows_toasts import SETTING_FIXES, SETTINGS, setting_problem
from nbremind.cli import main
from nbremind.doctor.desktop import desktop_facts, status_lines

AUMID_KEY = rf"{HKCU}\Software\Classes\AppUserModelId\nbremind"
SETTINGS_KEY = r"Software\Microsoft\Windows\CurrentVersion\Notifications\Settings"
SHORTCUT = Path(r"C:\Users\ada\AppData\Roaming\Microsoft\Windows\Start Menu\Programs\nbremind.lnk")
SETUP = "run `nbremind setup windows`"


def IdentityState(
    registered: bool | None,
    display_name: str | None = None,
    icon: str | None = None,
    shortcut: Path | None = None,
    shortcut_app_id: str | None = None,
    enabled_value: int | None = None,
    problems: tuple[str, ...] = (),
) -> windows_identity.IdentityState:
    """What the stand-in ``identity_state()`` answers (the real class, defaults added)."""
    return windows_identity.IdentityState(
        registered, display_name, icon, shortcut, shortcut_app_id, enabled_value, problems
    )


COMPLETE = IdentityState(True, "nbremind", "C:/nbremind.ico", SHORTCUT, "nbremind")


class Fakes:
    """What Windows answers; every call recorded."""

    def __init__(self) -> None:
        self.setting: Any = NotificationSetting.ENABLED
        self.dnd: int | None = 0
        self.identity: windows_identity.IdentityState = COMPLETE
        self.calls: list[tuple[Any, ...]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fakes = self
        winrt_backend(monkeypatch)

        class Notifier:
            @property
            def setting(self) -> Any:
                if isinstance(fakes.setting, Exception):
                    raise fakes.setting
                return fakes.setting

        class ToastNotificationManager:
            @staticmethod
            def create_toast_notifier_with_id(app_id: str) -> Notifier:
                fakes.calls.append(("create_toast_notifier_with_id", app_id))
                return Notifier()

            @staticmethod
            def get_default() -> Any:
                raise OSError("no notification mode on this build")

        module = types.ModuleType("winrt.windows.ui.notifications")
        module.NotificationSetting = NotificationSetting  # type: ignore[attr-defined]
        module.ToastNotificationManager = ToastNotificationManager  # type: ignore[attr-defined]
        for name in ("winrt", "winrt.windows", "winrt.windows.ui"):
            monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
        monkeypatch.setitem(sys.modules, "winrt.windows.ui.notifications", module)

        registry = types.ModuleType("winreg")
        registry.HKEY_CURRENT_USER = HKCU  # type: ignore[attr-defined]
        registry.REG_DWORD = 4  # type: ignore[attr-defined]

        def open_key(root: str, path: str) -> RegistryKey:
            fakes.calls.append(("OpenKey", root, path))
            return RegistryKey(path)

        def query_value(key: RegistryKey, name: str) -> tuple[int, int]:
            fakes.calls.append(("QueryValueEx", key.path, name))
            if name == "NOC_GLOBAL_SETTING_DND" and fakes.dnd is not None:
                return fakes.dnd, 4
            raise FileNotFoundError(2, "The system cannot find the file specified")

        registry.OpenKey = open_key  # type: ignore[attr-defined]
        registry.QueryValueEx = query_value  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "winreg", registry)

        def identity_state() -> windows_identity.IdentityState:
            fakes.calls.append(("identity_state",))
            return fakes.identity

        monkeypatch.setattr(windows_identity, "identity_state", identity_state)


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch) -> Fakes:
    fakes = Fakes()
    fakes.install(monkeypatch)
    return fakes


def doctor_json(capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any]]:
    code = main(["doctor", "--json"])
    data = json.loads(capsys.readouterr().out)
    [desktop] = [check for check in data["checks"] if check["name"] == "desktop"]
    return code, desktop


def doctor_text(capsys: pytest.CaptureFixture[str]) -> list[str]:
    main(["doctor"])
    return capsys.readouterr().out.splitlines()


# -- the whole report, through the CLI's main() (the fakes are in this process) ------------------
def test_everything_in_place_reads_ok_with_its_facts(
    windows: Fakes, capsys: pytest.CaptureFixture[str]
) -> None:
    code, desktop = doctor_json(capsys)
    assert desktop["ok"] is True and desktop["required"] is True
    assert {"name", "ok", "required", "summary", "detail"} <= set(desktop)  # the old keys
    assert desktop["windows"] == {
        "app_id": "nbremind",
        "aumid_registered": True,
        "aumid_key": AUMID_KEY,
        "display_name": "nbremind",
        "icon": "C:/nbremind.ico",
        "shortcut": str(SHORTCUT),
        "shortcut_app_id": "nbremind",
        "enabled_value": None,
        "identity_problems": [],
        "toast_setting": "enabled",
        "toast_setting_error": "",
        "toast_fix": None,
        "setup_needed": False,
        "focus_assist": "off",
        "focus_assist_source": f"NOC_GLOBAL_SETTING_DND = 0 under {HKCU}\\{SETTINGS_KEY}",
    }
    assert f"app id 'nbremind': registered ({AUMID_KEY})" in desktop["detail"]
    assert (
        "toast setting for app id 'nbremind': enabled (Windows shows its toasts)"
        in (desktop["detail"])
    )
    assert f"Start-menu shortcut: {SHORTCUT} (app id 'nbremind')" in desktop["detail"]
    assert not any(SETUP in line for line in desktop["detail"])
    # what the doctor asked Windows, in order
    asked = [c for c in windows.calls if c[0] != "identity_state"]
    assert ("create_toast_notifier_with_id", "nbremind") in asked
    assert {c[1] for c in asked if c[0] == "create_toast_notifier_with_id"} == {"nbremind"}
    assert [c for c in asked if c[0] == "QueryValueEx"] == [
        ("QueryValueEx", SETTINGS_KEY, "NOC_GLOBAL_SETTING_TOASTS_ENABLED"),
        (
            "QueryValueEx",
            r"Software\Microsoft\Windows\CurrentVersion\PushNotifications",
            "ToastEnabled",
        ),
        ("QueryValueEx", SETTINGS_KEY, "NOC_GLOBAL_SETTING_DND"),
    ]
    assert code in (0, 1)  # (the other checks are this machine's)


@pytest.mark.parametrize("value", [v for v in SETTINGS if v != "enabled"])
def test_each_off_setting_fails_the_check_with_its_fix(
    windows: Fakes, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    windows.setting = NotificationSetting[value.upper()]
    code, desktop = doctor_json(capsys)
    assert code == 1 and desktop["ok"] is False
    assert desktop["summary"] == f"toasts cannot be shown: {setting_problem(value)}"
    assert desktop["windows"]["toast_setting"] == value
    assert desktop["windows"]["toast_fix"] == SETTING_FIXES[value]
    line = next(d for d in desktop["detail"] if d.startswith("toast setting for app id"))
    assert line.startswith(f"toast setting for app id 'nbremind': {value} — ")
    assert line.endswith(f"fix: {SETTING_FIXES[value]}")
    text = doctor_text(capsys)
    assert f"✗ desktop: toasts cannot be shown: {setting_problem(value)}" in text
    assert f"    {line}" in text


def test_the_application_switch_says_setup_windows_enable(
    windows: Fakes, capsys: pytest.CaptureFixture[str]
) -> None:
    windows.setting = NotificationSetting.DISABLED_FOR_APPLICATION
    _, desktop = doctor_json(capsys)
    assert "run `nbremind setup windows --enable`" in desktop["summary"]
    assert "Settings → System → Notifications" in desktop["summary"]


def test_toasts_turned_off_for_nbremind_are_told_once(
    windows: Fakes, capsys: pytest.CaptureFixture[str]
) -> None:
    """Windows' setting and the ``Enabled = 0`` the registry keeps are the same fact."""
    turned_off = f"{windows_identity.TURNED_OFF}: run `nbremind setup windows --enable`"
    windows.identity = IdentityState(
        True, "nbremind", "C:/nbremind.ico", SHORTCUT, "nbremind", 0, (turned_off,)
    )
    windows.setting = NotificationSetting.DISABLED_FOR_APPLICATION
    _, desktop = doctor_json(capsys)
    assert desktop["windows"]["identity_problems"] == []
    assert desktop["windows"]["enabled_value"] == 0
    lines = doctor_text(capsys)
    assert not [line for line in lines if "registration problem" in line], lines
    assert sum("toast setting for app id 'nbremind': disabled_for" in line for line in lines) == 1


def test_an_unreadable_setting_is_said_with_why(
    windows: Fakes, capsys: pytest.CaptureFixture[str]
) -> None:
    windows.setting = OSError("[WinError -2147023728] Element not found")
    _, desktop = doctor_json(capsys)
    assert desktop["ok"] is True  # desktop-notifier's own answer decides then
    facts = desktop["windows"]
    assert facts["toast_setting"] is None and facts["toast_fix"] is None
    assert facts["toast_setting_error"].startswith("Windows did not tell (OSError: ")
    assert any(
        line.startswith("toast setting for app id 'nbremind': unknown — Windows did not tell")
        for line in desktop["detail"]
    )


@pytest.mark.parametrize(
    ("identity", "shortcut_line"),
    [
        (IdentityState(True), "Start-menu shortcut: none claims app id 'nbremind'"),
        (
            IdentityState(True, shortcut=SHORTCUT, shortcut_app_id="Python.Launcher"),
            f"Start-menu shortcut: {SHORTCUT} claims app id 'Python.Launcher', not 'nbremind'",
        ),
        (
            IdentityState(
                False, problems=(r"HKCU\Software\Classes\AppUserModelId\nbremind is missing",)
            ),
            "Start-menu shortcut: none claims app id 'nbremind'",
        ),
    ],
)
def test_without_a_shortcut_that_claims_the_app_id_it_says_to_run_setup(
    windows: Fakes,
    capsys: pytest.CaptureFixture[str],
    identity: windows_identity.IdentityState,
    shortcut_line: str,
) -> None:
    windows.identity = identity
    _, desktop = doctor_json(capsys)
    assert desktop["windows"]["setup_needed"] is True
    assert desktop["windows"]["aumid_registered"] is identity.registered
    assert shortcut_line in desktop["detail"]
    assert [f"registration problem: {p}" for p in identity.problems] == [
        d for d in desktop["detail"] if d.startswith("registration problem: ")
    ]
    [advice] = [d for d in desktop["detail"] if SETUP in d]
    assert advice.startswith("toasts may not appear without the registration and a Start-menu")
    if identity.registered is False:
        assert f"app id 'nbremind': not registered yet ({AUMID_KEY} is missing)" in (
            " ".join(desktop["detail"])
        )
    assert ("identity_state",) in windows.calls


@pytest.mark.parametrize(("dnd", "state"), [(1, "on"), (0, "off"), (None, "unknown")])
def test_focus_assist_is_said_as_best_effort(windows: Fakes, dnd: int | None, state: str) -> None:
    windows.dnd = dnd
    facts = asyncio.run(desktop_facts())
    assert facts.details["windows"]["focus_assist"].split(":")[0] == state
    [line] = [n for n in facts.notes if n.startswith("Focus Assist / Do Not Disturb")]
    assert line.startswith(f"Focus Assist / Do Not Disturb (best effort): {state}")
    assert ("toasts then go to the notification centre without showing" in line) is (state == "on")


def test_remind_status_lines(windows: Fakes) -> None:
    assert status_lines() == [
        "toast setting for app id 'nbremind': enabled (Windows shows its toasts)",
        "Focus Assist / Do Not Disturb (best effort): off "
        f"(NOC_GLOBAL_SETTING_DND = 0 under {HKCU}\\{SETTINGS_KEY})",
    ]
    windows.setting = NotificationSetting.DISABLED_BY_GROUP_POLICY
    windows.identity = IdentityState(True)
    head = status_lines()[0]
    assert head.startswith("toast setting for app id 'nbremind': disabled_by_group_policy — ")
    assert "ask your administrator" in head
    assert head.endswith("; run `nbremind setup windows` (app id or Start-menu shortcut missing)")


def test_a_registration_that_cannot_be_read_is_said(
    windows: Fakes, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> windows_identity.IdentityState:
        raise RuntimeError("registry unreadable")

    monkeypatch.setattr(windows_identity, "identity_state", broken)
    facts = asyncio.run(desktop_facts())
    found = facts.details["windows"]
    assert found["aumid_registered"] is None and found["setup_needed"] is False
    assert found["identity_problems"] == [
        "the registration could not be read: RuntimeError: registry unreadable"
    ]
    assert "Start-menu shortcut: cannot be looked at here" in facts.notes
